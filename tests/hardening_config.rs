//! Config hardening through the real binary (issue 10, items 4–7 and 12): secret files
//! that are not regular files, nesting deep enough to make YAML parsers crawl, a config
//! `check` accepted but `run` half-applied, passwords inside URLs, and config errors that
//! must say what is wrong and where.

use crate::util::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `comfy-sentinel check` (plus `extra` args) on `config`, killing it after
/// `limit`: returns (exit code, stdout, stderr, elapsed); a hang fails the test.
fn check_in(
    cwd: &Path,
    config: &Path,
    extra: &[&str],
    limit: Duration,
) -> (i32, String, String, Duration) {
    let t = Instant::now();
    let mut child = Command::new(bin())
        .current_dir(cwd)
        .arg("check")
        .args(extra)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("COMFY_SENTINEL_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start check");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`check --config {}` still running after {limit:?}",
                config.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
        t.elapsed(),
    )
}

fn check(config: &Path) -> (i32, String, String, Duration) {
    check_in(Path::new("/"), config, &[], Duration::from_secs(20))
}

#[test]
fn dev_zero_as_token_file_is_refused_promptly_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(dir.path(), "c.yaml", "ingest:\n  token_file: /dev/zero\n");
    let (code, _, err, took) = check(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{}:2:15: ingest.token_file", cfg.display())),
        "{err}"
    );
    assert!(err.contains("/dev/zero is a character device"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn fifo_as_token_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!("ingest:\n  token_file: {}\n", fifo.display()),
    );
    // Nobody ever writes to the FIFO: a blocking open would hang here for good.
    let (code, _, err, took) = check(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} is a FIFO", fifo.display())),
        "{err}"
    );
    assert!(err.contains("ingest.token_file"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn directory_and_oversized_secret_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.token");
    std::fs::write(&big, vec![b'x'; 64 * 1024 + 1]).unwrap();
    for (path, want) in [
        (dir.path().to_path_buf(), "is a directory".to_string()),
        (big.clone(), "larger than 65536 bytes".to_string()),
    ] {
        let cfg = temp_file(
            dir.path(),
            "c.yaml",
            &format!("web:\n  bearer_token_file: {}\n", path.display()),
        );
        let (code, _, err, _) = check(&cfg);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&want) && err.contains("web.bearer_token_file"),
            "{err}"
        );
    }
}

#[test]
fn secret_file_paths_resolve_against_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ingest.token"), "t0ken\n").unwrap();
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        "ingest:\n  token_file: ingest.token\n",
    );
    // Run from elsewhere: the path is the config's neighbour, not the cwd's.
    let (code, _, err, _) = check(&cfg);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn deep_yaml_nesting_is_refused_in_milliseconds_not_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        dir.path(),
        "deep.yaml",
        &format!("x: {}\n", "[".repeat(100_000)),
    );
    let (code, _, err, took) = check(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{}:1:", cfg.display())), "{err}");
    assert!(err.contains("nesting deeper than 64 levels"), "{err}");
    // Before the limit this took 29.6 s (release); the scan is linear.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn reload_with_deep_nesting_is_refused_fast_and_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = "external_labels: {site: kept}\ncollectors:\n  comfyui: {enabled: false}\n";
    let cfg = temp_file(dir.path(), "c.yaml", good);
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    // 120 KB of nesting made a reload take 10.8 s.
    std::fs::write(
        &cfg,
        format!("external_labels: {}\n", "{a: ".repeat(30_000)),
    )
    .unwrap();
    let t = Instant::now();
    let (st, _, body) = http_request("POST", &s.url("/-/reload"), &[], b"").unwrap();
    let took = t.elapsed();
    let body = String::from_utf8_lossy(&body);
    assert_ne!(st, 200, "{body}");
    assert!(body.contains("nesting deeper than 64"), "{body}");
    assert!(took < Duration::from_secs(5), "reload took {took:?}");
    // /metrics is re-encoded every second.
    scrape_until(&s, "sentinel_config_last_reload_successful 0");
    let (st, _, _) = http_get(&s.url("/healthz"), &[]).unwrap();
    assert_eq!(st, 200);
}

