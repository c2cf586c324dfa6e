//! The running sidecar: the current config and the long-lived parts built from it,
//! shared by the HTTP handlers and the signal handlers. Reload lives here: a bad new
//! config is refused, the old one keeps running, and
//! `sentinel_config_last_reload_successful` says which happened.

use crate::collect::{self, BuildContext, Runner};
use crate::config::auth::Credentials;
use crate::config::{self, Config, ConfigSource, FieldError};
use crate::metrics::registry::{GaugeVec, Registry};
use arc_swap::ArcSwap;
use sentinel_store::exposition::Exposition;
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
    /// `query:` as the query API applies it (limits, concurrency slots), set at load
    /// and at each reload.
    pub queries: crate::http::QueryGate,
    /// When the last reload was tried and how it ended (for the status page).
    last_reload: parking_lot::Mutex<Option<(SystemTime, Result<(), ReloadError>)>>,
    /// The status page's trends section, rendered one at a time and reused a few seconds.
    pub(crate) trends: crate::http::trends::TrendsCache,
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
pub fn host_name() -> String {
    let name = nix::unistd::gethostname()
        .map(|n| n.to_string_lossy().trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
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
    pub fn try_start(config: Config, source: ConfigSource) -> Result<Arc<Self>, StartError> {
        let credentials = config.web.credentials().map_err(StartError::Web)?;
        let registry = Registry::new();
        // The one store: collectors and the registry write into it through the
        // exposition; `/metrics`, the rules, the query APIs and the status page read it.
        let store = Arc::new(sentinel_rules::store::Store::default());
        let exposition = Exposition::new(
            registry.clone(),
            config.limits.max_series_per_family,
            store.clone(),
        );
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
                .map_err(|e| StartError::Receivers(e.to_string()))?;
        notifier.start();
        let ingest = Arc::new(
            crate::ingest::Ingest::new(&registry, &config.ingest).map_err(StartError::Ingest)?,
        );
        crate::history::start(&config, &store, &registry);
        let rules = sentinel_rules::engine::RuleEngine::new(
            store,
            notifier.clone() as Arc<dyn sentinel_base::alert::AlertSink>,
            &registry,
        );
        load_rules(&rules, &config);
        tokio::spawn(rules.clone().run());
        let pushed = PushedInputs::spawn(rules.clone(), exposition.clone());
        let queries = crate::http::QueryGate::new(&config.query);
        let app = Arc::new(App {
            rules,
            credentials: ArcSwap::from_pointee(credentials),
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
            queries,
            last_reload: parking_lot::Mutex::new(None),
            trends: Default::default(),
        });
        // The registry's first write: the sidecar's own series as they are at start
        // (they get no creation zero), before any collector or event writes.
        app.exposition.refresh();
        app.apply_collectors();
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
        self.runner
            .apply(collect::build(&cfg.collectors, &self.build_context()));
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
    pub fn last_reload(&self) -> Option<(SystemTime, Result<(), ReloadError>)> {
        self.last_reload.lock().clone()
    }

    /// Re-reads the config. On error the running config stays and the reason is returned.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _guard = self.reload_lock.lock().await;
        let result = self.reload_locked().await;
        *self.last_reload.lock() = Some((SystemTime::now(), result.clone()));
        result
    }

    async fn reload_locked(&self) -> Result<(), ReloadError> {
        let source = self.source.clone();
        let parsed = tokio::task::spawn_blocking(move || config::reload(&source))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?;
        match parsed {
            Err(e) => {
                self.reload_ok.set(&[], 0.0);
                tracing::error!(error = %e, "config reload failed; keeping the running config");
                Err(ReloadError::Config(e))
            }
            Ok(new) => {
                let old = self.config();
                if new.listen != old.listen || new.web.tls.is_some() != old.web.tls.is_some() {
                    tracing::warn!("listen address and TLS on/off take effect on restart only");
                }
                // Checked when parsed; should it still fail, keep everything running
                // as it was rather than run with part of the new config.
                let resolved = new
                    .web
                    .credentials()
                    .and_then(|c| Ok((c, crate::ingest::Settings::resolve(&new.ingest)?)));
                let (credentials, ingest_settings) = match resolved {
                    Ok(r) => r,
                    Err(e) => {
                        self.reload_ok.set(&[], 0.0);
                        tracing::error!(error = %e, "config reload failed; keeping the running config");
                        return Err(ReloadError::Secrets(e));
                    }
                };
                if let Err(e) = self.notifier.reconfigure(&notify_config(&new)) {
                    self.reload_ok.set(&[], 0.0);
                    tracing::error!(error = %e, "config reload failed: notification receivers cannot be built; keeping the running config");
                    return Err(ReloadError::Receivers(e.to_string()));
                }
                self.exposition
                    .set_max_series_per_family(new.limits.max_series_per_family);
                self.credentials.store(Arc::new(credentials));
                self.ingest.apply_config(ingest_settings, &new.ingest);
                self.queries.apply(&new.query);
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
    pub fn readiness(&self) -> Result<(), NotReady> {
        self.notifier
            .readiness()
            .map_err(|e| NotReady::Outbox(e.to_string()))?;
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
            Err(NotReady::Collectors(pending.join(", ")))
        }
    }
}

/// Why [`App::try_start`] could not build the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A `web:` secret could not be resolved (it changed since the config was checked).
    #[error("invalid web: section: {0}")]
    Web(FieldError),
    /// An `ingest:` secret could not be resolved.
    #[error("invalid ingest: section: {0}")]
    Ingest(FieldError),
    /// A receiver could not be built (a CA file changed since the config was checked).
    #[error("cannot build the notification receivers: {0}")]
    Receivers(String),
}

/// Why a reload was refused; the running config stays.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid, located in its file.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A `web:` or `ingest:` secret of the new config could not be resolved.
    #[error("{0}")]
    Secrets(FieldError),
    /// The new notification receivers cannot be built.
    #[error("{0}")]
    Receivers(String),
    /// The reload task itself failed.
    #[error("{0}")]
    Task(String),
}

/// Why `/readyz` answers 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The notification outbox cannot persist.
    #[error("{0}")]
    Outbox(String),
    /// Collectors that have not completed a run yet (comma-separated).
    #[error("collectors not yet run: {0}")]
    Collectors(String),
}

/// The notify section with the top-level `external_url` filled in.
fn notify_config(c: &Config) -> sentinel_notify::NotifyConfig {
    let mut n = c.notify.clone();
    if n.external_url.is_empty() {
        n.external_url = c.external_url.clone().unwrap_or_default();
    }
    n
}

/// Brings pushed events to `/metrics` and the rules at once instead of at the next tick
/// (up to an interval later). One task takes the changed families, refreshes the
/// snapshot (which writes the changed registry sources into the store) and calls
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

#[cfg(test)]
mod host_name_tests {
    #[test]
    fn host_name_matches_the_kernel_hostname_via_the_safe_wrapper() {
        let name = super::host_name();
        assert!(!name.is_empty());
        if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let k = k.trim();
            assert_eq!(name, if k.is_empty() { "localhost" } else { k });
        }
    }
}
