//! Server-rendered SVG charts for the dashboard: a line chart and a stacked
//! bar chart, as inline `<svg>` strings that need no JavaScript.
//!
//! Pure: strings in, a string out. Every text that reaches the SVG is
//! XML-escaped here (agency ids and reason codes come from the log and are
//! treated as hostile), so the template may mark the result `|safe`. Each
//! chart has a fixed `viewBox`, `role="img"` and an `aria-label`, a
//! `<title>` on every point and bar segment (the browser's tooltip and what
//! a screen reader reads), axis labels and a legend. At most
//! [`CHART_SERIES_MAX`] series (lines or stacked segments) and
//! [`CHART_BARS_MAX`] bars are drawn; callers fold the rest into
//! [`OTHERS`] with [`Folding`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Most series (lines, or segments of a stack) one chart draws, "others"
/// included.
pub const CHART_SERIES_MAX: usize = 8;

/// Most bars one chart draws, "others" included.
pub const CHART_BARS_MAX: usize = 16;

/// Most characters of a label drawn on the chart (the `<title>` keeps the
/// whole label).
pub const CHART_LABEL_CHARS_MAX: usize = 18;

/// The name of the series or bar that holds everything folded.
pub const OTHERS: &str = "lainnya / others";

/// Colours of the series in order: the Okabe–Ito palette (distinguishable
/// with the common colour-vision deficiencies), darkened where it is too
/// light on white; the last is for [`OTHERS`].
const PALETTE: [&str; CHART_SERIES_MAX] =
    ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#332288", "#8a9099"];

/// Dash patterns of the lines in order, so lines differ by more than colour.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

const WIDTH: u32 = 800;
const HEIGHT: u32 = 300;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 590.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 256.0;
const LEGEND_X: f64 = 606.0;

/// XML-escapes `s` for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A label cut to [`CHART_LABEL_CHARS_MAX`] characters, escaped.
fn short(s: &str, chars_max: usize) -> String {
    if s.chars().count() <= chars_max {
        escape(s)
    } else {
        let cut: String = s.chars().take(chars_max.saturating_sub(1)).collect();
        escape(&format!("{cut}…"))
    }
}

/// Which keys a chart draws by name and which it folds into [`OTHERS`]:
/// the heaviest keys (ties by name) when there are more than `max`.
#[derive(Debug, Clone)]
pub struct Folding {
    kept: Vec<String>,
    kept_set: BTreeSet<String>,
    folded: bool,
}

impl Folding {
    /// Keeps all keys when there are at most `max`, else the `max - 1`
    /// heaviest and [`OTHERS`].
    pub fn new(weights: &BTreeMap<String, u64>, max: usize) -> Folding {
        let max = max.max(1);
        let mut keys: Vec<(&String, u64)> = weights.iter().map(|(k, w)| (k, *w)).collect();
        let folded = keys.len() > max;
        if folded {
            keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            keys.truncate(max - 1);
            keys.sort_by(|a, b| a.0.cmp(b.0));
        }
        let kept: Vec<String> = keys.into_iter().map(|(k, _)| k.clone()).collect();
        Folding { kept_set: kept.iter().cloned().collect(), kept, folded }
    }

    /// The names drawn, in order, [`OTHERS`] last if anything was folded.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.kept.clone();
        if self.folded {
            names.push(OTHERS.to_owned());
        }
        names
    }

    /// The position among [`Folding::names`] of the name `key` is drawn as.
    pub fn index(&self, key: &str) -> usize {
        if self.kept_set.contains(key) {
            self.kept.iter().position(|k| k == key).unwrap_or(0)
        } else {
            self.kept.len()
        }
    }
}

fn open(out: &mut String, label: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{}\" class=\"chart\" font-family=\"system-ui,sans-serif\" font-size=\"12\">\
         <title>{}</title><rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>",
        escape(label),
        escape(label)
    );
}

fn no_data(out: &mut String) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#4a4f57\" font-size=\"16\">\
         Belum ada data / no data yet</text></svg>",
        WIDTH / 2,
        HEIGHT / 2
    );
}

/// Horizontal grid lines and y labels from 0 to `y_max` in `steps`.
fn y_axis(out: &mut String, y_max: f64, steps: u32, unit: &str) {
    for i in 0..=steps {
        let v = y_max * f64::from(i) / f64::from(steps);
        let y = BOTTOM - (BOTTOM - TOP) * f64::from(i) / f64::from(steps);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d0d4da\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#33373d\">{}{}</text>",
            LEFT - 6.0,
            y + 4.0,
            round_label(v),
            escape(unit)
        );
    }
}

