//! OpenMetrics text with timestamps, the input of `promtool tsdb
//! create-blocks-from openmetrics`: `history import` reads it and `history export`
//! writes it.
//!
//! Read: `# HELP`, `# TYPE`, `# UNIT` lines (skipped), sample lines
//! `name{label="value",...} value timestamp` (timestamp in seconds, required; an
//! exemplar after ` # ` is ignored), and a final `# EOF`. Anything else is an error at
//! its line and column, and nothing is imported.
//!
//! Written: series one after the other, each in time order, no metadata, `# EOF` last.
//! Stale markers are not written (the text format has no way to tell them from NaN).

use crate::labels::{Labels, METRIC_NAME};
use crate::store::is_stale;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The samples of a whole file, grouped by series (in order of first appearance).
pub type Parsed = Vec<(Labels, Vec<(i64, f64)>)>;

struct Line<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Line<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            column: self.pos + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn name(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || c == b':'
                || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(format!("expected a {what}"));
        }
        // ASCII only, so this is valid UTF-8.
        Ok(std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default())
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.peek() != Some(c) {
            return self.err(format!("expected {:?}", c as char));
        }
        self.pos += 1;
        Ok(())
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated label value"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'"') => out.push(b'"'),
                        Some(b'n') => out.push(b'\n'),
                        _ => return self.err("invalid escape in label value"),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).or_else(|_| self.err("label value is not valid UTF-8"))
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != b' ') {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
}

fn parse_float(tok: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(tok).ok()?;
    // Go's ParseFloat: inf/infinity/nan in any case, with an optional sign on inf.
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// The longest line an import reads (a located error beyond it).
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// The most labels (the name included) a series may have in an import.
pub const MAX_LABELS: usize = 128;
/// The most distinct series an import may hold (each costs its labels and its newest
/// timestamp while the file is read, then its place in the history).
pub const MAX_SERIES: usize = 1_000_000;
/// The most bytes the distinct series' label sets of one import may take together (a
/// million series of long labels would otherwise hold gigabytes while the file is read).
pub const MAX_LABEL_BYTES: usize = 256 << 20;

/// How much one import may hold: distinct series and their label bytes.
#[derive(Debug, Clone, Copy)]
struct ImportCaps {
    series: usize,
    label_bytes: usize,
}

/// The caps `history import` runs under (a `Parser` field needs a default too).
impl Default for ImportCaps {
    fn default() -> Self {
        ImportCaps {
            series: MAX_SERIES,
            label_bytes: MAX_LABEL_BYTES,
        }
    }
}

/// Parses a whole file; the first error stops it (nothing is returned then).
pub fn parse(text: &[u8]) -> Result<Parsed, ParseError> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Parsed = Vec::new();
    parse_reader(text, &mut |labels, t, v| {
        let i = match index.get(labels) {
            Some(i) => *i,
            None => {
                out.push((labels.clone(), Vec::new()));
                index.insert(labels.clone(), out.len() - 1);
                out.len() - 1
            }
        };
        out[i].1.push((t, v));
    })?;
    Ok(out)
}

/// Parses OpenMetrics text line by line from `r` (no line longer than
/// [`MAX_LINE_BYTES`] is read into memory), handing each sample to `on_sample` in file
/// order; returns the sample count. Memory: one line, and the newest timestamp of each
/// series (to check that a series' samples are in time order). On an error, samples
/// already handed over must be discarded by the caller.
pub fn parse_reader<R: std::io::BufRead>(
    r: R,
    on_sample: &mut dyn FnMut(&Labels, i64, f64),
) -> Result<u64, ParseError> {
    parse_reader_capped(r, ImportCaps::default(), on_sample)
}

/// [`parse_reader`] within `caps`: the first series past either cap is a located error
/// (its line, column 1).
fn parse_reader_capped<R: std::io::BufRead>(
    mut r: R,
    caps: ImportCaps,
    on_sample: &mut dyn FnMut(&Labels, i64, f64),
) -> Result<u64, ParseError> {
    use std::io::BufRead as _;
    let mut p = Parser {
        cur_t: i64::MIN,
        caps,
        ..Parser::default()
    };
    let mut buf = Vec::with_capacity(256);
    let mut line = 0usize;
    let mut newline_last = true;
    loop {
        buf.clear();
        let got = std::io::Read::take(&mut r, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ParseError {
                line: line + 1,
                column: 1,
                message: format!("read error: {e}"),
            })?;
        if got == 0 {
            break;
        }
        line += 1;
        let raw = match buf.strip_suffix(b"\n") {
            Some(raw) => raw,
            None if buf.len() > MAX_LINE_BYTES => {
                return Err(ParseError {
                    line,
                    column: MAX_LINE_BYTES + 1,
                    message: format!("line longer than {MAX_LINE_BYTES} bytes"),
                })
            }
            None => &buf[..],
        };
        p.line(raw, line, on_sample)?;
        newline_last = buf.ends_with(b"\n");
        if !newline_last {
            break;
        }
    }
    if !p.eof {
        // The line after the last newline (or the last line) is where # EOF is missing.
        let at = if newline_last { line + 1 } else { line };
        return Err(ParseError {
            line: at.max(1),
            column: 1,
            message: "missing # EOF at the end".into(),
        });
    }
    Ok(p.samples)
}

