//! The status page at `/` as a browser sees it: the real binary, loaded in headless
//! Chromium (`--dump-dom` for the DOM after parsing, `--screenshot` for a PNG to look at).
//! Hostile strings reach the page through the config file's path and a refused reload's
//! error (today) and through an ingested heartbeat's name turned into an alert label (once
//! the ingest API and the rule engine are on the branch); none may become an element or
//! an attribute. Neighbours: `src/http/status.rs` (the renderer, with its own unit tests),
//! `common_headers` in `src/http/mod.rs` (the CSP checked here).

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Closes the attribute and the element, then opens a script and an image with a handler.
const EVIL_DQ: &str = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
/// Breaks out of a single-quoted attribute into an event handler.
const EVIL_SQ: &str = "' onmouseover='alert(3)' x='";

/// One element of a serialized DOM: its name and attribute names, lower-cased.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<String>,
}

/// Elements of serialized HTML (Chromium's `--dump-dom`), honouring quoted attribute
/// values, so text that merely looks like markup is not counted and markup hidden in an
/// attribute value is not missed.
fn elements(html: &str) -> Vec<Element> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' || i + 1 >= b.len() || !b[i + 1].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        i += 1;
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' && b[i] != b'/' {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                break;
            }
            let a = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>') {
                i += 1;
            }
            attrs.push(html[a..i].to_ascii_lowercase());
            if i < b.len() && b[i] == b'=' {
                i += 1;
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    i += 1;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                }
            }
        }
        out.push(Element { name, attrs });
    }
    out
}

/// Fails on any script-capable element or any event-handler attribute. The trends'
/// own sparklines (`<svg ... role="img">`, src/http/sparkline.rs) are the one `svg` allowed.
pub(crate) fn assert_nothing_injected(dom: &str) {
    for e in elements(dom) {
        let own_svg = e.name == "svg" && e.attrs.iter().any(|a| a == "role");
        assert!(
            own_svg
                || !matches!(
                    e.name.as_str(),
                    "script" | "img" | "iframe" | "object" | "embed" | "svg" | "form" | "base"
                ),
            "injected <{}> in DOM:\n{dom}",
            e.name
        );
        for a in &e.attrs {
            assert!(
                !a.starts_with("on"),
                "injected attribute {a} on <{}> in DOM:\n{dom}",
                e.name
            );
        }
    }
}

/// Headless Chromium with everything that would reach the network or a profile turned off.
pub(crate) struct Chromium {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromium {
    pub(crate) fn find() -> Option<Chromium> {
        let bin = peer("chromium")?;
        Some(Chromium {
            bin,
            profile: tempfile::tempdir().expect("tempdir"),
        })
    }

    /// Runs Chromium with `extra` arguments on `url`; returns (stdout, stderr).
    pub(crate) fn run(&self, extra: &[&str], url: &str) -> (String, String) {
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Read both pipes on threads so a chatty stderr cannot block the child.
        let mut so = child.stdout.take().expect("piped stdout");
        let mut se = child.stderr.take().expect("piped stderr");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut so, &mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut se, &mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().expect("wait chromium").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish in 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (
            out.join().expect("stdout reader"),
            err.join().expect("stderr reader"),
        )
    }

    /// The DOM after parsing, checked for injected elements and then for CSP violations
    /// (an injected inline script or handler that got past the markup check would be
    /// refused by the CSP and logged; the inline `<style>` must not be).
    pub(crate) fn dump_dom(&self, url: &str) -> String {
        let (dom, log) = self.run(&["--dump-dom"], url);
        assert!(dom.contains("</html>"), "no DOM from chromium; log:\n{log}");
        assert_nothing_injected(&dom);
        assert!(
            !log.contains("Content Security Policy"),
            "CSP violation:\n{log}"
        );
        dom
    }

    pub(crate) fn screenshot(&self, url: &str, file: &Path) {
        let arg = format!("--screenshot={}", file.display());
        let (_, log) = self.run(&[&arg, "--window-size=1280,900", "--hide-scrollbars"], url);
        let png =
            std::fs::read(file).unwrap_or_else(|e| panic!("no screenshot ({e}); log:\n{log}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    }
}

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

/// The status page, once `missing(page)` finds nothing missing; fails after `within`
/// with what is still missing, the page and the log.
pub fn wait_page(s: &Sentinel, within: Duration, missing: impl Fn(&str) -> Vec<String>) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (_, _, body) = http_get(&s.url("/"), &[]).expect("GET /");
        let body = String::from_utf8(body).expect("utf-8 page");
        let missing = missing(&body);
        if missing.is_empty() {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "page never showed {missing:?}:\n{body}\nlog:\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    wait_page(s, Duration::from_secs(60), |body| {
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

    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&png);
    chromium.screenshot(&s.url("/"), &png);
    eprintln!("status page screenshot: {}", png.display());
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
    let cfg = temp_file(
        dir.path(),
        "sentinel.yaml",
        &format!(
            "data_dir: {}\ncollectors:\n  system:\n    interval: 1s\n    timeout: 1s\nrules:\n  files: [{}]\n  evaluation_interval: 1s\n",
            dir.path().join("data").display(),
            rules.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    s.wait_ready();
    let payload = "<img src=x onerror=alert(1)>";
    let event = serde_json::json!([{"type": "heartbeat", "name": payload, "status": "failure"}]);
    let (status, _, body) = http_request(
        "POST",
        &s.url("/api/v1/events"),
        &[("content-type", "application/json")],
        event.to_string().as_bytes(),
    )
    .unwrap();
    assert!(
        (200..300).contains(&status),
        "ingest refused: {status} {}",
        String::from_utf8_lossy(&body)
    );
    wait_page_contains(&s, "HeartbeatFailed");
    let (_, h, _) = http_get(&s.url("/"), &[]).unwrap();
    assert_security_headers(&h);

    let dom = chromium.dump_dom(&s.url("/"));
    assert!(dom.contains("HeartbeatFailed"), "{dom}");
    assert!(dom.contains("critical"), "{dom}");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page-alert.png");
    chromium.screenshot(&s.url("/"), &png);
}

#[test]
fn element_scanner_sees_markup_only_outside_text_and_attribute_values() {
    let html = "<p title=\"a<img src=x onerror=y>\">&lt;script&gt; <b onclick='x'>x</b></p>";
    let e = elements(html);
    let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["p", "b"]);
    assert_eq!(e[0].attrs, ["title"]);
    assert_eq!(e[1].attrs, ["onclick"]);
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
    let cfg = temp_file(
        dir.path(),
        "sentinel.yaml",
        &format!(
            "data_dir: {}\ncollectors:\n  system: {{ enabled: false }}\n  comfyui: {{ url: 'http://127.0.0.1:9', interval: 1s }}\n\
             rules:\n  files: [{}]\n  evaluation_interval: 1s\n\
             external_labels: {{ instance: render-node-3 }}\n\
             notify:\n  route: {{ receiver: hook }}\n  receivers:\n    - name: hook\n      \
             webhooks: [{{ url: 'http://127.0.0.1:9/hook', secret: 'status-page-test-secret-0123456789' }}]\n",
            dir.path().join("data").display(),
            rules.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")]);
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
