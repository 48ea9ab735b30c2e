//! `mpp-hub audit sla-report`: service-standard compliance per MPP (region),
//! agency and service, for the applications filed in a period.
//!
//! Each application filed (local date in its MPP's calendar) between `from`
//! and `to` inclusive is counted once, with its SLA clock
//! ([`mpp_core::sla::sla`]) as of one instant, by default the time of record
//! of the last log entry so that the report is a function of the log alone:
//!
//! * `finished`: issued, rejected or withdrawn by then, split into
//!   `on_time` (within the standard's working days) and `late`;
//! * `open`: not finished, of which `overdue` are past their due date;
//! * `compliance_pct` = `on_time / (finished + overdue)`: the share of the
//!   applications whose outcome is decided (finished, or already late) that
//!   met the standard; open applications still within their time are left
//!   out, so the figure never counts a pending application as a success or
//!   a failure. `None` when nothing is decided yet.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context};
use mpp_core::calendar::CalendarSet;
use mpp_core::{Case, Date};
use mpp_store::Store;
use serde::Serialize;

use super::rebuild::load_verified_export;
use super::{calendars, open_store_with_projection, parse_instant, say, SlaReportArgs, EXIT_FAILED};

/// Counts for one group of applications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Applications filed in the period.
    pub filed: u64,
    /// Finished (issued, rejected, withdrawn) by the report's instant.
    pub finished: u64,
    /// Finished within the standard.
    pub on_time: u64,
    /// Finished after the standard.
    pub late: u64,
    /// Not finished.
    pub open: u64,
    /// Not finished and past the due date.
    pub overdue: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.filed += o.filed;
        self.finished += o.finished;
        self.on_time += o.on_time;
        self.late += o.late;
        self.open += o.open;
        self.overdue += o.overdue;
    }

    /// `on_time / (finished + overdue)` in percent, `None` when nothing is
    /// decided.
    pub fn compliance_pct(&self) -> Option<f64> {
        let decided = self.finished + self.overdue;
        (decided > 0).then(|| 100.0 * self.on_time as f64 / decided as f64)
    }
}

/// One row: a group and its counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// BPS region code of the MPP (empty in agency totals).
    pub region: String,
    /// Agency (empty in MPP totals).
    pub agency: String,
    /// Service (empty in totals).
    pub service: String,
    /// The counts.
    #[serde(flatten)]
    pub tally: Tally,
    /// See [`Tally::compliance_pct`].
    pub compliance_pct: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    /// First filing date.
    pub from: String,
    /// Last filing date.
    pub to: String,
    /// The instant the clocks are read at, Unix ms.
    pub as_of_ms: i64,
    /// Where the holidays came from.
    pub calendars: String,
    /// Per region, agency and service.
    pub rows: Vec<Row>,
    /// Per MPP (region).
    pub by_mpp: Vec<Row>,
    /// Per agency (all MPPs).
    pub by_agency: Vec<Row>,
    /// Everything.
    pub total: Row,
}

fn row(region: &str, agency: &str, service: &str, tally: Tally) -> Row {
    Row {
        region: region.to_owned(),
        agency: agency.to_owned(),
        service: service.to_owned(),
        tally,
        compliance_pct: tally.compliance_pct(),
    }
}

/// Builds the report from cases (streamed, one at a time).
pub fn sla_report(
    cases: impl Iterator<Item = anyhow::Result<Case>>,
    calendars: &CalendarSet,
    from: Date,
    to: Date,
    as_of_ms: i64,
    calendars_label: String,
) -> anyhow::Result<SlaReport> {
    let mut groups: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    for case in cases {
        let case = case?;
        let region = case.tracking_number.region();
        let cal = calendars.calendar(region);
        for app in &case.applications {
            let filed_on = cal.local_date(app.filed_at_ms);
            if filed_on < from || filed_on > to {
                continue;
            }
            let v = mpp_core::sla::sla(app, &cal, as_of_ms);
            let t = groups
                .entry((region.to_string(), app.agency.to_string(), app.service.to_string()))
                .or_default();
            t.filed += 1;
            match v.finished_on_time {
                Some(on_time) => {
                    t.finished += 1;
                    if on_time {
                        t.on_time += 1;
                    } else {
                        t.late += 1;
                    }
                }
                None => {
                    t.open += 1;
                    if v.overdue {
                        t.overdue += 1;
                    }
                }
            }
        }
    }
    let mut by_mpp: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_agency: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for ((r, a, _), t) in &groups {
        by_mpp.entry(r.clone()).or_default().add(t);
        by_agency.entry(a.clone()).or_default().add(t);
        total.add(t);
    }
    Ok(SlaReport {
        from: from.to_string(),
        to: to.to_string(),
        as_of_ms,
        calendars: calendars_label,
        rows: groups.iter().map(|((r, a, s), t)| row(r, a, s, *t)).collect(),
        by_mpp: by_mpp.iter().map(|(r, t)| row(r, "", "", *t)).collect(),
        by_agency: by_agency.iter().map(|(a, t)| row("", a, "", *t)).collect(),
        total: row("", "", "", total),
    })
}