#[derive(Default)]
struct Parser {
    /// Each series' newest timestamp so far.
    newest: HashMap<Labels, i64>,
    /// The previous sample line's name and labels, and its series.
    last_prefix: Vec<u8>,
    last: Option<Labels>,
    /// The newest timestamp of `last` (kept here while its run of lines lasts).
    cur_t: i64,
    eof: bool,
    samples: u64,
    /// Distinct series seen so far.
    series: usize,
    /// Bytes of the distinct series' label sets so far.
    label_bytes: usize,
    caps: ImportCaps,
}

impl Parser {
    fn line(
        &mut self,
        raw: &[u8],
        line: usize,
        on_sample: &mut dyn FnMut(&Labels, i64, f64),
    ) -> Result<(), ParseError> {
        let mut l = Line {
            s: raw,
            pos: 0,
            line,
        };
        if self.eof {
            return l.err("content after # EOF");
        }
        if raw.is_empty() {
            return l.err("empty line");
        }
        if raw[0] == b'#' {
            if raw == b"# EOF" {
                self.eof = true;
                return Ok(());
            }
            l.pos = 1;
            l.expect(b' ')?;
            let kw = l.token();
            if !matches!(kw, b"HELP" | b"TYPE" | b"UNIT") {
                l.pos = 2;
                return l.err("expected HELP, TYPE, UNIT or EOF after #");
            }
            l.expect(b' ')?;
            l.name("metric name")?;
            if kw == b"TYPE" {
                l.expect(b' ')?;
                let start = l.pos;
                let t = l.token();
                if !matches!(
                    t,
                    b"counter"
                        | b"gauge"
                        | b"histogram"
                        | b"gaugehistogram"
                        | b"summary"
                        | b"info"
                        | b"stateset"
                        | b"unknown"
                ) {
                    l.pos = start;
                    return l.err("unknown metric type");
                }
            }
            return Ok(());
        }
        // A file lists a series' samples one after the other: the same name and labels
        // as the line before (already checked) are not parsed again.
        let same = self.last.is_some()
            && raw.starts_with(&self.last_prefix)
            && raw.get(self.last_prefix.len()) == Some(&b' ');
        if same {
            l.pos = self.last_prefix.len();
        } else {
            let labels = series_of(&mut l)?;
            if let Some(prev) = self.last.take() {
                self.newest.insert(prev, self.cur_t);
            }
            self.cur_t = match self.newest.get(&labels) {
                Some(t) => *t,
                None => {
                    if self.series >= self.caps.series {
                        l.pos = 0;
                        return l.err(format!(
                            "more than {} distinct series (the most one import may hold)",
                            self.caps.series
                        ));
                    }
                    let bytes = self.label_bytes.saturating_add(labels.heap_bytes());
                    if bytes > self.caps.label_bytes {
                        l.pos = 0;
                        return l.err(format!(
                            "the distinct series' labels take more than {} bytes (the most one import may hold)",
                            self.caps.label_bytes
                        ));
                    }
                    self.series += 1;
                    self.label_bytes = bytes;
                    i64::MIN
                }
            };
            self.last_prefix.clear();
            self.last_prefix.extend_from_slice(&raw[..l.pos]);
            self.last = Some(labels);
        }
        let labels = self.last.as_ref().expect("set above");
        l.expect(b' ')?;
        let vpos = l.pos;
        let v = match parse_float(l.token()) {
            Some(v) => v,
            None => {
                l.pos = vpos;
                return l.err("invalid sample value");
            }
        };
        if l.peek() != Some(b' ') {
            return l.err("sample has no timestamp (history import needs one per sample)");
        }
        l.pos += 1;
        let tpos = l.pos;
        let ts = match parse_float(l.token()) {
            Some(t) if t.is_finite() && t.abs() < 9.2e15 => t,
            _ => {
                l.pos = tpos;
                return l.err("invalid timestamp");
            }
        };
        if l.peek().is_some() && !raw[l.pos..].starts_with(b" # ") {
            return l.err("unexpected text after the timestamp");
        }
        let t_ms = (ts * 1000.0).round() as i64;
        if self.cur_t >= t_ms {
            l.pos = tpos;
            return l.err("timestamp not after the previous sample of this series");
        }
        self.cur_t = t_ms;
        self.samples += 1;
        on_sample(labels, t_ms, v);
        Ok(())
    }
}

