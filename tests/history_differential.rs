//! The differential test of issue 11 ("Correctness"): on identical samples, every answer
//! of the sidecar's Prometheus API equals Prometheus 2.42's.
//!
//! One seeded generator writes a few hours of OpenMetrics (with timestamps, ending now)
//! for every metric the shipped Grafana dashboards query, shaped like the sidecar's
//! default series: counters with resets, gauges, histograms (`_bucket`/`_sum`/`_count`),
//! stale gaps longer than the lookback, a series born late, several label sets and
//! collection jitter in the timestamps. The same file goes to `promtool tsdb
//! create-blocks-from openmetrics` (a real `prometheus` then serves the blocks) and to
//! `comfy-sentinel history import` (the sidecar then serves its `data_dir`). Both answer
//! `query_range` for every dashboard panel query and a list of general PromQL, `series`,
//! `labels` and `label/<name>/values` with `match[]`/`start`/`end`.
//!
//! Comparison: status, `errorType` and `resultType` exactly; label sets and timestamps
//! exactly; float values within a relative tolerance of 1e-9 (`REL_TOL`; NaN equals NaN,
//! infinities must match in sign). Result order is not compared (a range query's matrix
//! has no meaningful order). Under CI=true a missing promtool or prometheus fails.

use crate::support::prometheus::Prometheus;
use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Relative tolerance of float comparisons.
const REL_TOL: f64 = 1e-9;
/// Hours of generated data (crosses at least one of promtool's 2 h block boundaries).
const HOURS: i64 = 3;
/// Collection interval of the generated series.
const INTERVAL_MS: i64 = 15_000;
/// Step of the compared range queries.
const STEP_S: i64 = 60;
const INSTANCES: [&str; 2] = ["gpu-box-1:9188", "gpu-box-2:9188"];
const WORKFLOWS: &[&str] = &["wf-a", "wf-b"];
/// What the dashboards' variables become (Grafana sends a multi-value variable as an
/// alternation; `$__rate_interval` at a 60 s step over 15 s scrapes is 75 s).
const VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "75s"),
    ("$instance", "gpu-box-1:9188|gpu-box-2:9188"),
    ("$gpu", "0"),
    ("$workflow", "wf-a|wf-b"),
];

/// splitmix64: a deterministic generator without dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every panel query of the shipped dashboards, variables substituted.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    for d in crate::support::dashboards::dashboards() {
        walk(&d.json, &mut exprs);
    }
    let mut seen = BTreeSet::new();
    exprs
        .into_iter()
        .map(|mut e| {
            for (var, val) in VARIABLES {
                e = e.replace(var, val);
            }
            assert!(!e.contains('$'), "unsubstituted variable in {e}");
            e
        })
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// Metric names the queries select (`name{`).
fn selected_metrics(queries: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for q in queries {
        let b = q.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c != b'{' {
                continue;
            }
            let mut j = i;
            while j > 0
                && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_' || b[j - 1] == b':')
            {
                j -= 1;
            }
            if j < i {
                names.insert(q[j..i].to_string());
            }
        }
    }
    names
}

/// The families to generate: name of the family (as in `# TYPE`) → kind.
fn families(metrics: &BTreeSet<String>) -> BTreeMap<String, Kind> {
    let mut out = BTreeMap::new();
    for m in metrics {
        let hist_base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| m.strip_suffix(s))
            .filter(|b| metrics.contains(&format!("{b}_bucket")));
        if let Some(b) = hist_base {
            out.insert(b.to_string(), Kind::Histogram);
        } else if let Some(b) = m.strip_suffix("_total") {
            out.insert(b.to_string(), Kind::Counter);
        } else {
            out.insert(m.clone(), Kind::Gauge);
        }
    }
    out
}

