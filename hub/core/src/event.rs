//! The core's own event types. The hub's edge converts the protobuf
//! `mpp.v1.Envelope` into an [`UncheckedEnvelope`] field by field;
//! [`crate::validate::validate`] turns that into an [`Envelope`] whose ids are
//! typed and whose fields respect every limit.

use serde::{Deserialize, Serialize};

use crate::ids::{AgencyId, ApplicationId, EventId, OfficerId, RegionCode, ServiceId, TrackingNumber};

/// What a service hands over and where the citizen collects it, as its
/// standard says (`ServiceStandardPublished.collection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Where, e.g. "Loket Disdukcapil, MPP Kota Bengkulu".
    pub place: String,
    /// Working days after issue the document waits there
    /// (1..=[`crate::limits::COLLECT_WITHIN_WORKING_DAYS_MAX`]).
    pub within_working_days: u32,
}

/// The body of an event: one of the common lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// A case was opened at an MPP counter.
    CaseOpened {
        /// Keyed hash of the lookup PIN.
        pin_verifier: Vec<u8>,
        /// Keyed hash of the NIK.
        nik_keyed_hash: Vec<u8>,
    },
    /// An application was filed.
    ApplicationFiled {
        /// Documents handed in.
        documents: Vec<String>,
    },
    /// Documents are required from the citizen.
    DocumentsRequested {
        /// Which documents.
        documents: Vec<String>,
        /// Where to bring them.
        counter: String,
        /// A note for the citizen.
        note: String,
    },
    /// The citizen brought the documents.
    DocumentsReceived {
        /// Which documents.
        documents: Vec<String>,
    },
    /// A fee was assessed.
    FeeAssessed {
        /// Amount in rupiah, > 0.
        amount_idr: i64,
        /// Where to pay.
        payment_channel: String,
        /// Billing code.
        billing_code: String,
        /// Pay by, Unix ms; 0 when the agency set no due date.
        due_at_ms: i64,
    },
    /// The fee was paid.
    PaymentReceived {
        /// Amount in rupiah, > 0.
        amount_idr: i64,
        /// Payment reference.
        payment_reference: String,
    },
    /// An appointment was scheduled.
    AppointmentScheduled {
        /// interview, inspection, survey, installation, collection or other.
        kind: String,
        /// When, Unix ms.
        at_ms: i64,
        /// Where.
        place: String,
    },
    /// Review started.
    ReviewStarted,
    /// The document or permit was issued.
    Issued {
        /// Register number of the issued document.
        document_number: String,
    },
    /// The application was rejected by the agency.
    Rejected {
        /// The agency's own reason code.
        reason_code: String,
        /// The agency's reason text.
        reason: String,
    },
    /// The application was withdrawn.
    Withdrawn {
        /// Why.
        reason: String,
    },
    /// The citizen collected the document.
    Collected,
    /// A service standard was published.
    ServiceStandardPublished {
        /// Name in Bahasa Indonesia.
        name_id: String,
        /// Name in English.
        name_en: String,
        /// Completion time in working days.
        completion_working_days: u32,
        /// Fee in rupiah.
        fee_idr: i64,
        /// Requirements.
        requirements: Vec<String>,
        /// Approval by default at the deadline.
        fiktif_positif: bool,
        /// The agency's version of the standard.
        version: u32,
        /// Where and by when the citizen collects what the service hands
        /// over; `None` when nothing is collected (a connection switched on,
        /// an account opened).
        collection: Option<Collection>,
    },
    /// The citizen's name and contact details, sealed under their data key,
    /// were attached to the case (docs/PRIVACY.md). The core never sees the
    /// plaintext and never needs it: it checks the sizes and records which
    /// key the case's data is sealed under.
    PersonalDataSealed {
        /// Random id of the citizen's data key (`limits::KEY_ID_BYTES`).
        key_id: Vec<u8>,
        /// AEAD nonce (`limits::SEAL_NONCE_BYTES`).
        nonce: Vec<u8>,
        /// AEAD ciphertext with its tag.
        ciphertext: Vec<u8>,
    },
    /// The citizen's data key was destroyed on an erasure request (UU
    /// 27/2022): the case's sealed personal data is unreadable from now on.
    PersonalDataErased {
        /// The destroyed key's id.
        key_id: Vec<u8>,
    },
    /// The case's lookup PIN was re-issued at the counter (the citizen
    /// proved who they are there): the new PIN's verifier replaces the old
    /// one, so the old PIN stops working and the guessing budgets of the
    /// case start afresh.
    PinReissued {
        /// Keyed hash of the new lookup PIN (`mpp_core::pin`).
        pin_verifier: Vec<u8>,
    },
    /// The citizen's sealed personal data was read at the front office that
    /// opened the case, by the authenticated client `client_id`; shown to
    /// the citizen in the case's access history.
    PersonalDataRead {
        /// The reading client's id (its token's, never one it chose).
        client_id: String,
    },
}

