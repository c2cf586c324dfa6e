//! Delivery latency through the real binary: a pushed event that makes a `for: 0s`
//! rule true reaches the webhook at once, not at the next regular evaluation.

use crate::util::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A webhook receiver on 127.0.0.1: every POST body, with when it arrived.
fn webhook_receiver() -> (u16, mpsc::Receiver<(Instant, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || loop {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let at = Instant::now();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                let _ = tx.send((at, String::from_utf8_lossy(&body).to_string()));
            });
        }
    });
    (port, rx)
}

#[test]
fn pushed_event_fires_a_for_zero_rule_without_waiting_for_the_evaluation_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (port, hooks) = webhook_receiver();
    // The group is evaluated once at start and then once an hour (aligned to the
    // hour): only the immediate evaluation of a pushed event can deliver in time.
    let rules = temp_file(
        dir.path(),
        "rules.yaml",
        "groups:\n  - name: pushed\n    interval: 1h\n    rules:\n      - alert: HeartbeatFailed\n        expr: sentinel_heartbeat_last_failure_timestamp_seconds > 0\n        for: 0s\n",
    );
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n  comfyui: {{ enabled: false }}\nrules:\n  files: [{rules}]\n  evaluation_interval: 1m\nnotify:\n  route:\n    receiver: hook\n    group_by: [alertname, name]\n    group_wait: 0s\n    group_interval: 1s\n  receivers:\n    - name: hook\n      webhooks:\n        - url: \"http://127.0.0.1:{port}/hook\"\n",
            rules = rules.display(),
        ),
    );
    s.wait_ready();
    // Let the first (start-up) evaluation pass; it finds nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert!(hooks.try_recv().is_err(), "nothing fires before the event");
    let t0 = Instant::now();
    post_events(
        &s,
        r#"[{"type":"heartbeat","name":"nightly-backup","status":"failure"}]"#,
    );
    let deadline = t0 + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((at, body)) = hooks.recv_timeout(left) else {
            panic!(
                "no webhook within 10 s of the event (the next regular evaluation is up to an hour away); log:\n{}",
                s.logs()
            );
        };
        if body.contains("HeartbeatFailed") && body.contains("nightly-backup") {
            assert!(body.contains("\"status\":\"firing\""), "{body}");
            eprintln!("event → webhook: {:?}", at - t0);
            break;
        }
    }
}
