//! What the agencies of this crate share: the description of an agency
//! ([`AgencyInfo`]: its id, services, RPC → event table), the parsing of the
//! fields every vocabulary has in some form (the application a step is
//! about, documents, appointments, amounts, reasons), and the few number
//! formats several agencies use (SIMPONI billing codes, NTPN).
//!
//! Field names are passed in as each agency's proto spells them, so an error
//! names the field the caller actually sent (`nomor_agenda: …`).

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::ids::new_application_id;
use mpp_agency_kit::{input, Accepted, Agency, AgencyConfig, CommonArgs, Filed, KitError};
use mpp_core::ids::{AgencyId, ApplicationId, OfficerId, ServiceId, TrackingNumber};
use mpp_core::{EventBody, EventKind, ReasonCode, Rejection};

use crate::calls::Unmapped;

/// Version of the RPC → event mapping of every agency in `MAPPING.md`. A
/// change that alters which event an RPC produces bumps it.
pub const MAPPING_VERSION: u32 = 1;

/// The categories of MPP participants the law names (Perpres 89/2021): the
/// participant registry's own type.
pub use mpp_core::registry::Category;

/// A category's name in `MAPPING.md` and `--help` (BUMN and BUMD in capitals).
pub fn category_label(c: Category) -> &'static str {
    match c {
        Category::Bumn => "BUMN",
        Category::Bumd => "BUMD",
        other => other.as_str(),
    }
}

/// One service of an agency: the proto enum value that chooses it, the
/// hub's service id and the code inside its application ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The value of the agency's service enum (e.g. `JENIS_PASPOR_BIASA` = 1).
    pub value: i32,
    /// The enum value's name in the proto, for error messages.
    pub enum_name: &'static str,
    /// The hub's service id (subject token), e.g. `paspor`.
    pub service_id: &'static str,
    /// The code inside application ids, `<prefix>-<code>-…`, e.g. `PASPOR`.
    pub code: &'static str,
}

impl ServiceInfo {
    /// A service: its enum `value` and the value's name in the proto, the
    /// hub's `service_id` and the `code` inside its application ids.
    pub const fn new(
        value: i32,
        enum_name: &'static str,
        service_id: &'static str,
        code: &'static str,
    ) -> Self {
        Self { value, enum_name, service_id, code }
    }

    /// The service id as the core's type.
    pub fn service(&self) -> Result<ServiceId, KitError> {
        ServiceId::parse(self.service_id).map_err(KitError::Event)
    }
}

/// One row of an agency's mapping table: an RPC and the common event it
/// publishes. The filing RPC maps to `application_filed` (preceded by
/// `case_opened` when it opens a case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcMapping {
    /// The RPC's name in the proto, e.g. `JadwalkanWawancara`.
    pub rpc: &'static str,
    /// The common event it publishes.
    pub event: EventKind,
    /// How the request's fields become the event's, for `docs/MAPPING.md`
    /// (Markdown, one table cell).
    pub fields: &'static str,
}

/// Everything fixed about one agency.
#[derive(Debug)]
pub struct AgencyInfo {
    /// The agency id on every event and subject, e.g. `imigrasi`.
    pub agency_id: &'static str,
    /// The agency's name as citizens know it.
    pub name: &'static str,
    /// Its category.
    pub category: Category,
    /// The binary, `mpp-<agency_id>`.
    pub binary: &'static str,
    /// Default `--grpc-addr`.
    pub default_grpc_addr: &'static str,
    /// The full gRPC service name, e.g. `mpp.agency.imigrasi.v1.ImigrasiService`.
    pub grpc_service: &'static str,
    /// The name of the proto enum field that chooses the service in the
    /// filing RPC, e.g. `jenis_paspor`.
    pub service_field: &'static str,
    /// First part of every application id, e.g. `IMG`.
    pub application_prefix: &'static str,
    /// The name of the application id field in the agency's proto, e.g.
    /// `nomor_agenda`, for error messages.
    pub application_field: &'static str,
    /// The built-in catalogue (`deploy/catalogue/<agency_id>.toml`, compiled
    /// in): a standard for each of [`AgencyInfo::services`] and no other.
    pub catalogue: BuiltinCatalogue,
    /// The services, explicitly mapped; the enum's `UNSPECIFIED` has no entry.
    pub services: &'static [ServiceInfo],
    /// The RPC → event table, in the order of the proto's service.
    pub rpcs: &'static [RpcMapping],
    /// The RPCs of one typical complete journey, in order (documented in
    /// `MAPPING.md`, walked by the integration test).
    pub journey: &'static [&'static str],
}

