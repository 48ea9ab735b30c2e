//! CSV export of the dashboard's tables (RFC 4180), safe to open in a
//! spreadsheet.
//!
//! Every cell is quoted when it holds a comma, a quote, CR or LF, quotes
//! doubled; lines end in CRLF. A cell that a spreadsheet would read as a
//! formula (it starts with `=`, `+`, `-`, `@`, a tab or CR) gets a leading
//! `'`: agency ids, subjects and details come from the log and are treated
//! as hostile. Negative numbers are never written (every figure is a count
//! or a share), so no figure is changed by this.

use mpp_core::AppState as ApplicationState;

use crate::{utc, Group, Summary};

/// The tables that can be exported, by the name in
/// `GET /ops/export/{name}.csv`.
pub const TABLES: [&str; 7] =
    ["by_mpp", "by_agency", "overdue", "rejections_by_reason", "rejected", "sla_weekly", "rejections_daily"];

/// One CSV cell: neutralised against formulas, then quoted if needed.
pub fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn push_row<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&cell(c.as_ref()));
    }
    out.push_str("\r\n");
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn groups(out: &mut String, key: &str, groups: &[Group]) {
    let mut header = vec![key.to_owned(), "cases_opened".into(), "applications".into()];
    header.extend(ApplicationState::ALL.iter().map(|s| s.as_str().to_owned()));
    header.extend(["on_time", "late", "overdue", "sla_compliance_pct"].map(str::to_owned));
    push_row(out, &header);
    for g in groups {
        let mut row = vec![g.key.clone(), g.cases_opened.to_string(), g.applications.to_string()];
        row.extend(g.by_state.iter().map(|c| c.count.to_string()));
        row.extend([
            g.on_time.to_string(),
            g.late.to_string(),
            g.overdue.to_string(),
            opt(g.sla_compliance_pct),
        ]);
        push_row(out, &row);
    }
}

/// The table `name` of `s` as CSV, or `None` for an unknown name.
pub fn table(s: &Summary, name: &str) -> Option<String> {
    let mut out = String::new();
    match name {
        "by_mpp" => groups(&mut out, "region", &s.by_mpp),
        "by_agency" => groups(&mut out, "agency", &s.by_agency),
        "overdue" => {
            push_row(
                &mut out,
                &[
                    "tracking_number",
                    "region",
                    "agency",
                    "service",
                    "application_id",
                    "state",
                    "due_date",
                    "working_days_over",
                ],
            );
            for o in &s.overdue {
                push_row(
                    &mut out,
                    &[
                        o.tracking_number.clone(),
                        o.region.clone(),
                        o.agency.clone(),
                        o.service.clone(),
                        o.application_id.clone(),
                        o.state.to_owned(),
                        opt(o.due_date.as_ref()),
                        o.working_days_over.to_string(),
                    ],
                );
            }
        }
        "rejections_by_reason" => {
            push_row(&mut out, &["agency", "reason", "count"]);
            for r in &s.rejections_by_reason {
                push_row(&mut out, &[r.agency.clone(), r.reason.to_owned(), r.count.to_string()]);
            }
        }
        "rejected" => {
            push_row(
                &mut out,
                &[
                    "seq",
                    "recorded_at_utc",
                    "agency",
                    "subject",
                    "reason",
                    "detail",
                    "event_id",
                    "redrivable",
                    "redriven_seq",
                    "redriven_operator",
                    "redriven_verdict",
                    "redriven_reason",
                ],
            );
            for r in &s.rejected {
                let d = r.redriven.as_ref();
                push_row(
                    &mut out,
                    &[
                        r.seq.to_string(),
                        utc(r.recorded_at_ms),
                        r.agency.clone(),
                        r.subject.clone(),
                        r.reason.to_owned(),
                        r.detail.clone(),
                        opt(r.event_id.as_ref()),
                        r.redrivable.to_string(),
                        opt(d.map(|d| d.seq)),
                        opt(d.map(|d| &d.operator)),
                        opt(d.map(|d| d.verdict)),
                        opt(d.and_then(|d| d.reason)),
                    ],
                );
            }
        }
        "sla_weekly" => {
            push_row(
                &mut out,
                &["agency", "week", "starts_on", "on_time", "late", "overdue", "sla_compliance_pct"],
            );
            for w in &s.sla_weekly {
                push_row(
                    &mut out,
                    &[
                        w.agency.clone(),
                        w.week.clone(),
                        w.starts_on.clone(),
                        w.on_time.to_string(),
                        w.late.to_string(),
                        w.overdue.to_string(),
                        opt(w.sla_compliance_pct),
                    ],
                );
            }
        }
        "rejections_daily" => {
            push_row(&mut out, &["day_utc", "reason", "count"]);
            for r in &s.rejections_daily {
                push_row(&mut out, &[r.day.clone(), r.reason.to_owned(), r.count.to_string()]);
            }
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_per_rfc_4180() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for s in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(cell(s).trim_start_matches('"').starts_with('\''), "{s:?} → {}", cell(s));
        }
        assert_eq!(cell("1.5"), "1.5");
    }

    #[test]
    fn rows_end_in_crlf() {
        let mut out = String::new();
        push_row(&mut out, &["a", "b,c"]);
        assert_eq!(out, "a,\"b,c\"\r\n");
    }
}