/// Extra label dimensions of a family (besides `instance`).
fn dims(base: &str) -> Vec<(&'static str, &'static [&'static str])> {
    let mut d: Vec<(&'static str, &'static [&'static str])> = Vec::new();
    if base.starts_with("gpu_") && !matches!(base, "gpu_nvml_up" | "gpu_devices") {
        d.push(("gpu", &["0", "1"]));
    }
    if base.starts_with("node_filesystem_") {
        d.push(("mountpoint", &["/", "/run"]));
        d.push(("fstype", &["ext4", "tmpfs"]));
    }
    if base.starts_with("node_network_") {
        d.push(("device", &["eth0", "lo"]));
    }
    match base {
        "gpu_clocks_event_reason_active" => d.push((
            "reason",
            &[
                "sw_thermal_slowdown",
                "hw_slowdown",
                "hw_power_brake_slowdown",
            ],
        )),
        "gpu_info" => d.push(("name", &["NVIDIA H100 80GB HBM3"])),
        "gpu_process_memory_used_bytes" => d.push(("pid", &["4242", "other"])),
        "comfyui_prompts" => d.push(("outcome", &["success", "error", "interrupted"])),
        "comfyui_node_errors" => {
            d.push(("node_type", &["KSampler", "VAEDecode"]));
            d.push(("exception_type", &["OutOfMemoryError"]));
        }
        "comfyui_api_request_duration_seconds" => d.push(("endpoint", &["/prompt", "/queue"])),
        "quality_score" => {
            d.push(("workflow", WORKFLOWS));
            d.push(("metric", &["clip", "aesthetic"]));
        }
        "quality_images_checked" | "quality_image_sharpness" => d.push(("workflow", WORKFLOWS)),
        "quality_image_failures" => {
            d.push(("workflow", WORKFLOWS));
            d.push(("check", &["blank", "nsfw"]));
        }
        "recovery_overhead_seconds"
        | "recovery_operation_seconds"
        | "recovery_attempts"
        | "recovery_persistence_seconds"
        | "recovery_duration_seconds" => d.push(("operation", &["restart", "reload"])),
        "recovery_operations" => {
            d.push(("operation", &["restart", "reload"]));
            d.push(("outcome", &["recovered", "failed"]));
        }
        "recovery_circuit_breaker_state" | "recovery_circuit_breaker_open_since_seconds" => {
            d.push(("breaker", &["comfyui", "gpu"]))
        }
        "recovery_circuit_breaker_transitions" => {
            d.push(("breaker", &["comfyui", "gpu"]));
            d.push(("to", &["open", "closed"]));
        }
        "sentinel_collector_success" | "sentinel_collector_duration_seconds" => {
            d.push(("collector", &["system", "gpu", "comfyui"]))
        }
        "sentinel_series_dropped" => d.push(("family", &["comfyui_node_errors", "gpu_info"])),
        "sentinel_ingest_events" => {
            d.push(("type", &["prompt", "node"]));
            d.push(("result", &["accepted", "rejected"]));
        }
        "sentinel_notifications" => {
            d.push(("receiver", &["slack", "webhook"]));
            d.push(("result", &["sent", "failed"]));
        }
        "sentinel_notifications_dead" | "sentinel_notification_duration_seconds" => {
            d.push(("receiver", &["slack", "webhook"]))
        }
        "sentinel_build_info" => d.push(("version", &["0.9.0"])),
        "node_cpu_seconds" => {
            d.push(("cpu", &["0", "1"]));
            d.push(("mode", &["idle", "user", "system", "steal"]));
        }
        "ALERTS" => {
            d.push(("alertname", &["GpuHot", "Watchdog"]));
            d.push(("alertstate", &["firing", "pending"]));
            d.push(("severity", &["warning"]));
        }
        "up" => d.push(("job", &["comfy-sentinel"])),
        _ => {}
    }
    d
}

/// Every label set of a family: `instance` × its dimensions, in name order.
fn label_sets(base: &str) -> Vec<Vec<(String, String)>> {
    let mut sets: Vec<Vec<(String, String)>> = INSTANCES
        .iter()
        .map(|i| vec![("instance".to_string(), i.to_string())])
        .collect();
    for (name, values) in dims(base) {
        sets = sets
            .into_iter()
            .flat_map(|s| {
                values.iter().map(move |v| {
                    let mut s = s.clone();
                    s.push((name.to_string(), v.to_string()));
                    s
                })
            })
            .collect();
    }
    for s in &mut sets {
        s.sort();
    }
    sets
}

fn series_text(name: &str, labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn ts_text(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Which steps of a series carry a sample: all, less a stale gap (longer than the 5 m
/// lookback) for some, only the last 40 minutes for a series born late, and runs for
/// alerts.
fn present(rng: &mut Rng, base: &str, labels: &[(String, String)], n: usize) -> Vec<bool> {
    let mut p = vec![true; n];
    let late = labels.iter().any(|(_, v)| v == "interrupted");
    if late {
        p[..n - 160].iter_mut().for_each(|x| *x = false);
    } else if base == "ALERTS" {
        let mut on = rng.below(2) == 0;
        let mut k = 0;
        while k < n {
            let len = 20 + rng.below(120) as usize;
            for x in p.iter_mut().skip(k).take(len) {
                *x = on;
            }
            on = !on;
            k += len;
        }
    } else if rng.below(5) == 0 {
        let start = 30 + rng.below(n as u64 - 100) as usize;
        let len = 24 + rng.below(30) as usize;
        for x in p.iter_mut().skip(start).take(len) {
            *x = false;
        }
    }
    p
}

/// Timestamps of the steps, with up to 250 ms of collection jitter.
fn times(rng: &mut Rng, start_ms: i64, n: usize) -> Vec<i64> {
    (0..n)
        .map(|k| start_ms + k as i64 * INTERVAL_MS + rng.below(250) as i64)
        .collect()
}

fn gauge_values(rng: &mut Rng, base: &str, t: &[i64]) -> Vec<f64> {
    let n = t.len();
    let flag = base.ends_with("_up")
        || base.ends_with("_success")
        || base.ends_with("_active")
        || base.ends_with("_readonly")
        || base.ends_with("_successful")
        || base.ends_with("_info")
        || base == "up"
        || base == "ALERTS";
    if flag {
        let mut v = if base == "ALERTS" || base.ends_with("_info") {
            1.0
        } else {
            rng.below(2) as f64
        };
        let sticky = base == "ALERTS" || base.ends_with("_info");
        return (0..n)
            .map(|_| {
                if !sticky && rng.below(40) == 0 {
                    v = 1.0 - v;
                }
                v
            })
            .collect();
    }
    if base.ends_with("_state") {
        let mut v = rng.below(3) as f64;
        return (0..n)
            .map(|_| {
                if rng.below(30) == 0 {
                    v = rng.below(3) as f64;
                }
                v
            })
            .collect();
    }
    if base.contains("timestamp") || base.contains("boot_time") || base.contains("since") {
        let back = 600.0 + rng.below(86_400) as f64;
        return t
            .iter()
            .map(|ms| (*ms as f64 / 1000.0 - back).floor())
            .collect();
    }
    if base.contains("cert_expiry") {
        let at = (t[0] / 1000 + 30 * 86_400) as f64;
        return vec![at; n];
    }
    // A random walk around a scale fitting the unit, with full-precision floats.
    let scale = if base.ends_with("_bytes") || base.contains("bytes_per_second") {
        8e10
    } else if base.ends_with("_hertz") {
        1.4e9
    } else if base.ends_with("_celsius") || base.ends_with("_watts") {
        300.0
    } else if base.ends_with("_ratio") {
        1.0
    } else {
        50.0
    };
    let mut v = scale * (0.2 + 0.6 * rng.f64());
    let moving = rng.below(4) != 0;
    (0..n)
        .map(|_| {
            if moving {
                v += (rng.f64() - 0.5) * scale * 0.02;
                v = v.clamp(0.0, scale);
            }
            v
        })
        .collect()
}

/// Counter values: random steps (often 0), fractional for `_seconds`, and a reset (to a
/// small value) in one series of three.
fn counter_values(rng: &mut Rng, base: &str, n: usize) -> Vec<f64> {
    let fractional = base.contains("seconds") || base.contains("bytes");
    let reset_at = if rng.below(3) == 0 {
        Some(20 + rng.below(n as u64 - 40) as usize)
    } else {
        None
    };
    let mut v = rng.below(5000) as f64;
    (0..n)
        .map(|k| {
            if Some(k) == reset_at {
                v = rng.below(3) as f64;
            } else if rng.below(2) == 0 {
                v += if fractional {
                    rng.f64() * 40.0
                } else {
                    (1 + rng.below(20)) as f64
                };
            }
            v
        })
        .collect()
}

const BUCKETS: [&str; 6] = ["0.1", "0.5", "1", "5", "30", "+Inf"];

/// Cumulative bucket counts, sum and count of one histogram series; a reset in one
/// series of three.
fn histogram_values(rng: &mut Rng, n: usize) -> (Vec<[f64; 6]>, Vec<f64>, Vec<f64>) {
    let bounds = [0.1, 0.5, 1.0, 5.0, 30.0, f64::INFINITY];
    let reset_at = if rng.below(3) == 0 {
        Some(20 + rng.below(n as u64 - 40) as usize)
    } else {
        None
    };
    let (mut b, mut sum, mut count) = ([0f64; 6], 0f64, 0f64);
    let (mut bs, mut sums, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..n {
        if Some(k) == reset_at {
            (b, sum, count) = ([0f64; 6], 0.0, 0.0);
        }
        for _ in 0..rng.below(4) {
            let x = rng.f64() * rng.f64() * 40.0;
            sum += x;
            count += 1.0;
            for (i, le) in bounds.iter().enumerate() {
                if x <= *le {
                    b[i] += 1.0;
                }
            }
        }
        bs.push(b);
        sums.push(sum);
        counts.push(count);
    }
    (bs, sums, counts)
}

/// The OpenMetrics text of the generated hours (ending at `end_ms`), and its sample count.
fn generate(fams: &BTreeMap<String, Kind>, end_ms: i64) -> (String, usize) {
    let mut rng = Rng(11);
    let n = (HOURS * 3_600_000 / INTERVAL_MS) as usize;
    let start_ms = end_ms - (n as i64 - 1) * INTERVAL_MS - 250;
    let mut out = String::new();
    let mut samples = 0;
    let mut line = |out: &mut String, series: &str, v: f64, t: i64| {
        writeln!(out, "{series} {v} {}", ts_text(t)).unwrap();
        samples += 1;
    };
    for (base, kind) in fams {
        let ty = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        writeln!(out, "# TYPE {base} {ty}").unwrap();
        for labels in label_sets(base) {
            let p = present(&mut rng, base, &labels, n);
            let t = times(&mut rng, start_ms, n);
            match kind {
                Kind::Gauge | Kind::Counter => {
                    let (name, vals) = if *kind == Kind::Gauge {
                        (base.clone(), gauge_values(&mut rng, base, &t))
                    } else {
                        (format!("{base}_total"), counter_values(&mut rng, base, n))
                    };
                    let s = series_text(&name, &labels);
                    for k in (0..n).filter(|k| p[*k]) {
                        line(&mut out, &s, vals[k], t[k]);
                    }
                }
                Kind::Histogram => {
                    let (bs, sums, counts) = histogram_values(&mut rng, n);
                    for (i, le) in BUCKETS.iter().enumerate() {
                        let mut l = labels.clone();
                        l.push(("le".to_string(), le.to_string()));
                        let s = series_text(&format!("{base}_bucket"), &l);
                        for k in (0..n).filter(|k| p[*k]) {
                            line(&mut out, &s, bs[k][i], t[k]);
                        }
                    }
                    for (suffix, vals) in [("_sum", &sums), ("_count", &counts)] {
                        let s = series_text(&format!("{base}{suffix}"), &labels);
                        for k in (0..n).filter(|k| p[*k]) {
                            line(&mut out, &s, vals[k], t[k]);
                        }
                    }
                }
            }
        }
    }
    out.push_str("# EOF\n");
    (out, samples)
}

/// General PromQL beyond the dashboards, over the generated series; `mid` is a unix
/// time inside the data (for `@`).
fn general_queries(mid: i64) -> Vec<String> {
    let q = [
        "rate(comfyui_prompts_total[5m])",
        "increase(comfyui_prompts_total[10m])",
        "irate(comfyui_prompts_total[2m])",
        "resets(comfyui_prompts_total[30m])",
        "rate(recovery_overhead_seconds_total[3m])",
        "increase(node_cpu_seconds_total{mode=\"idle\"}[1h])",
        "delta(gpu_temperature_celsius[10m])",
        "idelta(gpu_power_usage_watts[5m])",
        "deriv(gpu_temperature_celsius[10m])",
        "changes(recovery_circuit_breaker_state[15m])",
        "predict_linear(gpu_memory_used_bytes[10m], 3600)",
        "holt_winters(gpu_temperature_celsius[10m], 0.5, 0.5)",
        "histogram_quantile(0.9, rate(comfyui_prompt_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.5, sum without (instance) (rate(comfyui_prompt_duration_seconds_bucket[10m])))",
        "histogram_quantile(0.99, sum by (le, operation) (increase(recovery_duration_seconds_bucket[30m])))",
        "sum by (instance) (rate(node_cpu_seconds_total[5m]))",
        "avg without (gpu) (gpu_temperature_celsius)",
        "max by (instance) (gpu_power_usage_watts)",
        "min without (instance, gpu) (gpu_utilization_ratio)",
        "count by (mode) (node_cpu_seconds_total)",
        "stddev by (instance) (gpu_temperature_celsius)",
        "stdvar(gpu_power_usage_watts)",
        "quantile(0.75, gpu_temperature_celsius)",
        "count_values(\"state\", recovery_circuit_breaker_state)",
        "group by (instance) (gpu_info)",
        "topk(2, gpu_temperature_celsius)",
        "bottomk(1, gpu_power_usage_watts) by (instance)",
        "sort(gpu_temperature_celsius)",
        "sort_desc(sum by (instance) (rate(comfyui_prompts_total[5m])))",
        "gpu_memory_used_bytes / on (instance, gpu) gpu_memory_total_bytes",
        "gpu_memory_used_bytes / ignoring (gpu) group_left sum without (gpu) (gpu_memory_total_bytes)",
        "sum by (instance, mode) (rate(node_cpu_seconds_total[5m])) / on (instance) group_left () count by (instance) (node_cpu_seconds_total{mode=\"idle\"})",
        "gpu_temperature_celsius > bool 150",
        "gpu_temperature_celsius > 150",
        "gpu_temperature_celsius and on (instance) comfyui_up == 1",
        "gpu_temperature_celsius unless on (instance, gpu) gpu_power_usage_watts > 200",
        "comfyui_queue_pending or comfyui_queue_running",
        "-gpu_pcie_tx_bytes_per_second",
        "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        "rate(comfyui_prompts_total[5m] offset 10m)",
        "gpu_temperature_celsius offset 1h",
        "gpu_temperature_celsius @ MID",
        "rate(comfyui_prompts_total[5m] @ MID)",
        "gpu_temperature_celsius @ start()",
        "sum(comfyui_queue_pending @ end())",
        "max_over_time(rate(comfyui_prompts_total[5m])[30m:1m])",
        "avg_over_time(gpu_temperature_celsius[10m:30s])",
        "deriv(sum(gpu_power_usage_watts)[20m:])",
        "avg_over_time(gpu_temperature_celsius[10m])",
        "min_over_time(gpu_power_usage_watts[10m])",
        "max_over_time(gpu_power_usage_watts[10m])",
        "sum_over_time(comfyui_queue_pending[10m])",
        "count_over_time(ALERTS[10m])",
        "quantile_over_time(0.9, gpu_temperature_celsius[15m])",
        "stddev_over_time(gpu_temperature_celsius[15m])",
        "stdvar_over_time(gpu_temperature_celsius[15m])",
        "last_over_time(comfyui_queue_pending[10m])",
        "present_over_time(ALERTS{alertname=\"GpuHot\"}[5m])",
        "absent(no_such_metric)",
        "absent(gpu_temperature_celsius{gpu=\"7\"})",
        "absent_over_time(ALERTS{alertname=\"GpuHot\", instance=\"gpu-box-1:9188\"}[5m])",
        "label_replace(gpu_temperature_celsius, \"card\", \"gpu-$1\", \"gpu\", \"(.*)\")",
        "label_join(gpu_info, \"where\", \"/\", \"instance\", \"gpu\")",
        "clamp(gpu_temperature_celsius, 50, 200)",
        "clamp_min(gpu_temperature_celsius, 100)",
        "clamp_max(gpu_temperature_celsius, 100)",
        "abs(-gpu_temperature_celsius)",
        "ceil(gpu_temperature_celsius)",
        "floor(gpu_temperature_celsius)",
        "round(gpu_temperature_celsius, 0.5)",
        "sqrt(gpu_power_usage_watts)",
        "ln(gpu_power_usage_watts)",
        "log2(gpu_power_usage_watts)",
        "exp(gpu_utilization_ratio)",
        "sgn(gpu_temperature_celsius - 150)",
        "timestamp(comfyui_queue_pending)",
        "scalar(sum(comfyui_queue_pending)) * gpu_utilization_ratio",
        "vector(1)",
        "time()",
        "minute()",
        "hour(vector(time()))",
        "day_of_week()",
        "count(ALERTS{alertstate=\"firing\"}) or vector(0)",
        "count by (alertstate) (ALERTS)",
    ];
    q.iter()
        .map(|s| s.replace("MID", &mid.to_string()))
        .collect()
}

/// Queries both sides must reject the same way (status and `errorType`).
const ERROR_QUERIES: [&str; 3] = [
    "sum(",
    "rate(gpu_temperature_celsius)",
    "gpu_temperature_celsius + on (instance) gpu_power_usage_watts",
];

fn floats_equal(a: &str, b: &str) -> bool {
    let parse = |s: &str| match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        s => s.parse::<f64>().ok(),
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) if x.is_nan() || y.is_nan() => x.is_nan() && y.is_nan(),
        (Some(x), Some(y)) if x.is_infinite() || y.is_infinite() => x == y,
        (Some(x), Some(y)) => (x - y).abs() <= REL_TOL * x.abs().max(y.abs()),
        _ => false,
    }
}

fn labels_key(m: &Value) -> String {
    let map: BTreeMap<String, String> = m
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    format!("{map:?}")
}

/// Differences between two `query_range`/`query` answers (status, errorType, resultType,
/// label sets, timestamps exactly; values within `REL_TOL`), at most a few lines.
fn diff_answers(ours: &(u16, Value), theirs: &(u16, Value)) -> Option<String> {
    let (os, o) = ours;
    let (ts, t) = theirs;
    if os != ts || o["status"] != t["status"] || o["errorType"] != t["errorType"] {
        return Some(format!(
            "status {os} {} {} vs prometheus {ts} {} {} ({} / {})",
            o["status"], o["errorType"], t["status"], t["errorType"], o["error"], t["error"]
        ));
    }
    if t["status"] != "success" {
        return None;
    }
    let (od, td) = (&o["data"], &t["data"]);
    if od["resultType"] != td["resultType"] {
        return Some(format!(
            "resultType {} vs {}",
            od["resultType"], td["resultType"]
        ));
    }
    if matches!(td["resultType"].as_str(), Some("scalar" | "string")) {
        let (o, t) = (&od["result"], &td["result"]);
        let same = o[0].as_f64() == t[0].as_f64()
            && match td["resultType"].as_str() {
                Some("scalar") => {
                    floats_equal(o[1].as_str().unwrap_or(""), t[1].as_str().unwrap_or(""))
                }
                _ => o[1] == t[1],
            };
        return (!same).then(|| format!("{o} vs prometheus {t}"));
    }
    let index = |d: &Value| -> BTreeMap<String, Vec<Value>> {
        d["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let vals = match (&s["values"], &s["value"]) {
                            (Value::Array(v), _) => v.clone(),
                            (_, v @ Value::Array(_)) => vec![v.clone()],
                            _ => vec![s.clone()],
                        };
                        (labels_key(&s["metric"]), vals)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (oi, ti) = (index(od), index(td));
    let okeys: BTreeSet<&String> = oi.keys().collect();
    let tkeys: BTreeSet<&String> = ti.keys().collect();
    if okeys != tkeys {
        let only_o: Vec<_> = okeys.difference(&tkeys).take(3).collect();
        let only_t: Vec<_> = tkeys.difference(&okeys).take(3).collect();
        return Some(format!(
            "{} series vs {}; only ours: {only_o:?}; only prometheus: {only_t:?}",
            okeys.len(),
            tkeys.len()
        ));
    }
    for (k, ov) in &oi {
        let tv = &ti[k];
        let pts = |v: &[Value]| -> Vec<(f64, String)> {
            v.iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap_or(f64::NAN),
                        p[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        };
        let (op, tp) = (pts(ov), pts(tv));
        let ot: Vec<f64> = op.iter().map(|p| p.0).collect();
        let tt: Vec<f64> = tp.iter().map(|p| p.0).collect();
        if ot != tt {
            let first = ot.iter().zip(&tt).position(|(a, b)| a != b);
            return Some(format!(
                "{k}: {} points vs {}; first differing timestamp at index {first:?} (ours {:?}, prometheus {:?})",
                ot.len(),
                tt.len(),
                first.map(|i| ot[i]),
                first.map(|i| tt[i])
            ));
        }
        if let Some((a, b)) = op.iter().zip(&tp).find(|(a, b)| !floats_equal(&a.1, &b.1)) {
            return Some(format!("{k} @{}: value {} vs prometheus {}", a.0, a.1, b.1));
        }
    }
    None
}

/// Both servers, loaded with the same generated hours.
struct Pair {
    _dir: tempfile::TempDir,
    prom: Prometheus,
    ours: Sentinel,
    promtool: PathBuf,
    /// First and last sample time of the data, ms.
    start_ms: i64,
    end_ms: i64,
    queries: Vec<String>,
}

impl Pair {
    fn start() -> Option<Pair> {
        let promtool = peer("promtool")?;
        let prometheus = peer("prometheus")?;
        let dir = tempfile::tempdir().unwrap();
        let queries = dashboard_queries();
        let fams = families(&selected_metrics(&queries));
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Ends a minute ago, so that the sidecar's own live samples (written from its
        // start on) fall after every compared range.
        let end_ms = (now_ms - 60_000) / INTERVAL_MS * INTERVAL_MS;
        let (text, samples) = generate(&fams, end_ms);
        let file = temp_file(dir.path(), "history.om", &text);
        eprintln!(
            "generated {samples} samples of {} families, {} bytes",
            fams.len(),
            text.len()
        );
        drop(text);
        run_ok(
            Command::new(&promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&file)
                .arg(dir.path().join("prom").join("tsdb")),
        );
        let cfg = temp_file(
            dir.path(),
            "config.yaml",
            &format!(
                "data_dir: {:?}\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n\
                 history:\n  retention: 1d\nquery:\n  timeout: 120s\n",
                dir.path().join("data")
            ),
        );
        let out = Command::new(bin())
            .args(["history", "import"])
            .arg(&file)
            .args(["--config", cfg.to_str().unwrap()])
            .output()
            .expect("history import");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "history import: {msg}");
        assert!(
            msg.contains(&format!("imported {samples} samples")),
            "history import: {msg}"
        );
        let prom = Prometheus::start(&prometheus, &dir.path().join("prom"), "global: {}\n");
        let ours = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
        ours.wait_ready();
        let n = HOURS * 3_600_000 / INTERVAL_MS;
        Some(Pair {
            _dir: dir,
            prom,
            ours,
            promtool,
            start_ms: end_ms - (n - 1) * INTERVAL_MS - 250,
            end_ms,
            queries,
        })
    }

    /// The compared range: from 5 minutes before the data (empty steps) to its end,
    /// aligned to the step as Grafana aligns it.
    fn range(&self) -> (i64, i64) {
        let start = (self.start_ms / 1000 - 300) / STEP_S * STEP_S;
        let end = self.end_ms / 1000 / STEP_S * STEP_S;
        (start, end)
    }

    fn both(&self, path_and_query: &str) -> ((u16, Value), (u16, Value)) {
        (
            get_json_strict(&self.ours.url(path_and_query)),
            get_json_strict(&format!("{}{path_and_query}", self.prom.url)),
        )
    }
}

fn range_path(q: &str, start: i64, end: i64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step={STEP_S}",
        percent_encode(q)
    )
}

/// Runs every query on both sides; returns the differences, one line each.
fn compare_ranges(p: &Pair, queries: &[String]) -> Vec<String> {
    let (start, end) = p.range();
    let mut diffs = Vec::new();
    for q in queries {
        let (o, t) = p.both(&range_path(q, start, end));
        if t.1["status"] == "success"
            && t.1["data"]["result"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        {
            // Every compared query must select something on Prometheus too, or the
            // comparison would prove nothing (absent() of a present series, and `@ start()`
            // which is 5 minutes before the data, aside).
            if !q.starts_with("absent") && !q.contains("@ start()") {
                diffs.push(format!(
                    "{q}: prometheus returns nothing; the generator misses it"
                ));
            }
        }
        if let Some(d) = diff_answers(&o, &t) {
            diffs.push(format!("{q}: {d}"));
        }
    }
    diffs
}

#[test]
fn dashboard_and_general_queries_equal_prometheus_on_imported_history() {
    let Some(p) = Pair::start() else {
        return;
    };
    let mut diffs = compare_ranges(&p, &p.queries);
    let (start, end) = p.range();
    let mid = (start + end) / 2;
    diffs.extend(compare_ranges(&p, &general_queries(mid)));
    // Instant queries at a few times, the same way.
    for q in general_queries(mid).iter().step_by(3) {
        for at in [start + 600, mid + 7, end] {
            let path = format!("/api/v1/query?query={}&time={at}", percent_encode(q));
            let (o, t) = p.both(&path);
            if let Some(d) = diff_answers(&o, &t) {
                diffs.push(format!("instant {q} @{at}: {d}"));
            }
        }
    }
    for q in ERROR_QUERIES {
        let (o, t) = p.both(&range_path(q, start, end));
        assert_ne!(t.1["status"], "success", "{q} is meant to fail");
        if let Some(d) = diff_answers(&o, &t) {
            diffs.push(format!("{q}: {d}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} answers differ from Prometheus 2.42:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Sorted label sets of a `/api/v1/series` answer.
fn series_set(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["data"]
        .as_array()
        .map(|a| a.iter().map(labels_key).collect())
        .unwrap_or_default();
    s.sort();
    s
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    s.sort();
    s
}

#[test]
fn series_labels_and_label_values_equal_prometheus_on_imported_history() {
    let Some(p) = Pair::start() else {
        return;
    };
    let (start, end) = (p.start_ms / 1000, p.end_ms / 1000 + 1);
    // The series born late ("interrupted") is alive only in the last 40 minutes: a window
    // ending an hour before the end leaves it out on both sides.
    let early_end = end - 3600;
    let enc = percent_encode;
    let mut diffs = Vec::new();
    let matchers = [
        vec!["comfyui_prompts_total"],
        vec!["{__name__=~\"gpu_.*\", gpu=\"1\"}"],
        vec!["comfyui_prompts_total{outcome!=\"success\"}", "ALERTS"],
        vec!["{__name__=~\"recovery_.+_bucket\", le=\"+Inf\"}"],
        vec!["node_filesystem_avail_bytes{fstype!~\"tmpfs\"}"],
    ];
    for ms in &matchers {
        let m: String = ms.iter().map(|m| format!("&match[]={}", enc(m))).collect();
        for (s, e) in [(start, end), (start, early_end)] {
            let path = format!("/api/v1/series?start={s}&end={e}{m}");
            let (o, t) = p.both(&path);
            if o.0 != t.0 || series_set(&o.1) != series_set(&t.1) {
                diffs.push(format!(
                    "series {ms:?} [{s},{e}]: {} series (status {}) vs prometheus {} (status {})",
                    series_set(&o.1).len(),
                    o.0,
                    series_set(&t.1).len(),
                    t.0
                ));
            }
            if series_set(&t.1).is_empty() {
                diffs.push(format!("series {ms:?}: prometheus selects nothing"));
            }
            let path = format!("/api/v1/labels?start={s}&end={e}{m}");
            let (o, t) = p.both(&path);
            if o.0 != t.0 || strings(&o.1) != strings(&t.1) {
                diffs.push(format!(
                    "labels {ms:?} [{s},{e}]: {:?} vs prometheus {:?}",
                    strings(&o.1),
                    strings(&t.1)
                ));
            }
            // Prometheus's own exact answer for the window: the values among the series
            // its /series returns (chunk-exact; compared equal above).
            let (_, prom_series) = get_json_strict(&format!(
                "{}/api/v1/series?start={s}&end={e}{m}",
                p.prom.url
            ));
            for name in ["__name__", "instance", "outcome", "le", "gpu", "fstype"] {
                let path = format!("/api/v1/label/{name}/values?start={s}&end={e}{m}");
                let (o, t) = p.both(&path);
                // The one listed difference (docs/api.md, "Differential test"): with
                // match[], Prometheus 2.42 reads label values from the index of every
                // block overlapping the window, so it also names values of series
                // without samples in the window (here the series born late, in the
                // same 2 h block); the sidecar answers exactly. Accepted only when the
                // window is partial, ours is a subset of Prometheus's, and ours is
                // exactly the values of the series Prometheus's /series returns.
                let exact: BTreeSet<String> = prom_series["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l[name].as_str().map(str::to_string))
                    .collect();
                let (ov, tv) = (strings(&o.1), strings(&t.1));
                let block_granular = e != end
                    && ov.iter().all(|v| tv.contains(v))
                    && ov.iter().cloned().collect::<BTreeSet<_>>() == exact;
                if o.0 != t.0 || (ov != tv && !block_granular) {
                    diffs.push(format!(
                        "label {name} values {ms:?} [{s},{e}]: {:?} vs prometheus {:?}",
                        strings(&o.1),
                        strings(&t.1)
                    ));
                }
            }
        }
    }
    // Without match[] over the whole data: every name and value the data holds.
    for path in [
        format!("/api/v1/labels?start={start}&end={end}"),
        format!("/api/v1/label/__name__/values?start={start}&end={end}"),
        format!("/api/v1/label/mode/values?start={start}&end={end}"),
    ] {
        let (o, t) = p.both(&path);
        if strings(&o.1) != strings(&t.1) {
            diffs.push(format!(
                "{path}: {:?} vs prometheus {:?}",
                strings(&o.1),
                strings(&t.1)
            ));
        }
    }
    // A bad matcher: the same error on both.
    let (o, t) = p.both(&format!("/api/v1/series?match[]={}", enc("{foo")));
    if o.0 != t.0 || o.1["errorType"] != t.1["errorType"] {
        diffs.push(format!(
            "bad match[]: {} {} vs prometheus {} {}",
            o.0, o.1["errorType"], t.0, t.1["errorType"]
        ));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `promtool query range|instant|series|labels` output (its own rendering of the
/// answers), against `url`.
fn promtool_query(promtool: &Path, args: &[String]) -> String {
    let out = run_ok(Command::new(promtool).arg("query").args(args));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn promtool_query_range_answers_the_same_from_the_sidecar_and_prometheus() {
    let Some(p) = Pair::start() else {
        return;
    };
    let (start, end) = p.range();
    let ours = format!("http://{}", p.ours.addr);
    let mut diffs = Vec::new();
    // Raw samples and exact arithmetic: promtool renders values in full, so the texts
    // compare exactly.
    for q in [
        "comfyui_queue_pending",
        "gpu_temperature_celsius{gpu=\"0\"}",
        "resets(comfyui_prompts_total[30m])",
        "count by (instance) (node_cpu_seconds_total)",
        "sum by (instance) (increase(quality_image_failures_total{check=\"blank\"}[30m]))",
    ] {
        let args = |server: &str| -> Vec<String> {
            vec![
                "range".into(),
                format!("--start={start}"),
                format!("--end={end}"),
                format!("--step={STEP_S}s"),
                server.into(),
                q.into(),
            ]
        };
        let o = promtool_query(&p.promtool, &args(&ours));
        let t = promtool_query(&p.promtool, &args(&p.prom.url));
        assert!(!t.trim().is_empty(), "{q}: prometheus returns nothing");
        if o != t {
            diffs.push(format!("range {q}:\nours:\n{o}\nprometheus:\n{t}"));
        }
    }
    let mid = (start + end) / 2;
    for args in [
        vec![
            "instant".to_string(),
            format!("--time={mid}"),
            "URL".into(),
            "sort(gpu_power_usage_watts)".into(),
        ],
        vec![
            "series".to_string(),
            format!("--start={start}"),
            format!("--end={end}"),
            "--match=comfyui_prompts_total".into(),
            "URL".into(),
        ],
        vec![
            "labels".to_string(),
            format!("--start={start}"),
            format!("--end={end}"),
            "URL".into(),
            "outcome".into(),
        ],
    ] {
        let with = |server: &str| -> Vec<String> {
            args.iter()
                .map(|a| {
                    if a == "URL" {
                        server.to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        let o = promtool_query(&p.promtool, &with(&ours));
        let t = promtool_query(&p.promtool, &with(&p.prom.url));
        assert!(!t.trim().is_empty(), "{args:?}: prometheus returns nothing");
        if o != t {
            diffs.push(format!("{args:?}:\nours:\n{o}\nprometheus:\n{t}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn every_metric_the_dashboards_select_is_generated_with_a_type() {
    let queries = dashboard_queries();
    assert!(queries.len() > 100, "{} dashboard queries", queries.len());
    let metrics = selected_metrics(&queries);
    let fams = families(&metrics);
    let (text, samples) = generate(&fams, 1_700_000_000_000);
    for m in &metrics {
        assert!(
            text.contains(&format!("\n{m}{{")),
            "{m} is selected by a dashboard but not generated"
        );
    }
    assert_eq!(fams["comfyui_prompt_duration_seconds"], Kind::Histogram);
    assert_eq!(fams["comfyui_prompts"], Kind::Counter);
    assert!(samples > 100_000, "{samples}");
    // Deterministic: the same text twice.
    assert_eq!(generate(&fams, 1_700_000_000_000).0, text);
}
