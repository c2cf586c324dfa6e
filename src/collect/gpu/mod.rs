//! GPU collector: per-device NVIDIA GPU metrics from NVML, loaded at run time.
//!
//! No NVML library, no driver or no GPU is a normal state, not a failure: the collector
//! reports `gpu_nvml_up 0` and `gpu_devices 0`, logs it once, stays successful, and
//! retries loading NVML at a slow pace (`init_retry_interval`) so that a driver loaded
//! later is picked up without a restart (nvidia_gpu_exporter#110). A value a device
//! cannot give is left out, never reported as 0; a device that fails mid-run loses its
//! series for that run (`gpu_device_up{gpu} 0`) while the others report.
//!
//! Neighbours: `backend.rs` is the seam (the [`GpuBackend`] trait and the readings, in
//! NVML's units); `nvml.rs` is the real backend; `fake.rs` the tests' backend. This file
//! owns every conversion to base units and every metric name.
//!
//! Every family is listed once, with its help text, in [`FAMILIES`]; per-device series
//! carry `gpu` (NVML index), `uuid` and `name`. Meanings follow dcgm-exporter and
//! nvidia_gpu_exporter, names follow Prometheus base units (ratio, bytes, watts, hertz).

mod backend;
#[cfg(test)]
mod fake;
mod nvml;

pub use backend::{BackendError, GpuBackend};

use super::{BuildContext, CollectError, Collector, Toggle};
use crate::metrics::{MetricFamily, MetricType};
use backend::{DeviceReading, MemoryReading, SystemReading, Want, XidEvent};
use parking_lot::Mutex;
use sentinel_base::config::Dur;
use sentinel_base::config::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `collectors.gpu`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// `auto` (default): collect when NVML loads, report `gpu_nvml_up 0` quietly when it
    /// does not. `true`: the same, but a missing NVML is logged as a warning. `false`: off.
    pub enabled: Toggle,
    /// How often the GPUs are read.
    pub interval: Dur,
    /// Longest one read may take before the run counts as failed. Unset:
    /// `min(4s, interval)`.
    pub timeout: Option<Dur>,
    /// Path or file name of the NVML library; unset: the dynamic loader's search for
    /// `libnvidia-ml.so.1`.
    pub library_path: Option<PathBuf>,
    /// How long to wait before trying to load NVML again while it is unavailable.
    pub init_retry_interval: Dur,
    /// Export per-process GPU memory (`gpu_process_memory_used_bytes`).
    pub processes: bool,
    /// Most per-process series per GPU, largest users first; the rest are summed into one
    /// `pid="other"` series.
    pub max_processes_per_gpu: usize,
    /// procfs mount point used to name processes from `/proc/<pid>/comm`. NVML reports
    /// host pids, so in a container this needs the host's pid namespace (`pid: host`).
    pub procfs_path: PathBuf,
    /// Count critical XID errors through an NVML event set registered at start-up.
    pub xid_events: bool,
    /// Export PCIe throughput; NVML samples each direction over ~20 ms, so this adds
    /// ~40 ms per GPU to every run.
    pub pcie_throughput: bool,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            enabled: Toggle::Auto,
            interval: Dur::secs(5),
            timeout: None,
            library_path: None,
            init_retry_interval: Dur::secs(300),
            processes: true,
            max_processes_per_gpu: 32,
            procfs_path: "/proc".into(),
            xid_events: true,
            pcie_throughput: true,
        }
    }
}

/// Bounds on `max_processes_per_gpu`.
const MAX_PROCESSES_LIMIT: usize = 1024;
/// Distinct XID values tracked per device; further ones count under `xid="other"`.
const MAX_XIDS_PER_DEVICE: usize = 32;
/// XID events taken from the driver per run.
const MAX_XID_EVENTS_PER_RUN: usize = 256;

impl GpuConfig {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

