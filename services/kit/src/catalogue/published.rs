//! Publishing service standards when they change.
//!
//! The service keeps, in its data directory, the file
//! [`PUBLISHED_STANDARDS_FILE`]: for each service, the version and the
//! content hash ([`ServiceStandardSpec::content_sha256`]) of the last
//! standard it put into its outbox. At start, for each service of the
//! catalogue ([`PublishedStandards::plan`]):
//!
//! | catalogue vs. record | outcome |
//! |---|---|
//! | no record | publish |
//! | higher version | publish |
//! | same version, same content | nothing to publish |
//! | same version, other content | refuse to start ([`StandardConflict::ChangedWithoutBump`]) |
//! | lower version | refuse to start ([`StandardConflict::VersionLowered`]) |
//!
//! Conflicts are checked for every service before anything is published, so
//! a refused start publishes nothing. A standard is recorded only after the
//! outbox accepted it (flushed to disk), so the record never claims more than
//! was published; a crash in between re-publishes it on the next start with
//! the same deterministic event id, which the stream or the hub drops as a
//! duplicate.
//!
//! The record is a text file, one line per service:
//!
//! ```text
//! # comment lines start with '#'
//! <service_id> <version> <content SHA-256, 64 lowercase hex digits>
//! ```
//!
//! written whole to a temporary file, synced and renamed over the old one.
//! Deleting it makes the service publish every standard of its catalogue
//! again at the next start (with the ids of their versions: duplicates for
//! the hub if it has them), and forgets the guard against content changed
//! without a version bump until then.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use mpp_core::ids::ServiceId;

use super::ServiceStandardSpec;
use crate::agency::Agency;
use crate::error::KitError;
use crate::publish::Accepted;

/// Name of the record file in the data directory.
pub const PUBLISHED_STANDARDS_FILE: &str = "published-standards.txt";

/// Largest record file, in bytes (a line is at most about 110 bytes).
pub const PUBLISHED_STANDARDS_FILE_BYTES_MAX: u64 = 256 * 1024;

/// Most services in the record file.
pub const PUBLISHED_STANDARDS_RECORDS_MAX: usize = 1024;

/// The header written at the top of the record file.
const HEADER: &str = "\
# Service standards this agency service has put into its outbox (mpp-agency-kit):
# <service_id> <version> <SHA-256 of the standard's content>.
# Written by the service at start; do not edit. Deleting this file makes the
# service publish every standard of its catalogue again at the next start.
";

/// What the record says about one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedStandard {
    /// The version last published.
    pub version: u32,
    /// Its [`ServiceStandardSpec::content_sha256`].
    pub content_sha256: [u8; 32],
}

/// A change the service refuses to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandardConflict {
    /// The content differs from what was published under the same version.
    ChangedWithoutBump {
        /// The service.
        service: ServiceId,
        /// The version of both.
        version: u32,
        /// The published content's hash.
        published_sha256: [u8; 32],
        /// The catalogue's content hash.
        catalogue_sha256: [u8; 32],
    },
    /// The catalogue's version is below the published one.
    VersionLowered {
        /// The service.
        service: ServiceId,
        /// The catalogue's version.
        version: u32,
        /// The published version.
        published_version: u32,
    },
}

impl fmt::Display for StandardConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StandardConflict::ChangedWithoutBump { service, version, published_sha256, catalogue_sha256 } => {
                write!(
                    f,
                    "catalogue changed for service {service} without bumping version (published v{version} \
                     content hash {}, the catalogue's v{version} hashes to {}): raise its version to {}, or \
                     undo the change",
                    hex(published_sha256),
                    hex(catalogue_sha256),
                    u64::from(*version) + 1
                )
            }
            StandardConflict::VersionLowered { service, version, published_version } => write!(
                f,
                "the catalogue has version {version} of service {service}, below the published v{published_version}: \
                 a published standard cannot be taken back; to return to older content, publish it as \
                 version {}",
                u64::from(*published_version) + 1
            ),
        }
    }
}

/// Why the standards could not be checked, published or recorded.
#[derive(Debug, thiserror::Error)]
pub enum StandardsError {
    /// The record file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The record file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The record file is malformed.
    #[error(
        "{}, line {line}: {detail} (this file is written by the service; if it is damaged, delete it after \
         checking that no standard changed without a version bump)",
        path.display()
    )]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// The line (1-based; 0 for the file as a whole).
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The record file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The record file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The catalogue changes a published standard in a way the hub would
    /// never apply: refuse to start.
    #[error("refusing to start: {}", conflicts_text(conflicts))]
    Conflicts {
        /// The record file.
        record: PathBuf,
        /// Every conflict, in catalogue order.
        conflicts: Vec<StandardConflict>,
    },
    /// Building or publishing a standard's event failed.
    #[error("cannot publish the service standards: {0}")]
    Publish(#[source] KitError),
}

