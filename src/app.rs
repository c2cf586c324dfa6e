//! The running sidecar: the current config and the long-lived parts built from it,
//! shared by the HTTP handlers and the signal handlers. Reload lives here: a bad new
//! config is refused, the old one keeps running, and
//! `sentinel_config_last_reload_successful` says which happened.

use crate::collect::{self, BuildContext, Runner};
use crate::config::{self, Config, ConfigSource};
use crate::http::config::Credentials;
use crate::http::status::StatusProvider;
use crate::metrics::exposition::Exposition;
use crate::metrics::registry::{GaugeVec, Registry};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct App {
    config: ArcSwap<Config>,
    pub rules: Arc<sentinel_rules::engine::RuleEngine>,
    source: ConfigSource,
    pub registry: Registry,
    pub exposition: Arc<Exposition>,
    pub runner: Arc<Runner>,
    /// State of the events ingest API (`POST /api/v1/events`).
    pub ingest: Arc<crate::ingest::Ingest>,
    outputs: collect::OutputQueue,
    credentials: ArcSwap<Credentials>,
    reload_ok: Arc<GaugeVec>,
    reload_time: Arc<GaugeVec>,
    reload_lock: tokio::sync::Mutex<()>,
    pub started: SystemTime,
    /// Asks the refresher to re-encode `/metrics` before its next tick (pushed events).
    refresh_wanted: Arc<tokio::sync::Notify>,
    /// Metric families pushed events changed, for the immediate rule evaluation.
    pushed: Arc<PushedInputs>,
    /// Notifications: the rule engine's `AlertSink`, and state for the HTTP API.
    pub notifier: Arc<sentinel_notify::Notifier>,
    /// When the last reload was tried and how it ended (for the status page).
    last_reload: parking_lot::Mutex<Option<(SystemTime, Result<(), String>)>>,
    /// State the status page shows from later stages (rule engine, dispatcher), by key.
    status_providers: ArcSwap<BTreeMap<&'static str, Arc<dyn StatusProvider>>>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `instance` label of alerts whose expression gives none: `external_labels.instance`
/// when set, otherwise this host's name. Alerts are evaluated here, on the host they
/// watch, so a standalone sidecar's alert still says which machine it is about.
pub fn alert_instance(cfg: &Config) -> String {
    match cfg.external_labels.get("instance") {
        Some(i) if !i.is_empty() => i.clone(),
        _ => host_name(),
    }
}

/// This host's name (`uname -n`), or `localhost` when it cannot be read.
#[allow(unsafe_code)] // FFI, see the crate root
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for `buf.len()` bytes, and gethostname writes no more.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if rc != 0 || name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// (Re)loads the rule engine from the config; a failure keeps the running rules.
fn load_rules(engine: &sentinel_rules::engine::RuleEngine, cfg: &Config) {
    let settings = sentinel_rules::engine::EngineSettings {
        evaluation_interval: cfg.rules.evaluation_interval.get(),
        external_labels: cfg.external_labels.clone(),
        external_url: cfg.external_url.clone().unwrap_or_default(),
        data_dir: Some(cfg.data_dir.clone()),
        query_limits: cfg.query.limits(),
        default_alert_labels: [("instance".to_string(), alert_instance(cfg))].into(),
    };
    let loaded = cfg
        .rules
        .sources()
        .and_then(|sources| engine.load(&sources, settings));
    match loaded {
        Ok(n) => tracing::info!(rules = n, "rules loaded"),
        Err(e) => tracing::error!(error = %e, "rules not loaded; keeping the running rules"),
    }
}

impl App {
    /// Builds every part from a validated config. Must run inside a tokio runtime.
    /// Panics if the notification receivers cannot be built; `run` uses [`App::try_start`].
    pub fn start(config: Config, source: ConfigSource) -> Arc<Self> {
        Self::try_start(config, source).expect("a validated config builds its receivers")
    }

    /// Builds every part from a validated config, or says why the notification
    /// receivers cannot be built (parsing built them once already, so only a file that
    /// changed since, such as a CA file, gets here): the sidecar never runs with
    /// notifications silently off. Must run inside a tokio runtime.
    pub fn try_start(config: Config, source: ConfigSource) -> Result<Arc<Self>, String> {
        let registry = Registry::new();
        let exposition = Exposition::new(registry.clone(), config.limits.max_series_per_family);
        registry
            .gauge_vec(
                "sentinel_build_info",
                "Build information of the running comfy-sentinel; always 1.",
                &["version", "revision"],
            )
            .set(
                &[
                    env!("CARGO_PKG_VERSION"),
                    option_env!("SENTINEL_REVISION").unwrap_or("unknown"),
                ],
                1.0,
            );
        let reload_ok = registry.gauge_vec(
            "sentinel_config_last_reload_successful",
            "Whether the last configuration reload attempt succeeded.",
            &[],
        );
        let reload_time = registry.gauge_vec(
            "sentinel_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            &[],
        );
        reload_ok.set(&[], 1.0);
        reload_time.set(&[], unix_now());
        let runner = Runner::new(exposition.clone());
        let notifier =
            sentinel_notify::Notifier::new(&notify_config(&config), &config.data_dir, &registry)
                .map_err(|e| format!("cannot build the notification receivers: {e}"))?;
        notifier.start();
        let ingest = Arc::new(crate::ingest::Ingest::new(&registry, &config.ingest));
        let store = Arc::new(sentinel_rules::store::Store::default());
        crate::history::start(&config, &store, &registry);
        exposition.add_sink(store.clone());
        let rules = sentinel_rules::engine::RuleEngine::new(
            store,
            notifier.clone() as Arc<dyn sentinel_base::alert::AlertSink>,
            &registry,
        );
        load_rules(&rules, &config);
        tokio::spawn(rules.clone().run());
        let pushed = PushedInputs::spawn(rules.clone(), exposition.clone());
        let app = Arc::new(App {
            rules,
            credentials: ArcSwap::from_pointee(config.web.credentials()),
            config: ArcSwap::from_pointee(config),
            source,
            registry,
            exposition,
            runner,
            ingest,
            outputs: collect::OutputQueue::default(),
            reload_ok,
            reload_time,
            reload_lock: tokio::sync::Mutex::new(()),
            started: SystemTime::now(),
            refresh_wanted: Arc::new(tokio::sync::Notify::new()),
            pushed,
            notifier,
            last_reload: parking_lot::Mutex::new(None),
            status_providers: ArcSwap::from_pointee(BTreeMap::new()),
        });
        app.apply_collectors();
        app.set_status_provider(
            "notify",
            Arc::new(NotifierStatus(app.notifier.clone(), app.rules.clone())),
        );
        Ok(app)
    }

    fn build_context(&self) -> BuildContext {
        BuildContext {
            registry: self.registry.clone(),
            data_dir: self.config().data_dir.clone(),
            outputs: self.outputs.clone(),
        }
    }

    fn apply_collectors(&self) {
        let cfg = self.config();
        let mut specs = collect::build(&cfg, &self.build_context());
        specs.push(collect::CollectorSpec::new(
            crate::collect::process::ProcessCollector::new(),
            &"process",
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(4),
        ));
        self.runner.apply(specs);
    }

    /// Requests a re-encode of the snapshot soon (coalesced; see `refresh_requests`).
    pub fn refresh_soon(&self) {
        self.refresh_wanted.notify_one();
    }

    /// Pushed events changed the metric families whose names start with one of
    /// `prefixes`: the snapshot is refreshed and the rule groups that read them are
    /// evaluated at once (see [`PushedInputs`]).
    pub fn inputs_changed(&self, prefixes: &[&'static str]) {
        self.pushed.mark(prefixes);
    }

    /// Resolves when a refresh was requested since the last call.
    pub async fn refresh_requests(&self) {
        self.refresh_wanted.notified().await;
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    pub fn config_source(&self) -> &ConfigSource {
        &self.source
    }

    /// The last reload attempt since start: when, and its error if it failed.
    pub fn last_reload(&self) -> Option<(SystemTime, Result<(), String>)> {
        self.last_reload.lock().clone()
    }

    /// Registers (or replaces, on the same key) what the status page shows for a later
    /// stage, e.g. `app.set_status_provider("rules", engine.clone())`.
    pub fn set_status_provider(&self, key: &'static str, provider: Arc<dyn StatusProvider>) {
        self.status_providers.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.insert(key, provider.clone());
            m
        });
    }

    pub fn status_providers(&self) -> Arc<BTreeMap<&'static str, Arc<dyn StatusProvider>>> {
        self.status_providers.load_full()
    }

    /// Re-reads the config. On error the running config stays and the reason is returned.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let result = self.reload_locked().await;
        *self.last_reload.lock() = Some((SystemTime::now(), result.clone()));
        result
    }

    async fn reload_locked(&self) -> Result<(), String> {
        let source = self.source.clone();
        let parsed = tokio::task::spawn_blocking(move || config::reload(&source))
            .await
            .map_err(|e| e.to_string())?;
        match parsed {
            Err(e) => {
                self.reload_ok.set(&[], 0.0);
                tracing::error!(error = %e, "config reload failed; keeping the running config");
                Err(e.to_string())
            }
            Ok(new) => {
                let old = self.config();
                if new.listen != old.listen || new.web.tls.is_some() != old.web.tls.is_some() {
                    tracing::warn!("listen address and TLS on/off take effect on restart only");
                }
                // Checked when parsed; should it still fail, keep everything running
                // as it was rather than run with part of the new config.
                if let Err(e) = self.notifier.reconfigure(&notify_config(&new)) {
                    self.reload_ok.set(&[], 0.0);
                    tracing::error!(error = %e, "config reload failed: notification receivers cannot be built; keeping the running config");
                    return Err(e.to_string());
                }
                self.exposition
                    .set_max_series_per_family(new.limits.max_series_per_family);
                self.credentials.store(Arc::new(new.web.credentials()));
                self.ingest.apply_config(&new.ingest);
                self.config.store(Arc::new(new));
                self.apply_collectors();
                load_rules(&self.rules, &self.config());
                self.reload_ok.set(&[], 1.0);
                self.reload_time.set(&[], unix_now());
                self.exposition.refresh();
                tracing::info!(source = %self.source.display_name(), "config reloaded");
                Ok(())
            }
        }
    }

    /// Ready once the config is loaded (it is, or we would not exist), every
    /// collector has completed a run, and the notification outbox can persist.
    pub fn readiness(&self) -> Result<(), String> {
        self.notifier.readiness()?;
        let pending: Vec<&str> = self
            .runner
            .statuses()
            .into_iter()
            .filter(|(_, s)| s.runs == 0)
            .map(|(n, _)| n)
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("collectors not yet run: {}", pending.join(", ")))
        }
    }
}

