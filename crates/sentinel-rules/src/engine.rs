//! The rule engine at run time: holds the loaded groups, evaluates each on its interval
//! over the [`Store`], sends alerts to an [`AlertSink`], writes `ALERTS` and
//! `ALERTS_FOR_STATE` back into the store and exports them (plus its own metrics) to
//! `/metrics`. Reload keeps the old rule set when the new one does not load, and
//! carries alert state over for rules that keep their name. `for` state survives a
//! restart through `data_dir/rule_state.json`, restored with Prometheus's outage
//! tolerance (1 h) and grace period (10 m).

use crate::group::{AlertState, EvalContext, Group, RESEND_DELAY_MS};
use crate::labels::Labels;
use crate::rulefile::{parse_rule_file, GroupDef, LevelLink, LoadError};
use crate::store::Store;
use parking_lot::Mutex;
use promql_parser::parser::Expr;
use sentinel_base::alert::AlertSink;
use sentinel_base::metrics::registry::{
    CounterVec, FamilySource, GaugeVec, HistogramVec, Registry,
};
use sentinel_base::metrics::MetricFamily;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `--rules.alert.for-outage-tolerance`.
pub const OUTAGE_TOLERANCE_MS: i64 = 3_600_000;
/// `--rules.alert.for-grace-period`.
pub const FOR_GRACE_PERIOD_MS: i64 = 600_000;

/// What the engine takes from the config.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    /// Where `for` state is persisted; none disables persistence.
    pub data_dir: Option<PathBuf>,
    /// Limits of every rule evaluation (`query:`).
    pub query_limits: crate::eval::QueryLimits,
    /// Labels every alert gets when its expression and rule leave them unset (the
    /// sidecar's `instance`); empty for `rules test`, so unit tests match promtool's.
    pub default_alert_labels: BTreeMap<String, String>,
}

/// An alert sink that only logs, until the notification dispatcher is wired.
pub struct LoggingSink;

impl AlertSink for LoggingSink {
    fn send(&self, alerts: Vec<sentinel_base::alert::Alert>) {
        for a in alerts {
            tracing::info!(alert = a.name(), labels = ?a.labels, ends_at = %a.ends_at, "alert");
        }
    }
}

struct Metrics {
    eval_duration: Arc<HistogramVec>,
    group_last_duration: Arc<GaugeVec>,
    failures: Arc<CounterVec>,
    evaluations: Arc<CounterVec>,
    rule_health: Arc<GaugeVec>,
    store_series: Arc<GaugeVec>,
    store_dropped: Arc<GaugeVec>,
}

struct GroupRun {
    group: Group,
    next_eval_ms: i64,
    evaluated_once: bool,
    /// Timestamp of the last evaluation (regular or immediate); evaluations never go
    /// back in time.
    last_ts: i64,
    /// What the group's selectors read, for [`RuleEngine::evaluate_now`].
    inputs: GroupInputs,
}

/// The metric names a group's selectors name; `any` when some selector has no fixed
/// name (such a group is touched by every change).
#[derive(Default)]
struct GroupInputs {
    names: Vec<String>,
    any: bool,
}

impl GroupInputs {
    fn of(g: &GroupDef) -> Self {
        let mut out = GroupInputs::default();
        for r in &g.rules {
            let mut sel = Vec::new();
            selectors(&r.expr, 0, &mut sel);
            for (name, _) in sel {
                match name {
                    Some(n) => out.names.push(n),
                    None => out.any = true,
                }
            }
        }
        out.names.sort();
        out.names.dedup();
        out
    }

    fn touched_by(&self, changed: &dyn Fn(&str) -> bool) -> bool {
        self.any || self.names.iter().any(|n| changed(n))
    }
}

struct Inner {
    groups: Vec<GroupRun>,
    links: Vec<LevelLink>,
    settings: EngineSettings,
    /// Persisted `for` state waiting for the first evaluation after start.
    restore: HashMap<(String, String, Labels), Persisted>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    group: String,
    rule: String,
    labels: BTreeMap<String, String>,
    active_at_ms: i64,
    /// The last evaluation that saw it active (ALERTS_FOR_STATE's last sample time).
    seen_ms: i64,
}

/// One current alert: `(group, rule, state, labels, active_at_ms)`.
pub type AlertRow = (String, String, AlertState, Labels, i64);

