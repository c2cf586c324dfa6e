//! The contract between a collector and the framework: the [`Collector`] trait, what a
//! run may fail with ([`CollectError`]), and what the list hands the runner
//! ([`CollectorSpec`]). A collector implements one method; the runner (`runner.rs`)
//! times it, enforces its timeout and records its outcome.

use super::comfyui::output::OutputQueue;
use crate::metrics::registry::Registry;
use crate::metrics::MetricFamily;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why a run produced no families.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Nothing to report here (no GPU, no PSI in this kernel): not a failure.
    #[error("no data: {0}")]
    NoData(String),
    /// The run failed; the collector's families are withdrawn until it succeeds again.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// One source of metrics, collected on its own schedule.
#[async_trait::async_trait]
pub trait Collector: Send + Sync + 'static {
    /// Stable name, used as the `collector` label.
    fn name(&self) -> &'static str;
    /// One collection. Blocking work (file reads, FFI) belongs in `spawn_blocking`.
    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError>;
    /// The state of the service this collector watches, for collectors that watch one
    /// (ComfyUI): a run can succeed while its target is down.
    fn target(&self) -> Option<TargetState> {
        None
    }
}

/// Whether a collector's target answered its last run, and why not.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetState {
    /// The target as shown (a URL without credentials).
    pub target: String,
    pub up: bool,
    /// Why the last run could not read the target; none while it is up.
    pub last_error: Option<String>,
}

/// A collector together with its schedule, as each collector's `spec` function builds it.
pub struct CollectorSpec {
    pub collector: Arc<dyn Collector>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The config section it was built from; a reload restarts it only if this changed.
    pub fingerprint: String,
}

impl CollectorSpec {
    /// `fingerprint` is whatever identifies the config the collector was built from
    /// (usually its config section, plus a digest of any secrets read from files).
    pub fn new<C: Collector, S: Serialize>(
        collector: C,
        fingerprint: &S,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        CollectorSpec {
            collector: Arc::new(collector),
            interval,
            timeout,
            fingerprint: serde_json::to_string(fingerprint).unwrap_or_default(),
        }
    }
}

/// What collectors may need from the rest of the sidecar when built.
#[derive(Clone)]
pub struct BuildContext {
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// New ComfyUI output images, handed from the workflow collector to the quality
    /// collector's image checks.
    pub outputs: OutputQueue,
}