/// The notify section with the top-level `external_url` filled in.
fn notify_config(c: &Config) -> sentinel_notify::NotifyConfig {
    let mut n = c.notify.clone();
    if n.external_url.is_empty() {
        n.external_url = c.external_url.clone().unwrap_or_default();
    }
    n
}

/// Shows the dispatcher's view on the status page: active alerts with their silenced and
/// inhibited marks, recent delivery attempts and dead letters, and the outbox depth.
/// The rule engine supplies each alert's value at its last evaluation.
struct NotifierStatus(
    Arc<sentinel_notify::Notifier>,
    Arc<sentinel_rules::engine::RuleEngine>,
);

impl StatusProvider for NotifierStatus {
    fn alerts(&self) -> Option<Vec<crate::http::status::AlertView>> {
        let values = self.1.alert_values();
        let views = self
            .0
            .alerts()
            .into_iter()
            .map(|a| crate::http::status::AlertView {
                name: a.alert.name().to_string(),
                severity: a.alert.labels.get("severity").cloned().unwrap_or_default(),
                state: a.status.to_string(),
                labels: a.alert.labels.clone(),
                annotations: a.alert.annotations.clone(),
                value: values.get(&a.alert.fingerprint()).copied(),
                active_since: Some(a.alert.starts_at.into()),
                silenced: !a.silenced_by.is_empty(),
                inhibited: a.inhibited,
            })
            .collect();
        Some(views)
    }

