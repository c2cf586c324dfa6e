//! `comfy-sentinel rules test`: runs `promtool test rules` files against this engine,
//! transcribing `cmd/promtool/unittest.go` of Prometheus 2.42 — the same evaluation loop
//! (every group at every `evaluation_interval` step from 0 to the largest eval time,
//! input samples loaded lazily up to each step), the same comparisons (firing alerts
//! only, both sides sorted; exact sample values) and promtool-like messages — so one
//! test file gives the same verdict in promtool and here.

use crate::eval::Evaluator;
use crate::group::{AlertState, EvalContext, Group};
use crate::labels::{go_quote, Labels, METRIC_NAME};
use crate::rulefile::{expand_globs, load_files};
use crate::store::{stale_nan, Origin, Store};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Why an input series or an expected sample cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// A metric (`name{label="value"}`) that does not parse, and why.
    #[error("{series:?}: {why}")]
    Metric { series: String, why: &'static str },
    /// A value of the expanding notation (`1+2x3`, `_`, `stale`) that does not parse.
    #[error("invalid series value {0:?}")]
    Value(String),
}

/// Why a test file cannot be run at all (promtool prints it as the file's one error).
#[derive(Debug, thiserror::Error)]
pub enum UnitTestError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A rule file that does not load (or a `rule_files` glob that is invalid).
    #[error("{0}")]
    Rules(#[from] crate::rulefile::LoadError),
    #[error("not a valid duration string: {text:?} ({reason})")]
    Duration { text: String, reason: String },
    #[error("group name repeated in evaluation order: {0}")]
    RepeatedGroup(String),
    #[error("parse error: {0}")]
    Series(#[from] SeriesError),
}

/// Prometheus's `model.ParseDuration` (units y w d h m s ms, "0" allowed).
fn parse_model_duration(s: &str) -> Result<i64, UnitTestError> {
    sentinel_base::config::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| UnitTestError::Duration {
            text: s.to_string(),
            reason: e.to_string(),
        })
}

fn opt_duration(s: &Option<String>) -> Result<i64, UnitTestError> {
    match s {
        None => Ok(0),
        Some(s) => parse_model_duration(s),
    }
}

/// `model.Duration.String()`: `1h30m`, `5m`, `0s`.
fn model_duration_string(ms: i64) -> String {
    sentinel_base::config::format_duration(Duration::from_millis(ms.max(0) as u64))
}

