//! Service standards (standar pelayanan): the catalogue files they come
//! from, their events, and publishing them when they change.
//!
//! Each agency's catalogue is a TOML file, `deploy/catalogue/<agency_id>.toml`
//! (format and rules in `deploy/catalogue/README.md`). The file shipped in
//! the repository is compiled into the agency's binary as its default
//! ([`BuiltinCatalogue`], `include_str!`), so there is one source of truth;
//! an MPP whose standards differ passes its own copy with `--catalogue-file`
//! (`MPP_CATALOGUE_FILE`). [`load_catalogue`] parses and validates either at
//! start with errors that name the file, line, service and field
//! ([`file`](mod@file)): the hub's own validation of a `service_standard_published`
//! body, unique service ids, and exactly the services the agency's RPCs can
//! file.
//!
//! The hub rejects application events of a service it has no standard for
//! (`UNKNOWN_SERVICE`), and a standard whose version is not above the one in
//! force (`STALE_STANDARD_VERSION`). An application keeps the standard in
//! force when it was filed, so a replay of the log uses the standard of the
//! time.
//!
//! A standard is published when it changes ([`published`]): the service
//! records, in its data directory, the version and content hash of each
//! standard it put into its outbox, and at start
//!
//! - publishes a service whose version is higher than the recorded one (or
//!   that was never published),
//! - skips one whose version and content are both unchanged,
//! - refuses to start when a service's content changed without a higher
//!   version, or its version went down.
//!
//! The event id of a standard is deterministic ([`standard_event_id`]): a
//! re-publication of the same version (after a crash between the outbox and
//! the record, or with the record deleted) is a duplicate the stream or the
//! hub drops. That is also why a change without a version bump must be
//! refused: its event would carry the id of the version already published,
//! and the hub would ignore it as a duplicate.

pub mod file;
pub mod published;

use mpp_core::event::Target;
use mpp_core::ids::{AgencyId, OfficerId, ServiceId};
use mpp_core::EventBody;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use self::file::{
    load_catalogue, parse_catalogue, BuiltinCatalogue, CatalogueError, CatalogueFault,
    CATALOGUE_FILE_BYTES_MAX, CATALOGUE_SERVICES_MAX,
};
pub use self::published::{
    publish_standard_changes, PublishedStandard, PublishedStandards, StandardConflict, StandardsError,
    StandardsPlan, StandardsReport, PUBLISHED_STANDARDS_FILE, PUBLISHED_STANDARDS_FILE_BYTES_MAX,
    PUBLISHED_STANDARDS_RECORDS_MAX,
};
use crate::error::KitError;
use crate::event::{EventBuilder, OutgoingEvent};

/// The officer recorded on events the service publishes by itself (catalogue).
pub const SYSTEM_OFFICER: &str = "system";

/// Unix milliseconds of 2020-01-01T00:00:00Z, the timestamp of version 0 in
/// [`standard_event_id`].
pub const STANDARD_EVENT_ID_EPOCH_MS: u64 = 1_577_836_800_000;

/// Domain tag of [`standard_event_id`].
pub const STANDARD_EVENT_ID_DOMAIN: &[u8] = b"mpp-standard-event-id-v1";

/// Domain tag of [`ServiceStandardSpec::content_sha256`].
pub const STANDARD_CONTENT_DOMAIN: &[u8] = b"mpp-standard-content-v1";

/// The standard of one service, as the agency declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStandardSpec {
    /// The service id, e.g. `kk`.
    pub service: ServiceId,
    /// Name in Bahasa Indonesia.
    pub name_id: String,
    /// Name in English.
    pub name_en: String,
    /// Completion time in working days (1..=365).
    pub completion_working_days: u32,
    /// Fee in whole rupiah (0 = free).
    pub fee_idr: i64,
    /// Requirements (documents), each one line.
    pub requirements: Vec<String>,
    /// Approval is granted by default at the deadline.
    pub fiktif_positif: bool,
    /// The agency's version of this standard; raise it on every change.
    pub version: u32,
    /// Where and by when the citizen collects what the service hands over;
    /// `None` when nothing is collected (a connection, an account).
    pub collection: Option<mpp_core::Collection>,
}

/// The event id of version `version` of the standard of `agency`/`service`:
/// a valid UUIDv7 that depends on nothing else.
///
/// - timestamp (48 bits): [`STANDARD_EVENT_ID_EPOCH_MS`] + `version`, so the
///   ids of a service's versions sort by version;
/// - the 74 random bits: the first bytes of
///   `SHA-256("mpp-standard-event-id-v1" || 0x00 || agency || 0x00 || service || 0x00 || u32_be(version))`;
/// - version and variant bits as RFC 9562 requires.
///
/// An agency re-publishes its standards on every start with the same id:
/// within JetStream's duplicate window the PubAck says `duplicate`, after it
/// the hub records a `DUPLICATE` verdict with no effect. Neither is an error.
/// The timestamp is not a time of anything (the hub's time of record is the
/// JetStream timestamp).
pub fn standard_event_id(agency: &AgencyId, service: &ServiceId, version: u32) -> Uuid {
    let mut h = Sha256::new();
    h.update(STANDARD_EVENT_ID_DOMAIN);
    h.update([0u8]);
    h.update(agency.as_str().as_bytes());
    h.update([0u8]);
    h.update(service.as_str().as_bytes());
    h.update([0u8]);
    h.update(version.to_be_bytes());
    let digest = h.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(STANDARD_EVENT_ID_EPOCH_MS + u64::from(version), &random)
        .into_uuid()
}

