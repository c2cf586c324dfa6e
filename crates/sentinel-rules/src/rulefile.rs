//! Rule files: the Prometheus rule-file shape (groups, interval, limit, rules with
//! alert/record, expr, for, keep_firing_for, labels, annotations) plus threshold levels
//! (`warning: "> 0.07"`, `critical: "> 0.10"`). Loading validates the way
//! `promtool check rules` does, and every error names `file:line:column` and the rule.
//! A rule with levels expands into one alerting rule per level, `(expr) OP threshold`
//! with a `severity` label; the critical/warning pairs are remembered so the dispatcher
//! can inhibit the warning while the critical fires.

use crate::eval;
use crate::labels::valid_label_name;
use crate::template::Template;
use promql_parser::parser::Expr;
use sentinel_base::config::locate::locate;
use sentinel_base::config::parse_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    warning: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    critical: Option<serde_yaml_ng::Value>,
}

/// A threshold comparison of a level.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub op: String,
    pub value: String,
}

/// A level as written: `"> 0.07"` (fire only) or `{ fire: "> 0.07", resolve: "< 0.05" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelSpec {
    pub fire: Threshold,
    /// Without one the level resolves as soon as `fire` no longer holds.
    pub resolve: Option<Threshold>,
}

/// The half of a level with a resolve threshold that keeps a firing alert firing:
/// `(E) <complement of resolve>`, e.g. `(E) >= 0.05` for `resolve: "< 0.05"`. An alert of
/// the level that fired at the previous evaluation stays firing while this expression
/// returns its series (the engine's state plays the part of `ALERTS` in the export).
#[derive(Debug, Clone)]
pub struct HoldDef {
    pub expr: Expr,
    pub text: String,
}

/// One rule as loaded (after level expansion).
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub kind: RuleKind,
    pub name: String,
    /// The expression as Prometheus runs it (what `rules export` writes). For a level with a
    /// resolve threshold: `(E) > F or ((E) >= R and ignoring(...) ALERTS{...})`.
    pub expr_text: String,
    /// What this engine evaluates to find the alerts that fire: `expr_text`, or for a level
    /// with a resolve threshold its `fire` half `(E) > F` (the other half is `hold`).
    pub expr: Expr,
    /// For a level with a resolve threshold: what keeps a firing alert firing.
    pub hold: Option<HoldDef>,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `warning`/`critical` for a rule expanded from a level.
    pub level: Option<String>,
    /// Where it was written, for messages: `file:line:column`.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Alerting,
    Recording,
}

#[derive(Debug, Clone)]
pub struct GroupDef {
    pub name: String,
    pub file: String,
    pub interval: Option<Duration>,
    pub limit: u64,
    pub rules: Vec<RuleDef>,
}

/// A critical/warning pair of the same rule: while the critical alert fires, the warning
/// with the same labels is inhibited (`equal` = the rule's labels plus `alertname`).
#[derive(Debug, Clone, PartialEq)]
pub struct LevelLink {
    pub alertname: String,
    pub group: String,
}

pub const LEVELS: &[&str] = &["warning", "critical"];

fn scalar_string(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Why a threshold string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("threshold {threshold:?}: {value:?} is not a number")]
    NotANumber { threshold: String, value: String },
    #[error("threshold {0:?}: expected a comparison operator (> >= < <= == !=) and a number")]
    NoOperator(String),
}

/// Parses `"> 0.07"` into an operator and a number.
pub fn parse_threshold(s: &str) -> Result<Threshold, ThresholdError> {
    let s = s.trim();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(rest) = s.strip_prefix(op) {
            let value = rest.trim();
            let ok = value.parse::<f64>().is_ok()
                || matches!(
                    value.to_ascii_lowercase().as_str(),
                    "inf" | "+inf" | "-inf" | "nan"
                );
            if !ok {
                return Err(ThresholdError::NotANumber {
                    threshold: s.to_string(),
                    value: value.to_string(),
                });
            }
            return Ok(Threshold {
                op: op.to_string(),
                value: value.to_string(),
            });
        }
    }
    Err(ThresholdError::NoOperator(s.to_string()))
}

/// The comparison that holds exactly when `op` does not (for numbers; NaN satisfies
/// neither, so a NaN value counts as resolved, as it would fail the string form's test).
pub fn complement(op: &str) -> &'static str {
    match op {
        ">" => "<=",
        ">=" => "<",
        "<" => ">=",
        "<=" => ">",
        "==" => "!=",
        _ => "==",
    }
}

