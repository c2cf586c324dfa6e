//! The query API (`/api/v1/query`, Prometheus's shape) and `comfy-sentinel gate` on top
//! of it: go, no-go, and an unusable criteria file.

use crate::util::*;
use std::process::Command;

fn wait_for_series(s: &Sentinel, query: &str) {
    let url = s.url(&format!("/api/v1/query?query={query}"));
    wait_until(std::time::Duration::from_secs(30), || {
        match get_json(&url) {
            (200, v, _)
                if v["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()) =>
            {
                Ok(())
            }
            (_, _, text) => Err(format!(
                "{query} never returned data: {text}; log: {}",
                s.logs()
            )),
        }
    });
}

#[test]
fn query_api_answers_in_prometheus_shape() {
    let s = Sentinel::start(&[]);
    s.wait_ready();
    wait_for_series(&s, "sentinel_build_info");
    let (status, _, body) =
        http_get(&s.url("/api/v1/query?query=1%2B1&time=1700000000"), &[]).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"], serde_json::json!([1700000000, "2"]));
    let (status, _, body) =
        http_get(&s.url("/api/v1/query?query=sum(sentinel_build_info)"), &[]).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    // Bad input: a precise 400 in Prometheus's error shape.
    for bad in [
        "/api/v1/query",
        "/api/v1/query?query=sum(",
        "/api/v1/query?query=up&time=soon",
    ] {
        let (status, _, body) = http_get(&s.url(bad), &[]).unwrap();
        assert_eq!(status, 400, "{bad}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["errorType"].as_str()),
            (Some("error"), Some("bad_data")),
            "{bad}"
        );
    }
}

#[test]
fn gate_says_go_no_go_or_refuses_the_file() {
    let s = Sentinel::start(&[]);
    s.wait_ready();
    wait_for_series(&s, "sentinel_collector_success");
    let dir = tempfile::tempdir().unwrap();
    let gate = |criteria: &str| {
        let f = temp_file(dir.path(), "criteria.yaml", criteria);
        let out = Command::new(bin())
            .args([
                "gate",
                "--url",
                &s.url(""),
                "--criteria",
                f.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, table) = gate(
        "criteria:\n  - name: built\n    query: sentinel_build_info\n    min: 1\n  - name: no such alert\n    query: ALERTS{alertname=\"NoSuchAlert\"}\n    expect: empty\n",
    );
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("built") && table.contains("pass") && table.ends_with("GO\n"),
        "{table}"
    );
    let (code, table) =
        gate("criteria:\n  - name: impossible\n    query: sentinel_build_info\n    max: 0.5\n");
    assert_eq!(code, 1, "{table}");
    assert!(
        table.contains("FAIL") && table.ends_with("NO-GO\n"),
        "{table}"
    );
    let (code, table) =
        gate("criteria:\n  - name: no data\n    query: no_such_metric\n    min: 1\n");
    assert_eq!(code, 1, "no data is no evidence: {table}");
    let (code, _) = gate("criteria:\n  - name: x\n    qurey: up\n");
    assert_eq!(code, 2);
}
