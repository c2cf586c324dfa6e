//! The real [`GpuBackend`]: NVML through the `nvml-wrapper` crate, which loads
//! `libnvidia-ml.so.1` at run time (so the binary runs, and reports no GPU, on hosts
//! without the driver). Its neighbours: `backend.rs` defines what is read, `mod.rs`
//! turns readings into metric families.
//!
//! Error policy, after nvidia_gpu_exporter's NVML backend: a field NVML cannot give
//! (NotSupported, NoPermission, a symbol missing from an older driver, …) is `None`;
//! "lifecycle" errors decide the scope of a failure: GPU lost or reset required drops
//! that device for this run, driver gone or library/driver mismatch drops NVML.

use super::backend::{
    BackendError, DeviceReading, EccReading, GpuBackend, MemoryReading, MigInstanceReading,
    MigReading, ProcessReading, SystemReading, Want, XidEvent,
};
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet, Nvml};
use std::path::Path;
use std::sync::Arc;
use yoke::{Yoke, Yokeable};

/// Per-device event sets for critical XID errors, borrowing the NVML handle they were
/// created from. One set per device: NVML frees a set when a registration on it fails,
/// so a shared set would lose every device's registration to one unsupported GPU.
#[derive(Yokeable)]
struct XidSets<'a>(Vec<(u32, EventSet<'a>)>);

pub struct NvmlBackend {
    /// The NVML handle (the cart) with the event sets that borrow it; dropping this
    /// frees the sets first, then shuts NVML down.
    inner: Yoke<XidSets<'static>, Arc<Nvml>>,
}

impl NvmlBackend {
    /// Loads and initialises NVML. `library_path` overrides the loader's search for
    /// `libnvidia-ml.so.1`. With `xid_events`, registers for critical XID events on
    /// every device that supports them; a device that does not is skipped.
    pub fn init(library_path: Option<&Path>, xid_events: bool) -> Result<Self, BackendError> {
        let mut builder = Nvml::builder();
        if let Some(p) = library_path {
            builder.lib_path(p.as_os_str());
        }
        let nvml = builder.init().map_err(|e| unavailable(&e))?;
        let inner = Yoke::<XidSets<'static>, Arc<Nvml>>::attach_to_cart(Arc::new(nvml), |nvml| {
            XidSets(if xid_events {
                register_xid(nvml)
            } else {
                Vec::new()
            })
        });
        Ok(NvmlBackend { inner })
    }

    fn nvml(&self) -> &Nvml {
        self.inner.backing_cart()
    }

    /// Number of devices with an XID event registration.
    pub fn xid_registered(&self) -> usize {
        self.inner.get().0.len()
    }
}

fn register_xid(nvml: &Nvml) -> Vec<(u32, EventSet<'_>)> {
    let mut out = Vec::new();
    let Ok(count) = nvml.device_count() else {
        return out;
    };
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        match device.supported_event_types() {
            Ok(t) if t.contains(EventTypes::CRITICAL_XID_ERROR) => {}
            _ => {
                tracing::debug!(gpu = index, "device does not report XID events");
                continue;
            }
        }
        let registered = nvml
            .create_event_set()
            .map_err(Into::into)
            .and_then(|set| device.register_events(EventTypes::CRITICAL_XID_ERROR, set));
        match registered {
            Ok(set) => out.push((index, set)),
            Err(e) => tracing::info!(gpu = index, error = %e.error, "cannot watch XID events"),
        }
    }
    out
}

fn unavailable(e: &NvmlError) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

/// Errors that say the library as a whole is unusable.
fn is_library_error(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::Uninitialized
            | NvmlError::DriverNotLoaded
            | NvmlError::LibRmVersionMismatch
            | NvmlError::LibraryNotFound
    )
}

/// Errors that say this device cannot be read now.
fn is_device_error(e: &NvmlError) -> bool {
    matches!(e, NvmlError::GpuLost | NvmlError::ResetRequired)
}

/// Maps one field's result: lifecycle errors propagate, anything else means "this
/// device does not give this value" and becomes `None`.
fn opt<T>(index: u32, r: Result<T, NvmlError>) -> Result<Option<T>, BackendError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => fatal(index, e).map(|()| None),
    }
}