/// Parses a series' name and labels.
fn series_of(l: &mut Line<'_>) -> Result<Labels, ParseError> {
    let name = l.name("metric name")?;
    let mut pairs: Vec<(String, String)> = vec![(METRIC_NAME.to_string(), name.to_string())];
    if l.peek() == Some(b'{') {
        l.pos += 1;
        loop {
            if l.peek() == Some(b'}') {
                l.pos += 1;
                break;
            }
            let ln = l.name("label name")?;
            l.expect(b'=')?;
            let v = l.quoted()?;
            if pairs.iter().any(|(k, _)| k == ln) {
                l.pos -= 1;
                return l.err(format!("duplicate label {ln:?}"));
            }
            if pairs.len() >= MAX_LABELS {
                return l.err(format!("more than {MAX_LABELS} labels"));
            }
            pairs.push((ln.to_string(), v));
            match l.peek() {
                Some(b',') => l.pos += 1,
                Some(b'}') => {}
                _ => return l.err("expected \",\" or \"}\""),
            }
        }
    }
    Ok(Labels::from_pairs(pairs))
}

/// A sample value in the exposition spelling the scrape uses
/// ([`sentinel_base::text::format_exposition`]: shortest round-trip digits), except that
/// negative zero keeps its sign, so an export reads back bit for bit.
fn format_float(v: f64) -> String {
    if v == 0.0 && v.is_sign_negative() {
        "-0".into()
    } else {
        sentinel_base::text::format_exposition(v)
    }
}

/// Writes series (each in time order) as OpenMetrics text; returns the samples written.
#[cfg(test)]
pub fn write(series: &[(Labels, Vec<(i64, f64)>)], w: &mut dyn Write) -> io::Result<u64> {
    let mut n = 0u64;
    for (labels, samples) in series {
        n += write_series(labels, samples, w)?;
    }
    w.write_all(b"# EOF\n")?;
    Ok(n)
}

