//! The dashboard's three charts, drawn from a [`Summary`] with [`crate::svg`]:
//! SLA compliance per week per agency, backlog by state per agency, and
//! rejections per day by reason.

use std::collections::BTreeMap;

use mpp_core::AppState as ApplicationState;
use serde::Serialize;

use crate::svg::{line_chart, stacked_bars, Folding, Line, CHART_BARS_MAX, CHART_SERIES_MAX};
use crate::Summary;

/// The `aria-label` of the SLA chart.
pub const SLA_CHART_LABEL: &str =
    "Kepatuhan SLA per minggu per instansi / SLA compliance per week per agency";
/// The `aria-label` of the backlog chart.
pub const BACKLOG_CHART_LABEL: &str = "Antrean per status per instansi / Backlog by state per agency";
/// The `aria-label` of the rejections chart.
pub const REJECTIONS_CHART_LABEL: &str = "Penolakan per hari per alasan / Rejections per day by reason";

/// The three charts as escaped SVG strings, for the template's `|safe`.
#[derive(Debug, Clone, Serialize)]
pub struct Charts {
    /// SLA % per week, one line per agency.
    pub sla: String,
    /// Open applications per state, one bar per agency.
    pub backlog: String,
    /// Rejections per day, stacked by reason.
    pub rejections: String,
}

/// Draws the charts of `s`.
pub fn charts(s: &Summary) -> Charts {
    Charts { sla: sla_chart(s), backlog: backlog_chart(s), rejections: rejections_chart(s) }
}

fn sla_chart(s: &Summary) -> String {
    // Agencies weighted by applications decided in the window; the folded
    // ones are summed, then their share computed.
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    for w in &s.sla_weekly {
        *weights.entry(w.agency.clone()).or_default() += w.on_time + w.late + w.overdue;
    }
    let folding = Folding::new(&weights, CHART_SERIES_MAX);
    let names = folding.names();
    // [line][week] → (on time, decided)
    let mut sums = vec![vec![(0u64, 0u64); s.sla_weeks.len()]; names.len()];
    for w in &s.sla_weekly {
        let Some(i) = s.sla_weeks.iter().position(|x| *x == w.week) else { continue };
        let cell = &mut sums[folding.index(&w.agency)][i];
        cell.0 += w.on_time;
        cell.1 += w.on_time + w.late + w.overdue;
    }
    let lines: Vec<Line> = names
        .into_iter()
        .zip(sums)
        .map(|(name, weeks)| Line {
            name,
            points: weeks.iter().map(|&(ok, n)| crate::compliance_pct(ok, n)).collect(),
            notes: weeks
                .iter()
                .map(|&(ok, n)| match crate::compliance_pct(ok, n) {
                    Some(p) => format!("{p}% ({ok}/{n})"),
                    None => String::new(),
                })
                .collect(),
        })
        .collect();
    let x: Vec<String> = s.sla_weeks.iter().map(|w| w.get(5..).unwrap_or(w).to_owned()).collect();
    line_chart(SLA_CHART_LABEL, &x, &lines, 100.0, "%")
}

fn backlog_chart(s: &Summary) -> String {
    let open: Vec<usize> =
        (0..ApplicationState::ALL.len()).filter(|i| !ApplicationState::ALL[*i].is_finished()).collect();
    let backlog = |g: &crate::Group| -> Vec<u64> { open.iter().map(|i| g.by_state[*i].count).collect() };
    let weights: BTreeMap<String, u64> = s
        .by_agency
        .iter()
        .map(|g| (g.key.clone(), backlog(g).iter().sum()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let folding = Folding::new(&weights, CHART_BARS_MAX);
    let bars = folding.names();
    let mut values = vec![vec![0u64; open.len()]; bars.len()];
    for g in s.by_agency.iter().filter(|g| weights.contains_key(&g.key)) {
        for (v, n) in values[folding.index(&g.key)].iter_mut().zip(backlog(g)) {
            *v += n;
        }
    }
    let segments: Vec<String> =
        open.iter().map(|i| ApplicationState::ALL[*i].label_id().to_owned()).collect();
    stacked_bars(BACKLOG_CHART_LABEL, &bars, &segments, &values)
}

fn rejections_chart(s: &Summary) -> String {
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    for r in &s.rejections_daily {
        *weights.entry(r.reason.to_owned()).or_default() += r.count;
    }
    let folding = Folding::new(&weights, CHART_SERIES_MAX);
    let segments = folding.names();
    let mut values = vec![vec![0u64; segments.len()]; s.rejection_days.len()];
    for r in &s.rejections_daily {
        let Some(d) = s.rejection_days.iter().position(|x| *x == r.day) else { continue };
        values[d][folding.index(r.reason)] += r.count;
    }
    let bars: Vec<String> = s.rejection_days.iter().map(|d| d.get(5..).unwrap_or(d).to_owned()).collect();
    stacked_bars(REJECTIONS_CHART_LABEL, &bars, &segments, &values)
}

// Every day of the rejections chart gets its bar.
const _: () = assert!(crate::OPS_CHART_DAYS <= CHART_BARS_MAX);
