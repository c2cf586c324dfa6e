//! Bounds of the query and Alertmanager APIs through the real binary (issue "Trust": a
//! client reaching the port must not cost unbounded memory or CPU, and bad input gets a
//! precise 4xx in the peer's own error shape):
//!
//! - `/api/v1/*` forms: the parameter count is capped while parsing; a too-large body
//!   and too many parameters answer in Prometheus's JSON envelope;
//! - `/api/v2/alerts` and `/api/v2/silences`: `filter` count, the matchers of all
//!   filters together, `receiver` length, every client regex's compiled size and the
//!   filters' regexes together are capped (400, Alertmanager's error shape);
//! - posted alerts have their own cap (429, counted) and never push out rule alerts;
//! - `GET /api/v2/silence/{id}`: 404 as Alertmanager 0.25 answers, 422 for an id that
//!   is not a UUID;
//! - a SIGHUP that changes `query.max_concurrent` takes effect.

use crate::util::percent_encode as enc;
use crate::util::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn request(method: &str, url: &str, ct: &str, body: &[u8]) -> (u16, String, String) {
    let (st, h, b) = http_request(method, url, &[("Content-Type", ct)], body)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let ct = header(&h, "content-type").unwrap_or("").to_string();
    (st, ct, String::from_utf8_lossy(&b).into_owned())
}

