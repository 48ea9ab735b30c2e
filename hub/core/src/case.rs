//! The case projection: one value per citizen case, folded from the log.

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::ids::{AgencyId, ApplicationId, ServiceId, TrackingNumber};
use crate::state::AppState;

pub use crate::event::Collection;

/// A published service standard (standar pelayanan), in force from the log
/// entry that published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStandard {
    /// Agency.
    pub agency: AgencyId,
    /// Service.
    pub service: ServiceId,
    /// Name in Bahasa Indonesia.
    pub name_id: String,
    /// Name in English.
    pub name_en: String,
    /// Completion time in working days.
    pub completion_working_days: u32,
    /// Fee in rupiah.
    pub fee_idr: i64,
    /// Requirements.
    pub requirements: Vec<String>,
    /// Approval by default at the deadline.
    pub fiktif_positif: bool,
    /// The agency's version.
    pub version: u32,
    /// Hub sequence of the entry that published it.
    pub effective_from_seq: u64,
    /// Time of record of that entry, Unix ms.
    pub effective_from_ms: i64,
    /// Where and by when its issued document is collected; `None` when
    /// nothing is. Not serialised with the standard, so a standard without
    /// one encodes as before the field existed; the store writes it after
    /// the standard when there is one (`mpp_store`).
    #[serde(skip)]
    pub collection: Option<Collection>,
}

impl ServiceStandard {
    /// What decisions need of it: see [`StandardTerms`].
    pub fn terms(&self) -> StandardTerms {
        StandardTerms {
            version: self.version,
            completion_working_days: self.completion_working_days,
            fiktif_positif: self.fiktif_positif,
            effective_from_seq: self.effective_from_seq,
            collection: self.collection.clone().map(std::sync::Arc::new),
        }
    }
}

/// What judging an event needs of the service standard in force: its
/// version (a new one must be above it), the terms an application filed
/// under it keeps for life, and where it took effect (a redrive of an
/// older statement is superseded), and what an issued document's
/// collection is. The ledger keeps only these in memory, about 100 bytes
/// per registered service (plus a collection place of at most
/// `PROFILE`-sized text where one is named); names, fee and requirements
/// (up to ~17 KB a standard) stay in the store and are read when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardTerms {
    /// The agency's version.
    pub version: u32,
    /// Completion time in working days.
    pub completion_working_days: u32,
    /// Approval by default at the deadline.
    pub fiktif_positif: bool,
    /// Hub sequence of the entry that published it.
    pub effective_from_seq: u64,
    /// Where and by when its issued document is collected, shared (cloning
    /// the terms on every judgement allocates nothing).
    pub collection: Option<std::sync::Arc<Collection>>,
}

/// One accepted event in an application's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineItem {
    /// Hub log sequence (the case → entries index).
    pub seq: u64,
    /// Time of record, Unix ms.
    pub recorded_at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The state it led to.
    pub state_after: AppState,
    /// Short detail for the citizen (documents, fee, appointment); no
    /// personal data. Shared, not copied, when a case is cloned: the ledger
    /// copies a case it changes while the store still holds the committed
    /// value for readers, and a case's items outnumber its other fields.
    /// (Serialised exactly as a `String`.)
    pub detail: std::sync::Arc<str>,
}

/// What the citizen must do for one application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pending {
    /// Bring documents to a counter.
    BringDocuments {
        /// Which documents.
        documents: Vec<String>,
        /// Where.
        counter: String,
    },
    /// Pay a fee.
    PayFee {
        /// How much.
        amount_idr: i64,
        /// Where.
        payment_channel: String,
        /// Billing code.
        billing_code: String,
    },
    /// Attend an appointment.
    Attend {
        /// Kind of appointment.
        kind: String,
        /// When, Unix ms.
        at_ms: i64,
        /// Where.
        place: String,
    },
    /// The document was issued, under a standard that says nothing about
    /// collecting it (every standard before `collection` existed): not an
    /// action for the citizen ([`Case::next_actions`] leaves it out), kept
    /// so that a log written before rebuilds to the same projection.
    Collect,
    /// Pay a fee by a due date (a `fee_assessed` with `due_at_ms`; without
    /// one it is [`Pending::PayFee`], so older entries project as before).
    PayFeeBy {
        /// How much.
        amount_idr: i64,
        /// Where.
        payment_channel: String,
        /// Billing code.
        billing_code: String,
        /// Pay by, Unix ms.
        due_at_ms: i64,
    },
    /// Collect the issued document where its service's standard says,
    /// within its working days of the issue.
    CollectAt {
        /// Where.
        place: String,
        /// Working days after the issue.
        within_working_days: u32,
    },
}

