//! The notifier end to end against capture servers on 127.0.0.1:0: signed webhook
//! delivery, retries with a stable id, Retry-After, dead letters, the shared status
//! table for every HTTP receiver, outbox resume after a restart, and an unwritable
//! data dir.

mod common;

use common::*;
use sentinel_base::alert::AlertSink;
use sentinel_base::metrics::registry::Registry;
use sentinel_notify::receiver::alertmanager::{Alertmanager, AlertmanagerConfig};
use sentinel_notify::receiver::webhook::{Webhook, WebhookConfig};
use sentinel_notify::receiver::{Delivery, Notify};
use sentinel_notify::sign::{verify, WebhookKey};
use sentinel_notify::{Notifier, NotifyConfig};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(url: &str, extra: &str) -> NotifyConfig {
    let yaml = format!(
        r#"
external_url: "http://sentinel.test:9188"
route: {{ receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 1h }}
receivers:
  - name: hook
    webhooks: [{{ url: "{url}/hook", secret: "{SECRET}", github_signature: true, headers: {{ X-Api-Key: k123 }} }}]
outbox: {{ initial_backoff: 20ms, max_backoff: 200ms, max_attempts: 5 }}
{extra}
"#
    );
    let c: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    c.validate().unwrap();
    c
}

fn metrics_text(reg: &Registry) -> String {
    let mut s = String::new();
    sentinel_base::metrics::encode::encode_text(&reg.collect(), &mut s);
    s
}

fn json(c: &Captured) -> serde_json::Value {
    serde_json::from_slice(&c.body).unwrap()
}

