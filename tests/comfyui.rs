//! The ComfyUI collector end to end: the real binary polling the fake ComfyUI in
//! `fake_comfyui.rs`, scraped over HTTP. Counts per outcome, restarts of either side,
//! paging, and every way the server can misbehave.

use crate::fake_comfyui::{entry, fixture_entries, FakeComfy, Fault};
use crate::support::exposition::value;
use crate::support::prometheus::promtool_check_metrics;
use crate::util::{scrape, wait_until, wait_value, wait_value_where, Sentinel};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(dir: &Path, url: &str, extra: &str) -> String {
    let cfg = format!(
        "data_dir: {data}\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n  comfyui:\n    url: \"{url}\"\n    interval: 300ms\n    timeout: 300ms\n{extra}",
        data = dir.join("data").display()
    );
    let p = dir.join("config.yaml");
    std::fs::write(&p, cfg).expect("write config");
    p.display().to_string()
}

fn start(dir: &Path, url: &str, extra: &str) -> Sentinel {
    let cfg = config(dir, url, extra);
    Sentinel::start(&["--config", &cfg])
}

const SUCCESS: &str = "comfyui_prompts_total{outcome=\"success\"}";
const ERROR: &str = "comfyui_prompts_total{outcome=\"error\"}";
const INTERRUPTED: &str = "comfyui_prompts_total{outcome=\"interrupted\"}";

