//! Catalogue files (`deploy/catalogue/<agency_id>.toml`): reading, parsing
//! and validation.
//!
//! A catalogue names its agency and holds one `[[service]]` table per
//! service, every field required and no other allowed:
//!
//! ```toml
//! agency = "pln"
//!
//! [[service]]
//! id = "pasang-baru"
//! version = 1
//! name_id = "Pasang Baru Listrik"
//! name_en = "New electricity connection"
//! completion_working_days = 5
//! fee_idr = 1_259_700
//! fiktif_positif = false
//! requirements = ["KTP-el pemohon", "Sertifikat Laik Operasi (SLO)"]
//! ```
//!
//! Validation, in this order, collecting the first fault of every service:
//!
//! 1. the file is at most [`CATALOGUE_FILE_BYTES_MAX`] bytes of UTF-8 TOML
//!    of exactly that shape;
//! 2. `agency` is the agency of the binary reading it;
//! 3. at most [`CATALOGUE_SERVICES_MAX`] services;
//! 4. per service: `id` is a valid service id, one of the agency's services,
//!    not defined twice; then each field alone, and the whole standard,
//!    pass the hub's own validation of a `service_standard_published` event
//!    ([`mpp_core::validate::validate`]: texts, 1..=365 working days, a fee
//!    of 0..=10¹² rupiah, at most 32 requirements, version ≥ 1);
//! 5. every service the agency's RPCs can file has a standard.
//!
//! Every fault names the file and, where it has them, the line, service and
//! field ([`CatalogueFault`]).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use mpp_core::event::UncheckedEnvelope;
use mpp_core::ids::{AgencyId, ServiceId};
use mpp_core::validate::{subject_for, validate, SCHEMA_VERSION};
use mpp_core::{EventBody, Rejection};
use serde::Deserialize;
use toml::Spanned;

use super::{standard_event_id, ServiceStandardSpec, STANDARD_EVENT_ID_EPOCH_MS, SYSTEM_OFFICER};

/// Largest catalogue file, in bytes. The largest valid standard is about
/// 17 KiB (32 requirements of 500 bytes); real ones are below 1 KiB.
pub const CATALOGUE_FILE_BYTES_MAX: u64 = 256 * 1024;

/// Most services in one catalogue.
pub const CATALOGUE_SERVICES_MAX: usize = 64;

/// The region code of the envelopes built to validate a catalogue: a
/// catalogue event's region takes no part in its validation beyond being a
/// valid code (the event published later carries the MPP's own).
const VALIDATION_REGION: &str = "1771";

/// The time of record of those envelopes, Unix ms: the catalogue's validity
/// does not depend on the clock.
const VALIDATION_AT_MS: i64 = STANDARD_EVENT_ID_EPOCH_MS as i64;

/// An agency's built-in catalogue: the file shipped under
/// `deploy/catalogue/`, compiled into the binary.
///
/// ```text
/// pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
///     path: "deploy/catalogue/pln.toml",
///     text: include_str!("../../../deploy/catalogue/pln.toml"),
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinCatalogue {
    /// The file's path in the repository, for error messages.
    pub path: &'static str,
    /// The file's text.
    pub text: &'static str,
}

impl BuiltinCatalogue {
    /// Parses and validates the built-in catalogue (see [`parse_catalogue`]).
    pub fn parse(
        &self,
        agency: &AgencyId,
        services: &[ServiceId],
    ) -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
        parse_catalogue(&format!("{} (built in)", self.path), self.text, agency, services)
    }
}

/// One fault of a catalogue, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueFault {
    /// The file (a path, or the built-in file's path with "(built in)").
    pub file: String,
    /// The line (1-based), where the fault has one.
    pub line: Option<usize>,
    /// The service, where the fault is in one.
    pub service: Option<String>,
    /// The field (`id`, `version`, `completion_working_days`, ...).
    pub field: Option<String>,
    /// What is wrong, as a sentence.
    pub detail: String,
}

