//! The metric contract: the metric names the dashboards may query (`CONTRACT`), read from
//! every panel and variable query with `promql-parser`, checked against what the binary
//! serves and against the contract sample (`tests/fixtures/dashboards/contract.prom`);
//! and every query sent to a real Prometheus (Debian's `prometheus`) scraping the real
//! binary, and scraping the sample. Neighbours: `dashboards` reads the JSON.

use crate::support::dashboards::{dashboards, substitute};
use crate::support::exposition::Exposition;
use crate::support::prometheus::Prometheus;
use crate::util::{self, percent_encode, temp_file, Sentinel};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Metric names the dashboards may query. Histograms are listed by base name (their
/// `_bucket`, `_sum` and `_count` series are accepted). `up` and `ALERTS` come from
/// Prometheus itself (and `ALERTS` also from the sidecar's own rule engine).
const CONTRACT: &[&str] = &[
    // system (node_exporter names)
    "node_cpu_seconds_total",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_free_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_files",
    "node_filesystem_files_free",
    "node_filesystem_readonly",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_network_receive_drop_total",
    "node_network_transmit_drop_total",
    "node_filefd_allocated",
    "node_filefd_maximum",
    "node_boot_time_seconds",
    "node_pressure_cpu_waiting_seconds_total",
    "node_pressure_io_waiting_seconds_total",
    "node_pressure_memory_waiting_seconds_total",
    // gpu (labels gpu, uuid, name; names as the GPU collector writes them)
    "gpu_nvml_up",
    "gpu_devices",
    "gpu_info",
    "gpu_utilization_ratio",
    "gpu_memory_utilization_ratio",
    "gpu_memory_used_bytes",
    "gpu_memory_free_bytes",
    "gpu_memory_total_bytes",
    "gpu_temperature_celsius",
    "gpu_power_usage_watts",
    "gpu_power_limit_watts",
    "gpu_sm_clock_hertz",
    "gpu_memory_clock_hertz",
    "gpu_fan_speed_ratio",
    "gpu_clocks_event_reason_active",
    "gpu_ecc_errors_volatile_total",
    "gpu_xid_errors_total",
    "gpu_pcie_rx_bytes_per_second",
    "gpu_pcie_tx_bytes_per_second",
    "gpu_processes",
    "gpu_process_memory_used_bytes",
    // workflow
    "comfyui_up",
    "comfyui_api_request_duration_seconds",
    "comfyui_queue_running",
    "comfyui_queue_pending",
    "comfyui_prompts_total",
    "comfyui_prompt_duration_seconds",
    "comfyui_nodes_executed_total",
    "comfyui_nodes_cached_total",
    "comfyui_node_errors_total",
    "comfyui_vram_total_bytes",
    "comfyui_vram_free_bytes",
    "comfyui_ram_total_bytes",
    "comfyui_ram_free_bytes",
    // recovery
    "recovery_operations_total",
    "recovery_attempts_total",
    "recovery_operation_seconds_total",
    "recovery_overhead_seconds_total",
    "recovery_duration_seconds",
    "recovery_persistence_seconds",
    "recovery_circuit_breaker_state",
    "recovery_circuit_breaker_open_since_seconds",
    "recovery_circuit_breaker_transitions_total",
    // quality and probes
    "quality_score",
    "quality_images_checked_total",
    "quality_image_failures_total",
    "quality_image_sharpness",
    "probe_success",
    "probe_duration_seconds",
    "probe_http_duration_seconds",
    "probe_ssl_earliest_cert_expiry",
    // the sidecar itself
    "sentinel_build_info",
    "sentinel_collector_success",
    "sentinel_collector_duration_seconds",
    "sentinel_series_dropped_total",
    "sentinel_config_last_reload_successful",
    "sentinel_ingest_events_total",
    "sentinel_notifications_total",
    "sentinel_notification_duration_seconds",
    "sentinel_outbox_depth",
    "sentinel_notifications_dead_total",
    "sentinel_heartbeat_last_success_timestamp_seconds",
    "sentinel_rule_evaluation_duration_seconds",
    "ALERTS",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    // Prometheus's own
    "up",
];

/// The histograms among `CONTRACT`.
const HISTOGRAMS: &[&str] = &[
    "comfyui_api_request_duration_seconds",
    "comfyui_prompt_duration_seconds",
    "recovery_duration_seconds",
    "recovery_persistence_seconds",
    "quality_score",
    "quality_image_sharpness",
    "sentinel_notification_duration_seconds",
    "sentinel_rule_evaluation_duration_seconds",
];

/// Metric names a query may use, with histogram bases kept apart.
#[derive(Debug, Default)]
struct KnownMetrics {
    names: BTreeSet<String>,
    histograms: BTreeSet<String>,
}

impl KnownMetrics {
    fn allows(&self, name: &str) -> bool {
        if self.names.contains(name) {
            return true;
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| self.histograms.contains(base))
        })
    }
}