#[test]
fn recorded_history_is_counted_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.set_history(fixture_entries("get_history_all.json"));
    fake.set_queue_fixture("get_queue_running_and_pending.json");
    let s = start(dir.path(), &fake.url(), "");
    let text = wait_value(&s, SUCCESS, 7.0);
    assert_eq!(value(&text, ERROR), Some(2.0));
    assert_eq!(value(&text, INTERRUPTED), Some(2.0));
    assert_eq!(value(&text, "comfyui_up"), Some(1.0));
    assert_eq!(value(&text, "comfyui_queue_running"), Some(1.0));
    assert_eq!(value(&text, "comfyui_queue_pending"), Some(4.0));
    assert_eq!(value(&text, "comfyui_nodes_cached_total"), Some(2.0));
    // success: 2+0+2+2+2+6+2 needed minus cached; error/interrupted: executed lists.
    assert_eq!(value(&text, "comfyui_nodes_executed_total"), Some(20.0));
    assert_eq!(
        value(
            &text,
            "comfyui_node_errors_total{node_type=\"SaveImage\",exception_type=\"Exception\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "comfyui_node_errors_total{node_type=\"EmptyImage\",exception_type=\"RuntimeError\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "comfyui_prompt_failures_total{class=\"oom\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_failures_total{class=\"interrupted\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "comfyui_prompt_failures_total{class=\"cuda\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_duration_seconds_count{outcome=\"success\"}"
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_duration_seconds_sum{outcome=\"success\"}"
        ),
        Some(26.688)
    );
    // The 26.6 s run is the only success above 10 s.
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_duration_seconds_bucket{outcome=\"success\",le=\"10\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_duration_seconds_sum{outcome=\"interrupted\"}"
        ),
        Some(6.777)
    );
    assert_eq!(value(&text, "comfyui_output_images_total"), Some(7.0));
    assert_eq!(
        value(&text, "comfyui_info{version=\"0.3.64\",python_version=\"3.11.7\",pytorch_version=\"2.15.0+cu132\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "comfyui_ram_total_bytes"), Some(25276510208.0));
    assert_eq!(
        value(
            &text,
            "comfyui_vram_free_bytes{device=\"cpu\",type=\"cpu\"}"
        ),
        Some(24181374976.0)
    );
    assert!(text.contains("comfyui_api_request_duration_seconds_bucket{endpoint=\"history\""));
    // Queue item bodies (the fixture's pending items) never reach the exposition.
    assert!(!text.contains("extra_data") && !text.contains("api_key"));
    assert!(!fake.saw_origin(), "an Origin header was sent");
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.starts_with("/history?max_items=")));
    golden(&text, "comfyui/golden_recorded_history.txt");
    if let Some((code, msg)) = promtool_check_metrics(&text) {
        assert_ne!(code, Some(1), "promtool cannot parse: {msg}");
        assert!(
            !msg.lines().any(|l| l.contains("comfyui_")),
            "promtool check metrics: {msg}"
        );
    }
}

/// Diffs the `comfyui_*` families (less the timing-dependent API latency) against a
/// golden file; `UPDATE_GOLDEN=1` rewrites it.
fn golden(text: &str, rel: &str) {
    let got: String = text
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("comfyui_") && !name.starts_with("comfyui_api_request_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path = crate::util::fixture(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "exposition differs from {rel} (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn outcome_counters_are_exported_at_zero_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    let s = start(dir.path(), &fake.url(), "");
    let text = wait_value(&s, "comfyui_up", 1.0);
    for series in [SUCCESS, ERROR, INTERRUPTED] {
        assert_eq!(value(&text, series), Some(0.0), "{series}");
    }
}

#[test]
fn sidecar_restart_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.set_history(fixture_entries("get_history_all.json"));
    {
        let s = start(dir.path(), &fake.url(), "");
        wait_value(&s, SUCCESS, 7.0);
    }
    let s = start(dir.path(), &fake.url(), "");
    let text = wait_value(&s, "comfyui_up", 1.0);
    // Wait for a few more polls: the values must stay where they were.
    std::thread::sleep(Duration::from_millis(1000));
    let text2 = scrape(&s);
    for t in [&text, &text2] {
        assert_eq!(value(t, SUCCESS), Some(7.0));
        assert_eq!(value(t, ERROR), Some(2.0));
        assert_eq!(value(t, "comfyui_nodes_cached_total"), Some(2.0));
    }
    fake.add("new-1", entry("new-1", "success", 5_000, 5_250, ("", "")));
    let text = wait_value(&s, SUCCESS, 8.0);
    assert_eq!(
        value(
            &text,
            "comfyui_prompt_duration_seconds_count{outcome=\"success\"}"
        ),
        Some(8.0)
    );
}

#[test]
fn comfyui_restart_with_reused_prompt_ids() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.add(
        "same-id",
        entry("same-id", "success", 1_000, 2_000, ("", "")),
    );
    fake.add(
        "other",
        entry(
            "other",
            "error",
            2_000,
            2_100,
            ("KSampler", "torch.OutOfMemoryError"),
        ),
    );
    let s = start(dir.path(), &fake.url(), "");
    wait_value(&s, SUCCESS, 1.0);
    // ComfyUI restarts: history gone, the client reuses its prompt id for a new run.
    fake.clear_history();
    std::thread::sleep(Duration::from_millis(700));
    fake.add(
        "same-id",
        entry("same-id", "success", 9_000, 9_500, ("", "")),
    );
    let text = wait_value(&s, SUCCESS, 2.0);
    assert_eq!(value(&text, ERROR), Some(1.0));
    assert_eq!(
        value(&text, "comfyui_prompt_failures_total{class=\"oom\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "comfyui_node_errors_total{node_type=\"KSampler\",exception_type=\"torch.OutOfMemoryError\"}"),
        Some(1.0)
    );
    // The same run seen again (same id, same terminal timestamp) is not new.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(value(&scrape(&s), SUCCESS), Some(2.0));
}

#[test]
fn history_larger_than_a_page_is_paged() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    for i in 0..50 {
        let id = format!("p{i}");
        fake.add(
            &id,
            entry(&id, "success", 1_000 * i, 1_000 * i + 10, ("", "")),
        );
    }
    let s = start(dir.path(), &fake.url(), "    history_page_size: 4\n");
    wait_value(&s, SUCCESS, 50.0);
    let reqs = fake.requests();
    for n in [4, 8, 16, 32, 64] {
        assert!(
            reqs.contains(&format!("/history?max_items={n}")),
            "{reqs:?}"
        );
    }
    // More than a page finishes between two polls.
    for i in 50..70 {
        let id = format!("p{i}");
        fake.add(
            &id,
            entry(&id, "interrupted", 1_000 * i, 1_000 * i + 10, ("", "")),
        );
    }
    let text = wait_value(&s, INTERRUPTED, 20.0);
    assert_eq!(value(&text, SUCCESS), Some(50.0));
}

#[test]
fn node_error_labels_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    for i in 0..5 {
        let id = format!("e{i}");
        fake.add(
            &id,
            entry(
                &id,
                "error",
                10 * i,
                10 * i + 1,
                (&format!("Node{i}"), "ValueError"),
            ),
        );
    }
    let s = start(dir.path(), &fake.url(), "    max_node_error_series: 2\n");
    let text = wait_value(&s, ERROR, 5.0);
    assert_eq!(
        value(
            &text,
            "comfyui_node_errors_total{node_type=\"other\",exception_type=\"other\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&text, "comfyui_node_error_labels_folded_total"),
        Some(3.0)
    );
}

#[test]
fn prefix_api_routes_bearer_token_and_extra_headers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start_with("127.0.0.1:0", "/comfy", Some("s3cret"));
    fake.set_history(fixture_entries("get_history_all.json"));
    let extra = "    api_prefix: true\n    bearer_token: s3cret\n    headers: { X-Tenant: blue }\n";
    let s = start(dir.path(), &fake.url(), extra);
    wait_value(&s, SUCCESS, 7.0);
    assert!(
        fake.requests().iter().all(|r| r.starts_with("/comfy/api/")),
        "{:?}",
        fake.requests()
    );
    assert!(fake
        .last_headers()
        .iter()
        .any(|(k, v)| k == "x-tenant" && v == "blue"));
    assert!(!s.logs().contains("s3cret"), "the token reached the log");
}

#[test]
fn down_then_up_recovers_by_itself() {
    // A port with nothing listening: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let s = start(dir.path(), &url, "");
    let text = wait_value(&s, "comfyui_up", 0.0);
    // Down is a state, not a collector failure; unread gauges are left out.
    assert_eq!(
        value(&text, "sentinel_collector_success{collector=\"comfyui\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "comfyui_queue_running"), None);
    assert_eq!(value(&text, SUCCESS), Some(0.0));
    let fake = FakeComfy::start_with(&format!("127.0.0.1:{port}"), "", None);
    fake.set_history(fixture_entries("get_history_all.json"));
    wait_value(&s, SUCCESS, 7.0);
    // Logged once when it changes, not on every poll.
    let logs = s.logs();
    assert_eq!(logs.matches("ComfyUI is down").count(), 1, "{logs}");
    assert!(
        logs.contains("reason=\"connect\"") || logs.contains("reason=connect"),
        "{logs}"
    );
    assert!(logs.contains("ComfyUI is up"), "{logs}");
    drop(fake);
}

/// Every fault on every endpoint: `comfyui_up 0` or a counted error, counters kept,
/// recovery once the fault goes away.
#[test]
fn misbehaving_server_never_breaks_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.set_history(fixture_entries("get_history_all.json"));
    let s = start(dir.path(), &fake.url(), "    max_body_bytes: 1048576\n");
    wait_value(&s, SUCCESS, 7.0);
    let faults = [
        Fault::Status500,
        Fault::Garbage,
        Fault::Truncated,
        Fault::Huge(50 << 20),
        Fault::Slow(Duration::from_millis(1500)),
    ];
    let mut n = 7.0;
    for f in faults {
        for endpoint in ["*", "history"] {
            fake.fault(endpoint, f.clone());
            let id = format!("during-{f:?}-{endpoint}");
            fake.add(&id, entry(&id, "success", 100_000, 100_010, ("", "")));
            if endpoint == "*" {
                let text = wait_value(&s, "comfyui_up", 0.0);
                assert_eq!(value(&text, SUCCESS), Some(n), "{f:?}: counters kept");
            } else {
                // ComfyUI answers, only history is bad: still up, error counted.
                std::thread::sleep(Duration::from_millis(1000));
                let text = scrape(&s);
                assert_eq!(value(&text, SUCCESS), Some(n), "{f:?}");
            }
            let text = scrape(&s);
            assert!(
                text.contains("comfyui_api_request_errors_total{endpoint="),
                "{f:?}"
            );
            fake.heal();
            n += 1.0;
            wait_value(&s, SUCCESS, n);
            wait_value(&s, "comfyui_up", 1.0);
        }
    }
    let text = scrape(&s);
    for reason in [
        "http_status",
        "invalid_json",
        "body",
        "too_large",
        "timeout",
    ] {
        assert!(
            text.contains(&format!("reason=\"{reason}\"")),
            "no {reason} error counted:\n{text}"
        );
    }
    assert_eq!(
        value(&text, "sentinel_collector_success{collector=\"comfyui\"}"),
        Some(1.0)
    );
}

/// CPU time of a process (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Measures (does not assert) the sidecar's CPU for the first poll of a 10k-entry
/// history and for steady polls after it. Run with
/// `cargo test --test tests comfyui::cpu_per_poll -- --ignored --nocapture`.
#[test]
#[ignore]
fn cpu_per_poll_with_10k_history() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    let entries: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            let id = format!("{i:08}-0000-4000-8000-000000000000");
            let raw = entry(&id, "success", 1_000 * i, 1_000 * i + 20, ("", ""));
            (id, raw)
        })
        .collect();
    fake.set_history(entries);
    let path = config(dir.path(), &fake.url(), "");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval: 300ms", "interval: 1s");
    std::fs::write(&path, cfg).unwrap();
    let s = Sentinel::start(&["--config", &path]);
    let pid = s.child.id();
    let idle = cpu_seconds(pid);
    let started = Instant::now();
    wait_value(&s, SUCCESS, 10_000.0);
    let first = cpu_seconds(pid) - idle;
    let first_wall = started.elapsed();
    let before = cpu_seconds(pid);
    let polls = 10;
    std::thread::sleep(Duration::from_secs(polls));
    let steady = (cpu_seconds(pid) - before) / polls as f64;
    eprintln!(
        "10k-entry history: first poll(s) {first:.3} s CPU ({first_wall:?} wall, incl. paging); steady poll {:.2} ms CPU",
        steady * 1000.0
    );
}