/// A fee to pay, whichever [`Pending`] variant holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeDue<'a> {
    /// How much.
    pub amount_idr: i64,
    /// Where.
    pub payment_channel: &'a str,
    /// Billing code.
    pub billing_code: &'a str,
    /// Pay by, Unix ms, when the agency set a due date.
    pub due_at_ms: Option<i64>,
}

/// One application (permohonan) of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Id within the case.
    pub id: ApplicationId,
    /// Owning agency.
    pub agency: AgencyId,
    /// Service.
    pub service: ServiceId,
    /// Current state.
    pub state: AppState,
    /// Time of record of the filing, Unix ms.
    pub filed_at_ms: i64,
    /// Time of record of the last state change, Unix ms.
    pub state_since_ms: i64,
    /// What the citizen must do now, if anything.
    pub pending: Option<Pending>,
    /// Accepted events, in log order.
    pub timeline: Vec<TimelineItem>,
    /// Completion time in working days, from the service standard in force
    /// when the application was filed. That standard governs the application
    /// for its whole life: a standard published later applies only to
    /// applications filed after it (see [`crate::sla`]).
    pub sla_working_days: u32,
    /// Whether that standard grants approval by default at the deadline
    /// (fiktif positif).
    pub fiktif_positif: bool,
    /// The version of that standard; 0 when none was in force, which
    /// [`crate::decide::decide`] rules out (versions start at 1).
    pub standard_version: u32,
}

/// The overall status a citizen sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseStatus {
    /// Selesai.
    Done,
    /// Perlu tindakan Anda.
    ActionNeeded,
    /// Diproses.
    InProgress,
    /// Terlambat.
    Overdue,
}

impl CaseStatus {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Done => "done",
            CaseStatus::ActionNeeded => "action_needed",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::Overdue => "overdue",
        }
    }

    /// Label in Bahasa Indonesia.
    pub fn label_id(self) -> &'static str {
        match self {
            CaseStatus::Done => "Selesai",
            CaseStatus::ActionNeeded => "Perlu tindakan Anda",
            CaseStatus::InProgress => "Diproses",
            CaseStatus::Overdue => "Terlambat",
        }
    }
}

/// A next action for the citizen, derived from an application's [`Pending`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextAction {
    /// Which application.
    pub application_id: ApplicationId,
    /// What to do.
    pub pending: Pending,
}

/// The state of the citizen's name and contact details for one case
/// (docs/PRIVACY.md). The projection holds only which key they are sealed
/// under and where in the log that happened, never the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersonalData {
    /// None was ever sealed for this case.
    #[default]
    None,
    /// Sealed under a citizen's data key held by the front office.
    Sealed {
        /// The data key's random id.
        key_id: Vec<u8>,
        /// Hub sequence of the latest `personal_data_sealed` entry.
        sealed_seq: u64,
    },
    /// The data key was destroyed on an erasure request: the sealed bytes in
    /// the log can no longer be read by anyone.
    Erased {
        /// The destroyed key's id.
        key_id: Vec<u8>,
        /// Hub sequence of the latest `personal_data_sealed` entry.
        sealed_seq: u64,
        /// Hub sequence of the `personal_data_erased` entry.
        erased_seq: u64,
    },
}

impl PersonalData {
    /// Stable name shown in case views: `none`, `sealed` or `erased`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PersonalData::None => "none",
            PersonalData::Sealed { .. } => "sealed",
            PersonalData::Erased { .. } => "erased",
        }
    }

    /// The log sequences of the personal-data entries applied to the case.
    fn seqs(&self) -> impl Iterator<Item = u64> {
        let (a, b) = match self {
            PersonalData::None => (None, None),
            PersonalData::Sealed { sealed_seq, .. } => (Some(*sealed_seq), None),
            PersonalData::Erased { sealed_seq, erased_seq, .. } => (Some(*sealed_seq), Some(*erased_seq)),
        };
        a.into_iter().chain(b)
    }
}

/// Bytes [`Case::size_bytes`] counts for a case besides its texts and
/// applications.
pub const CASE_FIXED_BYTES: usize = 256;

/// Bytes [`Case::size_bytes`] counts for an application besides its texts
/// and timeline.
pub const APPLICATION_FIXED_BYTES: usize = 128;

/// Bytes [`Case::size_bytes`] counts for a timeline item besides its detail
/// (sequence, time, kind, state and the detail's length).
pub const TIMELINE_ITEM_FIXED_BYTES: usize = 32;

/// The size counted for each PIN re-issue a case records ([`PinReissue`]).
pub const PIN_REISSUE_FIXED_BYTES: usize = 16;

/// A re-issue of the case's PIN at the counter (`pin_reissued`): where it
/// is in the log, and when it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinReissue {
    /// Hub sequence of the `pin_reissued` entry.
    pub seq: u64,
    /// Its time of record, Unix ms.
    pub at_ms: i64,
}