/// `request` of a GET of `path` from the sentinel.
fn get(s: &Sentinel, path: &str) -> (u16, String, String) {
    request("GET", &s.url(path), "", b"")
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Prometheus's error envelope, parsed; panics when the body is not one.
fn prom_error(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "error", "{body}");
    (
        v["errorType"].as_str().unwrap_or_default().to_string(),
        v["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn query_form_with_too_many_params_is_refused_in_prometheus_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    let url = s.url("/api/v1/query");
    // 1,001 parameters: the query and a thousand others, well under the 1 MiB body cap.
    let body = format!("query=vector(1)&{}", "a=1&".repeat(1000));
    let (st, ct, b) = request("POST", &url, FORM, body.as_bytes());
    assert_eq!(st, 400, "{b}");
    assert_eq!(ct, "application/json");
    let (kind, msg) = prom_error(&b);
    assert_eq!(kind, "bad_data");
    assert!(msg.contains("more than 1000 parameters"), "{msg}");
    // The URL's parameters count too.
    let body = format!("query=vector(1)&{}", "a=1&".repeat(998));
    let (st, _, b) = request("POST", &format!("{url}?x=1&y=2"), FORM, body.as_bytes());
    assert_eq!(st, 400, "{b}");
    // At the cap, the query runs.
    let (st, _, b) = request("POST", &format!("{url}?x=1"), FORM, body.as_bytes());
    assert_eq!(st, 200, "{b}");
    // Series, labels: the same cap, the same envelope.
    let body = format!("match[]=up&{}", "b=2&".repeat(1000));
    for path in ["/api/v1/series", "/api/v1/labels"] {
        let (st, _, b) = request("POST", &s.url(path), FORM, body.as_bytes());
        assert_eq!(st, 400, "{path}: {b}");
        assert_eq!(prom_error(&b).0, "bad_data", "{path}");
    }
    // A million empty pairs in a URL cannot reach it (16 KiB of header); in a body of
    // 1 MiB they are stopped at the cap.
    let body = "&x".repeat(500_000);
    let (st, _, b) = request("POST", &url, FORM, body.as_bytes());
    assert_eq!(st, 400, "{b}");
}

#[test]
fn oversized_query_form_is_413_in_prometheus_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    let body = format!("query={}", "1".repeat(1 << 20));
    for path in ["/api/v1/query", "/api/v1/query_range", "/api/v1/series"] {
        let (st, ct, b) = request("POST", &s.url(path), FORM, body.as_bytes());
        assert_eq!(st, 413, "{path}: {b}");
        assert_eq!(ct, "application/json", "{path}");
        let (kind, msg) = prom_error(&b);
        assert_eq!(kind, "bad_data");
        assert_eq!(msg, "request body larger than 1048576 bytes");
    }
    // Still serving.
    let (st, _, b) = request("POST", &s.url("/api/v1/query"), FORM, b"query=1");
    assert_eq!(st, 200, "{b}");
}

/// An Alertmanager error body: a JSON string and a newline.
fn am_error(body: &str) -> String {
    assert!(body.ends_with('\n'), "{body:?}");
    serde_json::from_str::<String>(body.trim_end()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn alert_and_silence_filters_past_their_cap_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    let filters = |n: usize| {
        (0..n)
            .map(|i| format!("filter={}", enc(&format!("l{i}=\"v\""))))
            .collect::<Vec<_>>()
            .join("&")
    };
    for path in [
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/silences",
    ] {
        let (st, _, b) = get(&s, &format!("{path}?{}", filters(65)));
        assert_eq!(st, 400, "{path}: {b}");
        let msg = am_error(&b);
        assert_eq!(
            msg, "65 filter parameters; at most 64 are allowed",
            "{path}"
        );
        let (st, _, b) = get(&s, &format!("{path}?{}", filters(64)));
        assert_eq!(st, 200, "{path}: {b}");
    }
}

#[test]
fn one_filter_holding_hundreds_of_matchers_is_400_not_hundreds_of_compiled_regexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    // `\w{5}` (Unicode) compiles to over 128 KiB; one filter of 300 of them fits in
    // the header budget.
    let many = |m: &str, n: usize| enc(&format!("{{{}}}", vec![m; n].join(",")));
    let hog = many(r#"a=~"\\w{5}""#, 300);
    assert!(hog.len() < 12 * 1024, "{}", hog.len());
    for path in [
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/silences",
    ] {
        let (st, _, b) = get(&s, &format!("{path}?filter={hog}"));
        assert_eq!(st, 400, "{path}: {b}");
        assert_eq!(
            am_error(&b),
            "300 matchers in one request; at most 64 are allowed",
            "{path}"
        );
        // Counted across filters.
        let half = many(r#"b!="x""#, 40);
        let (st, _, b) = get(&s, &format!("{path}?filter={half}&filter={half}"));
        assert_eq!(st, 400, "{path}: {b}");
        assert_eq!(
            am_error(&b),
            "80 matchers in one request; at most 64 are allowed"
        );
        // The filters' regexes share one compiled-size budget: four fit, eight do not.
        let four = many(r#"a=~"\\w{5}""#, 4);
        let (st, _, b) = get(&s, &format!("{path}?filter={four}"));
        assert_eq!(st, 200, "{path}: {b}");
        let (st, _, b) = get(&s, &format!("{path}?filter={four}&filter={four}"));
        assert_eq!(st, 400, "{path}: {b}");
        assert!(am_error(&b).contains("size limit"), "{b}");
        // 64 plain matchers in one filter are taken.
        let (st, _, b) = get(&s, &format!("{path}?filter={}", many(r#"b!="x""#, 64)));
        assert_eq!(st, 200, "{path}: {b}");
    }
}

#[test]
fn receiver_regex_too_long_or_compiling_huge_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    let long = "a".repeat(1025);
    let (st, _, b) = get(&s, &format!("/api/v2/alerts?receiver={long}"));
    assert_eq!(st, 400, "{b}");
    assert_eq!(
        am_error(&b),
        "failed to parse receiver param: longer than 1024 bytes"
    );
    // Short patterns that compile to megabytes: a size-limit error, not a CPU spike.
    let hog = r"(\w{100}){100}";
    for path in ["/api/v2/alerts", "/api/v2/alerts/groups"] {
        let (st, _, b) = get(&s, &format!("{path}?receiver={}", enc(hog)));
        assert_eq!(st, 400, "{path}: {b}");
        let msg = am_error(&b);
        assert!(msg.contains("size limit"), "{msg}");
    }
    for path in ["/api/v2/alerts", "/api/v2/silences"] {
        let f = enc(&format!("a=~\"{hog}\""));
        let (st, _, b) = get(&s, &format!("{path}?filter={f}"));
        assert_eq!(st, 400, "{path}: {b}");
        assert!(am_error(&b).contains("size limit"), "{b}");
    }
    // An ordinary receiver regex still works.
    let (st, _, b) = get(&s, "/api/v2/alerts?receiver=hook.*");
    assert_eq!(st, 200, "{b}");
}

fn posted(from: usize, n: usize) -> String {
    let alerts: Vec<Value> = (from..from + n)
        .map(|i| serde_json::json!({"labels": {"alertname": "Posted", "i": i.to_string()}}))
        .collect();
    Value::Array(alerts).to_string()
}

fn alert_names(s: &Sentinel) -> Vec<String> {
    let (st, v, body) = get_json(&s.url("/api/v2/alerts?filter=alertname%3D%22RuleAlert%22"));
    assert_eq!(st, 200, "{body}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn posted_alerts_past_their_own_cap_get_429_and_rule_alerts_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(dir.path(), "rules.yml", "groups: []\n");
    let s = Sentinel::start_ready_in(
        dir.path(),
        &format!(
            "rules: {{ files: [{:?}], evaluation_interval: 1s }}\n",
            rules
        ),
    );
    let url = s.url("/api/v2/alerts");
    // 10,000 posted alerts fill their cap.
    for k in 0..10 {
        let (st, _, b) = request(
            "POST",
            &url,
            "application/json",
            posted(k * 1000, 1000).as_bytes(),
        );
        assert_eq!(st, 200, "batch {k}: {b}");
    }
    // One more new alert: 429 in Alertmanager's error shape, counted.
    let (st, ct, b) = request(
        "POST",
        &url,
        "application/json",
        posted(10_000, 1).as_bytes(),
    );
    assert_eq!(st, 429, "{b}");
    assert_eq!(ct, "application/json");
    let msg = am_error(&b);
    assert!(msg.contains("most posted alerts (10000)"), "{msg}");
    scrape_until(&s, "sentinel_notify_external_alerts_rejected_total 1\n");
    wait_until(Duration::from_secs(30), || {
        let (_, v, _) = get_json(&s.url("/api/v2/alerts?filter=alertname%3D%22Posted%22"));
        match v.as_array().map_or(0, Vec::len) {
            10_000 => Ok(()),
            n => Err(format!("{n} of the 10,000 posted alerts show")),
        }
    });
    // Once the notifier holds them, re-posting held alerts (to keep them firing) still
    // works at the cap.
    let (st, _, b) = request("POST", &url, "application/json", posted(0, 1000).as_bytes());
    assert_eq!(st, 200, "{b}");
    // A rule that starts firing now is still taken while the posted alerts' cap is full.
    // (That posted alerts take none of the rule alerts' own room, at their cap, is checked
    // in sentinel-notify: `posted_alerts_cannot_fill_the_alert_store_and_push_out_rule_alerts`.)
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: RuleAlert\n        expr: vector(1)\n",
    )
    .unwrap();
    s.signal("HUP");
    wait_until(Duration::from_secs(30), || {
        if alert_names(&s).is_empty() {
            Err("the rule alert has not arrived".to_string())
        } else {
            Ok(())
        }
    });
    let text = scrape(&s);
    assert!(
        text.contains("sentinel_notify_external_alerts_rejected_total 1\n"),
        "{text}"
    );
}

#[test]
fn unknown_silence_is_404_as_alertmanager_answers_and_a_malformed_id_422() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sentinel::start_ready_in(dir.path(), "");
    let id = "2d4f3a9e-1b7c-4e0a-9f21-6c5b8a7d3e10";
    // Alertmanager 0.25 answers GET of an unknown id with 404 and no body (checked
    // side by side in `am_api::v2_answers_match_a_real_alertmanager_...`); DELETE with
    // 500, where the sidecar says 404 in Alertmanager's error shape.
    let (st, _, b) = get(&s, &format!("/api/v2/silence/{id}"));
    assert_eq!((st, b.as_str()), (404, ""));
    let (st, ct, b) = request("DELETE", &s.url(&format!("/api/v2/silence/{id}")), "", b"");
    assert_eq!(st, 404);
    assert_eq!(ct, "application/json");
    assert_eq!(am_error(&b), "silence not found");
    for method in ["GET", "DELETE"] {
        let (st, _, b) = request(method, &s.url("/api/v2/silence/not-a-uuid"), "", b"");
        assert_eq!(st, 422, "{method}: {b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["code"], 601, "{b}");
        assert_eq!(
            v["message"], "silenceID in path must be of type uuid: \"not-a-uuid\"",
            "{b}"
        );
    }
}

fn nested_max_over_time(depth: usize) -> String {
    let mut q = "vector(1)".to_string();
    for _ in 0..depth {
        q = format!("max_over_time({q}[1m:1m])");
    }
    q
}

/// How long `1+1` takes while a query that runs to its deadline holds a slot.
fn beside_a_long_query(s: &Sentinel) -> (u16, Duration) {
    let url = s.url("/api/v1/query");
    let attack = format!("query={}&time=1700000000", enc(&nested_max_over_time(30)));
    std::thread::scope(|sc| {
        let a = sc.spawn(|| request("POST", &url, FORM, attack.as_bytes()));
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let (st, _, _) = request("POST", &url, FORM, b"query=1%2B1");
        let took = t0.elapsed();
        assert_eq!(
            a.join().unwrap().0,
            503,
            "the long query ends at its deadline"
        );
        (st, took)
    })
}

#[test]
fn sighup_raising_max_concurrent_lets_a_second_query_run_beside_a_long_one() {
    let dir = tempfile::tempdir().unwrap();
    let query = |n: usize| {
        format!(
            "query:\n  timeout: 6s\n  max_concurrent: {n}\n  max_points_per_series: 1000000000000000000\n"
        )
    };
    let s = Sentinel::start_ready_in(dir.path(), &query(1));
    // One slot: the short query waits for the long one.
    let (_, took) = beside_a_long_query(&s);
    eprintln!("max_concurrent 1: 1+1 answered after {took:?}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    // Two slots after the reload: it runs at once.
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("data_dir: {:?}\n{}", dir.path().join("data"), query(2)),
    )
    .unwrap();
    s.signal("HUP");
    wait_until(Duration::from_secs(30), || {
        let logs = s.logs();
        if logs.contains("config reloaded") {
            Ok(())
        } else {
            Err(format!("no reload: {logs}"))
        }
    });
    let (st, took) = beside_a_long_query(&s);
    eprintln!("max_concurrent 2: 1+1 answered after {took:?}");
    assert_eq!(st, 200);
    assert!(took < Duration::from_secs(3), "{took:?}");
}
