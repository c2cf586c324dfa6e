//! Standalone alerts name their instance (issue 13, section 4): alerts the sidecar
//! evaluates carry `instance` (`external_labels.instance`, else the host name) in their
//! labels and in `$labels` of their templates, unless their expression gives one; `ALERTS`
//! on `/metrics` is unchanged. Every default annotation must read well for such an alert.

use comfy_sentinel::app::{alert_instance, host_name};
use comfy_sentinel::config::Config;
use parking_lot::Mutex;
use promql_parser::parser::{Expr, LabelModifier};
use sentinel_base::alert::{Alert, AlertSink};
use sentinel_base::metrics::registry::Registry;
use sentinel_rules::engine::{EngineSettings, RuleEngine};
use sentinel_rules::labels::Labels;
use sentinel_rules::rulefile::{parse_rule_file, RuleKind};
use sentinel_rules::store::{Origin, Store};
use sentinel_rules::template::{expand, TemplateData};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Capture(Mutex<Vec<Alert>>);
impl AlertSink for Capture {
    fn send(&self, alerts: Vec<Alert>) {
        self.0.lock().extend(alerts);
    }
}

const DOWN_RULE: &str = "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - alert: ComfyuiDown\n        expr: comfyui_up == 0\n        labels: { severity: critical }\n        annotations:\n          description: 'The ComfyUI API on {{ $labels.instance }} has not answered.'\n      - alert: Gpu\n        expr: gpu_hot > 0\n        labels: { severity: warning }\n        annotations:\n          description: 'on {{ $labels.instance }}'\n";

/// Runs the two rules once on a store where `comfyui_up` is 0 and `gpu_hot` carries its
/// own `instance`; returns what was sent and the exported `ALERTS` samples' labels.
fn fire(defaults: BTreeMap<String, String>) -> (Vec<Alert>, Vec<BTreeMap<String, String>>) {
    fire_with(defaults, BTreeMap::new())
}