/// The metric names the dashboards may use: today the written contract. To check against
/// what the binary really serves instead, return `live_metrics()`: the one place to change.
fn known_metrics() -> KnownMetrics {
    KnownMetrics {
        names: CONTRACT.iter().map(|s| s.to_string()).collect(),
        histograms: HISTOGRAMS.iter().map(|s| s.to_string()).collect(),
    }
}

/// What a freshly started sidecar serves on `/metrics`, plus the series Prometheus adds
/// itself (`up`, and `ALERTS` from its rule evaluation).
fn live_metrics() -> KnownMetrics {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sidecar_config(dir.path());
    let sentinel = Sentinel::start(&["--config", config.to_str().expect("utf-8 path")]);
    sentinel.wait_ready();
    let mut known = metrics_from_exposition(&util::scrape(&sentinel));
    known.names.extend(["up".to_string(), "ALERTS".to_string()]);
    known
}

/// A config for a test sidecar that keeps its data out of the repository.
fn sidecar_config(dir: &Path) -> PathBuf {
    temp_file(
        dir,
        "sentinel.yaml",
        &format!("data_dir: {:?}\n", dir.join("data").display().to_string()),
    )
}

/// Metric names and histogram bases from the `# TYPE` lines of a text exposition.
fn metrics_from_exposition(text: &str) -> KnownMetrics {
    let e = Exposition::parse(text);
    KnownMetrics {
        histograms: e.histograms(),
        names: e
            .families
            .into_iter()
            .filter(|(_, f)| !f.kind.is_empty())
            .map(|(n, _)| n)
            .collect(),
    }
}

/// Metric names a dashboard's PromQL expression reads: the selectors of its syntax tree
/// (Grafana's variables substituted first, as for the queries sent to Prometheus).
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            let selector = match e {
                Expr::VectorSelector(v) => Some(v),
                Expr::MatrixSelector(m) => Some(&m.vs),
                _ => None,
            };
            self.0.extend(selector.and_then(selector_name));
            Ok(true)
        }
    }
    let tree = promql_parser::parser::parse(&substitute(expr, "1m", 15))?;
    let mut names = Names(BTreeSet::new());
    let Ok(_) = walk_expr(&mut names, &tree);
    Ok(names.0)
}

/// A selector's metric name, written before the braces or as `__name__="..."`.
fn selector_name(v: &VectorSelector) -> Option<String> {
    v.name.clone().or_else(|| {
        v.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone())
    })
}