fn round_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn x_labels(out: &mut String, labels: &[String], x_of: impl Fn(usize) -> f64, slot: f64) {
    // Keep labels apart: draw every n-th when slots are narrow.
    let every = ((48.0 / slot).ceil() as usize).max(1);
    let chars = ((slot * every as f64) / 7.0).floor().max(3.0) as usize;
    for (i, l) in labels.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#33373d\">{}<title>{}</title></text>",
            x_of(i),
            BOTTOM + 16.0,
            short(l, chars.min(CHART_LABEL_CHARS_MAX)),
            escape(l)
        );
    }
}

fn legend(out: &mut String, names: &[String], lines: bool) {
    for (i, n) in names.iter().enumerate() {
        let y = TOP + 4.0 + 20.0 * i as f64;
        let colour = PALETTE[i.min(PALETTE.len() - 1)];
        if lines {
            let _ = write!(
                out,
                "<line x1=\"{LEGEND_X}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
                 stroke-width=\"3\" stroke-dasharray=\"{}\"/>",
                LEGEND_X + 22.0,
                y + 6.0,
                y + 6.0,
                DASHES[i % DASHES.len()]
            );
        } else {
            let _ = write!(
                out,
                "<rect x=\"{LEGEND_X}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>"
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#1a1a1a\">{}<title>{}</title></text>",
            LEGEND_X + 28.0,
            y + 10.0,
            short(n, CHART_LABEL_CHARS_MAX + 4),
            escape(n)
        );
    }
}

/// One line of a line chart: a value per x position, `None` where there is
/// none (the line has a gap there), and the tooltip of each point.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its name in the legend.
    pub name: String,
    /// Values per x position.
    pub points: Vec<Option<f64>>,
    /// Tooltip text per x position.
    pub notes: Vec<String>,
}

/// A line chart of `lines` over `x` (at most [`CHART_SERIES_MAX`] lines are
/// drawn), y from 0 to `y_max` labelled with `unit`.
pub fn line_chart(label: &str, x: &[String], lines: &[Line], y_max: f64, unit: &str) -> String {
    let mut out = String::new();
    open(&mut out, label);
    let lines = &lines[..lines.len().min(CHART_SERIES_MAX)];
    if x.is_empty() || lines.iter().all(|l| l.points.iter().all(Option::is_none)) || y_max <= 0.0 {
        no_data(&mut out);
        return out;
    }
    y_axis(&mut out, y_max, 4, unit);
    let slot = (RIGHT - LEFT) / x.len() as f64;
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |v: f64| BOTTOM - (BOTTOM - TOP) * (v.clamp(0.0, y_max) / y_max);
    x_labels(&mut out, x, x_of, slot);
    for (s, line) in lines.iter().enumerate() {
        let colour = PALETTE[s.min(PALETTE.len() - 1)];
        let mut d = String::new();
        let mut pen_down = false;
        for (i, p) in line.points.iter().take(x.len()).enumerate() {
            match p {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x_of(i), y_of(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" stroke-dasharray=\"{}\"/>",
            d.trim_end(),
            DASHES[s % DASHES.len()]
        );
        for (i, p) in line.points.iter().take(x.len()).enumerate() {
            if let Some(v) = p {
                let note = line.notes.get(i).map_or("", String::as_str);
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{}</title></circle>",
                    x_of(i),
                    y_of(*v),
                    escape(&format!("{} · {}: {note}", line.name, x[i]))
                );
            }
        }
    }
    legend(&mut out, &lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>(), true);
    out.push_str("</svg>");
    out
}

/// A stacked bar chart: one bar per `bars` label, stacked by `segments`;
/// `values[bar][segment]`. At most [`CHART_BARS_MAX`] bars and
/// [`CHART_SERIES_MAX`] segments are drawn.
pub fn stacked_bars(label: &str, bars: &[String], segments: &[String], values: &[Vec<u64>]) -> String {
    let mut out = String::new();
    open(&mut out, label);
    let bars = &bars[..bars.len().min(CHART_BARS_MAX)];
    let segments = &segments[..segments.len().min(CHART_SERIES_MAX)];
    let total = |b: usize| -> u64 {
        values.get(b).map_or(0, |v| v.iter().take(segments.len()).copied().fold(0u64, u64::saturating_add))
    };
    let top = (0..bars.len()).map(total).max().unwrap_or(0);
    if bars.is_empty() || segments.is_empty() || top == 0 {
        no_data(&mut out);
        return out;
    }
    let y_max = nice_ceiling(top);
    y_axis(&mut out, y_max as f64, 4, "");
    let slot = (RIGHT - LEFT) / bars.len() as f64;
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let scale = (BOTTOM - TOP) / y_max as f64;
    for (b, bar) in bars.iter().enumerate() {
        let mut y = BOTTOM;
        let width = (slot * 0.7).min(60.0);
        for (s, segment) in segments.iter().enumerate() {
            let n = values.get(b).and_then(|v| v.get(s)).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = n as f64 * scale;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}</title></rect>",
                x_of(b) - width / 2.0,
                PALETTE[s.min(PALETTE.len() - 1)],
                escape(&format!("{bar} · {segment}: {n}"))
            );
        }
        if total(b) > 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1a1a1a\" font-size=\"11\">{}</text>",
                x_of(b),
                y - 4.0,
                total(b)
            );
        }
    }
    x_labels(&mut out, bars, x_of, slot);
    legend(&mut out, segments, false);
    out.push_str("</svg>");
    out
}