impl AgencyInfo {
    /// The agency id as the core's type.
    pub fn agency_id(&self) -> Result<AgencyId, Rejection> {
        AgencyId::parse(self.agency_id)
    }

    /// The common event of `rpc`, from the mapping table.
    pub fn event_of(&self, rpc: &str) -> Option<EventKind> {
        self.rpcs.iter().find(|m| m.rpc == rpc).map(|m| m.event)
    }

    /// The service chosen by the enum `value` of the filing request
    /// (`INVALID_FIELD_VALUE` for `UNSPECIFIED` or a value this build does
    /// not know).
    pub fn service_by_value(&'static self, value: i32) -> Result<&'static ServiceInfo, KitError> {
        self.services.iter().find(|s| s.value == value).ok_or_else(|| {
            let known: Vec<&str> = self.services.iter().map(|s| s.enum_name).collect();
            KitError::input(
                self.service_field,
                ReasonCode::InvalidFieldValue,
                format!("{value} is not a service of {}; use one of {}", self.name, known.join(", ")),
            )
        })
    }

    /// The enum value of the service `service_id`, for a filing request
    /// built by an agency's `request`.
    pub fn service_value(&self, service_id: &str) -> Result<i32, Unmapped> {
        self.services.iter().find(|s| s.service_id == service_id).map(|s| s.value).ok_or_else(|| {
            Unmapped::UnknownService { agency: self.agency_id, service_id: service_id.to_owned() }
        })
    }

    /// The prefix of a service's application ids, e.g. `IMG-PASPOR`.
    pub fn application_prefix(&self, service: &ServiceInfo) -> String {
        format!("{}-{}", self.application_prefix, service.code)
    }

    /// The service an application id belongs to, read from its
    /// `<prefix>-<code>-` start (`MALFORMED_APPLICATION_ID` otherwise).
    pub fn service_of_application(
        &'static self,
        field: &'static str,
        id: &ApplicationId,
    ) -> Result<&'static ServiceInfo, KitError> {
        let code = id
            .as_str()
            .strip_prefix(self.application_prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, random)| !random.is_empty())
            .map(|(code, _)| code);
        code.and_then(|c| self.services.iter().find(|s| s.code == c)).ok_or_else(|| {
            let examples: Vec<String> =
                self.services.iter().map(|s| format!("{}-…", self.application_prefix(s))).collect();
            KitError::input(
                field,
                ReasonCode::MalformedApplicationId,
                format!(
                    "{id} is not an application number of {}; use the {} returned when it was filed ({})",
                    self.name,
                    self.application_field,
                    examples.join(", ")
                ),
            )
        })
    }

    /// The ids of the agency's services: those its RPCs can file, each of
    /// which needs a standard in the catalogue.
    pub fn service_ids(&self) -> Result<Vec<ServiceId>, Rejection> {
        self.services.iter().map(|s| ServiceId::parse(s.service_id)).collect()
    }

    /// The built-in catalogue, parsed and validated.
    pub fn builtin_standards(&self) -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
        let agency = self.agency_id().map_err(CatalogueError::Binary)?;
        let services = self.service_ids().map_err(CatalogueError::Binary)?;
        self.catalogue.parse(&agency, &services)
    }

    /// The kit's configuration of this agency's binary: the standards of
    /// `--catalogue-file` when given, else the built-in catalogue; parsed
    /// and validated against this agency's services.
    pub fn config(&self, args: CommonArgs) -> Result<AgencyConfig, CatalogueError> {
        let agency = self.agency_id().map_err(CatalogueError::Binary)?;
        let services = self.service_ids().map_err(CatalogueError::Binary)?;
        AgencyConfig::new(agency, args, &self.catalogue, &services)
    }
}

/// The field names of an agency's filing request.
#[derive(Debug)]
pub(crate) struct FilingFields {
    pub(crate) case: &'static str,
    pub(crate) documents: &'static str,
    pub(crate) officer: &'static str,
}

/// Files an application: the service from the enum `service_value`, a new
/// case when `case` is empty, the documents handed in, a fresh application
/// id `<prefix>-<code>-<12 chars>`.
pub(crate) async fn file(
    agency: &Agency,
    info: &'static AgencyInfo,
    f: &FilingFields,
    service_value: i32,
    case: &str,
    documents: &[String],
    officer: &str,
) -> Result<Filed, KitError> {
    let service = info.service_by_value(service_value)?;
    let officer = input::officer(f.officer, officer)?;
    let case = input::optional_tracking_number(f.case, case, agency.region())?;
    let documents = input::list(f.documents, documents, false)?;
    let application = new_application_id(&info.application_prefix(service)).map_err(KitError::Event)?;
    agency.file_application(&service.service()?, case, application, &officer, documents).await
}

