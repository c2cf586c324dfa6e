//! `node_filesystem_{size_bytes,free_bytes,avail_bytes,files,files_free,readonly,
//! device_error}{device,mountpoint,fstype}`, as node_exporter 1.5's filesystem collector
//! reports them: mounts from `<procfs>/1/mounts` (falling back to `<procfs>/mounts`),
//! mount points relative to `rootfs_path` (`--path.rootfs`), its default mount-point and
//! fs-type exclusions, sizes as `f_blocks × f_bsize`, `readonly` from the `ro` mount
//! option, and only `device_error` 1 for a mount that could not be stat'ed.
//!
//! Unlike node_exporter (whose statfs blocks the scrape, node_exporter#244), every
//! statvfs runs on a blocking thread under its own deadline, a few at a time. A mount
//! whose call outlives the deadline is marked stuck: it is reported with `device_error`
//! 1 and not stat'ed again until the hung call returns, so a dead NFS server costs one
//! blocked thread, never the collector. The mount list is parsed by hand: node_exporter
//! unescapes only `\040` and `\011` in mount points, and `procfs`'s parser does not
//! unescape `\040` at all.

use super::{read_file, AreaError, ParseError};
use crate::metrics::MetricFamily;
use futures_util::StreamExt;
use parking_lot::Mutex;
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most mounts we look at; a host with more has a leak, not filesystems to watch.
const MAX_MOUNTS: usize = 8192;
/// statvfs calls in flight at once.
const CONCURRENCY: usize = 8;

/// One line of the mount table, mount point already relative to the rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountLabels {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: String,
}

/// Parses `/proc/<pid>/mounts` (fstab format).
pub fn parse_mounts(text: &str, rootfs: &Path) -> Result<Vec<MountLabels>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.is_empty() {
            continue;
        }
        if parts.len() < 4 {
            return Err(ParseError::MalformedMount(line.to_string()));
        }
        if out.len() >= MAX_MOUNTS {
            tracing::warn!(kept = MAX_MOUNTS, "mount table too long; ignoring the rest");
            break;
        }
        let mountpoint = parts[1].replace("\\040", " ").replace("\\011", "\t");
        out.push(MountLabels {
            device: parts[0].to_string(),
            mountpoint: strip_rootfs(&mountpoint, rootfs),
            fstype: parts[2].to_string(),
            options: parts[3].to_string(),
        });
    }
    Ok(out)
}

/// node_exporter's `rootfsStripPrefix`, by path components.
fn strip_rootfs(mountpoint: &str, rootfs: &Path) -> String {
    if rootfs == Path::new("/") {
        return mountpoint.to_string();
    }
    match Path::new(mountpoint).strip_prefix(rootfs) {
        Ok(rest) => format!("/{}", rest.to_string_lossy()),
        Err(_) => mountpoint.to_string(),
    }
}

/// Where to stat a mount point reported relative to the rootfs.
fn under_rootfs(rootfs: &Path, mountpoint: &str) -> PathBuf {
    rootfs.join(mountpoint.trim_start_matches('/'))
}

pub fn read_mounts(proc: &Path, rootfs: &Path) -> Result<Vec<MountLabels>, AreaError> {
    let mut path = proc.join("1/mounts");
    let text = match read_file(&path) {
        // /proc/1 is hidden with hidepid: fall back to our own view, as node_exporter does.
        Err(AreaError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            path = proc.join("mounts");
            read_file(&path)?
        }
        other => other?,
    };
    parse_mounts(&text, rootfs).map_err(|m| AreaError::parse(&path, m))
}

/// Applies the exclusions and drops repeated (device, mountpoint, fstype) triples, the
/// first one winning.
pub fn select(
    mounts: Vec<MountLabels>,
    mount_points_exclude: Option<&Regex>,
    fs_types_exclude: Option<&Regex>,
) -> Vec<MountLabels> {
    let mut seen = HashSet::new();
    mounts
        .into_iter()
        .filter(|m| !mount_points_exclude.is_some_and(|r| r.is_match(&m.mountpoint)))
        .filter(|m| !fs_types_exclude.is_some_and(|r| r.is_match(&m.fstype)))
        .filter(|m| seen.insert((m.device.clone(), m.mountpoint.clone(), m.fstype.clone())))
        .collect()
}

/// The numbers of one successful statvfs, already in node_exporter's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

/// Mount points whose statvfs is still hung, each with the flag its blocking call sets
/// when it finally returns.
#[derive(Clone, Default)]
pub struct StuckMounts(Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>);

impl StuckMounts {
    fn contains(&self, mountpoint: &str) -> bool {
        self.0.lock().contains_key(mountpoint)
    }
}

/// Stats every mount, at most [`CONCURRENCY`] at a time, each under `timeout`.
/// `None` means "device error" (failed, timed out, or still stuck).
pub async fn stat_all(
    mounts: Vec<MountLabels>,
    rootfs: &Path,
    stuck: &StuckMounts,
    timeout: Duration,
) -> Vec<(MountLabels, Option<FsStats>)> {
    stat_all_with(mounts, rootfs, stuck, timeout, statvfs).await
}

