//! The application (permohonan) state machine.
//!
//! ```text
//! filed ─▶ Submitted ⇄ DocumentsRequired
//!            │  ▲
//!            ▼  │ (documents requested during review)
//!          InReview ◀─ Scheduled (interview/inspection held)
//!          InReview ─▶ AwaitingPayment ─▶ Paid ─▶ Scheduled ─▶ Issued ─▶ Collected
//!            any open state ─▶ Rejected | Withdrawn
//! ```
//!
//! The full table is [`next_state`]; every legal and illegal pair is tested.

use serde::{Deserialize, Serialize};

use crate::event::EventKind;

/// The state of one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AppState {
    /// Diterima: filed, waiting for the agency.
    Submitted,
    /// Perlu Kelengkapan: waiting on the citizen's documents (SLA clock stopped).
    DocumentsRequired,
    /// Diproses: the agency is reviewing.
    InReview,
    /// Menunggu Pembayaran: waiting on the citizen's payment (SLA clock stopped).
    AwaitingPayment,
    /// Dibayar: paid, back with the agency.
    Paid,
    /// Dijadwalkan: an appointment, inspection, survey or installation is scheduled.
    Scheduled,
    /// Terbit: issued, ready to collect.
    Issued,
    /// Diambil: collected (terminal).
    Collected,
    /// Ditolak: rejected by the agency (terminal).
    Rejected,
    /// Dibatalkan: withdrawn (terminal).
    Withdrawn,
    /// Held, then dropped when its case was opened (terminal, never shown
    /// to the citizen): filed into the case before the front office issued
    /// its number, or not opened within the window (`crate::hold`).
    /// Appended last, so stored states keep their encoding.
    Dropped,
}

impl AppState {
    /// Every state.
    pub const ALL: &'static [AppState] = &[
        AppState::Submitted,
        AppState::DocumentsRequired,
        AppState::InReview,
        AppState::AwaitingPayment,
        AppState::Paid,
        AppState::Scheduled,
        AppState::Issued,
        AppState::Collected,
        AppState::Rejected,
        AppState::Withdrawn,
        AppState::Dropped,
    ];

    /// No event may leave a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, AppState::Collected | AppState::Rejected | AppState::Withdrawn | AppState::Dropped)
    }

    /// Open: neither terminal nor issued; rejection and withdrawal allowed.
    pub fn is_open(self) -> bool {
        !self.is_terminal() && self != AppState::Issued
    }

    /// The application waits on the citizen: the SLA clock is stopped.
    pub fn waits_on_citizen(self) -> bool {
        matches!(self, AppState::DocumentsRequired | AppState::AwaitingPayment)
    }

    /// The agency's part is finished (issued, collected, rejected, withdrawn).
    pub fn is_finished(self) -> bool {
        matches!(self, AppState::Issued) || self.is_terminal()
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Submitted => "submitted",
            AppState::DocumentsRequired => "documents_required",
            AppState::InReview => "in_review",
            AppState::AwaitingPayment => "awaiting_payment",
            AppState::Paid => "paid",
            AppState::Scheduled => "scheduled",
            AppState::Issued => "issued",
            AppState::Collected => "collected",
            AppState::Rejected => "rejected",
            AppState::Withdrawn => "withdrawn",
            AppState::Dropped => "dropped",
        }
    }

    /// Name shown to citizens in Bahasa Indonesia.
    pub fn label_id(self) -> &'static str {
        match self {
            AppState::Submitted => "Diterima",
            AppState::DocumentsRequired => "Perlu Kelengkapan",
            AppState::InReview => "Diproses",
            AppState::AwaitingPayment => "Menunggu Pembayaran",
            AppState::Paid => "Dibayar",
            AppState::Scheduled => "Dijadwalkan",
            AppState::Issued => "Terbit",
            AppState::Collected => "Diambil",
            AppState::Rejected => "Ditolak",
            AppState::Withdrawn => "Dibatalkan",
            AppState::Dropped => "Tidak berlaku",
        }
    }

    /// Name shown to citizens in English.
    pub fn label_en(self) -> &'static str {
        match self {
            AppState::Submitted => "Submitted",
            AppState::DocumentsRequired => "Documents required",
            AppState::InReview => "In review",
            AppState::AwaitingPayment => "Awaiting payment",
            AppState::Paid => "Paid",
            AppState::Scheduled => "Scheduled",
            AppState::Issued => "Issued",
            AppState::Collected => "Collected",
            AppState::Rejected => "Rejected",
            AppState::Withdrawn => "Withdrawn",
            AppState::Dropped => "Dropped",
        }
    }
}

/// The state after `event` in state `from` (`None` = not yet filed), or
/// `None` when the transition is illegal. Case-level and catalogue events
/// have no application transition and always give `None`.
pub fn next_state(from: Option<AppState>, event: EventKind) -> Option<AppState> {
    use AppState as S;
    use EventKind as E;
    let Some(from) = from else {
        return (event == E::ApplicationFiled).then_some(S::Submitted);
    };
    match (event, from) {
        (E::DocumentsRequested, S::Submitted | S::InReview | S::Scheduled) => Some(S::DocumentsRequired),
        (E::DocumentsReceived, S::DocumentsRequired) => Some(S::Submitted),
        // From Scheduled: an interview or inspection was held and review goes on.
        (E::ReviewStarted, S::Submitted | S::Scheduled) => Some(S::InReview),
        (E::FeeAssessed, S::Submitted | S::InReview | S::Scheduled) => Some(S::AwaitingPayment),
        (E::PaymentReceived, S::AwaitingPayment) => Some(S::Paid),
        (E::AppointmentScheduled, S::Submitted | S::InReview | S::Paid | S::Scheduled) => Some(S::Scheduled),
        (E::Issued, S::InReview | S::Paid | S::Scheduled) => Some(S::Issued),
        (E::Collected, S::Issued) => Some(S::Collected),
        (E::Rejected, s) if s.is_open() => Some(S::Rejected),
        (E::Withdrawn, s) if s.is_open() => Some(S::Withdrawn),
        _ => None,
    }
}
