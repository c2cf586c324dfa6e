//! Unit tests of the GPU collector on the fake backend, plus the real NVML backend on
//! this machine (which has no GPU: it must come out as the absent state).

use super::backend::*;
use super::fake::FakeBackend;
use super::*;
use crate::metrics::encode::encode_text;
use std::sync::atomic::{AtomicUsize, Ordering};

fn device(i: u32) -> DeviceReading {
    DeviceReading {
        index: i,
        uuid: format!("GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"),
        name: "NVIDIA H100 80GB HBM3".into(),
        pci_bus_id: Some(format!("00000000:0{i}:00.0")),
        vbios_version: Some("96.00.74.00.01".into()),
        compute_capability: Some((9, 0)),
        utilization_gpu_percent: Some(42),
        utilization_memory_percent: Some(7),
        encoder_utilization_percent: Some(0),
        decoder_utilization_percent: Some(3),
        memory: Some(MemoryReading {
            total: 85_520_809_984,
            used: 1_048_576 * 1024,
            free: 85_520_809_984 - 1_048_576 * 1024 - 536_870_912,
            reserved: Some(536_870_912),
        }),
        temperature_celsius: Some(35),
        power_usage_milliwatts: Some(71_350),
        power_limit_milliwatts: Some(700_000),
        enforced_power_limit_milliwatts: Some(650_000),
        energy_millijoules: Some(123_456_789),
        sm_clock_mhz: Some(1980),
        memory_clock_mhz: Some(2619),
        fans_percent: vec![(0, 30), (1, 45)],
        clocks_event_reasons: Some(0x1 | 0x4),
        supported_clocks_event_reasons: Some(0x1ff & !0x100),
        ecc: EccReading {
            corrected_volatile: Some(0),
            uncorrected_volatile: Some(0),
            corrected_aggregate: Some(5),
            uncorrected_aggregate: Some(1),
        },
        pcie_rx_kilobytes_per_second: Some(1000),
        pcie_tx_kilobytes_per_second: Some(2),
        pcie_replays: Some(3),
        performance_state: Some(0),
        processes: Some(vec![
            ProcessReading {
                pid: 4242,
                used_memory_bytes: Some(512 * 1_048_576),
                gpu_instance_id: None,
            },
            ProcessReading {
                pid: 99,
                used_memory_bytes: None,
                gpu_instance_id: None,
            },
        ]),
        mig: Some(MigReading::default()),
    }
}

/// A device that supports nothing beyond its identity.
fn bare_device(i: u32) -> DeviceReading {
    DeviceReading {
        index: i,
        uuid: format!("GPU-bare-{i}"),
        name: "NVIDIA GeForce RTX 4090".into(),
        ..Default::default()
    }
}

fn config() -> GpuConfig {
    GpuConfig {
        procfs_path: "/nonexistent-procfs".into(),
        ..Default::default()
    }
}

fn collector_on(fake: &FakeBackend, cfg: &GpuConfig) -> State {
    let f = fake.clone();
    let factory: BackendFactory = Box::new(move || Ok(Box::new(f.clone()) as Box<dyn GpuBackend>));
    let c = GpuCollector::with_factory(cfg, factory);
    Arc::try_unwrap(c.state)
        .ok()
        .expect("sole owner")
        .into_inner()
}

fn render(f: &[MetricFamily]) -> String {
    let mut s = String::new();
    encode_text(f, &mut s);
    s
}

fn run_text(s: &mut State) -> String {
    render(&s.run(
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ))
}

/// The value of the series written exactly as `series` (name plus label block).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("numeric value"))
}

fn base(i: u32) -> String {
    format!(
        "gpu=\"{i}\",uuid=\"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd\",name=\"NVIDIA H100 80GB HBM3\""
    )
}

