//! Held applications (issue 15 item 3): what becomes of an application
//! filed into a case no front office has opened yet, while the participant
//! registry is in force.
//!
//! Agencies publish independently, so a filing can reach the hub before the
//! front office's `case_opened` (its outbox may lag). Such a filing is
//! *held*: accepted into the case's shell ([`Case::is_shell`]), which no
//! lookup shows, and counted in [`Holds`]. What becomes of it is decided
//! on the log's time of record only, never the wall clock, so a replay
//! gives the same log:
//!
//! - **It surfaces** when a front office opens its case within
//!   [`limits::HELD_APPLICATION_WINDOW_MS`] of the filing, and the filing
//!   was recorded no earlier than the front office says it issued the
//!   number (the opening's signed `occurred_at_ms`) less
//!   [`limits::HELD_APPLICATION_ISSUE_SKEW_MS_MAX`].
//! - **It is dropped** otherwise (kept in the case as [`AppState::Dropped`],
//!   which no view shows), and the entry that drops it says so with
//!   a reason code: `HELD_APPLICATION_EXPIRED` (not opened within the
//!   window) or `HELD_APPLICATION_PREDATES_OPENING` (filed before the number
//!   was issued). That entry is accepted; its reason and detail are a note
//!   ([`Resolution::note`]).
//!
//! The rule against planting: an agency learns a tracking number only from
//! the citizen, who gets it from the front office when the case is opened.
//! A filing recorded before the front office issued the number was filed
//! blind, into a number guessed (e.g. the next one the counter will
//! issue), so it never reaches the citizen's case. The skew allowance
//! covers the front office's clock against the stream's; a citizen walks
//! from the reception desk to an agency counter in longer than that.
//!
//! Bounds: at most [`limits::HELD_APPLICATIONS_PER_PARTICIPANT_MAX`] held
//! applications per participant and [`limits::HELD_APPLICATIONS_MAX`] in
//! all (`HELD_APPLICATIONS_FULL` beyond). A hold leaves [`Holds`] when its
//! case is opened or, once its window has passed, at the next accepted
//! filing into an unopened case (whose entry notes the expiry), so a
//! participant filing into a million unopened numbers holds its share and
//! no more. An expired hold stays in its shell in the store, out of sight:
//! at most the participant's share per window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::event::{Envelope, EventBody};
use crate::ids::{AgencyId, ApplicationId, TrackingNumber};
use crate::limits;
use crate::reason::{ReasonCode, Rejection};
use crate::state::AppState;

/// One held application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The filing participant.
    pub participant: AgencyId,
    /// The case it was filed into.
    pub case: TrackingNumber,
    /// The application.
    pub application: ApplicationId,
}

/// Every application held now, by the time of record and log sequence of
/// its filing (oldest first), with a count per participant. Part of the
/// registry (it exists only while the registry is in force) and stored
/// with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    by_filing: BTreeMap<(i64, u64), Held>,
    per_participant: BTreeMap<AgencyId, u32>,
}

/// Why a held application did not surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its case was not opened within the window.
    Expired,
    /// It was filed before the front office issued the number.
    PredatesOpening,
}

impl Dropped {
    fn code(self) -> ReasonCode {
        match self {
            Dropped::Expired => ReasonCode::HeldApplicationExpired,
            Dropped::PredatesOpening => ReasonCode::HeldApplicationPredatesOpening,
        }
    }
}

/// What an accepted entry does to held applications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Filing sequences of the holds whose window passed (they leave
    /// [`Holds`]).
    pub expired: Vec<u64>,
    /// Filing sequences of the applications an opening drops from the
    /// case, with why.
    pub dropped: Vec<(u64, Dropped)>,
}

impl Resolution {
    /// The note the entry carries, if it resolved any hold: the code of the
    /// first hold it resolved, and every filing sequence with its code.
    pub fn note(&self) -> Option<Rejection> {
        let all: Vec<(u64, Dropped)> =
            self.expired.iter().map(|s| (*s, Dropped::Expired)).chain(self.dropped.iter().copied()).collect();
        let (_, first) = all.first()?;
        let list: Vec<String> = all.iter().map(|(seq, why)| format!("{seq} {}", why.code())).collect();
        Some(Rejection::new(
            first.code(),
            format!("held applications resolved (filing seq and code): {}", list.join(", ")),
        ))
    }
}

fn window_passed(filed_ms: i64, now_ms: i64) -> bool {
    filed_ms.saturating_add(limits::HELD_APPLICATION_WINDOW_MS) <= now_ms
}

impl Holds {
    /// How many applications are held.
    pub fn len(&self) -> usize {
        self.by_filing.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_filing.is_empty()
    }

    /// How many applications `participant` holds.
    pub fn held_by(&self, participant: &AgencyId) -> usize {
        self.per_participant.get(participant).map_or(0, |n| *n as usize)
    }

