//! GPU collector on NVML, loaded at run time. No NVML or no GPU is a normal state.
//! (Being written: see the issue.)

use super::{BuildContext, CollectError, Collector, Toggle};
use crate::config::Dur;
use crate::metrics::MetricFamily;
use serde::{Deserialize, Serialize};

/// `collectors.gpu`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// `auto` (on when NVML loads), `true`, or `false`.
    pub enabled: Toggle,
    pub interval: Dur,
    pub timeout: Dur,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            enabled: Toggle::Auto,
            interval: Dur::secs(5),
            timeout: Dur::secs(4),
        }
    }
}

impl GpuConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        super::validate_schedule(self.interval.get(), self.timeout.get())
    }
}

pub struct GpuCollector;

impl GpuCollector {
    pub fn from_config(cfg: &GpuConfig, _ctx: &BuildContext) -> Option<Self> {
        match cfg.enabled {
            Toggle::Off => None,
            _ => Some(GpuCollector),
        }
    }
}

#[async_trait::async_trait]
impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        Ok(vec![MetricFamily::gauge(
            "gpu_devices",
            "Number of GPUs NVML reports.",
        )
        .with::<&str, &str>(&[], 0.0)])
    }
}