fn conflicts_text(conflicts: &[StandardConflict]) -> String {
    let parts: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What to do with a catalogue: the standards to publish and the unchanged ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardsPlan<'a> {
    /// New services and higher versions, in catalogue order.
    pub publish: Vec<&'a ServiceStandardSpec>,
    /// Standards published before with this version and content.
    pub unchanged: Vec<&'a ServiceStandardSpec>,
}

/// The record of published standards of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedStandards {
    path: PathBuf,
    records: BTreeMap<ServiceId, PublishedStandard>,
}

impl PublishedStandards {
    /// Reads the record of the data directory `dir` (empty when the file
    /// does not exist yet).
    pub fn load(dir: &Path) -> Result<Self, StandardsError> {
        let path = dir.join(PUBLISHED_STANDARDS_FILE);
        let bytes = match crate::files::read_at_most(&path, PUBLISHED_STANDARDS_FILE_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { path, records: BTreeMap::new() })
            }
            Err(source) => return Err(StandardsError::Read { path, source }),
        };
        let corrupt =
            |line: usize, detail: String| StandardsError::Corrupt { path: path.clone(), line, detail };
        if bytes.len() as u64 > PUBLISHED_STANDARDS_FILE_BYTES_MAX {
            return Err(corrupt(0, format!("larger than {PUBLISHED_STANDARDS_FILE_BYTES_MAX} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| corrupt(0, "not UTF-8 text".to_owned()))?;
        let mut records = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [service, version, hash] = fields[..] else {
                return Err(corrupt(n, "expected <service_id> <version> <sha256-hex>".to_owned()));
            };
            let service =
                ServiceId::parse(service).map_err(|r| corrupt(n, format!("service id: {}", r.detail)))?;
            let version = version
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| corrupt(n, format!("version {version:?} is not a number from 1")))?;
            let content_sha256 = unhex(hash)
                .ok_or_else(|| corrupt(n, "the hash is not 64 lowercase hex digits".to_owned()))?;
            if records.len() >= PUBLISHED_STANDARDS_RECORDS_MAX {
                return Err(corrupt(n, format!("more than {PUBLISHED_STANDARDS_RECORDS_MAX} services")));
            }
            if records.insert(service.clone(), PublishedStandard { version, content_sha256 }).is_some() {
                return Err(corrupt(n, format!("service {service} appears twice")));
            }
        }
        Ok(Self { path, records })
    }

    /// The record file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was last published for `service`.
    pub fn get(&self, service: &ServiceId) -> Option<PublishedStandard> {
        self.records.get(service).copied()
    }

    /// Compares a catalogue with the record (see the module docs): what to
    /// publish and what is unchanged, or every conflict.
    pub fn plan<'a>(
        &self,
        standards: &'a [ServiceStandardSpec],
    ) -> Result<StandardsPlan<'a>, StandardsError> {
        let mut plan = StandardsPlan { publish: Vec::new(), unchanged: Vec::new() };
        let mut conflicts = Vec::new();
        for spec in standards {
            let Some(published) = self.get(&spec.service) else {
                plan.publish.push(spec);
                continue;
            };
            if spec.version > published.version {
                plan.publish.push(spec);
            } else if spec.version < published.version {
                conflicts.push(StandardConflict::VersionLowered {
                    service: spec.service.clone(),
                    version: spec.version,
                    published_version: published.version,
                });
            } else {
                let content = spec.content_sha256();
                if content == published.content_sha256 {
                    plan.unchanged.push(spec);
                } else {
                    conflicts.push(StandardConflict::ChangedWithoutBump {
                        service: spec.service.clone(),
                        version: spec.version,
                        published_sha256: published.content_sha256,
                        catalogue_sha256: content,
                    });
                }
            }
        }
        if conflicts.is_empty() {
            Ok(plan)
        } else {
            Err(StandardsError::Conflicts { record: self.path.clone(), conflicts })
        }
    }

    /// Records `spec` as published (in memory; see [`PublishedStandards::save`]).
    pub fn record(&mut self, spec: &ServiceStandardSpec) {
        self.records.insert(
            spec.service.clone(),
            PublishedStandard { version: spec.version, content_sha256: spec.content_sha256() },
        );
    }

    /// Writes the record: to a temporary file, synced, renamed over the old
    /// one, then the directory synced (created first if missing).
    pub fn save(&self) -> Result<(), StandardsError> {
        let write = |source| StandardsError::Write { path: self.path.clone(), source };
        let mut text = String::from(HEADER);
        for (service, p) in &self.records {
            text.push_str(&format!("{service} {} {}\n", p.version, hex(&p.content_sha256)));
        }
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(write)?;
        let tmp = self.path.with_extension("txt.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(write)?;
            f.write_all(text.as_bytes()).map_err(write)?;
            f.sync_all().map_err(write)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(write)?;
        // Makes the rename durable (POSIX); where directories cannot be
        // opened (Windows) the rename is as durable as the platform makes it.
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(write)?;
        }
        Ok(())
    }
}