    /// The run's timeout: the explicit one, or `min(4s, interval)`.
    pub fn timeout(&self) -> std::time::Duration {
        super::resolve_timeout(self.timeout, Self::DEFAULT_TIMEOUT, self.interval.get())
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        super::validate_schedule(self.interval.get(), self.timeout, Self::DEFAULT_TIMEOUT)?;
        let retry = self.init_retry_interval.get();
        if retry < Duration::from_secs(1) || retry > Duration::from_secs(86_400) {
            return Err(FieldError::new(
                "init_retry_interval",
                "must be between 1s and 24h",
            ));
        }
        if self.max_processes_per_gpu == 0 || self.max_processes_per_gpu > MAX_PROCESSES_LIMIT {
            return Err(FieldError::new(
                "max_processes_per_gpu",
                format!("must be between 1 and {MAX_PROCESSES_LIMIT}"),
            ));
        }
        if self
            .library_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(FieldError::new(
                "library_path",
                "must not be empty (leave it unset for the default)",
            ));
        }
        if self.procfs_path.as_os_str().is_empty() {
            return Err(FieldError::new("procfs_path", "must not be empty"));
        }
        Ok(())
    }
}

/// One metric family this collector can emit.
pub struct FamilySpec {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> FamilySpec {
    FamilySpec {
        name,
        kind: MetricType::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> FamilySpec {
    FamilySpec {
        name,
        kind: MetricType::Counter,
        help,
    }
}

/// Every family of this collector, in exposition order.
pub const FAMILIES: &[FamilySpec] = &[
    gauge("gpu_nvml_up", "Whether NVML is loaded and answering (1) or not (0)."),
    gauge("gpu_devices", "Number of GPUs NVML reports (0 without NVML)."),
    gauge("gpu_device_up", "Whether the GPU with this NVML index was read in the last run (1) or failed (0). Labels: gpu."),
    gauge("gpu_info", "GPU identity, always 1. Labels: gpu, uuid, name, pci_bus_id, driver_version, cuda_version, vbios_version, compute_capability."),
    gauge("gpu_utilization_ratio", "Fraction of the last sample period during which a kernel ran on the GPU."),
    gauge("gpu_memory_utilization_ratio", "Fraction of the last sample period during which device memory was read or written."),
    gauge("gpu_encoder_utilization_ratio", "Video encoder utilization (0-1)."),
    gauge("gpu_decoder_utilization_ratio", "Video decoder utilization (0-1)."),
    gauge("gpu_memory_total_bytes", "Total frame-buffer memory."),
    gauge("gpu_memory_used_bytes", "Allocated frame-buffer memory."),
    gauge("gpu_memory_free_bytes", "Unallocated frame-buffer memory."),
    gauge("gpu_memory_reserved_bytes", "Frame-buffer memory reserved by the driver and firmware."),
    gauge("gpu_temperature_celsius", "GPU die temperature."),
    gauge("gpu_power_usage_watts", "Board power draw (averaged over 1 s on Ampere and newer)."),
    gauge("gpu_power_limit_watts", "Power management limit (nvidia-smi power.limit)."),
    gauge("gpu_enforced_power_limit_watts", "Power limit actually enforced (the lowest of all limiters)."),
    counter("gpu_energy_joules_total", "Energy consumed since the driver was loaded."),
    gauge("gpu_sm_clock_hertz", "Current SM clock."),
    gauge("gpu_memory_clock_hertz", "Current memory clock."),
    gauge("gpu_fan_speed_ratio", "Fan speed as a fraction of its maximum (may exceed 1). Extra label: fan."),
    gauge("gpu_clocks_event_reason_active", "Whether this clock-event (throttle) reason holds clocks down now (1) or not (0); only reasons the GPU supports. Extra label: reason."),
    gauge("gpu_performance_state", "Performance state P0 (maximum) to P15 (minimum)."),
    counter("gpu_ecc_errors_volatile_total", "ECC errors since the driver was last loaded. Extra label: error_type (corrected, uncorrected)."),
    counter("gpu_ecc_errors_aggregate_total", "ECC errors over the lifetime of the device. Extra label: error_type (corrected, uncorrected)."),
    gauge("gpu_pcie_rx_bytes_per_second", "PCIe receive throughput over the driver's last 20 ms sample."),
    gauge("gpu_pcie_tx_bytes_per_second", "PCIe transmit throughput over the driver's last 20 ms sample."),
    counter("gpu_pcie_replays_total", "PCIe link-level replays (retransmissions) since the driver was loaded."),
    gauge("gpu_processes", "Processes using the GPU."),
    gauge("gpu_process_memory_used_bytes", "GPU memory used by a process; beyond the per-GPU cap the rest are summed under pid=\"other\". Extra labels: pid, process_name, and mig when MIG is on."),
    counter("gpu_xid_errors_total", "Critical XID errors reported by the driver since the sidecar started. Extra label: xid."),
    gauge("gpu_last_xid_timestamp_seconds", "Unix time the last critical XID error of this value was seen. Extra label: xid."),
    gauge("gpu_mig_mode_current", "Whether MIG mode is enabled (1) or not (0)."),
    gauge("gpu_mig_mode_pending", "MIG mode after the next GPU reset (1 enabled, 0 disabled)."),
    gauge("gpu_mig_info", "A MIG device, always 1. Extra labels: mig (GPU instance id), compute_instance, mig_uuid, profile."),
    gauge("gpu_mig_memory_total_bytes", "Memory of a MIG GPU instance. Extra label: mig."),
    gauge("gpu_mig_memory_used_bytes", "Used memory of a MIG GPU instance. Extra label: mig."),
    gauge("gpu_mig_memory_free_bytes", "Free memory of a MIG GPU instance. Extra label: mig."),
];

/// Clock-event reason bits (`nvmlClocksEventReason*`) and their label values, the
/// names nvidia-smi and nvidia_gpu_exporter use. A fixed set: the label stays bounded.
pub const CLOCKS_EVENT_REASONS: &[(u64, &str)] = &[
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// Builds a backend; called at the first run and again, slowly, while NVML is away.
pub type BackendFactory =
    Box<dyn FnMut() -> Result<Box<dyn GpuBackend>, BackendError> + Send + 'static>;

/// Settings of one run, from the config.
#[derive(Debug, Clone)]
struct Settings {
    toggle: Toggle,
    retry: Duration,
    want: Want,
    max_processes: usize,
    procfs: PathBuf,
}

pub struct GpuCollector {
    state: Arc<Mutex<State>>,
}

impl GpuCollector {
    /// The collector on the real NVML backend; `None` when disabled. NVML is not touched
    /// here: the first run loads it, on a blocking thread.
    pub fn from_config(cfg: &GpuConfig, _ctx: &BuildContext) -> Option<Self> {
        if cfg.enabled == Toggle::Off {
            return None;
        }
        let path = cfg.library_path.clone();
        let xid = cfg.xid_events;
        let factory: BackendFactory = Box::new(move || {
            nvml::NvmlBackend::init(path.as_deref(), xid).map(|b| {
                tracing::debug!(xid_watched = b.xid_registered(), "nvml initialised");
                Box::new(b) as Box<dyn GpuBackend>
            })
        });
        Some(Self::with_factory(cfg, factory))
    }

    /// The collector on any backend (tests use the fake one).
    pub fn with_factory(cfg: &GpuConfig, factory: BackendFactory) -> Self {
        let settings = Settings {
            toggle: cfg.enabled,
            retry: cfg.init_retry_interval.get(),
            want: Want {
                processes: cfg.processes,
                pcie: cfg.pcie_throughput,
            },
            max_processes: cfg.max_processes_per_gpu,
            procfs: cfg.procfs_path.clone(),
        };
        GpuCollector {
            state: Arc::new(Mutex::new(State::new(settings, factory))),
        }
    }
}

#[async_trait::async_trait]
impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            // A run that outlived its timeout may still hold NVML; never queue behind it.
            let Some(mut s) = state.try_lock() else {
                return Err(CollectError::Failed(anyhow::anyhow!(
                    "previous NVML read still in progress"
                )));
            };
            Ok(s.run(Instant::now(), SystemTime::now()))
        })
        .await
        .map_err(|e| CollectError::Failed(anyhow::anyhow!("gpu collector task: {e}")))?
    }
}