/// 10,000 history entries of mixed outcomes, ids and times ascending: every tenth an
/// error, every tenth but one interrupted, the rest successes.
fn mixed_history(n: i64) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let id = format!("{i:08}-0000-4000-8000-000000000000");
            let outcome = match i % 10 {
                0 => "error",
                1 => "interrupted",
                _ => "success",
            };
            let raw = entry(
                &id,
                outcome,
                1_000 * i,
                1_000 * i + 20,
                ("KSampler", "RuntimeError"),
            );
            (id, raw)
        })
        .collect()
}

/// The non-timed check of a 10k-entry ComfyUI `/history` (the CPU it costs is measured
/// by the ignored `cpu_per_poll_with_10k_history`): the first poll pages through all of
/// it and counts each prompt once by outcome, later polls of the same history count
/// nothing again, and one new entry after it is counted once.
#[test]
fn ten_thousand_entry_history_is_counted_once_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    fake.set_history(mixed_history(10_000));
    // Polls a second apart, so a slow (debug, loaded) page never runs into the next poll.
    let path = config(dir.path(), &fake.url(), "");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval: 300ms", "interval: 1s")
        .replace("timeout: 300ms", "timeout: 1s");
    std::fs::write(&path, cfg).unwrap();
    let s = Sentinel::start(&["--config", &path]);
    let expect = |text: &str, new_successes: f64| {
        let success = 8_000.0 + new_successes;
        for (series, want) in [
            (SUCCESS, success),
            (ERROR, 1_000.0),
            (INTERRUPTED, 1_000.0),
            // One duration per prompt: an outcome counted twice would show here too.
            (
                "comfyui_prompt_duration_seconds_count{outcome=\"success\"}",
                success,
            ),
            (
                "comfyui_prompt_duration_seconds_count{outcome=\"error\"}",
                1_000.0,
            ),
            (
                "comfyui_prompt_duration_seconds_count{outcome=\"interrupted\"}",
                1_000.0,
            ),
            ("comfyui_output_images_total", success),
            (
                "comfyui_node_errors_total{node_type=\"KSampler\",exception_type=\"RuntimeError\"}",
                1_000.0,
            ),
            ("comfyui_history_truncated_total", 0.0),
        ] {
            assert_eq!(value(text, series), Some(want), "{series}:\n{text}");
        }
    };
    // The first poll pages up to every entry (10,001 at most by default).
    let text = wait_value_where(&s, SUCCESS, Duration::from_secs(120), |v| v >= 8_000.0);
    expect(&text, 0.0);

    // Later polls see the same 10,000 entries: nothing is counted again.
    let history_polls = |fake: &FakeComfy| {
        fake.requests()
            .iter()
            .filter(|r| r.contains("/history"))
            .count()
    };
    let seen = history_polls(&fake);
    wait_until(Duration::from_secs(60), || {
        let now = history_polls(&fake);
        if now >= seen + 3 {
            Ok(())
        } else {
            Err(format!("{} more /history requests, not 3", now - seen))
        }
    });
    expect(&scrape(&s), 0.0);

    // One new success on top is counted once, and only it.
    fake.add(
        "newest",
        entry("newest", "success", 20_000_000, 20_000_020, ("", "")),
    );
    let text = wait_value_where(&s, SUCCESS, Duration::from_secs(30), |v| v > 8_000.0);
    expect(&text, 1.0);
}

