//! Events ingest API, `POST /api/v1/events`: the application's recovery layer, quality
//! scorers and scheduled jobs push typed events (see `events.rs` and
//! `schemas/events.schema.json`) that become the `recovery_*`, `quality_score` and
//! `sentinel_heartbeat_*` metrics in the shared registry.
//!
//! This module is the domain: parsing and validating a batch (`events.rs`), who may push
//! (`auth.rs`), rate limits and label caps (`limits.rs`), and the metrics events feed.
//! The HTTP handler that reads the request and answers is `http/ingest.rs`; `App` holds
//! the [`Ingest`] state and reconfigures it on reload.

pub mod auth;
pub mod events;
pub mod heartbeat;
pub mod limits;
pub mod quality;
pub mod recovery;

use crate::config::FieldError;
use crate::metrics::registry::{CounterVec, Registry};
use arc_swap::ArcSwap;
use events::{Event, Kind, Outcome};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::config::ingest::{IngestConfig, RateLimitConfig};

/// The ingest credentials of a validated config.
fn auth_of(c: &IngestConfig) -> Result<auth::IngestAuth, FieldError> {
    let secrets = c.secrets()?;
    Ok(auth::IngestAuth {
        token: secrets.token,
        hmac_secret: secrets.hmac_secret,
        require_timestamp: c.hmac_require_timestamp,
        max_skew_seconds: c.hmac_max_skew.get().as_secs_f64(),
    })
}

/// The parts of the config a request needs, resolved once per (re)load.
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    pub(crate) auth: auth::IngestAuth,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_events: usize,
    pub(crate) max_label_value_length: usize,
}

impl Settings {
    /// Resolves the settings of a config, or says which field is wrong.
    pub(crate) fn resolve(c: &IngestConfig) -> Result<Self, FieldError> {
        Ok(Settings {
            enabled: c.enabled,
            auth: auth_of(c)?,
            max_body_bytes: c.max_body_bytes,
            max_events: c.max_events_per_batch,
            max_label_value_length: c.max_label_value_length,
        })
    }
}

/// The ingest API's long-lived state: settings, limits and the metrics it feeds.
pub struct Ingest {
    settings: ArcSwap<Settings>,
    limiter: limits::RateLimiter,
    caps: limits::LabelCaps,
    recovery: recovery::RecoveryMetrics,
    quality: quality::QualityMetrics,
    heartbeat: heartbeat::HeartbeatMetrics,
    requests: Arc<CounterVec>,
    events: Arc<CounterVec>,
}

/// Answers that are counted under their status code.
const CODES: &[u16] = &[200, 400, 401, 403, 404, 413, 415, 429];
const RESULTS: &[&str] = &["accepted", "rejected", "rate_limited"];

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Ingest {
    pub fn new(registry: &Registry, config: &IngestConfig) -> Result<Self, FieldError> {
        let settings = Settings::resolve(config)?;
        let requests = registry.counter_vec(
            "sentinel_ingest_requests_total",
            "Requests to the events ingest API by HTTP status code.",
            &["code"],
        );
        for c in CODES {
            requests.touch_series(&[&c.to_string()]);
        }
        let events = registry.counter_vec(
            "sentinel_ingest_events_total",
            "Ingested events by type and result: accepted, rejected (the whole batch failed validation), rate_limited.",
            &["type", "result"],
        );
        for k in Kind::ALL {
            for r in RESULTS {
                events.touch_series(&[k.as_str(), r]);
            }
        }
        Ok(Ingest {
            settings: ArcSwap::from_pointee(settings),
            limiter: limits::RateLimiter::new(config.rate_limit.clone()),
            caps: limits::LabelCaps::new(registry, config.max_values_per_label),
            recovery: recovery::RecoveryMetrics::register(registry),
            quality: quality::QualityMetrics::register(registry, &config.quality_buckets),
            heartbeat: heartbeat::HeartbeatMetrics::register(registry),
            requests,
            events,
        })
    }

    /// Takes a reloaded config into use, with its settings resolved beforehand (so a
    /// reload can refuse the whole new config before it changes anything).
    pub(crate) fn apply_config(&self, settings: Settings, config: &IngestConfig) {
        self.settings.store(Arc::new(settings));
        self.limiter.reconfigure(config.rate_limit.clone());
        self.caps.set_max_values(config.max_values_per_label);
        if config.quality_buckets != self.quality.buckets() {
            tracing::warn!("ingest.quality_buckets takes effect on restart");
        }
    }

    /// Applies a validated batch; it cannot fail.
    pub fn apply(&self, events: &[Event<'_>], now: f64) {
        let mut counts = [0u64; 4];
        for ev in events {
            counts[ev.kind().index()] += 1;
            match ev {
                Event::Operation(o) => {
                    let op = self.caps.fold("operation", &o.operation);
                    let class = match (&o.error_class, o.outcome) {
                        // A first-try success had no error to classify.
                        (Some(c), Outcome::Recovered | Outcome::Failed) => {
                            Some(self.caps.fold("error_class", c))
                        }
                        _ => None,
                    };
                    self.recovery.operation(o, op, class);
                }
                Event::CircuitBreaker(b) => {
                    let name = self.caps.fold("breaker", &b.name);
                    self.recovery.breaker(b, name, now);
                }
                Event::Quality(q) => {
                    let workflow = self.caps.fold("workflow", &q.workflow);
                    let metric = self.caps.fold("metric", &q.metric);
                    self.quality.record(q, workflow, metric);
                }
                Event::Heartbeat(h) => {
                    let name = self.caps.fold("name", &h.name);
                    self.heartbeat.record(h, name, now);
                }
            }
        }
        self.count(&counts, "accepted");
    }

    /// The settings of the running config.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The per-client request and event rate limits.
    pub fn limiter(&self) -> &limits::RateLimiter {
        &self.limiter
    }

    /// Counts one answer under its status code.
    pub fn count_request(&self, code: &str) {
        self.requests.inc(&[code]);
    }

    /// Counts a rejected event whose type could not be read.
    pub fn count_unknown_rejected(&self) {
        self.events.inc(&["unknown", "rejected"]);
    }

    /// Counts events by type (indexed by `Kind::index`) under `result`.
    pub fn count(&self, counts: &[u64; 4], result: &str) {
        for k in Kind::ALL {
            let n = counts[k.index()];
            if n > 0 {
                self.events.add(&[k.as_str(), result], n as f64);
            }
        }
    }
}

/// Name prefixes of the metric families a batch's events change (the rule groups that
/// read them are evaluated at once; see `App::inputs_changed`).
pub fn changed_families(events: &[Event<'_>]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = events
        .iter()
        .map(|e| match e {
            Event::Operation(_) => "recovery_",
            Event::CircuitBreaker(_) => "recovery_circuit_breaker_",
            Event::Quality(_) => "quality_",
            Event::Heartbeat(_) => "sentinel_heartbeat_",
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