/// statvfs(3) in node_exporter's units: block counts × `f_bsize`, as its statfs does.
fn statvfs(path: &Path) -> Result<FsStats, nix::Error> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let bsize = st.block_size() as f64;
    Ok(FsStats {
        size: st.blocks() as f64 * bsize,
        free: st.blocks_free() as f64 * bsize,
        avail: st.blocks_available() as f64 * bsize,
        files: st.files() as f64,
        files_free: st.files_free() as f64,
    })
}

type StatFn = fn(&Path) -> Result<FsStats, nix::Error>;

async fn stat_all_with(
    mounts: Vec<MountLabels>,
    rootfs: &Path,
    stuck: &StuckMounts,
    timeout: Duration,
    stat: StatFn,
) -> Vec<(MountLabels, Option<FsStats>)> {
    futures_util::stream::iter(mounts)
        .map(|m| async move {
            let path = under_rootfs(rootfs, &m.mountpoint);
            let s = stat_one(&m.mountpoint, path, stuck, timeout, stat).await;
            (m, s)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

async fn stat_one(
    mountpoint: &str,
    path: PathBuf,
    stuck: &StuckMounts,
    timeout: Duration,
    stat: StatFn,
) -> Option<FsStats> {
    if stuck.contains(mountpoint) {
        tracing::debug!(mountpoint, "mount still unresponsive; skipped");
        return None;
    }
    let done = Arc::new(AtomicBool::new(false));
    let call = tokio::task::spawn_blocking({
        let (done, stuck, key) = (done.clone(), stuck.clone(), mountpoint.to_string());
        move || {
            let r = stat(&path);
            // Under the lock, so the timeout side either sees `done` or has already
            // marked the mount stuck and we unmark it here.
            let mut map = stuck.0.lock();
            done.store(true, Ordering::SeqCst);
            if map.get(&key).is_some_and(|d| Arc::ptr_eq(d, &done)) {
                map.remove(&key);
                tracing::info!(mountpoint = %key, "mount responds again");
            }
            r
        }
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(Ok(s))) => Some(s),
        Ok(Ok(Err(e))) => {
            tracing::debug!(mountpoint, error = %e, "statvfs failed");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(mountpoint, error = %e, "statvfs thread failed");
            None
        }
        Err(_) => {
            let mut map = stuck.0.lock();
            if !done.load(Ordering::SeqCst) {
                tracing::warn!(
                    mountpoint,
                    ?timeout,
                    "statvfs timed out; mount marked stuck until it answers"
                );
                map.insert(mountpoint.to_string(), done);
            }
            None
        }
    }
}

pub fn families(stats: &[(MountLabels, Option<FsStats>)]) -> Vec<MetricFamily> {
    let mut error = MetricFamily::gauge(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
    );
    let mut size = MetricFamily::gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
    let mut free = MetricFamily::gauge(
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
    );
    let mut avail = MetricFamily::gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    );
    let mut files = MetricFamily::gauge("node_filesystem_files", "Filesystem total file nodes.");
    let mut files_free = MetricFamily::gauge(
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
    );
    let mut readonly =
        MetricFamily::gauge("node_filesystem_readonly", "Filesystem read-only status.");
    for (m, s) in stats {
        let labels = [
            ("device", m.device.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
            ("fstype", m.fstype.as_str()),
        ];
        error.push(&labels, if s.is_some() { 0.0 } else { 1.0 });
        let Some(s) = s else { continue };
        size.push(&labels, s.size);
        free.push(&labels, s.free);
        avail.push(&labels, s.avail);
        files.push(&labels, s.files);
        files_free.push(&labels, s.files_free);
        let ro = m.options.split(',').any(|o| o == "ro");
        readonly.push(&labels, if ro { 1.0 } else { 0.0 });
    }
    vec![error, size, free, avail, files, files_free, readonly]
}

#[cfg(test)]
mod tests {
    use super::super::{DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE};
    use super::*;

    const MOUNTS: &str = "proc /proc proc rw,relatime 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vda /var/lib/docker ext4 rw 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/vdb /mnt/my\\040disk xfs ro,noatime 0 0
tmpfs /run tmpfs rw,nosuid 0 0
tmpfs /run tmpfs rw,nosuid 0 0
tmpfs /dev/shm tmpfs rw 0 0
server:/export /srv/nfs nfs4 rw,vers=4.2 0 0
";

    fn defaults() -> (Regex, Regex) {
        (
            Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).unwrap(),
            Regex::new(DEFAULT_FS_TYPES_EXCLUDE).unwrap(),
        )
    }

    #[test]
    fn default_exclusions_and_dedup_match_node_exporter() {
        let (mp, fs) = defaults();
        let m = select(
            parse_mounts(MOUNTS, Path::new("/")).unwrap(),
            Some(&mp),
            Some(&fs),
        );
        let points: Vec<_> = m.iter().map(|m| m.mountpoint.as_str()).collect();
        // /var/lib/docker itself is kept (only what is below it goes), the space is
        // unescaped, the repeated /run appears once.
        assert_eq!(
            points,
            ["/", "/var/lib/docker", "/mnt/my disk", "/run", "/srv/nfs"]
        );
    }

    #[test]
    fn mount_points_are_relative_to_rootfs() {
        let text = "/dev/vda /host ext4 rw 0 0\n/dev/vdb /host/boot ext4 rw 0 0\n/dev/vdc /hostile ext4 rw 0 0\n/dev/vdd /boot ext4 rw 0 0\n";
        let m = parse_mounts(text, Path::new("/host")).unwrap();
        let points: Vec<_> = m.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, ["/", "/boot", "/hostile", "/boot"]);
        assert_eq!(
            under_rootfs(Path::new("/host"), "/boot"),
            Path::new("/host/boot")
        );
        assert_eq!(under_rootfs(Path::new("/"), "/"), Path::new("/"));
        assert!(parse_mounts("onlytwo fields\n", Path::new("/")).is_err());
    }

    #[test]
    fn readonly_and_device_error() {
        let m = parse_mounts(MOUNTS, Path::new("/")).unwrap();
        let ro = m
            .iter()
            .find(|m| m.mountpoint == "/mnt/my disk")
            .unwrap()
            .clone();
        let nfs = m.iter().find(|m| m.fstype == "nfs4").unwrap().clone();
        let s = FsStats {
            size: 4096.0,
            free: 2048.0,
            avail: 1024.0,
            files: 10.0,
            files_free: 5.0,
        };
        let f = families(&[(ro, Some(s)), (nfs, None)]);
        assert_eq!(f[0].name, "node_filesystem_device_error");
        assert_eq!(
            f[0].samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            [0.0, 1.0]
        );
        // The failed mount has nothing but its device_error.
        for fam in &f[1..] {
            assert_eq!(fam.samples.len(), 1, "{}", fam.name);
        }
        assert_eq!(f[6].samples[0].value, 1.0);
    }

    #[tokio::test]
    async fn stats_a_real_mount_and_errors_on_a_missing_one() {
        let stuck = StuckMounts::default();
        let dir = tempfile::tempdir().unwrap();
        let mk = |mp: &str| MountLabels {
            device: "d".into(),
            mountpoint: mp.into(),
            fstype: "x".into(),
            options: "rw".into(),
        };
        let out = stat_all(
            vec![mk("/"), mk("/does/not/exist")],
            dir.path(),
            &stuck,
            Duration::from_secs(5),
        )
        .await;
        let s = out[0].1.expect("statvfs of a temp dir");
        assert!(s.size > 0.0 && s.avail <= s.free && s.free <= s.size);
        assert_eq!(out[1].1, None);
        assert!(stuck.0.lock().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_mount_is_skipped_until_its_call_returns() {
        // A statvfs that hangs for 1.5 s on one mount and answers at once elsewhere.
        static NFS_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn slow(path: &Path) -> Result<FsStats, nix::Error> {
            if path.ends_with("srv/nfs") {
                NFS_CALLS.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1500));
            }
            Ok(FsStats {
                size: 1.0,
                free: 1.0,
                avail: 1.0,
                files: 1.0,
                files_free: 1.0,
            })
        }
        let mk = |mp: &str| MountLabels {
            device: "d".into(),
            mountpoint: mp.into(),
            fstype: "nfs4".into(),
            options: "rw".into(),
        };
        let stuck = StuckMounts::default();
        let t = Duration::from_millis(100);
        let run = || {
            stat_all_with(
                vec![mk("/srv/nfs"), mk("/")],
                Path::new("/"),
                &stuck,
                t,
                slow,
            )
        };
        let out = run().await;
        assert_eq!(out[0].1, None, "timed out: device error");
        assert!(out[1].1.is_some(), "the healthy mount is still reported");
        assert!(stuck.contains("/srv/nfs"));
        // While the first call hangs, the mount is skipped without a new call.
        let out = run().await;
        assert_eq!(out[0].1, None);
        assert_eq!(
            NFS_CALLS.load(Ordering::SeqCst),
            1,
            "no second call into the hung mount"
        );
        // Once the hung call returns, the mount is stat'ed again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stuck.contains("/srv/nfs") {
            assert!(
                std::time::Instant::now() < deadline,
                "the hung call never released the mount"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = stat_all_with(
            vec![mk("/srv/nfs")],
            Path::new("/"),
            &stuck,
            Duration::from_secs(5),
            slow,
        )
        .await;
        assert!(out[0].1.is_some());
        assert_eq!(NFS_CALLS.load(Ordering::SeqCst), 2);
    }
}
