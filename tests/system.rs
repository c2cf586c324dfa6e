//! The system collector end to end: a golden scrape on the fixture procfs under
//! `tests/fixtures/proc`, and the conformance test against Debian's real
//! `prometheus-node-exporter` (1.5) on this host, which is what proves that node
//! dashboards and alerts work on our series unchanged.

use crate::support::exposition::{Exposition, LabelSet};
use crate::support::process::{free_port, poll, KillOnDrop};
use crate::support::prometheus::promtool_check_metrics;
use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Our defaults, given to node_exporter explicitly. The device filter is ours
/// (node_exporter excludes no device by default); the filesystem ones are upstream
/// node_exporter 1.5's, which Debian's package replaces with its own (it also drops
/// `/run`, `/mnt` and `/media`), so the test names them instead of relying on either
/// build's defaults.
const DEVICE_EXCLUDE: &str = "^(veth.*|br-.*|docker.*|cali.*|flannel.*|cni.*|virbr.*)$";
const MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
const FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

// ---------------------------------------------------------------------------------
// Both exporters' expositions, read by the shared reader.

#[derive(Debug, Default, Clone)]
struct Scrape {
    /// family name → TYPE
    types: BTreeMap<String, String>,
    /// (series name, sorted labels) → value
    series: BTreeMap<(String, LabelSet), f64>,
    at: Option<Instant>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let e = Exposition::parse(text);
        Scrape {
            types: e
                .families
                .into_iter()
                .filter(|(_, f)| !f.kind.is_empty())
                .map(|(n, f)| (n, f.kind))
                .collect(),
            series: e
                .samples
                .into_iter()
                .map(|x| ((x.name, x.labels), x.value))
                .collect(),
            at: None,
        }
    }

    /// Family names with the given prefix.
    fn families(&self, prefix: &str) -> BTreeSet<String> {
        self.series
            .keys()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn label_sets(&self, family: &str) -> BTreeSet<LabelSet> {
        self.series
            .keys()
            .filter(|(n, _)| n == family)
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn get(&self, family: &str, labels: &LabelSet) -> Option<f64> {
        self.series
            .get(&(family.to_string(), labels.clone()))
            .copied()
    }
}

fn write_config(dir: &Path, system: &str) -> std::path::PathBuf {
    temp_file(
        dir,
        "config.yaml",
        &format!(
            "data_dir: {}\ncollectors:\n  gpu: {{ enabled: false }}\n  system:\n{system}",
            dir.join("data").display()
        ),
    )
}

// ---------------------------------------------------------------------------------
// Golden scrape on the fixture procfs.

/// Lines of our families (HELP, TYPE, samples) from a full scrape.
fn system_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if name.starts_with("node_") || name.starts_with("sentinel_system_") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn fixture_procfs_scrape_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    // A rootfs with nothing in it: every kept mount fails statvfs, so the golden file
    // holds which mounts are kept (node_exporter's exclusions) and their labels, and
    // nothing that depends on the disks of the machine running the test.
    let rootfs = dir.path().join("no-rootfs");
    let cfg = write_config(
        dir.path(),
        &format!(
            "    procfs_path: {}\n    sysfs_path: {}\n    rootfs_path: {}\n",
            fixture("proc").display(),
            fixture("sys").display(),
            rootfs.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let got = system_lines(&scrape(&s));
    let golden = fixture("system/golden.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("tests/fixtures/system/golden.prom (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        got,
        want,
        "system families differ from {} (UPDATE_GOLDEN=1 rewrites it)",
        golden.display()
    );

    // The names, units and label sets node dashboards rely on.
    for needle in [
        "node_cpu_seconds_total{cpu=\"3\",mode=\"steal\"} 0\n",
        "node_cpu_seconds_total{cpu=\"0\",mode=\"steal\"} 0.49\n",
        "node_cpu_guest_seconds_total{cpu=\"3\",mode=\"user\"} 2.5\n",
        "node_cpu_core_throttles_total{package=\"0\",core=\"1\"} 17\n",
        "node_cpu_package_throttles_total{package=\"0\"} 42\n",
        "node_cpu_isolated{cpu=\"3\"} 1\n",
        "node_memory_MemTotal_bytes 25276510208\n",
        "node_memory_HugePages_Total 0\n",
        "node_load15 0.45\n",
        "node_filefd_maximum 2466177\n",
        "node_boot_time_seconds 1795452733\n",
        "node_network_receive_bytes_total{device=\"eth0\"} 191547041\n",
        "node_pressure_io_stalled_seconds_total 4.736485\n",
        "node_filesystem_device_error{device=\"/dev/sdb1\",mountpoint=\"/mnt/media disk\",fstype=\"xfs\"} 1\n",
    ] {
        assert!(got.contains(needle), "missing {needle:?} in\n{got}");
    }
    for absent in [
        "veth9f2c1a0",
        "docker0",
        "br-5f3e1d2c",
        "/proc\"",
        "/snap/",
        "overlay2",
    ] {
        assert!(!got.contains(absent), "{absent} should be excluded:\n{got}");
    }

    if let Some((code, report)) = promtool_check_metrics(&got) {
        // Exit 1 is a parse error; 3 is lint findings. The only findings allowed are
        // the camelCase ones on node_exporter's own meminfo names, which we keep
        // verbatim so that dashboards match.
        assert_ne!(code, Some(1), "promtool cannot parse: {report}");
        for finding in report.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                finding.starts_with("node_memory_")
                    && finding.ends_with("should be written in 'snake_case' not 'camelCase'"),
                "promtool lint: {finding}"
            );
        }
    }
}

#[test]
fn procfs_without_psi_leaves_pressure_out() {
    // Same fixture minus /proc/pressure: the families are absent, the area is fine.
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    for rel in [
        "stat",
        "meminfo",
        "loadavg",
        "sys/fs/file-nr",
        "net/dev",
        "1/mounts",
    ] {
        let to = proc.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture("proc").join(rel), to).unwrap();
    }
    let cfg = write_config(
        dir.path(),
        &format!(
            "    procfs_path: {}\n    rootfs_path: {}\n",
            proc.display(),
            dir.path().join("no-rootfs").display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let text = scrape(&s);
    assert!(!text.contains("node_pressure_"), "{text}");
    assert!(
        text.contains("sentinel_system_area_success{area=\"pressure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sentinel_collector_success{collector=\"system\"} 1"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------
// Conformance with the real node_exporter.

struct NodeExporter {
    _child: KillOnDrop,
    url: String,
}

impl NodeExporter {
    fn start(bin: &Path) -> NodeExporter {
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--web.disable-exporter-metrics",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.stat",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.filefd",
                "--collector.pressure",
                "--collector.netdev",
                "--collector.filesystem",
            ])
            .arg(format!(
                "--collector.netdev.device-exclude={DEVICE_EXCLUDE}"
            ))
            .arg(format!(
                "--collector.filesystem.mount-points-exclude={MOUNT_POINTS_EXCLUDE}"
            ))
            .arg(format!(
                "--collector.filesystem.fs-types-exclude={FS_TYPES_EXCLUDE}"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter");
        let ne = NodeExporter {
            _child: KillOnDrop(child),
            url: format!("http://127.0.0.1:{port}/metrics"),
        };
        assert!(
            poll(&ne.url, |status, _| status == 200),
            "node_exporter did not start"
        );
        ne
    }

    fn scrape(&self) -> Scrape {
        let (status, _, body) = http_get(&self.url, &[]).expect("scrape node_exporter");
        assert_eq!(status, 200);
        let mut s = Scrape::parse(&String::from_utf8(body).unwrap());
        s.at = Some(Instant::now());
        s
    }
}

/// How far one of our gauges may sit outside the range node_exporter reported just
/// before and just after our sample (see the test's doc).
fn gauge_slack(family: &str, labels: &LabelSet, ne: &Scrape) -> f64 {
    let mem_total = ne.get("node_memory_MemTotal_bytes", &vec![]).unwrap_or(0.0);
    // Sizes fixed at boot: no slack, so kB read as 1000 bytes fails by 2.4 %.
    const STATIC_MEMORY: [&str; 5] = [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_memory_VmallocTotal_bytes",
        "node_memory_Hugepagesize_bytes",
        "node_memory_CommitLimit_bytes",
    ];
    if STATIC_MEMORY.contains(&family) || family.starts_with("node_memory_DirectMap") {
        return 0.0;
    }
    if family.starts_with("node_memory_") && family.ends_with("_bytes") {
        // Memory moves with every allocation on a busy, shared machine.
        return 0.02 * mem_total;
    }
    match family {
        // Free space moves with whatever the other processes write.
        "node_filesystem_free_bytes" | "node_filesystem_avail_bytes" => {
            0.01 * ne.get("node_filesystem_size_bytes", labels).unwrap_or(0.0)
        }
        "node_filesystem_files_free" => {
            0.01 * ne.get("node_filesystem_files", labels).unwrap_or(0.0)
        }
        // Instantaneous task counts on a machine shared with compilers: this only
        // checks that they are task counts, not something scaled.
        "node_procs_running" | "node_procs_blocked" => 64.0,
        // Open files come and go with every process started.
        "node_filefd_allocated" => {
            256.0 + 0.10 * ne.get("node_filefd_allocated", labels).unwrap_or(0.0)
        }
        // Everything else (sizes, totals, load averages, boot time, read-only flags,
        // file-descriptor maximum, huge page counts) must fall inside the bracket.
        _ => 0.0,
    }
}

/// Float noise: both exporters print the shortest round-trip form of the same f64.
fn eps(v: f64) -> f64 {
    1e-9 * v.abs().max(1.0)
}

/// The `node_*` sample lines of an exposition, to tell one system snapshot from the next.
fn node_lines(body: &str) -> Vec<&str> {
    body.lines().filter(|l| l.starts_with("node_")).collect()
}

/// Conformance with node_exporter 1.5 on this host.
///
/// Both exporters read the same kernel files; they cannot read them at the same
/// instant, and ours serves the snapshot of its last run (interval 2 s). So each round
/// scrapes node_exporter, waits longer than our interval plus a run, scrapes us, and
/// scrapes node_exporter again: our sample was read between node_exporter's two.
///
/// - Series: for every `node_*` family we export, the label sets are the same as
///   node_exporter's (at either bracket), and so is the TYPE.
/// - Counters: a counter is monotonic, so ours must lie between node_exporter's two
///   values, with no tolerance beyond float noise (1e-9 relative). Across the two
///   rounds this makes our increase lie between node_exporter's increase over the inner
///   window (after₁ → before₂) and over the outer one (before₁ → after₂): the rates
///   agree over the same window, exactly up to the read times.
/// - Gauges: ours must lie within [min, max] of node_exporter's bracket, widened only
///   for gauges that move on their own: `node_memory_*_bytes` by 2 % of MemTotal,
///   except the sizes fixed at boot (MemTotal, SwapTotal, VmallocTotal, CommitLimit,
///   Hugepagesize, DirectMap*), `node_filesystem_{free,avail}_bytes` by 1 % of the
///   filesystem size,
///   `node_filesystem_files_free` by 1 % of its inodes, `node_filefd_allocated` by
///   10 % + 256, `node_procs_{running,blocked}` by 64 tasks. Everything else (load averages, boot time, sizes, totals, flags) has
///   no slack: a unit mistake (ticks, kB, µs) is off by 100×, 1024× or 10⁶×.
#[test]
fn matches_real_node_exporter() {
    let Some(bin) = peer("prometheus-node-exporter") else {
        return;
    };
    let ne = NodeExporter::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "    interval: 2s\n    timeout: 2s\n    filesystem: { mount_timeout: 1500ms }\n",
    );
    let ours = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    ours.wait_ready();
    // Longer than our interval plus one run, even on a loaded machine. The generous
    // timeouts above keep a slow run on a busy machine from failing the collector.
    let lag = Duration::from_secs(5);

    let mut rounds = Vec::new();
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let before = ne.scrape();
        std::thread::sleep(lag);
        // `/metrics` serves the last snapshot, which a loaded machine may have taken
        // before `before`: wait for one whose system part is new (CPU seconds move on
        // every run), so our read lies inside node_exporter's bracket.
        let first = scrape(&ours);
        let stale = node_lines(&first);
        let body = wait_scrape(&ours, Duration::from_secs(30), |body| {
            if node_lines(body) != stale {
                vec![]
            } else {
                vec!["a new system snapshot".into()]
            }
        });
        let mut mine = Scrape::parse(&body);
        mine.at = Some(Instant::now());
        let after = ne.scrape();
        rounds.push((before, mine, after));
    }

    let mut problems = Vec::new();
    let (_, mine, after) = &rounds[1];
    let families = mine.families("node_");
    eprintln!("comparing {} node_* families", families.len());

    // The families dashboards need are there, so this cannot pass on an empty scrape.
    for must in [
        "node_cpu_seconds_total",
        "node_cpu_guest_seconds_total",
        "node_boot_time_seconds",
        "node_context_switches_total",
        "node_forks_total",
        "node_intr_total",
        "node_procs_running",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_Buffers_bytes",
        "node_memory_Cached_bytes",
        "node_memory_SwapTotal_bytes",
        "node_memory_SwapFree_bytes",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_filefd_allocated",
        "node_filefd_maximum",
        "node_network_receive_bytes_total",
        "node_network_transmit_drop_total",
    ] {
        if !families.contains(must) {
            problems.push(format!("we do not export {must}"));
        }
    }
    for mode in [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ] {
        let l = vec![
            ("cpu".to_string(), "0".to_string()),
            ("mode".to_string(), mode.to_string()),
        ];
        if mine.get("node_cpu_seconds_total", &l).is_none() {
            problems.push(format!(
                "no node_cpu_seconds_total{{cpu=\"0\",mode=\"{mode}\"}}"
            ));
        }
    }
    // Filesystems and PSI depend on the host; when node_exporter has them, so must we.
    for prefix in [
        "node_filesystem_",
        "node_pressure_",
        "node_memory_",
        "node_cpu_",
    ] {
        for f in after.families(prefix) {
            if !families.contains(&f) {
                problems.push(format!("node_exporter exports {f}, we do not"));
            }
        }
    }
    let theirs_only: Vec<_> = after
        .families("node_")
        .difference(&families)
        .cloned()
        .collect();
    eprintln!("node_exporter families we do not export (not compared): {theirs_only:?}");

    for (round, (before, mine, after)) in rounds.iter().enumerate() {
        for family in mine.families("node_") {
            let want_type = after.types.get(&family);
            if want_type != mine.types.get(&family) {
                problems.push(format!(
                    "{family}: TYPE {:?}, node_exporter {:?}",
                    mine.types.get(&family),
                    want_type
                ));
            }
            let ours_sets = mine.label_sets(&family);
            if ours_sets != after.label_sets(&family) && ours_sets != before.label_sets(&family) {
                problems.push(format!(
                    "round {round}: {family}: series differ: ours {:?} vs node_exporter {:?}",
                    ours_sets,
                    after.label_sets(&family)
                ));
                continue;
            }
            let counter = mine.types.get(&family).map(String::as_str) == Some("counter");
            for labels in ours_sets {
                let v = mine.get(&family, &labels).unwrap();
                let (Some(b), Some(a)) =
                    (before.get(&family, &labels), after.get(&family, &labels))
                else {
                    continue; // the series appeared or vanished inside the bracket
                };
                let slack = if counter {
                    0.0
                } else {
                    gauge_slack(&family, &labels, after)
                };
                let lo = a.min(b) - slack - eps(a);
                let hi = a.max(b) + slack + eps(a);
                if !(lo..=hi).contains(&v) {
                    problems.push(format!(
                        "round {round}: {family}{labels:?} = {v}, node_exporter {b} → {a} (slack {slack})"
                    ));
                }
            }
        }
    }

    // Rates over the same window, spelled out for the counters (implied by the
    // brackets, checked so a failure names the window).
    let ((b1, m1, a1), (b2, m2, a2)) = (&rounds[0], &rounds[1]);
    let window = (m2.at.unwrap() - m1.at.unwrap()).as_secs_f64();
    let mut compared = 0;
    for family in m2.families("node_") {
        if m2.types.get(&family).map(String::as_str) != Some("counter") {
            continue;
        }
        for labels in m2.label_sets(&family) {
            let get = |s: &Scrape| s.get(&family, &labels);
            let (Some(o1), Some(o2), Some(b1), Some(a1), Some(b2), Some(a2)) =
                (get(m1), get(m2), get(b1), get(a1), get(b2), get(a2))
            else {
                continue;
            };
            compared += 1;
            let ours = (o2 - o1) / window;
            let inner = (b2 - a1) / window;
            let outer = (a2 - b1) / window;
            if ours < inner - eps(inner) || ours > outer + eps(outer) {
                problems.push(format!(
                    "{family}{labels:?}: our rate {ours}/s over {window:.1}s outside node_exporter's {inner}..{outer}"
                ));
            }
        }
    }
    eprintln!("compared {compared} counter rates over {window:.1}s");
    assert!(compared > 0, "no counters compared");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn bad_filter_regex_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "    netdev:\n      device_exclude: \"veth(\"\n");
    let err = check_refuses(&cfg);
    assert!(
        err.contains("config.yaml:6:23: collectors.system.netdev.device_exclude: invalid regex"),
        "{err}"
    );
}
