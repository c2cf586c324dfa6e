//! System collector: host CPU, memory, filesystems, network, load, file descriptors,
//! boot time and pressure stall information, under node_exporter 1.5's metric names,
//! label sets and units, so that stock node dashboards and alerts work unchanged.
//!
//! One file per area (`cpu`, `cpu_sysfs`, `stat` (boot time, forks, ...), `meminfo`,
//! `loadavg`, `filefd`, `pressure`, `netdev`, `filesystem`), each with a pure `parse_*`
//! over the file's text and a function that turns the parsed data into families. This
//! module owns the config, the I/O (every path is rooted in `procfs_path`, `sysfs_path`,
//! `rootfs_path`) and the per-area outcome: one unreadable area leaves out its own
//! families and sets `sentinel_system_area_success{area}` to 0; the others are still
//! reported. The collector as a whole fails only when no area could be read (a wrong
//! `procfs_path`).
//!
//! Neighbours: `collect::mod` runs us on our interval with our timeout;
//! `tests/system.rs` checks us against the real node_exporter on the same host.

mod cpu;
mod cpu_sysfs;
mod filefd;
mod filesystem;
mod loadavg;
mod meminfo;
mod netdev;
mod pressure;
mod stat;

use super::{CollectError, Collector};
use crate::metrics::MetricFamily;
use parking_lot::Mutex;
use regex::Regex;
use sentinel_base::config::Dur;
use sentinel_base::config::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// node_exporter 1.5's `--collector.filesystem.mount-points-exclude` default.
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.5's `--collector.filesystem.fs-types-exclude` default.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// Virtual interfaces that container hosts create by the hundred (node_exporter#1446).
/// node_exporter itself excludes nothing by default; we do, because one series per
/// container veth is the most common cardinality complaint against it.
pub const DEFAULT_NETDEV_DEVICE_EXCLUDE: &str =
    "^(veth.*|br-.*|docker.*|cali.*|flannel.*|cni.*|virbr.*)$";

/// Largest procfs file we read; anything longer is a broken or hostile mount.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// `collectors.system`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// Collect host metrics at all.
    pub enabled: bool,
    /// How often to collect.
    pub interval: Dur,
    /// Deadline for one collection (at most `interval`). Unset: `min(4s, interval)`.
    pub timeout: Option<Dur>,
    /// procfs mount point (`/host/proc` in a container), like `--path.procfs`.
    pub procfs_path: PathBuf,
    /// sysfs mount point, like `--path.sysfs` (`/host/sys` in a container): CPU
    /// thermal-throttle counters and isolated CPUs.
    pub sysfs_path: PathBuf,
    /// Root of the host filesystem, like `--path.rootfs`: filesystems are stat'ed under
    /// it and their mount points reported relative to it.
    pub rootfs_path: PathBuf,
    /// Which filesystems to report and how long one may take to answer.
    pub filesystem: FilesystemConfig,
    /// Which network interfaces to report.
    pub netdev: NetdevConfig,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            enabled: true,
            interval: Dur::secs(5),
            timeout: None,
            procfs_path: "/proc".into(),
            sysfs_path: "/sys".into(),
            rootfs_path: "/".into(),
            filesystem: FilesystemConfig::default(),
            netdev: NetdevConfig::default(),
        }
    }
}

/// `collectors.system.filesystem`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Mount points (relative to `rootfs_path`) to leave out; unanchored regex, empty
    /// for none. Default: node_exporter's.
    pub mount_points_exclude: String,
    /// Filesystem types to leave out; unanchored regex, empty for none. Default:
    /// node_exporter's.
    pub fs_types_exclude: String,
    /// How long one mount's statvfs may take before the mount is marked stuck: it is
    /// then reported with `device_error` 1 and not stat'ed again until the hung call
    /// returns, so a dead NFS server never stalls the collector. Less than `timeout`;
    /// unset means half the collector timeout, at most 2s.
    pub mount_timeout: Option<Dur>,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            mount_points_exclude: DEFAULT_MOUNT_POINTS_EXCLUDE.to_string(),
            fs_types_exclude: DEFAULT_FS_TYPES_EXCLUDE.to_string(),
            mount_timeout: None,
        }
    }
}