/// Count and last time of one XID value on one device.
#[derive(Debug, Clone, Copy, Default)]
struct XidStat {
    count: u64,
    last_seen: f64,
    /// When this series was born (its first event): exposed as `_created`, and the rule
    /// store records a zero then, so the first XID of a new value counts in `increase()`.
    created: f64,
}

/// Everything kept between runs.
struct State {
    settings: Settings,
    factory: BackendFactory,
    backend: Option<Box<dyn GpuBackend>>,
    /// Earliest time of the next load attempt while NVML is unavailable.
    next_init: Option<Instant>,
    /// Whether "NVML unavailable" was already logged (logged once per outage).
    absent_logged: bool,
    /// Devices whose failure was already logged.
    failing: BTreeSet<u32>,
    /// (gpu, uuid, name) of each device as last read, for labelling XID events.
    identities: BTreeMap<u32, (String, String)>,
    /// XID counts by (gpu, uuid, name) then xid label value.
    xids: BTreeMap<(String, String, String), BTreeMap<String, XidStat>>,
}

impl State {
    fn new(settings: Settings, factory: BackendFactory) -> Self {
        State {
            settings,
            factory,
            backend: None,
            next_init: None,
            absent_logged: false,
            failing: BTreeSet::new(),
            identities: BTreeMap::new(),
            xids: BTreeMap::new(),
        }
    }