/// Writes one series' samples (in time order) without the final `# EOF`; returns the
/// samples written.
pub fn write_series(labels: &Labels, samples: &[(i64, f64)], w: &mut dyn Write) -> io::Result<u64> {
    let mut n = 0u64;
    let mut line = String::new();
    {
        let mut prefix = String::from(labels.get(METRIC_NAME));
        let rest: Vec<(&str, &str)> = labels.iter().filter(|(k, _)| *k != METRIC_NAME).collect();
        if !rest.is_empty() {
            prefix.push('{');
            for (i, (k, v)) in rest.iter().enumerate() {
                if i > 0 {
                    prefix.push(',');
                }
                prefix.push_str(k);
                prefix.push_str("=\"");
                sentinel_base::metrics::encode::escape_label_value(&mut prefix, v);
                prefix.push('"');
            }
            prefix.push('}');
        }
        for &(t, v) in samples {
            if is_stale(v) {
                continue;
            }
            line.clear();
            line.push_str(&prefix);
            line.push(' ');
            line.push_str(&format_float(v));
            line.push(' ');
            if t < 0 {
                line.push('-');
            }
            let (sec, ms) = (t.unsigned_abs() / 1000, t.unsigned_abs() % 1000);
            if ms == 0 {
                line.push_str(&sec.to_string());
            } else {
                line.push_str(&format!("{sec}.{ms:03}"));
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_metadata_and_eof() {
        let text = b"# HELP up Up.\n# TYPE up gauge\nup{job=\"a\",instance=\"x\\\"y\"} 1 1700000000.5\nup{job=\"a\",instance=\"x\\\"y\"} NaN 1700000001\nhttp_requests_total 3e2 1700000000 # {trace_id=\"1\"} 1 1700000000\n# EOF\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0.get("instance"), "x\"y");
        assert_eq!(p[0].1[0], (1_700_000_000_500, 1.0));
        assert!(p[0].1[1].1.is_nan());
        assert_eq!(p[1].1, vec![(1_700_000_000_000, 300.0)]);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let cases: &[(&[u8], &str)] = &[
            (b"up 1 5\nup{a=1} 2 6\n# EOF\n", "2:6:"),
            (b"up 1\n# EOF\n", "1:5:"),
            (b"up 1 5\n", "2:1: missing # EOF"),
            (b"up x 5\n# EOF\n", "1:4:"),
            (b"up 1 5\n# EOF\nup 1 6\n", "3:1:"),
            (b"# FOO up\n# EOF\n", "1:3:"),
            (b"up 1 6\nup 2 5\n# EOF\n", "2:6:"),
            (b"\nup 1 5\n# EOF\n", "1:1: empty line"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(want),
                "{:?}: {e}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn import_with_more_distinct_series_than_the_cap_fails_at_the_first_one_over() {
        // Series a, b, a again (not new), then c: the third distinct series, on line 4.
        let text = b"m{s=\"a\"} 1 1\nm{s=\"b\"} 1 1\nm{s=\"a\"} 2 2\nm{s=\"c\"} 1 1\nm{s=\"d\"} 1 1\n# EOF\n";
        let mut seen = 0;
        let caps = |series| ImportCaps {
            series,
            label_bytes: usize::MAX,
        };
        let e = parse_reader_capped(&text[..], caps(2), &mut |_, _, _| seen += 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "4:1: more than 2 distinct series (the most one import may hold)"
        );
        assert_eq!(
            seen, 3,
            "nothing past the first series over the cap is read"
        );
        // At the cap it imports.
        assert_eq!(
            parse_reader_capped(&text[..], caps(4), &mut |_, _, _| {}).unwrap(),
            5
        );
    }

    #[test]
    fn import_whose_series_labels_pass_the_byte_cap_fails_at_the_first_one_over() {
        // Four series of one long label each: the third passes a cap of two and a half.
        let long = "x".repeat(1000);
        let text = format!(
            "m{{s=\"a{long}\"}} 1 1\nm{{s=\"b{long}\"}} 1 1\nm{{s=\"a{long}\"}} 2 2\nm{{s=\"c{long}\"}} 1 1\n# EOF\n"
        );
        let one = Labels::from_pairs([(METRIC_NAME, "m".to_string()), ("s", format!("a{long}"))])
            .heap_bytes();
        let caps = ImportCaps {
            series: usize::MAX,
            label_bytes: one * 5 / 2,
        };
        let mut seen = 0;
        let e = parse_reader_capped(text.as_bytes(), caps, &mut |_, _, _| seen += 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "4:1: the distinct series' labels take more than {} bytes (the most one import may hold)",
                one * 5 / 2
            )
        );
        assert_eq!(
            seen, 3,
            "nothing past the first series over the cap is read"
        );
    }

    /// What `history import` runs under is what docs/history.md states.
    #[test]
    fn import_runs_under_the_documented_caps() {
        let caps = ImportCaps::default();
        assert_eq!((caps.series, caps.label_bytes), (1_000_000, 256 << 20));
    }

    #[test]
    fn written_text_parses_back_to_the_same_samples() {
        let series = vec![
            (
                Labels::from_pairs([(METRIC_NAME, "a"), ("l", "x\n\"\\")]),
                vec![
                    (-1500, 1.5),
                    (0, f64::INFINITY),
                    (1_700_000_000_001, -2e-300),
                ],
            ),
            (
                Labels::from_pairs([(METRIC_NAME, "b")]),
                vec![(5000, 0.1), (6000, crate::store::stale_nan())],
            ),
        ];
        let mut buf = Vec::new();
        assert_eq!(write(&series, &mut buf).unwrap(), 4);
        let back = parse(&buf).unwrap();
        assert_eq!(back[0], series[0]);
        assert_eq!(
            back[1].1,
            vec![(5000, 0.1)],
            "stale markers are not exported"
        );
    }

    #[test]
    fn written_values_read_back_bit_for_bit_with_the_shared_formatter() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.1,
            1e15,
            123_456_789_012_345_680.0,
            1e-7,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NEG_INFINITY,
        ];
        let series = vec![(
            Labels::from_pairs([(METRIC_NAME, "v")]),
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64, *v))
                .collect(),
        )];
        let mut buf = Vec::new();
        write(&series, &mut buf).unwrap();
        let back = parse(&buf).unwrap();
        let bits = |s: &[(i64, f64)]| s.iter().map(|(_, v)| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&back[0].1),
            bits(&series[0].1),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
}
