//! Collectors and the framework that runs them. Each collector is one module behind the
//! [`Collector`] trait; [`build`] is the only place that names them all. The framework,
//! not the collector, times each run, enforces its timeout, records
//! `sentinel_collector_success` / `_duration_seconds`, and hands the families to the
//! exposition. One slow or failing collector never delays another: each has its own task.

pub mod comfyui;
pub mod gpu;
pub mod probes;
pub mod process;
pub mod quality;
pub mod system;

use crate::config::{Config, Dur};
use crate::metrics::exposition::Exposition;
use crate::metrics::registry::{GaugeVec, Registry};
use crate::metrics::MetricFamily;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

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

/// A collector together with its schedule.
pub struct CollectorSpec {
    pub collector: Arc<dyn Collector>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The config section it was built from; a reload restarts it only if this changed.
    pub fingerprint: String,
}

impl CollectorSpec {
    pub fn new<C: Collector, S: Serialize>(
        collector: C,
        section: &S,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        CollectorSpec {
            collector: Arc::new(collector),
            interval,
            timeout,
            fingerprint: serde_json::to_string(section).unwrap_or_default(),
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

/// A ComfyUI output image as listed in `/history` outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputImage {
    pub prompt_id: String,
    pub filename: String,
    pub subfolder: String,
    /// `output` or `temp`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A bounded hand-off queue of new output images: when full, the oldest are dropped
/// and counted, so a stalled consumer never grows memory.
#[derive(Clone, Default)]
pub struct OutputQueue {
    inner: Arc<Mutex<std::collections::VecDeque<OutputImage>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl OutputQueue {
    pub const CAPACITY: usize = 1024;

    pub fn push(&self, img: OutputImage) {
        let mut q = self.inner.lock();
        if q.len() >= Self::CAPACITY {
            q.pop_front();
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(img);
    }

    /// Takes up to `max` images, oldest first.
    pub fn take(&self, max: usize) -> Vec<OutputImage> {
        let mut q = self.inner.lock();
        let n = max.min(q.len());
        q.drain(..n).collect()
    }

    /// Counts images a producer dropped before pushing (it kept only the newest
    /// [`CAPACITY`](Self::CAPACITY), as the queue would have).
    pub fn count_dropped(&self, n: u64) {
        self.dropped
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `true`, `false` or `auto` (on when the hardware or library is there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Toggle {
    #[default]
    Auto,
    On,
    Off,
}

impl Serialize for Toggle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Auto => s.serialize_str("auto"),
            Toggle::On => s.serialize_bool(true),
            Toggle::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(true) => Ok(Toggle::On),
            Raw::B(false) => Ok(Toggle::Off),
            Raw::S(s) if s == "auto" => Ok(Toggle::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"auto\", got {s:?}"
            ))),
        }
    }
}

/// The `collectors:` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    pub system: system::SystemConfig,
    pub gpu: gpu::GpuConfig,
    pub quality: quality::QualityConfig,
    pub probes: probes::ProbesConfig,
    pub comfyui: comfyui::ComfyuiConfig,
}

impl CollectorsConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.system
            .validate()
            .map_err(|(p, m)| (format!("collectors.system.{p}"), m))?;
        self.gpu
            .validate()
            .map_err(|(p, m)| (format!("collectors.gpu.{p}"), m))?;
        self.quality
            .validate()
            .map_err(|(p, m)| (format!("collectors.quality.{p}"), m))?;
        self.probes
            .validate()
            .map_err(|(p, m)| (format!("collectors.probes.{p}"), m))?;
        self.comfyui
            .validate()
            .map_err(|(p, m)| (format!("collectors.comfyui.{p}"), m))?;
        Ok(())
    }