/// The field names of a step reference (the agency's `Langkah`), top-level
/// or nested in another request.
#[derive(Debug)]
pub(crate) struct StepFields {
    pub(crate) message: &'static str,
    pub(crate) case: &'static str,
    pub(crate) application: &'static str,
    pub(crate) officer: &'static str,
}

/// A parsed step reference: which application, whose step.
#[derive(Debug)]
pub(crate) struct Step {
    /// The application's service.
    pub(crate) info: &'static ServiceInfo,
    pub(crate) case: TrackingNumber,
    pub(crate) application: ApplicationId,
    pub(crate) officer: OfficerId,
}

/// Parses a step reference: the case (at this MPP), the application (of
/// this agency, naming its service) and the officer.
pub(crate) fn step(
    agency: &Agency,
    info: &'static AgencyInfo,
    f: &StepFields,
    case: &str,
    application: &str,
    officer: &str,
) -> Result<Step, KitError> {
    let case = input::tracking_number(f.case, case, agency.region())?;
    let application = input::application_id(f.application, application)?;
    let service = info.service_of_application(f.application, &application)?;
    let officer = input::officer(f.officer, officer)?;
    Ok(Step { info: service, case, application, officer })
}

/// Publishes one step; returns its event id.
pub(crate) async fn publish(agency: &Agency, step: Step, body: EventBody) -> Result<String, KitError> {
    let Accepted { event_id, .. } =
        agency.step(&step.info.service()?, step.case, step.application, &step.officer, body).await?;
    Ok(event_id)
}

