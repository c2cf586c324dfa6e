//! The history (issue 11, "Storage"): `history import` / `history export` of OpenMetrics
//! text, promtool reading our export, and persistence across a SIGKILL of the real
//! binary.

use crate::util::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    temp_file(
        dir,
        "config.yaml",
        &format!(
            "data_dir: {:?}\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n{extra}",
            dir.join("data")
        ),
    )
}

fn history(cfg: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("history")
        .args(args)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .expect("run history")
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sample lines as (series text, value bits, timestamp ms), sorted.
fn samples(text: &str) -> Vec<(String, u64, i64)> {
    let mut out: Vec<(String, u64, i64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.rsplitn(3, ' ');
            let ts: f64 = parts.next().unwrap().parse().unwrap();
            let v: f64 = match parts.next().unwrap() {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            let series = parts.next().unwrap().to_string();
            (series, v.to_bits(), (ts * 1000.0).round() as i64)
        })
        .collect();
    out.sort();
    out
}

/// An hour of three series at 15 s, labels in name order (as the export writes them).
fn generated(now: u64) -> String {
    let mut text = String::from("# HELP queue_depth Queue depth.\n# TYPE queue_depth gauge\n");
    for (series, scale) in [
        ("queue_depth{instance=\"a\",job=\"comfyui\"}", 1.0),
        (
            "queue_depth{instance=\"b \\\"q\\\"\",job=\"comfyui\"}",
            0.25,
        ),
    ] {
        for k in 0..240u64 {
            let t = now - 3600 + k * 15;
            text.push_str(&format!("{series} {} {t}\n", (k % 17) as f64 * scale));
        }
    }
    text.push_str("# TYPE gpu_temp_celsius gauge\n");
    for k in 0..240u64 {
        let t = now - 3600 + k * 15;
        text.push_str(&format!(
            "gpu_temp_celsius{{gpu=\"0\"}} {} {t}.250\n",
            40 + k % 30
        ));
    }
    text.push_str("# EOF\n");
    text
}

#[test]
fn import_then_export_round_trips_and_old_samples_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let now = now_s();
    let text = generated(now);
    // One sample far outside the 24 h retention.
    let with_old = text.replace("# EOF\n", "ancient_metric 1 1000\n# EOF\n");
    let input = temp_file(dir.path(), "in.om", &with_old);
    let out = history(&cfg, &["import", input.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("imported 720 samples of 3 series"), "{msg}");
    assert!(msg.contains("1 samples outside the retention"), "{msg}");
    let out = history(&cfg, &["export"]);
    assert!(out.status.success());
    let exported = String::from_utf8(out.stdout).unwrap();
    assert!(exported.ends_with("# EOF\n"));
    assert_eq!(samples(&exported), samples(&text));
    // Importing the same file again changes nothing (same timestamps overwrite).
    assert!(history(&cfg, &["import", input.to_str().unwrap()])
        .status
        .success());
    let again = String::from_utf8(history(&cfg, &["export"]).stdout).unwrap();
    assert_eq!(samples(&again), samples(&text));
}

#[test]
fn import_rejects_malformed_input_with_line_and_column_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let now = now_s();
    let good = temp_file(
        dir.path(),
        "good.om",
        &format!("up{{job=\"a\"}} 1 {}\n# EOF\n", now - 60),
    );
    assert!(history(&cfg, &["import", good.to_str().unwrap()])
        .status
        .success());
    let before = String::from_utf8(history(&cfg, &["export"]).stdout).unwrap();
    // Valid lines first, then a label value without quotes on line 3, column 14.
    let bad = temp_file(
        dir.path(),
        "bad.om",
        &format!(
            "up{{job=\"a\"}} 1 {t}\nup{{job=\"b\"}} 1 {t}\nup{{job=\"c\",x=y}} 1 {t}\n# EOF\n",
            t = now - 30
        ),
    );
    let out = history(&cfg, &["import", bad.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(msg.contains("bad.om:3:14:"), "{msg}");
    let missing_eof = temp_file(dir.path(), "noeof.om", &format!("up 1 {now}\n"));
    let out = history(&cfg, &["import", missing_eof.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing # EOF"));
    let after = String::from_utf8(history(&cfg, &["export"]).stdout).unwrap();
    assert_eq!(before, after, "a failed import changes nothing");
}

/// Sum of the NUM SAMPLES column of `promtool tsdb create-blocks-from` output (rows:
/// ULID, min time, max time, duration, samples, ...).
fn promtool_samples(stdout: &str) -> u64 {
    assert!(stdout.starts_with("BLOCK ULID"), "{stdout}");
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn promtool_creates_blocks_from_our_export() {
    let Some(promtool) = peer("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let input = temp_file(dir.path(), "in.om", &generated(now_s()));
    assert!(history(&cfg, &["import", input.to_str().unwrap()])
        .status
        .success());
    let exported = dir.path().join("export.om");
    let out = history(&cfg, &["export", "--out", exported.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_ok(
        Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&exported)
            .arg(dir.path().join("blocks")),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(promtool_samples(&stdout), 720, "{stdout}");
}

fn query_value(s: &Sentinel, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, _, body) =
        http_get(&s.url(&format!("/api/v1/query?query={enc}")), &[]).expect("query");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// `sentinel_build_info` sample times (ms) in an export.
fn build_info_times(export: &str) -> Vec<i64> {
    samples(export)
        .into_iter()
        .filter(|(s, _, _)| s.starts_with("sentinel_build_info{"))
        .map(|(_, _, t)| t)
        .collect()
}

#[test]
fn history_survives_sigkill_losing_at_most_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "history:\n  flush_interval: 1s\n");
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    // A running sidecar holds the directory: import is refused with a clear message.
    let f = temp_file(dir.path(), "x.om", &format!("x 1 {}\n# EOF\n", now_s()));
    let out = history(&cfg, &["import", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(10));
    s.signal("KILL");
    let killed_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    drop(s);
    let export = String::from_utf8(history(&cfg, &["export"]).stdout).unwrap();
    let times = build_info_times(&export);
    assert!(times.len() >= 5, "{export}");
    // At most the flush interval (1 s) is lost, plus a refresh period and slack for a
    // loaded machine (a flush only at start or at shutdown would be 9 s or more behind).
    let newest = *times.last().unwrap();
    assert!(
        killed_ms - newest <= 5_000,
        "newest persisted sample {} ms before the kill",
        killed_ms - newest
    );
    // After a restart the older history is there, through the query API.
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    wait_until(Duration::from_secs(20), || {
        let got = query_value(&s, "count_over_time(sentinel_build_info[1h])").unwrap_or(0.0);
        if got >= times.len() as f64 {
            Ok(())
        } else {
            Err(format!(
                "count_over_time gave {got}, want >= {}; log:\n{}",
                times.len(),
                s.logs()
            ))
        }
    });
}

#[test]
fn a_clean_stop_flushes_what_the_interval_has_not_written_yet() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic flush happens within this test: only the one at shutdown.
    let cfg = config(dir.path(), "history:\n  flush_interval: 10m\n");
    let mut s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(3));
    s.signal("TERM");
    let stopped_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let export = String::from_utf8(history(&cfg, &["export"]).stdout).unwrap();
    let times = build_info_times(&export);
    assert!(!times.is_empty(), "nothing flushed at shutdown: {export}");
    assert!(stopped_ms - times.last().unwrap() <= 3_000, "{times:?}");
}

#[test]
fn history_limits_out_of_range_are_located_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, field) in [
        ("history:\n  max_bytes: 1000\n", "history.max_bytes"),
        ("history:\n  retention: 10s\n", "history.retention"),
        ("history:\n  flush_interval: 1h\n", "history.flush_interval"),
    ] {
        let err = check_refuses(&config(dir.path(), extra));
        assert!(err.contains(field), "{err}");
    }
}