/// The smallest of 1, 2, 5 × 10ⁿ (times 4, for four grid steps) at or above
/// `n`, so the grid lines fall on round numbers.
fn nice_ceiling(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if s.saturating_mul(4) >= n {
                return s.saturating_mul(4);
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i:02}")).collect()
    }

    #[test]
    fn hostile_labels_are_escaped_everywhere() {
        let evil = "<script>alert('x')</script>&\"";
        let line = Line { name: evil.to_owned(), points: vec![Some(50.0)], notes: vec![evil.to_owned()] };
        let svg = line_chart(evil, &[evil.to_owned()], &[line], 100.0, "%");
        let bars = stacked_bars(evil, &[evil.to_owned()], &[evil.to_owned()], &[vec![3]]);
        for s in [svg, bars] {
            assert!(!s.contains("<script"), "{s}");
            assert!(!s.contains("'x'"), "{s}");
            assert!(s.contains("&lt;script&gt;") && s.contains("&amp;&quot;"), "{s}");
            assert!(s.starts_with("<svg ") && s.ends_with("</svg>"));
        }
        assert_eq!(escape("a\u{1}b"), "a\u{fffd}b");
    }

    #[test]
    fn empty_data_draws_a_no_data_chart() {
        for s in [
            line_chart("SLA", &[], &[], 100.0, "%"),
            line_chart(
                "SLA",
                &names(3),
                &[Line { name: "a".into(), points: vec![None; 3], notes: vec![] }],
                100.0,
                "%",
            ),
            stacked_bars("Backlog", &[], &names(2), &[]),
            stacked_bars("Backlog", &names(2), &names(2), &[vec![0, 0], vec![0, 0]]),
        ] {
            assert!(
                s.contains("no data yet") && s.contains("role=\"img\"") && s.contains("aria-label=\""),
                "{s}"
            );
            assert!(s.ends_with("</svg>"));
        }
    }

    #[test]
    fn charts_draw_at_most_their_bounds() {
        let lines: Vec<Line> = names(CHART_SERIES_MAX + 5)
            .into_iter()
            .map(|name| Line { name, points: vec![Some(10.0), Some(20.0)], notes: vec![] })
            .collect();
        let svg = line_chart("SLA", &names(2), &lines, 100.0, "%");
        assert_eq!(svg.matches("<path ").count(), CHART_SERIES_MAX);
        let values = vec![vec![1u64; CHART_SERIES_MAX + 3]; CHART_BARS_MAX + 7];
        let svg = stacked_bars("B", &names(CHART_BARS_MAX + 7), &names(CHART_SERIES_MAX + 3), &values);
        assert_eq!(svg.matches("<rect x=").count(), CHART_BARS_MAX * CHART_SERIES_MAX + CHART_SERIES_MAX);
        // Short rows of values are zeros, not a panic.
        let svg = stacked_bars("B", &names(3), &names(3), &[vec![1]]);
        assert_eq!(svg.matches("<title>s00 · s00: 1</title>").count(), 1);
    }

    #[test]
    fn folding_keeps_the_heaviest_and_names_the_rest_others() {
        let weights: BTreeMap<String, u64> = (0..10u64).map(|i| (format!("k{i}"), i)).collect();
        let f = Folding::new(&weights, 4);
        assert_eq!(f.names(), vec!["k7", "k8", "k9", OTHERS]);
        assert_eq!(f.index("k9"), 2);
        assert_eq!(f.index("k0"), 3);
        let few: BTreeMap<String, u64> = [("b".to_owned(), 1), ("a".to_owned(), 2)].into();
        let f = Folding::new(&few, 4);
        assert_eq!(f.names(), vec!["a", "b"]);
        assert_eq!(f.index("b"), 1);
    }

    #[test]
    fn the_y_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(1), 4);
        assert_eq!(nice_ceiling(7), 8);
        assert_eq!(nice_ceiling(9), 20);
        assert_eq!(nice_ceiling(130), 200);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn long_labels_are_cut_on_the_chart_and_whole_in_the_title() {
        let long = "a".repeat(100);
        let svg = stacked_bars("B", std::slice::from_ref(&long), &names(1), &[vec![2]]);
        assert!(svg.contains(&format!("<title>{long}</title>")) || svg.contains(&format!("{long} · s00: 2")));
        assert!(svg.contains('…'));
    }
}