/// The report as a table.
pub fn table(r: &SlaReport) -> String {
    let mut s = format!(
        "SLA compliance for applications filed {} to {}, clocks as of {} ms; calendars: {}\n\
         compliance = on time / (finished + overdue open)\n\n",
        r.from, r.to, r.as_of_ms, r.calendars
    );
    let header = format!(
        "{:<6} {:<16} {:<20} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>10}\n",
        "MPP", "agency", "service", "filed", "finished", "on time", "late", "open", "overdue", "compliance"
    );
    let line = |row: &Row| {
        let t = &row.tally;
        let pct = row.compliance_pct.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"));
        format!(
            "{:<6} {:<16} {:<20} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>10}\n",
            row.region,
            row.agency,
            row.service,
            t.filed,
            t.finished,
            t.on_time,
            t.late,
            t.open,
            t.overdue,
            pct
        )
    };
    s.push_str(&header);
    r.rows.iter().for_each(|x| s.push_str(&line(x)));
    s.push_str("\nper MPP\n");
    r.by_mpp.iter().for_each(|x| s.push_str(&line(x)));
    s.push_str("\nper agency\n");
    r.by_agency.iter().for_each(|x| s.push_str(&line(x)));
    s.push('\n');
    s.push_str(&line(&Row { region: "all".to_owned(), ..r.total.clone() }));
    s
}

/// The time of record of the last entry (0 for an empty log).
fn last_entry_ms<S: Store>(store: &S) -> anyhow::Result<i64> {
    let head = store.head()?;
    Ok(match store.entry(head.last_seq)? {
        Some(e) if head.last_seq > 0 => e.recorded_at_ms(),
        _ => 0,
    })
}

/// `mpp-hub audit sla-report`.
pub(crate) fn run(args: &SlaReportArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let parse_date = |s: &str, flag: &str| Date::parse(s).map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"));
    let (from, to) = (parse_date(&args.from, "--from")?, parse_date(&args.to, "--to")?);
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    let (cals, label) = calendars(args.calendars_dir.as_deref())?;
    let as_of = |last_ms: i64| -> anyhow::Result<i64> {
        match &args.as_of {
            None => Ok(last_ms),
            Some(t) => {
                let ms = parse_instant(t)?;
                if ms < last_ms {
                    bail!(
                        "--as-of {t} is before the last log entry ({last_ms} ms): the projection already holds later \
                         events; use `audit case-at` for the past"
                    );
                }
                Ok(ms)
            }
        }
    };
    let report = match (&args.data_dir, &args.export) {
        (Some(dir), _) => {
            let store = open_store_with_projection(dir)?;
            let ms = as_of(last_entry_ms(&store)?)?;
            let cases = store.cases().map(|c| c.context("reading a case"));
            sla_report(cases, &cals, from, to, ms, label)?
        }
        (None, Some(path)) => {
            let Some((log, _dir)) = load_verified_export(path, out)? else {
                return Ok(EXIT_FAILED);
            };
            let (state, _) = mpp_ledger::ledger::rebuild_with(&log, &args.registrar.trust()?)
                .context("rebuilding from the export")?;
            let ms = as_of(last_entry_ms(&log)?)?;
            sla_report(state.cases.into_values().map(Ok), &cals, from, to, ms, label)?
        }
        (None, None) => bail!("give --data-dir or --export"),
    };
    if args.json {
        say(out, &serde_json::to_string_pretty(&report)?)?;
    } else {
        say(out, &table(&report))?;
    }
    Ok(0)
}
