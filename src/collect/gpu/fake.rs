//! A scripted [`GpuBackend`] for the collector's tests: devices are plain
//! [`DeviceReading`]s the test edits between runs through a shared handle, a device can
//! be made to fail, and XID events are queued by hand. No NVML anywhere.

use super::backend::{BackendError, DeviceReading, GpuBackend, SystemReading, Want, XidEvent};
use parking_lot::Mutex;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// What the fake reports; shared between the test and the backend it handed out.
#[derive(Debug, Default)]
pub struct FakeState {
    pub system: SystemReading,
    pub devices: Vec<DeviceReading>,
    /// Indices whose next reads fail with a device error.
    pub failing: BTreeSet<u32>,
    /// When set, every call fails as if the driver went away.
    pub unavailable: bool,
    pub xid_queue: VecDeque<XidEvent>,
    /// The `Want` of the last device read.
    pub last_want: Option<Want>,
}

#[derive(Clone, Default)]
pub struct FakeBackend(pub Arc<Mutex<FakeState>>);

impl FakeBackend {
    pub fn new(devices: Vec<DeviceReading>) -> Self {
        let b = FakeBackend::default();
        {
            let mut s = b.0.lock();
            s.devices = devices;
            s.system = SystemReading {
                driver_version: Some("550.54.15".into()),
                cuda_driver_version: Some(12040),
                nvml_version: Some("12.550.54.15".into()),
            };
        }
        b
    }
}

impl GpuBackend for FakeBackend {
    fn system(&mut self) -> SystemReading {
        self.0.lock().system.clone()
    }

    fn device_count(&mut self) -> Result<u32, BackendError> {
        let s = self.0.lock();
        if s.unavailable {
            return Err(BackendError::Unavailable("driver not loaded".into()));
        }
        Ok(s.devices.len() as u32)
    }

    fn device(&mut self, index: u32, want: &Want) -> Result<DeviceReading, BackendError> {
        let mut s = self.0.lock();
        s.last_want = Some(*want);
        if s.unavailable {
            return Err(BackendError::Unavailable("driver not loaded".into()));
        }
        if s.failing.contains(&index) {
            return Err(BackendError::Device {
                index,
                reason: "GPU is lost".into(),
            });
        }
        let mut d = s
            .devices
            .get(index as usize)
            .cloned()
            .ok_or_else(|| BackendError::Device {
                index,
                reason: "no such device".into(),
            })?;
        if !want.processes {
            d.processes = None;
        }
        if !want.pcie {
            d.pcie_rx_kilobytes_per_second = None;
            d.pcie_tx_kilobytes_per_second = None;
        }
        Ok(d)
    }

    fn poll_xid(&mut self, max: usize) -> Vec<XidEvent> {
        let mut s = self.0.lock();
        let n = max.min(s.xid_queue.len());
        s.xid_queue.drain(..n).collect()
    }
}
