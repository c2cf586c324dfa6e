//! Rule groups at run time: recording rules and alerting rules evaluated in order at one
//! timestamp, their output written back into the store (so later rules of the group see
//! it, as in Prometheus), stale markers for series that disappeared, and the alert state
//! machine of `rules/alerting.go` (2.42): one [`transition`] function over
//! [`AlertState`], `for`, `keep_firing_for`, 15 m resolved retention, `ALERTS` and
//! `ALERTS_FOR_STATE`, resend every `resend_delay` with `endsAt` = now + 4 × max(resend
//! delay, group interval).

use crate::eval::{EvalError, Evaluator, QueryLimits, Sample};
use crate::labels::{Labels, METRIC_NAME};
use crate::rulefile::{GroupDef, RuleDef, RuleKind};
use crate::store::{stale_nan, Origin, Store};
use crate::template::{expand, TemplateData};
use chrono::{DateTime, Utc};
use sentinel_base::alert::Alert;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Resolved alerts are kept this long so their resolution is (re)sent.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// `--rules.alert.resend-delay`.
pub const RESEND_DELAY_MS: i64 = 60 * 1000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance of a rule (a label set).
#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    pub valid_until: i64,
}

/// What the rule's expression said about an alert at this evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Present,
    Absent,
}

/// What to do with the alert after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Forget the alert (a pending alert that vanished, or a resolution past retention).
    pub delete: bool,
    /// It is active (pending or firing) after this evaluation: count it and write ALERTS.
    pub active: bool,
}

/// The state machine: one step of an existing alert at `ts`, transcribing
/// `AlertingRule.Eval` of Prometheus 2.42.
pub fn transition(
    a: &mut ActiveAlert,
    obs: Observation,
    ts: i64,
    for_ms: i64,
    keep_firing_for_ms: i64,
) -> Verdict {
    let mut delete = false;
    match obs {
        Observation::Absent => {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                if ts - since < keep_firing_for_ms {
                    keep_firing = true;
                }
            }
            if a.state == AlertState::Pending
                || a.resolved_at
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
            {
                delete = true;
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at = Some(ts);
            }
            if !keep_firing {
                return Verdict {
                    delete,
                    active: false,
                };
            }
        }
        Observation::Present => a.keep_firing_since = None,
    }
    if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
        a.state = AlertState::Firing;
        a.fired_at = Some(ts);
    }
    Verdict {
        delete,
        active: true,
    }
}

/// Health of a rule after its last evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleHealth {
    pub ok: Option<bool>,
    pub last_error: Option<String>,
    pub last_evaluation_ms: Option<i64>,
    pub last_duration: Duration,
}

#[derive(Debug)]
pub struct Rule {
    pub def: RuleDef,
    /// Alert instances by label set (alerting rules only).
    pub active: HashMap<Labels, ActiveAlert>,
    pub health: RuleHealth,
    series_in_previous_eval: HashSet<Labels>,
}

impl Rule {
    pub fn new(def: RuleDef) -> Self {
        Rule {
            def,
            active: HashMap::new(),
            health: RuleHealth::default(),
            series_in_previous_eval: HashSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Firing and pending alerts, not the resolved ones kept for sending.
    pub fn active_alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active.values().filter(|a| a.resolved_at.is_none())
    }
}

/// What a group evaluation needs from its surroundings.
pub struct EvalContext<'a> {
    pub store: &'a Store,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    /// Whether `for` state has been restored (Prometheus writes no ALERTS before that).
    pub restored: bool,
    /// Step of subqueries written without one.
    pub subquery_step_ms: i64,
    /// Limits of each rule's evaluation (`query:`); a rule that hits one fails.
    pub limits: QueryLimits,
}

#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub limit: u64,
    pub rules: Vec<Rule>,
    pub last_duration: Duration,
    /// Labels an alert gets when neither its expression nor its rule sets them, also
    /// seen by its templates as `$labels` (the running sidecar's `instance`).
    pub default_alert_labels: BTreeMap<String, String>,
    /// `external_labels`: added to each alert as it is sent, where the alert lacks the
    /// label (as Prometheus adds them to alerts it sends to Alertmanager); templates see
    /// them as `$externalLabels`, not in `$labels`.
    pub external_alert_labels: BTreeMap<String, String>,
}

