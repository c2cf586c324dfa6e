//! The Grafana dashboards in `dashboards/`: their structure (valid JSON, unique uids, the
//! datasource variable, defined variables, area links), their thresholds (which mirror
//! the default rules' levels) and the generator (`dashboards/build.py` writes the JSON).
//! Neighbours: `metric_contract` checks what the queries may read and runs every query
//! in a real Prometheus; `deploy` checks the compose stack. `rules/*.yaml` holds the
//! levels the panel thresholds mirror.

use crate::support::dashboards::dashboards;
use crate::util::{self, run_ok};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

// ---------------------------------------------------------------------------------------
// Reading the dashboards (the files themselves: tests/support/dashboards.rs).

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
// The generator.

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
