//! Reading the metrics text back, for tests of every crate that records
//! metrics: [`parse`] checks the text format line by line as a strict
//! scraper would and panics on anything malformed.

use std::collections::BTreeMap;

/// Parses the text line by line: comments are `# HELP`/`# TYPE`, every
/// other line `name{labels} value` with a float value. Returns the
/// samples by `name{labels}`.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            assert!(!parts.next().unwrap_or("").is_empty(), "{line}");
            if kind == "TYPE" {
                assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        assert!(name.starts_with("mpp_") || name.starts_with("process_"), "{line}");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
            .unwrap_or(name);
        assert!(typed.contains(base), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap();
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{line}");
                    assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "{line}");
                }
            }
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "series twice: {line}");
    }
    samples
}

/// Checks that histogram `name` in `samples` has cumulative buckets at
/// `bounds` and `+Inf` and a `_count` equal to the last; returns the count.
pub fn histogram_is_consistent(samples: &BTreeMap<String, f64>, name: &str, bounds: &[f64]) -> f64 {
    let mut last = 0.0;
    for b in bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_owned()]) {
        let v = samples[&format!("{name}_bucket{{le=\"{b}\"}}")];
        assert!(v >= last, "{name} buckets must be cumulative");
        last = v;
    }
    assert_eq!(samples[&format!("{name}_count")], last, "{name}_count is the +Inf bucket");
    last
}
