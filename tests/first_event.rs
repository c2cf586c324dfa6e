//! The first event of a new series counts (issue 13, section 2) and prompt durations past
//! ten minutes (section 9). A counter or histogram series born from an event used to start
//! at 1, so `increase()` never saw its first increment: the rule store now records a zero
//! at the series' creation time, and OpenMetrics carries `<name>_created`. The prompt
//! duration buckets reach an hour by default and are configurable.

use crate::fake_comfyui::{entry, FakeComfy};
use crate::support::prometheus::Prometheus;
use crate::util::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn start(dir: &Path, collectors: &str) -> Sentinel {
    let cfg = temp_file(
        dir,
        "config.yaml",
        &format!(
            "data_dir: {:?}\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n{collectors}",
            dir.join("data")
        ),
    );
    Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")])
}

/// The single value of an instant query now, if it returned one series.
fn query(s: &Sentinel, q: &str) -> Option<f64> {
    let (status, _, body) = http_get(
        &s.url(&format!("/api/v1/query?query={}", percent_encode(q))),
        &[],
    )
    .expect("query");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

/// Polls `q` until `ok` holds for its value; panics with the last value otherwise.
fn wait_query(s: &Sentinel, q: &str, ok: impl Fn(f64) -> bool) -> f64 {
    wait_until(Duration::from_secs(20), || {
        let got = query(s, q);
        got.filter(|v| ok(*v))
            .ok_or_else(|| format!("{q} gave {got:?}; log:\n{}", s.logs()))
    })
}

/// Waits until the rule store holds a snapshot (so later series are born after it).
fn wait_store_fed(s: &Sentinel) {
    s.wait_ready();
    wait_query(s, "sentinel_build_info", |v| v == 1.0);
}

fn scrape_openmetrics(s: &Sentinel) -> String {
    let (status, _, body) = http_get(
        &s.url("/metrics"),
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    )
    .expect("scrape");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const FAILED_NEW: &str = r#"[{"type":"operation","operation":"new","duration_seconds":1.5,"outcome":"failed","error_class":"timeout"}]"#;

#[test]
fn first_failure_of_a_new_operation_counts_in_increase() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "  comfyui: { enabled: false }\n");
    wait_store_fed(&s);
    let before = unix_now();
    post_events(&s, FAILED_NEW);
    // Touched at the operation's first event, born at 1 before the fix.
    let v = wait_query(
        &s,
        r#"increase(recovery_operations_total{operation="new",outcome="failed"}[2m])"#,
        |v| v > 0.0,
    );
    assert!(v > 0.0 && v.is_finite(), "{v}");
    // Born from the event itself (never touched beforehand).
    wait_query(
        &s,
        r#"increase(recovery_errors_total{operation="new",error_class="timeout"}[2m])"#,
        |v| v > 0.0,
    );
    wait_query(
        &s,
        r#"increase(recovery_operation_duration_seconds_count{operation="new"}[2m])"#,
        |v| v > 0.0,
    );
    // Series that did not change show no increase.
    let success = query(
        &s,
        r#"increase(recovery_operations_total{operation="new",outcome="success"}[2m])"#,
    );
    assert_eq!(success, Some(0.0));

    // OpenMetrics carries the creation time; the 0.0.4 text format does not.
    let om = scrape_openmetrics(&s);
    let created: f64 = om
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"recovery_errors_created{operation="new",error_class="timeout"} "#)
        })
        .unwrap_or_else(|| panic!("no _created line in:\n{om}"))
        .parse()
        .unwrap();
    assert!(
        (before - 1.0..=unix_now() + 1.0).contains(&created),
        "{created}"
    );
    assert!(
        om.contains("recovery_operation_duration_seconds_created{operation=\"new\"} "),
        "{om}"
    );
    assert!(
        !scrape(&s).contains("_created"),
        "text format has no _created"
    );
}

