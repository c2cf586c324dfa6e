//! Grafana with the sidecar as its only data source (deploy/grafana/, docs/trends.md
//! "Grafana without Prometheus"): the provisioning example points at the sidecar and
//! loads the shipped dashboards, its compose file is valid, and every query the shipped
//! dashboards make (panel targets, range or instant, and the variables' label values)
//! is answered by the sidecar's Prometheus API the way Grafana sends it, with no
//! function or syntax our engine lacks. Neighbour: tests/dashboards.rs (the same
//! dashboards against a real Prometheus).

use crate::support::dashboards::{dashboards, label_values, substitute};
use crate::util::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn yaml(rel: &str) -> serde_yaml_ng::Value {
    let path = repo().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One request Grafana makes for a dashboard: (where it comes from, path, form body).
struct Call {
    what: String,
    path: String,
    form: String,
}

/// Grafana's variables as a dashboard showing "All" sends them, at the sidecar's steps.
fn grafana(expr: &str) -> String {
    substitute(expr, "20s", 5)
}

fn calls(start: u64, end: u64) -> Vec<Call> {
    let mut out = Vec::new();
    for d in dashboards() {
        let name = &d.file;
        for (p, t) in d.targets() {
            let Some(expr) = t["expr"].as_str() else {
                continue;
            };
            let q = percent_encode(&grafana(expr));
            let what = format!("{name}: {} {}", p["title"], t["refId"]);
            if t["instant"] == true {
                out.push(Call {
                    what,
                    path: "/api/v1/query".into(),
                    form: format!("query={q}&time={end}"),
                });
            } else {
                out.push(Call {
                    what,
                    path: "/api/v1/query_range".into(),
                    form: format!("query={q}&start={start}&end={end}&step=15"),
                });
            }
        }
        for v in d.variables() {
            if v["type"] != "query" {
                continue;
            }
            let (selector, label) = label_values(v).unwrap_or_else(|| {
                panic!(
                    "{name}: variable query {} is not label_values()",
                    v["query"]
                )
            });
            let what = format!("{name}: variable {}", v["name"]);
            let path = format!("/api/v1/label/{label}/values");
            let mut form = format!("start={start}&end={end}");
            if let Some(sel) = selector {
                form.push_str(&format!("&match[]={}", percent_encode(&grafana(&sel))));
            }
            out.push(Call { what, path, form });
        }
    }
    out
}

#[test]
fn grafana_provisioning_points_at_the_sidecar_and_loads_the_shipped_dashboards() {
    let ds = yaml("deploy/grafana/provisioning/datasources/comfy-sentinel.yaml");
    let list = ds["datasources"].as_sequence().expect("datasources");
    let prom: Vec<_> = list.iter().filter(|d| d["type"] == "prometheus").collect();
    assert_eq!(prom.len(), 1, "one Prometheus data source: {list:?}");
    let prom = prom[0];
    assert_eq!(prom["isDefault"].as_bool(), Some(true));
    let url = prom["url"].as_str().expect("url");
    let am = list
        .iter()
        .find(|d| d["type"] == "alertmanager")
        .expect("an Alertmanager data source");
    assert_eq!(am["url"].as_str(), Some(url), "both on the sidecar");
    assert_eq!(
        am["jsonData"]["implementation"].as_str(),
        Some("prometheus")
    );

    // The URL names the compose file's sidecar service on the port it listens on.
    let compose = yaml("deploy/grafana/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        ["comfy-sentinel", "grafana"],
        "sidecar-only: no Prometheus"
    );
    let cfg = yaml("deploy/comfy-sentinel.yaml");
    let port = cfg["listen"]
        .as_str()
        .and_then(|l| l.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("listen in deploy/comfy-sentinel.yaml");
    assert_eq!(url, format!("http://comfy-sentinel:{port}"));

    // The provider's path is where the compose file mounts dashboards/, and the
    // provisioning directory is mounted where Grafana reads it.
    let prov = yaml("deploy/grafana/provisioning/dashboards/comfy-sentinel.yaml");
    let path = prov["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let volumes: Vec<(String, String)> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    let base = repo().join("deploy/grafana");
    let mounted = |target: &str| -> std::path::PathBuf {
        let (src, _) = volumes
            .iter()
            .find(|(_, t)| t == target)
            .unwrap_or_else(|| panic!("nothing mounted at {target}: {volumes:?}"));
        base.join(src)
    };
    let dashboards = mounted(path);
    assert_eq!(
        dashboards.canonicalize().unwrap(),
        repo().join("dashboards").canonicalize().unwrap()
    );
    let provisioning = mounted("/etc/grafana/provisioning");
    for f in [
        "datasources/comfy-sentinel.yaml",
        "dashboards/comfy-sentinel.yaml",
    ] {
        assert!(provisioning.join(f).is_file(), "{f} not in the mount");
    }
    let home = compose["services"]["grafana"]["environment"]
        ["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("home dashboard");
    let rel = home
        .strip_prefix(&format!("{path}/"))
        .expect("home under the provider path");
    assert!(Path::new(&dashboards).join(rel).is_file(), "{home}");
}

#[test]
fn grafana_sidecar_compose_file_is_valid() {
    let Some(compose) = peer("docker-compose") else {
        return;
    };
    run_ok(Command::new(compose).current_dir(repo()).args([
        "-f",
        "deploy/grafana/docker-compose.yml",
        "config",
        "-q",
    ]));
}

#[test]
fn every_shipped_dashboard_query_runs_on_the_sidecar_as_grafana_sends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Sentinel::start_in(
        dir.path(),
        "collectors:\n  system:\n    interval: 1s\n    timeout: 1s\n  comfyui: { url: 'http://127.0.0.1:9', interval: 1s }\n",
    );
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(3));
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let calls = calls(end - 3600, end);
    assert!(calls.len() > 50, "{} queries", calls.len());
    let mut failures = Vec::new();
    for c in &calls {
        // Label values are GET only (as in Prometheus); the rest as Grafana's POST form.
        let (status, _, body) = if c.path.starts_with("/api/v1/label/") {
            http_get(&s.url(&format!("{}?{}", c.path, c.form)), &[])
        } else {
            http_request(
                "POST",
                &s.url(&c.path),
                &[("content-type", "application/x-www-form-urlencoded")],
                c.form.as_bytes(),
            )
        }
        .expect("request to the sidecar");
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 || json["status"] != "success" {
            failures.push(format!(
                "{} ({} {}): {status} {}",
                c.what,
                c.path,
                c.form,
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed on the sidecar:\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n")
    );
}