#[tokio::test]
async fn webhook_is_signed_and_retried_with_the_same_id() {
    // 503 with Retry-After: 0, then 500, then accepted.
    let cap = capture(|n| match n {
        0 => (503, vec![("retry-after".into(), "0".into())]),
        1 => (500, vec![]),
        _ => (204, vec![]),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let cfg = config(&cap.url, "");
    // Header values are secrets: never printed.
    assert!(!serde_json::to_string(&cfg).unwrap().contains("k123"));
    let n = Notifier::new(&cfg, dir.path(), &reg).unwrap();
    n.start();
    n.send(vec![alert("GpuHot", &[("gpu", "0")], 240)]);
    let got = wait_for(Duration::from_secs(30), "3 attempts", || {
        let g = cap.got.lock();
        (g.len() >= 3).then(|| g.clone())
    })
    .await;
    let ids: Vec<&str> = got
        .iter()
        .map(|c| c.header("webhook-id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "same webhook-id on every retry: {ids:?}"
    );
    let key = WebhookKey::parse(SECRET).unwrap();
    for c in &got {
        assert_eq!(c.path, "/hook");
        assert_eq!(c.header("content-type"), Some("application/json"));
        let now = chrono::Utc::now().timestamp();
        verify(std::slice::from_ref(&key), &c.headers, &c.body, now, 300).unwrap();
        assert!(c
            .header("x-hub-signature-256")
            .unwrap()
            .starts_with("sha256="));
    }
    let b = json(&got[2]);
    assert_eq!(b["version"], "4");
    assert_eq!(b["status"], "firing");
    assert_eq!(b["receiver"], "hook");
    assert_eq!(b["groupKey"], "{}:{alertname=\"GpuHot\"}");
    assert_eq!(b["externalURL"], "http://sentinel.test:9188");
    assert_eq!(b["alerts"][0]["labels"]["gpu"], "0");
    assert_eq!(b["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(b["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    // Go-style escaping of & in the raw bytes.
    assert!(String::from_utf8_lossy(&got[2].body).contains("\\u0026y=2"));
    wait_for(Duration::from_secs(10), "outbox drained", || {
        (n.outbox().depth() == 0).then_some(())
    })
    .await;
    let (recent, _, dead) = n.notifications();
    assert!(dead.is_empty());
    assert_eq!(recent.iter().filter(|a| a.result == "retry").count(), 2);
    let text = metrics_text(&reg);
    assert!(
        text.contains("sentinel_notifications_total{receiver=\"hook\",result=\"success\"} 1"),
        "{text}"
    );
    assert!(text.contains("sentinel_notifications_total{receiver=\"hook\",result=\"retry\"} 2"));
    assert!(text.contains("sentinel_outbox_depth 0"));
}

#[tokio::test]
async fn permanent_errors_and_exhausted_retries_are_dead_letters() {
    let cap = capture(|n| if n == 0 { (400, vec![]) } else { (503, vec![]) }).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let n = Notifier::new(&config(&cap.url, ""), dir.path(), &reg).unwrap();
    n.start();
    n.send(vec![alert("A", &[], 240)]);
    wait_for(Duration::from_secs(10), "first dead letter", || {
        (n.notifications().2.len() == 1).then_some(())
    })
    .await;
    assert_eq!(cap.got.lock().len(), 1, "a 400 is not retried");
    n.send(vec![alert("B", &[], 240)]);
    wait_for(Duration::from_secs(30), "second dead letter", || {
        (n.notifications().2.len() == 2).then_some(())
    })
    .await;
    assert_eq!(cap.got.lock().len(), 6, "1 + max_attempts(5)");
    let dead = n.notifications().2;
    assert!(
        dead[0].reason.contains("gave up after 5 attempts"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[1].reason.contains("permanent error: http 400"),
        "{}",
        dead[1].reason
    );
    let text = metrics_text(&reg);
    assert!(
        text.contains("sentinel_notifications_dead_total{receiver=\"hook\"} 2"),
        "{text}"
    );
}

/// The shared status → retry table, exercised through every HTTP receiver.
#[tokio::test]
async fn status_table_for_every_http_receiver() {
    // (status, retryable) — None: delivered.
    let table: &[(u16, Option<bool>)] = &[
        (200, None),
        (202, None),
        (302, Some(false)),
        (400, Some(false)),
        (404, Some(false)),
        (408, Some(true)),
        (410, Some(false)),
        (429, Some(true)),
        (500, Some(true)),
        (502, Some(true)),
        (503, Some(true)),
    ];
    let codes: Vec<u16> = table.iter().map(|(c, _)| *c).collect();
    let c2 = codes.clone();
    let cap = capture(move |n| (c2[n % c2.len()], vec![])).await;
    let webhook = Webhook::new(WebhookConfig {
        url: format!("{}/hook", cap.url),
        ..Default::default()
    })
    .unwrap();
    let am = Alertmanager::new(AlertmanagerConfig {
        urls: vec![cap.url.clone()],
        ..Default::default()
    })
    .unwrap();
    let receivers: [&dyn Notify; 2] = [&webhook, &am];
    let n = sentinel_notify::notification::Notification {
        receiver: "r".into(),
        group_key: "k".into(),
        group_labels: Default::default(),
        alerts: vec![alert("A", &[], 240)],
        flushed_at: chrono::Utc::now(),
    };
    for r in receivers {
        for (code, want) in table {
            let res = r
                .notify(&Delivery {
                    id: "msg_x",
                    notification: &n,
                    external_url: "",
                })
                .await;
            match (want, res) {
                (None, Ok(())) => {}
                (Some(retry), Err(e)) => {
                    assert_eq!(e.retryable, *retry, "{} {code}: {e}", r.kind())
                }
                (w, res) => panic!("{} {code}: want {w:?}, got {res:?}", r.kind()),
            }
        }
    }
    // Connection refused is retryable too.
    let down = Webhook::new(WebhookConfig {
        url: format!("http://127.0.0.1:{}/", free_port()),
        ..Default::default()
    })
    .unwrap();
    let e = down
        .notify(&Delivery {
            id: "x",
            notification: &n,
            external_url: "",
        })
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");
}

/// Phase one runs in its own runtime, which is then dropped as a crash would (tasks
/// die mid-flight, the database is closed without a shutdown path).
#[test]
fn pending_notifications_resume_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(async {
        // Receiver down: the notification stays pending in the outbox.
        let c = config(&url, "");
        let mut c2 = c.clone();
        c2.outbox.initial_backoff = sentinel_base::config::Dur::secs(10);
        c2.outbox.max_backoff = sentinel_base::config::Dur::secs(10);
        let n = Notifier::new(&c2, dir.path(), &Registry::new()).unwrap();
        n.start();
        n.send(vec![alert("A", &[], 240)]);
        let id = wait_for(Duration::from_secs(10), "an attempt", || {
            n.notifications()
                .1
                .first()
                .filter(|e| e.attempts >= 1)
                .map(|e| e.id.clone())
        })
        .await;
        assert!(n.outbox().persistent());
        id
    });
    drop(rt);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cap = capture(|_| (200, vec![])).await;
        let n2 = Notifier::new(&config(&cap.url, ""), dir.path(), &Registry::new()).unwrap();
        assert_eq!(n2.outbox().depth(), 1, "loaded from disk");
        n2.start();
        let got = wait_for(Duration::from_secs(10), "resumed delivery", || {
            let g = cap.got.lock();
            (!g.is_empty()).then(|| g[0].clone())
        })
        .await;
        assert_eq!(
            got.header("webhook-id"),
            Some(id.as_str()),
            "same id after restart"
        );
    });
}

#[tokio::test]
async fn unwritable_data_dir_still_delivers_and_reports_not_ready() {
    let cap = capture(|_| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"").unwrap();
    let reg = Registry::new();
    let n = Notifier::new(&config(&cap.url, ""), &blocked.join("data"), &reg).unwrap();
    n.start();
    let why = n.readiness().unwrap_err();
    assert!(why.to_string().contains("cannot persist"), "{why}");
    n.send(vec![alert("A", &[], 240)]);
    wait_for(Duration::from_secs(10), "best-effort delivery", || {
        (!cap.got.lock().is_empty()).then_some(())
    })
    .await;
    let text = metrics_text(&reg);
    assert!(
        text.contains("sentinel_notifications_not_persisted_total 1"),
        "{text}"
    );
    assert!(text.contains("sentinel_outbox_persistent 0"));
}

#[tokio::test]
async fn resolved_is_sent_and_max_alerts_truncates() {
    let cap = capture(|_| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&cap.url, "");
    c.receivers[0].webhooks[0].max_alerts = 2;
    let n = Notifier::new(&c, dir.path(), &Registry::new()).unwrap();
    n.start();
    let firing: Vec<_> = (0..3)
        .map(|i| alert("Many", &[("i", &i.to_string())], 240))
        .collect();
    n.send(firing.clone());
    wait_for(Duration::from_secs(10), "firing", || {
        (cap.got.lock().len() == 1).then_some(())
    })
    .await;
    let b = json(&cap.got.lock()[0]);
    assert_eq!(b["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(b["truncatedAlerts"], 1);
    let resolved: Vec<_> = firing
        .into_iter()
        .map(|mut a| {
            a.ends_at = chrono::Utc::now();
            a
        })
        .collect();
    n.send(resolved);
    wait_for(Duration::from_secs(10), "resolved", || {
        (cap.got.lock().len() == 2).then_some(())
    })
    .await;
    let b = json(&cap.got.lock()[1]);
    assert_eq!(b["status"], "resolved");
    assert_ne!(b["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

/// While an Alertmanager refuses, evaluations keep coming: the outbox folds them into
/// one pending forward, and the resolve is the last thing Alertmanager hears.
#[tokio::test]
async fn forwards_to_alertmanager_coalesce_and_keep_order() {
    let cap = capture(|n| if n < 3 { (503, vec![]) } else { (200, vec![]) }).await;
    let yaml = format!(
        r#"
route: {{ receiver: am }}
receivers: [{{ name: am, alertmanagers: [{{ urls: ["{}"] }}] }}]
outbox: {{ initial_backoff: 300ms, max_backoff: 300ms, jitter: 0 }}
"#,
        cap.url
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    let a = alert("Fwd", &[], 240);
    for i in 0..10 {
        let mut x = a.clone();
        x.ends_at = at(240 + i);
        n.send(vec![x]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resolved = a.clone();
    resolved.ends_at = chrono::Utc::now();
    n.send(vec![resolved.clone()]);
    wait_for(Duration::from_secs(20), "delivery", || {
        (n.outbox().depth() == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = cap.got.lock().clone();
    assert!(
        got.len() < 11,
        "coalesced: {} requests for 11 batches",
        got.len()
    );
    let last: serde_json::Value = serde_json::from_slice(&got.last().unwrap().body).unwrap();
    let ends: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(last[0]["endsAt"].clone()).unwrap();
    assert_eq!(ends, resolved.ends_at, "the resolve is delivered last");
    assert!(got.iter().all(|c| c.path == "/api/v2/alerts"));
}

/// A bounded outbox: beyond `max_pending`, the oldest notifications become dead
/// letters, counted, instead of growing without limit.
#[tokio::test]
async fn full_outbox_dead_letters_the_oldest() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut c = config(&url, "");
    c.route.group_by = Some(vec!["...".into()]);
    c.outbox.max_pending = 2;
    c.outbox.initial_backoff = sentinel_base::config::Dur::secs(60);
    c.outbox.max_backoff = sentinel_base::config::Dur::secs(60);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let n = Notifier::new(&c, dir.path(), &reg).unwrap();
    n.start();
    for i in 0..5 {
        n.send(vec![alert("Full", &[("i", &i.to_string())], 240)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(Duration::from_secs(10), "3 evictions", || {
        (n.notifications().2.len() == 3).then_some(())
    })
    .await;
    assert_eq!(n.outbox().depth(), 2);
    assert!(n.notifications().2[0].reason.contains("outbox full"));
    assert!(metrics_text(&reg).contains("sentinel_notifications_dead_total{receiver=\"hook\"} 3"));
}