#[test]
fn first_quality_score_of_a_new_workflow_counts_in_increase() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "  comfyui: { enabled: false }\n");
    wait_store_fed(&s);
    post_events(
        &s,
        r#"[{"type":"quality","workflow":"new","metric":"clip_score","value":0.31}]"#,
    );
    wait_query(
        &s,
        r#"increase(quality_score_count{workflow="new",metric="clip_score"}[2m])"#,
        |v| v > 0.0,
    );
    wait_query(
        &s,
        r#"increase(quality_score_bucket{workflow="new",metric="clip_score",le="+Inf"}[2m])"#,
        |v| v > 0.0,
    );
}

#[test]
fn a_sidecar_restart_is_no_increase() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "  comfyui: { enabled: false }\n");
    wait_store_fed(&s);
    post_events(&s, FAILED_NEW);
    wait_query(
        &s,
        r#"recovery_operations_total{operation="new",outcome="failed"}"#,
        |v| v == 1.0,
    );
    drop(s);
    // The restarted sidecar starts with an empty store: nothing it sees at start counts.
    let s = start(dir.path(), "  comfyui: { enabled: false }\n");
    wait_store_fed(&s);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        query(&s, r#"increase(sentinel_build_info[2m])"#),
        Some(0.0),
        "a gauge never gets a creation zero"
    );
    let total = query(&s, "sum(increase(recovery_operations_total[2m]))");
    assert!(matches!(total, None | Some(0.0)), "{total:?}");
}

#[test]
fn first_node_error_of_a_new_pair_counts_in_increase() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    let s = start(
        dir.path(),
        &format!(
            "  comfyui:\n    url: \"{}\"\n    interval: 300ms\n    timeout: 300ms\n",
            fake.url()
        ),
    );
    wait_store_fed(&s);
    wait_query(&s, "comfyui_up", |v| v == 1.0);
    fake.add(
        "e1",
        entry(
            "e1",
            "error",
            1_000,
            2_000,
            ("VAEDecode", "OutOfMemoryError"),
        ),
    );
    let q = r#"increase(comfyui_node_errors_total{node_type="VAEDecode",exception_type="OutOfMemoryError"}[2m])"#;
    wait_query(&s, q, |v| v > 0.0);
    let om = scrape_openmetrics(&s);
    assert!(
        om.contains(
            "comfyui_node_errors_created{node_type=\"VAEDecode\",exception_type=\"OutOfMemoryError\"} "
        ),
        "{om}"
    );
}

#[test]
fn prompt_durations_past_ten_minutes_get_buckets_up_to_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    // A 25-minute upscale.
    fake.add("long", entry("long", "success", 0, 1_500_000, ("", "")));
    let s = start(
        dir.path(),
        &format!(
            "  comfyui: {{ url: \"{}\", interval: 300ms, timeout: 300ms }}\n",
            fake.url()
        ),
    );
    let text = scrape_until(
        &s,
        "comfyui_prompt_duration_seconds_count{outcome=\"success\"} 1",
    );
    for (le, n) in [
        ("600", 0),
        ("1200", 0),
        ("1800", 1),
        ("3600", 1),
        ("+Inf", 1),
    ] {
        let line = format!(
            "comfyui_prompt_duration_seconds_bucket{{outcome=\"success\",le=\"{le}\"}} {n}\n"
        );
        assert!(text.contains(&line), "missing {line} in:\n{text}");
    }
    // p50 lands in a finite bucket, not +Inf.
    let p50 = wait_query(
        &s,
        r#"histogram_quantile(0.5, comfyui_prompt_duration_seconds_bucket{outcome="success"})"#,
        |v| v.is_finite(),
    );
    assert!((1200.0..=1800.0).contains(&p50), "{p50}");
}