/// One file per rejected `collectors.comfyui` config: `check` exits 2 and names the field.
#[test]
fn rejected_configs() {
    // (file, expected text in the error)
    let cases = [
        ("reject_url_scheme.yaml", "collectors.comfyui.url"),
        (
            "reject_origin_header.yaml",
            "collectors.comfyui.headers.Origin",
        ),
        (
            "reject_timeout_over_interval.yaml",
            "collectors.comfyui.timeout",
        ),
        ("reject_two_tokens.yaml", "collectors.comfyui.bearer_token"),
        (
            "reject_max_items_below_page.yaml",
            "collectors.comfyui.history_max_items",
        ),
        ("reject_unknown_field.yaml", "max_items"),
    ];
    for (file, want) in cases {
        let path = crate::util::fixture(&format!("comfyui/config/{file}"));
        let out = std::process::Command::new(crate::util::bin())
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
        assert!(
            err.contains(&format!("{file}:")),
            "{file}: no location in {err}"
        );
    }
}

#[test]
fn secrets_are_redacted_in_printed_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "http://127.0.0.1:1",
        "    bearer_token: tok-123\n    headers: { X-Api-Key: key-456 }\n",
    );
    let out = std::process::Command::new(crate::util::bin())
        .args(["check", "--print", "--config", &path])
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        !all.contains("tok-123") && !all.contains("key-456"),
        "{all}"
    );
}