fn fatal(index: u32, e: NvmlError) -> Result<(), BackendError> {
    if is_library_error(&e) {
        Err(unavailable(&e))
    } else if is_device_error(&e) {
        Err(BackendError::Device {
            index,
            reason: e.to_string(),
        })
    } else {
        Ok(())
    }
}

/// A required field (identity): any error fails the device.
fn req<T>(index: u32, r: Result<T, NvmlError>) -> Result<T, BackendError> {
    r.map_err(|e| {
        if is_library_error(&e) {
            unavailable(&e)
        } else {
            BackendError::Device {
                index,
                reason: e.to_string(),
            }
        }
    })
}

fn memory(index: u32, d: &Device<'_>) -> Result<Option<MemoryReading>, BackendError> {
    Ok(opt(index, d.memory_info())?.map(|m| MemoryReading {
        total: m.total,
        used: m.used,
        free: m.free,
        reserved: Some(m.reserved),
    }))
}

/// `nvmlDeviceGetGpuInstanceId` / `nvmlDeviceGetComputeInstanceId`, which the wrapper
/// does not cover. `None` when the driver lacks the symbol or refuses.
#[allow(unsafe_code)] // FFI, see the crate root
fn mig_instance_ids(nvml: &Nvml, d: &Device<'_>) -> Option<(u32, u32)> {
    let lib = nvml.lib();
    let gi = lib.nvmlDeviceGetGpuInstanceId.as_ref().ok()?;
    let ci = lib.nvmlDeviceGetComputeInstanceId.as_ref().ok()?;
    let (mut g, mut c) = (0u32, 0u32);
    // SAFETY: `d` is a live MIG device handle borrowed from `nvml`, the symbols were
    // resolved from the same loaded library, and the out-pointers are valid locals.
    let (rg, rc) = unsafe { (gi(d.handle(), &mut g), ci(d.handle(), &mut c)) };
    (nvml_wrapper::error::nvml_try(rg).is_ok() && nvml_wrapper::error::nvml_try(rc).is_ok())
        .then_some((g, c))
}

fn processes(index: u32, d: &Device<'_>) -> Result<Option<Vec<ProcessReading>>, BackendError> {
    let compute = opt(index, d.running_compute_processes())?;
    let graphics = opt(index, d.running_graphics_processes())?;
    if compute.is_none() && graphics.is_none() {
        return Ok(None);
    }
    let mut out: Vec<ProcessReading> = Vec::new();
    // A process using both engines appears in both lists with the same memory.
    for p in compute.into_iter().chain(graphics).flatten() {
        if out.iter().any(|o| o.pid == p.pid) {
            continue;
        }
        out.push(ProcessReading {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
            gpu_instance_id: p.gpu_instance_id,
        });
    }
    Ok(Some(out))
}

fn mig(nvml: &Nvml, index: u32, d: &Device<'_>) -> Result<Option<MigReading>, BackendError> {
    let Some(mode) = opt(index, d.mig_mode())? else {
        return Ok(None);
    };
    let mut out = MigReading {
        current_enabled: mode.current == 1,
        pending_enabled: mode.pending == 1,
        instances: Vec::new(),
    };
    if !out.current_enabled {
        return Ok(Some(out));
    }
    let max = opt(index, d.mig_device_count())?.unwrap_or(0);
    for i in 0..max {
        // Slots are sparse: profiles take varying numbers of them.
        let Some(m) = opt(index, d.mig_device_by_index(i))? else {
            continue;
        };
        let (Some(uuid), Some((gi, ci))) = (opt(index, m.uuid())?, mig_instance_ids(nvml, &m))
        else {
            continue;
        };
        out.instances.push(MigInstanceReading {
            gpu_instance_id: gi,
            compute_instance_id: ci,
            uuid,
            name: opt(index, m.name())?.unwrap_or_default(),
            memory: memory(index, &m)?,
        });
    }
    Ok(Some(out))
}

impl GpuBackend for NvmlBackend {
    fn system(&mut self) -> SystemReading {
        let n = self.nvml();
        SystemReading {
            driver_version: n.sys_driver_version().ok(),
            cuda_driver_version: n.sys_cuda_driver_version().ok(),
            nvml_version: n.sys_nvml_version().ok(),
        }
    }

