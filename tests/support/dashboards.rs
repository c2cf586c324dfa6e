//! The one reader of the shipped Grafana dashboards (`dashboards/*.json`): each file's
//! JSON, its panels (rows' nested panels included), query targets and variables, and
//! Grafana's variable substitution. Users: tests/dashboards.rs (structure),
//! tests/metric_contract.rs (every query in a real Prometheus), tests/grafana_sidecar.rs
//! (every query on the sidecar as Grafana sends it), tests/history_differential.rs.

use crate::util::repo;
use serde_json::Value;

pub(crate) struct Dashboard {
    /// The file name, e.g. `overview.json`.
    pub(crate) file: String,
    pub(crate) json: Value,
}

/// Every shipped dashboard, sorted by file name; at least the overview and six areas.
pub(crate) fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("dashboards");
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
    pub(crate) fn uid(&self) -> &str {
        self.json["uid"].as_str().expect("uid")
    }

    /// Every panel, rows' nested panels included.
    pub(crate) fn panels(&self) -> Vec<&Value> {
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

    /// (panel, target) of every query target of every panel.
    pub(crate) fn targets(&self) -> Vec<(&Value, &Value)> {
        self.panels()
            .into_iter()
            .flat_map(|p| {
                p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |t| (p, t))
            })
            .collect()
    }

    pub(crate) fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    /// (panel title, refId, expression) of every query target, then ("variable name",
    /// "", selector) of every query variable's `label_values(selector, label)`.
    pub(crate) fn queries(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (p, t) in self.targets() {
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
        for v in self.variables() {
            if let Some((Some(selector), _)) = label_values(v) {
                let name = v["name"].as_str().unwrap_or("");
                out.push((format!("variable {name}"), String::new(), selector));
            }
        }
        out
    }
}

/// A query variable's `label_values(selector, label)` or `label_values(label)`:
/// (selector, label). None for any other variable.
pub(crate) fn label_values(v: &Value) -> Option<(Option<String>, String)> {
    if v["type"] != "query" {
        return None;
    }
    let q = v["query"]["query"].as_str().or(v["query"].as_str())?;
    let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
    Some(match inner.rsplit_once(',') {
        Some((sel, label)) => (Some(sel.trim().to_string()), label.trim().to_string()),
        None => (None, inner.trim().to_string()),
    })
}

/// Replaces Grafana's variables the way a dashboard showing "All" sends them: query
/// variables become the regex `.*`, `$__rate_interval` is `rate_interval`, and
/// `$__interval` (`$__interval_ms`) is `interval_s` seconds.
pub(crate) fn substitute(expr: &str, rate_interval: &str, interval_s: u32) -> String {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)")
        .expect("static regex");
    re.replace_all(expr, |c: &regex::Captures| {
        match c.get(1).or(c.get(2)).expect("one group matches").as_str() {
            "__rate_interval" => rate_interval.to_string(),
            "__interval" => format!("{interval_s}s"),
            "__range" => "1h".to_string(),
            "__interval_ms" => format!("{}", interval_s * 1000),
            _ => ".*".to_string(),
        }
    })
    .into_owned()
}

#[test]
fn substitute_sends_all_for_query_variables_and_the_given_intervals() {
    assert_eq!(
        substitute(
            "rate(x{a=~\"$gpu\",b=~\"${workflow:regex}\"}[$__rate_interval]) / $__interval_ms",
            "1m",
            15
        ),
        "rate(x{a=~\".*\",b=~\".*\"}[1m]) / 15000"
    );
    assert_eq!(
        substitute("y[$__interval] offset $__range", "20s", 5),
        "y[5s] offset 1h"
    );
    let var = |q: &str| serde_json::json!({"type": "query", "query": {"query": q}});
    assert_eq!(
        label_values(&var("label_values(up{job=\"x\"}, instance)")),
        Some((Some("up{job=\"x\"}".into()), "instance".into()))
    );
    assert_eq!(
        label_values(&var("label_values(gpu)")),
        Some((None, "gpu".into()))
    );
    assert_eq!(label_values(&var("query_result(up)")), None);
}