#[test]
fn check_refuses_an_external_url_on_which_run_would_switch_notifications_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        "external_url: \"not a url\"\nnotify:\n  route: {receiver: hook}\n  receivers:\n    - name: hook\n      webhooks: [{url: \"http://127.0.0.1:9/hook\"}]\n",
    );
    let (code, _, err, _) = check(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:15: external_url: invalid URL",
            cfg.display()
        )),
        "{err}"
    );
    // `run` refuses the same config instead of running without notifications.
    let out = Command::new(bin())
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("notifications are off"), "{err}");
    assert!(err.contains("external_url"), "{err}");
}

#[test]
fn check_refuses_a_receiver_ca_file_that_run_could_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = temp_file(dir.path(), "ca.pem", "not a certificate\n");
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!(
            "notify:\n  route: {{receiver: am}}\n  receivers:\n    - name: am\n      alertmanagers: [{{urls: [\"https://am:9093\"], ca_file: {}}}]\n",
            ca.display()
        ),
    );
    let (code, _, err, _) = check(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("notify.receivers[0].alertmanagers[0]"),
        "{err}"
    );
    assert!(err.contains(&ca.display().to_string()), "{err}");
}

#[test]
fn config_errors_say_what_is_wrong_and_where() {
    let dir = tempfile::tempdir().unwrap();
    // (file bytes, "line:column: path", message fragment)
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            b"listen: 127.0.0.1:1\nlog:\n  level: info\nlisten: 127.0.0.1:2\n".to_vec(),
            "4:1: listen:",
            "duplicate key (first set at 1:1)",
        ),
        (
            b"log: {level: info, format: text\n\nlisten: \"127.0.0.1:1\"\n".to_vec(),
            "1:6:",
            "unclosed flow mapping `{`",
        ),
        (
            b"ingest:\n  rate_limit:\n    requests_per_second: 1e309\n".to_vec(),
            "3:26: ingest.rate_limit.requests_per_second:",
            "number out of range: 1e309",
        ),
        (
            b"listen: \"127.0.0.1:1\"\nlog:\n  level: \"ab\xffc\"\n".to_vec(),
            "3:13:",
            "invalid UTF-8: byte 0xFF",
        ),
        (
            b"log:\n  level: verbose\n".to_vec(),
            "2:10: log.level:",
            "invalid log level \"verbose\"",
        ),
    ];
    for (i, (bytes, at, fragment)) in cases.into_iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&cfg, &bytes).unwrap();
        let (code, _, err, _) = check(&cfg);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("{}:{at}", cfg.display())),
            "want {at} in {err}"
        );
        assert!(err.contains(fragment), "want {fragment:?} in {err}");
        assert!(!err.contains("invalid type: string"), "{err}");
    }
}

#[test]
fn url_passwords_never_reach_logs_status_page_notifications_api_or_check_print() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!(
            r#"data_dir: "{data}"
collectors:
  comfyui:
    url: "http://user:SECRET@127.0.0.1:{closed}"
rules:
  evaluation_interval: 1s
notify:
  route: {{receiver: am, group_wait: 100ms}}
  outbox: {{max_attempts: 1}}
  receivers:
    - name: am
      alertmanagers: [{{urls: ["http://user:SECRET@127.0.0.1:{closed}"], timeout: 2s}}]
      webhooks: [{{url: "http://user:SECRET@127.0.0.1:{closed}/hook?token=SECRET", timeout: 2s}}]
"#,
            data = dir.path().join("data").display()
        ),
    );
    let (code, out, err, _) = check_in(Path::new("/"), &cfg, &["--print"], Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http://user:<redacted>@127.0.0.1"), "{out}");
    assert!(
        !out.contains("SECRET") && !err.contains("SECRET"),
        "{out}{err}"
    );

    let s = Sentinel::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    // The always-firing Watchdog goes to the closed port and becomes a dead letter.
    let api = wait_text(
        &s,
        "/api/v1/notifications",
        Duration::from_secs(30),
        |body| {
            if body.contains(&format!("127.0.0.1:{closed}")) && body.contains("deadLetters\":[{") {
                vec![]
            } else {
                vec!["a dead letter".into()]
            }
        },
    );
    assert!(!api.contains("SECRET"), "{api}");
    assert!(api.contains("user:<redacted>@127.0.0.1"), "{api}");
    let (_, _, page) = http_get(&s.url("/"), &[]).unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(!page.contains("SECRET"), "{page}");
    // Give the ComfyUI collector's failure time to be logged too.
    std::thread::sleep(Duration::from_millis(500));
    let logs = s.logs();
    assert!(logs.contains("dead-lettered"), "{logs}");
    assert!(!logs.contains("SECRET"), "{logs}");
}