/// [`fire`] with `external_labels` set as well.
fn fire_with(
    defaults: BTreeMap<String, String>,
    external_labels: BTreeMap<String, String>,
) -> (Vec<Alert>, Vec<BTreeMap<String, String>>) {
    let store = Arc::new(Store::new(600_000, 1000));
    let sink = Arc::new(Capture::default());
    let reg = Registry::new();
    let e = RuleEngine::new(store.clone(), sink.clone(), &reg);
    let settings = EngineSettings {
        evaluation_interval: Duration::from_secs(10),
        default_alert_labels: defaults,
        external_labels,
        ..Default::default()
    };
    e.load(&[("r.yaml".into(), DOWN_RULE.into())], settings)
        .unwrap();
    store.append(
        &Labels::from_pairs([("__name__", "comfyui_up")]),
        0,
        0.0,
        Origin::Snapshot,
    );
    store.append(
        &Labels::from_pairs([("__name__", "gpu_hot"), ("instance", "gpu-07:9400")]),
        0,
        1.0,
        Origin::Snapshot,
    );
    e.eval_due(0);
    let alerts = reg
        .collect()
        .into_iter()
        .find(|f| f.name == "ALERTS")
        .map(|f| {
            f.samples
                .iter()
                .map(|s| {
                    s.labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let sent = sink.0.lock().clone();
    (sent, alerts)
}

#[test]
fn comfyui_down_alert_names_the_host_when_run_standalone() {
    let host = host_name();
    assert!(!host.is_empty());
    let (sent, alerts) = fire([("instance".to_string(), host.clone())].into());
    let down = sent
        .iter()
        .find(|a| a.name() == "ComfyuiDown")
        .expect("fired");
    assert_eq!(down.labels.get("instance"), Some(&host));
    assert_eq!(
        down.annotations["description"],
        format!("The ComfyUI API on {host} has not answered.")
    );
    // An instance from the expression wins.
    let gpu = sent.iter().find(|a| a.name() == "Gpu").expect("fired");
    assert_eq!(gpu.labels["instance"], "gpu-07:9400");
    assert_eq!(gpu.annotations["description"], "on gpu-07:9400");
    // The ALERTS series on /metrics keep the expression's labels only.
    let down_series = alerts
        .iter()
        .find(|l| l["alertname"] == "ComfyuiDown")
        .expect("ALERTS");
    assert!(!down_series.contains_key("instance"), "{down_series:?}");
}

/// Regression: `external_labels` other than `instance` were documented as added to every
/// alert but were not sent. Prometheus adds them to the alerts it sends, where the alert
/// lacks the label; `ALERTS` on `/metrics` stays without them.
#[test]
fn external_labels_are_added_to_sent_alerts_without_overriding_their_own() {
    let external: BTreeMap<String, String> = [
        ("cluster".to_string(), "gpu-east".to_string()),
        ("instance".to_string(), "box-1".to_string()),
        ("severity".to_string(), "page".to_string()),
        ("empty".to_string(), String::new()),
    ]
    .into();
    let (sent, alerts) = fire_with([("instance".to_string(), "box-1".into())].into(), external);
    let down = sent.iter().find(|a| a.name() == "ComfyuiDown").unwrap();
    assert_eq!(down.labels["cluster"], "gpu-east");
    assert_eq!(down.labels["instance"], "box-1");
    // The rule's own label wins over an external label of the same name.
    assert_eq!(down.labels["severity"], "critical");
    // An empty external label adds nothing.
    assert!(!down.labels.contains_key("empty"), "{:?}", down.labels);
    // The expression's instance wins too.
    let gpu = sent.iter().find(|a| a.name() == "Gpu").unwrap();
    assert_eq!(gpu.labels["instance"], "gpu-07:9400");
    assert_eq!(gpu.labels["cluster"], "gpu-east");
    let down_series = alerts
        .iter()
        .find(|l| l["alertname"] == "ComfyuiDown")
        .expect("ALERTS");
    assert!(!down_series.contains_key("cluster"), "{down_series:?}");
}

#[test]
fn rules_test_and_other_engines_without_default_labels_are_unchanged() {
    let (sent, _) = fire(BTreeMap::new());
    let down = sent.iter().find(|a| a.name() == "ComfyuiDown").unwrap();
    assert!(!down.labels.contains_key("instance"));
}

#[test]
fn alert_instance_is_the_external_label_when_set_else_the_host_name() {
    let mut cfg = Config::default();
    assert_eq!(alert_instance(&cfg), host_name());
    cfg.external_labels
        .insert("instance".into(), "render-node-3".into());
    assert_eq!(alert_instance(&cfg), "render-node-3");
}

/// Label values a standalone sidecar's own series carry (no `instance`: nothing
/// scraped it), one realistic value per label name.
fn realistic() -> BTreeMap<&'static str, &'static str> {
    [
        ("gpu", "0"),
        ("uuid", "GPU-5e7c2b1a-0d7f-4c2e-9a51-3f0c1d2e4b6a"),
        ("name", "NVIDIA GeForce RTX 4090"),
        ("reason", "sw_thermal"),
        ("xid", "79"),
        ("device", "nvme0n1p2"),
        ("mountpoint", "/"),
        ("fstype", "ext4"),
        ("collector", "gpu"),
        ("receiver", "ops"),
        ("result", "failed"),
        ("breaker", "comfyui"),
        ("workflow", "txt2img"),
        ("metric", "sharpness"),
        ("check", "blank"),
        ("operation", "load_model"),
        ("outcome", "failed"),
        ("node_type", "KSampler"),
        ("exception_type", "OutOfMemoryError"),
        ("endpoint", "queue"),
        ("target", "postgres"),
        ("job", "comfy-sentinel"),
        ("le", "0.5"),
    ]
    .into()
}

/// The labels an expression's result keeps, or None when it keeps its inputs' labels.
fn result_labels(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::Aggregate(a) => match &a.modifier {
            Some(LabelModifier::Include(l)) => Some(l.labels.iter().cloned().collect()),
            Some(LabelModifier::Exclude(l)) => {
                let mut all: BTreeSet<String> = match result_labels(&a.expr) {
                    Some(s) => s,
                    None => realistic().keys().map(|k| k.to_string()).collect(),
                };
                for x in &l.labels {
                    all.remove(x);
                }
                Some(all)
            }
            None => Some(BTreeSet::new()),
        },
        Expr::Binary(b) => {
            let l = result_labels(&b.lhs);
            let r = result_labels(&b.rhs);
            let scalar = |e: &Expr| matches!(e, Expr::NumberLiteral(_));
            if scalar(&b.rhs) {
                l
            } else if scalar(&b.lhs) {
                r
            } else {
                match (l, r) {
                    (Some(a), Some(b)) if b.is_superset(&a) => Some(a),
                    (Some(a), _) => Some(a),
                    (None, x) => x.or(None),
                }
            }
        }
        Expr::Paren(p) => result_labels(&p.expr),
        Expr::Unary(u) => result_labels(&u.expr),
        Expr::Subquery(s) => result_labels(&s.expr),
        Expr::Call(c) => {
            let name = c.func.name;
            let arg = |i: usize| c.args.args.get(i).map(|a| a.as_ref());
            match name {
                "histogram_quantile" => arg(1).and_then(result_labels).map(|mut s| {
                    s.remove("le");
                    s
                }),
                "vector" | "time" | "scalar" => Some(BTreeSet::new()),
                "absent" | "absent_over_time" => Some(BTreeSet::new()),
                _ => c
                    .args
                    .args
                    .iter()
                    .find(|a| {
                        !matches!(a.as_ref(), Expr::NumberLiteral(_) | Expr::StringLiteral(_))
                    })
                    .and_then(|a| result_labels(a)),
            }
        }
        _ => None,
    }
}

#[test]
fn every_default_annotation_reads_well_for_a_standalone_alert() {
    let host = host_name();
    let dir = comfy_sentinel_repo().join("rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut checked = 0;
    let mut bad = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let (groups, _) = parse_rule_file(&src, &f.display().to_string())
            .unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        for rule in groups.iter().flat_map(|g| &g.rules) {
            if rule.kind != RuleKind::Alerting {
                continue;
            }
            // The labels this alert's expression gives on a standalone sidecar, then the
            // instance the sidecar adds when they hold none.
            let mut labels: BTreeMap<String, String> = match result_labels(&rule.expr) {
                Some(keep) => realistic()
                    .into_iter()
                    .filter(|(k, _)| keep.contains(*k))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                None => realistic()
                    .into_iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            labels
                .entry("instance".to_string())
                .or_insert_with(|| host.clone());
            let ext = BTreeMap::new();
            for value in [0.93, 42.0, 0.0] {
                let data = TemplateData {
                    labels: &labels,
                    external_labels: &ext,
                    external_url: "",
                    value,
                };
                for (key, text) in &rule.annotations {
                    let out = expand(text, &data, &rule.name);
                    checked += 1;
                    let problems: Vec<&str> = [
                        ("<no value>", out.contains("<no value>")),
                        ("double space", out.contains("  ")),
                        (
                            "empty instance",
                            out.contains(" on  ") || out.contains(" on ."),
                        ),
                        (
                            "empty parentheses",
                            out.contains("()") || out.contains("( "),
                        ),
                        (
                            "space before punctuation",
                            out.contains(" ,") || out.contains(" ;") || out.contains(" )"),
                        ),
                        (
                            "template error",
                            out.contains("error expanding")
                                || out.contains("{{")
                                || out.contains("%!"),
                        ),
                        ("empty", out.trim().is_empty()),
                        ("untrimmed", out.trim() != out),
                        (
                            "no host",
                            text.contains("$labels.instance")
                                && !out.contains(labels["instance"].as_str()),
                        ),
                    ]
                    .into_iter()
                    .filter(|(_, hit)| *hit)
                    .map(|(what, _)| what)
                    .collect();
                    if !problems.is_empty() {
                        bad.push(format!(
                            "{} {} {key} (value {value}, labels {:?}): {problems:?}\n    {out}",
                            f.file_name().unwrap().to_string_lossy(),
                            rule.name,
                            labels.keys().collect::<Vec<_>>()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} annotations rendered");
    assert!(
        bad.is_empty(),
        "annotations that read badly:\n{}",
        bad.join("\n")
    );
}

fn comfy_sentinel_repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