fn threshold_number(t: &Threshold) -> f64 {
    match t.value.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        "nan" => f64::NAN,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

/// Why a level is refused, and the field it is about (`""` for the level itself,
/// `fire`, `resolve`, or an unknown key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LevelError {
    pub field: String,
    pub message: String,
}

impl LevelError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        LevelError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses a level: a threshold string, or a map `{fire, resolve}`. An error names the
/// field it is about (`""` for the level itself, `fire`, `resolve`, or an unknown key).
pub fn parse_level(v: &serde_yaml_ng::Value) -> Result<LevelSpec, LevelError> {
    use serde_yaml_ng::Value;
    let text = |field: &str, v: &Value| -> Result<Threshold, LevelError> {
        match v {
            Value::String(s) => {
                parse_threshold(s).map_err(|e| LevelError::new(field, e.to_string()))
            }
            _ => Err(LevelError::new(
                field.to_string(),
                "expected a threshold string such as \"> 0.07\"".to_string(),
            )),
        }
    };
    let map = match v {
        Value::Mapping(m) => m,
        Value::String(_) => {
            return Ok(LevelSpec {
                fire: text("", v)?,
                resolve: None,
            })
        }
        _ => {
            return Err(LevelError::new(
                String::new(),
                "a level is a threshold string (\"> 0.07\") or a map { fire: \"> 0.07\", resolve: \"< 0.05\" }",
            ))
        }
    };
    let mut fire = None;
    let mut resolve = None;
    for (k, val) in map {
        match k.as_str() {
            Some("fire") => fire = Some(text("fire", val)?),
            Some("resolve") => resolve = Some(text("resolve", val)?),
            Some(other) => {
                return Err(LevelError::new(
                    other.to_string(),
                    format!("unknown key {other:?} in a level: expected `fire` and `resolve`"),
                ))
            }
            None => {
                return Err(LevelError::new(
                    String::new(),
                    "level keys are `fire` and `resolve`",
                ))
            }
        }
    }
    let Some(fire) = fire else {
        return Err(LevelError::new(String::new(), "a level map needs `fire`"));
    };
    if let Some(res) = &resolve {
        let up = match fire.op.as_str() {
            ">" | ">=" => true,
            "<" | "<=" => false,
            _ => {
                return Err(LevelError::new(
                    "resolve",
                    format!(
                        "a resolve threshold needs fire to be a > >= < or <= comparison, not {:?}",
                        fire.op
                    ),
                ))
            }
        };
        let (f, r) = (threshold_number(&fire), threshold_number(res));
        let fire_s = format!("{} {}", fire.op, fire.value);
        let res_s = format!("{} {}", res.op, res.value);
        let want: &[&str] = if up { &["<", "<="] } else { &[">", ">="] };
        if !want.contains(&res.op.as_str()) {
            return Err(LevelError::new(
                "resolve",
                format!(
                    "resolve {res_s:?} does not make sense with fire {fire_s:?}: a level that fires {} a threshold resolves {} one, so resolve must be a {} comparison",
                    if up { "above" } else { "below" },
                    if up { "below" } else { "above" },
                    want.join(" or ")
                ),
            ));
        }
        if f.is_nan() || r.is_nan() {
            return Err(LevelError::new(
                "resolve",
                "no comparison with NaN ever holds: use numbers for fire and resolve",
            ));
        }
        // The two regions must not meet, or one value would both fire and resolve.
        let both_inclusive = fire.op.ends_with('=') && res.op.ends_with('=');
        let overlap = if up {
            r > f || (r == f && both_inclusive)
        } else {
            r < f || (r == f && both_inclusive)
        };
        if overlap {
            return Err(LevelError::new(
                "resolve",
                format!(
                    "resolve {res_s:?} overlaps fire {fire_s:?}: a value could both fire and resolve; resolve must lie {} the fire threshold",
                    if up { "at or below" } else { "at or above" }
                ),
            ));
        }
    }
    Ok(LevelSpec { fire, resolve })
}