/// `collectors.system.netdev`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetdevConfig {
    /// Interfaces to leave out; unanchored regex, empty for none. The default drops
    /// container and bridge interfaces (veth*, br-*, docker*, cali*, flannel*, cni*,
    /// virbr*).
    pub device_exclude: String,
    /// If set, only interfaces matching this unanchored regex are reported. Exclusive
    /// with a non-empty `device_exclude`, as in node_exporter.
    pub device_include: String,
}

impl Default for NetdevConfig {
    fn default() -> Self {
        NetdevConfig {
            device_exclude: DEFAULT_NETDEV_DEVICE_EXCLUDE.to_string(),
            device_include: String::new(),
        }
    }
}

/// An empty pattern means "no filter".
fn compile(pattern: &str) -> Result<Option<Regex>, String> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(pattern)
        .map(Some)
        .map_err(|e| format!("invalid regex: {e}"))
}

impl SystemConfig {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

    /// The run's timeout: the explicit one, or `min(4s, interval)`.
    pub fn timeout(&self) -> std::time::Duration {
        super::resolve_timeout(self.timeout, Self::DEFAULT_TIMEOUT, self.interval.get())
    }

    /// The statvfs deadline per mount, explicit or derived from `timeout`.
    pub fn mount_timeout(&self) -> std::time::Duration {
        self.filesystem
            .mount_timeout
            .map(Dur::get)
            .unwrap_or_else(|| (self.timeout() / 2).min(std::time::Duration::from_secs(2)))
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        super::validate_schedule(self.interval.get(), self.timeout, Self::DEFAULT_TIMEOUT)?;
        for (field, p) in [
            ("procfs_path", &self.procfs_path),
            ("sysfs_path", &self.sysfs_path),
            ("rootfs_path", &self.rootfs_path),
        ] {
            if p.as_os_str().is_empty() {
                return Err(FieldError::new(field, "must not be empty"));
            }
        }
        for (field, pattern) in [
            (
                "filesystem.mount_points_exclude",
                &self.filesystem.mount_points_exclude,
            ),
            (
                "filesystem.fs_types_exclude",
                &self.filesystem.fs_types_exclude,
            ),
            ("netdev.device_exclude", &self.netdev.device_exclude),
            ("netdev.device_include", &self.netdev.device_include),
        ] {
            compile(pattern).map_err(|m| FieldError::new(field, m))?;
        }
        if !self.netdev.device_include.is_empty() && !self.netdev.device_exclude.is_empty() {
            return Err(FieldError::new(
                "netdev.device_include",
                "cannot be combined with a non-empty device_exclude (set device_exclude: \"\")",
            ));
        }
        let mt = self.mount_timeout();
        if mt.is_zero() || mt >= self.timeout() {
            return Err(FieldError::new(
                "filesystem.mount_timeout",
                format!(
                    "must be more than 0s and less than the collector timeout ({})",
                    sentinel_base::config::format_duration(self.timeout())
                ),
            ));
        }
        Ok(())
    }
}