#[test]
fn several_devices_report_in_base_units() {
    let fake = FakeBackend::new(vec![device(0), device(1)]);
    let mut s = collector_on(&fake, &config());
    let t = run_text(&mut s);
    assert_eq!(value(&t, "gpu_nvml_up"), Some(1.0), "{t}");
    assert_eq!(value(&t, "gpu_devices"), Some(2.0));
    for i in 0..2 {
        let b = base(i);
        let v = |m: &str| value(&t, &format!("{m}{{{b}}}"));
        assert_eq!(v("gpu_utilization_ratio"), Some(0.42));
        assert_eq!(v("gpu_memory_utilization_ratio"), Some(0.07));
        assert_eq!(v("gpu_memory_total_bytes"), Some(85_520_809_984.0));
        assert_eq!(v("gpu_memory_used_bytes"), Some(1_073_741_824.0));
        assert_eq!(v("gpu_memory_reserved_bytes"), Some(536_870_912.0));
        assert_eq!(v("gpu_temperature_celsius"), Some(35.0));
        assert_eq!(v("gpu_power_usage_watts"), Some(71.35));
        assert_eq!(v("gpu_power_limit_watts"), Some(700.0));
        assert_eq!(v("gpu_enforced_power_limit_watts"), Some(650.0));
        assert_eq!(v("gpu_energy_joules_total"), Some(123_456.789));
        assert_eq!(v("gpu_sm_clock_hertz"), Some(1_980_000_000.0));
        assert_eq!(v("gpu_memory_clock_hertz"), Some(2_619_000_000.0));
        assert_eq!(v("gpu_pcie_rx_bytes_per_second"), Some(1_024_000.0));
        assert_eq!(v("gpu_pcie_tx_bytes_per_second"), Some(2048.0));
        assert_eq!(v("gpu_performance_state"), Some(0.0));
        assert_eq!(v("gpu_pcie_replays_total"), Some(3.0));
        assert_eq!(v("gpu_mig_mode_current"), Some(0.0));
        assert_eq!(
            value(&t, &format!("gpu_fan_speed_ratio{{{b},fan=\"1\"}}")),
            Some(0.45)
        );
        assert_eq!(
            value(
                &t,
                &format!("gpu_ecc_errors_aggregate_total{{{b},error_type=\"uncorrected\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&t, &format!("gpu_device_up{{gpu=\"{i}\"}}")),
            Some(1.0)
        );
        let info = format!(
            "gpu_info{{{b},pci_bus_id=\"00000000:0{i}:00.0\",driver_version=\"550.54.15\",cuda_version=\"12.4\",vbios_version=\"96.00.74.00.01\",compute_capability=\"9.0\"}}"
        );
        assert_eq!(value(&t, &info), Some(1.0), "{t}");
    }
    // One series per supported reason, 0/1; display_clock_setting is unsupported here.
    let r = |reason: &str| {
        value(
            &t,
            &format!(
                "gpu_clocks_event_reason_active{{{},reason=\"{reason}\"}}",
                base(0)
            ),
        )
    };
    assert_eq!(r("gpu_idle"), Some(1.0));
    assert_eq!(r("sw_power_cap"), Some(1.0));
    assert_eq!(r("hw_thermal_slowdown"), Some(0.0));
    assert_eq!(r("display_clock_setting"), None);
}

#[test]
fn device_failing_mid_run_drops_only_its_series() {
    let fake = FakeBackend::new(vec![device(0), device(1)]);
    let mut s = collector_on(&fake, &config());
    let before = run_text(&mut s);
    assert!(before.contains(&base(1)));
    fake.0.lock().failing.insert(1);
    let t = run_text(&mut s);
    assert_eq!(value(&t, "gpu_nvml_up"), Some(1.0));
    assert_eq!(
        value(&t, "gpu_devices"),
        Some(2.0),
        "the failing GPU still counts"
    );
    assert_eq!(value(&t, "gpu_device_up{gpu=\"1\"}"), Some(0.0));
    assert_eq!(value(&t, "gpu_device_up{gpu=\"0\"}"), Some(1.0));
    assert!(!t.contains(&base(1)), "no series of the failed GPU: {t}");
    assert_eq!(
        value(&t, &format!("gpu_temperature_celsius{{{}}}", base(0))),
        Some(35.0)
    );
    fake.0.lock().failing.clear();
    let t = run_text(&mut s);
    assert_eq!(value(&t, "gpu_device_up{gpu=\"1\"}"), Some(1.0));
    assert!(t.contains(&base(1)));
}

#[test]
fn unsupported_values_are_left_out_not_zero() {
    let fake = FakeBackend::new(vec![bare_device(0)]);
    let mut s = collector_on(&fake, &config());
    let fams = s.run(Instant::now(), SystemTime::now());
    let names: BTreeSet<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["gpu_nvml_up", "gpu_devices", "gpu_device_up", "gpu_info"]),
        "{}",
        render(&fams)
    );
    let t = render(&fams);
    assert!(
        t.contains("pci_bus_id=\"\""),
        "unknown info labels are empty: {t}"
    );
}