/// The exported expression of a level with a resolve threshold, in plain PromQL:
/// `FIRE or (HOLD and ignoring(alertname, alertstate, severity, <rule labels>)
/// ALERTS{alertname="A", alertstate="firing", severity="L"})`. `ALERTS` carries the
/// expression's labels plus the rule's labels, `alertname` and `alertstate`; ignoring the
/// latter leaves exactly the expression's labels to match on, whatever they are.
pub fn export_text(
    fire_text: &str,
    hold_text: &str,
    alertname: &str,
    level: &str,
    rule_labels: &BTreeMap<String, String>,
) -> String {
    let mut ignoring: std::collections::BTreeSet<&str> = ["alertname", "alertstate", "severity"]
        .into_iter()
        .collect();
    ignoring.extend(rule_labels.keys().map(String::as_str));
    format!(
        "{fire_text} or ({hold_text} and ignoring({}) ALERTS{{alertname={}, alertstate=\"firing\", severity={}}})",
        ignoring.into_iter().collect::<Vec<_>>().join(", "),
        crate::labels::go_quote(alertname),
        crate::labels::go_quote(level)
    )
}

fn position(source: &str, path: &str, file: &str) -> String {
    match locate(source, path) {
        Some(p) => format!("{file}:{}:{}", p.line, p.column),
        None => file.to_string(),
    }
}