    /// Loads the backend if it is missing and the retry pace allows.
    fn ensure_backend(&mut self, now: Instant) {
        if self.backend.is_some() || self.next_init.is_some_and(|t| now < t) {
            return;
        }
        match (self.factory)() {
            Ok(b) => {
                self.backend = Some(b);
                self.next_init = None;
                if self.absent_logged {
                    tracing::info!("NVML loaded; collecting GPU metrics");
                }
                self.absent_logged = false;
            }
            Err(e) => {
                self.next_init = Some(now + self.settings.retry);
                self.log_absent(&e);
            }
        }
    }

    fn log_absent(&mut self, e: &BackendError) {
        if self.absent_logged {
            tracing::debug!(error = %e, "NVML still unavailable");
            return;
        }
        self.absent_logged = true;
        let retry = sentinel_base::config::format_duration(self.settings.retry);
        if self.settings.toggle == Toggle::On {
            tracing::warn!(error = %e, retry_every = %retry, "GPU collector enabled but NVML is unavailable; reporting gpu_nvml_up 0");
        } else {
            tracing::info!(error = %e, retry_every = %retry, "NVML not available (no NVIDIA driver or GPU); reporting gpu_nvml_up 0");
        }
    }

    /// Drops a backend that stopped answering; the next load waits for the retry pace.
    fn lose_backend(&mut self, now: Instant, e: &BackendError) {
        self.backend = None;
        self.next_init = Some(now + self.settings.retry);
        // A driver that goes away under a running sidecar is worth a warning whatever
        // the toggle; the retries that follow stay quiet like a start-up absence.
        tracing::warn!(error = %e, retry_every = %sentinel_base::config::format_duration(self.settings.retry), "NVML stopped answering; reporting gpu_nvml_up 0");
        self.absent_logged = true;
    }

