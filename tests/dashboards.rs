//! The operator's view: the Grafana dashboards in `dashboards/` and the compose stack in
//! `deploy/`. Structure checks read the JSON and YAML; the query check starts a real
//! Prometheus (Debian's `prometheus`) scraping the real binary and sends it every panel
//! query; the deployment checks run `docker-compose config`, `promtool check config` and
//! `amtool check-config` on the shipped files. Neighbours: `dashboards/build.py` writes the
//! JSON, `rules/*.yaml` holds the levels the panel thresholds mirror.

use crate::util::{self, http_get, temp_file, Sentinel};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The metric contract.

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

/// Reads metric names and histogram bases from `# TYPE` lines of a text exposition.
fn metrics_from_exposition(text: &str) -> KnownMetrics {
    let mut known = KnownMetrics::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            known.names.insert(name.to_string());
            if kind == "histogram" {
                known.histograms.insert(name.to_string());
            }
        }
    }
    known
}

// ---------------------------------------------------------------------------------------
// Reading the dashboards.

struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = util::repo().join("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
            out.push(Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(
        out.len() >= 7,
        "expected the overview and six area dashboards"
    );
    out
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().expect("uid")
    }

    /// Every panel, rows' nested panels included.
    fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
            for p in list.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    /// (panel title, refId, expression) of every query target.
    fn queries(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_else(|| {
                    panic!(
                        "{}: panel {:?} has a target without expr",
                        self.file, p["title"]
                    )
                });
                out.push((
                    p["title"].as_str().unwrap_or("").to_string(),
                    t["refId"].as_str().unwrap_or("").to_string(),
                    expr.to_string(),
                ));
            }
        }
        for v in self.variables() {
            if let Some(inner) = variable_expr(v) {
                let name = v["name"].as_str().unwrap_or("");
                out.push((format!("variable {name}"), String::new(), inner));
            }
        }
        out
    }
}