    /// Writes every unset timeout as its effective value (`check --print` shows it).
    pub fn resolve_timeouts(&mut self) {
        self.system.timeout = Some(Dur(self.system.timeout()));
        self.gpu.timeout = Some(Dur(self.gpu.timeout()));
        self.quality.timeout = Some(Dur(self.quality.timeout()));
        self.quality.fetch_timeout = Some(Dur(self.quality.fetch_timeout()));
        self.probes.timeout = Some(Dur(self.probes.timeout()));
        self.comfyui.timeout = Some(Dur(self.comfyui.timeout()));
    }
}

/// The timeout of a run: the explicit one, or else `min(default, interval)`, as
/// Prometheus derives `scrape_timeout`, so a short interval never needs a timeout too.
pub fn resolve_timeout(explicit: Option<Dur>, default: Duration, interval: Duration) -> Duration {
    explicit
        .map(Dur::get)
        .unwrap_or_else(|| default.min(interval))
}

/// Checks an interval/timeout pair; shared by every collector's `validate`. Only an
/// explicit timeout can be wrong: an unset one is `min(default, interval)`.
pub fn validate_schedule(
    interval: Duration,
    timeout: Option<Dur>,
    default: Duration,
) -> Result<(), (String, String)> {
    if interval < Duration::from_millis(100) {
        return Err(("interval".into(), "must be at least 100ms".into()));
    }
    if let Some(t) = timeout {
        if t.get().is_zero() || t.get() > interval {
            return Err((
                "timeout".into(),
                format!(
                    "must be more than 0s and at most the interval ({}); unset, it is the \
                     shorter of {} and the interval",
                    crate::config::format_duration(interval),
                    crate::config::format_duration(default),
                ),
            ));
        }
    }
    Ok(())
}

/// The one list of collectors: builds every enabled one from the config.
pub fn build(cfg: &Config, ctx: &BuildContext) -> Vec<CollectorSpec> {
    let mut out = Vec::new();
    let c = &cfg.collectors;
    if c.system.enabled {
        out.push(CollectorSpec::new(
            system::SystemCollector::new(&c.system),
            &c.system,
            c.system.interval.get(),
            c.system.timeout(),
        ));
    }
    if let Some(gpu) = gpu::GpuCollector::from_config(&c.gpu, ctx) {
        out.push(CollectorSpec::new(
            gpu,
            &c.gpu,
            c.gpu.interval.get(),
            c.gpu.timeout(),
        ));
    }
    if let Some(comfyui) = comfyui::build(&c.comfyui, ctx) {
        out.push(CollectorSpec::new(
            comfyui,
            &comfyui::fingerprint(&c.comfyui),
            c.comfyui.interval.get(),
            comfyui::run_timeout(&c.comfyui),
        ));
    }
    // The image checks fetch from the workflow collector's ComfyUI unless told otherwise.
    let comfyui_url = c.comfyui.url.as_str();
    if let Some(q) = quality::QualityCollector::from_config(&c.quality, ctx, comfyui_url) {
        out.push(CollectorSpec::new(
            q,
            &(&c.quality, comfyui_url),
            c.quality.interval.get(),
            c.quality.timeout(),
        ));
    }
    if let Some(p) = probes::ProbesCollector::from_config(&c.probes) {
        out.push(CollectorSpec::new(
            p,
            &c.probes.fingerprint(),
            c.probes.interval.get(),
            c.probes.timeout(),
        ));
    }
    out
}

/// The last outcome of one collector, for `/readyz` and the status page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectorStatus {
    pub runs: u64,
    pub last_run: Option<SystemTime>,
    pub last_duration_seconds: f64,
    pub success: bool,
    pub last_error: Option<String>,
    pub interval_seconds: f64,
    /// The watched service's own state (see [`Collector::target`]).
    pub target: Option<TargetState>,
}

/// Runs collectors, each in its own task, and applies config changes.
pub struct Runner {
    exposition: Arc<Exposition>,
    status: Arc<Mutex<BTreeMap<&'static str, CollectorStatus>>>,
    duration: Arc<GaugeVec>,
    success: Arc<GaugeVec>,
    tasks: Mutex<BTreeMap<&'static str, (String, JoinHandle<()>)>>,
}