#[test]
fn mig_instances_report_memory_once_per_gpu_instance() {
    let mut d = device(0);
    let inst = |gi: u32, ci: u32, used: u64| MigInstanceReading {
        gpu_instance_id: gi,
        compute_instance_id: ci,
        uuid: format!("MIG-{gi}-{ci}"),
        name: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".into(),
        memory: Some(MemoryReading {
            total: 10_000,
            used,
            free: 10_000 - used,
            reserved: None,
        }),
    };
    d.mig = Some(MigReading {
        current_enabled: true,
        pending_enabled: true,
        instances: vec![inst(7, 0, 100), inst(7, 1, 100), inst(9, 0, 300)],
    });
    d.utilization_gpu_percent = None; // NVML gives no whole-GPU utilisation under MIG
    d.processes = Some(vec![ProcessReading {
        pid: 1,
        used_memory_bytes: Some(100),
        gpu_instance_id: Some(9),
    }]);
    let fake = FakeBackend::new(vec![d]);
    let mut s = collector_on(&fake, &config());
    let t = run_text(&mut s);
    let b = base(0);
    assert_eq!(
        value(&t, &format!("gpu_mig_mode_current{{{b}}}")),
        Some(1.0)
    );
    assert_eq!(
        value(&t, &format!("gpu_mig_mode_pending{{{b}}}")),
        Some(1.0)
    );
    assert_eq!(t.matches("gpu_mig_info{").count(), 3);
    assert_eq!(
        value(
            &t,
            &format!("gpu_mig_info{{{b},mig=\"7\",compute_instance=\"1\",mig_uuid=\"MIG-7-1\",profile=\"1g.10gb\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(t.matches("gpu_mig_memory_used_bytes{").count(), 2);
    assert_eq!(
        value(&t, &format!("gpu_mig_memory_used_bytes{{{b},mig=\"9\"}}")),
        Some(300.0)
    );
    assert_eq!(
        value(
            &t,
            &format!(
                "gpu_process_memory_used_bytes{{{b},pid=\"1\",process_name=\"unknown\",mig=\"9\"}}"
            )
        ),
        Some(100.0)
    );
    assert_eq!(value(&t, &format!("gpu_utilization_ratio{{{b}}}")), None);
}

#[test]
fn process_names_come_from_procfs_comm() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("4242")).expect("mkdir");
    std::fs::write(dir.path().join("4242/comm"), "python3\n").expect("write");
    assert_eq!(process_name(dir.path(), 4242), "python3");
    assert_eq!(
        process_name(dir.path(), 1),
        "unknown",
        "gone or foreign pid"
    );
    // The real procfs names this test process.
    assert!(!process_name(Path::new("/proc"), std::process::id()).is_empty());

    let cfg = GpuConfig {
        procfs_path: dir.path().to_path_buf(),
        ..Default::default()
    };
    let fake = FakeBackend::new(vec![device(0)]);
    let mut s = collector_on(&fake, &cfg);
    let t = run_text(&mut s);
    let b = base(0);
    assert_eq!(value(&t, &format!("gpu_processes{{{b}}}")), Some(2.0));
    assert_eq!(
        value(
            &t,
            &format!("gpu_process_memory_used_bytes{{{b},pid=\"4242\",process_name=\"python3\"}}")
        ),
        Some(536_870_912.0)
    );
    assert!(
        !t.contains("pid=\"99\""),
        "a process without attributable memory has no memory series: {t}"
    );
}

#[test]
fn processes_beyond_the_cap_fold_into_other() {
    let mut d = device(0);
    d.processes = Some(
        (1..=5)
            .map(|pid| ProcessReading {
                pid,
                used_memory_bytes: Some(u64::from(pid) * 10),
                gpu_instance_id: None,
            })
            .collect(),
    );
    let cfg = GpuConfig {
        max_processes_per_gpu: 2,
        ..config()
    };
    let fake = FakeBackend::new(vec![d]);
    let mut s = collector_on(&fake, &cfg);
    let t = run_text(&mut s);
    let b = base(0);
    assert_eq!(
        t.matches("gpu_process_memory_used_bytes{").count(),
        3,
        "{t}"
    );
    assert!(
        t.contains("pid=\"5\"") && t.contains("pid=\"4\""),
        "largest kept"
    );
    assert_eq!(
        value(
            &t,
            &format!("gpu_process_memory_used_bytes{{{b},pid=\"other\",process_name=\"other\"}}")
        ),
        Some(60.0)
    );
    assert_eq!(value(&t, &format!("gpu_processes{{{b}}}")), Some(5.0));
}

#[test]
fn optional_readings_are_not_requested_when_off() {
    let cfg = GpuConfig {
        processes: false,
        pcie_throughput: false,
        ..config()
    };
    let fake = FakeBackend::new(vec![device(0)]);
    let mut s = collector_on(&fake, &cfg);
    let t = run_text(&mut s);
    assert_eq!(
        fake.0.lock().last_want,
        Some(Want {
            processes: false,
            pcie: false
        })
    );
    assert!(
        !t.contains("gpu_process") && !t.contains("_bytes_per_second"),
        "{t}"
    );
}

#[test]
fn xid_events_increment_counters_and_stamp_time() {
    let fake = FakeBackend::new(vec![device(0), device(1)]);
    let mut s = collector_on(&fake, &config());
    let t = run_text(&mut s);
    assert!(
        !t.contains("gpu_xid_errors_total"),
        "no series before any event"
    );
    let ev = |index, xid| XidEvent {
        index,
        uuid: None,
        xid,
    };
    fake.0
        .lock()
        .xid_queue
        .extend([ev(1, Some(79)), ev(1, None)]);
    let t = run_text(&mut s);
    let l = |xid: &str| format!("{{{},xid=\"{xid}\"}}", base(1));
    assert_eq!(
        value(&t, &format!("gpu_xid_errors_total{}", l("79"))),
        Some(1.0)
    );
    assert_eq!(
        value(&t, &format!("gpu_xid_errors_total{}", l("unknown"))),
        Some(1.0)
    );
    assert_eq!(
        value(&t, &format!("gpu_last_xid_timestamp_seconds{}", l("79"))),
        Some(1_700_000_000.0)
    );
    fake.0
        .lock()
        .xid_queue
        .extend([ev(1, Some(79)), ev(1, Some(79))]);
    let t = run_text(&mut s);
    assert_eq!(
        value(&t, &format!("gpu_xid_errors_total{}", l("79"))),
        Some(3.0)
    );
    // Counters survive a run where nothing new happened, and a lost NVML.
    fake.0.lock().unavailable = true;
    let t = run_text(&mut s);
    assert_eq!(value(&t, "gpu_nvml_up"), Some(0.0));
    assert_eq!(
        value(&t, &format!("gpu_xid_errors_total{}", l("79"))),
        Some(3.0)
    );
}

/// Issue 13 §2: an XID series is born from an event, so it carries its creation time
/// (the first event's), which OpenMetrics exposes as `_created` and the rule store turns
/// into a zero, letting the first XID of a new value count in `increase()`.
#[test]
fn xid_series_carry_the_time_of_their_first_event_as_creation_time() {
    let fake = FakeBackend::new(vec![device(0)]);
    let mut s = collector_on(&fake, &config());
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    fake.0.lock().xid_queue.push_back(XidEvent {
        index: 0,
        uuid: None,
        xid: Some(79),
    });
    let _ = s.run(Instant::now(), at(1_700_000_000));
    fake.0.lock().xid_queue.push_back(XidEvent {
        index: 0,
        uuid: None,
        xid: Some(79),
    });
    let families = s.run(Instant::now(), at(1_700_000_060));
    let xid = families
        .iter()
        .find(|f| f.name == "gpu_xid_errors_total")
        .expect("xid family");
    assert_eq!(xid.samples.len(), 1);
    assert_eq!(xid.samples[0].value, 2.0);
    assert_eq!(xid.samples[0].created, Some(1_700_000_000.0));
    // Gauges never carry one.
    let last = families
        .iter()
        .find(|f| f.name == "gpu_last_xid_timestamp_seconds")
        .expect("last-seen family");
    assert_eq!(last.samples[0].created, None);
}

#[test]
fn distinct_xid_values_per_device_are_capped() {
    let fake = FakeBackend::new(vec![device(0)]);
    let mut s = collector_on(&fake, &config());
    fake.0.lock().xid_queue.extend((0..40).map(|x| XidEvent {
        index: 0,
        uuid: None,
        xid: Some(x),
    }));
    let t = run_text(&mut s);
    assert_eq!(
        t.matches("gpu_xid_errors_total{").count(),
        MAX_XIDS_PER_DEVICE + 1
    );
    assert_eq!(
        value(
            &t,
            &format!("gpu_xid_errors_total{{{},xid=\"other\"}}", base(0))
        ),
        Some((40 - MAX_XIDS_PER_DEVICE) as f64)
    );
}

#[test]
fn absent_nvml_is_a_quiet_state_retried_slowly() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let present = Arc::new(Mutex::new(false));
    let fake = FakeBackend::new(vec![device(0)]);
    let (a, p, f) = (attempts.clone(), present.clone(), fake.clone());
    let factory: BackendFactory = Box::new(move || {
        a.fetch_add(1, Ordering::SeqCst);
        if *p.lock() {
            Ok(Box::new(f.clone()) as Box<dyn GpuBackend>)
        } else {
            Err(BackendError::Unavailable(
                "libnvidia-ml.so.1: cannot open shared object file".into(),
            ))
        }
    });
    let c = GpuCollector::with_factory(&config(), factory);
    let mut s = c.state.lock();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let t = render(&s.run(t0, wall));
    assert_eq!(value(&t, "gpu_nvml_up"), Some(0.0));
    assert_eq!(value(&t, "gpu_devices"), Some(0.0));
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    s.run(t0 + Duration::from_secs(60), wall);
    s.run(t0 + Duration::from_secs(299), wall);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no retry before 5 minutes"
    );
    *present.lock() = true;
    let t = render(&s.run(t0 + Duration::from_secs(300), wall));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        value(&t, "gpu_nvml_up"),
        Some(1.0),
        "a driver loaded later is picked up"
    );
    assert_eq!(value(&t, "gpu_devices"), Some(1.0));
    // The driver goes away: absent again, and the next attempt waits the retry pace.
    fake.0.lock().unavailable = true;
    let t = render(&s.run(t0 + Duration::from_secs(310), wall));
    assert_eq!(value(&t, "gpu_nvml_up"), Some(0.0));
    fake.0.lock().unavailable = false;
    s.run(t0 + Duration::from_secs(320), wall);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let t = render(&s.run(t0 + Duration::from_secs(610), wall));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(value(&t, "gpu_nvml_up"), Some(1.0));
}