impl ServiceStandardSpec {
    /// The SHA-256 of what this standard says, without its version:
    /// `SHA-256("mpp-standard-content-v1" || 0x00 || service || name_id ||
    /// name_en || u32_be(completion_working_days) || i64_be(fee_idr) ||
    /// u32_be(requirement count) || each requirement || u8(fiktif_positif)
    /// [|| 0x01 || collection place || u32_be(within_working_days)])`,
    /// each text as `u64_be(byte length) || UTF-8 bytes`. Two standards of
    /// a service with the same hash say the same thing.
    pub fn content_sha256(&self) -> [u8; 32] {
        fn text(h: &mut Sha256, s: &str) {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        let mut h = Sha256::new();
        h.update(STANDARD_CONTENT_DOMAIN);
        h.update([0u8]);
        text(&mut h, self.service.as_str());
        text(&mut h, &self.name_id);
        text(&mut h, &self.name_en);
        h.update(self.completion_working_days.to_be_bytes());
        h.update(self.fee_idr.to_be_bytes());
        // A catalogue holds at most `limits::LIST_ITEMS_MAX` requirements.
        h.update(u32::try_from(self.requirements.len()).unwrap_or(u32::MAX).to_be_bytes());
        for r in &self.requirements {
            text(&mut h, r);
        }
        h.update([u8::from(self.fiktif_positif)]);
        // Only a standard with a collection hashes one, so every hash
        // recorded before the field existed still matches its standard.
        if let Some(c) = &self.collection {
            h.update([1u8]);
            text(&mut h, &c.place);
            h.update(c.within_working_days.to_be_bytes());
        }
        h.finalize().into()
    }

    /// The `service_standard_published` event of this standard, with its
    /// deterministic id.
    pub fn to_event(&self, builder: &EventBuilder) -> Result<OutgoingEvent, KitError> {
        let officer = OfficerId::parse(SYSTEM_OFFICER).map_err(KitError::Event)?;
        builder.build_with_id(
            standard_event_id(builder.agency(), &self.service, self.version),
            &self.service,
            Target::Catalogue,
            &officer,
            EventBody::ServiceStandardPublished {
                name_id: self.name_id.clone(),
                name_en: self.name_en.clone(),
                completion_working_days: self.completion_working_days,
                fee_idr: self.fee_idr,
                requirements: self.requirements.clone(),
                fiktif_positif: self.fiktif_positif,
                version: self.version,
                collection: self.collection.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mpp_core::ids::{EventId, RegionCode};

    use super::*;
    use crate::event::SystemClock;

    fn ids(agency: &str, service: &str, version: u32) -> Uuid {
        standard_event_id(&AgencyId::parse(agency).unwrap(), &ServiceId::parse(service).unwrap(), version)
    }

    #[test]
    fn standard_ids_are_valid_v7_and_stable() {
        let a = ids("dukcapil", "kk", 1);
        assert_eq!(a, ids("dukcapil", "kk", 1), "stable");
        assert_eq!(a.get_version_num(), 7);
        let parsed = EventId::parse(&a.hyphenated().to_string()).unwrap();
        assert_eq!(parsed.unix_ms(), STANDARD_EVENT_ID_EPOCH_MS + 1);
        // Pinned value: changing the construction changes every published id,
        // which would make each agency re-publish its standards as new events.
        assert_eq!(a.hyphenated().to_string(), PINNED_DUKCAPIL_KK_V1);
        assert_ne!(a, ids("dukcapil", "kk", 2));
        assert_ne!(a, ids("dukcapil", "ktp-el", 1));
        assert_ne!(a, ids("imigrasi", "kk", 1));
        assert!(ids("dukcapil", "kk", 1) < ids("dukcapil", "kk", 2), "versions sort");
    }

    const PINNED_DUKCAPIL_KK_V1: &str = "016f5e66-e801-746c-8181-a00ec8b68ea8";

    #[test]
    fn spec_builds_a_catalogue_event() {
        let b = EventBuilder::new(
            RegionCode::parse("1771").unwrap(),
            AgencyId::parse("dukcapil").unwrap(),
            Arc::new(SystemClock),
        );
        let spec = crate::testing::kk_standard();
        let ev = spec.to_event(&b).unwrap();
        assert_eq!(ev.event_id(), ids("dukcapil", "kk", 1).hyphenated().to_string());
        assert!(ev.envelope().case_id.is_empty() && ev.envelope().application_id.is_empty());
        assert_eq!(ev.envelope().officer, SYSTEM_OFFICER);
        let bad = ServiceStandardSpec { completion_working_days: 0, ..spec };
        assert!(bad.to_event(&b).is_err());
    }
}
