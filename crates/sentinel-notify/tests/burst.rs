//! Load figures, run by hand (`cargo test -p sentinel-notify --test burst -- --ignored
//! --nocapture`): a burst of 10,000 alerts across 100 groups with the outbox on, to a
//! local webhook receiver; and the cost of one outbox commit (fsync) on this disk.

mod common;

use common::*;
use sentinel_base::alert::AlertSink;
use sentinel_base::metrics::registry::Registry;
use sentinel_notify::outbox::{Entry, Outbox};
use sentinel_notify::{Notifier, NotifyConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load figures, run by hand"]
async fn burst_10k_alerts_100_groups() {
    let cap = capture(|_| (200, vec![])).await;
    let yaml = format!(
        r#"
route: {{ receiver: hook, group_by: [group], group_wait: 0s, group_interval: 1s }}
receivers: [{{ name: hook, webhooks: [{{ url: "{}/hook", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}] }}]
"#,
        cap.url
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    let alerts: Vec<_> = (0..10_000)
        .map(|i| {
            alert(
                "Burst",
                &[("group", &(i % 100).to_string()), ("i", &i.to_string())],
                600,
            )
        })
        .collect();
    let start = Instant::now();
    n.send(alerts);
    wait_for(Duration::from_secs(120), "first notification", || {
        (!cap.got.lock().is_empty()).then_some(())
    })
    .await;
    let first = start.elapsed();
    wait_for(Duration::from_secs(120), "100 notifications", || {
        (cap.got.lock().len() >= 100).then_some(())
    })
    .await;
    let el = start.elapsed();
    let alerts_in: usize = cap
        .got
        .lock()
        .iter()
        .map(|c| {
            serde_json::from_slice::<serde_json::Value>(&c.body).unwrap()["alerts"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    eprintln!(
        "burst: first notification after {:.3}s; 10000 alerts / 100 groups -> {} notifications carrying {alerts_in} alerts in {:.3}s ({:.0} notifications/s, {:.0} alerts/s)",
        first.as_secs_f64(),
        cap.got.lock().len(),
        el.as_secs_f64(),
        100.0 / el.as_secs_f64(),
        alerts_in as f64 / el.as_secs_f64()
    );
}

#[test]
#[ignore = "load figures, run by hand"]
fn outbox_commit_cost() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path());
    let now = chrono::Utc::now();
    let entry = |i: usize| Entry {
        id: format!("msg_{i}"),
        receiver: "r".into(),
        integration: "webhook/0".into(),
        notification: sentinel_notify::notification::Notification {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: Default::default(),
            alerts: vec![alert("A", &[("i", &i.to_string())], 600)],
            flushed_at: now,
        },
        created_at: now,
        attempts: 0,
        next_at: now,
        last_error: None,
    };
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        assert!(ob.put(&[entry(i)]));
    }
    let single = start.elapsed() / n as u32;
    let batch: Vec<Entry> = (n..n + 1000).map(entry).collect();
    let start = Instant::now();
    assert!(ob.put(&batch));
    let b = start.elapsed();
    let start = Instant::now();
    for i in 0..n {
        ob.complete(&format!("msg_{i}"));
    }
    let del = start.elapsed() / n as u32;
    eprintln!(
        "outbox: one entry per commit {:.2} ms; 1000 entries in one commit {:.2} ms; delete per commit {:.2} ms",
        single.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        del.as_secs_f64() * 1e3
    );
}