impl fmt::Display for CatalogueFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(service) = &self.service {
            write!(f, ", service {service}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Why a catalogue cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read.
    #[error("cannot read the catalogue file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`CATALOGUE_FILE_BYTES_MAX`].
    #[error("the catalogue file {} is larger than {CATALOGUE_FILE_BYTES_MAX} bytes", file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
    },
    /// The catalogue is malformed or invalid: every fault found, at least one.
    #[error("{}", faults_text(.0))]
    Invalid(Vec<CatalogueFault>),
    /// The binary's own agency or service ids are invalid (a bug of the binary).
    #[error("invalid agency or service id in the agency binary: {0}")]
    Binary(#[source] Rejection),
}

impl CatalogueError {
    /// The faults of an [`CatalogueError::Invalid`] catalogue (empty otherwise).
    pub fn faults(&self) -> &[CatalogueFault] {
        match self {
            CatalogueError::Invalid(faults) => faults,
            _ => &[],
        }
    }
}

fn faults_text(faults: &[CatalogueFault]) -> String {
    match faults {
        [one] => format!("invalid service catalogue: {one}"),
        many => {
            let lines: Vec<String> = many.iter().map(|f| format!("\n  {f}")).collect();
            format!("invalid service catalogue ({} faults):{}", many.len(), lines.concat())
        }
    }
}

/// The catalogue of `agency`: the file `file` when given
/// (`--catalogue-file`), else the built-in one; parsed and validated (see
/// [`parse_catalogue`]).
pub fn load_catalogue(
    file: Option<&Path>,
    builtin: &BuiltinCatalogue,
    agency: &AgencyId,
    services: &[ServiceId],
) -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    let Some(path) = file else {
        return builtin.parse(agency, services);
    };
    let read = |source| CatalogueError::Read { file: path.to_owned(), source };
    let bytes = crate::files::read_at_most(path, CATALOGUE_FILE_BYTES_MAX).map_err(read)?;
    if bytes.len() as u64 > CATALOGUE_FILE_BYTES_MAX {
        return Err(CatalogueError::TooLarge { file: path.to_owned() });
    }
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        CatalogueError::Invalid(vec![CatalogueFault {
            file: origin.clone(),
            line: None,
            service: None,
            field: None,
            detail: format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        }])
    })?;
    parse_catalogue(&origin, &text, agency, services)
}

/// The file's shape. Every field is required; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    agency: Spanned<String>,
    #[serde(rename = "service")]
    services: Vec<Spanned<RawService>>,
}

/// One `[[service]]` table. Numbers are read as TOML integers (i64) so that
/// a value out of range gets the hub's message, not a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Spanned<String>,
    version: Spanned<i64>,
    name_id: Spanned<String>,
    name_en: Spanned<String>,
    completion_working_days: Spanned<i64>,
    fee_idr: Spanned<i64>,
    fiktif_positif: Spanned<bool>,
    requirements: Spanned<Vec<Spanned<String>>>,
    /// Where the issued document is collected (optional, with
    /// `collect_within_working_days`; absent when nothing is collected).
    collect_at: Option<Spanned<String>>,
    /// Working days after the issue it waits there.
    collect_within_working_days: Option<Spanned<i64>>,
}

/// Where faults are reported.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// A fault for a TOML syntax or shape error: its message in plainer
    /// words, and the text of the line it points at.
    fn syntax(&self, e: &toml::de::Error) -> CatalogueFault {
        let mut detail = e.message().trim().replace("expected i64", "expected a whole number");
        if let Some(span) = e.span() {
            let start = span.start.min(self.text.len());
            let line_start =
                self.text.as_bytes()[..start].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let line = self.text[line_start..].lines().next().unwrap_or("").trim();
            if !line.is_empty() {
                detail = format!("{detail} (in `{line}`)");
            }
        }
        self.fault(e.span(), None, None, detail)
    }

    fn fault(
        &self,
        span: Option<Range<usize>>,
        service: Option<&str>,
        field: Option<&str>,
        detail: impl Into<String>,
    ) -> CatalogueFault {
        CatalogueFault {
            file: self.origin.to_owned(),
            line: span.map(|s| self.line(&s)),
            service: service.map(str::to_owned),
            field: field.map(str::to_owned),
            detail: detail.into(),
        }
    }
}