/// The PromQL inside a query variable's `label_values(expr, label)`.
fn variable_expr(v: &Value) -> Option<String> {
    if v["type"] != "query" {
        return None;
    }
    let q = v["query"]["query"].as_str().or(v["query"].as_str())?;
    let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (expr, _label) = inner.rsplit_once(',')?;
    Some(expr.trim().to_string())
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names in a PromQL expression: identifiers outside strings, label matchers,
/// ranges and grouping clauses that are not functions, operators or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips a balanced bracket group starting at `chars[i]`, strings inside included.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    let q = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != q {
                        if chars[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut j: usize| -> Option<(usize, char)> {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        chars.get(j).map(|c| (j, *c))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            let q = c;
            i += 1;
            while i < chars.len() && chars[i] != q {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // Numbers and durations (`offset 10m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if let Some((j, '(')) = next_non_space(i) {
                    i = skip_group(j, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || AGGREGATIONS.contains(&lower.as_str()) {
            } else if matches!(next_non_space(i), Some((_, '('))) {
                // A function call.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Template references in a string: `$name`, `${name}`, `${name:format}`, `[[name]]`.
fn variable_refs(s: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(
        r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]",
    )
    .expect("static regex");
    re.captures_iter(s)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().to_string())
        .filter(|n| !n.starts_with("__"))
        .collect()
}

fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

fn is_datasource_ref(v: &Value) -> bool {
    v["type"] == "prometheus" && v["uid"] == "${datasource}"
}

// ---------------------------------------------------------------------------------------
// Structure.

#[test]
fn dashboards_are_valid_grafana_json_with_unique_uids() {
    let mut uids = BTreeSet::new();
    for d in dashboards() {
        let uid = d.uid();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{}: bad uid {uid:?}",
            d.file
        );
        assert!(
            uids.insert(uid.to_string()),
            "{}: uid {uid} used twice",
            d.file
        );
        let schema = d.json["schemaVersion"].as_u64().unwrap_or(0);
        assert!(schema >= 36, "{}: schemaVersion {schema} < 36", d.file);
        assert!(d.json["title"].as_str().is_some_and(|t| !t.is_empty()));
        let mut ids = BTreeSet::new();
        let mut titles = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or("");
            assert!(
                ids.insert(p["id"].as_u64()),
                "{}: panel id repeated at {title:?}",
                d.file
            );
            assert!(
                p["gridPos"]["w"]
                    .as_u64()
                    .is_some_and(|w| (1..=24).contains(&w)),
                "{}: {title:?} gridPos",
                d.file
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(!title.is_empty(), "{}: a panel has no title", d.file);
            // Titles name panels in failure messages; keep them unambiguous.
            assert!(
                titles.insert(title.to_string()),
                "{}: two panels titled {title:?}",
                d.file
            );
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{}: {title:?} has no unit", d.file);
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{}: {title:?} has no query",
                d.file
            );
        }
    }
}

#[test]
fn every_panel_uses_the_datasource_variable() {
    for d in dashboards() {
        let vars = d.variables();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no datasource variable", d.file));
        assert_eq!(ds["type"], "datasource", "{}", d.file);
        assert_eq!(ds["query"], "prometheus", "{}", d.file);
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert!(
                is_datasource_ref(&v["datasource"]),
                "{}: variable {} datasource",
                d.file,
                v["name"]
            );
        }
        for p in d.panels().into_iter().filter(|p| p["type"] != "row") {
            let title = &p["title"];
            assert!(
                is_datasource_ref(&p["datasource"]),
                "{}: panel {title} datasource {}",
                d.file,
                p["datasource"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                assert!(
                    is_datasource_ref(&t["datasource"]),
                    "{}: panel {title} target datasource",
                    d.file
                );
            }
        }
    }
}

#[test]
fn every_variable_used_is_defined() {
    for d in dashboards() {
        let defined: BTreeSet<String> = d
            .variables()
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        for needed in ["datasource", "instance"] {
            assert!(defined.contains(needed), "{}: no {needed} variable", d.file);
        }
        let mut strings = Vec::new();
        all_strings(&d.json["panels"], &mut strings);
        all_strings(&d.json["templating"], &mut strings);
        all_strings(&d.json["links"], &mut strings);
        for s in strings {
            for name in variable_refs(s) {
                assert!(
                    defined.contains(&name),
                    "{}: ${name} used in {s:?} but not defined",
                    d.file
                );
            }
        }
    }
}

#[test]
fn area_dashboards_have_their_variables_and_links() {
    let all = dashboards();
    let uids: BTreeSet<&str> = all.iter().map(|d| d.uid()).collect();
    let dashboard_link = regex::Regex::new(r"/d/([A-Za-z0-9_-]+)").expect("static regex");
    for d in &all {
        let names: BTreeSet<&str> = d
            .variables()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let text = d.json.to_string();
        if text.contains("$gpu") {
            assert!(names.contains("gpu"), "{}", d.file);
        }
        // Every dashboard offers the others through the shared tag.
        let tags: Vec<&str> = d.json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(tags.contains(&"comfy-sentinel"), "{}: tag", d.file);
        let menu = d.json["links"].as_array().expect("links");
        assert!(
            menu.iter()
                .any(|l| l["type"] == "dashboards" && l["tags"][0] == "comfy-sentinel"),
            "{}: no link menu to the other dashboards",
            d.file
        );
        // Panel links point at dashboards that exist.
        for cap in dashboard_link.captures_iter(&text) {
            assert!(
                uids.contains(&cap[1]),
                "{}: link to unknown uid {}",
                d.file,
                &cap[1]
            );
        }
    }
    let overview = all
        .iter()
        .find(|d| d.uid() == "sentinel-overview")
        .expect("overview");
    let names: BTreeSet<&str> = overview
        .variables()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        ["instance", "gpu", "workflow"]
            .iter()
            .all(|n| names.contains(n)),
        "{names:?}"
    );
    let text = overview.json.to_string();
    for area in ["system", "gpu", "workflow", "recovery", "quality", "self"] {
        assert!(
            text.contains(&format!("/d/sentinel-{area}")),
            "overview links to {area}"
        );
    }
}

#[test]
fn every_queried_metric_is_in_the_contract() {
    let known = known_metrics();
    let mut unknown = Vec::new();
    for d in dashboards() {
        for (title, _, expr) in d.queries() {
            for name in metric_names(&expr) {
                if !known.allows(&name) {
                    unknown.push(format!("{}: {title}: {name} in {expr}", d.file));
                }
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
    ];
    for (expr, want) in cases {
        let got: Vec<String> = metric_names(expr).into_iter().collect();
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
// Thresholds mirror the default rules.

/// Panels whose thresholds show an alert's levels: (dashboard uid, panel title, alert).
const MIRRORS: &[(&str, &str, &str)] = &[
    (
        "sentinel-overview",
        "Prompt error rate (10m)",
        "WorkflowErrorRateHigh",
    ),
    (
        "sentinel-overview",
        "Prompt duration p95 (15m)",
        "ComfyUIPromptSlow",
    ),
    ("sentinel-overview", "GPU memory used", "GpuMemoryHigh"),
    ("sentinel-overview", "GPU temperature", "GpuTemperatureHigh"),
    (
        "sentinel-overview",
        "Recovery overhead (5m)",
        "RecoveryOverheadHigh",
    ),
    (
        "sentinel-overview",
        "Recovery success (10m)",
        "RecoverySuccessRatioLow",
    ),
    (
        "sentinel-overview",
        "Quality score (30m)",
        "QualityScoreLow",
    ),
    (
        "sentinel-overview",
        "Blank images (30m)",
        "QualityBlankImages",
    ),
    (
        "sentinel-overview",
        "Host CPU usage (5m)",
        "HostCpuUsageHigh",
    ),
    (
        "sentinel-overview",
        "Host memory usage",
        "HostMemoryUsageHigh",
    ),
    ("sentinel-system", "CPU usage", "HostCpuUsageHigh"),
    ("sentinel-system", "CPU steal", "HostCpuStealHigh"),
    ("sentinel-system", "Memory usage", "HostMemoryUsageHigh"),
    ("sentinel-system", "Disk usage", "HostDiskUsageHigh"),
    (
        "sentinel-system",
        "File descriptors",
        "HostFileDescriptorsHigh",
    ),
    ("sentinel-gpu", "Memory used", "GpuMemoryHigh"),
    ("sentinel-gpu", "Fullest GPU memory", "GpuMemoryHigh"),
    ("sentinel-gpu", "Temperature", "GpuTemperatureHigh"),
    ("sentinel-gpu", "Hottest GPU", "GpuTemperatureHigh"),
    (
        "sentinel-workflow",
        "Error rate (10m)",
        "WorkflowErrorRateHigh",
    ),
    ("sentinel-workflow", "Error rate", "WorkflowErrorRateHigh"),
    ("sentinel-workflow", "Prompt p95 (15m)", "ComfyUIPromptSlow"),
    ("sentinel-workflow", "Prompt duration", "ComfyUIPromptSlow"),
    ("sentinel-recovery", "Overhead (5m)", "RecoveryOverheadHigh"),
    (
        "sentinel-recovery",
        "Recovery overhead",
        "RecoveryOverheadHigh",
    ),
    (
        "sentinel-recovery",
        "Overhead by operation",
        "RecoveryOverheadHigh",
    ),
    (
        "sentinel-recovery",
        "Recovery success (10m)",
        "RecoverySuccessRatioLow",
    ),
    (
        "sentinel-recovery",
        "Recovery success ratio",
        "RecoverySuccessRatioLow",
    ),
    (
        "sentinel-recovery",
        "Recovery p95 (5m)",
        "RecoveryLatencyHigh",
    ),
    (
        "sentinel-recovery",
        "Recovery time p95",
        "RecoveryLatencyHigh",
    ),
    (
        "sentinel-recovery",
        "Breaker state",
        "RecoveryCircuitBreakerOpen",
    ),
    ("sentinel-quality", "Lowest score (30m)", "QualityScoreLow"),
    ("sentinel-quality", "Mean score", "QualityScoreLow"),
    (
        "sentinel-quality",
        "Blank images (30m)",
        "QualityBlankImages",
    ),
    (
        "sentinel-quality",
        "Failures by check (30m)",
        "QualityBlankImages",
    ),
    ("sentinel-self", "Heartbeat age", "SentinelHeartbeatStale"),
];

/// (operator, value) per level of every leveled rule in `rules/*.yaml`.
fn rule_levels() -> BTreeMap<String, BTreeMap<String, (String, f64)>> {
    let mut out = BTreeMap::new();
    let pattern = util::repo().join("rules/*.yaml");
    for path in glob::glob(pattern.to_str().expect("utf-8 path")).expect("glob") {
        let path = path.expect("rule file");
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read rules"))
                .expect("rule YAML");
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                for level in ["warning", "critical"] {
                    // A level is `<op> <value>` or a map whose `fire` is (a resolve
                    // threshold only decides when the alert ends, not the panel colours).
                    let spec = rule[level]
                        .as_str()
                        .or_else(|| rule[level]["fire"].as_str());
                    if let Some(spec) = spec {
                        let (op, value) = spec
                            .trim()
                            .split_once(' ')
                            .expect("level is `<op> <value>`");
                        let value: f64 = value.trim().parse().expect("numeric level");
                        out.entry(alert.to_string())
                            .or_insert_with(BTreeMap::new)
                            .insert(level.to_string(), (op.to_string(), value));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn panel_thresholds_match_the_default_rules() {
    let levels = rule_levels();
    let all = dashboards();
    for (uid, title, alert) in MIRRORS {
        let d = all
            .iter()
            .find(|d| d.uid() == *uid)
            .unwrap_or_else(|| panic!("no dashboard {uid}"));
        let panel = d
            .panels()
            .into_iter()
            .find(|p| p["title"] == *title)
            .unwrap_or_else(|| panic!("{uid}: no panel {title:?}"));
        let steps: Vec<(Option<f64>, String)> = panel["fieldConfig"]["defaults"]["thresholds"]
            ["steps"]
            .as_array()
            .expect("threshold steps")
            .iter()
            .map(|s| {
                (
                    s["value"].as_f64(),
                    s["color"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let rule = levels
            .get(*alert)
            .unwrap_or_else(|| panic!("no leveled rule {alert}"));
        let color_at = |v: f64| {
            steps
                .iter()
                .find(|(s, _)| *s == Some(v))
                .map(|(_, c)| c.as_str())
        };
        for (level, (op, value)) in rule {
            // High-is-bad levels start their colour at the level; low-is-bad levels end
            // theirs there (the step at the level is the next better colour).
            let want = match (op.as_str(), level.as_str()) {
                (">" | ">=" | "==", "warning") => "orange",
                (">" | ">=" | "==", _) => "red",
                ("<" | "<=", "warning") => "green",
                ("<" | "<=", _) if rule.contains_key("warning") => "orange",
                _ => "green",
            };
            assert_eq!(
                color_at(*value),
                Some(want),
                "{uid}: {title:?} should show {alert} {level} {op} {value}; steps {steps:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Every query in a real Prometheus.

// Why a series the dashboards read is absent from the test's Prometheus.
const SYSTEM_PENDING: &str =
    "the system collector in this tree serves only the load averages; the rest lands with it";
const FILESYSTEMS: &str = "served once the system collector lands; even then a container whose only filesystems are overlay and tmpfs (which the disk panels leave out, as the rules do) has none";
const PRESSURE: &str = "served once the system collector lands, on kernels with PSI (/proc/pressure); absent elsewhere";
const GPU_DEVICE: &str =
    "per-device GPU series need an NVIDIA GPU, which test hosts lack (gpu_devices is 0)";
const GPU_PENDING: &str = "served once the GPU collector lands";
const COMFYUI_PENDING: &str = "served once the ComfyUI collector lands (0 with no ComfyUI)";
const COMFYUI_SERVER: &str =
    "needs a ComfyUI answering (unread values are left out, never 0); the test runs none";
const RECOVERY: &str =
    "recovery series are labelled by operation or breaker and appear with the first event pushed to the ingest API; the test pushes none";
const QUALITY: &str =
    "quality series appear with the first pushed score or checked output image; the test has neither";
const PROBES: &str = "probe series need configured probe targets; the test configures none";
const RECEIVERS: &str = "per-receiver notification series need receivers; the test config has none";
const OUTBOX: &str = "served once the notification outbox lands";
const INGEST: &str =
    "counted per event type and result: appears with the first event through the ingest API";
const RULES: &str = "served once the rule engine lands";
const HEARTBEAT: &str = "needs a heartbeat receiver to deliver to; the test config has none";
const DROPPED: &str =
    "appears per family with the first series over the cap; nothing is dropped here";

/// Metrics whose queries may come back empty in this test, with the reason. A query is
/// allowed to be empty when it reads one of these; every other query must return data.
/// When a listed metric starts to exist the test says so, so that the list shrinks as the
/// collectors land.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    ("node_boot_time_seconds", SYSTEM_PENDING),
    ("node_cpu_seconds_total", SYSTEM_PENDING),
    ("node_memory_MemTotal_bytes", SYSTEM_PENDING),
    ("node_memory_MemAvailable_bytes", SYSTEM_PENDING),
    ("node_memory_MemFree_bytes", SYSTEM_PENDING),
    ("node_memory_Buffers_bytes", SYSTEM_PENDING),
    ("node_memory_Cached_bytes", SYSTEM_PENDING),
    ("node_memory_SwapTotal_bytes", SYSTEM_PENDING),
    ("node_memory_SwapFree_bytes", SYSTEM_PENDING),
    ("node_filesystem_size_bytes", FILESYSTEMS),
    ("node_filesystem_avail_bytes", FILESYSTEMS),
    ("node_filesystem_files", FILESYSTEMS),
    ("node_filesystem_files_free", FILESYSTEMS),
    ("node_filesystem_readonly", FILESYSTEMS),
    ("node_filefd_allocated", SYSTEM_PENDING),
    ("node_filefd_maximum", SYSTEM_PENDING),
    ("node_network_receive_bytes_total", SYSTEM_PENDING),
    ("node_network_transmit_bytes_total", SYSTEM_PENDING),
    ("node_network_receive_packets_total", SYSTEM_PENDING),
    ("node_network_transmit_packets_total", SYSTEM_PENDING),
    ("node_network_receive_errs_total", SYSTEM_PENDING),
    ("node_network_transmit_errs_total", SYSTEM_PENDING),
    ("node_network_receive_drop_total", SYSTEM_PENDING),
    ("node_network_transmit_drop_total", SYSTEM_PENDING),
    ("node_pressure_cpu_waiting_seconds_total", PRESSURE),
    ("node_pressure_io_waiting_seconds_total", PRESSURE),
    ("node_pressure_memory_waiting_seconds_total", PRESSURE),
    ("gpu_nvml_up", GPU_PENDING),
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
    ("comfyui_up", COMFYUI_PENDING),
    ("comfyui_queue_pending", COMFYUI_SERVER),
    ("comfyui_queue_running", COMFYUI_SERVER),
    ("comfyui_prompts_total", COMFYUI_SERVER),
    ("comfyui_prompt_duration_seconds_bucket", COMFYUI_SERVER),
    (
        "comfyui_api_request_duration_seconds_bucket",
        COMFYUI_SERVER,
    ),
    ("comfyui_nodes_executed_total", COMFYUI_SERVER),
    ("comfyui_nodes_cached_total", COMFYUI_SERVER),
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
    ("quality_images_checked_total", QUALITY),
    ("quality_image_failures_total", QUALITY),
    ("quality_image_sharpness_bucket", QUALITY),
    ("probe_success", PROBES),
    ("probe_duration_seconds", PROBES),
    ("probe_http_duration_seconds", PROBES),
    ("probe_ssl_earliest_cert_expiry", PROBES),
    ("sentinel_notifications_total", RECEIVERS),
    ("sentinel_notifications_dead_total", RECEIVERS),
    ("sentinel_notification_duration_seconds_bucket", RECEIVERS),
    ("sentinel_outbox_depth", OUTBOX),
    ("sentinel_ingest_events_total", INGEST),
    ("sentinel_rule_evaluation_duration_seconds_bucket", RULES),
    (
        "sentinel_heartbeat_last_success_timestamp_seconds",
        HEARTBEAT,
    ),
    ("sentinel_series_dropped_total", DROPPED),
];

/// A Prometheus process, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, target: &str) -> Prometheus {
        let rules = util::repo().join("deploy/prometheus/rules/*.yaml");
        // Fast scrapes and evaluations so that rate() over 1m has samples within seconds.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: comfy-sentinel\n    static_configs:\n      - targets: [{target:?}]\n",
            rules = rules.display().to_string(),
        );
        let config = temp_file(dir, "prometheus.yml", &config);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        p.wait_for("/-/ready", |s, _| s == 200);
        p
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, path: &str, ok: impl Fn(u16, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((status, _, body)) = http_get(&format!("{}{path}", self.url), &[]) {
                if ok(status, &String::from_utf8_lossy(&body)) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "prometheus: {path} never became ready; log:\n{}",
            self.logs()
        );
    }

    /// An instant query: the parsed `/api/v1/query` answer.
    fn query(&self, expr: &str) -> Value {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(expr));
        let (_, _, body) = http_get(&url, &[]).expect("query prometheus");
        serde_json::from_slice(&body).expect("prometheus answers JSON")
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Replaces Grafana's variables the way a dashboard showing "All" would.
fn substitute(expr: &str) -> String {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)")
        .expect("static regex");
    re.replace_all(expr, |c: &regex::Captures| {
        let name = c.get(1).or(c.get(2)).expect("one group matches").as_str();
        match name {
            "__rate_interval" => "1m",
            "__interval" => "15s",
            "__range" => "1h",
            "__interval_ms" => "15000",
            // Query variables set to "All" become the regex `.*`.
            _ => ".*",
        }
        .to_string()
    })
    .into_owned()
}

fn has_data(answer: &Value) -> bool {
    match answer["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => true,
        _ => answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
    }
}

impl Prometheus {
    /// Waits for a few scrapes (so rate() over 1m has two samples) and one evaluation of
    /// the rules.
    fn wait_for_data(&self) {
        for expr in [
            r#"sum_over_time(up{job="comfy-sentinel"}[1m]) >= 4"#,
            r#"ALERTS{alertname="Watchdog"}"#,
        ] {
            self.wait_for(
                &format!("/api/v1/query?query={}", percent_encode(expr)),
                |s, b| s == 200 && b.contains("\"value\""),
            );
        }
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
            let names = metric_names(&expr);
            run.used.extend(names.iter().cloned());
            let expr = substitute(&expr);
            let answer = prom.query(&expr);
            run.queries += 1;
            let at = format!("{} / {title} / {ref_id}", d.uid());
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
    let prom = Prometheus::start(&prometheus, dir.path(), &sentinel.addr);
    prom.wait_for_data();

    let expected_empty: BTreeMap<&str, &str> = EXPECTED_EMPTY.iter().copied().collect();
    let run = run_every_query(&prom, |names| {
        names
            .iter()
            .any(|n| expected_empty.contains_key(n.as_str()))
    });
    let mut now_served = Vec::new();
    for (name, _) in EXPECTED_EMPTY {
        assert!(
            run.used.contains(*name),
            "EXPECTED_EMPTY lists {name}, which no dashboard reads"
        );
        if has_data(&prom.query(&format!("count({{__name__=\"{name}\"}})"))) {
            now_served.push(*name);
        }
    }
    if !now_served.is_empty() {
        eprintln!(
            "now served, drop from EXPECTED_EMPTY: {}",
            now_served.join(", ")
        );
    }
    assert!(
        run.failures.is_empty(),
        "{} of {} queries failed:\n{}",
        run.failures.len(),
        run.queries,
        run.failures.join("\n")
    );
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
    let prom = Prometheus::start(&prometheus, dir.path(), &serve_contract_sample());
    prom.wait_for_data();
    let run = run_every_query(&prom, |_| false);
    assert!(
        run.failures.is_empty(),
        "{} of {} queries failed:\n{}",
        run.failures.len(),
        run.queries,
        run.failures.join("\n")
    );
}

/// The sample holds contract metrics only, and all of them.
#[test]
fn contract_sample_covers_the_contract() {
    let known = known_metrics();
    let sample = std::fs::read_to_string(util::fixture("dashboards/contract.prom"))
        .expect("read contract sample");
    let served = metrics_from_exposition(&sample);
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

// ---------------------------------------------------------------------------------------
// The compose stack and its configs.

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_file_is_valid() {
    let Some(compose) = util::peer("docker-compose") else {
        return;
    };
    run_ok(Command::new(compose).current_dir(util::repo()).args([
        "-f",
        "deploy/docker-compose.yml",
        "config",
        "-q",
    ]));
}

#[test]
fn prometheus_config_and_its_rules_are_valid() {
    let Some(promtool) = util::peer("promtool") else {
        return;
    };
    run_ok(Command::new(promtool).current_dir(util::repo()).args([
        "check",
        "config",
        "deploy/prometheus/prometheus.yml",
    ]));
}

#[test]
fn alertmanager_config_is_valid_and_inhibits_warnings_under_criticals() {
    let text = std::fs::read_to_string(util::repo().join("deploy/alertmanager/alertmanager.yml"))
        .expect("read");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let inhibits = doc["inhibit_rules"].as_sequence().expect("inhibit_rules");
    assert!(
        inhibits.iter().any(|r| r["source_matchers"]
            .as_sequence()
            .is_some_and(|m| m.iter().any(|x| x == "severity=\"critical\""))
            && r["target_matchers"]
                .as_sequence()
                .is_some_and(|m| m.iter().any(|x| x == "severity=\"warning\""))
            && r["equal"]
                .as_sequence()
                .is_some_and(|e| e.iter().any(|l| l == "alertname"))),
        "no critical→warning inhibit rule"
    );
    let Some(amtool) = util::peer("amtool") else {
        return;
    };
    run_ok(
        Command::new(amtool)
            .current_dir(util::repo())
            .args(["check-config", "deploy/alertmanager/alertmanager.yml"]),
    );
}

/// The sidecar in the compose file: hardened, healthy by its own subcommand, reading the
/// host's /proc and / where its config says.
#[test]
fn compose_sidecar_is_hardened_and_sees_the_host() {
    let repo = util::repo();
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo.join("deploy/docker-compose.yml")).expect("read"),
    )
    .expect("YAML");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo.join("deploy/comfy-sentinel.yaml")).expect("read"),
    )
    .expect("YAML");
    let s = &compose["services"]["comfy-sentinel"];
    assert_eq!(s["read_only"], true);
    assert_eq!(s["cap_drop"][0], "ALL");
    assert!(s["security_opt"].as_sequence().unwrap().iter().any(|o| o
        .as_str()
        .is_some_and(|o| o.starts_with("no-new-privileges"))));
    let user = s["user"].as_str().expect("user");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "runs as {user}"
    );
    assert!(s["mem_limit"].is_string() && s["cpus"].is_number() && s["pids_limit"].is_number());
    let health: Vec<&str> = s["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(health, ["CMD", "comfy-sentinel", "healthcheck"]);
    assert!(compose["services"]["comfyui"]["image"]
        .as_str()
        .unwrap()
        .starts_with("${COMFYUI_IMAGE"));

    let mounts: BTreeMap<String, (String, String)> = s["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .map(|v| {
            let mut parts = v.splitn(3, ':');
            let src = parts.next().unwrap_or("").to_string();
            let dst = parts.next().unwrap_or("").to_string();
            (src, (dst, parts.next().unwrap_or("").to_string()))
        })
        .collect();
    let system = &config["collectors"]["system"];
    for (host, key) in [
        ("/proc", "procfs_path"),
        ("/sys", "sysfs_path"),
        ("/", "rootfs_path"),
    ] {
        let (dst, opts) = mounts
            .get(host)
            .unwrap_or_else(|| panic!("host {host} not mounted"));
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "host {host} mounted writable"
        );
        assert_eq!(
            system[key].as_str(),
            Some(dst.as_str()),
            "collectors.system.{key}"
        );
    }
    let (data_dst, _) = mounts
        .get("sentinel-data")
        .expect("named volume for data_dir");
    assert_eq!(config["data_dir"].as_str(), Some(data_dst.as_str()));
    assert!(
        compose["volumes"]["sentinel-data"].is_null()
            || compose["volumes"]["sentinel-data"].is_mapping()
    );

    // Grafana's dashboard provider reads the folder compose mounts the dashboards into.
    let provider: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            repo.join("dashboards/provisioning/dashboards/comfy-sentinel.yaml"),
        )
        .expect("read"),
    )
    .expect("YAML");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let grafana = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(
        grafana.iter().any(|v| v
            .as_str()
            .is_some_and(|v| v.starts_with("../dashboards:") && v.contains(&format!(":{path}")))),
        "grafana does not mount dashboards/ at {path}"
    );
}

/// The sidecar config the compose stack mounts is one the binary accepts.
#[test]
fn compose_sidecar_config_is_valid() {
    let config = util::repo().join("deploy/comfy-sentinel.yaml");
    run_ok(Command::new(util::bin()).args([
        "check",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]));
}

/// The committed JSON is what `dashboards/build.py` writes: nobody edited one by hand.
#[test]
fn dashboards_match_their_generator() {
    let Some(python) = util::peer("python3") else {
        return;
    };
    run_ok(
        Command::new(python)
            .current_dir(util::repo())
            .args(["dashboards/build.py", "--check"]),
    );
}
