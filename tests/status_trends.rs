//! The status page's trends (src/http/trends.rs, src/http/sparkline.rs) through the real
//! binary in headless Chromium: after a fake ComfyUI reports a queue, the system collector
//! runs and recovery events arrive through the ingest API, the sparklines of those series
//! carry lines and values; the alert timeline shows a fired alert whose label holds
//! markup, as text; the page loads with no console message and no CSP violation; a
//! screenshot is saved. Neighbours: tests/status_page.rs (its page helpers are reused here)
//! and tests/support/chromium.rs (the Chromium kit).

use crate::fake_comfyui::FakeComfy;
use crate::status_page::{assert_security_headers, heartbeat_rules};
use crate::support::chromium::Chromium;
use crate::util::*;
use std::time::Duration;

/// Markup in a heartbeat name: it becomes the `name` label of a firing alert.
const PAYLOAD: &str = "<img src=x onerror=alert(1)><svg onload=alert(2)>";

fn recovery_events(n: usize) -> serde_json::Value {
    let one = serde_json::json!({
        "type": "operation", "operation": "load_model", "duration_seconds": 1.0,
        "overhead_seconds": 0.05, "attempts": 2, "outcome": "recovered",
        "recovery_seconds": 0.3, "error_class": "transient"
    });
    serde_json::Value::Array(vec![one; n])
}

/// The sparkline row of `panel` (its `<tr>` line) on `page`.
fn row<'a>(page: &'a str, panel: &str) -> &'a str {
    page.lines()
        .find(|l| l.starts_with(&format!("<tr><td>{panel}</td><td><svg")))
        .unwrap_or_else(|| panic!("no {panel} row:\n{page}"))
}

/// The page, once every needle is on it and each of `lined` panels draws a line (two
/// neighbouring points: one 30 s step of the 1 h window after its data began).
fn wait_page_with(s: &Sentinel, needles: &[&str], lined: &[&str], within: Duration) -> String {
    wait_text(s, "/", within, |body| {
        let missing: Vec<String> = needles
            .iter()
            .filter(|n| !body.contains(**n))
            .map(|n| n.to_string())
            .collect();
        if !missing.is_empty() {
            return missing;
        }
        lined
            .iter()
            .filter(|p| !row(body, p).contains("<path class=\"l0\" d=\"M"))
            .map(|p| format!("a line in {p}"))
            .collect()
    })
}

#[test]
fn trends_show_sparklines_and_a_timeline_with_inert_labels_in_chromium() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let comfy = FakeComfy::start();
    comfy.set_queue_fixture("get_queue_running_and_pending.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = heartbeat_rules(dir.path(), "");
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  system:\n    interval: 1s\n    timeout: 1s\n  gpu: {{ enabled: false }}\n  \
             comfyui:\n    url: \"{}\"\n    interval: 1s\n    timeout: 1s\n\
             rules:\n  files: [{}]\n  evaluation_interval: 1s\n",
            comfy.url(),
            rules.display()
        ),
    );
    s.wait_ready();
    // Two batches some seconds apart: the counters move, so their rates are not 0/0.
    post_events(&s, recovery_events(2).to_string());
    std::thread::sleep(Duration::from_secs(3));
    post_events(&s, recovery_events(3).to_string());
    post_events(
        &s,
        serde_json::json!([{"type": "heartbeat", "name": PAYLOAD, "status": "failure"}])
            .to_string(),
    );

    let page = wait_page_with(
        &s,
        &[
            "<title>ComfyUI queue depth, last 1 h: min ",
            "<title>CPU busy, last 1 h: min ",
            "<title>Memory used, last 1 h: min ",
            "<title>Recovery success ratio, last 1 h: min 100 %",
            "<title>Recovery overhead ratio, last 1 h: min ",
            "<title>HeartbeatFailed: fired 1 time, ",
            "<title>CPU busy, last 24 h: min ",
        ],
        &[
            "ComfyUI queue depth",
            "CPU busy",
            "Memory used",
            "Recovery overhead ratio",
            "Recovery success ratio",
        ],
        Duration::from_secs(150),
    );
    // Queue depth: the fixture's one running and its pending prompts, as two named lines.
    assert!(page.contains("running last <b>1</b>"), "{page}");
    assert!(page.contains("pending last <b>"), "{page}");
    // No GPU collector: that panel has no line and says so.
    assert!(
        page.contains("<title>GPU temperature, last 1 h: no data</title>"),
        "{page}"
    );

    let (status, h, _) = http_get(&s.url("/"), &[]).unwrap();
    assert_eq!(status, 200);
    assert_security_headers(&h);

    // Checked for injected markup, CSP violations and console messages.
    let dom = chromium.dump_dom(&s.url("/"));
    // The sparklines survived parsing as SVG: 2 windows x 10 panels, with drawn lines.
    assert_eq!(dom.matches("<svg class=\"spark\"").count(), 20, "{dom}");
    assert!(
        dom.matches("<path class=\"l0\" d=\"M").count() >= 5,
        "{dom}"
    );
    assert!(dom.contains("<svg class=\"track\""), "{dom}");
    // The hostile label value is text in the timeline (and in the active alerts).
    let timeline = dom
        .split("<h2 id=\"alert-timeline\">")
        .nth(1)
        .expect("timeline section in the DOM");
    assert!(
        timeline.contains("&lt;img src=x onerror=alert(1)&gt;&lt;svg onload=alert(2)&gt;"),
        "{timeline}"
    );

    // Tall enough for the whole page: the trends sit below the collectors and alerts.
    chromium.screenshot(&s.url("/"), "status-trends.png", 3200);
}