/// Parses and validates the catalogue text `text` (read from `origin`, named
/// in every fault) of `agency`, whose RPCs can file exactly `services` (see
/// the module docs for the rules). The standards come back in file order.
pub fn parse_catalogue(
    origin: &str,
    text: &str,
    agency: &AgencyId,
    services: &[ServiceId],
) -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    let src = Source { origin, text };
    let raw: RawCatalogue =
        toml::from_str(text).map_err(|e| CatalogueError::Invalid(vec![src.syntax(&e)]))?;
    if raw.agency.get_ref() != agency.as_str() {
        return Err(CatalogueError::Invalid(vec![src.fault(
            Some(raw.agency.span()),
            None,
            Some("agency"),
            format!(
                "this is the catalogue of {:?}, but this service is {agency}: use the catalogue of {agency}",
                raw.agency.get_ref()
            ),
        )]));
    }
    if raw.services.len() > CATALOGUE_SERVICES_MAX {
        return Err(CatalogueError::Invalid(vec![src.fault(
            None,
            None,
            None,
            format!("{} services, more than the limit of {CATALOGUE_SERVICES_MAX}", raw.services.len()),
        )]));
    }
    let mut faults = Vec::new();
    let mut seen: BTreeMap<ServiceId, usize> = BTreeMap::new();
    let mut specs = Vec::with_capacity(raw.services.len());
    for table in &raw.services {
        match check_service(&src, agency, services, &mut seen, table) {
            Ok(spec) => specs.push(spec),
            Err(fault) => faults.push(fault),
        }
    }
    let missing: Vec<&str> = services.iter().filter(|s| !seen.contains_key(*s)).map(|s| s.as_str()).collect();
    if !missing.is_empty() {
        faults.push(src.fault(
            None,
            None,
            None,
            format!(
                "no standard for {}: every service {agency} can file needs one (add a [[service]] table with id = {:?})",
                missing.join(", "),
                missing[0]
            ),
        ));
    }
    if faults.is_empty() {
        Ok(specs)
    } else {
        Err(CatalogueError::Invalid(faults))
    }
}

/// The hub's rule behind a rejection, as a sentence.
fn hub_rule(r: &Rejection) -> String {
    format!("{} (the hub would reject the standard with {})", r.detail, r.code)
}