/// `documents_requested`: at least one document, a counter (required) and
/// an optional note.
pub(crate) fn documents_requested(
    (documents_field, documents): (&'static str, &[String]),
    (counter_field, counter): (&'static str, &str),
    (note_field, note): (&'static str, &str),
) -> Result<EventBody, KitError> {
    Ok(EventBody::DocumentsRequested {
        documents: input::list(documents_field, documents, true)?,
        counter: input::text(counter_field, counter, true)?,
        note: input::text(note_field, note, false)?,
    })
}

/// `documents_received`: the documents brought (may be empty).
pub(crate) fn documents_received(field: &'static str, documents: &[String]) -> Result<EventBody, KitError> {
    Ok(EventBody::DocumentsReceived { documents: input::list(field, documents, false)? })
}

/// The appointment kinds the hub knows (`mpp_core::validate::APPOINTMENT_KINDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppointmentKind {
    Interview,
    Inspection,
    Survey,
    Installation,
}

impl AppointmentKind {
    const ALL: [AppointmentKind; 4] = [
        AppointmentKind::Interview,
        AppointmentKind::Inspection,
        AppointmentKind::Survey,
        AppointmentKind::Installation,
    ];

    /// The kind called `kind` in an `appointment_scheduled` event.
    pub(crate) fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    fn as_str(self) -> &'static str {
        match self {
            AppointmentKind::Interview => "interview",
            AppointmentKind::Inspection => "inspection",
            AppointmentKind::Survey => "survey",
            AppointmentKind::Installation => "installation",
        }
    }
}

/// `appointment_scheduled` of `kind`: a time within the hub's bounds on the
/// agency's clock, and a place (required).
pub(crate) fn appointment(
    agency: &Agency,
    kind: AppointmentKind,
    (at_field, at_ms): (&'static str, i64),
    (place_field, place): (&'static str, &str),
) -> Result<EventBody, KitError> {
    Ok(EventBody::AppointmentScheduled {
        kind: kind.as_str().to_owned(),
        at_ms: input::appointment_at_ms(at_field, at_ms, agency.builder().now_ms())?,
        place: input::text(place_field, place, true)?,
    })
}

/// `fee_assessed`: an amount of 1..=`max_idr` rupiah, where to pay
/// (required), the billing code (already checked by the caller) and the due
/// date (0: none given; otherwise from now to a year ahead, on the agency's
/// clock).
pub(crate) fn fee(
    agency: &Agency,
    (amount_field, amount_idr): (&'static str, i64),
    max_idr: i64,
    (channel_field, channel): (&'static str, &str),
    billing_code: String,
    (due_field, due_at_ms): (&'static str, i64),
) -> Result<EventBody, KitError> {
    Ok(EventBody::FeeAssessed {
        amount_idr: input::amount_idr(amount_field, amount_idr, max_idr)?,
        payment_channel: input::text(channel_field, channel, true)?,
        billing_code,
        due_at_ms: input::fee_due_at_ms(due_field, due_at_ms, agency.builder().now_ms())?,
    })
}

/// `payment_received`: an amount of 1..=`max_idr` rupiah and the payment
/// reference (already checked by the caller).
pub(crate) fn payment(
    (amount_field, amount_idr): (&'static str, i64),
    max_idr: i64,
    payment_reference: String,
) -> Result<EventBody, KitError> {
    Ok(EventBody::PaymentReceived {
        amount_idr: input::amount_idr(amount_field, amount_idr, max_idr)?,
        payment_reference,
    })
}

/// `rejected`: the agency's own reason code (optional) and text (required).
pub(crate) fn rejected(
    (code_field, code): (&'static str, &str),
    (reason_field, reason): (&'static str, &str),
) -> Result<EventBody, KitError> {
    Ok(EventBody::Rejected {
        reason_code: input::text(code_field, code, false)?,
        reason: input::text(reason_field, reason, true)?,
    })
}

/// `withdrawn`: an optional reason.
pub(crate) fn withdrawn(field: &'static str, reason: &str) -> Result<EventBody, KitError> {
    Ok(EventBody::Withdrawn { reason: input::text(field, reason, false)? })
}

/// A required text field, for a step shape's `check`.
pub(crate) fn required_text(field: &'static str, value: &str) -> Result<String, KitError> {
    input::text(field, value, true)
}

/// An optional text field (may be empty), for a step shape's `check`.
pub(crate) fn optional_text(field: &'static str, value: &str) -> Result<String, KitError> {
    input::text(field, value, false)
}

/// A required identifier of a fixed shape, e.g. a billing code:
/// `MISSING_FIELD` when empty, `INVALID_FIELD_VALUE` (with `expected` in
/// the message) when `valid` says no. Surrounding whitespace is removed.
pub(crate) fn shaped(
    field: &'static str,
    value: &str,
    expected: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<String, KitError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "this field is required"));
    }
    if !valid(value) {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            format!("{value:?} is not {expected}"),
        ));
    }
    Ok(value.to_owned())
}

/// Whether `s` is `len` ASCII digits for some `len` in `lens`.
pub(crate) fn is_digits(s: &str, lens: std::ops::RangeInclusive<usize>) -> bool {
    lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Digits of a SIMPONI billing code (the Ministry of Finance's PNBP billing).
pub const SIMPONI_BILLING_CODE_DIGITS: usize = 15;

/// Characters of an NTPN (Nomor Transaksi Penerimaan Negara).
pub const NTPN_CHARS: usize = 16;

/// A SIMPONI billing code: 15 digits.
pub(crate) fn simponi_billing_code(field: &'static str, value: &str) -> Result<String, KitError> {
    shaped(field, value, "a SIMPONI billing code (15 digits)", |s| {
        is_digits(s, SIMPONI_BILLING_CODE_DIGITS..=SIMPONI_BILLING_CODE_DIGITS)
    })
}

/// An NTPN: 16 digits or capital letters.
pub(crate) fn ntpn(field: &'static str, value: &str) -> Result<String, KitError> {
    shaped(field, value, "an NTPN (16 digits or capital letters)", |s| {
        s.len() == NTPN_CHARS && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_identifiers() {
        assert_eq!(simponi_billing_code("kode_billing", " 820260114000123 ").unwrap(), "820260114000123");
        assert_eq!(
            simponi_billing_code("kode_billing", "").unwrap_err().reason_code(),
            ReasonCode::MissingField
        );
        for bad in ["82026011400012", "8202601140001234", "82026011400012X"] {
            let err = simponi_billing_code("kode_billing", bad).unwrap_err();
            assert_eq!(err.reason_code(), ReasonCode::InvalidFieldValue, "{bad}");
            assert!(err.to_string().starts_with("kode_billing: "), "{err}");
        }
        assert!(ntpn("ntpn", "0A1B2C3D4E5F6G7H").is_ok());
        for bad in ["0a1b2c3d4e5f6g7h", "0A1B2C3D4E5F6G7", "0A1B-2C3D4E5F6G7"] {
            assert_eq!(ntpn("ntpn", bad).unwrap_err().reason_code(), ReasonCode::InvalidFieldValue, "{bad}");
        }
        assert!(is_digits("123456", 6..=12));
        assert!(!is_digits("12345", 6..=12));
        assert!(!is_digits("１２３４５６", 1..=32), "non-ASCII digits are refused");
    }

    #[test]
    fn categories_have_names() {
        let names: Vec<&str> = Category::ALL.iter().map(|c| category_label(*c)).collect();
        assert_eq!(names, ["daerah", "pusat", "vertikal", "BUMN", "BUMD", "swasta"]);
    }
}
