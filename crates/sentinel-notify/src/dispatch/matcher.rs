//! Label matchers in Alertmanager's string form (`severity="critical"`,
//! `instance=~"gpu-.*"`, `team!=ops`, or several in braces `{a="b", c!~"d"}`), used by
//! routes, inhibition rules and silences. Regexes are anchored, as in Alertmanager.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// In Alertmanager's `MatchType` order (it sorts by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    re: Option<Regex>,
}

/// Why a matcher (or a matcher string) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    #[error("invalid regex {value:?}: {reason}")]
    InvalidRegex { value: String, reason: String },
    #[error("{0:?}: missing closing brace")]
    MissingBrace(String),
    #[error("{0:?}: no matcher")]
    Empty(String),
    #[error("{0:?}: missing operator")]
    MissingOperator(String),
    #[error("{0:?}: expected one of = != =~ !~")]
    UnknownOperator(String),
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// A request's matcher strings hold more matchers than [`RequestLimits`] allow.
    #[error("{count} matchers in one request; at most {max} are allowed")]
    TooMany { count: usize, max: usize },
    /// An error inside the matcher string `matcher`.
    #[error("{matcher:?}: {error}")]
    In {
        matcher: String,
        error: Box<MatcherError>,
    },
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.op.as_str(),
            crate::webhook::payload::go_quote(&self.value)
        )
    }
}

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, MatcherError> {
        Self::build(name, op, value, None)
    }

    /// As [`Matcher::new`], with a regex refused when it compiles to more than
    /// `size_limit` bytes (the regex crate's default is 10 MiB).
    fn build(
        name: &str,
        op: Op,
        value: &str,
        size_limit: Option<usize>,
    ) -> Result<Self, MatcherError> {
        if !valid_label_name(name) {
            return Err(MatcherError::InvalidName(name.to_string()));
        }
        let re = match op {
            Op::Re | Op::NotRe => Some(
                {
                    let mut b = regex::RegexBuilder::new(&format!("^(?:{value})$"));
                    if let Some(n) = size_limit {
                        // The lazy DFA's cache grows as the regex matches: held to the
                        // same bound (past it the regex matches without that cache).
                        b.size_limit(n).dfa_size_limit(n);
                    }
                    b.build()
                }
                .map_err(|e| {
                    // regex's syntax errors span several lines; the last says why.
                    let why = e.to_string();
                    let why = why
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches("error: ")
                        .to_string();
                    MatcherError::InvalidRegex {
                        value: value.to_string(),
                        reason: why,
                    }
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// A missing label matches as the empty string (Alertmanager's rule).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

pub fn matches_all(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Parses one matcher string, which may hold several matchers (`{a="b", c="d"}`).
pub fn parse(s: &str) -> Result<Vec<Matcher>, MatcherError> {
    parse_with(s, None)
}

/// As [`parse`], each regex refused when it compiles to more than `size_limit` bytes
/// (requests go through [`parse_request`]; the tests check the limit on its own).
#[cfg(test)]
pub fn parse_limited(s: &str, size_limit: usize) -> Result<Vec<Matcher>, MatcherError> {
    parse_with(s, Some(size_limit))
}

/// Caps on the matchers of one client request (several matcher strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most matchers in all the request's strings together, counted before any regex
    /// is compiled.
    pub max_matchers: usize,
    /// Compiled bytes the request's regexes share: each gets an equal part, at most
    /// `regex_bytes`.
    pub total_regex_bytes: usize,
    /// Most bytes one regex may compile to.
    pub regex_bytes: usize,
}

/// Parses the matcher strings of one client request into one conjunction, held to
/// `limits` as a whole: one string may hold many matchers (`{a=~"x",a=~"y",...}`), so
/// capping the strings alone would not bound what the request compiles.
pub fn parse_request(list: &[&str], limits: RequestLimits) -> Result<Vec<Matcher>, MatcherError> {
    let mut parts = Vec::new();
    for s in list {
        parts.extend(parse_parts(s)?.into_iter().map(|p| (*s, p)));
    }
    if parts.len() > limits.max_matchers {
        return Err(MatcherError::TooMany {
            count: parts.len(),
            max: limits.max_matchers,
        });
    }
    let regexes = parts
        .iter()
        .filter(|(_, (_, op, _))| matches!(op, Op::Re | Op::NotRe))
        .count();
    let each = (limits.total_regex_bytes / regexes.max(1)).min(limits.regex_bytes);
    parts
        .into_iter()
        .map(|(s, (name, op, value))| {
            Matcher::build(&name, op, &value, Some(each)).map_err(|e| MatcherError::In {
                matcher: s.to_string(),
                error: Box::new(e),
            })
        })
        .collect()
}

fn parse_with(s: &str, size_limit: Option<usize>) -> Result<Vec<Matcher>, MatcherError> {
    let within = |e: MatcherError| MatcherError::In {
        matcher: s.to_string(),
        error: Box::new(e),
    };
    parse_parts(s)?
        .into_iter()
        .map(|(name, op, value)| Matcher::build(&name, op, &value, size_limit).map_err(within))
        .collect()
}

/// One matcher string's matchers as `(name, op, value)`, nothing compiled yet.
fn parse_parts(s: &str) -> Result<Vec<(String, Op, String)>, MatcherError> {
    let mut t = s.trim();
    if let Some(inner) = t.strip_prefix('{') {
        t = inner
            .strip_suffix('}')
            .ok_or_else(|| MatcherError::MissingBrace(s.to_string()))?;
    }
    let mut out = Vec::new();
    let within = |e: MatcherError| MatcherError::In {
        matcher: s.to_string(),
        error: Box::new(e),
    };
    for part in split_outside_quotes(t).map_err(within)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_one(part).map_err(within)?);
    }
    if out.is_empty() {
        return Err(MatcherError::Empty(s.to_string()));
    }
    Ok(out)
}

/// Parses a list of matcher strings into one conjunction.
pub fn parse_list(list: &[String]) -> Result<Vec<Matcher>, (usize, MatcherError)> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        out.extend(parse(s).map_err(|e| (i, e))?);
    }
    Ok(out)
}

fn split_outside_quotes(s: &str) -> Result<Vec<&str>, MatcherError> {
    let mut parts = Vec::new();
    let (mut start, mut in_q, mut esc) = (0, false, false);
    for (i, c) in s.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            ',' if !in_q => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_q {
        return Err(MatcherError::UnterminatedQuote);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_one(s: &str) -> Result<(String, Op, String), MatcherError> {
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| MatcherError::MissingOperator(s.to_string()))?;
    let name = &s[..name_end];
    let rest = s[name_end..].trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (Op::Re, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (Op::NotRe, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (Op::Ne, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (Op::Eq, r)
    } else {
        return Err(MatcherError::UnknownOperator(s.to_string()));
    };
    let raw = rest.trim();
    let value = if let Some(q) = raw.strip_prefix('"') {
        let q = q.strip_suffix('"').ok_or_else(|| MatcherError::In {
            matcher: s.to_string(),
            error: Box::new(MatcherError::UnterminatedQuote),
        })?;
        unescape(q)
    } else {
        raw.to_string()
    };
    Ok((name.to_string(), op, value))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(x) => out.push(x),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `{a="b", c=~"d"}` as Alertmanager prints a route's matchers (part of the group key).
pub fn list_string(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms() {
        let l = labels(&[("severity", "critical"), ("instance", "gpu-01")]);
        // (matcher, matches l)
        let cases = [
            (r#"severity="critical""#, true),
            ("severity=critical", true),
            (r#"severity!="critical""#, false),
            (r#"instance=~"gpu-.*""#, true),
            (r#"instance=~"gpu""#, false), // anchored
            (r#"instance!~"cpu-.*""#, true),
            (r#"team="""#, true), // missing label is ""
            (r#"{severity="critical", instance=~"gpu-0[0-9]"}"#, true),
            (r#"{severity="critical",instance="x"}"#, false),
            (r#"summary="a, b""#, false),
        ];
        for (s, want) in cases {
            let ms = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(matches_all(&ms, &l), want, "{s}");
        }
        assert_eq!(parse(r#"summary="a, b""#).unwrap()[0].value, "a, b");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "severity",
            "sev erity=\"x\"",
            r#"a=~"(""#,
            r#"a="x"#,
            "{a=\"b\"",
            "1a=b",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn matcher_errors_are_typed_and_name_the_matcher_string() {
        assert_eq!(
            parse("{a=\"b\"").unwrap_err(),
            MatcherError::MissingBrace("{a=\"b\"".into())
        );
        assert_eq!(
            parse("1a=b").unwrap_err().to_string(),
            r#""1a=b": invalid label name "1a""#
        );
        // An unterminated quote names the string it is in (it used to say only
        // "unterminated quote").
        assert_eq!(
            parse(r#"a="x, b=y"#).unwrap_err().to_string(),
            r#""a=\"x, b=y": unterminated quote"#
        );
        assert!(matches!(
            parse(r#"a=~"(""#).unwrap_err(),
            MatcherError::In { error, .. } if matches!(*error, MatcherError::InvalidRegex { .. })
        ));
    }

    #[test]
    fn client_regex_that_compiles_huge_is_refused_under_the_size_limit() {
        // 15 bytes of pattern, megabytes of compiled program.
        let hog = r#"a=~"(\w{100}){100}""#;
        assert!(parse(hog).is_ok(), "the default limit lets it through");
        let e = parse_limited(hog, 256 * 1024).unwrap_err().to_string();
        assert!(e.contains("size limit"), "{e}");
        assert!(parse_limited(r#"a=~"gpu-.*""#, 256 * 1024).is_ok());
    }

    const LIMITS: RequestLimits = RequestLimits {
        max_matchers: 64,
        total_regex_bytes: 1 << 20,
        regex_bytes: 256 * 1024,
    };

    /// `{a=~"x",a=~"x",...}` repeated `n` times in one string.
    fn many(m: &str, n: usize) -> String {
        format!("{{{}}}", vec![m; n].join(","))
    }

    #[test]
    fn one_filter_holding_hundreds_of_regex_matchers_is_refused_before_any_compiles() {
        // One matcher string within a 16 KiB header, hundreds of matchers that each
        // compile to up to the per-regex limit: refused as a whole, counted across
        // every string of the request.
        let hog = many(r#"a=~"\\w{5}""#, 300);
        assert!(hog.len() < 16 * 1024);
        assert_eq!(
            parse_request(&[&hog], LIMITS).unwrap_err(),
            MatcherError::TooMany {
                count: 300,
                max: 64
            }
        );
        let half = many(r#"a!="x""#, 40);
        assert_eq!(
            parse_request(&[&half, &half], LIMITS).unwrap_err(),
            MatcherError::TooMany { count: 80, max: 64 }
        );
        // At the cap they are taken.
        let ms = parse_request(&[&many(r#"a=~"gpu-.*""#, 32), &half[..]], {
            RequestLimits {
                max_matchers: 72,
                ..LIMITS
            }
        })
        .unwrap();
        assert_eq!(ms.len(), 72);
        let labels = BTreeMap::from([("a".to_string(), "gpu-1".to_string())]);
        assert!(matches_all(&ms, &labels));
        let labels = BTreeMap::from([("a".to_string(), "x".to_string())]);
        assert!(!matches_all(&ms, &labels));
    }

    #[test]
    fn regexes_of_one_request_share_one_compiled_size_budget() {
        // `\w{5}` (Unicode) compiles to between 128 and 256 KiB: four fit in 1 MiB,
        // eight do not, though each alone is under the per-regex limit.
        let four = many(r#"a=~"\\w{5}""#, 4);
        assert_eq!(parse_request(&[&four], LIMITS).unwrap().len(), 4);
        let e = parse_request(&[&four, &four], LIMITS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("size limit"), "{e}");
        // Plain matchers take none of it.
        let eq = many(r#"b="x""#, 50);
        assert_eq!(parse_request(&[&four, &eq], LIMITS).unwrap().len(), 54);
    }
}