/// This machine has no NVIDIA driver: the real backend must say "unavailable" and the
/// collector must report the absent state, without panicking. On a GPU host the same
/// test checks the present state instead.
#[tokio::test]
async fn real_nvml_on_this_machine() {
    let cfg = GpuConfig::default();
    let ctx = BuildContext {
        registry: crate::metrics::registry::Registry::new(),
        data_dir: std::env::temp_dir(),
        outputs: Default::default(),
    };
    let c = GpuCollector::from_config(&cfg, &ctx).expect("auto builds the collector");
    let fams = c.collect().await.expect("absent NVML is not a failure");
    let t = render(&fams);
    match nvml::NvmlBackend::init(None, false) {
        Err(BackendError::Unavailable(why)) => {
            assert!(!why.is_empty());
            assert_eq!(value(&t, "gpu_nvml_up"), Some(0.0), "{t}");
            assert_eq!(value(&t, "gpu_devices"), Some(0.0), "{t}");
        }
        Err(e) => panic!("init may only fail as unavailable: {e}"),
        Ok(_) => assert_eq!(value(&t, "gpu_nvml_up"), Some(1.0), "{t}"),
    }
    // A second run on the same collector does not retry (and does not log) again.
    assert!(c.collect().await.is_ok());
}

#[test]
fn a_library_path_that_does_not_exist_is_absent() {
    let r = nvml::NvmlBackend::init(Some(Path::new("/nonexistent/libnvidia-ml.so.1")), true);
    assert!(matches!(r, Err(BackendError::Unavailable(_))));
    let cfg = GpuConfig {
        enabled: Toggle::On,
        library_path: Some("/nonexistent/libnvidia-ml.so.1".into()),
        ..Default::default()
    };
    let ctx = BuildContext {
        registry: crate::metrics::registry::Registry::new(),
        data_dir: std::env::temp_dir(),
        outputs: Default::default(),
    };
    let c = GpuCollector::from_config(&cfg, &ctx).expect("on builds the collector");
    let t = render(&c.state.lock().run(Instant::now(), SystemTime::now()));
    assert_eq!(value(&t, "gpu_nvml_up"), Some(0.0));
    assert_eq!(value(&t, "gpu_devices"), Some(0.0));
    let off = GpuConfig {
        enabled: Toggle::Off,
        ..Default::default()
    };
    assert!(GpuCollector::from_config(&off, &ctx).is_none());
}