/// A read of the citizen's sealed personal data at the front office that
/// opened the case (`personal_data_read`): where it is in the log, when it
/// was recorded, and the authenticated client that read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRead {
    /// Hub sequence of the `personal_data_read` entry.
    pub seq: u64,
    /// Its time of record, Unix ms.
    pub at_ms: i64,
    /// The reading client's id.
    pub client_id: String,
}

/// The size counted for each personal-data read a case keeps, besides its
/// client id ([`DataRead`]).
pub const PERSONAL_DATA_READ_FIXED_BYTES: usize = 16;

/// Bytes counted for each text or byte string besides its content (its
/// length).
pub const TEXT_FIXED_BYTES: usize = 8;

/// The size [`Case::size_bytes`] counts for a text or byte string.
fn text_bytes(len: usize) -> usize {
    TEXT_FIXED_BYTES + len
}

impl TimelineItem {
    /// The size counted for an item with `detail`.
    pub fn size_bytes_of(detail: &str) -> usize {
        TIMELINE_ITEM_FIXED_BYTES + text_bytes(detail.len())
    }
}

impl Pending {
    /// The size counted for `pending` (none: nothing).
    pub fn size_bytes(pending: Option<&Pending>) -> usize {
        match pending {
            None => 0,
            Some(Pending::BringDocuments { documents, counter }) => {
                text_bytes(counter.len()) + documents.iter().map(|d| text_bytes(d.len())).sum::<usize>()
            }
            Some(Pending::PayFee { payment_channel, billing_code, .. }) => {
                16 + text_bytes(payment_channel.len()) + text_bytes(billing_code.len())
            }
            Some(Pending::Attend { kind, place, .. }) => {
                16 + text_bytes(kind.len()) + text_bytes(place.len())
            }
            Some(Pending::Collect) => 8,
            Some(Pending::PayFeeBy { payment_channel, billing_code, .. }) => {
                24 + text_bytes(payment_channel.len()) + text_bytes(billing_code.len())
            }
            Some(Pending::CollectAt { place, .. }) => 16 + text_bytes(place.len()),
        }
    }

    /// The fee to pay, for [`Pending::PayFee`] and [`Pending::PayFeeBy`].
    pub fn fee(&self) -> Option<FeeDue<'_>> {
        match self {
            Pending::PayFee { amount_idr, payment_channel, billing_code } => {
                Some(FeeDue { amount_idr: *amount_idr, payment_channel, billing_code, due_at_ms: None })
            }
            Pending::PayFeeBy { amount_idr, payment_channel, billing_code, due_at_ms } => Some(FeeDue {
                amount_idr: *amount_idr,
                payment_channel,
                billing_code,
                due_at_ms: Some(*due_at_ms),
            }),
            _ => None,
        }
    }
}

impl Application {
    /// The size counted for this application: a fixed part, its ids, what
    /// is pending and its timeline (see [`Case::size_bytes`]).
    pub fn size_bytes(&self) -> usize {
        APPLICATION_FIXED_BYTES
            + Self::ids_bytes(self.id.as_str(), self.agency.as_str(), self.service.as_str())
            + Pending::size_bytes(self.pending.as_ref())
            + self.timeline.iter().map(|t| TimelineItem::size_bytes_of(&t.detail)).sum::<usize>()
    }

    /// The size counted for an application's ids.
    pub fn ids_bytes(id: &str, agency: &str, service: &str) -> usize {
        text_bytes(id.len()) + text_bytes(agency.len()) + text_bytes(service.len())
    }
}

/// A citizen's case (berkas) at one MPP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Tracking number.
    pub tracking_number: TrackingNumber,
    /// Agency that opened it.
    pub opened_by: AgencyId,
    /// Time of record of the opening, Unix ms.
    pub opened_at_ms: i64,
    /// Hub sequence of the opening entry; 0 while the case is a shell
    /// (see [`Case::is_shell`]).
    pub opened_seq: u64,
    /// Keyed hash of the lookup PIN.
    pub pin_verifier: Vec<u8>,
    /// Keyed hash of the NIK.
    pub nik_keyed_hash: Vec<u8>,
    /// Time of record of the last accepted event, Unix ms.
    pub updated_at_ms: i64,
    /// Hub sequence of the last accepted event.
    pub last_seq: u64,
    /// Applications in filing order.
    pub applications: Vec<Application>,
    /// The state of the citizen's personal data (added after the fields
    /// above, so the store's encoding of a case only grew at its end).
    pub personal_data: PersonalData,
    /// The PIN's re-issues, oldest first. Not serialised with the case, so
    /// a case encodes as it did before re-issues existed (an old log
    /// rebuilds to the same bytes); the store writes them after the case
    /// when there are any (`mpp_store`).
    #[serde(skip)]
    pub pin_reissues: Vec<PinReissue>,
    /// The newest [`crate::limits::PERSONAL_DATA_READS_KEPT`] reads of the
    /// citizen's personal data, oldest first (the log keeps every one).
    /// Not serialised with the case either; the store writes them after
    /// the re-issues when there are any.
    #[serde(skip)]
    pub personal_data_reads: Vec<DataRead>,
}