    /// The holds whose window has passed at `now_ms`, oldest first.
    fn expired_at(&self, now_ms: i64) -> impl Iterator<Item = (&(i64, u64), &Held)> {
        self.by_filing.iter().take_while(move |((filed_ms, _), _)| window_passed(*filed_ms, now_ms))
    }

    /// Decides a filing by `participant` into a case not opened yet,
    /// recorded at `now_ms`: refused when the participant's or the hub's
    /// held slots are full once the expired holds are gone.
    pub fn decide_hold(&self, participant: &AgencyId, now_ms: i64) -> Result<(), Rejection> {
        let (mut total, mut own) = (self.len(), self.held_by(participant));
        for (_, h) in self.expired_at(now_ms) {
            total -= 1;
            own -= usize::from(&h.participant == participant);
        }
        if own >= limits::HELD_APPLICATIONS_PER_PARTICIPANT_MAX {
            return Err(Rejection::new(
                ReasonCode::HeldApplicationsFull,
                format!(
                    "participant {participant} already holds {own} applications filed into unopened cases; \
                     one participant holds at most {}",
                    limits::HELD_APPLICATIONS_PER_PARTICIPANT_MAX
                ),
            ));
        }
        if total >= limits::HELD_APPLICATIONS_MAX {
            return Err(Rejection::new(
                ReasonCode::HeldApplicationsFull,
                format!(
                    "the hub holds at most {} applications filed into unopened cases",
                    limits::HELD_APPLICATIONS_MAX
                ),
            ));
        }
        Ok(())
    }

    /// Holds the application `env` files (accepted by [`Holds::decide_hold`]),
    /// filed at log sequence `seq`, after removing the expired holds, which
    /// the resolution lists.
    pub fn hold(&mut self, env: &Envelope, seq: u64, now_ms: i64) -> Resolution {
        let expired: Vec<(i64, u64)> = self.expired_at(now_ms).map(|(k, _)| *k).collect();
        for k in &expired {
            self.remove(k);
        }
        if let Some((case, application)) = application_of(env) {
            *self.per_participant.entry(env.agency.clone()).or_default() += 1;
            self.by_filing.insert((now_ms, seq), Held { participant: env.agency.clone(), case, application });
        }
        Resolution { expired: expired.into_iter().map(|(_, s)| s).collect(), dropped: Vec::new() }
    }

    fn remove(&mut self, key: &(i64, u64)) {
        let Some(h) = self.by_filing.remove(key) else { return };
        if let Some(n) = self.per_participant.get_mut(&h.participant) {
            *n -= 1;
            if *n == 0 {
                self.per_participant.remove(&h.participant);
            }
        }
    }

    /// Releases every hold of `case` (its opening resolves them).
    pub fn release(&mut self, case: &TrackingNumber) {
        let keys: Vec<(i64, u64)> =
            self.by_filing.iter().filter(|(_, h)| h.case == *case).map(|(k, _)| *k).collect();
        for k in &keys {
            self.remove(k);
        }
    }
}

/// Marks the applications `dropped` lists [`AppState::Dropped`] in the case
/// being opened (they stay in it, as the log and the store keep every
/// application, but no view of the case shows them).
pub fn drop_from(case: &mut Case, dropped: &[(u64, Dropped)], now_ms: i64) {
    for a in &mut case.applications {
        if dropped.iter().any(|(seq, _)| first_seq(a) == Some(*seq)) {
            a.state = AppState::Dropped;
            a.state_since_ms = now_ms;
            a.pending = None;
        }
    }
}

/// The filing sequence of an application (its first timeline item).
fn first_seq(a: &crate::case::Application) -> Option<u64> {
    a.timeline.first().map(|t| t.seq)
}

/// The applications of `shell` that the opening `env`, recorded at
/// `now_ms`, drops (see the module docs), with why, in filing order.
pub fn dropped_by_opening(shell: &Case, env: &Envelope, now_ms: i64) -> Vec<(u64, Dropped)> {
    let issued_ms = env.occurred_at_ms.saturating_sub(limits::HELD_APPLICATION_ISSUE_SKEW_MS_MAX);
    shell
        .applications
        .iter()
        .filter_map(|a| {
            let seq = first_seq(a)?;
            if a.filed_at_ms < issued_ms {
                Some((seq, Dropped::PredatesOpening))
            } else if window_passed(a.filed_at_ms, now_ms) {
                Some((seq, Dropped::Expired))
            } else {
                None
            }
        })
        .collect()
}

fn application_of(env: &Envelope) -> Option<(TrackingNumber, ApplicationId)> {
    match (&env.target, &env.body) {
        (crate::event::Target::Application(case, app), EventBody::ApplicationFiled { .. }) => {
            Some((*case, app.clone()))
        }
        _ => None,
    }
}
