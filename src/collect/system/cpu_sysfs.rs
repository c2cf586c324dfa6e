//! The parts of node_exporter 1.5's cpu collector read from sysfs (under `sysfs_path`):
//! `node_cpu_core_throttles_total{package,core}` and
//! `node_cpu_package_throttles_total{package}` from each CPU's `thermal_throttle/`
//! counters (bare-metal x86; absent in most VMs), and `node_cpu_isolated{cpu}` 1 for
//! each CPU listed in `devices/system/cpu/isolated` (`isolcpus=`). Like node_exporter,
//! each core and package is read once (from its first CPU), and a CPU without topology
//! files is skipped. No sysfs CPU directory at all is "no data".

use super::{read_file, AreaError, ParseError};
use crate::metrics::MetricFamily;
use std::collections::BTreeMap;
use std::path::Path;

/// Most CPUs listed as isolated that we accept from one range list.
const MAX_CPUS: u32 = 8192;

/// What one `cpuN` directory says about throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuThrottle {
    pub package: u64,
    pub core: u64,
    pub core_throttles: Option<u64>,
    pub package_throttles: Option<u64>,
}

/// Parses a kernel CPU list (`0-3,8,10-11`, possibly empty).
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, ParseError> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| ParseError::bad("cpu", s))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi || hi >= MAX_CPUS {
            return Err(ParseError::bad("cpu range", part));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

pub fn families(cpus: &[CpuThrottle], isolated: &[u32]) -> Vec<MetricFamily> {
    let mut core_counts: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut package_counts: BTreeMap<u64, u64> = BTreeMap::new();
    for c in cpus {
        if let Some(n) = c.core_throttles {
            core_counts.entry((c.package, c.core)).or_insert(n);
        }
        if let Some(n) = c.package_throttles {
            package_counts.entry(c.package).or_insert(n);
        }
    }
    let mut core = MetricFamily::counter(
        "node_cpu_core_throttles_total",
        "Number of times this CPU core has been throttled.",
    );
    for ((p, c), n) in &core_counts {
        core.push(
            &[("package", p.to_string()), ("core", c.to_string())],
            *n as f64,
        );
    }
    let mut package = MetricFamily::counter(
        "node_cpu_package_throttles_total",
        "Number of times this CPU package has been throttled.",
    );
    for (p, n) in &package_counts {
        package.push(&[("package", p.to_string())], *n as f64);
    }
    let mut iso = MetricFamily::gauge(
        "node_cpu_isolated",
        "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
    );
    for cpu in isolated {
        iso.push(&[("cpu", cpu.to_string())], 1.0);
    }
    vec![core, package, iso]
}

fn read_u64(path: &Path) -> Option<u64> {
    read_file(path).ok()?.trim().parse().ok()
}

/// Reads `<sysfs>/devices/system/cpu`.
pub fn read(sysfs: &Path) -> Result<Vec<MetricFamily>, AreaError> {
    let dir = sysfs.join("devices/system/cpu");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AreaError::NoData(format!("{}: {e}", dir.display())))
        }
        Err(source) => return Err(AreaError::Read { path: dir, source }),
    };
    let mut ids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
        .filter(|id| *id < MAX_CPUS)
        .collect();
    ids.sort_unstable();
    let mut cpus = Vec::new();
    for id in ids {
        let cpu = dir.join(format!("cpu{id}"));
        let (Some(package), Some(core)) = (
            read_u64(&cpu.join("topology/physical_package_id")),
            read_u64(&cpu.join("topology/core_id")),
        ) else {
            continue;
        };
        cpus.push(CpuThrottle {
            package,
            core,
            core_throttles: read_u64(&cpu.join("thermal_throttle/core_throttle_count")),
            package_throttles: read_u64(&cpu.join("thermal_throttle/package_throttle_count")),
        });
    }
    let isolated_path = dir.join("isolated");
    let isolated = match read_file(&isolated_path) {
        Ok(t) => parse_cpu_list(&t).map_err(|m| AreaError::parse(&isolated_path, m))?,
        Err(_) => Vec::new(),
    };
    Ok(families(&cpus, &isolated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("0-2,5,7-8\n").unwrap(), [0, 1, 2, 5, 7, 8]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("0-4000000000").is_err());
    }

    #[test]
    fn one_count_per_core_and_package() {
        let t = |package, core, c, p| CpuThrottle {
            package,
            core,
            core_throttles: c,
            package_throttles: p,
        };
        // Two hyperthreads of core 0 share its counter; a CPU without the files
        // (a VM) contributes nothing.
        let f = families(
            &[
                t(0, 0, Some(5), Some(9)),
                t(0, 0, Some(5), Some(9)),
                t(0, 1, Some(2), Some(9)),
                t(1, 0, None, None),
            ],
            &[3],
        );
        assert_eq!(f[0].samples.len(), 2);
        assert_eq!(f[0].samples[1].value, 2.0);
        assert_eq!(f[1].samples.len(), 1);
        assert_eq!(f[1].samples[0].value, 9.0);
        assert_eq!(
            f[2].samples[0].labels,
            crate::metrics::labels(&[("cpu", "3")])
        );
    }

    #[test]
    fn no_sysfs_is_no_data() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Err(AreaError::NoData(_))));
    }
}