impl Case {
    /// The case's size in bytes as the limits count it
    /// ([`crate::limits::CASE_BYTES_MAX`]): every text and byte string with
    /// its length, plus fixed parts per case, application and timeline item
    /// ([`CASE_FIXED_BYTES`], [`APPLICATION_FIXED_BYTES`],
    /// [`TIMELINE_ITEM_FIXED_BYTES`]), about what the store's encoding of
    /// the case takes. Deterministic: it is part of the rules.
    pub fn size_bytes(&self) -> usize {
        let key_id = match &self.personal_data {
            PersonalData::None => 0,
            PersonalData::Sealed { key_id, .. } | PersonalData::Erased { key_id, .. } => key_id.len(),
        };
        CASE_FIXED_BYTES
            + text_bytes(self.opened_by.as_str().len())
            + text_bytes(self.pin_verifier.len())
            + text_bytes(self.nik_keyed_hash.len())
            + text_bytes(key_id)
            + self.applications.iter().map(Application::size_bytes).sum::<usize>()
            + self.pin_reissues.len() * PIN_REISSUE_FIXED_BYTES
            + self
                .personal_data_reads
                .iter()
                .map(|r| PERSONAL_DATA_READ_FIXED_BYTES + text_bytes(r.client_id.len()))
                .sum::<usize>()
    }

    /// The bytes the applications of `agency` take (see
    /// [`Case::size_bytes`]).
    pub fn agency_bytes(&self, agency: &AgencyId) -> usize {
        self.applications.iter().filter(|a| &a.agency == agency).map(Application::size_bytes).sum()
    }

    /// The application with this id.
    pub fn application(&self, id: &ApplicationId) -> Option<&Application> {
        self.applications.iter().find(|a| &a.id == id)
    }

    /// The application with this id, mutably.
    pub fn application_mut(&mut self, id: &ApplicationId) -> Option<&mut Application> {
        self.applications.iter_mut().find(|a| &a.id == id)
    }

    /// The applications the citizen sees, in filing order: all but those
    /// dropped when the case was opened ([`AppState::Dropped`], see
    /// [`crate::hold`]). Every view of a case lists these.
    pub fn visible_applications(&self) -> impl Iterator<Item = &Application> + '_ {
        self.applications.iter().filter(|a| a.state != AppState::Dropped)
    }

    /// Everything the citizen must do now, in application order.
    /// A bare [`Pending::Collect`] is no action: its standard does not say
    /// that anything is handed over.
    pub fn next_actions(&self) -> Vec<NextAction> {
        self.visible_applications()
            .filter(|a| !matches!(a.pending, Some(Pending::Collect)))
            .filter_map(|a| {
                a.pending.clone().map(|pending| NextAction { application_id: a.id.clone(), pending })
            })
            .collect()
    }

    /// The overall status, without SLA deadlines (those need a calendar and
    /// "now", which the SLA module adds): action needed if anything waits on
    /// the citizen, done if every application is finished, else in progress.
    /// A case with no application yet is in progress.
    pub fn status(&self) -> CaseStatus {
        if self.visible_applications().any(|a| a.state.waits_on_citizen()) {
            CaseStatus::ActionNeeded
        } else if self.visible_applications().next().is_some()
            && self.visible_applications().all(|a| a.state.is_finished())
        {
            CaseStatus::Done
        } else {
            CaseStatus::InProgress
        }
    }

    /// A shell: the case is known from an application filed before its
    /// `case_opened` reached the hub (agencies publish independently). It
    /// has no PIN verifier yet, so no citizen can look it up until the
    /// opening arrives and fills it in.
    pub fn is_shell(&self) -> bool {
        self.opened_seq == 0
    }

    /// Every log sequence that touched this case, ascending (the case →
    /// entries index). Of its personal-data reads only the kept ones: a
    /// fold of these entries projects the same case as a fold of all.
    pub fn entry_seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::iter::once(self.opened_seq)
            .filter(|s| *s != 0)
            .chain(self.applications.iter().flat_map(|a| a.timeline.iter().map(|t| t.seq)))
            .chain(self.personal_data.seqs())
            .chain(self.pin_reissues.iter().map(|r| r.seq))
            .chain(self.personal_data_reads.iter().map(|r| r.seq))
            .collect();
        seqs.sort_unstable();
        seqs
    }
}