/// Checks one `[[service]]` table: its id, then each field alone through
/// the hub's validation, then the whole standard.
fn check_service(
    src: &Source<'_>,
    agency: &AgencyId,
    services: &[ServiceId],
    seen: &mut BTreeMap<ServiceId, usize>,
    table: &Spanned<RawService>,
) -> Result<ServiceStandardSpec, CatalogueFault> {
    let r = table.get_ref();
    let id = r.id.get_ref().as_str();
    let at = |span: Range<usize>, field: &str, detail: String| {
        src.fault(Some(span), Some(id), Some(field), detail)
    };
    let service = ServiceId::parse(id).map_err(|e| at(r.id.span(), "id", hub_rule(&e)))?;
    if !services.contains(&service) {
        let known: Vec<&str> = services.iter().map(|s| s.as_str()).collect();
        return Err(at(
            r.id.span(),
            "id",
            format!("{id} is not a service of {agency}; its services are {}", known.join(", ")),
        ));
    }
    let line = src.line(&r.id.span());
    if let Some(first) = seen.insert(service.clone(), line) {
        return Err(at(r.id.span(), "id", format!("{id} is defined twice (first on line {first})")));
    }
    let version = match u32::try_from(*r.version.get_ref()) {
        Ok(v) => v,
        // Negative: the hub's "at least 1" says it.
        Err(_) if *r.version.get_ref() < 0 => 0,
        Err(_) => {
            return Err(at(r.version.span(), "version", format!("version must be at most {}", u32::MAX)))
        }
    };
    // Out of range either way: the hub's "between 1 and 365" says it.
    let days = u32::try_from(*r.completion_working_days.get_ref()).unwrap_or(0);
    let requirements: Vec<String> = r.requirements.get_ref().iter().map(|s| s.get_ref().clone()).collect();
    let collection = match (&r.collect_at, &r.collect_within_working_days) {
        (None, None) => None,
        (Some(place), Some(days)) => Some(mpp_core::Collection {
            place: place.get_ref().clone(),
            // Out of range either way: the hub's "between 1 and 365" says it.
            within_working_days: u32::try_from(*days.get_ref()).unwrap_or(0),
        }),
        (Some(place), None) => {
            return Err(at(
                place.span(),
                "collect_at",
                "collect_at needs collect_within_working_days: how long the document waits there".to_owned(),
            ))
        }
        (None, Some(days)) => {
            return Err(at(
                days.span(),
                "collect_within_working_days",
                "collect_within_working_days needs collect_at: where the document is collected".to_owned(),
            ))
        }
    };
    let spec = ServiceStandardSpec {
        service,
        name_id: r.name_id.get_ref().clone(),
        name_en: r.name_en.get_ref().clone(),
        completion_working_days: days,
        fee_idr: *r.fee_idr.get_ref(),
        requirements,
        fiktif_positif: *r.fiktif_positif.get_ref(),
        version,
        collection,
    };
    // Each field alone on an otherwise valid standard, so that a rejection
    // names the field (and the line) at fault.
    let base = ServiceStandardSpec {
        service: spec.service.clone(),
        name_id: "-".to_owned(),
        name_en: String::new(),
        completion_working_days: 1,
        fee_idr: 0,
        requirements: Vec::new(),
        fiktif_positif: false,
        version: 1,
        collection: None,
    };
    let probes: [(&str, Range<usize>, ServiceStandardSpec); 5] = [
        ("version", r.version.span(), ServiceStandardSpec { version, ..base.clone() }),
        ("name_id", r.name_id.span(), ServiceStandardSpec { name_id: spec.name_id.clone(), ..base.clone() }),
        ("name_en", r.name_en.span(), ServiceStandardSpec { name_en: spec.name_en.clone(), ..base.clone() }),
        (
            "completion_working_days",
            r.completion_working_days.span(),
            ServiceStandardSpec { completion_working_days: days, ..base.clone() },
        ),
        ("fee_idr", r.fee_idr.span(), ServiceStandardSpec { fee_idr: spec.fee_idr, ..base.clone() }),
    ];
    for (field, span, probe) in probes {
        hub_validate(agency, &probe).map_err(|e| at(span, field, hub_rule(&e)))?;
    }
    for item in r.requirements.get_ref() {
        if item.get_ref().trim().is_empty() {
            return Err(at(
                item.span(),
                "requirements",
                "an empty requirement: remove it, or write what the citizen brings".to_owned(),
            ));
        }
        let probe = ServiceStandardSpec { requirements: vec![item.get_ref().clone()], ..base.clone() };
        hub_validate(agency, &probe).map_err(|e| at(item.span(), "requirements", hub_rule(&e)))?;
    }
    if let (Some(c), Some(span)) = (&spec.collection, r.collect_at.as_ref().map(Spanned::span)) {
        let probe = ServiceStandardSpec { collection: Some(c.clone()), ..base.clone() };
        hub_validate(agency, &probe).map_err(|e| at(span, "collect_at", hub_rule(&e)))?;
    }
    let probe = ServiceStandardSpec { requirements: spec.requirements.clone(), ..base };
    hub_validate(agency, &probe).map_err(|e| at(r.requirements.span(), "requirements", hub_rule(&e)))?;
    hub_validate(agency, &spec).map_err(|e| src.fault(Some(table.span()), Some(id), None, hub_rule(&e)))?;
    Ok(spec)
}