/// The kind of an event, with its stable snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// See [`EventBody::CaseOpened`].
    CaseOpened,
    /// See [`EventBody::ApplicationFiled`].
    ApplicationFiled,
    /// See [`EventBody::DocumentsRequested`].
    DocumentsRequested,
    /// See [`EventBody::DocumentsReceived`].
    DocumentsReceived,
    /// See [`EventBody::FeeAssessed`].
    FeeAssessed,
    /// See [`EventBody::PaymentReceived`].
    PaymentReceived,
    /// See [`EventBody::AppointmentScheduled`].
    AppointmentScheduled,
    /// See [`EventBody::ReviewStarted`].
    ReviewStarted,
    /// See [`EventBody::Issued`].
    Issued,
    /// See [`EventBody::Rejected`].
    Rejected,
    /// See [`EventBody::Withdrawn`].
    Withdrawn,
    /// See [`EventBody::Collected`].
    Collected,
    /// See [`EventBody::ServiceStandardPublished`].
    ServiceStandardPublished,
    /// See [`EventBody::PersonalDataSealed`].
    PersonalDataSealed,
    /// See [`EventBody::PersonalDataErased`].
    PersonalDataErased,
    /// See [`EventBody::PinReissued`].
    PinReissued,
    /// See [`EventBody::PersonalDataRead`].
    PersonalDataRead,
}

impl EventKind {
    /// Every kind.
    pub const ALL: &'static [EventKind] = &[
        EventKind::CaseOpened,
        EventKind::ApplicationFiled,
        EventKind::DocumentsRequested,
        EventKind::DocumentsReceived,
        EventKind::FeeAssessed,
        EventKind::PaymentReceived,
        EventKind::AppointmentScheduled,
        EventKind::ReviewStarted,
        EventKind::Issued,
        EventKind::Rejected,
        EventKind::Withdrawn,
        EventKind::Collected,
        EventKind::ServiceStandardPublished,
        EventKind::PersonalDataSealed,
        EventKind::PersonalDataErased,
        EventKind::PinReissued,
        EventKind::PersonalDataRead,
    ];

    /// Stable snake_case name, as in the protobuf oneof.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CaseOpened => "case_opened",
            EventKind::ApplicationFiled => "application_filed",
            EventKind::DocumentsRequested => "documents_requested",
            EventKind::DocumentsReceived => "documents_received",
            EventKind::FeeAssessed => "fee_assessed",
            EventKind::PaymentReceived => "payment_received",
            EventKind::AppointmentScheduled => "appointment_scheduled",
            EventKind::ReviewStarted => "review_started",
            EventKind::Issued => "issued",
            EventKind::Rejected => "rejected",
            EventKind::Withdrawn => "withdrawn",
            EventKind::Collected => "collected",
            EventKind::ServiceStandardPublished => "service_standard_published",
            EventKind::PersonalDataSealed => "personal_data_sealed",
            EventKind::PersonalDataErased => "personal_data_erased",
            EventKind::PinReissued => "pin_reissued",
            EventKind::PersonalDataRead => "personal_data_read",
        }
    }

    /// Parses the snake_case name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether this kind acts on one application (needs `application_id`).
    pub fn is_application_event(self) -> bool {
        !matches!(self, EventKind::ServiceStandardPublished) && !self.is_case_event()
    }

    /// Whether this kind acts on a case as a whole (a case id, no
    /// `application_id`): the opening, the citizen's personal data (sealed,
    /// erased, read) and the re-issue of the PIN.
    pub fn is_case_event(self) -> bool {
        matches!(
            self,
            EventKind::CaseOpened
                | EventKind::PersonalDataSealed
                | EventKind::PersonalDataErased
                | EventKind::PinReissued
                | EventKind::PersonalDataRead
        )
    }
}