/// Go's `time.Duration.String()` for whole milliseconds: `5m0s`, `1h0m0s`, `1.5s`.
fn go_duration_string(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms < 1000 {
        out.push_str(&format!("{ms}ms"));
        return out;
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s = (ms % 60_000) as f64 / 1000.0;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", sentinel_base::text::go_g(s, -1)));
    out
}

/// `strconv.FormatFloat(v, 'E', -1, 64)`.
fn format_e(v: f64) -> String {
    sentinel_base::text::format_float(v, 'E', -1)
}

/// Parses a metric the way `parser.ParseMetric` does: an optional name and
/// `{label="value", ...}` with `=` only; `{}` is the empty label set.
pub fn parse_metric(s: &str) -> Result<Labels, SeriesError> {
    let bad = |why: &'static str| SeriesError::Metric {
        series: s.to_string(),
        why,
    };
    let t = s.trim();
    let (name, rest) = match t.find('{') {
        Some(i) => (t[..i].trim(), &t[i..]),
        None => (t, ""),
    };
    let mut pairs = Vec::new();
    if !name.is_empty() {
        let ok = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if !ok {
            return Err(bad("invalid metric name"));
        }
        pairs.push((METRIC_NAME.to_string(), name.to_string()));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.trim_end().strip_suffix('}'))
            .ok_or_else(|| bad("unclosed label set"))?;
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        loop {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let st = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let lname: String = chars[st..i].iter().collect();
            if !crate::labels::valid_label_name(&lname) {
                return Err(bad("invalid label name"));
            }
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if chars.get(i) != Some(&'=') || chars.get(i + 1) == Some(&'~') {
                return Err(bad("only = matchers are allowed in a metric"));
            }
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            let quote = *chars.get(i).ok_or_else(|| bad("missing label value"))?;
            if quote != '"' && quote != '\'' && quote != '`' {
                return Err(bad("label value must be quoted"));
            }
            i += 1;
            let mut val = String::new();
            loop {
                let c = *chars
                    .get(i)
                    .ok_or_else(|| bad("unterminated label value"))?;
                i += 1;
                if c == quote {
                    break;
                }
                if c == '\\' && quote != '`' {
                    let e = *chars.get(i).ok_or_else(|| bad("unterminated escape"))?;
                    i += 1;
                    val.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        o => o,
                    });
                } else {
                    val.push(c);
                }
            }
            if lname == METRIC_NAME && !name.is_empty() {
                return Err(bad("metric name given twice"));
            }
            pairs.push((lname, val));
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            match chars.get(i) {
                Some(',') => i += 1,
                None => break,
                Some(_) => return Err(bad("expected , between labels")),
            }
        }
    }
    if pairs.is_empty() && rest.is_empty() {
        return Err(bad("no metric"));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Expands the `values` notation: `a`, `a+bxn`, `a-bxn`, `axn`, `_`, `_xn`, `stale`.
/// `None` is an omitted sample.
pub fn parse_values(s: &str) -> Result<Vec<Option<f64>>, SeriesError> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        let bad = || SeriesError::Value(item.to_string());
        let (head, times) = match item.rfind('x') {
            Some(i) => {
                let n: u64 = item[i + 1..].parse().map_err(|_| bad())?;
                (&item[..i], Some(n))
            }
            None => (item, None),
        };
        if head == "_" {
            let n = times.unwrap_or(1);
            if times.is_none() {
                out.push(None);
            } else {
                out.extend(std::iter::repeat_n(None, n as usize));
            }
            continue;
        }
        // Split "a+b" / "a-b" at the sign that is not the leading one or an exponent's.
        let bytes = head.as_bytes();
        let mut split = None;
        for i in 1..bytes.len() {
            if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let parse_num = |t: &str| -> Result<f64, SeriesError> {
            if t == "stale" {
                return Ok(stale_nan());
            }
            crate::eval::parse_number(t).ok_or_else(bad)
        };
        match (split, times) {
            (Some(i), Some(n)) => {
                let mut cur = parse_num(&head[..i])?;
                let inc = parse_num(&head[i..])?;
                for _ in 0..=n {
                    out.push(Some(cur));
                    cur += inc;
                }
            }
            (None, Some(n)) => {
                let v = parse_num(head)?;
                out.extend(std::iter::repeat_n(Some(v), n as usize + 1));
            }
            (None, None) => out.push(Some(parse_num(head)?)),
            (Some(_), None) => return Err(bad()),
        }
    }
    Ok(out)
}

/// The verdict on one test file.
#[derive(Debug)]
pub struct FileResult {
    pub file: String,
    pub errors: Vec<String>,
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Runs files, printing promtool's messages; returns whether all passed.
pub fn run_files(files: &[impl AsRef<Path>]) -> bool {
    let mut ok = true;
    for f in files {
        let f = f.as_ref();
        println!("Unit Testing:  {}", f.display());
        let r = run_file(f);
        if r.passed() {
            println!("  SUCCESS");
        } else {
            eprintln!("  FAILED:");
            for e in &r.errors {
                eprintln!("{e}");
                println!();
            }
            ok = false;
        }
        println!();
    }
    ok
}

pub fn run_file(path: &Path) -> FileResult {
    let file = path.display().to_string();
    let errors = match run_file_inner(path) {
        Ok(errs) => errs,
        Err(e) => vec![e.to_string()],
    };
    FileResult { file, errors }
}

fn run_file_inner(path: &Path) -> Result<Vec<String>, UnitTestError> {
    let text = std::fs::read_to_string(path)?;
    let tf: TestFile = serde_yaml_ng::from_str(&text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for rf in &tf.rule_files {
        let m = expand_globs(std::slice::from_ref(rf), Some(base))?;
        if m.is_empty() {
            eprintln!("  WARNING: no file match pattern {rf}");
        }
        rule_files.extend(m);
    }
    let eval_interval = match &tf.evaluation_interval {
        Some(s) => parse_model_duration(s)?,
        None => 0,
    };
    let eval_interval = if eval_interval == 0 {
        60_000
    } else {
        eval_interval
    };
    let mut order: HashMap<String, usize> = HashMap::new();
    for (i, g) in tf.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return Err(UnitTestError::RepeatedGroup(g.clone()));
        }
    }
    let mut errs = Vec::new();
    for tg in &tf.tests {
        let e = run_group(tg, eval_interval, &order, &rule_files)?;
        errs.extend(e);
    }
    Ok(errs)
}

