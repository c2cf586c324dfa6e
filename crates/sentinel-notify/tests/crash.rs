//! Crash test: 1,000 alerts flow through a notifier process that is killed with
//! SIGKILL at random moments and restarted, into a receiver that fails half the time
//! and is sometimes down. At the end every alert was received, and an alert received
//! more than once always came with the same `webhook-id` (a receiver deduping on it
//! sees each notification once).
//!
//! The notifier process is this test binary re-run with `CRASH_CHILD_DIR` set, which
//! turns `crash_child` into the harness (no extra binary to build). Each child
//! re-sends the alerts earlier children sent (as the rule engine re-sends firing
//! alerts after a restart), then sends new ones.

mod common;

use common::*;
use rand::Rng;
use sentinel_base::alert::{Alert, AlertSink};
use sentinel_base::metrics::registry::Registry;
use sentinel_notify::{Notifier, NotifyConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOTAL: usize = 1000;

fn crash_alert(i: usize) -> Alert {
    let base = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    Alert {
        labels: [
            ("alertname".to_string(), "Crash".to_string()),
            ("i".to_string(), i.to_string()),
        ]
        .into(),
        annotations: Default::default(),
        starts_at: base + chrono::Duration::seconds(i as i64),
        ends_at: chrono::Utc::now() + chrono::Duration::hours(1),
        generator_url: String::new(),
    }
}

/// The harness: a no-op unless started by `crash_kill_restart_loses_nothing`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("CRASH_CHILD_DIR") else {
        return;
    };
    let url = std::env::var("CRASH_URL").unwrap();
    let from: usize = std::env::var("CRASH_FROM").unwrap().parse().unwrap();
    let upto: usize = std::env::var("CRASH_UPTO").unwrap().parse().unwrap();
    let yaml = format!(
        r#"
route: {{ receiver: hook, group_by: ['...'], group_wait: 0s, group_interval: 1s, repeat_interval: 1h }}
inhibit_warning_by_critical: false
receivers:
  - name: hook
    webhooks: [{{ url: "{url}/hook", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", timeout: 2s }}]
outbox: {{ initial_backoff: 50ms, max_backoff: 500ms, max_attempts: 100000, concurrency: 16 }}
"#
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let n = Notifier::new(&cfg, std::path::Path::new(&dir), &Registry::new()).unwrap();
        n.start();
        n.send((0..from).map(crash_alert).collect());
        let mut i = from;
        while i < upto {
            let end = (i + 10).min(upto);
            n.send((i..end).map(crash_alert).collect());
            i = end;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

#[derive(Default)]
struct Seen {
    /// alert index → ids it was accepted under.
    ids: BTreeMap<usize, BTreeSet<String>>,
    accepted: usize,
    refused: usize,
}

async fn flaky_receiver(
    port: u16,
    seen: Arc<parking_lot::Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut outages = 0;
    while !stop.load(Ordering::Relaxed) {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let s = seen.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    let fail = rand::rng().random_bool(0.5);
                    if fail {
                        s.lock().refused += 1;
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let mut g = s.lock();
                    g.accepted += 1;
                    for a in v["alerts"].as_array().unwrap() {
                        let i: usize = a["labels"]["i"].as_str().unwrap().parse().unwrap();
                        g.ids.entry(i).or_default().insert(id.clone());
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        );
        let up_for = Duration::from_millis(rand::rng().random_range(500..2500));
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(tokio::time::sleep(up_for))
            .await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        outages += 1;
        let down_for = Duration::from_millis(rand::rng().random_range(100..800));
        tokio::time::sleep(down_for).await;
    }
    outages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let seen: Arc<parking_lot::Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = tokio::spawn(flaky_receiver(port, seen.clone(), stop.clone()));
    let exe = std::env::current_exe().unwrap();
    let spawn = |from: usize, upto: usize| {
        std::process::Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("CRASH_CHILD_DIR", dir.path())
            .env("CRASH_URL", format!("http://127.0.0.1:{port}"))
            .env("CRASH_FROM", from.to_string())
            .env("CRASH_UPTO", upto.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut sent = 0;
    let mut kills = 0;
    let mut extra_kills = 3;
    loop {
        let upto = (sent + rand::rng().random_range(60..200)).min(TOTAL);
        let mut child = spawn(sent, upto);
        let run_for = Duration::from_millis(rand::rng().random_range(200..1500));
        tokio::time::sleep(run_for).await;
        // SIGKILL: no shutdown path runs.
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        sent = upto;
        if sent == TOTAL {
            if extra_kills == 0 {
                break;
            }
            extra_kills -= 1;
        }
    }
    let mut last = spawn(TOTAL, TOTAL);
    let start = Instant::now();
    loop {
        let n = seen.lock().ids.len();
        if n == TOTAL {
            break;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = last.kill();
            panic!("only {n} of {TOTAL} alerts received after {kills} kills");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let late retries land, to catch duplicates with a new id.
    tokio::time::sleep(Duration::from_secs(2)).await;
    last.kill().unwrap();
    last.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let outages = receiver.await.unwrap();
    let g = seen.lock();
    let multi_id: Vec<(&usize, &BTreeSet<String>)> =
        g.ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
    let distinct_ids: BTreeSet<&String> = g.ids.values().flatten().collect();
    eprintln!(
        "crash test: {TOTAL} alerts, {kills} SIGKILLs, {outages} receiver outages, {} refused (503), {} accepted deliveries, {} distinct ids, {} duplicate deliveries (same id), {} alerts under more than one id",
        g.refused,
        g.accepted,
        distinct_ids.len(),
        g.accepted - distinct_ids.len(),
        multi_id.len()
    );
    assert_eq!(g.ids.len(), TOTAL, "every alert received");
    assert!(
        multi_id.is_empty(),
        "alerts delivered under several ids: {multi_id:?}"
    );
    assert!(kills >= 5);
}