pub struct RuleEngine {
    store: Arc<Store>,
    /// The alerts after the last evaluation, so `/metrics` never waits for one.
    snapshot: Mutex<Arc<Vec<AlertRow>>>,
    /// Each active alert's last value, by the fingerprint of its sent labels.
    values: Mutex<Arc<HashMap<u64, f64>>>,
    sink: Mutex<Arc<dyn AlertSink>>,
    inner: Mutex<Inner>,
    metrics: Metrics,
}

impl RuleEngine {
    pub fn new(store: Arc<Store>, sink: Arc<dyn AlertSink>, registry: &Registry) -> Arc<Self> {
        let metrics = Metrics {
            eval_duration: registry.histogram_vec(
                "sentinel_rule_evaluation_duration_seconds",
                "Duration of one rule evaluation.",
                &[],
                &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
            ),
            group_last_duration: registry.gauge_vec(
                "sentinel_rule_group_last_duration_seconds",
                "Duration of the last evaluation of a rule group.",
                &["group"],
            ),
            failures: registry.counter_vec(
                "sentinel_rule_evaluation_failures_total",
                "Rule evaluations that failed.",
                &["group"],
            ),
            evaluations: registry.counter_vec(
                "sentinel_rule_evaluations_total",
                "Rule evaluations.",
                &["group"],
            ),
            rule_health: registry.gauge_vec(
                "sentinel_rule_health",
                "1 when the rule's last evaluation succeeded, 0 when it failed.",
                &["group", "rule"],
            ),
            store_series: registry.gauge_vec(
                "sentinel_rule_store_series",
                "Series held in the rule engine's sample store.",
                &[],
            ),
            store_dropped: registry.gauge_vec(
                "sentinel_rule_store_series_dropped",
                "Series refused by the sample store's cap since start.",
                &[],
            ),
        };
        let engine = Arc::new(RuleEngine {
            store,
            snapshot: Mutex::new(Arc::new(Vec::new())),
            values: Mutex::new(Arc::new(HashMap::new())),
            sink: Mutex::new(sink),
            inner: Mutex::new(Inner {
                groups: Vec::new(),
                links: Vec::new(),
                settings: EngineSettings::default(),
                restore: HashMap::new(),
            }),
            metrics,
        });
        registry.register(Arc::new(AlertFamilies(Arc::downgrade(&engine))));
        engine
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Replaces the alert sink (the dispatcher, once it exists).
    pub fn set_sink(&self, sink: Arc<dyn AlertSink>) {
        *self.sink.lock() = sink;
    }

    /// The critical/warning pairs of the loaded rules.
    pub fn level_links(&self) -> Vec<LevelLink> {
        self.inner.lock().links.clone()
    }

    /// Loads rule sources `(name, text)`. On error the running rules stay.
    pub fn load(
        &self,
        sources: &[(String, String)],
        settings: EngineSettings,
    ) -> Result<usize, LoadError> {
        let mut defs: Vec<GroupDef> = Vec::new();
        let mut links = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in sources {
            match parse_rule_file(text, name) {
                Ok((g, l)) => {
                    defs.extend(g);
                    links.extend(l);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors.join("\n")));
        }
        let (retention, by_name) = retention_plan(&defs);
        self.store.set_retention_ms(retention as u64);
        self.store.set_retention_by_name(by_name);
        let mut inner = self.inner.lock();
        let first_load = inner.groups.is_empty() && inner.restore.is_empty();
        let mut old: HashMap<(String, String, String), Group> = HashMap::new();
        let mut old_runs: HashMap<(String, String), (i64, bool, i64)> = HashMap::new();
        for run in inner.groups.drain(..) {
            old_runs.insert(
                (run.group.file.clone(), run.group.name.clone()),
                (run.next_eval_ms, run.evaluated_once, run.last_ts),
            );
            old.insert(
                (
                    run.group.file.clone(),
                    run.group.name.clone(),
                    String::new(),
                ),
                run.group,
            );
        }
        let mut groups = Vec::new();
        let mut count = 0;
        for d in defs {
            let inputs = GroupInputs::of(&d);
            let mut g = Group::new(d, settings.evaluation_interval);
            g.default_alert_labels = settings.default_alert_labels.clone();
            g.external_alert_labels = settings.external_labels.clone();
            count += g.rules.len();
            let key = (g.file.clone(), g.name.clone(), String::new());
            if let Some(prev) = old.get_mut(&key) {
                // Keep alert state of rules that kept their name and level.
                for r in &mut g.rules {
                    if let Some(p) = prev.rules.iter_mut().find(|p| {
                        p.def.name == r.def.name
                            && p.def.level == r.def.level
                            && p.def.kind == r.def.kind
                    }) {
                        r.active = std::mem::take(&mut p.active);
                    }
                }
            }
            let (next, once, last_ts) = old_runs
                .get(&(g.file.clone(), g.name.clone()))
                .copied()
                .unwrap_or((0, false, i64::MIN));
            groups.push(GroupRun {
                group: g,
                next_eval_ms: next,
                evaluated_once: once,
                last_ts,
                inputs,
            });
        }
        if first_load {
            inner.restore = read_state(settings.data_dir.as_ref());
        }
        inner.groups = groups;
        inner.links = links;
        inner.settings = settings;
        Ok(count)
    }

    /// Evaluates every group that is due at `now_ms`; returns how many ran.
    pub fn eval_due(&self, now_ms: i64) -> usize {
        self.eval_where(now_ms, |run| {
            if now_ms < run.next_eval_ms {
                return None;
            }
            let interval = run.group.interval.as_millis().max(1) as i64;
            // Align to the interval as Prometheus does (no per-group offset here).
            let ts = now_ms - now_ms.rem_euclid(interval);
            run.next_eval_ms = ts + interval;
            // An immediate evaluation already ran at or after this tick.
            (ts > run.last_ts).then_some(ts)
        })
    }

    /// Whether some loaded group reads a metric for which `changed` holds.
    pub fn reads_any(&self, changed: &dyn Fn(&str) -> bool) -> bool {
        self.inner
            .lock()
            .groups
            .iter()
            .any(|r| r.inputs.touched_by(changed))
    }

    /// Evaluates at once, at `now_ms`, every group whose selectors read a metric for
    /// which `changed` holds (pushed events call this once their values are in the
    /// store). It is one extra evaluation at the current time, not a tick: the regular
    /// schedule stays as it is, and alert semantics are those of any evaluation — a
    /// pending alert fires only once `for` has elapsed since it became active, and a
    /// resend still waits for the resend delay. Returns how many groups ran.
    pub fn evaluate_now(&self, now_ms: i64, changed: &dyn Fn(&str) -> bool) -> usize {
        self.eval_where(now_ms, |run| {
            (now_ms > run.last_ts && run.inputs.touched_by(changed)).then_some(now_ms)
        })
    }

    /// Evaluates the groups for which `pick` returns an evaluation timestamp.
    fn eval_where(&self, now_ms: i64, mut pick: impl FnMut(&mut GroupRun) -> Option<i64>) -> usize {
        let mut inner = self.inner.lock();
        let Inner {
            groups,
            settings,
            restore,
            ..
        } = &mut *inner;
        let ctx = EvalContext {
            store: &self.store,
            external_labels: &settings.external_labels,
            external_url: &settings.external_url,
            restored: true,
            subquery_step_ms: settings.evaluation_interval.as_millis() as i64,
            limits: settings.query_limits,
        };
        let mut ran = 0;
        let mut to_send = Vec::new();
        for run in groups.iter_mut() {
            let Some(ts) = pick(run) else {
                continue;
            };
            run.last_ts = ts;
            run.group.eval(ts, &ctx);
            if !run.evaluated_once {
                restore_for_state(&mut run.group, restore, ts);
                run.evaluated_once = true;
            }
            ran += 1;
            let g = &run.group;
            self.metrics
                .group_last_duration
                .set(&[&g.name], g.last_duration.as_secs_f64());
            for r in &g.rules {
                self.metrics.evaluations.inc(&[&g.name]);
                self.metrics
                    .eval_duration
                    .observe(&[], r.health.last_duration.as_secs_f64());
                let ok = r.health.ok == Some(true);
                if !ok {
                    self.metrics.failures.inc(&[&g.name]);
                    if let Some(e) = &r.health.last_error {
                        tracing::warn!(group = %g.name, rule = %r.def.name, origin = %r.def.origin, error = %e, "rule evaluation failed");
                    }
                }
                self.metrics
                    .rule_health
                    .set(&[&g.name, &r.def.name], if ok { 1.0 } else { 0.0 });
            }
            let url = generator_url(&settings.external_url);
            to_send.extend(run.group.alerts_to_send(ts, &url));
        }
        self.metrics
            .store_series
            .set(&[], self.store.series_count() as f64);
        self.metrics
            .store_dropped
            .set(&[], self.store.dropped_series() as f64);
        if ran > 0 {
            write_state(
                settings.data_dir.as_ref(),
                groups.iter().map(|r| &r.group),
                now_ms,
            );
            *self.snapshot.lock() = Arc::new(collect_alerts(groups));
            let mut values = HashMap::new();
            for run in groups.iter() {
                run.group.alert_values(&mut values);
            }
            *self.values.lock() = Arc::new(values);
        }
        drop(inner);
        if !to_send.is_empty() {
            let sink = self.sink.lock().clone();
            sink.send(to_send);
        }
        ran
    }

    /// When the next group is due (wall clock, ms); `None` without groups.
    fn next_due_ms(&self) -> Option<i64> {
        self.inner
            .lock()
            .groups
            .iter()
            .map(|r| r.next_eval_ms)
            .min()
    }

    /// Evaluates due groups off the async workers; runs for the life of the process.
    /// It wakes at the next group's aligned evaluation time (at least once a second,
    /// for reloads), so an evaluation's timestamp is the wall-clock time it runs at,
    /// not up to an interval before it.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = crate::store::system_time_ms(std::time::SystemTime::now());
            let wait_ms = self
                .next_due_ms()
                .map(|t| (t - now).clamp(0, 1000))
                .unwrap_or(1000);
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
            }
            let me = self.clone();
            let now = crate::store::system_time_ms(std::time::SystemTime::now());
            let ran = tokio::task::spawn_blocking(move || me.eval_due(now))
                .await
                .unwrap_or(0);
            if ran == 0 && wait_ms == 0 {
                // Due but nothing ran (a clock step back): do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Pending and firing alerts as of the last evaluation, for `/metrics` and status pages.
    pub fn alerts(&self) -> Arc<Vec<AlertRow>> {
        self.snapshot.lock().clone()
    }

    /// The value each pending or firing alert had at its last evaluation, keyed by the
    /// fingerprint of the labels it was sent with (`Alert::fingerprint`).
    pub fn alert_values(&self) -> Arc<HashMap<u64, f64>> {
        self.values.lock().clone()
    }

    /// Calls `f` on every loaded group, in load order (the rules and alerts APIs).
    pub fn visit_groups(&self, mut f: impl FnMut(&crate::group::Group)) {
        let inner = self.inner.lock();
        for run in &inner.groups {
            f(&run.group);
        }
    }

    /// `(group, rule, health ok, last error)` of every rule.
    pub fn health(&self) -> Vec<(String, String, Option<bool>, Option<String>)> {
        let inner = self.inner.lock();
        inner
            .groups
            .iter()
            .flat_map(|run| {
                run.group.rules.iter().map(|r| {
                    (
                        run.group.name.clone(),
                        r.def.name.clone(),
                        r.health.ok,
                        r.health.last_error.clone(),
                    )
                })
            })
            .collect()
    }
}

fn collect_alerts(groups: &[GroupRun]) -> Vec<AlertRow> {
    let mut out = Vec::new();
    for run in groups {
        for r in &run.group.rules {
            for a in r.active_alerts() {
                out.push((
                    run.group.name.clone(),
                    r.def.name.clone(),
                    a.state,
                    a.labels.clone(),
                    a.active_at,
                ));
            }
        }
    }
    out
}

/// Exports `ALERTS` and `ALERTS_FOR_STATE` as gauge families.
struct AlertFamilies(std::sync::Weak<RuleEngine>);

impl FamilySource for AlertFamilies {
    fn collect(&self, out: &mut Vec<MetricFamily>) {
        let Some(engine) = self.0.upgrade() else {
            return;
        };
        let mut alerts = MetricFamily::gauge(
            "ALERTS",
            "Alerts pending or firing, as Prometheus exports them.",
        );
        let mut for_state = MetricFamily::gauge(
            "ALERTS_FOR_STATE",
            "Unix time at which each pending or firing alert became active.",
        );
        for (_, _, state, labels, active_at) in engine.alerts().iter() {
            for_state.push_owned(labels.pairs().to_vec(), active_at.div_euclid(1000) as f64);
            let mut l = labels.clone();
            l.set("alertstate".into(), state.as_str().into());
            alerts.push_owned(l.into_pairs(), 1.0);
        }
        let mut by_state = MetricFamily::gauge(
            "sentinel_alerts",
            "Alerts by state, as of the last rule evaluation.",
        );
        for state in [AlertState::Pending, AlertState::Firing] {
            let n = engine.alerts().iter().filter(|a| a.2 == state).count();
            by_state.push(&[("state", state.as_str())], n as f64);
        }
        out.push(alerts);
        out.push(for_state);
        out.push(by_state);
    }
}

fn generator_url(external_url: &str) -> String {
    if external_url.is_empty() {
        String::new()
    } else {
        format!("{}/alerts", external_url.trim_end_matches('/'))
    }
}

fn selector_offset(o: &Option<promql_parser::parser::Offset>) -> i64 {
    match o {
        Some(promql_parser::parser::Offset::Pos(d)) => d.as_millis() as i64,
        _ => 0,
    }
}

fn name_of(v: &promql_parser::parser::VectorSelector) -> Option<String> {
    v.name.clone().or_else(|| {
        v.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
            .map(|m| m.value.clone())
    })
}

// Visits every selector with the extra history its context adds (subquery ranges).
fn selectors(e: &Expr, extra: i64, out: &mut Vec<(Option<String>, i64)>) {
    match e {
        Expr::Aggregate(a) => {
            selectors(&a.expr, extra, out);
            if let Some(p) = a.param.as_deref() {
                selectors(p, extra, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, extra, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, extra, out);
            selectors(&b.rhs, extra, out);
        }
        Expr::Paren(p) => selectors(&p.expr, extra, out),
        Expr::Subquery(s) => selectors(
            &s.expr,
            extra + crate::eval::ms(&s.range) + selector_offset(&s.offset),
            out,
        ),
        Expr::VectorSelector(v) => out.push((name_of(v), extra + selector_offset(&v.offset))),
        Expr::MatrixSelector(m) => out.push((
            name_of(&m.vs),
            extra + crate::eval::ms(&m.range) + selector_offset(&m.vs.offset),
        )),
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, extra, out);
            }
        }
        _ => {}
    }
}

