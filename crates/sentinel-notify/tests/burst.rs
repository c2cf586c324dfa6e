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

/// Latency from "alert handed over" to "webhook received", ours (send → signed POST,
/// through the fsync'd outbox) against Alertmanager 0.25's (POST /api/v2/alerts →
/// webhook), both with group_wait 0s and one group per alert. Run by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load figures, run by hand"]
async fn latency_vs_alertmanager() {
    const N: usize = 30;
    let cap = capture(|_| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
route: {{ receiver: hook, group_by: ['...'], group_wait: 0s, group_interval: 1s }}
receivers: [{{ name: hook, webhooks: [{{ url: "{}/ours", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}] }}]
"#,
        cap.url
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    let mut ours = Vec::new();
    for i in 0..N {
        let before = cap.got.lock().len();
        let t = Instant::now();
        n.send(vec![alert("Lat", &[("i", &i.to_string())], 600)]);
        spin_until(|| cap.got.lock().len() > before).await;
        ours.push(t.elapsed());
    }
    let Some(am) = peer("prometheus-alertmanager") else {
        return;
    };
    let port = free_port();
    let am_cfg = dir.path().join("am.yml");
    std::fs::write(
        &am_cfg,
        format!(
            "route: {{ receiver: hook, group_by: ['...'], group_wait: 0s, group_interval: 1s }}\nreceivers: [{{ name: hook, webhook_configs: [{{ url: '{}/am' }}] }}]\n",
            cap.url
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(am)
        .arg(format!("--config.file={}", am_cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for_async_ready(&http, &format!("{base}/-/ready")).await;
    let mut theirs = Vec::new();
    for i in 0..N {
        let before = cap.got.lock().len();
        let body = serde_json::to_vec(&vec![alert("Lat", &[("i", &i.to_string())], 600)]).unwrap();
        let t = Instant::now();
        http.post(format!("{base}/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        spin_until(|| cap.got.lock().len() > before).await;
        theirs.push(t.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[v.len() * 9 / 10].as_secs_f64() * 1e3,
        )
    };
    let (o50, o90) = stats(&mut ours);
    let (t50, t90) = stats(&mut theirs);
    eprintln!("latency to webhook over {N} alerts: comfy-sentinel p50 {o50:.1} ms p90 {o90:.1} ms; alertmanager 0.25 p50 {t50:.1} ms p90 {t90:.1} ms");
}

/// Polls every 200 µs (the shared `wait_for` polls every 20 ms: too coarse here).
async fn spin_until(f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn wait_for_async_ready(http: &reqwest::Client, url: &str) {
    let start = Instant::now();
    while !http
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "peer did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