    fn device_count(&mut self) -> Result<u32, BackendError> {
        self.nvml().device_count().map_err(|e| unavailable(&e))
    }

    fn device(&mut self, index: u32, want: &Want) -> Result<DeviceReading, BackendError> {
        let nvml = self.nvml();
        let d = req(index, nvml.device_by_index(index))?;
        let i = index;
        let util = opt(i, d.utilization_rates())?;
        let fans = match opt(i, d.num_fans())? {
            Some(n) => {
                let mut v = Vec::new();
                for f in 0..n.min(16) {
                    if let Some(pct) = opt(i, d.fan_speed(f))? {
                        v.push((f, pct));
                    }
                }
                v
            }
            None => Vec::new(),
        };
        let ecc = |err, counter| opt(i, d.total_ecc_errors(err, counter));
        Ok(DeviceReading {
            index,
            uuid: req(i, d.uuid())?,
            name: req(i, d.name())?,
            pci_bus_id: opt(i, d.pci_info())?.map(|p| p.bus_id),
            vbios_version: opt(i, d.vbios_version())?,
            compute_capability: opt(i, d.cuda_compute_capability())?.map(|c| (c.major, c.minor)),
            utilization_gpu_percent: util.as_ref().map(|u| u.gpu),
            utilization_memory_percent: util.as_ref().map(|u| u.memory),
            encoder_utilization_percent: opt(i, d.encoder_utilization())?.map(|u| u.utilization),
            decoder_utilization_percent: opt(i, d.decoder_utilization())?.map(|u| u.utilization),
            memory: memory(i, &d)?,
            temperature_celsius: opt(i, d.temperature(TemperatureSensor::Gpu))?,
            power_usage_milliwatts: opt(i, d.power_usage())?,
            power_limit_milliwatts: opt(i, d.power_management_limit())?,
            enforced_power_limit_milliwatts: opt(i, d.enforced_power_limit())?,
            energy_millijoules: opt(i, d.total_energy_consumption())?,
            sm_clock_mhz: opt(i, d.clock_info(Clock::SM))?,
            memory_clock_mhz: opt(i, d.clock_info(Clock::Memory))?,
            fans_percent: fans,
            clocks_event_reasons: opt(i, d.current_throttle_reasons())?.map(|r| r.bits()),
            supported_clocks_event_reasons: opt(i, d.supported_throttle_reasons())?
                .map(|r| r.bits()),
            ecc: EccReading {
                corrected_volatile: ecc(MemoryError::Corrected, EccCounter::Volatile)?,
                uncorrected_volatile: ecc(MemoryError::Uncorrected, EccCounter::Volatile)?,
                corrected_aggregate: ecc(MemoryError::Corrected, EccCounter::Aggregate)?,
                uncorrected_aggregate: ecc(MemoryError::Uncorrected, EccCounter::Aggregate)?,
            },
            pcie_rx_kilobytes_per_second: if want.pcie {
                opt(i, d.pcie_throughput(PcieUtilCounter::Receive))?
            } else {
                None
            },
            pcie_tx_kilobytes_per_second: if want.pcie {
                opt(i, d.pcie_throughput(PcieUtilCounter::Send))?
            } else {
                None
            },
            pcie_replays: opt(i, d.pcie_replay_counter())?,
            performance_state: opt(i, d.performance_state())?.map(|p| p.as_c()),
            processes: if want.processes {
                processes(i, &d)?
            } else {
                None
            },
            mig: mig(nvml, i, &d)?,
        })
    }

    fn poll_xid(&mut self, max: usize) -> Vec<XidEvent> {
        let mut out = Vec::new();
        for (index, set) in &self.inner.get().0 {
            // A zero timeout returns at once: an event if one is queued, else Timeout.
            while out.len() < max {
                match set.wait(0) {
                    Ok(ev) => {
                        if !ev.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                            continue;
                        }
                        out.push(XidEvent {
                            index: *index,
                            uuid: ev.device.uuid().ok(),
                            xid: match ev.event_data {
                                Some(XidError::Value(v)) => Some(v),
                                _ => None,
                            },
                        });
                    }
                    Err(NvmlError::Timeout) => break,
                    Err(e) => {
                        tracing::debug!(gpu = index, error = %e, "polling XID events");
                        break;
                    }
                }
            }
        }
        out
    }
}
