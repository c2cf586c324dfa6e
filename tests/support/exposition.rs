//! The one reader of the Prometheus text exposition (and the OpenMetrics text format)
//! for the integration tests: ours, node_exporter's, blackbox_exporter's and the
//! dashboards' contract sample. The binary only writes the format
//! (`sentinel_base::metrics::encode`), so the tests keep their own independent reader.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

/// Label pairs of one series, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// What the `# TYPE` and `# HELP` lines say about a family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyMeta {
    pub kind: String,
    /// Unescaped.
    pub help: String,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family of the last `# TYPE` line before it (its own name when there was none).
    pub family: String,
    pub name: String,
    pub labels: LabelSet,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name → TYPE and HELP.
    pub families: BTreeMap<String, FamilyMeta>,
    /// Sample lines, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses a text exposition; panics naming the line on anything malformed.
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.families.entry(name.to_string()).or_default().help = unescape(help);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                    panic!("TYPE line without a type: {line:?}");
                };
                out.families.entry(name.to_string()).or_default().kind = kind.to_string();
                current = Some(name.to_string());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (name, labels, value) = parse_sample(line);
                out.samples.push(Sample {
                    family: current.clone().unwrap_or_else(|| name.clone()),
                    name,
                    labels,
                    value,
                });
            }
        }
        out
    }

    /// Families whose TYPE is `histogram`.
    pub fn histograms(&self) -> BTreeSet<String> {
        self.families
            .iter()
            .filter(|(_, f)| f.kind == "histogram")
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The value of the sample `name` with exactly these labels (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: LabelSet = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// `name{a="x",b="y"}` (`name` alone without labels), values escaped as in the format:
/// a canonical key for comparing two expositions.
pub fn series_key(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", pairs.join(","))
}

/// The value of the line that starts with `series` (name and labels exactly as the
/// exposition writes them) and a space.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// `\\`, `\"` and `\n` undone.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `name{labels} value [timestamp] [# exemplar]` → (name, sorted labels, value).
fn parse_sample(line: &str) -> (String, LabelSet, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut v = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => v.push('\n'),
                                Some(o) => v.push(o),
                                None => panic!("bad escape in {line:?}"),
                            },
                            Some('"') => break,
                            Some(o) => v.push(o),
                            None => panic!("unterminated label value in {line:?}"),
                        }
                    }
                    labels.push((std::mem::take(&mut key), v));
                }
                o => key.push(o),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label set in {line:?}"));
        rest = &r[end..];
    }
    labels.sort();
    let v = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
    let value = v
        .parse()
        .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}"));
    (name, labels, value)
}

#[test]
fn exposition_reader_reads_types_help_labels_and_special_values() {
    let e = Exposition::parse(
        "# HELP h A \\\\ help\\nline.\n# TYPE h histogram\n\
         h_bucket{le=\"+Inf\",path=\"a\\\"b\"} 3\nh_sum{path=\"a\\\"b\"} NaN\n\
         # TYPE g gauge\ng -Inf 1700000000\nloose 2 # {trace_id=\"x\"} 1\n",
    );
    assert_eq!(e.families["h"].kind, "histogram");
    assert_eq!(e.families["h"].help, "A \\ help\nline.");
    assert_eq!(e.histograms(), BTreeSet::from(["h".to_string()]));
    assert_eq!(
        e.get("h_bucket", &[("path", "a\"b"), ("le", "+Inf")]),
        Some(3.0)
    );
    assert!(e.get("h_sum", &[("path", "a\"b")]).unwrap().is_nan());
    assert_eq!(e.get("g", &[]), Some(f64::NEG_INFINITY));
    assert_eq!(e.samples[0].family, "h");
    assert_eq!(e.samples[3].family, "g");
    assert_eq!(
        series_key("h_sum", &e.samples[1].labels),
        "h_sum{path=\"a\\\"b\"}"
    );
    assert_eq!(value("g -Inf\nm{a=\"1\"} 4\n", "m{a=\"1\"}"), Some(4.0));
}
