//! The events ingest API against the real binary: batches in both framings become
//! metrics, every refusal has its status and JSON reason, batches are atomic, labels are
//! capped, auth modes, rate limits, the Python reporter; and the published JSON Schema
//! agrees with the parser.

use crate::support::prometheus::promtool_check_metrics;
use crate::util::*;
use comfy_sentinel::ingest::events::{parse_batch, Framing, Limits};

const PATH: &str = "/api/v1/events";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// Starts the binary with `config` (YAML) and a private data dir.
fn start(config: &str) -> (Sentinel, tempfile::TempDir) {
    start_in(tempfile::tempdir().expect("temp dir"), config)
}

fn start_in(dir: tempfile::TempDir, config: &str) -> (Sentinel, tempfile::TempDir) {
    (Sentinel::start_in(dir.path(), config), dir)
}

fn post(s: &Sentinel, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http_request("POST", &s.url(PATH), headers, body.as_bytes()).expect("post events")
}

fn post_json(s: &Sentinel, body: &str) -> HttpResponse {
    post(s, &[("Content-Type", JSON)], body)
}

fn json(r: &HttpResponse) -> serde_json::Value {
    assert_eq!(
        header(&r.1, "content-type"),
        Some("application/json"),
        "{r:?}"
    );
    serde_json::from_slice(&r.2).expect("JSON answer")
}

/// Waits one refresh and returns the scrape (for checking that something did NOT appear).
fn settled_scrape(s: &Sentinel, marker: &str) -> String {
    wait_for(s, &[marker])
}

const OPERATION: &str = r#"{"type":"operation","operation":"load_model","duration_seconds":1.2,"overhead_seconds":0.01,"attempts":2,"outcome":"recovered","recovery_seconds":0.3,"persistence_seconds":0.002,"error_class":"transient"}"#;
const BREAKER: &str = r#"{"type":"circuit_breaker","name":"comfyui-api","state":"open"}"#;
const QUALITY: &str =
    r#"{"type":"quality","workflow":"portrait","metric":"clip_score","value":0.31}"#;
const HEARTBEAT: &str = r#"{"type":"heartbeat","name":"nightly-backup","status":"success"}"#;

#[test]
fn array_and_ndjson_batches_become_metrics() {
    let (s, _dir) = start("");
    let r = post_json(
        &s,
        &format!("[{OPERATION},{BREAKER},{QUALITY},{HEARTBEAT}]"),
    );
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(json(&r)["accepted"], 4);
    let nd = format!(
        "{OPERATION}\n{}\n",
        r#"{"type":"operation","operation":"load_model","duration_seconds":0.5,"outcome":"success"}"#
    );
    let r = post(&s, &[("Content-Type", NDJSON)], &nd);
    assert_eq!(r.0, 200, "{r:?}");
    // No content type: sniffed.
    let r = post(&s, &[], &format!("{BREAKER}\n"));
    assert_eq!(r.0, 200, "{r:?}");
    let text = wait_for(
        &s,
        &[
            "recovery_operations_total{operation=\"load_model\",outcome=\"recovered\"} 2",
            "recovery_operations_total{operation=\"load_model\",outcome=\"success\"} 1",
            "recovery_operations_total{operation=\"load_model\",outcome=\"failed\"} 0",
            "recovery_attempts_total{operation=\"load_model\"} 5",
            "recovery_operation_seconds_total{operation=\"load_model\"} 2.9",
            "recovery_overhead_seconds_total{operation=\"load_model\"} 0.02",
            "recovery_errors_total{operation=\"load_model\",error_class=\"transient\"} 2",
            "recovery_duration_seconds_bucket{operation=\"load_model\",le=\"0.1\"} 0",
            "recovery_duration_seconds_bucket{operation=\"load_model\",le=\"0.5\"} 2",
            "recovery_persistence_seconds_bucket{operation=\"load_model\",le=\"0.0025\"} 2",
            "recovery_circuit_breaker_state{breaker=\"comfyui-api\"} 2",
            "recovery_circuit_breaker_open_since_seconds{breaker=\"comfyui-api\"} ",
            "quality_score_bucket{workflow=\"portrait\",metric=\"clip_score\",le=\"0.4\"} 1",
            "quality_score_count{workflow=\"portrait\",metric=\"clip_score\"} 1",
            "sentinel_heartbeat_last_success_timestamp_seconds{name=\"nightly-backup\"} ",
            "sentinel_ingest_events_total{type=\"operation\",result=\"accepted\"} 3",
            "sentinel_ingest_requests_total{code=\"200\"} 3",
        ],
    );
    assert!(
        !text.contains("sentinel_heartbeat_last_failure_timestamp_seconds{"),
        "a failure never reported must be absent"
    );
    // The breaker closes: state 0, open_since gone, the transition counted.
    let r = post_json(
        &s,
        r#"[{"type":"circuit_breaker","name":"comfyui-api","state":"closed"}]"#,
    );
    assert_eq!(r.0, 200);
    let text = wait_for(
        &s,
        &["recovery_circuit_breaker_transitions_total{breaker=\"comfyui-api\",from=\"open\",to=\"closed\"} 1"],
    );
    assert!(text.contains("recovery_circuit_breaker_state{breaker=\"comfyui-api\"} 0"));
    assert!(
        !text.contains("recovery_circuit_breaker_open_since_seconds{"),
        "{text}"
    );
    if let Some((code, said)) = promtool_check_metrics(&text) {
        assert_ne!(code, Some(1), "promtool cannot parse: {said}");
        let ours: Vec<&str> = said
            .lines()
            .filter(|l| {
                l.contains("recovery_")
                    || l.contains("quality_")
                    || l.contains("sentinel_ingest")
                    || l.contains("heartbeat")
            })
            .collect();
        assert!(
            ours.is_empty(),
            "promtool check metrics objects to ingest metrics: {ours:?}"
        );
    }
}