/// Longest look into the past any rule needs: ranges + offsets + `for` +
/// `keep_firing_for` + the 5 m lookback (and the resend delay, for ALERTS_FOR_STATE).
/// Per-metric retention: each metric keeps what the rules that select it by name need
/// (range + offset + lookback + resend delay); metrics no rule selects by name keep the
/// default, which is the lookback plus resend delay, or the whole longest need when some
/// selector has no fixed metric name.
pub fn retention_plan(groups: &[GroupDef]) -> (i64, HashMap<String, i64>) {
    let base = crate::store::LOOKBACK_MS + RESEND_DELAY_MS;
    let mut default = base;
    let mut by_name: HashMap<String, i64> = HashMap::new();
    for g in groups {
        for r in &g.rules {
            let mut sel = Vec::new();
            selectors(&r.expr, 0, &mut sel);
            for (name, need) in sel {
                let need = need + base;
                match name {
                    Some(n) => {
                        let e = by_name.entry(n).or_insert(base);
                        *e = (*e).max(need);
                    }
                    None => default = default.max(need),
                }
            }
        }
    }
    (default, by_name)
}

fn state_path(dir: Option<&PathBuf>) -> Option<PathBuf> {
    dir.map(|d| d.join("rule_state.json"))
}

fn read_state(dir: Option<&PathBuf>) -> HashMap<(String, String, Labels), Persisted> {
    let Some(path) = state_path(dir) else {
        return HashMap::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    match serde_json::from_str::<Vec<Persisted>>(&text) {
        Ok(v) => v
            .into_iter()
            .map(|p| {
                (
                    (
                        p.group.clone(),
                        p.rule.clone(),
                        Labels::from_pairs(p.labels.clone()),
                    ),
                    p,
                )
            })
            .collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable rule state");
            HashMap::new()
        }
    }
}