impl EventBody {
    /// The kind of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::CaseOpened { .. } => EventKind::CaseOpened,
            EventBody::ApplicationFiled { .. } => EventKind::ApplicationFiled,
            EventBody::DocumentsRequested { .. } => EventKind::DocumentsRequested,
            EventBody::DocumentsReceived { .. } => EventKind::DocumentsReceived,
            EventBody::FeeAssessed { .. } => EventKind::FeeAssessed,
            EventBody::PaymentReceived { .. } => EventKind::PaymentReceived,
            EventBody::AppointmentScheduled { .. } => EventKind::AppointmentScheduled,
            EventBody::ReviewStarted => EventKind::ReviewStarted,
            EventBody::Issued { .. } => EventKind::Issued,
            EventBody::Rejected { .. } => EventKind::Rejected,
            EventBody::Withdrawn { .. } => EventKind::Withdrawn,
            EventBody::Collected => EventKind::Collected,
            EventBody::ServiceStandardPublished { .. } => EventKind::ServiceStandardPublished,
            EventBody::PersonalDataSealed { .. } => EventKind::PersonalDataSealed,
            EventBody::PersonalDataErased { .. } => EventKind::PersonalDataErased,
            EventBody::PinReissued { .. } => EventKind::PinReissued,
            EventBody::PersonalDataRead { .. } => EventKind::PersonalDataRead,
        }
    }
}

/// An envelope as decoded from the wire, nothing checked yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UncheckedEnvelope {
    /// See `mpp.v1.Envelope`.
    pub schema_version: u32,
    /// See `mpp.v1.Envelope`.
    pub event_id: String,
    /// See `mpp.v1.Envelope`.
    pub case_id: String,
    /// See `mpp.v1.Envelope`.
    pub region_code: String,
    /// See `mpp.v1.Envelope`.
    pub agency_id: String,
    /// See `mpp.v1.Envelope`.
    pub service_id: String,
    /// See `mpp.v1.Envelope`.
    pub application_id: String,
    /// See `mpp.v1.Envelope`.
    pub occurred_at_ms: i64,
    /// See `mpp.v1.Envelope`.
    pub officer: String,
    /// `None` when the oneof was empty or of a kind this hub does not know.
    pub body: Option<EventBody>,
}

/// The scope an event applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A case-level event (case opened, personal data sealed or erased).
    Case(TrackingNumber),
    /// An application-level event.
    Application(TrackingNumber, ApplicationId),
    /// A catalogue event (service standard); no case.
    Catalogue,
}

/// A validated envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Idempotency key.
    pub event_id: EventId,
    /// What the event applies to.
    pub target: Target,
    /// The MPP.
    pub region: RegionCode,
    /// The publishing agency.
    pub agency: AgencyId,
    /// The agency's service.
    pub service: ServiceId,
    /// When it happened at the agency (informational).
    pub occurred_at_ms: i64,
    /// The acting officer (pseudonymous).
    pub officer: OfficerId,
    /// The event.
    pub body: EventBody,
}

impl Envelope {
    /// The tracking number, for case and application events.
    pub fn case_id(&self) -> Option<TrackingNumber> {
        match &self.target {
            Target::Case(t) | Target::Application(t, _) => Some(*t),
            Target::Catalogue => None,
        }
    }
}