/// The hub's validation of the `service_standard_published` event of `spec`.
fn hub_validate(agency: &AgencyId, spec: &ServiceStandardSpec) -> Result<(), Rejection> {
    let u = UncheckedEnvelope {
        schema_version: SCHEMA_VERSION,
        event_id: standard_event_id(agency, &spec.service, spec.version).hyphenated().to_string(),
        case_id: String::new(),
        region_code: VALIDATION_REGION.to_owned(),
        agency_id: agency.to_string(),
        service_id: spec.service.to_string(),
        application_id: String::new(),
        occurred_at_ms: VALIDATION_AT_MS,
        officer: SYSTEM_OFFICER.to_owned(),
        body: Some(EventBody::ServiceStandardPublished {
            name_id: spec.name_id.clone(),
            name_en: spec.name_en.clone(),
            completion_working_days: spec.completion_working_days,
            fee_idr: spec.fee_idr,
            requirements: spec.requirements.clone(),
            fiktif_positif: spec.fiktif_positif,
            version: spec.version,
            collection: spec.collection.clone(),
        }),
    };
    validate(&subject_for(agency, &spec.service), &u, VALIDATION_AT_MS).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// The shipped PLN catalogue: two services, the base of the fault cases.
    const PLN: &str = include_str!("../../../../deploy/catalogue/pln.toml");

    fn pln() -> (AgencyId, Vec<ServiceId>) {
        let services = ["pasang-baru", "tambah-daya"].map(|s| ServiceId::parse(s).unwrap()).to_vec();
        (AgencyId::parse("pln").unwrap(), services)
    }

    /// The PLN catalogue with the first `from` replaced by `to`.
    fn edited(from: &str, to: &str) -> String {
        let text = PLN.replacen(from, to, 1);
        assert_ne!(text, PLN, "{from:?} is not in the catalogue");
        text
    }

    fn faults(text: &str) -> Vec<CatalogueFault> {
        let (agency, services) = pln();
        match parse_catalogue("pln.toml", text, &agency, &services) {
            Err(CatalogueError::Invalid(f)) => f,
            other => panic!("expected faults, got {other:?}"),
        }
    }

    /// The 1-based line of the first occurrence of `needle` in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?}"));
        text[..at].matches('\n').count() + 1
    }

    #[test]
    fn every_shipped_catalogue_parses_and_passes_the_hubs_rules() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/catalogue");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.contains("REFUSES TO START"),
                "{}: the header explains version bumps",
                path.display()
            );
            // The services a file must have are its own (the agency crates
            // check them against their RPCs); the agency is the file's name.
            let table: toml::Table = toml::from_str(&text).unwrap();
            let services: Vec<ServiceId> = table["service"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| ServiceId::parse(s["id"].as_str().unwrap()).unwrap())
                .collect();
            let agency = AgencyId::parse(path.file_stem().unwrap().to_str().unwrap()).unwrap();
            let specs = load_catalogue(
                Some(&path),
                &BuiltinCatalogue { path: "unused", text: "" },
                &agency,
                &services,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(specs.iter().map(|s| s.service.clone()).collect::<Vec<_>>(), services);
            for spec in &specs {
                assert!(spec.version >= 1 && !spec.requirements.is_empty(), "{}/{}", agency, spec.service);
            }
        }
        assert!(seen >= 7, "only {seen} catalogues in {}", dir.display());
    }

    #[test]
    fn the_pln_catalogue_reads_every_field() {
        let (agency, services) = pln();
        let specs = parse_catalogue("pln.toml", PLN, &agency, &services).unwrap();
        let s = &specs[0];
        assert_eq!(s.service.as_str(), "pasang-baru");
        assert_eq!(
            (s.name_id.as_str(), s.name_en.as_str()),
            ("Pasang Baru Listrik", "New electricity connection")
        );
        assert_eq!(
            (s.completion_working_days, s.fee_idr, s.fiktif_positif, s.version),
            (5, 1_259_700, false, 1)
        );
        assert_eq!(s.requirements.len(), 4);
        assert_eq!(s.requirements[0], "KTP-el pemohon");
    }

    /// Each fault case: the edit, then the expected line (of the edited
    /// text), service, field and a part of the detail.
    #[test]
    fn faults_name_the_file_line_service_and_field() {
        struct Case {
            from: &'static str,
            to: &'static str,
            line_of: &'static str,
            service: Option<&'static str>,
            field: Option<&'static str>,
            detail: &'static str,
        }
        let cases = [
            Case {
                from: "completion_working_days = 5\n",
                to: "completion_working_days = 0\n",
                line_of: "completion_working_days = 0",
                service: Some("pasang-baru"),
                field: Some("completion_working_days"),
                detail: "between 1 and 365",
            },
            Case {
                from: "completion_working_days = 5\nfee_idr = 872_100",
                to: "completion_working_days = 366\nfee_idr = 872_100",
                line_of: "completion_working_days = 366",
                service: Some("tambah-daya"),
                field: Some("completion_working_days"),
                detail: "INVALID_FIELD_VALUE",
            },
            Case {
                from: "completion_working_days = 5\n",
                to: "completion_working_days = -3\n",
                line_of: "completion_working_days = -3",
                service: Some("pasang-baru"),
                field: Some("completion_working_days"),
                detail: "between 1 and 365",
            },
            Case {
                from: "fee_idr = 872_100",
                to: "fee_idr = -1",
                line_of: "fee_idr = -1",
                service: Some("tambah-daya"),
                field: Some("fee_idr"),
                detail: "fee_idr must be between 0 and",
            },
            Case {
                from: "fee_idr = 872_100",
                to: "fee_idr = 1_000_000_000_001",
                line_of: "fee_idr = 1_000_000_000_001",
                service: Some("tambah-daya"),
                field: Some("fee_idr"),
                detail: "rupiah",
            },
            Case {
                from: "version = 1\nname_id = \"Tambah",
                to: "version = 0\nname_id = \"Tambah",
                line_of: "version = 0",
                service: Some("tambah-daya"),
                field: Some("version"),
                detail: "version must be at least 1",
            },
            Case {
                from: "version = 1\n",
                to: "version = 4294967296\n",
                line_of: "version = 4294967296",
                service: Some("pasang-baru"),
                field: Some("version"),
                detail: "at most 4294967295",
            },
            Case {
                from: "name_id = \"Pasang Baru Listrik\"",
                to: "name_id = \"  \"",
                line_of: "name_id = \"  \"",
                service: Some("pasang-baru"),
                field: Some("name_id"),
                detail: "name_id is required",
            },
            Case {
                from: "name_en = \"Electricity power upgrade\"",
                to: "name_en = \"Power\\u202Eupgrade\"",
                line_of: "name_en = \"Power",
                service: Some("tambah-daya"),
                field: Some("name_en"),
                detail: "bidirectional override",
            },
            Case {
                from: "    \"ID pelanggan atau rekening listrik terakhir\",",
                to: "    \"\",",
                line_of: "    \"\",",
                service: Some("tambah-daya"),
                field: Some("requirements"),
                detail: "an empty requirement",
            },
            Case {
                from: "    \"Denah lokasi atau titik koordinat bangunan\",",
                to: "    \"Denah\\nlokasi\",",
                line_of: "    \"Denah\\nlokasi\",",
                service: Some("pasang-baru"),
                field: Some("requirements"),
                detail: "control",
            },
            Case {
                from: "id = \"tambah-daya\"",
                to: "id = \"Tambah Daya\"",
                line_of: "id = \"Tambah Daya\"",
                service: Some("Tambah Daya"),
                field: Some("id"),
                detail: "MALFORMED_SERVICE_ID",
            },
            Case {
                from: "agency = \"pln\"",
                to: "agency = \"pdam\"",
                line_of: "agency = \"pdam\"",
                service: None,
                field: Some("agency"),
                detail: "this is the catalogue of \"pdam\", but this service is pln",
            },
            Case {
                from: "completion_working_days = 5\n",
                to: "completion_working_days = \"lima\"\n",
                line_of: "completion_working_days = \"lima\"",
                service: None,
                field: None,
                detail: "expected a whole number (in `completion_working_days = \"lima\"`)",
            },
            Case {
                from: "fee_idr = 872_100",
                to: "fee = 872_100",
                line_of: "fee = 872_100",
                service: None,
                field: None,
                detail: "unknown field `fee`",
            },
            Case {
                from: "fiktif_positif = false\nrequirements = [\n    \"KTP-el pemohon\",\n    \"ID",
                to: "requirements = [\n    \"KTP-el pemohon\",\n    \"ID",
                line_of: "[[service]]\nid = \"tambah-daya\"",
                service: None,
                field: None,
                detail: "missing field `fiktif_positif`",
            },
            Case {
                from: "agency = \"pln\"",
                to: "agency = \"pln",
                line_of: "agency = \"pln",
                service: None,
                field: None,
                detail: "",
            },
        ];
        for c in cases {
            let text = edited(c.from, c.to);
            let f = faults(&text);
            // A malformed id also leaves the service it should be missing.
            let expected_faults = if c.field == Some("id") { 2 } else { 1 };
            assert_eq!(f.len(), expected_faults, "{:?} → {:?}: {f:?}", c.from, c.to);
            let f = &f[0];
            let want = CatalogueFault {
                file: "pln.toml".to_owned(),
                line: Some(line_of(&text, c.line_of)),
                service: c.service.map(str::to_owned),
                field: c.field.map(str::to_owned),
                detail: f.detail.clone(),
            };
            assert_eq!(f, &want, "{:?} → {:?}", c.from, c.to);
            assert!(f.detail.contains(c.detail), "{:?} → {:?}: {}", c.from, c.to, f.detail);
            // The message carries all of it.
            let msg = CatalogueError::Invalid(vec![f.clone()]).to_string();
            assert!(
                msg.starts_with(&format!("invalid service catalogue: pln.toml, line {}", want.line.unwrap()))
            );
            if let Some(field) = c.field {
                assert!(msg.contains(&format!(", field {field}: ")), "{msg}");
            }
        }
    }

    #[test]
    fn every_service_gets_its_first_fault_and_missing_and_unknown_services_are_named() {
        // Both services broken, in different fields.
        let text = edited("completion_working_days = 5\n", "completion_working_days = 0\n").replacen(
            "fee_idr = 872_100",
            "fee_idr = -5",
            1,
        );
        let f = faults(&text);
        let got: Vec<(Option<&str>, Option<&str>)> =
            f.iter().map(|f| (f.service.as_deref(), f.field.as_deref())).collect();
        assert_eq!(
            got,
            [(Some("pasang-baru"), Some("completion_working_days")), (Some("tambah-daya"), Some("fee_idr"))]
        );
        let msg = CatalogueError::Invalid(f).to_string();
        assert!(msg.starts_with("invalid service catalogue (2 faults):\n  pln.toml, line "), "{msg}");

        // A service defined twice, so the other is missing.
        let text = edited("id = \"tambah-daya\"", "id = \"pasang-baru\"");
        let f = faults(&text);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].service.as_deref(), Some("pasang-baru"));
        assert_eq!(f[0].line, Some(line_of(&text, "id = \"pasang-baru\"\nversion = 1\nname_id = \"Tambah")));
        assert!(f[0].detail.contains(&format!("defined twice (first on line {})", line_of(&text, "id = "))));
        assert_eq!((f[1].line, f[1].service.as_deref(), f[1].field.as_deref()), (None, None, None));
        assert!(f[1].detail.starts_with("no standard for tambah-daya: every service pln can file needs one"));

        // A service the agency's RPCs cannot file.
        let text = edited("id = \"tambah-daya\"", "id = \"tambah_daya\"");
        let f = faults(&text);
        assert_eq!(f[0].field.as_deref(), Some("id"));
        assert!(f[0]
            .detail
            .contains("tambah_daya is not a service of pln; its services are pasang-baru, tambah-daya"));

        // Too many services.
        let table = PLN[PLN.find("[[service]]\nid = \"tambah-daya\"").unwrap()..].to_owned();
        let mut text = PLN.to_owned();
        for i in 0..CATALOGUE_SERVICES_MAX {
            text.push('\n');
            text.push_str(&table.replacen("tambah-daya", &format!("extra-{i}"), 1));
        }
        let f = faults(&text);
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains(&format!("more than the limit of {CATALOGUE_SERVICES_MAX}")), "{f:?}");
    }

    #[test]
    fn limits_of_the_lists_are_the_hubs() {
        let many: String = (0..33).map(|i| format!("    \"Syarat {i}\",\n")).collect();
        let text = edited("    \"KTP-el pemohon\",\n    \"Sertifikat", &format!("{many}    \"Sertifikat"));
        let f = faults(&text);
        assert_eq!(
            (f[0].service.as_deref(), f[0].field.as_deref()),
            (Some("pasang-baru"), Some("requirements"))
        );
        assert_eq!(f[0].line, Some(line_of(&text, "requirements = [")));
        assert!(f[0].detail.contains("more than 32 items"), "{}", f[0].detail);
        let long = "x".repeat(mpp_core::limits::TEXT_BYTES_MAX + 1);
        let text = edited("name_id = \"Pasang Baru Listrik\"", &format!("name_id = \"{long}\""));
        let f = faults(&text);
        assert_eq!(f[0].field.as_deref(), Some("name_id"));
        assert!(f[0].detail.contains("FIELD_TOO_LONG"), "{}", f[0].detail);
    }

    #[test]
    fn load_reads_the_file_when_given_else_the_builtin() {
        let (agency, services) = pln();
        let builtin = BuiltinCatalogue { path: "deploy/catalogue/pln.toml", text: PLN };
        let specs = load_catalogue(None, &builtin, &agency, &services).unwrap();
        assert_eq!(specs[0].fee_idr, 1_259_700);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pln.toml");
        std::fs::write(
            &path,
            edited("fee_idr = 1_259_700", "fee_idr = 1_500_000").replacen("version = 1", "version = 2", 1),
        )
        .unwrap();
        let specs = load_catalogue(Some(&path), &builtin, &agency, &services).unwrap();
        assert_eq!((specs[0].fee_idr, specs[0].version), (1_500_000, 2));

        // A fault of the built-in catalogue says so.
        let broken = BuiltinCatalogue { path: "deploy/catalogue/pln.toml", text: "agency = \"pln\"\n" };
        let e = load_catalogue(None, &broken, &agency, &services).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid service catalogue: deploy/catalogue/pln.toml (built in), line 1"),
            "{e}"
        );

        // Unreadable, too large, not UTF-8.
        let missing = dir.path().join("missing.toml");
        let e = load_catalogue(Some(&missing), &builtin, &agency, &services).unwrap_err();
        assert!(matches!(&e, CatalogueError::Read { file, .. } if file == &missing), "{e:?}");
        assert!(e.to_string().contains("missing.toml"), "{e}");
        let big = dir.path().join("big.toml");
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(&vec![b'#'; CATALOGUE_FILE_BYTES_MAX as usize + 1]).unwrap();
        drop(f);
        assert!(matches!(
            load_catalogue(Some(&big), &builtin, &agency, &services),
            Err(CatalogueError::TooLarge { .. })
        ));
        let latin1 = dir.path().join("latin1.toml");
        std::fs::write(&latin1, b"agency = \"pln\"\n# caf\xe9\n").unwrap();
        let e = load_catalogue(Some(&latin1), &builtin, &agency, &services).unwrap_err();
        assert!(e.faults()[0].detail.contains("not UTF-8"), "{e}");
    }
}
