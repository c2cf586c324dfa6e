//! System collector: host CPU, memory, filesystems, network, load, file descriptors and
//! pressure, under node_exporter's metric names. (Being written: see the issue.)

use super::{CollectError, Collector};
use crate::config::Dur;
use crate::metrics::MetricFamily;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `collectors.system`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    pub enabled: bool,
    pub interval: Dur,
    pub timeout: Dur,
    /// procfs mount point (`/host/proc` in a container).
    pub procfs_path: PathBuf,
    /// sysfs mount point.
    pub sysfs_path: PathBuf,
    /// Root of the host filesystem; mount points are reported relative to it.
    pub rootfs_path: PathBuf,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            enabled: true,
            interval: Dur::secs(5),
            timeout: Dur::secs(4),
            procfs_path: "/proc".into(),
            sysfs_path: "/sys".into(),
            rootfs_path: "/".into(),
        }
    }
}

impl SystemConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        super::validate_schedule(self.interval.get(), self.timeout.get())
    }
}

pub struct SystemCollector {
    cfg: SystemConfig,
}

impl SystemCollector {
    pub fn new(cfg: &SystemConfig) -> Self {
        SystemCollector { cfg: cfg.clone() }
    }
}

#[async_trait::async_trait]
impl Collector for SystemCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let path = self.cfg.procfs_path.join("loadavg");
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let mut out = Vec::new();
        for (i, name) in ["node_load1", "node_load5", "node_load15"]
            .iter()
            .enumerate()
        {
            if let Some(v) = text.split_whitespace().nth(i).and_then(|v| v.parse().ok()) {
                out.push(
                    MetricFamily::gauge(*name, format!("{}m load average.", [1, 5, 15][i]))
                        .with::<&str, &str>(&[], v),
                );
            }
        }
        Ok(out)
    }
}
