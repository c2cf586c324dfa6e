//! Runs each collector in its own task on its own interval. The framework, not the
//! collector, times each run, enforces its timeout, records
//! `sentinel_collector_success` / `_duration_seconds`, and writes the families into the
//! store (through the exposition, which encodes them for `/metrics`). One slow or failing collector never delays another. A reload hands
//! [`Runner::apply`] the new list; collectors whose fingerprint did not change keep running.

use super::{CollectError, CollectorSpec, TargetState};
use crate::metrics::registry::GaugeVec;
use crate::metrics::MetricFamily;
use parking_lot::Mutex;
use sentinel_store::exposition::Exposition;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::task::JoinHandle;

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
    use crate::collect::Collector;
    use crate::metrics::registry::Registry;
    use std::time::Duration;

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
        let exposition = Exposition::new(Registry::new(), 1000, Default::default());
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
        let exposition = Exposition::new(Registry::new(), 1000, Default::default());
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
}