fn write_state<'a>(dir: Option<&PathBuf>, groups: impl Iterator<Item = &'a Group>, now_ms: i64) {
    let Some(path) = state_path(dir) else { return };
    let mut v = Vec::new();
    for g in groups {
        for r in &g.rules {
            if r.def.for_.is_zero() {
                continue;
            }
            for a in r.active_alerts() {
                v.push(Persisted {
                    group: g.name.clone(),
                    rule: r.def.name.clone(),
                    labels: a
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    active_at_ms: a.active_at,
                    seen_ms: now_ms,
                });
            }
        }
    }
    let tmp = path.with_extension("json.tmp");
    let ok = serde_json::to_vec(&v)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = ok {
        tracing::debug!(path = %path.display(), error = %e, "cannot persist rule state");
    }
}

/// `Group.RestoreForState` of Prometheus 2.42, from the persisted state.
fn restore_for_state(
    g: &mut Group,
    restore: &mut HashMap<(String, String, Labels), Persisted>,
    ts: i64,
) {
    for r in &mut g.rules {
        let hold = r.def.for_.as_millis() as i64;
        if hold < FOR_GRACE_PERIOD_MS {
            continue;
        }
        for a in r.active.values_mut() {
            let Some(p) = restore.remove(&(g.name.clone(), r.def.name.clone(), a.labels.clone()))
            else {
                continue;
            };
            let down_at = p.seen_ms;
            if ts - down_at > OUTAGE_TOLERANCE_MS {
                continue;
            }
            let mut restored = p.active_at_ms;
            let remaining = hold - (down_at - restored);
            if remaining <= 0 {
                // It had already fired: keep the original activation.
            } else if remaining < FOR_GRACE_PERIOD_MS {
                restored = ts + FOR_GRACE_PERIOD_MS - hold;
            } else {
                restored += ts - down_at;
            }
            a.active_at = restored;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Origin;
    use sentinel_base::alert::Alert;

    #[derive(Default)]
    struct Capture(Mutex<Vec<Alert>>);
    impl AlertSink for Capture {
        fn send(&self, alerts: Vec<Alert>) {
            self.0.lock().extend(alerts);
        }
    }

    const RULES: &str = "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - alert: High\n        expr: m\n        warning: \"> 1\"\n        critical: \"> 5\"\n        for: 20s\n";

    #[test]
    fn fires_sends_with_ends_at_and_resolves() {
        let store = Arc::new(Store::new(600_000, 1000));
        let sink = Arc::new(Capture::default());
        let reg = Registry::new();
        let e = RuleEngine::new(store.clone(), sink.clone(), &reg);
        let settings = EngineSettings {
            evaluation_interval: Duration::from_secs(10),
            ..Default::default()
        };
        e.load(&[("r.yaml".into(), RULES.into())], settings)
            .unwrap();
        assert_eq!(e.level_links().len(), 1);
        let l = Labels::from_pairs([("__name__", "m")]);
        for t in (0..=30_000).step_by(10_000) {
            store.append(&l, t, 3.0, Origin::Snapshot);
            e.eval_due(t);
        }
        let sent = sink.0.lock().clone();
        assert_eq!(
            sent.len(),
            1,
            "the warning fires at 20s; the critical never"
        );
        assert_eq!(sent[0].labels["severity"], "warning");
        // endsAt = now + 4 × max(resend delay, interval) = 20s + 4m.
        assert_eq!(sent[0].ends_at.timestamp_millis(), 20_000 + 240_000);
        let text = reg
            .collect()
            .into_iter()
            .find(|f| f.name == "ALERTS")
            .unwrap();
        assert_eq!(text.samples.len(), 1);
        store.append(&l, 40_000, 0.0, Origin::Snapshot);
        e.eval_due(40_000);
        let sent = sink.0.lock().clone();
        assert_eq!(
            sent.last().unwrap().ends_at.timestamp_millis(),
            40_000,
            "resolved: endsAt = resolved time"
        );
    }

    const TWO_GROUPS: &str = "groups:\n  - name: pushed\n    interval: 1m\n    rules:\n      - alert: Pushed\n        expr: pushed_total > 0\n        for: 0s\n      - alert: Slow\n        expr: pushed_total > 0\n        for: 2m\n  - name: other\n    interval: 1m\n    rules:\n      - alert: Other\n        expr: other > 0\n";

    fn two_groups() -> (Arc<Store>, Arc<Capture>, Arc<RuleEngine>) {
        let store = Arc::new(Store::new(600_000, 1000));
        let sink = Arc::new(Capture::default());
        let e = RuleEngine::new(store.clone(), sink.clone(), &Registry::new());
        let settings = EngineSettings {
            evaluation_interval: Duration::from_secs(60),
            ..Default::default()
        };
        e.load(&[("r.yaml".into(), TWO_GROUPS.into())], settings)
            .unwrap();
        (store, sink, e)
    }

    #[test]
    fn pushed_input_is_evaluated_at_once_without_waiting_for_the_interval() {
        let (store, sink, e) = two_groups();
        assert_eq!(e.eval_due(60_000), 2);
        assert!(sink.0.lock().is_empty());
        store.append(
            &Labels::from_pairs([("__name__", "pushed_total")]),
            61_000,
            1.0,
            Origin::Snapshot,
        );
        assert!(e.reads_any(&|n| n == "pushed_total"));
        assert!(!e.reads_any(&|n| n == "unrelated"));
        // Only the group that reads the changed metric runs, at the current time.
        assert_eq!(e.evaluate_now(61_500, &|n| n == "pushed_total"), 1);
        let sent = sink.0.lock().clone();
        assert_eq!(
            sent.len(),
            1,
            "for: 0s fires at once; for: 2m stays pending"
        );
        assert_eq!(sent[0].labels["alertname"], "Pushed");
        assert_eq!(sent[0].starts_at.timestamp_millis(), 61_500);
        // The regular schedule is unchanged: the next tick is at 2m.
        assert_eq!(e.eval_due(61_600), 0);
        assert_eq!(e.eval_due(120_000), 2);
    }

    #[test]
    fn immediate_evaluations_do_not_shorten_for() {
        let (store, sink, e) = two_groups();
        let l = Labels::from_pairs([("__name__", "pushed_total")]);
        store.append(&l, 59_000, 1.0, Origin::Snapshot);
        e.eval_due(60_000); // Slow becomes pending at 60s
        for t in [90_000, 150_000, 179_999] {
            store.append(&l, t, 1.0, Origin::Snapshot);
            e.evaluate_now(t, &|n| n == "pushed_total");
        }
        let fired = |s: &Arc<Capture>| s.0.lock().iter().any(|a| a.labels["alertname"] == "Slow");
        assert!(!fired(&sink), "pending for less than 2m: not firing");
        store.append(&l, 180_000, 1.0, Origin::Snapshot);
        e.evaluate_now(180_000, &|n| n == "pushed_total");
        assert!(fired(&sink), "2m after it became active it fires");
    }

    #[test]
    fn a_tick_after_an_immediate_evaluation_never_goes_back_in_time() {
        let (_store, _sink, e) = two_groups();
        e.eval_due(60_000);
        assert_eq!(e.evaluate_now(120_010, &|n| n == "pushed_total"), 1);
        // The tick at 2m comes late (120_020): its aligned timestamp 120_000 is older
        // than the immediate evaluation, so only the other group runs.
        assert_eq!(e.eval_due(120_020), 1);
        assert_eq!(e.evaluate_now(120_010, &|n| n == "pushed_total"), 0);
        assert_eq!(e.eval_due(180_000), 2);
    }

    #[test]
    fn hovering_between_resolve_and_fire_sends_no_resolution_until_resolve_holds() {
        let rules = "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - alert: Hot\n        expr: m\n        warning: { fire: \"> 5\", resolve: \"< 3\" }\n";
        let store = Arc::new(Store::new(600_000, 1000));
        let sink = Arc::new(Capture::default());
        let e = RuleEngine::new(store.clone(), sink.clone(), &Registry::new());
        let settings = EngineSettings {
            evaluation_interval: Duration::from_secs(10),
            ..Default::default()
        };
        e.load(&[("r.yaml".into(), rules.into())], settings)
            .unwrap();
        let l = Labels::from_pairs([("__name__", "m")]);
        let mut firing = Vec::new();
        for (i, v) in [6.0, 4.0, 5.0, 3.0, 2.9, 4.0].into_iter().enumerate() {
            let t = i as i64 * 10_000;
            store.append(&l, t, v, Origin::Snapshot);
            e.eval_due(t);
            firing.push(e.alerts().iter().any(|a| a.2 == AlertState::Firing));
        }
        assert_eq!(
            firing,
            [true, true, true, true, false, false],
            "held at 4, 5 and 3 (resolve is < 3), resolved at 2.9, quiet again at 4"
        );
        let sent = sink.0.lock().clone();
        assert_eq!(sent.len(), 2, "one firing, one resolution: {sent:?}");
        assert_eq!(sent[1].ends_at.timestamp_millis(), 40_000);
    }

    #[test]
    fn rule_hitting_a_query_limit_fails_alone_and_is_counted() {
        let store = Arc::new(Store::new(600_000, 1000));
        let reg = Registry::new();
        let e = RuleEngine::new(store.clone(), Arc::new(LoggingSink), &reg);
        let rules = "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - record: big\n        expr: sum_over_time(vector(1)[1000s:1s])\n      - record: small\n        expr: vector(2)\n";
        let settings = EngineSettings {
            evaluation_interval: Duration::from_secs(10),
            query_limits: crate::eval::QueryLimits {
                max_samples: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        e.load(&[("r.yaml".into(), rules.into())], settings)
            .unwrap();
        let t0 = std::time::Instant::now();
        e.eval_due(1_000_000);
        assert!(t0.elapsed() < Duration::from_secs(2));
        let health = e.health();
        assert_eq!(health[0].2, Some(false));
        assert_eq!(
            health[0].3.as_deref(),
            Some("query processing would load too many samples into memory in query execution")
        );
        assert_eq!(health[1].2, Some(true), "the next rule still runs");
        let failures = reg
            .collect()
            .into_iter()
            .find(|f| f.name == "sentinel_rule_evaluation_failures_total")
            .unwrap();
        assert_eq!(failures.samples[0].value, 1.0);
        let got = store.select(
            &[promql_parser::label::Matcher::new(
                promql_parser::label::MatchOp::Equal,
                "__name__",
                "small",
            )],
            0,
            2_000_000,
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn bad_reload_keeps_the_running_rules() {
        let store = Arc::new(Store::default());
        let e = RuleEngine::new(store, Arc::new(LoggingSink), &Registry::new());
        e.load(
            &[("r.yaml".into(), RULES.into())],
            EngineSettings::default(),
        )
        .unwrap();
        assert!(e
            .load(
                &[(
                    "r.yaml".into(),
                    "groups: [{name: g, rules: [{alert: A, expr: 'rate('}]}]".into()
                )],
                EngineSettings::default()
            )
            .is_err());
        assert_eq!(e.health().len(), 2);
    }

    #[test]
    fn for_state_is_restored_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rules = "groups:\n  - name: g\n    interval: 1m\n    rules:\n      - alert: Slow\n        expr: m > 0\n        for: 30m\n";
        let settings = EngineSettings {
            evaluation_interval: Duration::from_secs(60),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let l = Labels::from_pairs([("__name__", "m")]);
        {
            let store = Arc::new(Store::default());
            let e = RuleEngine::new(store.clone(), Arc::new(LoggingSink), &Registry::new());
            e.load(&[("r.yaml".into(), rules.into())], settings.clone())
                .unwrap();
            for t in (0..=600_000).step_by(60_000) {
                store.append(&l, t, 1.0, Origin::Snapshot);
                e.eval_due(t);
            }
        }
        // Down for 5 minutes; 10 of the 30 minutes were spent pending before.
        let store = Arc::new(Store::default());
        let e = RuleEngine::new(store.clone(), Arc::new(LoggingSink), &Registry::new());
        e.load(&[("r.yaml".into(), rules.into())], settings)
            .unwrap();
        store.append(&l, 900_000, 1.0, Origin::Snapshot);
        e.eval_due(900_000);
        let active_at = e.alerts()[0].4;
        assert_eq!(
            active_at, 300_000,
            "active since 0, shifted by the 5 minute outage"
        );
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn each_metric_keeps_only_what_its_rules_select() {
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: predict_linear(disk_avail[1h], 3600) < 0\n      - alert: B\n        expr: rate(cpu_total[5m] offset 1m) > 1\n      - alert: C\n        expr: up == 0\n";
        let (groups, _) = crate::rulefile::parse_rule_file(src, "t.yaml").unwrap();
        let (default, by_name) = retention_plan(&groups);
        let base = crate::store::LOOKBACK_MS + RESEND_DELAY_MS;
        assert_eq!(
            default, base,
            "no unnamed selector: others keep the lookback"
        );
        assert_eq!(by_name["disk_avail"], 3_600_000 + base);
        assert_eq!(by_name["cpu_total"], 360_000 + base);
        assert_eq!(by_name["up"], base);
        // A selector without a fixed name raises the default for every series.
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'count_over_time({__name__=~\"x.*\"}[30m]) > 0'\n";
        let (groups, _) = crate::rulefile::parse_rule_file(src, "t.yaml").unwrap();
        assert_eq!(retention_plan(&groups).0, 1_800_000 + base);
    }
}