/// What [`publish_standard_changes`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardsReport {
    /// The standards published, with their receipts, in catalogue order.
    pub published: Vec<(ServiceId, u32, Accepted)>,
    /// The services whose standard was already published, unchanged.
    pub unchanged: Vec<ServiceId>,
}

/// Publishes the standards of `standards` that changed since the record in
/// the data directory `dir` was written, and records them (see the module
/// docs). Refuses ([`StandardsError::Conflicts`]) without publishing
/// anything when a standard changed without a version bump or went down.
///
/// Each standard is recorded once the publisher accepted it; when a later
/// one fails, those accepted before are saved and the error returned.
pub async fn publish_standard_changes(
    agency: &Agency,
    standards: &[ServiceStandardSpec],
    dir: &Path,
) -> Result<StandardsReport, StandardsError> {
    let mut record = PublishedStandards::load(dir)?;
    let plan = record.plan(standards)?;
    for spec in &plan.unchanged {
        tracing::debug!(
            service = %spec.service,
            version = spec.version,
            "Service standard unchanged since it was published; not publishing it again"
        );
    }
    let mut report = StandardsReport {
        published: Vec::with_capacity(plan.publish.len()),
        unchanged: plan.unchanged.iter().map(|s| s.service.clone()).collect(),
    };
    if plan.publish.is_empty() {
        return Ok(report);
    }
    let mut failure = None;
    for spec in plan.publish {
        // `publish_standards` logs each one (service, version, event id).
        match agency.publish_standards(std::slice::from_ref(spec)).await {
            Ok(accepted) => {
                record.record(spec);
                for a in accepted {
                    report.published.push((spec.service.clone(), spec.version, a));
                }
            }
            Err(e) => {
                failure = Some(StandardsError::Publish(e));
                break;
            }
        }
    }
    let saved = if report.published.is_empty() { Ok(()) } else { record.save() };
    match (failure, saved) {
        (Some(e), Err(w)) => {
            tracing::error!(error = %w, "Cannot record the standards published before the failure");
            Err(e)
        }
        (Some(e), Ok(())) => Err(e),
        (None, Err(w)) => Err(w),
        (None, Ok(())) => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mpp_core::ids::{AgencyId, RegionCode};
    use mpp_proto::v1::envelope::Body;

    use super::*;
    use crate::catalogue::{parse_catalogue, standard_event_id};
    use crate::event::{EventBuilder, SystemClock};
    use crate::testing::MemoryPublisher;

    const PLN: &str = include_str!("../../../../deploy/catalogue/pln.toml");

    fn pln_id() -> AgencyId {
        AgencyId::parse("pln").unwrap()
    }

    fn sid(s: &str) -> ServiceId {
        ServiceId::parse(s).unwrap()
    }

    /// The PLN catalogue with these edits applied in order.
    fn catalogue(edits: &[(&str, &str)]) -> Vec<ServiceStandardSpec> {
        let mut text = PLN.to_owned();
        for (from, to) in edits {
            let next = text.replacen(from, to, 1);
            assert_ne!(next, text, "{from:?}");
            text = next;
        }
        parse_catalogue("pln.toml", &text, &pln_id(), &[sid("pasang-baru"), sid("tambah-daya")])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Raises pasang-baru (the first service) to version 2 with a new fee.
    const BUMP_PASANG_BARU: &[(&str, &str)] =
        &[("version = 1", "version = 2"), ("fee_idr = 1_259_700", "fee_idr = 1_500_000")];

    fn agency(publisher: Arc<MemoryPublisher>) -> Agency {
        let builder = EventBuilder::new(RegionCode::parse("1771").unwrap(), pln_id(), Arc::new(SystemClock));
        Agency::new(builder, publisher)
    }

    /// One start of the service: a fresh publisher on the data directory `dir`.
    async fn start(
        dir: &Path,
        standards: &[ServiceStandardSpec],
    ) -> (Result<StandardsReport, StandardsError>, Vec<crate::event::OutgoingEvent>) {
        let publisher = Arc::new(MemoryPublisher::new());
        let result = publish_standard_changes(&agency(publisher.clone()), standards, dir).await;
        (result, publisher.events())
    }

    #[tokio::test]
    async fn the_first_start_publishes_everything_and_an_unchanged_restart_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = catalogue(&[]);
        let (report, events) = start(dir.path(), &v1).await;
        let report = report.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            report.published.iter().map(|(s, v, _)| (s.as_str(), *v)).collect::<Vec<_>>(),
            [("pasang-baru", 1), ("tambah-daya", 1)]
        );
        assert!(report.unchanged.is_empty());
        let record = PublishedStandards::load(dir.path()).unwrap();
        assert_eq!(record.path(), dir.path().join(PUBLISHED_STANDARDS_FILE));
        for spec in &v1 {
            assert_eq!(
                record.get(&spec.service),
                Some(PublishedStandard { version: 1, content_sha256: spec.content_sha256() })
            );
        }

        let (report, events) = start(dir.path(), &v1).await;
        let report = report.unwrap();
        assert!(events.is_empty(), "nothing published again: {events:?}");
        assert!(report.published.is_empty());
        assert_eq!(report.unchanged, [sid("pasang-baru"), sid("tambah-daya")]);
    }

    #[tokio::test]
    async fn a_bumped_version_is_published_with_its_own_deterministic_id() {
        let dir = tempfile::tempdir().unwrap();
        start(dir.path(), &catalogue(&[])).await.0.unwrap();

        let v2 = catalogue(BUMP_PASANG_BARU);
        let (report, events) = start(dir.path(), &v2).await;
        let report = report.unwrap();
        assert_eq!(events.len(), 1, "only the bumped service");
        assert_eq!(report.unchanged, [sid("tambah-daya")]);
        let ev = &events[0];
        let v2_id = standard_event_id(&pln_id(), &sid("pasang-baru"), 2).hyphenated().to_string();
        assert_eq!(ev.event_id(), v2_id);
        assert_ne!(v2_id, standard_event_id(&pln_id(), &sid("pasang-baru"), 1).hyphenated().to_string());
        assert_eq!(report.published[0].2.event_id, v2_id);
        match &ev.envelope().body {
            Some(Body::ServiceStandardPublished(s)) => {
                assert_eq!((s.version, s.fee_idr, s.completion_working_days), (2, 1_500_000, 5));
            }
            other => panic!("{other:?}"),
        }
        let record = PublishedStandards::load(dir.path()).unwrap();
        assert_eq!(record.get(&sid("pasang-baru")).map(|p| p.version), Some(2));
        assert_eq!(record.get(&sid("tambah-daya")).map(|p| p.version), Some(1));
        // Unchanged from now on.
        assert!(start(dir.path(), &v2).await.1.is_empty());
    }

    #[tokio::test]
    async fn a_change_without_a_bump_refuses_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = catalogue(&[]);
        start(dir.path(), &v1).await.0.unwrap();
        let before = std::fs::read(dir.path().join(PUBLISHED_STANDARDS_FILE)).unwrap();

        // tambah-daya changes its fee but keeps version 1, while pasang-baru
        // is properly bumped: nothing at all is published.
        let mut edits = BUMP_PASANG_BARU.to_vec();
        edits.push(("fee_idr = 872_100", "fee_idr = 900_000"));
        let changed = catalogue(&edits);
        let (result, events) = start(dir.path(), &changed).await;
        assert!(events.is_empty(), "{events:?}");
        let err = result.unwrap_err();
        let StandardsError::Conflicts { record, conflicts } = &err else { panic!("{err:?}") };
        assert_eq!(record, &dir.path().join(PUBLISHED_STANDARDS_FILE));
        assert_eq!(
            conflicts,
            &[StandardConflict::ChangedWithoutBump {
                service: sid("tambah-daya"),
                version: 1,
                published_sha256: v1[1].content_sha256(),
                catalogue_sha256: changed[1].content_sha256(),
            }]
        );
        let msg = err.to_string();
        let expected = format!(
            "refusing to start: catalogue changed for service tambah-daya without bumping version (published v1 \
             content hash {}",
            hex(&v1[1].content_sha256())
        );
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(msg.contains("raise its version to 2"), "{msg}");
        assert_eq!(
            std::fs::read(dir.path().join(PUBLISHED_STANDARDS_FILE)).unwrap(),
            before,
            "record untouched"
        );
    }

    #[tokio::test]
    async fn a_lower_version_refuses() {
        let dir = tempfile::tempdir().unwrap();
        start(dir.path(), &catalogue(BUMP_PASANG_BARU)).await.0.unwrap();
        // Back to the shipped v1 content: lower than the published v2.
        let (result, events) = start(dir.path(), &catalogue(&[])).await;
        assert!(events.is_empty());
        let err = result.unwrap_err();
        let StandardsError::Conflicts { conflicts, .. } = &err else { panic!("{err:?}") };
        assert_eq!(
            conflicts,
            &[StandardConflict::VersionLowered {
                service: sid("pasang-baru"),
                version: 1,
                published_version: 2
            }]
        );
        assert!(err.to_string().contains("publish it as version 3"), "{err}");
        // The old content as version 3 is fine.
        let v3 = catalogue(&[("version = 1", "version = 3")]);
        let (report, events) = start(dir.path(), &v3).await;
        assert_eq!(report.unwrap().published.len(), 1);
        assert_eq!(
            events[0].event_id(),
            standard_event_id(&pln_id(), &sid("pasang-baru"), 3).hyphenated().to_string()
        );
    }

    #[tokio::test]
    async fn a_failed_publish_records_only_what_was_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = catalogue(&[]);
        let publisher = Arc::new(MemoryPublisher::failing_after(1));
        let err = publish_standard_changes(&agency(publisher.clone()), &v1, dir.path()).await.unwrap_err();
        assert!(matches!(err, StandardsError::Publish(KitError::Publish(_))), "{err:?}");
        assert_eq!(publisher.events().len(), 1);
        let record = PublishedStandards::load(dir.path()).unwrap();
        assert!(record.get(&sid("pasang-baru")).is_some());
        assert!(record.get(&sid("tambah-daya")).is_none());
        // The next start publishes the rest.
        let (report, events) = start(dir.path(), &v1).await;
        assert_eq!(report.unwrap().unchanged, [sid("pasang-baru")]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].envelope().service_id, "tambah-daya");
    }

    #[test]
    fn the_content_hash_covers_every_field_but_the_version() {
        let base = catalogue(&[]).remove(0);
        let h = base.content_sha256();
        assert_eq!(ServiceStandardSpec { version: 9, ..base.clone() }.content_sha256(), h);
        let variants = [
            ServiceStandardSpec { service: sid("tambah-daya"), ..base.clone() },
            ServiceStandardSpec { name_id: "Pasang Baru".into(), ..base.clone() },
            ServiceStandardSpec { name_en: "New connection".into(), ..base.clone() },
            ServiceStandardSpec { completion_working_days: 6, ..base.clone() },
            ServiceStandardSpec { fee_idr: 1, ..base.clone() },
            ServiceStandardSpec { fiktif_positif: true, ..base.clone() },
            ServiceStandardSpec {
                collection: Some(mpp_core::Collection { place: "Loket PLN".into(), within_working_days: 5 }),
                ..base.clone()
            },
            ServiceStandardSpec { requirements: base.requirements[1..].to_vec(), ..base.clone() },
            // Moving text between fields changes the hash too.
            ServiceStandardSpec {
                name_id: format!("{}{}", base.name_id, base.name_en),
                name_en: String::new(),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.content_sha256(), h, "{v:?}");
        }
    }

    #[test]
    fn a_damaged_record_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PUBLISHED_STANDARDS_FILE);
        let good = format!("pasang-baru 2 {}", "ab".repeat(32));
        for (text, line, detail) in [
            (format!("# x\n{good}\nkk 1\n"), 3, "expected <service_id> <version> <sha256-hex>"),
            (format!("{good}\nkk 0 {}\n", "00".repeat(32)), 2, "not a number from 1"),
            (format!("{good}\nkk 1 {}\n", "AB".repeat(32)), 2, "64 lowercase hex"),
            (format!("{good}\n{good}\n"), 2, "appears twice"),
            (format!("KK 1 {}\n", "00".repeat(32)), 1, "service id"),
        ] {
            std::fs::write(&path, &text).unwrap();
            match PublishedStandards::load(dir.path()) {
                Err(StandardsError::Corrupt { line: l, detail: d, .. }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(d.contains(detail), "{d}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let record = PublishedStandards::load(dir.path()).unwrap();
        assert_eq!(
            record.get(&sid("pasang-baru")),
            Some(PublishedStandard { version: 2, content_sha256: [0xab; 32] })
        );
        // Saving writes the header and the lines, and reads back the same.
        record.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Service standards this agency service"), "{text}");
        assert_eq!(PublishedStandards::load(dir.path()).unwrap(), record);
        assert!(!dir.path().join("published-standards.txt.tmp").exists());
    }
}