/// Paging up stops at the body cap: the newest entries are counted, the older ones
/// are left out and that is counted, and the next polls go on from there.
#[test]
fn paging_stops_at_the_body_cap() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeComfy::start();
    let mut size = 0;
    for i in 0..200 {
        let id = format!("p{i:03}");
        let raw = entry(&id, "success", 1_000 * i, 1_000 * i + 10, ("", ""));
        size = size.max(raw.len() + id.len() + 6);
        fake.add(&id, raw);
    }
    // Room for 100 entries: pages of 16, 32 and 64 fit, 128 does not.
    let extra = format!(
        "    history_page_size: 16\n    max_body_bytes: {}\n",
        size * 100
    );
    let s = start(dir.path(), &fake.url(), &extra);
    let text = wait_value(&s, "comfyui_history_truncated_total", 1.0);
    assert_eq!(value(&text, SUCCESS), Some(64.0));
    assert_eq!(
        value(
            &text,
            "comfyui_api_request_errors_total{endpoint=\"history\",reason=\"too_large\"}"
        ),
        Some(1.0)
    );
    fake.add("late", entry("late", "success", 900_000, 900_010, ("", "")));
    let text = wait_value(&s, SUCCESS, 65.0);
    assert_eq!(value(&text, "comfyui_history_truncated_total"), Some(1.0));
}