#[test]
fn refusals_have_their_status_and_reason() {
    let (s, _dir) = start("ingest:\n  max_body_bytes: 2048\n  max_events_per_batch: 3\n  max_label_value_length: 20\n");
    // 400 names the index and the reason.
    let bad = r#"{"type":"operation","operation":"x","duration_seconds":-1,"outcome":"success"}"#;
    let r = post_json(&s, &format!("[{HEARTBEAT},{bad}]"));
    assert_eq!(r.0, 400, "{r:?}");
    let v = json(&r);
    assert_eq!(v["index"], 1);
    assert!(
        v["reason"].as_str().unwrap().contains("duration_seconds"),
        "{v}"
    );
    for (body, index, want) in [
        (r#"[{"type":"nope"}]"#.to_string(), 0, "unknown variant"),
        (format!(r#"[{HEARTBEAT},{HEARTBEAT},{{"type":"heartbeat","name":"a","status":"success","colour":"red"}}]"#), 2, "unknown field `colour`"),
        (r#"[{"type":"quality","workflow":"w","metric":"m","value":"high"}]"#.to_string(), 0, "invalid type"),
        (r#"[{"type":"operation","operation":"x","duration_seconds":1e400,"outcome":"success"}]"#.to_string(), 0, "out of range"),
        (r#"[{"type":"heartbeat","name":"aaaaaaaaaaaaaaaaaaaaa","status":"success"}]"#.to_string(), 0, "longer than 20"),
        (format!("{HEARTBEAT}\nnot json\n"), 1, "expected"),
    ] {
        let r = post_json(&s, &body);
        assert_eq!(r.0, 400, "{body}: {r:?}");
        let v = json(&r);
        assert_eq!(v["index"], index, "{body}: {v}");
        assert!(v["reason"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    let r = post_json(&s, "");
    assert_eq!(
        (r.0, json(&r)["error"].as_str()),
        (400, Some("invalid_body"))
    );
    // 413: too many events, too large a body (declared or not).
    let r = post_json(
        &s,
        &format!("[{HEARTBEAT},{HEARTBEAT},{HEARTBEAT},{HEARTBEAT}]"),
    );
    assert_eq!(
        (r.0, json(&r)["error"].as_str()),
        (413, Some("too_many_events")),
        "{r:?}"
    );
    let big = format!("[{}]", [HEARTBEAT; 40].join(","));
    let r = post_json(&s, &big);
    assert_eq!(
        (r.0, json(&r)["error"].as_str()),
        (413, Some("body_too_large")),
        "{r:?}"
    );
    // 415: a content type we do not speak, or a compressed body.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=iso-8859-1",
    ] {
        let r = post(&s, &[("Content-Type", ct)], &format!("[{HEARTBEAT}]"));
        assert_eq!(r.0, 415, "{ct}: {r:?}");
        assert_eq!(json(&r)["error"], "unsupported_media_type");
    }
    let r = post(
        &s,
        &[("Content-Type", JSON), ("Content-Encoding", "gzip")],
        "[]",
    );
    assert_eq!(r.0, 415);
    // 405 for the wrong method.
    let r = http_get(&s.url(PATH), &[]).unwrap();
    assert_eq!(r.0, 405, "{r:?}");
    assert!(
        header(&r.1, "allow").is_some_and(|a| a.contains("POST")),
        "{r:?}"
    );
    let text = wait_for(&s, &["sentinel_ingest_requests_total{code=\"415\"} 4"]);
    assert!(
        text.contains("sentinel_ingest_requests_total{code=\"413\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("sentinel_ingest_events_total{type=\"heartbeat\",result=\"rejected\"} 5"),
        "{text}"
    );
}

#[test]
fn batches_apply_whole_or_not_at_all() {
    let (s, _dir) = start("");
    let good =
        r#"{"type":"operation","operation":"atomic_op","duration_seconds":1,"outcome":"success"}"#;
    let hb = r#"{"type":"heartbeat","name":"atomic-job","status":"failure"}"#;
    let bad =
        r#"{"type":"operation","operation":"atomic_op","duration_seconds":1,"outcome":"maybe"}"#;
    let r = post_json(&s, &format!("[{good},{hb},{bad}]"));
    assert_eq!(r.0, 400, "{r:?}");
    assert_eq!(json(&r)["index"], 2);
    // A later marker event proves the snapshot was refreshed after the bad batch.
    let r = post_json(
        &s,
        r#"[{"type":"heartbeat","name":"marker","status":"success"}]"#,
    );
    assert_eq!(r.0, 200);
    let text = settled_scrape(&s, "name=\"marker\"");
    assert!(!text.contains("atomic_op"), "{text}");
    assert!(!text.contains("atomic-job"), "{text}");
}

#[test]
fn label_values_are_capped_and_overflow_counted() {
    let (s, _dir) = start("ingest:\n  max_values_per_label: 2\n");
    let ev = |w: &str| {
        format!(r#"{{"type":"quality","workflow":"{w}","metric":"aesthetic","value":5}}"#)
    };
    let body = format!(
        "[{},{},{},{},{}]",
        ev("a"),
        ev("b"),
        ev("c"),
        ev("d"),
        ev("a")
    );
    assert_eq!(post_json(&s, &body).0, 200);
    let text = wait_for(
        &s,
        &[
            "quality_score_count{workflow=\"a\",metric=\"aesthetic\"} 2",
            "quality_score_count{workflow=\"b\",metric=\"aesthetic\"} 1",
            "quality_score_count{workflow=\"other\",metric=\"aesthetic\"} 2",
            "sentinel_ingest_label_overflow_total{label=\"workflow\"} 2",
        ],
    );
    assert!(!text.contains("workflow=\"c\""), "{text}");
}

#[test]
fn bearer_token_and_hmac_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let token = temp_file(dir.path(), "token", "s3cret-token\n");
    let (s, _dir) = start_in(
        dir,
        &format!("ingest:\n  token_file: {token:?}\n  hmac_secret: hmac-key\n"),
    );
    let body = format!("[{HEARTBEAT}]");
    let r = post_json(&s, &body);
    assert_eq!(r.0, 401, "{r:?}");
    assert!(header(&r.1, "www-authenticate").is_some());
    let r = post(
        &s,
        &[("Content-Type", JSON), ("Authorization", "Bearer wrong")],
        &body,
    );
    assert_eq!(r.0, 401);
    let r = post(
        &s,
        &[
            ("Content-Type", JSON),
            ("Authorization", "Bearer s3cret-token"),
        ],
        &body,
    );
    assert_eq!(r.0, 200, "{r:?}");
    // Signed body, plain and with a timestamp.
    let sig = comfy_sentinel::ingest::auth::sign("hmac-key", None, body.as_bytes());
    let r = post(
        &s,
        &[("Content-Type", JSON), ("X-Sentinel-Signature", &sig)],
        &body,
    );
    assert_eq!(r.0, 200, "{r:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sig = comfy_sentinel::ingest::auth::sign("hmac-key", Some(now), body.as_bytes());
    let ts = now.to_string();
    let r = post(
        &s,
        &[
            ("Content-Type", JSON),
            ("X-Sentinel-Signature", &sig),
            ("X-Sentinel-Timestamp", &ts),
        ],
        &body,
    );
    assert_eq!(r.0, 200, "{r:?}");
    // A stale timestamp (replay) and a tampered body are refused.
    let old = now - 3600;
    let sig_old = comfy_sentinel::ingest::auth::sign("hmac-key", Some(old), body.as_bytes());
    let r = post(
        &s,
        &[
            ("Content-Type", JSON),
            ("X-Sentinel-Signature", &sig_old),
            ("X-Sentinel-Timestamp", &old.to_string()),
        ],
        &body,
    );
    assert_eq!(r.0, 401, "{r:?}");
    let r = post(
        &s,
        &[("Content-Type", JSON), ("X-Sentinel-Signature", &sig)],
        &format!("[{HEARTBEAT},{HEARTBEAT}]"),
    );
    assert_eq!(r.0, 401, "{r:?}");
    // The /metrics endpoint stays open: ingest credentials guard only the ingest route.
    assert_eq!(http_get(&s.url("/metrics"), &[]).unwrap().0, 200);
}

#[test]
fn web_credentials_guard_ingest_when_it_has_none() {
    let (s, _dir) = start("web:\n  bearer_token: web-token\n");
    let body = format!("[{HEARTBEAT}]");
    // Loopback is not enough once credentials exist.
    assert_eq!(post_json(&s, &body).0, 401);
    let r = post(
        &s,
        &[
            ("Content-Type", JSON),
            ("Authorization", "Bearer web-token"),
        ],
        &body,
    );
    assert_eq!(r.0, 200, "{r:?}");
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let (s, _dir) = start(
        "ingest:\n  max_events_per_batch: 5\n  rate_limit:\n    requests_per_second: 0.1\n    requests_burst: 2\n    events_per_second: 1\n    events_burst: 5\n",
    );
    let five = format!("[{}]", [HEARTBEAT; 5].join(","));
    assert_eq!(post_json(&s, &five).0, 200);
    // Event bucket is empty now: the next batch waits for ~5 s of refill.
    let r = post_json(&s, &five);
    assert_eq!(r.0, 429, "{r:?}");
    let wait: u64 = header(&r.1, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // Request bucket: 2 at once, then 429 (about 10 s to refill one token).
    let r = post_json(&s, "[]");
    assert_eq!(r.0, 429, "{r:?}");
    let wait: u64 = header(&r.1, "retry-after").unwrap().parse().unwrap();
    assert!(wait >= 5, "{wait}");
    wait_for(
        &s,
        &[
            "sentinel_ingest_events_total{type=\"heartbeat\",result=\"rate_limited\"} 5",
            "sentinel_ingest_requests_total{code=\"429\"} 2",
        ],
    );
}

#[test]
fn heartbeat_timestamps_for_dead_mans_switches() {
    let (s, _dir) = start("");
    let r = post_json(
        &s,
        r#"[{"type":"heartbeat","name":"nightly-backup","status":"success","timestamp":1700000000},{"type":"heartbeat","name":"nightly-backup","status":"failure","timestamp":1700000100.5}]"#,
    );
    assert_eq!(r.0, 200, "{r:?}");
    wait_for(
        &s,
        &[
            "sentinel_heartbeat_last_success_timestamp_seconds{name=\"nightly-backup\"} 1700000000",
            "sentinel_heartbeat_last_failure_timestamp_seconds{name=\"nightly-backup\"} 1700000100.5",
        ],
    );
    // Milliseconds by mistake are refused, not stored as the year 55000.
    let r = post_json(
        &s,
        r#"[{"type":"heartbeat","name":"nightly-backup","status":"success","timestamp":1700000000000}]"#,
    );
    assert_eq!(r.0, 400);
}

#[test]
fn python_reporter_posts_operation_events() {
    let Some(python) = peer("python3") else {
        return;
    };
    let (s, _dir) = start("ingest:\n  token: reporter-token\n");
    let out = std::process::Command::new(python)
        .arg(repo().join("examples/python/recovery_reporter.py"))
        .args(["--demo", &s.url(""), "--token", "reporter-token"])
        .output()
        .expect("run the reporter");
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &s,
        &[
            "recovery_operations_total{operation=\"demo_ok\",outcome=\"success\"} 1",
            "recovery_operations_total{operation=\"demo_flaky\",outcome=\"recovered\"} 1",
            "recovery_operations_total{operation=\"demo_broken\",outcome=\"failed\"} 1",
            "recovery_attempts_total{operation=\"demo_flaky\"} 3",
            "recovery_errors_total{operation=\"demo_broken\",error_class=\"ConnectionError\"} 1",
            "recovery_duration_seconds_count{operation=\"demo_flaky\"} 1",
            "recovery_circuit_breaker_transitions_total{breaker=\"demo-breaker\",from=\"closed\",to=\"open\"} 1",
            "sentinel_heartbeat_last_success_timestamp_seconds{name=\"demo-job\"} ",
            "quality_score_count{workflow=\"demo-workflow\",metric=\"clip_score\"} 1",
        ],
    );
    // The flaky call slept 10 ms + 20 ms in backoff: that is overhead, not operation time.
    let text = scrape(&s);
    let value = |name: &str| -> f64 {
        crate::support::exposition::value(&text, name).unwrap_or_else(|| panic!("{name} missing"))
    };
    let overhead = value("recovery_overhead_seconds_total{operation=\"demo_flaky\"}");
    assert!(overhead >= 0.03, "{overhead}");
    // HMAC mode too.
    drop(s);
    let (s, _d) = start("ingest:\n  hmac_secret: reporter-key\n  hmac_require_timestamp: true\n");
    let out = std::process::Command::new(peer("python3").unwrap())
        .arg(repo().join("examples/python/recovery_reporter.py"))
        .args(["--demo", &s.url(""), "--hmac-secret", "reporter-key"])
        .output()
        .expect("run the reporter");
    assert!(out.status.success(), "{out:?}");
}

/// Every example the schema accepts the parser accepts, and every case one rejects the
/// other rejects too.
#[test]
fn json_schema_agrees_with_the_parser() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/events.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let limits = Limits {
        max_events: 10_000,
        max_label_value_length: 128,
        now: 1.0e10,
    };
    let long = "x".repeat(129);
    let max = "x".repeat(128);
    // (event, accepted?)
    let cases: Vec<(String, bool)> = [
        (OPERATION, true),
        (BREAKER, true),
        (QUALITY, true),
        (HEARTBEAT, true),
        (r#"{"type":"operation","operation":"x","duration_seconds":0,"outcome":"success"}"#, true),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"failed","attempts":3.0,"error_class":"oom"}"#, true),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":1000000}"#, true),
        (r#"{"type":"circuit_breaker","name":"b","state":"half_open","from":"open","timestamp":1700000000.25}"#, true),
        (r#"{"type":"quality","workflow":"w","metric":"m","value":-3.5}"#, true),
        (r#"{"type":"heartbeat","name":"j","status":"failure","timestamp":1}"#, true),
        (r#"{"type":"heartbeat","name":"caf\u00e9","status":"success"}"#, true),
        (r#"{"type":"operation","operation":"x","duration_seconds":-0.1,"outcome":"success"}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"overhead_seconds":-1,"outcome":"success"}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":0}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":1.5}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":1000001}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":"1","outcome":"success"}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1}"#, false),
        (r#"{"type":"operation","operation":"","duration_seconds":1,"outcome":"success"}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"retried"}"#, false),
        (r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","state":"open"}"#, false),
        (r#"{"type":"circuit_breaker","name":"b","state":"ajar"}"#, false),
        (r#"{"type":"circuit_breaker","name":"b"}"#, false),
        (r#"{"type":"circuit_breaker","name":"b","state":"open","timestamp":0}"#, false),
        (r#"{"type":"circuit_breaker","name":"b","state":"open","timestamp":"now"}"#, false),
        (r#"{"type":"quality","workflow":"w","metric":"m"}"#, false),
        (r#"{"type":"quality","workflow":"w","metric":"m","value":null}"#, false),
        (r#"{"type":"heartbeat","name":"j","status":"ok"}"#, false),
        (r#"{"type":"heartbeat","name":"j","status":"success","extra":true}"#, false),
        (r#"{"type":"unknown"}"#, false),
        (r#"{"name":"j","status":"success"}"#, false),
        (r#"["heartbeat","j","success"]"#, false),
        (r#"42"#, false),
    ]
    .into_iter()
    .map(|(c, ok)| (c.to_string(), ok))
    .chain([
        (format!(r#"{{"type":"heartbeat","name":"{max}","status":"success"}}"#), true),
        (format!(r#"{{"type":"heartbeat","name":"{long}","status":"success"}}"#), false),
    ])
    .collect();
    for (event, accepted) in &cases {
        let body = format!("[{event}]");
        let by_parser = parse_batch(body.as_bytes(), Framing::Json, &limits);
        let instance: serde_json::Value = serde_json::from_str(&body).unwrap();
        let by_schema = validator.is_valid(&instance);
        assert_eq!(
            by_parser.is_ok(),
            *accepted,
            "parser on {event}: {by_parser:?}"
        );
        assert_eq!(by_schema, *accepted, "schema on {event}");
        // A single object is a batch of one for both.
        let single: serde_json::Value = serde_json::from_str(event).unwrap();
        assert_eq!(
            validator.is_valid(&single),
            *accepted && single.is_object(),
            "schema on single {event}"
        );
    }
    // The whole-batch shape: arrays of events, not arrays of arrays.
    assert!(validator.is_valid(&serde_json::json!([])));
    assert!(!validator.is_valid(&serde_json::json!([[]])));
}

#[test]
fn reload_swaps_the_ingest_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let write = |token: &str| {
        std::fs::write(
            &cfg,
            format!(
                "data_dir: {:?}\ningest:\n  token: {token}\n",
                dir.path().join("data")
            ),
        )
        .unwrap()
    };
    write("first");
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    let body = format!("[{HEARTBEAT}]");
    let with = |t: &str| {
        post(
            &s,
            &[
                ("Content-Type", JSON),
                ("Authorization", &format!("Bearer {t}")),
            ],
            &body,
        )
        .0
    };
    assert_eq!(with("first"), 200);
    write("second");
    let r = http_request("POST", &s.url("/-/reload"), &[], b"").unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(with("first"), 401);
    assert_eq!(with("second"), 200);
}

/// A client that writes its whole body before reading must still see the refusal,
/// not a reset connection (regression: answering without reading the body).
#[test]
fn refusals_reach_clients_still_sending_a_large_body() {
    let (s, _dir) = start("ingest:\n  max_body_bytes: 2048\n  token: t\n");
    let big = vec![b' '; 4 << 20];
    let auth = [("Content-Type", JSON), ("Authorization", "Bearer t")];
    let r = http_request("POST", &s.url(PATH), &auth, &big).expect("413, not a reset");
    assert_eq!(r.0, 413, "{r:?}");
    let r = http_request("POST", &s.url(PATH), &[("Content-Type", JSON)], &big)
        .expect("401, not a reset");
    assert_eq!(r.0, 401, "{r:?}");
}