/// Why a procfs/sysfs file's text is not in the format its parser expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line or item that is not what it should be (`bad cpu line "..."`).
    #[error("bad {what} {text:?}")]
    Bad { what: &'static str, text: String },
    #[error("bad value {value:?} in {line:?}")]
    BadValueIn { value: String, line: String },
    #[error("bad line {line:?}: {reason}")]
    BadLine { line: String, reason: String },
    #[error("short cpu line {0:?}")]
    ShortCpuLine(String),
    #[error("more than {0} cpus")]
    TooManyCpus(u64),
    #[error("expected {want} fields, got {got}")]
    FieldCount { want: usize, got: usize },
    #[error("fewer than three fields")]
    FewerThanThreeFields,
    #[error("malformed mount line {0:?}")]
    MalformedMount(String),
    #[error("no value in {0:?}")]
    NoValue(String),
    /// Nothing the parser looks for is there (`no meminfo lines`).
    #[error("no {0}")]
    Missing(&'static str),
    /// The procfs crate's own parser refused the text.
    #[error("{0}")]
    Procfs(String),
}

impl ParseError {
    fn bad(what: &'static str, text: &str) -> Self {
        ParseError::Bad {
            what,
            text: text.to_string(),
        }
    }
}

/// Why one area produced no families.
#[derive(Debug, thiserror::Error)]
pub enum AreaError {
    /// The kernel does not offer this area (no PSI): left out, not a failure.
    #[error("not available: {0}")]
    NoData(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl AreaError {
    fn parse(path: &Path, message: impl std::fmt::Display) -> Self {
        AreaError::Parse {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Reads a (procfs) file whole, refusing more than [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<String, AreaError> {
    let err = |source| AreaError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(AreaError::parse(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    // Mount points and interface names may hold any bytes; never fail a whole area
    // over one of them.
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The part of the collector that reads plain procfs and sysfs files; shared with the
/// blocking thread each run uses.
struct ProcfsReader {
    procfs_path: PathBuf,
    sysfs_path: PathBuf,
    /// A pattern that does not compile (only possible when the config skipped
    /// validation) fails its area instead of the process.
    device_exclude: Result<Option<Regex>, String>,
    device_include: Result<Option<Regex>, String>,
    /// CPU counters last reported, to keep them monotonic (see `cpu`).
    cpu: Mutex<cpu::CpuState>,
}

type AreaOutcome = (&'static str, Result<Vec<MetricFamily>, AreaError>);

impl ProcfsReader {
    /// Every area read from procfs and sysfs files; runs on a blocking thread.
    fn read(&self) -> Vec<AreaOutcome> {
        let proc = &self.procfs_path;
        let mut out = Vec::new();

        // One read of /proc/stat feeds two areas.
        let stat_path = proc.join("stat");
        let stat = read_file(&stat_path);
        let cpu = stat.as_ref().map_err(clone_err).and_then(|text| {
            let cpus = cpu::parse_cpu_stat(text).map_err(|m| AreaError::parse(&stat_path, m))?;
            let seconds = self.cpu.lock().update(&cpus, user_hz());
            Ok(cpu::families(&seconds))
        });
        out.push(("cpu", cpu));
        out.push(("cpu_sysfs", cpu_sysfs::read(&self.sysfs_path)));
        let rest = stat.as_ref().map_err(clone_err).and_then(|text| {
            stat::parse_stat(text)
                .map(stat::families)
                .map_err(|m| AreaError::parse(&stat_path, m))
        });
        out.push(("stat", rest));

        let p = proc.join("meminfo");
        out.push((
            "meminfo",
            read_file(&p).and_then(|t| {
                meminfo::parse_meminfo(&t)
                    .map(|m| meminfo::families(&m))
                    .map_err(|m| AreaError::parse(&p, m))
            }),
        ));

        let p = proc.join("loadavg");
        out.push((
            "loadavg",
            read_file(&p).and_then(|t| {
                loadavg::parse_loadavg(&t)
                    .map(loadavg::families)
                    .map_err(|m| AreaError::parse(&p, m))
            }),
        ));

        let p = proc.join("sys/fs/file-nr");
        out.push((
            "filefd",
            read_file(&p).and_then(|t| {
                filefd::parse_file_nr(&t)
                    .map(filefd::families)
                    .map_err(|m| AreaError::parse(&p, m))
            }),
        ));

        out.push(("pressure", pressure::read(proc)));

        let p = proc.join("net/dev");
        let net = read_file(&p).and_then(|t| {
            let devices = netdev::parse_net_dev(&t).map_err(|m| AreaError::parse(&p, m))?;
            let exclude = self
                .device_exclude
                .as_ref()
                .map_err(|m| AreaError::parse(&p, m.clone()))?;
            let include = self
                .device_include
                .as_ref()
                .map_err(|m| AreaError::parse(&p, m.clone()))?;
            Ok(netdev::families(
                &devices,
                exclude.as_ref(),
                include.as_ref(),
            ))
        });
        out.push(("netdev", net));
        out
    }
}

pub struct SystemCollector {
    cfg: SystemConfig,
    procfs: Arc<ProcfsReader>,
    mount_points_exclude: Result<Option<Regex>, String>,
    fs_types_exclude: Result<Option<Regex>, String>,
    stuck: filesystem::StuckMounts,
    /// Last error per area, so a lasting failure is logged once, not every run.
    last_errors: Mutex<BTreeMap<&'static str, String>>,
}

impl SystemCollector {
    /// The collector when enabled.
    pub fn from_config(cfg: &SystemConfig, _ctx: &super::BuildContext) -> Option<Self> {
        cfg.enabled.then(|| Self::new(cfg))
    }

    fn new(cfg: &SystemConfig) -> Self {
        SystemCollector {
            procfs: Arc::new(ProcfsReader {
                procfs_path: cfg.procfs_path.clone(),
                sysfs_path: cfg.sysfs_path.clone(),
                device_exclude: compile(&cfg.netdev.device_exclude),
                device_include: compile(&cfg.netdev.device_include),
                cpu: Mutex::new(cpu::CpuState::default()),
            }),
            mount_points_exclude: compile(&cfg.filesystem.mount_points_exclude),
            fs_types_exclude: compile(&cfg.filesystem.fs_types_exclude),
            cfg: cfg.clone(),
            stuck: filesystem::StuckMounts::default(),
            last_errors: Mutex::new(BTreeMap::new()),
        }
    }

    async fn read_filesystems(&self) -> Result<Vec<MetricFamily>, AreaError> {
        let config_err =
            |m: &String| AreaError::parse(Path::new("collectors.system.filesystem"), m.clone());
        let mp_ex = self.mount_points_exclude.as_ref().map_err(config_err)?;
        let fs_ex = self.fs_types_exclude.as_ref().map_err(config_err)?;
        let proc = self.cfg.procfs_path.clone();
        let rootfs = self.cfg.rootfs_path.clone();
        let mounts = tokio::task::spawn_blocking(move || filesystem::read_mounts(&proc, &rootfs))
            .await
            .map_err(|e| AreaError::parse(Path::new("mounts"), e.to_string()))??;
        let selected = filesystem::select(mounts, mp_ex.as_ref(), fs_ex.as_ref());
        let stats = filesystem::stat_all(
            selected,
            &self.cfg.rootfs_path,
            &self.stuck,
            self.cfg.mount_timeout(),
        )
        .await;
        Ok(filesystem::families(&stats))
    }

    fn note_outcome(&self, area: &'static str, outcome: &Result<Vec<MetricFamily>, AreaError>) {
        let mut last = self.last_errors.lock();
        match outcome {
            Ok(_) | Err(AreaError::NoData(_)) => {
                if last.remove(area).is_some() {
                    tracing::info!(collector = "system", area, "area recovered");
                }
                if let Err(AreaError::NoData(why)) = outcome {
                    tracing::debug!(collector = "system", area, %why, "area not available");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if last.get(area) != Some(&msg) {
                    tracing::warn!(collector = "system", area, error = %msg, "area failed");
                    last.insert(area, msg);
                }
            }
        }
    }
}

/// `AreaError` holds an `io::Error`, which is not `Clone`; the shared `/proc/stat`
/// read feeds two areas, so each gets its own copy of the failure.
fn clone_err(e: &AreaError) -> AreaError {
    match e {
        AreaError::NoData(s) => AreaError::NoData(s.clone()),
        AreaError::Read { path, source } => AreaError::Read {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        AreaError::Parse { path, message } => AreaError::Parse {
            path: path.clone(),
            message: message.clone(),
        },
    }
}

/// `/proc/stat` counts in USER_HZ ticks; sysconf(_SC_CLK_TCK) reports that unit (100
/// on every architecture, the value node_exporter hard-codes).
fn user_hz() -> f64 {
    match procfs::ticks_per_second() {
        0 => 100.0,
        t => t as f64,
    }
}

#[async_trait::async_trait]
impl Collector for SystemCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let reader = self.procfs.clone();
        let procfs_areas = tokio::task::spawn_blocking(move || reader.read());
        // Filesystems are stat'ed meanwhile; their own deadline bounds them.
        let fs = self.read_filesystems().await;
        let mut areas = procfs_areas
            .await
            .map_err(|e| anyhow::anyhow!("system collector thread: {e}"))?;
        areas.push(("filesystem", fs));

        let mut out = Vec::new();
        let mut success = MetricFamily::gauge(
            "sentinel_system_area_success",
            "Whether the system collector's last read of this area succeeded (1) or failed (0).",
        );
        let mut failures = Vec::new();
        let total = areas.len();
        for (area, outcome) in areas {
            self.note_outcome(area, &outcome);
            match outcome {
                Ok(families) => {
                    success.push(&[("area", area)], 1.0);
                    out.extend(families);
                }
                Err(AreaError::NoData(_)) => success.push(&[("area", area)], 1.0),
                Err(e) => {
                    success.push(&[("area", area)], 0.0);
                    failures.push(format!("{area}: {e}"));
                }
            }
        }
        if failures.len() == total {
            return Err(CollectError::Failed(anyhow::anyhow!(
                "no area could be read: {}",
                failures.join("; ")
            )));
        }
        out.push(success);
        Ok(out)
    }
}

/// What a reload compares: the section (it holds no secrets).
pub fn fingerprint(cfg: &SystemConfig) -> &SystemConfig {
    cfg
}

/// The list's entry for this collector (see `collect::COLLECTORS`).
pub fn spec(
    c: &super::CollectorsConfig,
    ctx: &super::BuildContext,
) -> Option<super::CollectorSpec> {
    let cfg = &c.system;
    SystemCollector::from_config(cfg, ctx)
        .map(|s| super::CollectorSpec::new(s, &fingerprint(cfg), cfg.interval.get(), cfg.timeout()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(cfg: SystemConfig) -> Result<(), FieldError> {
        cfg.validate()
    }

    #[test]
    fn defaults_are_valid_and_match_node_exporter() {
        let d = SystemConfig::default();
        check(d.clone()).unwrap();
        assert_eq!(
            d.filesystem.mount_points_exclude,
            DEFAULT_MOUNT_POINTS_EXCLUDE
        );
        // The default device filter drops container plumbing, keeps real NICs.
        let re = compile(&d.netdev.device_exclude).unwrap().unwrap();
        for dev in [
            "veth1a2b",
            "br-5f3e",
            "docker0",
            "cali123",
            "flannel.1",
            "cni0",
            "virbr0",
        ] {
            assert!(re.is_match(dev), "{dev}");
        }
        for dev in ["eth0", "lo", "enp3s0", "wlan0", "bond0", "ens5"] {
            assert!(!re.is_match(dev), "{dev}");
        }
    }

    #[test]
    fn bad_settings_name_their_field() {
        // (mutation, field the error must name)
        type Mutation = fn(&mut SystemConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |c| c.filesystem.mount_points_exclude = "(".into(),
                "filesystem.mount_points_exclude",
            ),
            (
                |c| c.filesystem.fs_types_exclude = "[".into(),
                "filesystem.fs_types_exclude",
            ),
            (
                |c| c.netdev.device_exclude = "*x".into(),
                "netdev.device_exclude",
            ),
            (
                |c| c.netdev.device_include = "eth.*".into(),
                "netdev.device_include",
            ),
            (
                |c| c.filesystem.mount_timeout = Some(Dur::secs(4)),
                "filesystem.mount_timeout",
            ),
            (|c| c.procfs_path = PathBuf::new(), "procfs_path"),
        ];
        for (mutate, field) in cases {
            let mut c = SystemConfig::default();
            mutate(&mut c);
            let FieldError { path, message: msg } = check(c).unwrap_err();
            assert_eq!(path, field, "{msg}");
        }
        // An include list is fine once the exclude list is emptied.
        let mut c = SystemConfig::default();
        c.netdev.device_include = "^eth".into();
        c.netdev.device_exclude = String::new();
        check(c).unwrap();
    }

    #[test]
    fn config_parses_from_yaml() {
        let c: SystemConfig = serde_yaml_ng::from_str(
            "interval: 10s\nfilesystem: { mount_timeout: 1s }\nnetdev: { device_exclude: '^lo$' }\n",
        )
        .unwrap();
        assert_eq!(c.mount_timeout(), Duration::from_secs(1));
        // Unset, it follows a short collector timeout instead of failing validation.
        let short: SystemConfig = serde_yaml_ng::from_str("interval: 1s\ntimeout: 1s\n").unwrap();
        check(short.clone()).unwrap();
        assert_eq!(short.mount_timeout(), Duration::from_millis(500));
        assert_eq!(
            SystemConfig::default().mount_timeout(),
            Duration::from_secs(2)
        );
        assert_eq!(c.netdev.device_exclude, "^lo$");
        assert_eq!(c.filesystem.fs_types_exclude, DEFAULT_FS_TYPES_EXCLUDE);
        assert!(serde_yaml_ng::from_str::<SystemConfig>("netdev: { nope: 1 }").is_err());
    }
}