    /// One collection. Never fails: absence and device errors are states.
    fn run(&mut self, now: Instant, wall: SystemTime) -> Vec<MetricFamily> {
        let mut out = Out::new();
        self.ensure_backend(now);
        let read = match self.backend.as_mut() {
            Some(b) => read_all(b.as_mut(), &self.settings.want),
            None => Err(BackendError::Unavailable("not loaded".into())),
        };
        match read {
            Ok(mut r) => {
                out.plain("gpu_nvml_up", 1.0);
                out.plain("gpu_devices", f64::from(r.count));
                self.note_device_failures(&r.failed);
                let mut up: Vec<(u32, f64)> = r.failed.iter().map(|(i, _)| (*i, 0.0)).collect();
                up.extend(r.devices.iter().map(|d| (d.index, 1.0)));
                up.sort_by_key(|(i, _)| *i);
                for (index, v) in up {
                    out.push("gpu_device_up", &[("gpu", index.to_string())], v);
                }
                let wall_secs = wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                for d in &r.devices {
                    self.identities
                        .insert(d.index, (d.uuid.clone(), d.name.clone()));
                    emit_device(&mut out, &r.system, d, &self.settings);
                }
                let events = std::mem::take(&mut r.xid_events);
                self.count_xids(events, wall_secs);
            }
            Err(e) => {
                if self.backend.is_some() {
                    self.lose_backend(now, &e);
                }
                out.plain("gpu_nvml_up", 0.0);
                out.plain("gpu_devices", 0.0);
            }
        }
        self.emit_xids(&mut out);
        out.finish()
    }

    fn note_device_failures(&mut self, failed: &[(u32, String)]) {
        let now: BTreeSet<u32> = failed.iter().map(|(i, _)| *i).collect();
        for (i, why) in failed {
            if !self.failing.contains(i) {
                tracing::warn!(gpu = i, error = %why, "GPU cannot be read; its series are left out");
            }
        }
        for i in self.failing.difference(&now) {
            tracing::info!(gpu = i, "GPU readable again");
        }
        self.failing = now;
    }

    fn count_xids(&mut self, events: Vec<XidEvent>, wall_secs: f64) {
        for ev in events {
            let (uuid, name) = match self.identities.get(&ev.index) {
                Some((u, n)) => (u.clone(), n.clone()),
                None => (ev.uuid.clone().unwrap_or_default(), String::new()),
            };
            tracing::warn!(gpu = ev.index, %uuid, xid = ?ev.xid, "GPU XID error");
            let per_device = self
                .xids
                .entry((ev.index.to_string(), uuid, name))
                .or_default();
            let mut key = ev
                .xid
                .map(|x| x.to_string())
                .unwrap_or_else(|| "unknown".to_string());
            if !per_device.contains_key(&key) && per_device.len() >= MAX_XIDS_PER_DEVICE {
                key = "other".to_string();
            }
            let stat = per_device.entry(key).or_insert_with(|| XidStat {
                created: wall_secs,
                ..XidStat::default()
            });
            stat.count += 1;
            stat.last_seen = wall_secs;
        }
    }

    fn emit_xids(&self, out: &mut Out) {
        for ((gpu, uuid, name), per) in &self.xids {
            for (xid, stat) in per {
                let labels = [
                    ("gpu", gpu.clone()),
                    ("uuid", uuid.clone()),
                    ("name", name.clone()),
                    ("xid", xid.clone()),
                ];
                out.family("gpu_xid_errors_total").push_created(
                    sentinel_base::metrics::labels(&labels),
                    stat.count as f64,
                    Some(stat.created),
                );
                out.push("gpu_last_xid_timestamp_seconds", &labels, stat.last_seen);
            }
        }
    }
}

/// What one pass over the backend returned.
struct RunReading {
    system: SystemReading,
    count: u32,
    devices: Vec<DeviceReading>,
    failed: Vec<(u32, String)>,
    xid_events: Vec<XidEvent>,
}