/// Every family, fully populated, through the text encoder: names and labels follow
/// the Prometheus conventions, and promtool agrees where it is installed.
#[test]
fn exposition_follows_naming_conventions() {
    let mut d = device(0);
    d.mig = Some(MigReading {
        current_enabled: true,
        pending_enabled: false,
        instances: vec![MigInstanceReading {
            gpu_instance_id: 1,
            compute_instance_id: 0,
            uuid: "MIG-x".into(),
            name: "NVIDIA A100 MIG 3g.20gb".into(),
            memory: Some(MemoryReading::default()),
        }],
    });
    let fake = FakeBackend::new(vec![d, device(1)]);
    fake.0.lock().xid_queue.push_back(XidEvent {
        index: 0,
        uuid: None,
        xid: Some(48),
    });
    let mut s = collector_on(&fake, &config());
    let fams = s.run(Instant::now(), SystemTime::now());
    let emitted: BTreeSet<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    let listed: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(emitted, listed, "the fixture exercises every family");
    let name_re = regex::Regex::new("^gpu_[a-z0-9_]+$").expect("regex");
    let label_re = regex::Regex::new("^[a-z_][a-z0-9_]*$").expect("regex");
    for f in &fams {
        assert!(name_re.is_match(&f.name), "{}", f.name);
        assert_eq!(
            f.kind == MetricType::Counter,
            f.name.ends_with("_total"),
            "{}",
            f.name
        );
        for bad in ["_percent", "_mhz", "_mw", "_kb", "milli", "kilo", "mega"] {
            assert!(!f.name.contains(bad), "non-base unit in {}", f.name);
        }
        assert!(!f.help.is_empty());
        for sample in &f.samples {
            let names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len(), "duplicate label in {}", f.name);
            for n in names {
                assert!(label_re.is_match(n) && !n.starts_with("__"), "{n}");
            }
            assert!(sample.value.is_finite());
        }
    }
    let text = render(&fams);
    let promtool = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    match promtool {
        Some(p) => {
            let mut child = std::process::Command::new(p)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn promtool");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is required in CI"
        ),
    }
}