    fn notifications(&self) -> Option<Vec<crate::http::status::NotificationView>> {
        let (attempts, pending, dead) = self.0.notifications();
        let mut out: Vec<crate::http::status::NotificationView> = attempts
            .into_iter()
            .map(|a| crate::http::status::NotificationView {
                at: Some(a.at.into()),
                receiver: format!("{} ({})", a.receiver, a.integration),
                group: a.group_key,
                status: String::new(),
                result: a.result.to_string(),
                attempts: a.attempt,
                error: a.error,
            })
            .collect();
        let status = |n: &sentinel_notify::notification::Notification| {
            if n.firing().next().is_some() {
                "firing"
            } else {
                "resolved"
            }
            .to_string()
        };
        out.extend(
            pending
                .into_iter()
                .map(|e| crate::http::status::NotificationView {
                    at: Some(e.next_at.into()),
                    receiver: format!("{} ({})", e.receiver, e.integration),
                    group: e.notification.group_key.clone(),
                    status: status(&e.notification),
                    result: "queued".into(),
                    attempts: e.attempts,
                    error: e.last_error,
                }),
        );
        out.extend(
            dead.into_iter()
                .map(|d| crate::http::status::NotificationView {
                    at: Some(d.at.into()),
                    receiver: format!("{} ({})", d.entry.receiver, d.entry.integration),
                    group: d.entry.notification.group_key.clone(),
                    status: status(&d.entry.notification),
                    result: "dead".into(),
                    attempts: d.entry.attempts,
                    error: Some(d.reason),
                }),
        );
        Some(out)
    }