impl Runner {
    pub fn new(exposition: Arc<Exposition>) -> Arc<Self> {
        let r = exposition.registry();
        let duration = r.gauge_vec(
            "sentinel_collector_duration_seconds",
            "Duration of the collector's last run.",
            &["collector"],
        );
        let success = r.gauge_vec(
            "sentinel_collector_success",
            "Whether the collector's last run succeeded (1) or failed (0).",
            &["collector"],
        );
        Arc::new(Runner {
            exposition,
            status: Arc::new(Mutex::new(BTreeMap::new())),
            duration,
            success,
            tasks: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts new or changed collectors and stops removed or changed ones; unchanged
    /// ones keep running with their state.
    pub fn apply(&self, specs: Vec<CollectorSpec>) {
        let mut tasks = self.tasks.lock();
        let wanted: Vec<&'static str> = specs.iter().map(|s| s.collector.name()).collect();
        let gone: Vec<&'static str> = tasks
            .keys()
            .filter(|n| !wanted.contains(n))
            .copied()
            .collect();
        for name in gone {
            if let Some((_, h)) = tasks.remove(name) {
                h.abort();
            }
            self.exposition.clear(name);
            self.status.lock().remove(name);
            self.duration.remove(&[name]);
            self.success.remove(&[name]);
            tracing::info!(collector = name, "collector stopped");
        }
        for spec in specs {
            let name = spec.collector.name();
            if let Some((fp, _)) = tasks.get(name) {
                if *fp == spec.fingerprint {
                    continue;
                }
            }
            if let Some((_, h)) = tasks.remove(name) {
                h.abort();
            }
            let fp = spec.fingerprint.clone();
            self.status.lock().insert(
                name,
                CollectorStatus {
                    interval_seconds: spec.interval.as_secs_f64(),
                    ..Default::default()
                },
            );
            let handle = tokio::spawn(run_loop(
                spec,
                self.exposition.clone(),
                self.status.clone(),
                self.duration.clone(),
                self.success.clone(),
            ));
            tasks.insert(name, (fp, handle));
            tracing::info!(collector = name, "collector started");
        }
    }

    pub fn statuses(&self) -> BTreeMap<&'static str, CollectorStatus> {
        self.status.lock().clone()
    }

    /// True once every running collector has finished at least one run.
    pub fn all_ran_once(&self) -> bool {
        self.status.lock().values().all(|s| s.runs > 0)
    }

    pub fn stop_all(&self) {
        for (_, (_, h)) in std::mem::take(&mut *self.tasks.lock()) {
            h.abort();
        }
    }
}

async fn run_loop(
    spec: CollectorSpec,
    exposition: Arc<Exposition>,
    status: Arc<Mutex<BTreeMap<&'static str, CollectorStatus>>>,
    duration: Arc<GaugeVec>,
    success: Arc<GaugeVec>,
) {
    let name = spec.collector.name();
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A run that outlived its timeout keeps its task here; we do not start another
    // until it ends, so a hung source cannot pile up tasks or blocked threads.
    let mut straggler: Option<JoinHandle<Result<Vec<MetricFamily>, CollectError>>> = None;
    let mut last_logged_error: Option<String> = None;
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let outcome: Result<Option<Vec<MetricFamily>>, String> = match straggler.take() {
            Some(h) if !h.is_finished() => {
                straggler = Some(h);
                Err("previous run still in progress".to_string())
            }
            _ => {
                let c = spec.collector.clone();
                let mut handle = tokio::spawn(async move { c.collect().await });
                match tokio::time::timeout(spec.timeout, &mut handle).await {
                    Ok(Ok(Ok(families))) => Ok(Some(families)),
                    Ok(Ok(Err(CollectError::NoData(why)))) => {
                        tracing::debug!(collector = name, %why, "no data");
                        Ok(None)
                    }
                    Ok(Ok(Err(CollectError::Failed(e)))) => Err(format!("{e:#}")),
                    Ok(Err(join)) => Err(format!("collector panicked: {join}")),
                    Err(_) => {
                        handle.abort();
                        straggler = Some(handle);
                        Err(format!("timed out after {:?}", spec.timeout))
                    }
                }
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let ok = outcome.is_ok();
        match outcome {
            Ok(Some(families)) => exposition.set(name, families),
            Ok(None) => exposition.clear(name),
            Err(ref e) => {
                exposition.clear(name);
                // Log a failure once when it starts or changes, not on every run.
                if last_logged_error.as_deref() != Some(e) {
                    tracing::warn!(collector = name, error = %e, "collector failed");
                    last_logged_error = Some(e.clone());
                }
            }
        }
        if ok && last_logged_error.take().is_some() {
            tracing::info!(collector = name, "collector recovered");
        }
        duration.set(&[name], elapsed);
        success.set(&[name], if ok { 1.0 } else { 0.0 });
        // Encode before publishing the status: once /readyz says a collector ran, the
        // snapshot already holds that run.
        exposition.refresh();
        if let Some(s) = status.lock().get_mut(name) {
            s.runs += 1;
            s.last_run = Some(SystemTime::now());
            s.last_duration_seconds = elapsed;
            s.success = ok;
            s.last_error = last_logged_error.clone();
            s.target = spec.collector.target();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricFamily;

    struct Hangs;
    #[async_trait::async_trait]
    impl Collector for Hangs {
        fn name(&self) -> &'static str {
            "hangs"
        }
        async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
            // Blocks a thread the way a dead NFS statvfs would.
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(3600)))
                .await
                .ok();
            Ok(vec![])
        }
    }

    struct Counts(std::sync::atomic::AtomicU64);
    #[async_trait::async_trait]
    impl Collector for Counts {
        fn name(&self) -> &'static str {
            "counts"
        }
        async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![
                MetricFamily::gauge("runs", "r").with::<&str, &str>(&[], n as f64)
            ])
        }
    }

    struct Fails;
    #[async_trait::async_trait]
    impl Collector for Fails {
        fn name(&self) -> &'static str {
            "fails"
        }
        async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
            Err(CollectError::Failed(anyhow::anyhow!("source down")))
        }
    }

    fn spec(c: impl Collector, interval_ms: u64, timeout_ms: u64) -> CollectorSpec {
        CollectorSpec::new(
            c,
            &"t",
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
        )
    }

    #[test]
    fn a_hung_collector_delays_neither_others_nor_the_snapshot() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(hung_collector_scenario());
        // The hung blocking thread never returns; do not wait for it.
        rt.shutdown_background();
    }

    async fn hung_collector_scenario() {
        let exposition = Exposition::new(Registry::new(), 1000);
        let runner = Runner::new(exposition.clone());
        runner.apply(vec![
            spec(Hangs, 100, 50),
            spec(Counts(Default::default()), 100, 50),
            spec(Fails, 100, 50),
        ]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let st = runner.statuses();
        // The healthy collector kept its pace (about 12 runs; any clearly-more-than-one
        // count proves it was not serialized behind the hung one).
        assert!(st["counts"].runs >= 4, "{st:?}");
        assert!(st["counts"].success);
        assert!(!st["hangs"].success);
        assert!(
            st["hangs"]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("timed out"),
            "{st:?}"
        );
        assert!(!st["fails"].success);
        let text = String::from_utf8(exposition.current().text.to_vec()).unwrap();
        assert!(
            text.contains("sentinel_collector_success{collector=\"hangs\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sentinel_collector_success{collector=\"counts\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sentinel_collector_success{collector=\"fails\"} 0"),
            "{text}"
        );
        assert!(text.contains("\nruns "), "{text}");
        runner.stop_all();
    }

    #[tokio::test]
    async fn apply_keeps_unchanged_collectors_running() {
        let exposition = Exposition::new(Registry::new(), 1000);
        let runner = Runner::new(exposition.clone());
        runner.apply(vec![spec(Counts(Default::default()), 100, 50)]);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let before = runner.statuses()["counts"].runs;
        // Same fingerprint: not restarted, so its run count keeps growing.
        runner.apply(vec![spec(Counts(Default::default()), 100, 50)]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(runner.statuses()["counts"].runs > before);
        // Removed: its status and series go.
        runner.apply(vec![]);
        assert!(runner.statuses().is_empty());
        runner.stop_all();
    }

    /// Parses `collectors.<kind>` from YAML, validates it and returns its resolved timeout.
    fn schedule_of(kind: &str, body: &str) -> Result<Duration, (String, String)> {
        let yaml = format!("{kind}: {{ {body} }}");
        let mut c: CollectorsConfig = serde_yaml_ng::from_str(&yaml).expect("parses");
        c.validate()?;
        c.resolve_timeouts();
        c.validate().expect("resolved timeouts stay valid");
        Ok(match kind {
            "system" => c.system.timeout(),
            "gpu" => c.gpu.timeout(),
            "quality" => c.quality.timeout(),
            "probes" => c.probes.timeout(),
            "comfyui" => c.comfyui.timeout(),
            _ => unreachable!(),
        })
    }

    const KINDS: [(&str, u64); 5] = [
        ("system", 4),
        ("gpu", 4),
        ("quality", 9),
        ("probes", 10),
        ("comfyui", 2),
    ];

    #[test]
    fn a_short_interval_without_a_timeout_is_accepted_for_every_collector() {
        for (kind, _) in KINDS {
            assert_eq!(
                schedule_of(kind, "interval: 1s"),
                Ok(Duration::from_secs(1)),
                "{kind}: unset timeout must be min(default, interval)"
            );
            assert_eq!(
                schedule_of(kind, "interval: 100ms"),
                Ok(Duration::from_millis(100)),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_unset_timeout_keeps_its_default_under_a_long_interval() {
        for (kind, default) in KINDS {
            assert_eq!(
                schedule_of(kind, "interval: 1m"),
                Ok(Duration::from_secs(default)),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_explicit_timeout_longer_than_the_interval_is_still_a_located_error() {
        for (kind, _) in KINDS {
            let err = schedule_of(kind, "interval: 1s, timeout: 2s").unwrap_err();
            assert_eq!(err.0, format!("collectors.{kind}.timeout"), "{kind}");
            assert!(
                err.1.contains("at most the interval (1s)"),
                "{kind}: {}",
                err.1
            );
            assert_eq!(
                schedule_of(kind, "interval: 2s, timeout: 1500ms"),
                Ok(Duration::from_millis(1500)),
                "{kind}"
            );
        }
    }

    #[test]
    fn quality_fetch_timeout_follows_a_short_run_timeout() {
        let mut c: CollectorsConfig = serde_yaml_ng::from_str("quality: { interval: 1s }").unwrap();
        c.validate().unwrap();
        assert_eq!(c.quality.fetch_timeout(), Duration::from_secs(1));
        c.resolve_timeouts();
        assert_eq!(c.quality.fetch_timeout, Some(Dur::secs(1)));
        let c: CollectorsConfig =
            serde_yaml_ng::from_str("quality: { interval: 10s, timeout: 2s, fetch_timeout: 3s }")
                .unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "collectors.quality.fetch_timeout"
        );
    }

    #[test]
    fn probe_targets_default_inside_a_short_derived_run_timeout() {
        let mut c: CollectorsConfig = serde_yaml_ng::from_str(
            "probes: { interval: 1s, targets: [{ name: a, tcp: '127.0.0.1:1' }] }",
        )
        .unwrap();
        c.validate().unwrap();
        c.resolve_timeouts();
        assert_eq!(c.probes.timeout, Some(Dur::secs(1)));
    }
}