impl Group {
    pub fn new(def: GroupDef, default_interval: Duration) -> Self {
        Group {
            name: def.name,
            file: def.file,
            interval: def.interval.unwrap_or(default_interval),
            limit: def.limit,
            rules: def.rules.into_iter().map(Rule::new).collect(),
            last_duration: Duration::ZERO,
            default_alert_labels: BTreeMap::new(),
            external_alert_labels: BTreeMap::new(),
        }
    }

    /// Evaluates every rule at `ts` (ms) in order, writing results to the store.
    pub fn eval(&mut self, ts: i64, ctx: &EvalContext) {
        let started = std::time::Instant::now();
        let limit = self.limit;
        let defaults = &self.default_alert_labels;
        for rule in &mut self.rules {
            let t0 = std::time::Instant::now();
            let result = match rule.def.kind {
                RuleKind::Recording => eval_recording(rule, ts, ctx, limit),
                RuleKind::Alerting => eval_alerting(rule, ts, ctx, limit, defaults),
            };
            let output = match result {
                Ok(v) => {
                    rule.health.ok = Some(true);
                    rule.health.last_error = None;
                    v
                }
                Err(e) => {
                    rule.health.ok = Some(false);
                    rule.health.last_error = Some(e.to_string());
                    Vec::new()
                }
            };
            let mut returned = HashSet::with_capacity(output.len());
            for s in output {
                ctx.store.append(&s.labels, ts, s.v, Origin::Rules);
                returned.insert(s.labels);
            }
            for gone in rule.series_in_previous_eval.difference(&returned) {
                ctx.store.append(gone, ts, stale_nan(), Origin::Rules);
            }
            rule.series_in_previous_eval = returned;
            rule.health.last_evaluation_ms = Some(ts);
            rule.health.last_duration = t0.elapsed();
        }
        self.last_duration = started.elapsed();
    }

    /// The alerts to (re)send after an evaluation at `ts`.
    pub fn alerts_to_send(&mut self, ts: i64, generator_url: &str) -> Vec<Alert> {
        let delta = RESEND_DELAY_MS.max(self.interval.as_millis() as i64);
        let mut out = Vec::new();
        for rule in &mut self.rules {
            for a in rule.active.values_mut() {
                if a.state == AlertState::Pending {
                    continue;
                }
                let resolved_since_sent = match (a.resolved_at, a.last_sent_at) {
                    (Some(r), Some(s)) => r > s,
                    (Some(_), None) => true,
                    _ => false,
                };
                let due = a.last_sent_at.is_none_or(|s| s + RESEND_DELAY_MS < ts);
                if !(resolved_since_sent || due) {
                    continue;
                }
                a.last_sent_at = Some(ts);
                a.valid_until = ts + 4 * delta;
                let ends = a.resolved_at.unwrap_or(a.valid_until);
                out.push(Alert {
                    labels: sent_labels(
                        &a.labels,
                        &self.default_alert_labels,
                        &self.external_alert_labels,
                    ),
                    annotations: a.annotations.clone(),
                    starts_at: ms_to_time(a.fired_at.unwrap_or(a.active_at)),
                    ends_at: ms_to_time(ends),
                    generator_url: generator_url.to_string(),
                });
            }
        }
        out
    }
}

impl Group {
    /// The value of each pending or firing alert at its last evaluation, keyed by the
    /// fingerprint of the labels it is sent with (for the status page).
    pub fn alert_values(&self, out: &mut HashMap<u64, f64>) {
        for rule in &self.rules {
            for a in rule.active.values() {
                if a.state == AlertState::Inactive {
                    continue;
                }
                let labels = sent_labels(
                    &a.labels,
                    &self.default_alert_labels,
                    &self.external_alert_labels,
                );
                out.insert(sentinel_base::alert::fingerprint(&labels), a.value);
            }
        }
    }
}

