//! The status page at `/` as a browser sees it: the real binary, loaded in headless
//! Chromium (`--dump-dom` for the DOM after parsing, `--screenshot` for a PNG to look at).
//! Hostile strings reach the page through the config file's path and a refused reload's
//! error (today) and through an ingested heartbeat's name turned into an alert label (once
//! the ingest API and the rule engine are on the branch); none may become an element or
//! an attribute. Neighbours: `src/http/status.rs` (the renderer, with its own unit tests),
//! `common_headers` in `src/http/mod.rs` (the CSP checked here).

use crate::support::chromium::Chromium;
use crate::util::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Closes the attribute and the element, then opens a script and an image with a handler.
const EVIL_DQ: &str = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
/// Breaks out of a single-quoted attribute into an event handler.
const EVIL_SQ: &str = "' onmouseover='alert(3)' x='";

/// The security headers `common_headers` sets, on the page itself.
pub(crate) fn assert_security_headers(h: &[(String, String)]) {
    assert!(header(h, "content-type").is_some_and(|v| v.starts_with("text/html")));
    assert_eq!(header(h, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(h, "x-frame-options"), Some("DENY"));
    let csp = header(h, "content-security-policy").expect("CSP header");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'none'"), "{csp}");
    assert!(directives.contains(&"frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script allowance: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert!(!csp.contains('*'), "no wildcard source: {csp}");
}

/// A rule file in `dir` whose `HeartbeatFailed` alert fires (critical) while a heartbeat
/// has failed, its rule ending with the lines `extra`.
pub fn heartbeat_rules(dir: &Path, extra: &str) -> PathBuf {
    let rule = "groups:\n  - name: heartbeat\n    rules:\n      - alert: HeartbeatFailed\n        \
         expr: sentinel_heartbeat_last_failure_timestamp_seconds > 0\n        \
         labels: {severity: critical}\n";
    temp_file(dir, "heartbeat.yaml", &format!("{rule}{extra}"))
}

fn wait_page_contains(s: &Sentinel, needle: &str) -> String {
    wait_text(s, "/", Duration::from_secs(60), |body| {
        if body.contains(needle) {
            vec![]
        } else {
            vec![needle.to_string()]
        }
    })
}

/// Collector names as `/metrics` reports them.
fn collectors(s: &Sentinel) -> Vec<String> {
    scrape(s)
        .lines()
        .filter_map(|l| l.strip_prefix("sentinel_collector_success{collector=\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn page_in_headless_chromium_shows_state_and_keeps_hostile_text_inert() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The config's own path carries both payloads (a file name may hold any byte but '/').
    let name = format!("cfg{}{}.yaml", EVIL_DQ.replace('/', "_"), EVIL_SQ);
    let cfg = temp_file(
        dir.path(),
        &name,
        &format!(
            "data_dir: {}\ncollectors:\n  system:\n    interval: 1s\n    timeout: 1s\n",
            dir.path().join("data").display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    s.wait_ready();

    // A refused reload: its error names an unknown key holding markup.
    std::fs::write(&cfg, format!("\"{}\": 1\n", EVIL_DQ.replace('"', "\\\""))).unwrap();
    let (status, _, _) = http_request("POST", &s.url("/-/reload"), &[], b"").unwrap();
    assert_eq!(status, 500, "the broken config is refused");
    wait_page_contains(&s, "failed</span>");

    let (status, h, _) = http_get(&s.url("/"), &[]).unwrap();
    assert_eq!(status, 200);
    assert_security_headers(&h);

    let dom = chromium.dump_dom(&s.url("/"));
    // Build info, each collector, the links.
    assert!(
        dom.contains(&format!(
            "comfy-sentinel <span class=\"muted\">{}",
            env!("CARGO_PKG_VERSION")
        )),
        "{dom}"
    );
    assert!(dom.contains("<dt>uptime</dt>"), "{dom}");
    assert!(
        dom.contains("<dt>last reload</dt><dd><span class=\"bad\">failed</span>"),
        "{dom}"
    );
    let names = collectors(&s);
    assert!(names.iter().any(|n| n == "system"), "{names:?}");
    for n in &names {
        assert!(
            dom.contains(&format!("<tr><td>{n}</td>")),
            "collector {n} missing:\n{dom}"
        );
    }
    for link in ["/metrics", "/healthz", "/readyz", "/api/v1/alerts"] {
        assert!(
            dom.contains(&format!("<a href=\"{link}\">")),
            "link {link} missing:\n{dom}"
        );
    }
    // The payloads are on the page, as text.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;_script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("' onmouseover='alert(3)' x='"), "{dom}");
    // No rule engine or dispatcher registered on this build: their sections say so.
    assert!(
        dom.contains("<h2 id=\"alerts\">Active alerts</h2>"),
        "{dom}"
    );
    assert!(
        dom.contains("<h2 id=\"notifications\">Notifications</h2>"),
        "{dom}"
    );

    chromium.screenshot(&s.url("/"), "status-page.png", 900);
}

#[test]
fn firing_alert_with_a_malicious_label_stays_text_in_chromium() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = heartbeat_rules(
        dir.path(),
        "        annotations: {summary: \"job {{ $labels.name }} failed\"}\n",
    );
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  system:\n    interval: 1s\n    timeout: 1s\nrules:\n  files: [{}]\n  evaluation_interval: 1s\n",
            rules.display()
        ),
    );
    s.wait_ready();
    let payload = "<img src=x onerror=alert(1)>";
    let event = serde_json::json!([{"type": "heartbeat", "name": payload, "status": "failure"}]);
    post_events(&s, event.to_string());
    wait_page_contains(&s, "HeartbeatFailed");
    let (_, h, _) = http_get(&s.url("/"), &[]).unwrap();
    assert_security_headers(&h);

    let dom = chromium.dump_dom(&s.url("/"));
    assert!(dom.contains("HeartbeatFailed"), "{dom}");
    assert!(dom.contains("critical"), "{dom}");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    chromium.screenshot(&s.url("/"), "status-page-alert.png", 900);
}

/// Issue 13 §7, through the real binary: ComfyUI unreachable shows as "down" with the
/// reason (not "ok"), a firing alert shows its value, the endpoint list holds the query
/// API, and the delivery-duration histogram exists before the first delivery.
#[test]
fn page_tells_the_truth_about_comfyui_alert_values_and_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = temp_file(
        dir.path(),
        "down.yaml",
        "groups:\n  - name: g\n    rules:\n      - alert: ComfyuiUnreachable\n        \
         expr: (1 - comfyui_up) * 7 > 0\n        labels: {severity: critical}\n        \
         annotations: {summary: \"ComfyUI on {{ $labels.instance }} is down\"}\n",
    );
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  system: {{ enabled: false }}\n  comfyui: {{ url: 'http://127.0.0.1:9', interval: 1s }}\n\
             rules:\n  files: [{}]\n  evaluation_interval: 1s\n\
             external_labels: {{ instance: render-node-3 }}\n\
             notify:\n  route: {{ receiver: hook }}\n  receivers:\n    - name: hook\n      \
             webhooks: [{{ url: 'http://127.0.0.1:9/hook', secret: 'status-page-test-secret-0123456789' }}]\n",
            rules.display()
        ),
    );
    s.wait_ready();
    // The active-alerts row (the alert timeline's row for it starts alike).
    let active = "ComfyuiUnreachable</td><td class=\"bad\">critical</td>";
    let page = wait_page_contains(&s, active);
    let row = page
        .lines()
        .find(|l| l.starts_with("<tr><td>comfyui</td>"))
        .unwrap_or_else(|| panic!("no comfyui row:\n{page}"));
    assert!(row.contains("<td class=\"bad\">down</td>"), "{row}");
    assert!(row.contains("127.0.0.1:9"), "{row}");
    assert!(row.contains("/system_stats: connect"), "{row}");
    let alert = page.lines().find(|l| l.contains(active)).unwrap();
    assert!(alert.contains("<td>7</td>"), "the value, not —: {alert}");
    assert!(alert.contains("render-node-3"), "{alert}");
    assert!(
        alert.contains("ComfyUI on render-node-3 is down"),
        "{alert}"
    );
    assert!(page.contains("<a href=\"/api/v1/query\">/api/v1/query</a>"));
    let metrics = scrape(&s);
    assert!(
        metrics.contains("sentinel_notification_duration_seconds_count{receiver=\"hook\"} 0"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("notification"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