#[test]
fn pure_helpers() {
    assert_eq!(cuda_version(12040), "12.4");
    assert_eq!(cuda_version(11080), "11.8");
    assert_eq!(cuda_version(13010), "13.1");
    assert_eq!(mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb"), "1g.10gb");
    assert_eq!(mig_profile("odd name"), "odd name");
}

#[test]
fn config_defaults_validate_and_bad_values_are_named() {
    assert_eq!(GpuConfig::default().validate(), Ok(()));
    let cases: &[(&str, GpuConfig)] = &[
        (
            "init_retry_interval",
            GpuConfig {
                init_retry_interval: Dur(Duration::from_millis(10)),
                ..Default::default()
            },
        ),
        (
            "max_processes_per_gpu",
            GpuConfig {
                max_processes_per_gpu: 0,
                ..Default::default()
            },
        ),
        (
            "library_path",
            GpuConfig {
                library_path: Some(PathBuf::new()),
                ..Default::default()
            },
        ),
        (
            "timeout",
            GpuConfig {
                timeout: Some(Dur::secs(10)),
                ..Default::default()
            },
        ),
    ];
    for (field, cfg) in cases {
        assert_eq!(cfg.validate().map_err(|e| e.path), Err(field.to_string()));
    }
    let yaml = "enabled: true\ninterval: 10s\nlibrary_path: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\ninit_retry_interval: 1m\nprocesses: false\nmax_processes_per_gpu: 8\nprocfs_path: /host/proc\nxid_events: false\npcie_throughput: false\n";
    let cfg: GpuConfig = serde_yaml_ng::from_str(yaml).expect("parses");
    assert_eq!(cfg.enabled, Toggle::On);
    assert_eq!(cfg.max_processes_per_gpu, 8);
    assert_eq!(cfg.validate(), Ok(()));
    assert!(serde_yaml_ng::from_str::<GpuConfig>("lib_path: x\n").is_err());
}
