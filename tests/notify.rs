//! Notifications through the real binary: the `verify` subcommand for receiver
//! authors, the silences/alerts/notifications API (silences survive a restart), and
//! `/readyz` when the outbox cannot persist. Delivery itself is tested in
//! `crates/sentinel-notify/tests/` (capture servers, SMTP, Alertmanager, crash test).

use crate::support::process::run_with_input;
use crate::util::*;
use sentinel_notify::sign::{sign_headers, WebhookKey};
use std::process::Command;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn verify_cmd(args: &[&str], stdin: &[u8]) -> (i32, String) {
    let (code, out) = run_with_input(Command::new(bin()).arg("verify").args(args), stdin);
    (code.unwrap_or(-1), out)
}

#[test]
fn verify_subcommand_says_valid_or_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let key = WebhookKey::parse(SECRET).unwrap();
    let body = b"{\"version\":\"4\",\"alerts\":[]}\n";
    let now = chrono::Utc::now().timestamp();
    let headers: String = sign_headers(std::slice::from_ref(&key), "msg_abc", now, body, false)
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    let hfile = temp_file(dir.path(), "headers.txt", &headers);
    let bfile = temp_file(dir.path(), "body.json", std::str::from_utf8(body).unwrap());
    let h = hfile.to_str().unwrap();
    let b = bfile.to_str().unwrap();
    // (args, stdin, exit code, expected text)
    let cases: Vec<(Vec<&str>, Vec<u8>, i32, &str)> = vec![
        (
            vec!["--secret", SECRET, "--headers", h, "--body", b],
            vec![],
            0,
            "valid: webhook-id msg_abc",
        ),
        (
            vec!["--secret", SECRET, "--headers", h],
            body.to_vec(),
            0,
            "valid",
        ),
        (
            vec!["--secret", SECRET, "--headers", h],
            b"{}".to_vec(),
            1,
            "invalid: no signature matches",
        ),
        (
            vec!["--secret", "whsec_d3Jvbmc=", "--headers", h, "--body", b],
            vec![],
            1,
            "invalid: no signature matches",
        ),
        (
            vec!["--secret", SECRET, "--body", b],
            vec![],
            1,
            "invalid: missing header webhook-id",
        ),
        (
            vec!["--secret", SECRET],
            format!(
                "POST /hook HTTP/1.1\r\n{}\r\n",
                headers.replace('\n', "\r\n")
            )
            .into_bytes()
            .into_iter()
            .chain(body.iter().copied())
            .collect(),
            0,
            "valid",
        ),
    ];
    for (args, stdin, code, want) in cases {
        let (got_code, out) = verify_cmd(&args, &stdin);
        assert_eq!(got_code, code, "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: {out}");
    }
    // Outside the tolerance.
    let old: String = sign_headers(&[key], "msg_old", now - 600, body, false)
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    let ofile = temp_file(dir.path(), "old.txt", &old);
    let (code, out) = verify_cmd(
        &[
            "--secret",
            SECRET,
            "--headers",
            ofile.to_str().unwrap(),
            "--body",
            b,
            "--tolerance",
            "5m",
        ],
        b"",
    );
    assert_eq!(code, 1);
    assert!(out.contains("too old"), "{out}");
    let (code, out) = verify_cmd(
        &[
            "--secret",
            SECRET,
            "--headers",
            ofile.to_str().unwrap(),
            "--body",
            b,
            "--tolerance",
            "15m",
        ],
        b"",
    );
    assert_eq!(code, 0, "{out}");
}

fn config(dir: &std::path::Path, data_dir: &std::path::Path) -> std::path::PathBuf {
    temp_file(
        dir,
        "sentinel.yaml",
        &format!(
            r#"
data_dir: "{}"
notify:
  route: {{ receiver: hook }}
  receivers:
    - name: hook
      webhooks: [{{ url: "http://127.0.0.1:9/hook", secret: "{SECRET}" }}]
"#,
            data_dir.display()
        ),
    )
}

#[test]
fn silences_api_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dir.path().join("data"));
    let silence = r#"{"matchers":[{"name":"alertname","value":"GpuHot","isRegex":false,"isEqual":true}],
        "startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"ops","comment":"maintenance"}"#;
    let id = {
        let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
        s.wait_ready();
        let (st, _, body) = http_request(
            "POST",
            &s.url("/api/v2/silences"),
            &[("content-type", "application/json")],
            silence.as_bytes(),
        )
        .unwrap();
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = v["silenceID"].as_str().unwrap().to_string();
        // A silence without a comment is refused.
        let bad = silence.replace("maintenance", "");
        let (st, _, _) =
            http_request("POST", &s.url("/api/v2/silences"), &[], bad.as_bytes()).unwrap();
        assert_eq!(st, 400);
        // Only the default rules' always-firing Watchdog is active.
        let (st, _, body) = http_get(&s.url("/api/v2/alerts"), &[]).unwrap();
        assert_eq!(st, 200);
        let alerts: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            alerts
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["labels"]["alertname"] == "Watchdog"),
            "{alerts}"
        );
        let (st, _, body) = http_get(&s.url("/api/v1/notifications"), &[]).unwrap();
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["persistent"], true);
        let text = scrape(&s);
        assert!(text.contains("sentinel_outbox_depth 0"), "{text}");
        assert!(
            text.contains("sentinel_notifications_total{receiver=\"hook\",result=\"success\"} 0")
        );
        id
    };
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let (_, _, body) = http_get(&s.url("/api/v2/silences"), &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["id"], id.as_str(), "silence survived the restart: {v}");
    assert_eq!(v[0]["status"]["state"], "active");
    let (st, _, _) =
        http_request("DELETE", &s.url(&format!("/api/v2/silence/{id}")), &[], b"").unwrap();
    assert_eq!(st, 200);
    let (_, _, body) = http_get(&s.url("/api/v2/silences"), &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["status"]["state"], "expired");
    let (st, _, _) = http_request(
        "DELETE",
        &s.url("/api/v2/silence/00000000-0000-0000-0000-000000000000"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(st, 404);
    // Not a UUID: go-swagger's 422, as Alertmanager answers.
    let (st, _, _) = http_request("DELETE", &s.url("/api/v2/silence/nope"), &[], b"").unwrap();
    assert_eq!(st, 422);
}

#[test]
fn readyz_reports_an_outbox_that_cannot_persist() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap();
    let cfg = config(dir.path(), &blocked.join("data"));
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    let st = wait_until(std::time::Duration::from_secs(30), || {
        let (st, _, body) = http_get(&s.url("/readyz"), &[]).unwrap();
        let body = String::from_utf8_lossy(&body).to_string();
        if body.contains("outbox cannot persist") {
            Ok(st)
        } else {
            Err(format!("readyz never mentioned the outbox: {body}"))
        }
    });
    assert_eq!(st, 503);
    assert!(scrape(&s).contains("sentinel_outbox_persistent 0"));
}
