//! The seam between the GPU collector (`mod.rs`) and the library that reads the GPUs:
//! the real backend is NVML (`nvml.rs`), tests use a scripted one (`fake.rs`).
//!
//! A backend only reads. It returns values in NVML's own units (percent, milliwatts,
//! megahertz, KB/s) so that every conversion to base units happens once, in the
//! collector, where the fake backend's tests see it. `None` means "this device cannot
//! report this value" (NVML's NotSupported and kin): the collector leaves it out, it
//! never turns it into 0.

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The library cannot be used at all (not installed, no driver, driver/library
    /// mismatch). The collector drops the backend and retries initialisation later.
    #[error("nvml unavailable: {0}")]
    Unavailable(String),
    /// One device cannot be read this run (fell off the bus, needs a reset); the
    /// others still report.
    #[error("device {index}: {reason}")]
    Device { index: u32, reason: String },
}

/// Reads GPUs. Calls block (NVML is synchronous FFI); the collector runs them on a
/// blocking thread, one run at a time.
pub trait GpuBackend: Send {
    /// Driver-wide facts, read once per run.
    fn system(&mut self) -> SystemReading;
    /// Number of devices the library reports (including ones that fail to read).
    fn device_count(&mut self) -> Result<u32, BackendError>;
    /// Everything the collector exposes about one device. `processes` says whether the
    /// per-process list is wanted (it costs extra calls); `pcie` likewise for the PCIe
    /// throughput counters, which block ~20 ms each inside the driver.
    fn device(&mut self, index: u32, want: &Want) -> Result<DeviceReading, BackendError>;
    /// Critical XID events that arrived since the last call, without blocking; at most
    /// `max` of them (the rest stay queued in the driver for the next run).
    fn poll_xid(&mut self, max: usize) -> Vec<XidEvent>;
}

/// Which optional, costlier readings a run wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub processes: bool,
    pub pcie: bool,
}

/// Driver-wide facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemReading {
    /// e.g. `550.54.15`.
    pub driver_version: Option<String>,
    /// CUDA driver API version as NVML encodes it (`12040` for 12.4).
    pub cuda_driver_version: Option<i32>,
    /// e.g. `12.550.54.15`.
    pub nvml_version: Option<String>,
}

/// One device, in NVML's units; `None` is "not supported here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReading {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: Option<String>,
    pub vbios_version: Option<String>,
    /// CUDA compute capability (major, minor).
    pub compute_capability: Option<(i32, i32)>,
    /// Percent of the last sample period a kernel ran.
    pub utilization_gpu_percent: Option<u32>,
    /// Percent of the last sample period device memory was read or written.
    pub utilization_memory_percent: Option<u32>,
    pub encoder_utilization_percent: Option<u32>,
    pub decoder_utilization_percent: Option<u32>,
    pub memory: Option<MemoryReading>,
    pub temperature_celsius: Option<u32>,
    pub power_usage_milliwatts: Option<u32>,
    /// The power management limit (what `nvidia-smi --query-gpu=power.limit` shows).
    pub power_limit_milliwatts: Option<u32>,
    /// The limit actually enforced (the lowest of all limiters).
    pub enforced_power_limit_milliwatts: Option<u32>,
    /// Energy since the driver was loaded.
    pub energy_millijoules: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    /// (fan index, percent of maximum speed); empty when the board has no fans NVML sees.
    pub fans_percent: Vec<(u32, u32)>,
    /// Current clock-event (throttle) reason bits, NVML's `nvmlClocksEventReason*`.
    pub clocks_event_reasons: Option<u64>,
    /// The reason bits this device can report at all; `None` when unknown.
    pub supported_clocks_event_reasons: Option<u64>,
    pub ecc: EccReading,
    pub pcie_rx_kilobytes_per_second: Option<u32>,
    pub pcie_tx_kilobytes_per_second: Option<u32>,
    /// PCIe replays (link-level retransmissions) since the driver was loaded.
    pub pcie_replays: Option<u32>,
    /// P-state number (0 = maximum performance … 15 = minimum).
    pub performance_state: Option<u32>,
    /// `None` when not asked for or when the device cannot list processes: the
    /// collector then emits no per-process series rather than claiming an idle GPU.
    pub processes: Option<Vec<ProcessReading>>,
    /// `None` when the device is not MIG-capable.
    pub mig: Option<MigReading>,
}

/// Frame-buffer memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryReading {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    /// Set aside by the driver (firmware, ECC); `None` from libraries older than v2.
    pub reserved: Option<u64>,
}

/// ECC error counts; each `None` when ECC is off or unsupported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EccReading {
    pub corrected_volatile: Option<u64>,
    pub uncorrected_volatile: Option<u64>,
    pub corrected_aggregate: Option<u64>,
    pub uncorrected_aggregate: Option<u64>,
}

/// One process using the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReading {
    /// Host pid (as the driver sees it).
    pub pid: u32,
    /// `None` when the driver cannot attribute memory (e.g. WDDM, some containers).
    pub used_memory_bytes: Option<u64>,
    /// The MIG GPU instance the process runs on, when MIG is enabled.
    pub gpu_instance_id: Option<u32>,
}

/// MIG state of a MIG-capable device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigReading {
    pub current_enabled: bool,
    pub pending_enabled: bool,
    /// One entry per MIG device (a compute instance inside a GPU instance).
    pub instances: Vec<MigInstanceReading>,
}

/// One MIG device.
#[derive(Debug, Clone, PartialEq)]
pub struct MigInstanceReading {
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    pub uuid: String,
    /// Full MIG device name, e.g. `NVIDIA A100-SXM4-40GB MIG 1g.5gb`.
    pub name: String,
    /// Memory of the GPU instance (shared by its compute instances).
    pub memory: Option<MemoryReading>,
}

/// A critical XID error reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidEvent {
    pub index: u32,
    pub uuid: Option<String>,
    /// `None` when the driver reports the XID as unknown (NVML's 999).
    pub xid: Option<u64>,
}