#[test]
fn custom_duration_buckets_reach_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.add("long", entry("long", "success", 0, 5_000_000, ("", "")));
    let s = start(
        dir.path(),
        &format!(
            "  comfyui:\n    url: \"{}\"\n    interval: 300ms\n    timeout: 300ms\n    duration_buckets: [60, 7200, 14400]\n",
            fake.url()
        ),
    );
    let text = scrape_until(
        &s,
        "comfyui_prompt_duration_seconds_count{outcome=\"success\"} 1",
    );
    let les: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("comfyui_prompt_duration_seconds_bucket{outcome=\"success\""))
        .collect();
    assert_eq!(
        les,
        vec![
            "comfyui_prompt_duration_seconds_bucket{outcome=\"success\",le=\"60\"} 0",
            "comfyui_prompt_duration_seconds_bucket{outcome=\"success\",le=\"7200\"} 1",
            "comfyui_prompt_duration_seconds_bucket{outcome=\"success\",le=\"14400\"} 1",
            "comfyui_prompt_duration_seconds_bucket{outcome=\"success\",le=\"+Inf\"} 1",
        ]
    );
}

/// `check` on a config whose comfyui section ends with `buckets`: (exit code, stderr).
fn check_buckets(buckets: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        dir.path(),
        "config.yaml",
        &format!("collectors:\n  comfyui:\n    url: http://127.0.0.1:8188\n    duration_buckets: {buckets}\n"),
    );
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .env_remove("COMFY_SENTINEL_CONFIG")
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        cfg.display().to_string(),
    )
}

#[test]
fn duration_buckets_that_are_not_strictly_increasing_are_a_located_error() {
    for (buckets, says) in [
        ("[1, 10, 10]", "strictly increasing"),
        ("[10, 1]", "strictly increasing"),
        ("[0, 1]", "above 0"),
        ("[-5]", "above 0"),
        ("[1, .inf]", "finite"),
        ("[.nan]", "finite"),
        ("[]", "at least one"),
    ] {
        let (code, err, cfg) = check_buckets(buckets);
        assert_ne!(code, 0, "{buckets} accepted");
        assert!(
            err.contains("collectors.comfyui.duration_buckets"),
            "{buckets}: {err}"
        );
        assert!(err.contains(says), "{buckets}: {err}");
        assert!(
            err.contains(&format!("{cfg}:4:5:")),
            "{buckets}: not located: {err}"
        );
    }
    let too_many: Vec<String> = (1..=65).map(|i| i.to_string()).collect();
    let (code, err, _) = check_buckets(&format!("[{}]", too_many.join(", ")));
    assert_ne!(code, 0);
    assert!(err.contains("at most 64"), "{err}");
    let (code, err, _) = check_buckets("[1, 60, 3600, 7200]");
    assert_eq!(code, 0, "{err}");
}

/// A real Prometheus scrapes the OpenMetrics exposition with its `_created` lines (it
/// negotiates OpenMetrics first): the target is healthy and the creation time arrives.
#[test]
fn openmetrics_with_created_lines_is_scraped_by_a_real_prometheus() {
    let Some(prometheus) = peer("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "  comfyui: { enabled: false }\n");
    wait_store_fed(&s);
    post_events(&s, FAILED_NEW);
    let prom = Prometheus::start(
        &prometheus,
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: s\n    static_configs:\n      - targets: [{:?}]\n",
            s.addr
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    let found = loop {
        last = prom.query(r#"recovery_errors_created{operation="new"} and on() up == 1"#);
        if let Some(r) = last["data"]["result"].as_array().filter(|r| r.len() == 1) {
            break r[0]["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok());
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let targets = http_get(&format!("{}/api/v1/targets", prom.url), &[])
        .map(|r| String::from_utf8_lossy(&r.2).into_owned())
        .unwrap_or_default();
    let created = found.unwrap_or_else(|| {
        panic!(
            "no creation time scraped; last answer {last}\ntargets {targets}\nlog {}",
            prom.logs()
        )
    });
    assert!((unix_now() - created).abs() < 120.0, "{created}");
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
}
