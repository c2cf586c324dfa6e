//! Encoders for the two exposition formats Prometheus negotiates: the classic text
//! format 0.0.4 and OpenMetrics 1.0. Both are validated in tests by `promtool check
//! metrics` and by Prometheus's own parsers through a real scrape.

use super::{MetricFamily, MetricType, Sample, Suffix};
use std::fmt::Write;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Formats a sample value for both exposition formats; see
/// [`crate::text::format_exposition`], the workspace's one float formatter.
pub fn format_value(v: f64) -> String {
    crate::text::format_exposition(v)
}

/// Appends a label value escaped as both exposition formats (and OpenMetrics import) read it.
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, v: &str, openmetrics: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if openmetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn write_sample(out: &mut String, name: &str, s: &Sample) {
    out.push_str(name);
    out.push_str(s.suffix.as_str());
    write_labels_and_value(out, s, s.value);
}

fn write_labels_and_value(out: &mut String, s: &Sample, value: f64) {
    if !s.labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in s.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// Classic Prometheus text format (version 0.0.4).
pub fn encode_text(families: &[MetricFamily], out: &mut String) {
    for f in families {
        encode_text_family(f, out);
    }
}

/// One family in the classic text format: what [`encode_text`] writes for it (nothing
/// when it has no samples). A body is the concatenation of its families' pieces.
pub fn encode_text_family(f: &MetricFamily, out: &mut String) {
    if f.samples.is_empty() {
        return;
    }
    out.push_str("# HELP ");
    out.push_str(&f.name);
    out.push(' ');
    escape_help(out, &f.help, false);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
    for s in &f.samples {
        write_sample(out, &f.name, s);
    }
}

/// OpenMetrics 1.0 text format. Counter metadata uses the name without `_total`, and
/// the body ends with `# EOF`. Counters and histograms whose creation time is known get
/// a `<name>_created` sample (Unix seconds) after their last sample, so a Prometheus
/// that ingests created timestamps records a zero there and counts the first event.
pub fn encode_openmetrics(families: &[MetricFamily], out: &mut String) {
    for f in families {
        encode_openmetrics_family(f, out);
    }
    out.push_str(OPENMETRICS_EOF);
}

/// The line that ends an OpenMetrics body.
pub const OPENMETRICS_EOF: &str = "# EOF\n";

/// One family in OpenMetrics: what [`encode_openmetrics`] writes for it, without the
/// closing [`OPENMETRICS_EOF`] (nothing when it has no samples).
pub fn encode_openmetrics_family(f: &MetricFamily, out: &mut String) {
    if f.samples.is_empty() {
        return;
    }
    let meta_name = match f.kind {
        MetricType::Counter => f.name.strip_suffix("_total").unwrap_or(&f.name),
        _ => &f.name,
    };
    let kind = match f.kind {
        MetricType::Untyped => "unknown",
        k => k.as_str(),
    };
    let _ = writeln!(out, "# TYPE {meta_name} {kind}");
    out.push_str("# HELP ");
    out.push_str(meta_name);
    out.push(' ');
    escape_help(out, &f.help, true);
    out.push('\n');
    for s in &f.samples {
        write_sample(out, &f.name, s);
        let last_of_point = match f.kind {
            MetricType::Counter => s.suffix == Suffix::None,
            MetricType::Histogram => s.suffix == Suffix::Count,
            _ => false,
        };
        if let (true, Some(created)) = (last_of_point, s.created) {
            out.push_str(meta_name);
            out.push_str("_created");
            write_labels_and_value(out, s, created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.5e20), "1.5e20");
        assert_eq!(format_value(2e-9), "2e-9");
        for v in [1.5e20, 2e-9, 0.1, 123456.789, -3.0] {
            assert_eq!(format_value(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn escapes_label_values_and_help() {
        let f = MetricFamily::counter("a_total", "line\\one\ntwo \"q\"")
            .with(&[("l", "x\"y\\z\nw")], 3.0);
        let mut text = String::new();
        encode_text(std::slice::from_ref(&f), &mut text);
        assert_eq!(
            text,
            "# HELP a_total line\\\\one\\ntwo \"q\"\n# TYPE a_total counter\na_total{l=\"x\\\"y\\\\z\\nw\"} 3\n"
        );
        let mut om = String::new();
        encode_openmetrics(&[f], &mut om);
        assert!(om.starts_with("# TYPE a counter\n# HELP a line\\\\one\\ntwo \\\"q\\\"\n"));
        assert!(om.ends_with("a_total{l=\"x\\\"y\\\\z\\nw\"} 3\n# EOF\n"));
    }

    #[test]
    fn openmetrics_carries_created_for_counters_and_histograms_and_text_does_not() {
        let mut c = MetricFamily::counter("ops_total", "c");
        c.push_created(
            super::super::labels(&[("op", "a")]),
            1.0,
            Some(1700000000.5),
        );
        c.push(&[("op", "b")], 2.0); // created unknown (restored): no _created line
        let mut h = MetricFamily::histogram("d_seconds", "d");
        let mut snap = super::super::HistogramSnapshot::new(&[1.0]);
        snap.observe(0.5);
        h.push_histogram_created(
            super::super::labels(&[("op", "a")]),
            &snap,
            Some(1700000001.0),
        );
        let g = MetricFamily::gauge("g", "g").with::<&str, &str>(&[], 1.0);
        let fams = [c, h, g];
        let mut om = String::new();
        encode_openmetrics(&fams, &mut om);
        assert_eq!(
            om,
            "# TYPE ops counter\n# HELP ops c\n\
             ops_total{op=\"a\"} 1\nops_created{op=\"a\"} 1700000000.5\nops_total{op=\"b\"} 2\n\
             # TYPE d_seconds histogram\n# HELP d_seconds d\n\
             d_seconds_bucket{op=\"a\",le=\"1\"} 1\nd_seconds_bucket{op=\"a\",le=\"+Inf\"} 1\n\
             d_seconds_sum{op=\"a\"} 0.5\nd_seconds_count{op=\"a\"} 1\n\
             d_seconds_created{op=\"a\"} 1700000001\n\
             # TYPE g gauge\n# HELP g g\ng 1\n# EOF\n"
        );
        let mut text = String::new();
        encode_text(&fams, &mut text);
        assert!(!text.contains("_created"), "{text}");
    }

    #[test]
    fn empty_families_are_skipped() {
        let mut text = String::new();
        encode_text(&[MetricFamily::gauge("g", "h")], &mut text);
        assert_eq!(text, "");
    }
}