/// An alert's labels as sent: its own, plus each default and external label it lacks.
/// These stay out of `ALERTS` and the alert's identity here, so `/metrics` is unchanged.
fn sent_labels(
    labels: &Labels,
    defaults: &BTreeMap<String, String>,
    external: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in defaults.iter().chain(external.iter()) {
        if v.is_empty() {
            continue;
        }
        if out.get(k).is_none_or(|v| v.is_empty()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Why one evaluation of a rule failed (its `lastError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Two output series got the same labels once the rule's labels were applied;
    /// `rule` for recording rules, `alert` for alerting rules (Prometheus's wording).
    #[error("vector contains metrics with the same labelset after applying {0} labels")]
    SameLabelset(&'static str),
    /// The group's `limit` on series of a recording rule.
    #[error("exceeded limit of {limit} with {count} series")]
    TooManySeries { limit: u64, count: usize },
    /// The group's `limit` on alerts of an alerting rule.
    #[error("exceeded limit of {limit} with {count} alerts")]
    TooManyAlerts { limit: u64, count: u64 },
}

pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn query(rule: &Rule, ts: i64, ctx: &EvalContext) -> Result<Vec<Sample>, EvalError> {
    run_expr(&rule.def.expr, ts, ctx)
}

fn run_expr(
    expr: &promql_parser::parser::Expr,
    ts: i64,
    ctx: &EvalContext,
) -> Result<Vec<Sample>, EvalError> {
    Evaluator::new(ctx.store, ts)
        .with_subquery_step(ctx.subquery_step_ms)
        .with_limits(ctx.limits)
        .eval_instant(expr)
}

fn eval_recording(
    rule: &mut Rule,
    ts: i64,
    ctx: &EvalContext,
    limit: u64,
) -> Result<Vec<Sample>, RuleError> {
    let mut v = query(rule, ts, ctx)?;
    for s in &mut v {
        s.labels.set(METRIC_NAME.to_string(), rule.def.name.clone());
        for (k, val) in &rule.def.labels {
            s.labels.set(k.clone(), val.clone());
        }
    }
    let mut seen = HashSet::with_capacity(v.len());
    for s in &v {
        if !seen.insert(&s.labels) {
            return Err(RuleError::SameLabelset("rule"));
        }
    }
    if limit > 0 && v.len() as u64 > limit {
        return Err(RuleError::TooManySeries {
            limit,
            count: v.len(),
        });
    }
    Ok(v)
}

/// The alert a result sample stands for: its labels (the sample's without `__name__`, the
/// rule's labels expanded over it, `alertname`) and expanded annotations, pending from `ts`.
fn alert_of(
    rule: &Rule,
    s: &Sample,
    ts: i64,
    ctx: &EvalContext,
    tmpl_name: &str,
    defaults: &BTreeMap<String, String>,
) -> ActiveAlert {
    let mut label_map: BTreeMap<String, String> = s
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Default alert labels (the standalone sidecar's `instance`) are seen by templates
    // where neither the expression nor a rule label gives one.
    for (k, v) in defaults {
        if !label_map.contains_key(k) && !rule.def.labels.contains_key(k) {
            label_map.insert(k.clone(), v.clone());
        }
    }
    let data = TemplateData {
        labels: &label_map,
        external_labels: ctx.external_labels,
        external_url: ctx.external_url,
        value: s.v,
    };
    let mut lb = s.labels.without_name();
    for (k, v) in &rule.def.labels {
        lb.set(k.clone(), expand(v, &data, tmpl_name));
    }
    lb.set("alertname".to_string(), rule.def.name.clone());
    let annotations: BTreeMap<String, String> = rule
        .def
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), expand(v, &data, tmpl_name)))
        .collect();
    ActiveAlert {
        labels: lb,
        annotations,
        state: AlertState::Pending,
        value: s.v,
        active_at: ts,
        fired_at: None,
        resolved_at: None,
        last_sent_at: None,
        keep_firing_since: None,
        valid_until: 0,
    }
}

fn eval_alerting(
    rule: &mut Rule,
    ts: i64,
    ctx: &EvalContext,
    limit: u64,
    defaults: &BTreeMap<String, String>,
) -> Result<Vec<Sample>, RuleError> {
    let res = query(rule, ts, ctx)?;
    let tmpl_name = format!("__alert_{}", rule.def.name);
    let mut fresh: HashMap<Labels, ActiveAlert> = HashMap::with_capacity(res.len());
    for s in &res {
        let a = alert_of(rule, s, ts, ctx, &tmpl_name, defaults);
        if fresh.contains_key(&a.labels) {
            return Err(RuleError::SameLabelset("alert"));
        }
        fresh.insert(a.labels.clone(), a);
    }
    // A level with a resolve threshold: an alert that was firing after the previous
    // evaluation stays present while the complement of `resolve` holds for its series,
    // even where `fire` no longer does (`E > F or (E >= R and ALERTS{firing})`).
    if let Some(hold) = &rule.def.hold {
        if rule.active.values().any(|a| a.state == AlertState::Firing) {
            let mut held = HashSet::new();
            for s in &run_expr(&hold.expr, ts, ctx)? {
                let a = alert_of(rule, s, ts, ctx, &tmpl_name, defaults);
                let firing = rule
                    .active
                    .get(&a.labels)
                    .is_some_and(|old| old.state == AlertState::Firing);
                if !firing {
                    continue;
                }
                if held.contains(&a.labels) {
                    return Err(RuleError::SameLabelset("alert"));
                }
                if !fresh.contains_key(&a.labels) {
                    held.insert(a.labels.clone());
                    fresh.insert(a.labels.clone(), a);
                }
            }
        }
    }
    let present: HashSet<Labels> = fresh.keys().cloned().collect();
    for (k, a) in fresh {
        match rule.active.get_mut(&k) {
            Some(old) if old.state != AlertState::Inactive => {
                old.value = a.value;
                old.annotations = a.annotations;
            }
            _ => {
                rule.active.insert(k, a);
            }
        }
    }
    let for_ms = rule.def.for_.as_millis() as i64;
    let kff_ms = rule.def.keep_firing_for.as_millis() as i64;
    let mut out = Vec::new();
    let mut active_count = 0u64;
    let mut deleted = Vec::new();
    for (k, a) in rule.active.iter_mut() {
        let obs = if present.contains(k) {
            Observation::Present
        } else {
            Observation::Absent
        };
        let v = transition(a, obs, ts, for_ms, kff_ms);
        if v.delete {
            deleted.push(k.clone());
        }
        if !v.active {
            continue;
        }
        active_count += 1;
        if ctx.restored {
            let mut l = a.labels.clone();
            l.set(METRIC_NAME.to_string(), "ALERTS".into());
            l.set("alertstate".to_string(), a.state.as_str().into());
            out.push(Sample {
                labels: l,
                t: ts,
                v: 1.0,
            });
            let mut f = a.labels.clone();
            f.set(METRIC_NAME.to_string(), "ALERTS_FOR_STATE".into());
            out.push(Sample {
                labels: f,
                t: ts,
                v: (a.active_at.div_euclid(1000)) as f64,
            });
        }
    }
    for k in deleted {
        rule.active.remove(&k);
    }
    if limit > 0 && active_count > limit {
        rule.active.clear();
        return Err(RuleError::TooManyAlerts {
            limit,
            count: active_count,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState, active_at: i64) -> ActiveAlert {
        ActiveAlert {
            labels: Labels::empty(),
            annotations: BTreeMap::new(),
            state,
            value: 1.0,
            active_at,
            fired_at: None,
            resolved_at: None,
            last_sent_at: None,
            keep_firing_since: None,
            valid_until: 0,
        }
    }

    #[test]
    fn pending_fires_after_for_and_vanishing_pending_is_deleted() {
        let mut a = alert(AlertState::Pending, 0);
        assert!(transition(&mut a, Observation::Present, 30_000, 60_000, 0).active);
        assert_eq!(a.state, AlertState::Pending);
        transition(&mut a, Observation::Present, 60_000, 60_000, 0);
        assert_eq!(a.state, AlertState::Firing);
        let mut p = alert(AlertState::Pending, 0);
        let v = transition(&mut p, Observation::Absent, 10_000, 60_000, 0);
        assert!(v.delete && !v.active);
    }

    #[test]
    fn keep_firing_for_holds_then_resolves_and_retention_deletes() {
        let mut a = alert(AlertState::Firing, 0);
        assert!(transition(&mut a, Observation::Absent, 100_000, 0, 60_000).active);
        assert!(transition(&mut a, Observation::Absent, 159_999, 0, 60_000).active);
        let v = transition(&mut a, Observation::Absent, 160_000, 0, 60_000);
        assert!(!v.active && !v.delete);
        assert_eq!(
            (a.state, a.resolved_at),
            (AlertState::Inactive, Some(160_000))
        );
        let v = transition(
            &mut a,
            Observation::Absent,
            160_000 + RESOLVED_RETENTION_MS + 1,
            0,
            60_000,
        );
        assert!(v.delete);
    }

    #[test]
    fn rule_errors_are_typed_and_keep_prometheus_wording() {
        assert_eq!(
            RuleError::SameLabelset("alert").to_string(),
            "vector contains metrics with the same labelset after applying alert labels"
        );
        assert_eq!(
            RuleError::TooManySeries { limit: 2, count: 3 }.to_string(),
            "exceeded limit of 2 with 3 series"
        );
        assert_eq!(
            RuleError::TooManyAlerts { limit: 1, count: 4 }.to_string(),
            "exceeded limit of 1 with 4 alerts"
        );
        assert_eq!(
            RuleError::from(EvalError::Timeout).to_string(),
            "query timed out in expression evaluation"
        );
    }
}
