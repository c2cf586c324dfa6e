//! The running binary: scrape and lint, health and readiness, config errors with their
//! locations, reload, authentication, TLS, and HTTP edge cases.

use crate::support::prometheus::promtool_check_metrics;
use crate::util::*;
use std::process::Command;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A config for tests: ephemeral data dir, fast intervals.
fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let body = format!(
        "data_dir: {}\ncollectors:\n  system:\n    interval: 1s\n    timeout: 1s\n{extra}",
        dir.join("data").display()
    );
    temp_file(dir, "sentinel.yaml", &body)
}

#[test]
fn embedded_config_serves_metrics_and_health() {
    let s = Sentinel::start(&[]);
    s.wait_ready();
    let text = scrape(&s);
    assert!(text.contains("# TYPE sentinel_build_info gauge"), "{text}");
    assert!(
        text.contains("sentinel_collector_success{collector=\"system\"} 1"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    let (status, _, body) = http_get(&s.url("/healthz"), &[]).unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    let (status, h, body) = http_get(&s.url("/"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(header(&h, "content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("href=\"/metrics\""));
}

#[test]
fn file_config_scrape_passes_promtool() {
    // Looked up first: without promtool there is nothing to start the binary for.
    if peer("promtool").is_none() {
        return;
    }
    let dir = tempdir();
    let cfg = write_config(dir.path(), "");
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let text = scrape(&s);
    let (_, report) = promtool_check_metrics(&text).expect("promtool found above");
    // node_exporter's inherited names (node_memory_MemTotal_bytes, ...) are camelCase by
    // design; promtool flags them and nothing else may be flagged.
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(l.starts_with("node_")
                && l.contains("metric names should be written in 'snake_case' not 'camelCase'"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics found problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn openmetrics_and_gzip_are_negotiated() {
    let s = Sentinel::start(&[]);
    s.wait_ready();
    let (status, h, body) = http_get(
        &s.url("/metrics"),
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(header(&h, "content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(
        text.contains("# TYPE process_cpu_seconds counter\n"),
        "{text}"
    );

    let (status, h, body) = http_get(&s.url("/metrics"), &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
        .unwrap();
    assert!(plain.contains("# TYPE sentinel_build_info gauge"));
}

#[test]
fn bad_http_input_gets_precise_errors() {
    let s = Sentinel::start(&[]);
    let (status, _, _) = http_get(&s.url("/no/such/path"), &[]).unwrap();
    assert_eq!(status, 404);
    let (status, h, _) = http_request("DELETE", &s.url("/metrics"), &[], b"").unwrap();
    assert_eq!(status, 405);
    assert!(header(&h, "allow").is_some_and(|a| a.contains("GET")));
    // A 64 KiB header is over the 16 KiB default head limit.
    let big = "x".repeat(64 * 1024);
    let (status, _, _) = http_get(&s.url("/metrics"), &[("X-Big", &big)]).unwrap();
    assert_eq!(status, 431);
    // The server is still fine afterwards.
    let (status, _, _) = http_get(&s.url("/healthz"), &[]).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn basic_and_bearer_auth_guard_every_endpoint() {
    let dir = tempdir();
    let pw = temp_file(dir.path(), "pw", "s3cret\n");
    let cfg = write_config(
        dir.path(),
        &format!(
            "web:\n  basic_auth:\n    username: prom\n    password_file: {}\n  bearer_token: ${{SENTINEL_TEST_TOKEN}}\n",
            pw.display()
        ),
    );
    let s = Sentinel::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("SENTINEL_TEST_TOKEN", "tok-123")],
    );
    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        let (status, h, _) = http_get(&s.url(path), &[]).unwrap();
        assert_eq!(status, 401, "{path}");
        assert!(header(&h, "www-authenticate").is_some_and(|v| v.starts_with("Basic")));
        let (status, _, _) =
            http_get(&s.url(path), &[("Authorization", "Basic cHJvbTp3cm9uZw==")]).unwrap();
        assert_eq!(status, 401, "{path} with a wrong password");
    }
    // prom:s3cret
    let (status, _, _) = http_get(
        &s.url("/metrics"),
        &[("Authorization", "Basic cHJvbTpzM2NyZXQ=")],
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) =
        http_get(&s.url("/metrics"), &[("Authorization", "Bearer tok-123")]).unwrap();
    assert_eq!(status, 200);
    let (status, _, _) =
        http_get(&s.url("/metrics"), &[("Authorization", "Bearer tok-1234")]).unwrap();
    assert_eq!(status, 401);
    assert!(
        !s.logs().contains("s3cret") && !s.logs().contains("tok-123"),
        "secrets leaked into logs"
    );
}

/// Runs `comfy-sentinel check` on a config text and returns (exit code, stderr).
fn check(dir: &std::path::Path, text: &str) -> (i32, String) {
    let cfg = temp_file(dir, "bad.yaml", text);
    let out = Command::new(bin())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn config_errors_exit_2_with_file_line_column() {
    let dir = tempdir();
    let file = dir.path().join("bad.yaml").display().to_string();
    // Each case: the config text, the expected "line:column", a fragment of the message.
    let cases = [
        // unknown field, nested
        (
            "log:\n  level: info\n  colour: red\n",
            "3:3",
            "unknown field `colour`",
        ),
        // wrong type
        (
            "limits:\n  max_series_per_family: many\n",
            "2:26",
            "invalid type",
        ),
        // bad duration
        (
            "collectors:\n  system:\n    interval: 5 seconds\n",
            "3:15",
            "invalid duration",
        ),
        // missing secret file
        (
            "web:\n  bearer_token_file: /nonexistent/token\n",
            "2:22",
            "cannot read secret file",
        ),
        // invalid listen address (found after parsing, located by path)
        ("listen: not-an-address\n", "1:9", "invalid listen address"),
    ];
    for (text, at, fragment) in cases {
        let (code, err) = check(dir.path(), text);
        assert_eq!(code, 2, "exit code for {text:?}: {err}");
        assert!(
            err.contains(&format!("{file}:{at}:")),
            "want {file}:{at} in {err:?}"
        );
        assert!(err.contains(fragment), "want {fragment:?} in {err:?}");
    }
    // `run` refuses to start with the same code.
    let bad = temp_file(dir.path(), "bad2.yaml", "nope: 1\n");
    let out = Command::new(bin())
        .args([
            "run",
            "--config",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn shipped_configs_pass_check() {
    for cfg in ["config/default.yaml", "config/example.yaml"] {
        run_ok(
            Command::new(bin())
                .args(["check", "--config", repo().join(cfg).to_str().unwrap()])
                .env(
                    "COMFY_SENTINEL_EXAMPLE_WEBHOOK_SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
        );
    }
    let out = Command::new(bin())
        .args(["check", "--print"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 0.0.0.0:9188"));
}

#[test]
fn check_print_redacts_secrets() {
    let dir = tempdir();
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        "web:\n  bearer_token: hunter2-token\n",
    );
    let out = Command::new(bin())
        .args(["check", "--print", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn reload_keeps_old_config_on_error_and_applies_good_one() {
    let dir = tempdir();
    let cfg = write_config(dir.path(), "");
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    // Break the file: POST /-/reload refuses it, the old config keeps running.
    std::fs::write(&cfg, "collectors:\n  system:\n    intervl: 1s\n").unwrap();
    let (status, _, body) = http_request("POST", &s.url("/-/reload"), &[], b"").unwrap();
    assert_eq!(status, 500);
    assert!(
        String::from_utf8_lossy(&body).contains(":3:5:"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let wait_for = |want: &str| scrape_until(&s, want);
    wait_for("sentinel_config_last_reload_successful 0");
    assert!(scrape(&s).contains("sentinel_collector_success{collector=\"system\"} 1"));
    // Fix it and reload with SIGHUP: the system collector is now disabled.
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\ncollectors:\n  system:\n    enabled: false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    s.signal("HUP");
    wait_for("sentinel_config_last_reload_successful 1");
    let text = scrape(&s);
    assert!(!text.contains("collector=\"system\""), "{text}");
    assert!(!text.contains("node_load1 "), "{text}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut s = Sentinel::start(&[]);
    s.wait_ready();
    s.signal("TERM");
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn version_subcommand() {
    let out = Command::new(bin()).arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("comfy-sentinel "));
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempdir();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("self-signed certificate");
    let cert_pem = cert.cert.pem();
    let cert_file = temp_file(dir.path(), "tls.crt", &cert_pem);
    let key_file = temp_file(dir.path(), "tls.key", &cert.key_pair.serialize_pem());
    let cfg = write_config(
        dir.path(),
        &format!(
            "web:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            cert_file.display(),
            key_file.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trusting = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let r = trusting
            .get(format!("https://{}/healthz", s.addr))
            .send()
            .await
            .expect("HTTPS request with the certificate trusted");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok\n");
        // A client that does not trust the certificate is refused by its own TLS check.
        let strict = reqwest::Client::new();
        assert!(strict
            .get(format!("https://{}/healthz", s.addr))
            .send()
            .await
            .is_err());
    });
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(http_get(&s.url("/healthz"), &[])
        .map(|r| r.0 != 200)
        .unwrap_or(true));
    // An unreadable key is a config error with its location.
    let bad = write_config(
        dir.path(),
        "web:\n  tls:\n    cert_file: /nonexistent.crt\n    key_file: /nonexistent.key\n",
    );
    let out = Command::new(bin())
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read cert_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