    fn outbox_depth(&self) -> Option<u64> {
        Some(self.0.outbox().depth() as u64)
    }
}

/// Brings pushed events to `/metrics` and the rules at once instead of at the next tick
/// (up to an interval later). One task takes the changed families, refreshes the
/// snapshot (which feeds the rule store) and calls
/// [`sentinel_rules::engine::RuleEngine::evaluate_now`] for the groups that read them: an
/// extra evaluation at the current time, so `for` still has to elapse before an alert
/// fires. Off the request path; requests arriving while a round runs are coalesced into
/// the next, and rounds are at least [`PushedInputs::MIN_GAP`] apart, so a stream of
/// events costs a bounded number of encodes and evaluations (an isolated event is
/// handled at once).
pub struct PushedInputs {
    changed: parking_lot::Mutex<std::collections::BTreeSet<&'static str>>,
    wake: tokio::sync::Notify,
}

impl PushedInputs {
    pub const MIN_GAP: std::time::Duration = std::time::Duration::from_millis(50);

    fn spawn(
        rules: Arc<sentinel_rules::engine::RuleEngine>,
        exposition: Arc<Exposition>,
    ) -> Arc<Self> {
        let me = Arc::new(PushedInputs {
            changed: parking_lot::Mutex::new(Default::default()),
            wake: tokio::sync::Notify::new(),
        });
        let task = me.clone();
        tokio::spawn(async move {
            loop {
                task.wake.notified().await;
                let prefixes: Vec<&'static str> = std::mem::take(&mut *task.changed.lock())
                    .into_iter()
                    .collect();
                let (rules, exposition) = (rules.clone(), exposition.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let start = std::time::Instant::now();
                    exposition.refresh();
                    let refresh_us = start.elapsed().as_micros() as u64;
                    let changed = |name: &str| prefixes.iter().any(|p| name.starts_with(p));
                    if prefixes.is_empty() || !rules.reads_any(&changed) {
                        return;
                    }
                    let now = sentinel_rules::store::system_time_ms(SystemTime::now());
                    let ran = rules.evaluate_now(now, &changed);
                    tracing::debug!(
                        groups = ran,
                        refresh_us,
                        eval_us = start.elapsed().as_micros() as u64 - refresh_us,
                        "pushed events: rule groups evaluated at once"
                    );
                })
                .await;
                tokio::time::sleep(Self::MIN_GAP).await;
            }
        });
        me
    }

    fn mark(&self, prefixes: &[&'static str]) {
        self.changed.lock().extend(prefixes.iter().copied());
        self.wake.notify_one();
    }
}