/// Reads every device; a device error is recorded and the pass goes on, a library
/// error ends it.
fn read_all(b: &mut dyn GpuBackend, want: &Want) -> Result<RunReading, BackendError> {
    let count = b.device_count()?;
    let system = b.system();
    let mut devices = Vec::new();
    let mut failed = Vec::new();
    for i in 0..count {
        match b.device(i, want) {
            Ok(d) => devices.push(d),
            Err(BackendError::Device { index, reason }) => failed.push((index, reason)),
            Err(e) => return Err(e),
        }
    }
    let xid_events = b.poll_xid(MAX_XID_EVENTS_PER_RUN);
    Ok(RunReading {
        system,
        count,
        devices,
        failed,
        xid_events,
    })
}

/// The families of one run, in [`FAMILIES`] order.
struct Out(Vec<MetricFamily>);

/// Label pairs; every label name here is a literal.
type Labels = Vec<(&'static str, String)>;

impl Out {
    fn new() -> Self {
        Out(FAMILIES
            .iter()
            .map(|s| MetricFamily::new(s.name, s.help, s.kind))
            .collect())
    }

    fn family(&mut self, name: &str) -> &mut MetricFamily {
        self.0
            .iter_mut()
            .find(|f| f.name == name)
            .expect("every emitted name is listed in FAMILIES")
    }

    fn push(&mut self, name: &str, labels: &[(&'static str, String)], value: f64) {
        self.family(name).push(labels, value);
    }

    /// Pushes `v` if there is one: absent values are left out.
    fn opt(&mut self, labels: &[(&'static str, String)], name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.push(name, labels, v);
        }
    }

    fn plain(&mut self, name: &str, value: f64) {
        self.family(name).push::<&str, &str>(&[], value);
    }

    fn finish(self) -> Vec<MetricFamily> {
        self.0
            .into_iter()
            .filter(|f| !f.samples.is_empty())
            .collect()
    }
}

/// NVML encodes the CUDA driver version as `major * 1000 + minor * 10`.
fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// NVML's "KB/s" for PCIe throughput is kibibytes, like every NVML memory quantity.
const PCIE_KB: f64 = 1024.0;

fn with(base: &Labels, extra: &[(&'static str, String)]) -> Labels {
    base.iter().chain(extra.iter()).cloned().collect()
}

fn emit_device(out: &mut Out, sys: &SystemReading, d: &DeviceReading, s: &Settings) {
    let base: Labels = vec![
        ("gpu", d.index.to_string()),
        ("uuid", d.uuid.clone()),
        ("name", d.name.clone()),
    ];
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    out.push(
        "gpu_info",
        &with(
            &base,
            &[
                ("pci_bus_id", opt(&d.pci_bus_id)),
                ("driver_version", opt(&sys.driver_version)),
                (
                    "cuda_version",
                    sys.cuda_driver_version
                        .map(cuda_version)
                        .unwrap_or_default(),
                ),
                ("vbios_version", opt(&d.vbios_version)),
                (
                    "compute_capability",
                    d.compute_capability
                        .map(|(a, b)| format!("{a}.{b}"))
                        .unwrap_or_default(),
                ),
            ],
        ),
        1.0,
    );
    let pct = |v: Option<u32>| v.map(|v| f64::from(v) / 100.0);
    out.opt(
        &base,
        "gpu_utilization_ratio",
        pct(d.utilization_gpu_percent),
    );
    out.opt(
        &base,
        "gpu_memory_utilization_ratio",
        pct(d.utilization_memory_percent),
    );
    out.opt(
        &base,
        "gpu_encoder_utilization_ratio",
        pct(d.encoder_utilization_percent),
    );
    out.opt(
        &base,
        "gpu_decoder_utilization_ratio",
        pct(d.decoder_utilization_percent),
    );
    if let Some(m) = &d.memory {
        out.opt(&base, "gpu_memory_total_bytes", Some(m.total as f64));
        out.opt(&base, "gpu_memory_used_bytes", Some(m.used as f64));
        out.opt(&base, "gpu_memory_free_bytes", Some(m.free as f64));
        out.opt(
            &base,
            "gpu_memory_reserved_bytes",
            m.reserved.map(|r| r as f64),
        );
    }
    out.opt(
        &base,
        "gpu_temperature_celsius",
        d.temperature_celsius.map(f64::from),
    );
    let milli = |v: Option<u32>| v.map(|v| f64::from(v) / 1000.0);
    out.opt(
        &base,
        "gpu_power_usage_watts",
        milli(d.power_usage_milliwatts),
    );
    out.opt(
        &base,
        "gpu_power_limit_watts",
        milli(d.power_limit_milliwatts),
    );
    out.opt(
        &base,
        "gpu_enforced_power_limit_watts",
        milli(d.enforced_power_limit_milliwatts),
    );
    out.opt(
        &base,
        "gpu_energy_joules_total",
        d.energy_millijoules.map(|v| v as f64 / 1000.0),
    );
    let mhz = |v: Option<u32>| v.map(|v| f64::from(v) * 1e6);
    out.opt(&base, "gpu_sm_clock_hertz", mhz(d.sm_clock_mhz));
    out.opt(&base, "gpu_memory_clock_hertz", mhz(d.memory_clock_mhz));
    out.opt(
        &base,
        "gpu_performance_state",
        d.performance_state.map(f64::from),
    );
    out.opt(
        &base,
        "gpu_pcie_rx_bytes_per_second",
        d.pcie_rx_kilobytes_per_second
            .map(|v| f64::from(v) * PCIE_KB),
    );
    out.opt(
        &base,
        "gpu_pcie_tx_bytes_per_second",
        d.pcie_tx_kilobytes_per_second
            .map(|v| f64::from(v) * PCIE_KB),
    );
    out.opt(
        &base,
        "gpu_pcie_replays_total",
        d.pcie_replays.map(f64::from),
    );
    for (fan, p) in &d.fans_percent {
        out.push(
            "gpu_fan_speed_ratio",
            &with(&base, &[("fan", fan.to_string())]),
            f64::from(*p) / 100.0,
        );
    }
    if let Some(active) = d.clocks_event_reasons {
        // Without the supported mask, report the reasons NVML has named for years.
        let supported = d.supported_clocks_event_reasons.unwrap_or(u64::MAX);
        for (bit, reason) in CLOCKS_EVENT_REASONS {
            if supported & bit != 0 {
                out.push(
                    "gpu_clocks_event_reason_active",
                    &with(&base, &[("reason", (*reason).to_string())]),
                    if active & bit != 0 { 1.0 } else { 0.0 },
                );
            }
        }
    }
    for (family, corrected, uncorrected) in [
        (
            "gpu_ecc_errors_volatile_total",
            d.ecc.corrected_volatile,
            d.ecc.uncorrected_volatile,
        ),
        (
            "gpu_ecc_errors_aggregate_total",
            d.ecc.corrected_aggregate,
            d.ecc.uncorrected_aggregate,
        ),
    ] {
        for (kind, v) in [("corrected", corrected), ("uncorrected", uncorrected)] {
            if let Some(v) = v {
                out.push(
                    family,
                    &with(&base, &[("error_type", kind.to_string())]),
                    v as f64,
                );
            }
        }
    }
    let mig_on = d.mig.as_ref().is_some_and(|m| m.current_enabled);
    if let Some(procs) = &d.processes {
        emit_processes(out, &base, procs, mig_on, s);
    }
    if let Some(m) = &d.mig {
        out.opt(
            &base,
            "gpu_mig_mode_current",
            Some(f64::from(u8::from(m.current_enabled))),
        );
        out.opt(
            &base,
            "gpu_mig_mode_pending",
            Some(f64::from(u8::from(m.pending_enabled))),
        );
        emit_mig(out, &base, m);
    }
}

fn emit_processes(
    out: &mut Out,
    base: &Labels,
    procs: &[backend::ProcessReading],
    mig_on: bool,
    s: &Settings,
) {
    out.push("gpu_processes", base, procs.len() as f64);
    let mut sorted: Vec<&backend::ProcessReading> = procs.iter().collect();
    // Largest users first; ties by pid so the kept set is stable between runs.
    sorted.sort_by(|a, b| {
        b.used_memory_bytes
            .cmp(&a.used_memory_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    let keep = sorted.len().min(s.max_processes);
    for p in &sorted[..keep] {
        let Some(bytes) = p.used_memory_bytes else {
            continue;
        };
        let mut extra = vec![
            ("pid", p.pid.to_string()),
            ("process_name", process_name(&s.procfs, p.pid)),
        ];
        if mig_on {
            extra.push((
                "mig",
                p.gpu_instance_id.map(|g| g.to_string()).unwrap_or_default(),
            ));
        }
        out.push(
            "gpu_process_memory_used_bytes",
            &with(base, &extra),
            bytes as f64,
        );
    }
    let rest = &sorted[keep..];
    if !rest.is_empty() {
        let sum: u64 = rest.iter().filter_map(|p| p.used_memory_bytes).sum();
        let mut extra = vec![
            ("pid", "other".to_string()),
            ("process_name", "other".to_string()),
        ];
        if mig_on {
            extra.push(("mig", String::new()));
        }
        out.push(
            "gpu_process_memory_used_bytes",
            &with(base, &extra),
            sum as f64,
        );
    }
}

/// `NVIDIA A100-SXM4-40GB MIG 1g.5gb` → `1g.5gb`; the whole name when it has no profile.
fn mig_profile(name: &str) -> &str {
    match name.split_once(" MIG ") {
        Some((_, p)) if !p.is_empty() => p,
        _ => name,
    }
}

fn emit_mig(out: &mut Out, base: &Labels, m: &backend::MigReading) {
    let mut seen_gi = BTreeSet::new();
    for inst in &m.instances {
        let gi = inst.gpu_instance_id.to_string();
        out.push(
            "gpu_mig_info",
            &with(
                base,
                &[
                    ("mig", gi.clone()),
                    ("compute_instance", inst.compute_instance_id.to_string()),
                    ("mig_uuid", inst.uuid.clone()),
                    ("profile", mig_profile(&inst.name).to_string()),
                ],
            ),
            1.0,
        );
        // Compute instances of one GPU instance share its memory: report it once.
        if !seen_gi.insert(inst.gpu_instance_id) {
            continue;
        }
        if let Some(MemoryReading {
            total, used, free, ..
        }) = inst.memory
        {
            let l = with(base, &[("mig", gi)]);
            out.push("gpu_mig_memory_total_bytes", &l, total as f64);
            out.push("gpu_mig_memory_used_bytes", &l, used as f64);
            out.push("gpu_mig_memory_free_bytes", &l, free as f64);
        }
    }
}

/// Longest process name kept (the kernel's `comm` is at most 15 bytes; this guards a
/// procfs that says otherwise).
const MAX_PROCESS_NAME: usize = 64;

/// The process's `comm`, or `unknown` when it cannot be read (gone, or another pid
/// namespace).
pub fn process_name(procfs: &Path, pid: u32) -> String {
    match std::fs::read(procfs.join(pid.to_string()).join("comm")) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            let s = s.trim_end_matches('\n');
            if s.is_empty() {
                "unknown".to_string()
            } else {
                s.chars().take(MAX_PROCESS_NAME).collect()
            }
        }
        Err(_) => "unknown".to_string(),
    }
}

/// What a reload compares: the section (it holds no secrets).
pub fn fingerprint(cfg: &GpuConfig) -> &GpuConfig {
    cfg
}

/// The list's entry for this collector (see `collect::COLLECTORS`).
pub fn spec(c: &super::CollectorsConfig, ctx: &BuildContext) -> Option<super::CollectorSpec> {
    let cfg = &c.gpu;
    GpuCollector::from_config(cfg, ctx)
        .map(|g| super::CollectorSpec::new(g, &fingerprint(cfg), cfg.interval.get(), cfg.timeout()))
}

#[cfg(test)]
mod tests;