fn run_group(
    tg: &TestGroup,
    eval_interval: i64,
    order: &HashMap<String, usize>,
    rule_files: &[std::path::PathBuf],
) -> Result<Vec<String>, UnitTestError> {
    let interval = opt_duration(&tg.interval)?;
    // The lazy loader: every input series with its samples, appended up to each step.
    let mut inputs: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
    for is in &tg.input_series {
        let labels = parse_metric(&is.series)?;
        let vals = parse_values(&is.values)?;
        let samples: Vec<(i64, f64)> = vals
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as i64 * interval, v)))
            .collect();
        match inputs.iter_mut().find(|(l, _)| *l == labels) {
            Some(slot) => slot.1 = samples,
            None => inputs.push((labels, samples)),
        }
    }
    let (defs, _) = load_files(rule_files)?;
    let default_interval = Duration::from_millis(interval as u64);
    let mut groups: Vec<Group> = defs
        .into_iter()
        .map(|d| Group::new(d, default_interval))
        .collect();
    groups.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));

    let mut alert_tests: BTreeMap<i64, Vec<&AlertTest>> = BTreeMap::new();
    for at in &tg.alert_rule_test {
        let t = opt_duration(&at.eval_time)?;
        if at.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return Ok(vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration_string(t)
            )]);
        }
        alert_tests.entry(t).or_default().push(at);
    }
    let mut max_t = alert_tests.keys().next_back().copied().unwrap_or(0);
    for pt in &tg.promql_expr_test {
        max_t = max_t.max(opt_duration(&pt.eval_time)?);
    }
    let store = Store::unbounded();
    let ctx = EvalContext {
        store: &store,
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
        restored: true,
        subquery_step_ms: eval_interval,
        limits: crate::eval::QueryLimits::default(),
    };
    let mut loaded: Vec<usize> = vec![0; inputs.len()];
    let mut errs = Vec::new();
    let alert_times: Vec<i64> = alert_tests.keys().copied().collect();
    let mut curr = 0;
    let mut ts = 0i64;
    while ts <= max_t {
        for (i, (labels, samples)) in inputs.iter().enumerate() {
            while loaded[i] < samples.len() && samples[loaded[i]].0 <= ts {
                let (t, v) = samples[loaded[i]];
                store.append(labels, t, v, Origin::Snapshot);
                loaded[i] += 1;
            }
        }
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(ts, &ctx);
            for r in &g.rules {
                if let Some(e) = &r.health.last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        go_duration_string(ts)
                    ));
                }
            }
        }
        let failed = !eval_errs.is_empty();
        errs.extend(eval_errs);
        if failed {
            return Ok(errs);
        }
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts + eval_interval
        {
            let t = alert_times[curr];
            let tests = &alert_tests[&t];
            let wanted: std::collections::HashSet<&str> =
                tests.iter().map(|a| a.alertname.as_str()).collect();
            let mut got: HashMap<&str, Vec<(Labels, Labels)>> = HashMap::new();
            for g in &groups {
                for r in &g.rules {
                    if r.def.kind != crate::rulefile::RuleKind::Alerting
                        || !wanted.contains(r.name())
                    {
                        continue;
                    }
                    let entry = got.entry(r.name()).or_default();
                    for a in r.active_alerts() {
                        if a.state == AlertState::Firing {
                            entry.push((a.labels.clone(), annotations_labels(&a.annotations)));
                        }
                    }
                }
            }
            for at in tests {
                let mut g = got.get(at.alertname.as_str()).cloned().unwrap_or_default();
                let mut exp: Vec<(Labels, Labels)> = at
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l: Vec<(String, String)> =
                            a.exp_labels.clone().into_iter().collect();
                        l.push(("alertname".into(), at.alertname.clone()));
                        (
                            labels_from_map(l),
                            labels_from_map(a.exp_annotations.clone().into_iter().collect()),
                        )
                    })
                    .collect();
                g.sort();
                exp.sort();
                if g != exp {
                    let name = if tg.name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {},\n", tg.name)
                    };
                    errs.push(format!(
                        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        at.alertname,
                        model_duration_string(t),
                        indent_lines(&alerts_string(&exp), "            "),
                        indent_lines(&alerts_string(&g), "            ")
                    ));
                }
            }
            curr += 1;
        }
        ts += eval_interval;
    }
    'outer: for pt in &tg.promql_expr_test {
        let t = opt_duration(&pt.eval_time)?;
        let when = model_duration_string(t);
        let got = crate::eval::parse(&pt.expr)
            .map_err(|e| e.to_string())
            .and_then(|e| crate::eval::check(&e).map(|_| e).map_err(String::from))
            .and_then(|e| {
                Evaluator::new(&store, t)
                    .with_subquery_step(eval_interval)
                    .eval_instant(&e)
                    .map_err(|e| e.to_string())
            });
        let mut got: Vec<(Labels, f64)> = match got {
            Ok(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Err(e) => {
                errs.push(format!(
                    "    expr: {}, time: {when}, err: {e}",
                    go_quote(&pt.expr)
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &pt.exp_samples {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    errs.push(format!(
                        "    expr: {}, time: {when}, err: labels {}: {e}",
                        go_quote(&pt.expr),
                        go_quote(&s.labels)
                    ));
                    continue 'outer;
                }
            }
        }
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // reflect.DeepEqual on floats: NaN never equals NaN.
        let equal =
            exp.len() == got.len() && exp.iter().zip(&got).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
        if !equal {
            errs.push(format!(
                "    expr: {}, time: {when},\n        exp: {}\n        got: {}",
                go_quote(&pt.expr),
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    Ok(errs)
}

fn labels_from_map(pairs: Vec<(String, String)>) -> Labels {
    // labels.FromMap keeps empty values; ours drop them, as alert labels never have them.
    Labels::from_pairs(pairs)
}

fn annotations_labels(a: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(a.clone())
}

fn samples_string(v: &[(Labels, f64)]) -> String {
    if v.is_empty() {
        return "nil".into();
    }
    v.iter()
        .map(|(l, x)| format!("{l} {}", format_e(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alerts_string(v: &[(Labels, Labels)]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[\n");
    for (i, (l, a)) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!("{i}:"));
        s.push_str(&indent_lines(
            &format!("\nLabels:{l}\nAnnotations:{a}"),
            "  ",
        ));
    }
    s.push_str("\n]");
    s
}

fn indent_lines(lines: &str, indent: &str) -> String {
    let parts: Vec<&str> = lines.split('\n').collect();
    let mut out = String::new();
    for (i, l) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(indent);
        }
        out.push_str(l);
        if i != parts.len() - 1 {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_notation_expands_like_promql_test() {
        let v = parse_values("1+2x3 _ _x2 stale 5x1 -1-1x1 1e3").unwrap();
        let got: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".to_string(),
                Some(f) if crate::store::is_stale(*f) => "stale".to_string(),
                Some(f) => f.to_string(),
            })
            .collect();
        assert_eq!(
            got,
            ["1", "3", "5", "7", "_", "_", "_", "stale", "5", "5", "-1", "-2", "1000"]
        );
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_duration_string(300_000), "5m0s");
        assert_eq!(go_duration_string(3_600_000), "1h0m0s");
        assert_eq!(format_e(1.0), "1E+00");
        assert_eq!(format_e(0.25), "2.5E-01");
    }

    #[test]
    fn series_and_file_errors_are_typed_and_read_as_before() {
        assert_eq!(
            parse_metric("up{a=b}").unwrap_err(),
            SeriesError::Metric {
                series: "up{a=b}".into(),
                why: "label value must be quoted"
            }
        );
        let e = parse_values("1 x").unwrap_err();
        assert_eq!(e, SeriesError::Value("x".into()));
        assert_eq!(
            UnitTestError::from(e).to_string(),
            "parse error: invalid series value \"x\""
        );
        let r = run_file(Path::new("/nonexistent/tests.yaml"));
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("No such file"), "{:?}", r.errors);
    }
}