/// Loads one rule file from its text; `file` names it in errors.
pub fn parse_rule_file(
    source: &str,
    file: &str,
) -> Result<(Vec<GroupDef>, Vec<LevelLink>), LoadError> {
    let raw: RawFile = match serde_yaml_ng::from_str(source) {
        Ok(r) => r,
        Err(e) => {
            let loc = e
                .location()
                .map(|l| format!("{file}:{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| file.to_string());
            return Err(LoadError::Invalid(format!("{loc}: {e}")));
        }
    };
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut links = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let gpath = format!("groups[{gi}]");
        if g.name.is_empty() {
            errors.push(format!(
                "{}: group name must not be empty",
                position(source, &gpath, file)
            ));
        } else if !names.insert(g.name.clone()) {
            errors.push(format!(
                "{}: groupname: {:?} is repeated in the same file",
                position(source, &format!("{gpath}.name"), file),
                g.name
            ));
        }
        let interval = match &g.interval {
            None => None,
            Some(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(format!(
                        "{}: {e}",
                        position(source, &format!("{gpath}.interval"), file)
                    ));
                    None
                }
            },
        };
        let mut rules = Vec::new();
        for (ri, r) in g.rules.into_iter().enumerate() {
            let rpath = format!("{gpath}.rules[{ri}]");
            let at = |field: &str| -> String {
                let p = if field.is_empty() {
                    rpath.clone()
                } else {
                    format!("{rpath}.{field}")
                };
                position(source, &p, file)
            };
            let rule_name = r.alert.clone().or(r.record.clone()).unwrap_or_default();
            let mut fail = |field: &str, msg: String| {
                errors.push(format!(
                    "{}: group {:?}, rule {}: {msg}",
                    at(field),
                    g.name,
                    if rule_name.is_empty() {
                        format!("#{ri}")
                    } else {
                        format!("{rule_name:?}")
                    }
                ));
            };
            let kind = match (&r.alert, &r.record) {
                (Some(_), Some(_)) => {
                    fail("", "only one of 'record' and 'alert' must be set".into());
                    continue;
                }
                (None, None) => {
                    fail("", "one of 'record' or 'alert' must be set".into());
                    continue;
                }
                (Some(a), None) if a.is_empty() => {
                    fail("alert", "one of 'record' or 'alert' must be set".into());
                    continue;
                }
                (None, Some(a)) if a.is_empty() => {
                    fail("record", "one of 'record' or 'alert' must be set".into());
                    continue;
                }
                (Some(_), None) => RuleKind::Alerting,
                (None, Some(_)) => RuleKind::Recording,
            };
            let expr_text = match r.expr.as_ref().and_then(scalar_string) {
                Some(e) if !e.trim().is_empty() => e,
                _ => {
                    fail("expr", "field 'expr' must be set in rule".into());
                    continue;
                }
            };
            let expr = match crate::eval::parse(&expr_text) {
                Ok(e) => e,
                Err(e) => {
                    fail("expr", format!("could not parse expression: {e}"));
                    continue;
                }
            };
            if let Err(e) = eval::check(&expr) {
                fail("expr", format!("not supported by this engine: {e}"));
                continue;
            }
            let dur =
                |field: &str, v: &Option<String>, fail: &mut dyn FnMut(&str, String)| -> Duration {
                    match v {
                        None => Duration::ZERO,
                        Some(s) => parse_duration(s).unwrap_or_else(|e| {
                            fail(field, e.to_string());
                            Duration::ZERO
                        }),
                    }
                };
            let for_ = dur("for", &r.for_, &mut fail);
            let keep_firing_for = dur("keep_firing_for", &r.keep_firing_for, &mut fail);
            let mut labels = BTreeMap::new();
            for (k, v) in &r.labels {
                if !valid_label_name(k) {
                    fail(&format!("labels.{k}"), format!("invalid label name: {k}"));
                }
                labels.insert(k.clone(), scalar_string(v).unwrap_or_default());
            }
            let mut annotations = BTreeMap::new();
            for (k, v) in &r.annotations {
                if !valid_label_name(k) {
                    fail(
                        &format!("annotations.{k}"),
                        format!("invalid annotation name: {k}"),
                    );
                }
                annotations.insert(k.clone(), scalar_string(v).unwrap_or_default());
            }
            match kind {
                RuleKind::Recording => {
                    if !r.annotations.is_empty() {
                        fail(
                            "annotations",
                            "invalid field 'annotations' in recording rule".into(),
                        );
                    }
                    if r.for_.is_some() {
                        fail("for", "invalid field 'for' in recording rule".into());
                    }
                    if r.keep_firing_for.is_some() {
                        fail(
                            "keep_firing_for",
                            "invalid field 'keep_firing_for' in recording rule".into(),
                        );
                    }
                    if r.warning.is_some() || r.critical.is_some() {
                        fail(
                            "",
                            "levels (warning/critical) are only for alerting rules".into(),
                        );
                    }
                    if !valid_metric_name(&rule_name) {
                        fail(
                            "record",
                            format!("invalid recording rule name: {rule_name}"),
                        );
                    }
                }
                RuleKind::Alerting => {
                    for (k, v) in labels.iter().chain(annotations.iter()) {
                        if let Err(e) = Template::parse(v) {
                            fail(&format!("labels.{k}"), format!("template {k:?}: {e}"));
                        }
                    }
                    if (r.warning.is_some() || r.critical.is_some())
                        && labels.contains_key("severity")
                    {
                        fail(
                            "labels.severity",
                            "a rule with levels sets `severity` itself".into(),
                        );
                    }
                }
            }
            let origin = at("");
            let base = RuleDef {
                kind,
                name: rule_name.clone(),
                expr_text: expr_text.clone(),
                expr,
                hold: None,
                for_,
                keep_firing_for,
                labels,
                annotations,
                level: None,
                origin,
            };
            let levels: Vec<(&str, &serde_yaml_ng::Value)> =
                [("warning", &r.warning), ("critical", &r.critical)]
                    .into_iter()
                    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
                    .collect();
            if levels.is_empty() {
                rules.push(base);
                continue;
            }
            for (level, spec) in &levels {
                let spec = match parse_level(spec) {
                    Ok(s) => s,
                    Err(LevelError { field, message: e }) => {
                        let at = if field.is_empty() {
                            level.to_string()
                        } else {
                            format!("{level}.{field}")
                        };
                        fail(&at, e);
                        continue;
                    }
                };
                let e = expr_text.trim();
                let fire_text = format!("({e}) {} {}", spec.fire.op, spec.fire.value);
                let expr = match crate::eval::parse(&fire_text) {
                    Ok(e) => e,
                    Err(e) => {
                        fail(
                            level,
                            format!("could not parse expression with threshold: {e}"),
                        );
                        continue;
                    }
                };
                let mut rule = base.clone();
                rule.labels.insert("severity".into(), level.to_string());
                rule.expr_text = fire_text.clone();
                if let Some(resolve) = &spec.resolve {
                    let hold_text = format!("({e}) {} {}", complement(&resolve.op), resolve.value);
                    let hold = match crate::eval::parse(&hold_text) {
                        Ok(h) => h,
                        Err(e) => {
                            fail(
                                &format!("{level}.resolve"),
                                format!("could not parse expression with threshold: {e}"),
                            );
                            continue;
                        }
                    };
                    rule.expr_text =
                        export_text(&fire_text, &hold_text, &rule_name, level, &rule.labels);
                    rule.hold = Some(HoldDef {
                        expr: hold,
                        text: hold_text,
                    });
                }
                rule.expr = expr;
                rule.level = Some(level.to_string());
                rules.push(rule);
            }
            if levels.len() == 2 {
                links.push(LevelLink {
                    alertname: rule_name.clone(),
                    group: g.name.clone(),
                });
            }
        }
        groups.push(GroupDef {
            name: g.name,
            file: file.to_string(),
            interval,
            limit: g.limit.unwrap_or(0),
            rules,
        });
    }
    if errors.is_empty() {
        Ok((groups, links))
    } else {
        Err(LoadError::Invalid(errors.join("\n")))
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Loads several files (already globbed); group names must be unique per file only.
pub fn load_files(
    paths: &[impl AsRef<Path>],
) -> Result<(Vec<GroupDef>, Vec<LevelLink>), LoadError> {
    let mut groups = Vec::new();
    let mut links = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let name = p.display().to_string();
        let source = std::fs::read_to_string(p).map_err(|e| LoadError::Io {
            file: name.clone(),
            message: e.to_string(),
        })?;
        match parse_rule_file(&source, &name) {
            Ok((g, l)) => {
                groups.extend(g);
                links.extend(l);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok((groups, links))
    } else {
        Err(LoadError::Invalid(errors.join("\n")))
    }
}

/// Expands globs (sorted matches); a pattern matching nothing is an error.
pub fn expand_globs(
    patterns: &[String],
    base: Option<&Path>,
) -> Result<Vec<std::path::PathBuf>, LoadError> {
    let mut out = Vec::new();
    for pat in patterns {
        let full = match base {
            Some(b) if !Path::new(pat).is_absolute() => b.join(pat).display().to_string(),
            _ => pat.clone(),
        };
        let paths = glob::glob(&full)
            .map_err(|e| LoadError::Invalid(format!("rule file pattern {pat:?}: {e}")))?;
        let mut matched: Vec<_> = paths.filter_map(Result::ok).collect();
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_expand_to_one_rule_each_with_severity() {
        let src = r#"groups:
  - name: recovery
    rules:
      - alert: RecoveryOverheadHigh
        expr: sum(rate(a_total[5m])) / sum(rate(b_total[5m]))
        warning: "> 0.07"
        critical: "> 0.10"
        for: 1m
        labels: { component: recovery }
"#;
        let (g, links) = parse_rule_file(src, "r.yaml").unwrap();
        let rules = &g[0].rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].labels["severity"], "warning");
        assert_eq!(
            rules[1].expr_text,
            "(sum(rate(a_total[5m])) / sum(rate(b_total[5m]))) > 0.10"
        );
        assert_eq!(
            links,
            vec![LevelLink {
                alertname: "RecoveryOverheadHigh".into(),
                group: "recovery".into()
            }]
        );
    }

    #[test]
    fn errors_name_file_line_column_and_rule() {
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n";
        let e = parse_rule_file(src, "r.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("r.yaml:5:15: group \"g\", rule \"A\": could not parse"),
            "{e}"
        );
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sort_by_label(x, \"a\")\n";
        let e = parse_rule_file(src, "r.yaml").unwrap_err().to_string();
        assert!(e.contains("unsupported function sort_by_label()"), "{e}");
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n        warning: \"~ 3\"\n";
        assert!(parse_rule_file(src, "r.yaml").is_err());
    }

    fn level_error(level: &str) -> String {
        let src = format!(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n        warning: {level}\n"
        );
        parse_rule_file(&src, "r.yaml").unwrap_err().to_string()
    }

    #[test]
    fn level_map_expands_to_fire_hold_and_the_alerts_export() {
        let src = r#"groups:
  - name: g
    rules:
      - alert: OverheadHigh
        expr: sum by (instance) (x)
        warning: "> 0.07"
        critical: { fire: "> 0.10", resolve: "< 0.08" }
        labels: { team: a }
"#;
        let (g, links) = parse_rule_file(src, "r.yaml").unwrap();
        let (w, c) = (&g[0].rules[0], &g[0].rules[1]);
        assert!(w.hold.is_none(), "the string form has no resolve");
        assert_eq!(w.expr_text, "(sum by (instance) (x)) > 0.07");
        assert_eq!(
            c.hold.as_ref().unwrap().text,
            "(sum by (instance) (x)) >= 0.08"
        );
        assert_eq!(
            c.expr_text,
            "(sum by (instance) (x)) > 0.10 or ((sum by (instance) (x)) >= 0.08 and ignoring(alertname, alertstate, severity, team) ALERTS{alertname=\"OverheadHigh\", alertstate=\"firing\", severity=\"critical\"})"
        );
        assert!(crate::eval::parse(&c.expr_text).is_ok());
        assert_eq!(
            links.len(),
            1,
            "a map level still pairs with the other level"
        );
        // Downward levels, inclusive or not.
        let l =
            parse_level(&serde_yaml_ng::from_str("{fire: '<= 0.9', resolve: '> 0.9'}").unwrap())
                .unwrap();
        assert_eq!(complement(&l.resolve.unwrap().op), "<=");
        // `fire` alone is the string form.
        let l = parse_level(&serde_yaml_ng::from_str("{fire: '> 1'}").unwrap()).unwrap();
        assert!(l.resolve.is_none());
    }

    #[test]
    fn resolve_pointing_the_same_way_as_fire_is_refused_with_its_position() {
        let e = level_error(r#"{ fire: "> 0.1", resolve: "> 0.2" }"#);
        assert!(
            e.starts_with("r.yaml:6:44: group \"g\", rule \"A\": resolve \"> 0.2\" does not make sense with fire \"> 0.1\""),
            "{e}"
        );
        assert!(e.contains("resolve must be a < or <= comparison"), "{e}");
        let e = level_error(r#"{ fire: "< 0.9", resolve: "<= 0.95" }"#);
        assert!(e.contains("resolve must be a > or >= comparison"), "{e}");
    }

    #[test]
    fn resolve_overlapping_fire_is_refused_with_its_position() {
        let e = level_error(r#"{ fire: "> 0.1", resolve: "< 0.2" }"#);
        assert!(
            e.starts_with(
                "r.yaml:6:44: group \"g\", rule \"A\": resolve \"< 0.2\" overlaps fire \"> 0.1\""
            ),
            "{e}"
        );
        // Touching is fine unless both are inclusive.
        let ok = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n        warning: { fire: '>= 1', resolve: '< 1' }\n";
        assert!(parse_rule_file(ok, "r.yaml").is_ok());
        let e = level_error(r#"{ fire: ">= 1", resolve: "<= 1" }"#);
        assert!(e.contains("overlaps"), "{e}");
        let e = level_error(r#"{ fire: "< 0.9", resolve: "> 0.8" }"#);
        assert!(
            e.contains("resolve must lie at or above the fire threshold"),
            "{e}"
        );
    }

    #[test]
    fn bad_level_maps_are_refused_with_their_position() {
        let e = level_error(r#"{ fire: "> 0.1", resolv: "< 0.05" }"#);
        assert!(
            e.starts_with("r.yaml:6:43: group \"g\", rule \"A\": unknown key \"resolv\""),
            "{e}"
        );
        let e = level_error(r#"{ resolve: "< 0.05" }"#);
        assert!(
            e.starts_with("r.yaml:6:9:") && e.contains("needs `fire`"),
            "{e}"
        );
        let e = level_error(r#"{ fire: "> 0.1", resolve: "0.05" }"#);
        assert!(
            e.starts_with("r.yaml:6:44:") && e.contains("comparison operator"),
            "{e}"
        );
        let e = level_error(r#"{ fire: "== 2", resolve: "< 1" }"#);
        assert!(
            e.contains("needs fire to be a > >= < or <= comparison"),
            "{e}"
        );
        let e = level_error(r#"{ fire: "> 0.1", resolve: "< nan" }"#);
        assert!(e.contains("NaN"), "{e}");
        let e = level_error(r#"{ fire: [1], resolve: "< 0.05" }"#);
        assert!(e.starts_with("r.yaml:6:"), "{e}");
        let e = level_error("[1, 2]");
        assert!(
            e.starts_with("r.yaml:6:9:") && e.contains("a level is"),
            "{e}"
        );
    }

    #[test]
    fn threshold_and_level_errors_are_typed() {
        assert_eq!(
            parse_threshold("> lots").unwrap_err(),
            ThresholdError::NotANumber {
                threshold: "> lots".into(),
                value: "lots".into()
            }
        );
        assert_eq!(
            parse_threshold("0.5").unwrap_err().to_string(),
            "threshold \"0.5\": expected a comparison operator (> >= < <= == !=) and a number"
        );
        let e = parse_level(&serde_yaml_ng::from_str("{fire: '> 1', resolve: '> 2'}").unwrap())
            .unwrap_err();
        assert_eq!(e.field, "resolve");
        assert!(
            e.to_string()
                .starts_with("resolve \"> 2\" does not make sense"),
            "{e}"
        );
    }
}
