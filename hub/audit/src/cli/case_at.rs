//! `mpp-hub audit case-at`: one case as it stood at a point of the log.
//!
//! The fold applies, in log order up to the point, every accepted entry that
//! publishes a service standard or targets the case, and every accepted
//! registry statement, with the core's own [`mpp_core::apply`] and
//! [`mpp_core::registry::apply_statement`]: the same fold as the live
//! projection, restricted to what the case depends on (the standard in
//! force when each application was filed, and the registry, under which an
//! application filed before the case was opened is held, then surfaces or
//! is dropped by the opening: `mpp_core::hold`). It trusts the verdicts
//! recorded in the log; `audit verify` and `audit rebuild` are what check
//! them. Memory: one case, the standards and the registry (its holds are
//! this case's only, as only this case's filings are folded).
//!
//! The answer shows the case as a citizen's lookup showed it at that point:
//! applications dropped when the case was opened are left out of `case`,
//! as the lookups leave them out, and listed apart in
//! `dropped_applications`.

use std::io::Write;

use anyhow::{bail, Context};
use mpp_core::calendar::CalendarSet;
use mpp_core::decide::MemState;
use mpp_core::event::Target;
use mpp_core::log::Verdict;
use mpp_core::registry::{self, Statement, REGISTRY_SUBJECT};
use mpp_core::validate::validate;
use mpp_core::{apply, case_status_at, AppState, Case, EntryMeta, TrackingNumber};
use mpp_proto::v1 as pb;
use mpp_store::Store;
use prost::Message as _;

use super::rebuild::load_verified_export;
use super::{calendars, open_store_with_projection, parse_instant, say, CaseAtArgs, Progress, EXIT_FAILED};
use mpp_lookup::lookup::{Found, ServiceName};

/// Where in the log to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// After the entry with this sequence (entries `1..=seq`).
    Seq(u64),
    /// After the last entry recorded at or before this instant (Unix ms);
    /// the fold stops at the first entry recorded later, since the log's
    /// order, not its clock, is what counts.
    Time(i64),
}

/// A case as of a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseAt {
    /// The case, if it was open by then.
    pub case: Option<Case>,
    /// The standards in force at that point.
    pub standards: MemState,
    /// The last entry folded (0: none).
    pub as_of_seq: u64,
    /// Its time of record, Unix ms (for [`Point::Time`], the instant asked).
    pub as_of_ms: i64,
}

/// Folds the log of `store` up to `point` for case `tn`.
pub fn case_at<S: Store>(
    store: &S,
    tn: &TrackingNumber,
    point: Point,
    progress: &mut Progress,
) -> anyhow::Result<CaseAt> {
    let head = store.head().context("reading the head")?;
    let mut state = MemState::default();
    let mut as_of = CaseAt { case: None, standards: MemState::default(), as_of_seq: 0, as_of_ms: 0 };
    let limit = match point {
        Point::Seq(n) if n > head.last_seq => {
            bail!("seq {n} is beyond the head of the log (seq {})", head.last_seq)
        }
        Point::Seq(n) => n,
        Point::Time(_) => head.last_seq,
    };
    let tn_text = tn.to_string();
    for e in store.entries(1).take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let e = e.with_context(|| format!("reading entry {}", as_of.as_of_seq + 1))?;
        let recorded_at_ms = e.recorded_at_ms();
        if let Point::Time(t) = point {
            if recorded_at_ms > t {
                break;
            }
        }
        progress.tick(1);
        as_of.as_of_seq = e.seq;
        as_of.as_of_ms = recorded_at_ms;
        if e.verdict != Verdict::Accepted {
            continue;
        }
        if e.subject == REGISTRY_SUBJECT {
            let statement = statement_of(&e.payload).map_err(|r| {
                anyhow::anyhow!("entry {} was accepted but its statement does not validate: {r}", e.seq)
            })?;
            registry::apply_statement(
                &mut state.registry,
                &statement,
                EntryMeta { seq: e.seq, recorded_at_ms },
            );
            continue;
        }
        let decoded = pb::Envelope::decode(e.payload.as_slice())
            .with_context(|| format!("entry {} was accepted but its payload does not decode", e.seq))?;
        // Cheap filter before validating: only standards and this case matter.
        if !decoded.case_id.is_empty() && decoded.case_id != tn_text {
            continue;
        }
        let env = validate(&e.subject, &mpp_wire::to_unchecked(&decoded), recorded_at_ms)
            .map_err(|r| anyhow::anyhow!("entry {} was accepted but does not validate: {r:?}", e.seq))?;
        let relevant = match &env.target {
            Target::Catalogue => true,
            Target::Case(id) | Target::Application(id, _) => id == tn,
        };
        if relevant {
            apply(&mut state, &env, EntryMeta { seq: e.seq, recorded_at_ms });
        }
    }
    if let Point::Time(t) = point {
        as_of.as_of_ms = t;
    }
    as_of.case = state.cases.remove(tn);
    as_of.standards = state;
    Ok(as_of)
}

/// The registry statement an accepted entry on [`REGISTRY_SUBJECT`] holds
/// (its registrar's signature was checked when the hub accepted it).
fn statement_of(payload: &[u8]) -> Result<Statement, String> {
    let outer = pb::SignedRegistryStatement::decode(payload)
        .map_err(|_| "the payload is not a protobuf mpp.v1.SignedRegistryStatement".to_owned())?;
    let inner = pb::RegistryStatement::decode(outer.statement.as_slice())
        .map_err(|_| "the statement is not a protobuf mpp.v1.RegistryStatement".to_owned())?;
    registry::validate_statement(&mpp_wire::statement_to_unchecked(&inner)).map_err(|r| r.code.to_string())
}

