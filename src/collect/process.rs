//! The sidecar's own `process_*` metrics, with the names and meanings of the Prometheus
//! client libraries (CPU, memory, fds, start time), read from `/proc/self`.

use super::{CollectError, Collector};
use crate::metrics::MetricFamily;

pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

fn read() -> anyhow::Result<Vec<MetricFamily>> {
    let me = procfs::process::Process::myself()?;
    let stat = me.stat()?;
    let tps = procfs::ticks_per_second() as f64;
    let page = procfs::page_size() as f64;
    let boot = procfs::boot_time_secs()? as f64;
    let mut out = vec![
        MetricFamily::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .with::<&str, &str>(&[], (stat.utime + stat.stime) as f64 / tps),
        MetricFamily::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .with::<&str, &str>(&[], stat.rss as f64 * page),
        MetricFamily::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )
        .with::<&str, &str>(&[], stat.vsize as f64),
        MetricFamily::gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .with::<&str, &str>(&[], boot + stat.starttime as f64 / tps),
        MetricFamily::gauge("process_threads", "Number of OS threads in the process.")
            .with::<&str, &str>(&[], stat.num_threads as f64),
    ];
    if let Ok(n) = me.fd_count() {
        out.push(
            MetricFamily::gauge("process_open_fds", "Number of open file descriptors.")
                .with::<&str, &str>(&[], n as f64),
        );
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(v) = limits.max_open_files.soft_limit {
            out.push(
                MetricFamily::gauge(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                )
                .with::<&str, &str>(&[], v as f64),
            );
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Collector for ProcessCollector {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .map_err(CollectError::Failed)
    }
}

/// What a reload compares: the collector has no config, so it never restarts.
pub fn fingerprint() -> &'static str {
    "process"
}

/// The list's entry for this collector (see `collect::COLLECTORS`): always on, every 5 s.
pub fn spec(
    _c: &super::CollectorsConfig,
    _ctx: &super::BuildContext,
) -> Option<super::CollectorSpec> {
    Some(super::CollectorSpec::new(
        ProcessCollector::new(),
        &fingerprint(),
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(4),
    ))
}