#[test]
fn every_queried_metric_is_in_the_contract() {
    let known = known_metrics();
    let mut unknown = Vec::new();
    for d in dashboards() {
        for (title, _, expr) in d.queries() {
            match metric_names(&expr) {
                Ok(names) => unknown.extend(
                    names
                        .into_iter()
                        .filter(|name| !known.allows(name))
                        .map(|name| format!("{}: {title}: {name} in {expr}", d.file)),
                ),
                Err(e) => unknown.push(format!("{}: {title}: {expr} does not parse: {e}", d.file)),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics outside the contract:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn metric_name_extraction() {
    // Table of expressions and the metric names a reader sees in them.
    let cases: &[(&str, &[&str])] = &[
        ("up", &["up"]),
        (
            r#"sum by (instance, le) (rate(a_bucket{x=~"y|z", w="by (q)"}[5m]))"#,
            &["a_bucket"],
        ),
        (
            "1 - b / on (instance) group_left (mode) c offset 10m",
            &["b", "c"],
        ),
        ("count(x == 2) or vector(0)", &["x"]),
        (
            "time() - node_boot_time_seconds",
            &["node_boot_time_seconds"],
        ),
        (
            "histogram_quantile(0.95, sum without (pod) (rate(h_bucket[1m])))",
            &["h_bucket"],
        ),
        (
            r#"{__name__="by_name"} + rate(v{job=~"$job"}[$__rate_interval])"#,
            &["by_name", "v"],
        ),
        ("max_over_time(s[1h:5m]) and ignoring (q) t", &["s", "t"]),
    ];
    for (expr, want) in cases {
        let got: Vec<String> = metric_names(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .into_iter()
            .collect();
        assert_eq!(got, want.to_vec(), "{expr}");
    }
    let exposition =
        "# TYPE a_total counter\na_total 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n";
    let k = metrics_from_exposition(exposition);
    assert!(k.allows("a_total") && k.allows("h_bucket") && k.allows("h_count") && !k.allows("a"));
}

/// Where the running binary already serves a contract metric, it has the type the
/// dashboards assume (a histogram queried through `_bucket`, or not).
#[test]
fn contract_agrees_with_the_live_exposition() {
    let contract = known_metrics();
    let live = live_metrics();
    assert!(live.names.contains("sentinel_build_info"), "{live:?}");
    for name in live.names.intersection(&contract.names) {
        assert_eq!(
            live.histograms.contains(name),
            contract.histograms.contains(name),
            "{name}: histogram in one of contract and /metrics only"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Every query in a real Prometheus.

// Why a series the dashboards read is absent from the test's Prometheus.
const FILESYSTEMS: &str = "a container whose only filesystems are overlay and tmpfs (which the disk panels leave out, as the rules do) has none";
const PRESSURE: &str = "served on kernels with PSI (/proc/pressure) only";
const GPU_DEVICE: &str =
    "per-device GPU series need an NVIDIA GPU, which test hosts lack (gpu_devices is 0)";
const COMFYUI_SERVER: &str =
    "needs a ComfyUI answering (unread values are left out, never 0); the test runs none";
const RECOVERY: &str =
    "recovery series are labelled by operation or breaker and appear with the first event pushed to the ingest API; the test pushes none";
const QUALITY: &str =
    "quality series appear with the first pushed score or checked output image; the test has neither";
const PROBES: &str = "probe series need configured probe targets; the test configures none";
const RECEIVERS: &str = "per-receiver notification series need receivers; the test config has none";
const HEARTBEAT: &str = "needs a heartbeat receiver to deliver to; the test config has none";
const DROPPED: &str =
    "appears per family with the first series over the cap; nothing is dropped here";

/// Metrics whose queries may come back empty in this test, with the reason. A query is
/// allowed to be empty when it reads one of these; every other query must return data.
/// When a listed metric is served although its reason holds on every host (not one of
/// `HOST_DEPENDENT`), the test fails: the entry is stale and must go.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    ("node_filesystem_size_bytes", FILESYSTEMS),
    ("node_filesystem_avail_bytes", FILESYSTEMS),
    ("node_filesystem_files", FILESYSTEMS),
    ("node_filesystem_files_free", FILESYSTEMS),
    ("node_filesystem_readonly", FILESYSTEMS),
    ("node_pressure_cpu_waiting_seconds_total", PRESSURE),
    ("node_pressure_io_waiting_seconds_total", PRESSURE),
    ("node_pressure_memory_waiting_seconds_total", PRESSURE),
    ("gpu_info", GPU_DEVICE),
    ("gpu_utilization_ratio", GPU_DEVICE),
    ("gpu_memory_utilization_ratio", GPU_DEVICE),
    ("gpu_memory_used_bytes", GPU_DEVICE),
    ("gpu_memory_free_bytes", GPU_DEVICE),
    ("gpu_memory_total_bytes", GPU_DEVICE),
    ("gpu_temperature_celsius", GPU_DEVICE),
    ("gpu_power_usage_watts", GPU_DEVICE),
    ("gpu_power_limit_watts", GPU_DEVICE),
    ("gpu_sm_clock_hertz", GPU_DEVICE),
    ("gpu_memory_clock_hertz", GPU_DEVICE),
    ("gpu_fan_speed_ratio", GPU_DEVICE),
    ("gpu_clocks_event_reason_active", GPU_DEVICE),
    ("gpu_ecc_errors_volatile_total", GPU_DEVICE),
    ("gpu_xid_errors_total", GPU_DEVICE),
    ("gpu_pcie_rx_bytes_per_second", GPU_DEVICE),
    ("gpu_pcie_tx_bytes_per_second", GPU_DEVICE),
    ("gpu_processes", GPU_DEVICE),
    ("gpu_process_memory_used_bytes", GPU_DEVICE),
    ("comfyui_queue_pending", COMFYUI_SERVER),
    ("comfyui_queue_running", COMFYUI_SERVER),
    ("comfyui_node_errors_total", COMFYUI_SERVER),
    ("comfyui_vram_total_bytes", COMFYUI_SERVER),
    ("comfyui_vram_free_bytes", COMFYUI_SERVER),
    ("comfyui_ram_total_bytes", COMFYUI_SERVER),
    ("comfyui_ram_free_bytes", COMFYUI_SERVER),
    ("recovery_operations_total", RECOVERY),
    ("recovery_attempts_total", RECOVERY),
    ("recovery_operation_seconds_total", RECOVERY),
    ("recovery_overhead_seconds_total", RECOVERY),
    ("recovery_duration_seconds_bucket", RECOVERY),
    ("recovery_persistence_seconds_bucket", RECOVERY),
    ("recovery_circuit_breaker_state", RECOVERY),
    ("recovery_circuit_breaker_open_since_seconds", RECOVERY),
    ("recovery_circuit_breaker_transitions_total", RECOVERY),
    ("quality_score_sum", QUALITY),
    ("quality_score_count", QUALITY),
    ("quality_score_bucket", QUALITY),
    ("probe_success", PROBES),
    ("probe_duration_seconds", PROBES),
    ("probe_http_duration_seconds", PROBES),
    ("probe_ssl_earliest_cert_expiry", PROBES),
    ("sentinel_notifications_total", RECEIVERS),
    ("sentinel_notifications_dead_total", RECEIVERS),
    ("sentinel_notification_duration_seconds_bucket", RECEIVERS),
    (
        "sentinel_heartbeat_last_success_timestamp_seconds",
        HEARTBEAT,
    ),
    ("sentinel_series_dropped_total", DROPPED),
];

/// Reasons that hold on some hosts only: a metric listed for one of them may be served.
const HOST_DEPENDENT: &[&str] = &[FILESYSTEMS, PRESSURE, GPU_DEVICE];

/// The entries of `list` that are served although their reason says they cannot be.
fn stale_entries<'a>(list: &[(&'a str, &str)], served: impl Fn(&str) -> bool) -> Vec<&'a str> {
    list.iter()
        .filter(|(name, why)| !HOST_DEPENDENT.contains(why) && served(name))
        .map(|(name, _)| *name)
        .collect()
}

#[test]
fn a_served_metric_left_in_expected_empty_is_stale_unless_its_reason_is_the_host() {
    let list = [
        ("node_filesystem_size_bytes", FILESYSTEMS),
        ("probe_success", PROBES),
        ("gpu_info", GPU_DEVICE),
        ("sentinel_outbox_depth", RECEIVERS),
    ];
    assert_eq!(
        stale_entries(&list, |n| n != "sentinel_outbox_depth"),
        ["probe_success"]
    );
    assert!(stale_entries(&list, |_| false).is_empty());
}

/// A real Prometheus scraping `target` every second and evaluating the shipped rules
/// (`deploy/prometheus/rules/`), so that rate() over 1m has samples within seconds.
fn start_prometheus(bin: &Path, dir: &Path, target: &str) -> Prometheus {
    let rules = util::repo().join("deploy/prometheus/rules/*.yaml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: comfy-sentinel\n    static_configs:\n      - targets: [{target:?}]\n",
        rules = rules.display().to_string(),
    );
    Prometheus::start(bin, dir, &config)
}

fn has_data(answer: &Value) -> bool {
    match answer["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => true,
        _ => answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
    }
}

/// Waits for a few scrapes (so rate() over 1m has two samples) and one evaluation of
/// the rules.
fn wait_for_data(prom: &Prometheus) {
    for expr in [
        r#"sum_over_time(up{job="comfy-sentinel"}[1m]) >= 4"#,
        r#"ALERTS{alertname="Watchdog"}"#,
    ] {
        prom.wait_for(
            &format!("/api/v1/query?query={}", percent_encode(expr)),
            |s, b| s == 200 && b.contains("\"value\""),
        );
    }
}

/// The outcome of sending every dashboard query to one Prometheus.
struct QueryRun {
    /// Queries that did not parse, or came back empty when they may not.
    failures: Vec<String>,
    /// Every metric name the queries read.
    used: BTreeSet<String>,
    queries: usize,
}

impl QueryRun {
    fn assert_no_failures(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} queries failed:\n{}",
            self.failures.len(),
            self.queries,
            self.failures.join("\n")
        );
    }
}

/// Sends every panel and variable query, variables substituted, to `prom`; an empty
/// answer is a failure unless `may_be_empty` accepts the metric names the query reads.
fn run_every_query(
    prom: &Prometheus,
    may_be_empty: impl Fn(&BTreeSet<String>) -> bool,
) -> QueryRun {
    let mut run = QueryRun {
        failures: Vec::new(),
        used: BTreeSet::new(),
        queries: 0,
    };
    for d in dashboards() {
        for (title, ref_id, expr) in d.queries() {
            run.queries += 1;
            let at = format!("{} / {title} / {ref_id}", d.uid());
            let names = match metric_names(&expr) {
                Ok(names) => names,
                Err(e) => {
                    run.failures
                        .push(format!("{at}: {expr}\n  promql-parser: {e}"));
                    BTreeSet::new()
                }
            };
            run.used.extend(names.iter().cloned());
            let expr = substitute(&expr, "1m", 15);
            let answer = prom.query(&expr);
            if answer["status"] != "success" {
                run.failures
                    .push(format!("{at}: {expr}\n  error: {}", answer["error"]));
            } else if !has_data(&answer) && !may_be_empty(&names) {
                run.failures.push(format!("{at}: no data for {expr}"));
            }
        }
    }
    assert!(run.queries > 100, "only {} queries found", run.queries);
    run
}

/// Against the real binary: every query parses, and returns data unless it reads a
/// metric of `EXPECTED_EMPTY`.
#[test]
fn every_panel_query_runs_in_prometheus() {
    let Some(prometheus) = util::peer("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sidecar_config(dir.path());
    let sentinel = Sentinel::start(&["--config", config.to_str().expect("utf-8 path")]);
    sentinel.wait_ready();
    let prom = start_prometheus(&prometheus, dir.path(), &sentinel.addr);
    wait_for_data(&prom);

    let expected_empty: BTreeMap<&str, &str> = EXPECTED_EMPTY.iter().copied().collect();
    let run = run_every_query(&prom, |names| {
        names
            .iter()
            .any(|n| expected_empty.contains_key(n.as_str()))
    });
    for (name, _) in EXPECTED_EMPTY {
        assert!(
            run.used.contains(*name),
            "EXPECTED_EMPTY lists {name}, which no dashboard reads"
        );
    }
    let now_served = stale_entries(EXPECTED_EMPTY, |name| {
        has_data(&prom.query(&format!("count({{__name__=\"{name}\"}})")))
    });
    assert!(
        now_served.is_empty(),
        "now served, drop from EXPECTED_EMPTY: {}",
        now_served.join(", ")
    );
    run.assert_no_failures();
}

/// Serves `tests/fixtures/dashboards/contract.prom` over HTTP on 127.0.0.1, `N*k` values
/// becoming k times the request number; returns the address. The thread lives as long
/// as the test process.
fn serve_contract_sample() -> String {
    use std::io::{Read, Write};
    let template = std::fs::read_to_string(util::fixture("dashboards/contract.prom"))
        .expect("read contract sample");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = render_sample(&template, n as f64 + 1.0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    addr
}

fn render_sample(template: &str, n: f64) -> String {
    let mut out = String::new();
    for line in template.lines() {
        match line.rsplit_once(' ') {
            Some((series, value)) if !line.starts_with('#') => {
                let value = match value.strip_prefix("N*") {
                    Some(k) => (k.parse::<f64>().expect("numeric factor") * n).to_string(),
                    None => value.to_string(),
                };
                out.push_str(&format!("{series} {value}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Against a sample of every contract metric: every query returns data, so the label
/// matchers, joins and filters fit the series they are written for, whichever
/// collectors have landed.
#[test]
fn every_panel_query_returns_data_on_the_contract_sample() {
    let Some(prometheus) = util::peer("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let prom = start_prometheus(&prometheus, dir.path(), &serve_contract_sample());
    wait_for_data(&prom);
    let run = run_every_query(&prom, |_| false);
    run.assert_no_failures();
}

/// The sample holds contract metrics only, and all of them.
#[test]
fn contract_sample_covers_the_contract() {
    let known = known_metrics();
    let sample = std::fs::read_to_string(util::fixture("dashboards/contract.prom"))
        .expect("read contract sample");
    let served = metrics_from_exposition(&render_sample(&sample, 1.0));
    for name in &served.names {
        assert!(
            known.allows(name),
            "{name} is in the sample but not in the contract"
        );
        assert_eq!(
            served.histograms.contains(name),
            known.histograms.contains(name),
            "{name}: type"
        );
    }
    for name in &known.names {
        assert!(
            served.names.contains(name) || name == "up",
            "{name} missing from the sample"
        );
    }
}