/// [`crate::audit::case_at`] (the hub's own fold, which reads only the
/// case's entries through the live case's index) with the answer shaped like
/// [`case_at`]'s. Needs a store with its projection; [`case_at`] needs only
/// the log.
pub fn case_at_indexed<S: Store>(store: &S, tn: &TrackingNumber, point: Point) -> anyhow::Result<CaseAt> {
    let head = store.head().context("reading the head")?;
    let (as_of, as_of_seq, as_of_ms) = match point {
        Point::Seq(n) if n > head.last_seq => {
            bail!("seq {n} is beyond the head of the log (seq {})", head.last_seq)
        }
        Point::Seq(n) => {
            let ms = match store.entry(n).context("reading the entry")? {
                Some(e) if n > 0 => e.recorded_at_ms(),
                _ => 0,
            };
            (crate::audit::AsOf::Seq(n), n, ms)
        }
        Point::Time(t) => (crate::audit::AsOf::TimeMs(t), 0, t),
    };
    let case = crate::audit::case_at(store, tn, as_of).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut standards = MemState::default();
    for s in store.standards().context("reading the standards")? {
        standards.standards.insert((s.agency.clone(), s.service.clone()), s);
    }
    let as_of_seq = match point {
        Point::Seq(_) => as_of_seq,
        Point::Time(_) => case.as_ref().map_or(0, |c| c.last_seq),
    };
    Ok(CaseAt { case, standards, as_of_seq, as_of_ms })
}

/// The case as the hub's JSON shows it, with SLA clocks as of `as_of_ms`.
pub fn case_json(
    case: Case,
    standards: &MemState,
    calendars: &CalendarSet,
    as_of_ms: i64,
) -> serde_json::Value {
    let slas = mpp_core::sla::case_sla(&case, calendars, as_of_ms);
    let status = case_status_at(&case, calendars, as_of_ms);
    let service_names = case
        .applications
        .iter()
        .map(|a| {
            standards
                .standards
                .get(&(a.agency.clone(), a.service.clone()))
                .map(|s| ServiceName { id: s.name_id.clone(), en: s.name_en.clone() })
                .unwrap_or_default()
        })
        .collect();
    // An auditor's view: every timeline item (the case is bounded by
    // mpp_core::limits::CASE_BYTES_MAX).
    let timeline = mpp_lookup::lookup::TimelinePage::whole(&case);
    let found = Found {
        case,
        status,
        slas,
        service_names,
        access: Vec::new(),
        failed_attempts: None,
        now_ms: as_of_ms,
        timeline,
    };
    serde_json::to_value(mpp_lookup::json::case_json(&found)).unwrap_or(serde_json::Value::Null)
}

/// The case as the lookups show it (without the applications dropped when
/// it was opened, `mpp_core::hold`), and those applications as
/// `agency/application_id (filed at seq N)`, in filing order.
pub fn split_dropped(mut case: Case) -> (Case, Vec<String>) {
    let dropped = case
        .applications
        .iter()
        .filter(|a| a.state == AppState::Dropped)
        .map(|a| {
            let filed = a.timeline.first().map_or(0, |t| t.seq);
            format!("{}/{} (filed at seq {filed})", a.agency, a.id)
        })
        .collect();
    case.applications.retain(|a| a.state != AppState::Dropped);
    (case, dropped)
}

/// `mpp-hub audit case-at`.
pub(crate) fn run(args: &CaseAtArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let tn = mpp_lookup::lookup::parse_tracking_number(&args.case)
        .map_err(|e| anyhow::anyhow!("--case {:?}: {e:?}", args.case))?;
    let point = match (args.seq, &args.time) {
        (Some(n), _) => Point::Seq(n),
        (None, Some(t)) => Point::Time(parse_instant(t)?),
        (None, None) => bail!("give --seq or --time"),
    };
    let (cals, _) = calendars(args.calendars_dir.as_deref())?;
    let mut progress = Progress::new("case-at");
    let result = match (&args.data_dir, &args.export) {
        (Some(dir), _) => case_at_indexed(&open_store_with_projection(dir)?, &tn, point)?,
        (None, Some(path)) => {
            let Some((log, _dir)) = load_verified_export(path, out)? else {
                return Ok(EXIT_FAILED);
            };
            case_at(&log, &tn, point, &mut progress)?
        }
        (None, None) => bail!("give --data-dir or --export"),
    };
    progress.finish();
    let Some(case) = result.case.clone() else {
        say(out, &format!("case {tn} was not open as of seq {} ({} ms)", result.as_of_seq, result.as_of_ms))?;
        return Ok(EXIT_FAILED);
    };
    let (shown, dropped) = split_dropped(case);
    let v = serde_json::json!({
        "as_of_seq": result.as_of_seq,
        "as_of_ms": result.as_of_ms,
        "case": case_json(shown, &result.standards, &cals, result.as_of_ms),
        "dropped_applications": dropped,
    });
    say(out, &serde_json::to_string_pretty(&v)?)?;
    Ok(0)
}
