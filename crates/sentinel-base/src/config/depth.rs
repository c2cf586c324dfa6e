//! A linear pre-scan of a YAML document, run before any YAML parser sees it: it refuses
//! nesting deeper than a limit (YAML parsers take time quadratic in the depth, so
//! 100 000 `[` would otherwise take half a minute to refuse) and finds the flow
//! collection (`[` or `{`) left unclosed at the end of the document, so that mistake is
//! named instead of surfacing as a type error further down.
//!
//! The depth counted is the number of open block collections (distinct indentation
//! levels, plus one per `- `/`? ` marker on a line) plus the open flow collections.
//! It is an upper bound of the real depth, close enough for a limit that no real config
//! comes near. Text inside quotes, comments and block scalars (`|`, `>`) is skipped;
//! in block context a `[`/`{` counts only where a value starts (so `expr: x[5m]` is a
//! plain scalar, as YAML reads it).

/// The deepest nesting a config may have ([`check`]'s usual limit).
pub const MAX_YAML_DEPTH: usize = 64;

/// A 1-based position and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The first place the nesting went past the limit.
    pub too_deep: Option<ScanError>,
    /// The innermost flow collection still open at the end of the document.
    pub unclosed: Option<ScanError>,
}

/// Refuses a document nested deeper than `limit`; linear in its length.
pub fn check(source: &str, limit: usize) -> Result<(), ScanError> {
    match scan(source, limit).too_deep {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Scans the document once (stopping early when it is too deep).
pub fn scan(source: &str, limit: usize) -> Scan {
    let mut flow: Vec<(char, usize, usize)> = Vec::new();
    let mut block: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    let mut block_scalar: Option<usize> = None;
    let too_deep = |line: usize, column: usize| Scan {
        too_deep: Some(ScanError {
            line,
            column,
            message: format!("nesting deeper than {limit} levels"),
        }),
        unclosed: None,
    };
    for (ln, line) in source.split('\n').enumerate() {
        let line_no = ln + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block_scalar {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        if quote.is_none() && flow.is_empty() {
            let content = &line[indent..];
            if content.trim().is_empty() || content.starts_with('#') {
                continue;
            }
            if content.starts_with("---") || content.starts_with("...") {
                let rest = &content[3..];
                if rest.is_empty() || rest.starts_with([' ', '\t']) {
                    block.clear();
                    if rest.trim().is_empty() {
                        continue;
                    }
                }
            }
            while block.last().is_some_and(|&b| b > indent) {
                block.pop();
            }
            if block.last() != Some(&indent) {
                block.push(indent);
            }
            // `indent` counts ASCII spaces, so it is also a char index.
            i = indent;
            // Compact nesting on one line: `- - - x`, `? - x`.
            while i < chars.len()
                && matches!(chars[i], '-' | '?')
                && chars.get(i + 1).is_none_or(|c| *c == ' ')
            {
                i += 1;
                while chars.get(i) == Some(&' ') {
                    i += 1;
                }
                block.push(i);
            }
            if block.len() > limit {
                return too_deep(line_no, i.min(chars.len().saturating_sub(1)) + 1);
            }
        }
        let mut token_start = true;
        let mut in_prop = false;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if let Some(q) = quote {
                if q == '"' && c == '\\' {
                    i += 2;
                    continue;
                }
                if c == q {
                    if q == '\'' && next == Some('\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    token_start = false;
                }
                i += 1;
                continue;
            }
            let in_flow = !flow.is_empty();
            let after_space = i == 0 || matches!(chars[i - 1], ' ' | '\t');
            if c == '#' && after_space {
                break;
            }
            if in_prop {
                if c == ' ' || c == '\t' {
                    in_prop = false;
                    token_start = true;
                    i += 1;
                    continue;
                }
                if !(in_flow && matches!(c, '[' | '{' | ']' | '}' | ',')) {
                    i += 1;
                    continue;
                }
                in_prop = false;
            }
            match c {
                '[' | '{' if token_start || in_flow => {
                    flow.push((c, line_no, i + 1));
                    if block.len() + flow.len() > limit {
                        return too_deep(line_no, i + 1);
                    }
                    token_start = true;
                }
                ']' | '}' if in_flow => {
                    flow.pop();
                    token_start = false;
                }
                ',' if in_flow => token_start = true,
                ' ' | '\t' => {
                    if in_flow {
                        token_start = true;
                    }
                }
                ':' => {
                    token_start = in_flow || next.is_none_or(|n| n == ' ' || n == '\t');
                }
                '"' | '\'' if token_start => quote = Some(c),
                '&' | '!' if token_start => in_prop = true,
                '|' | '>' if token_start && !in_flow => {
                    let rest: String = chars[i + 1..].iter().collect();
                    let rest = rest.split(" #").next().unwrap_or("").trim();
                    if rest
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
                    {
                        block_scalar = Some(indent);
                        break;
                    }
                    token_start = false;
                }
                _ => token_start = false,
            }
            i += 1;
        }
    }
    Scan {
        too_deep: None,
        unclosed: flow.last().map(|&(c, line, column)| ScanError {
            line,
            column,
            message: format!(
                "unclosed flow {} `{c}` (no matching `{}` before the end of the file)",
                if c == '[' { "sequence" } else { "mapping" },
                if c == '[' { ']' } else { '}' }
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_fast_and_located() {
        let src = format!("x: {}", "[".repeat(100_000));
        let t = std::time::Instant::now();
        let e = check(&src, MAX_YAML_DEPTH).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // The top-level mapping is one level; the 64th `[` (column 3 + 64) is the 65th.
        assert_eq!((e.line, e.column), (1, 3 + MAX_YAML_DEPTH), "{e:?}");
        assert!(e.message.contains("deeper than 64"), "{e:?}");
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let seqs = format!("{}x\n", "- ".repeat(100));
        assert!(check(&seqs, MAX_YAML_DEPTH).is_err());
        let maps: String = (0..70)
            .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
            .collect();
        let e = check(&maps, MAX_YAML_DEPTH).unwrap_err();
        assert_eq!(e.line, 65, "{e:?}");
        // A tag or anchor before the bracket does not hide it.
        assert!(check(&format!("a: !t &x {}", "{".repeat(80)), 64).is_err());
    }

    #[test]
    fn ordinary_documents_pass() {
        let src = r#"
listen: "0.0.0.0:9188"   # [ not a bracket
rules:
  files: ["a/*.yaml", 'b[1].yaml']
notify:
  route: {receiver: a, routes: [{matchers: ['severity="critical"']}]}
groups:
  - name: g
    rules:
      - alert: X
        expr: sum(rate(x{job="a"}[5m])) > [
        annotations:
          description: |
            text with [ and { that
              is never closed {{ $labels.x }}
          summary: "multi
            line [ quoted"
"#;
        assert_eq!(scan(src, MAX_YAML_DEPTH), Scan::default());
        let deep20 = format!("a: {}{}", "[".repeat(20), "]".repeat(20));
        assert_eq!(scan(&deep20, MAX_YAML_DEPTH), Scan::default());
    }

    /// Random documents from YAML's significant characters (and multi-byte ones): the
    /// scan never panics and stays within the limit it was given.
    #[test]
    fn random_documents_never_panic() {
        let alphabet: Vec<char> = "[]{}-?:,#|>&!*'\"\\ \n\r\tab1é日".chars().collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let len = (x % 200) as usize;
            let doc: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = scan(&doc, 8);
        }
    }

    #[test]
    fn unclosed_flow_mapping_is_found() {
        let s = scan("log: {level: info, format: text\n\nlisten: x\n", 64);
        let u = s.unclosed.unwrap();
        assert_eq!((u.line, u.column), (1, 6));
        assert!(u.message.contains("unclosed flow mapping"), "{u:?}");
        assert!(scan("a: [1, 2]\n", 64).unclosed.is_none());
    }
}
