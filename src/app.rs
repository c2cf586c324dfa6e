//! The running sidecar: the current config and the long-lived parts built from it,
//! shared by the HTTP handlers and the signal handlers. Reload lives here: a bad new
//! config is refused, the old one keeps running, and
//! `sentinel_config_last_reload_successful` says which happened.

use crate::collect::{self, BuildContext, Runner};
use crate::config::{self, Config, ConfigSource};
use crate::http::config::Credentials;
use crate::metrics::exposition::Exposition;
use crate::metrics::registry::{GaugeVec, Registry};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct App {
    config: ArcSwap<Config>,
    pub rules: Arc<sentinel_rules::engine::RuleEngine>,
    source: ConfigSource,
    pub registry: Registry,
    pub exposition: Arc<Exposition>,
    pub runner: Arc<Runner>,
    outputs: collect::OutputQueue,
    credentials: ArcSwap<Credentials>,
    reload_ok: Arc<GaugeVec>,
    reload_time: Arc<GaugeVec>,
    reload_lock: tokio::sync::Mutex<()>,
    pub started: SystemTime,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// (Re)loads the rule engine from the config; a failure keeps the running rules.
fn load_rules(engine: &sentinel_rules::engine::RuleEngine, cfg: &Config) {
    let settings = sentinel_rules::engine::EngineSettings {
        evaluation_interval: cfg.rules.evaluation_interval.get(),
        external_labels: cfg.external_labels.clone(),
        external_url: cfg.external_url.clone().unwrap_or_default(),
        data_dir: Some(cfg.data_dir.clone()),
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
    pub fn start(config: Config, source: ConfigSource) -> Arc<Self> {
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
        let store = Arc::new(sentinel_rules::store::Store::default());
        exposition.add_sink(store.clone());
        let rules = sentinel_rules::engine::RuleEngine::new(
            store,
            Arc::new(sentinel_rules::engine::LoggingSink),
            &registry,
        );
        load_rules(&rules, &config);
        tokio::spawn(rules.clone().run());
        let app = Arc::new(App {
            rules,
            credentials: ArcSwap::from_pointee(config.web.credentials()),
            config: ArcSwap::from_pointee(config),
            source,
            registry,
            exposition,
            runner,
            outputs: collect::OutputQueue::default(),
            reload_ok,
            reload_time,
            reload_lock: tokio::sync::Mutex::new(()),
            started: SystemTime::now(),
        });
        app.apply_collectors();
        app
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

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    /// Re-reads the config. On error the running config stays and the reason is returned.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
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
                self.exposition
                    .set_max_series_per_family(new.limits.max_series_per_family);
                self.credentials.store(Arc::new(new.web.credentials()));
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

    /// Ready once the config is loaded (it is, or we would not exist) and every
    /// collector has completed a run.
    pub fn readiness(&self) -> Result<(), String> {
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
