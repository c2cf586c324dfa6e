//! The one Chromium kit: headless Chromium started with everything that would reach the
//! network or a profile turned off, the DOM after parsing (`--dump-dom`) checked for
//! injected markup, CSP violations and console messages, and a PNG screenshot to look
//! at. A missing Chromium fails the test under CI (`support::peer`), and skips it
//! elsewhere. Users: tests/status_page.rs, tests/status_trends.rs.

use crate::support::peer::peer;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

    /// The DOM after parsing, checked: a DOM came back, no injected element (see
    /// [`assert_nothing_injected`]), no CSP violation (an injected inline script or
    /// handler that got past the markup check would be refused by the CSP and logged; the
    /// inline `<style>` must not be) and nothing on the console (the sidecar's pages run
    /// no script, so anything there is an error).
    pub(crate) fn dump_dom(&self, url: &str) -> String {
        let (dom, log) = self.run(&["--dump-dom"], url);
        assert!(dom.contains("</html>"), "no DOM from chromium; log:\n{log}");
        assert_nothing_injected(&dom);
        assert!(
            !log.contains("Content Security Policy"),
            "CSP violation:\n{log}"
        );
        assert_no_console_messages(&log);
        dom
    }

    /// Saves a PNG of `url`, in a window 1280 wide and `height` tall, as `name` in
    /// Cargo's temp dir for tests (an older one removed first); checks it is a PNG, says
    /// where it is, and returns its path.
    pub(crate) fn screenshot(&self, url: &str, name: &str, height: u32) -> PathBuf {
        let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_file(&file);
        let arg = format!("--screenshot={}", file.display());
        let size = format!("--window-size=1280,{height}");
        let (_, log) = self.run(&[&arg, &size, "--hide-scrollbars"], url);
        let png =
            std::fs::read(&file).unwrap_or_else(|e| panic!("no screenshot ({e}); log:\n{log}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        eprintln!("screenshot of {url}: {}", file.display());
        file
    }
}

/// The page's console messages in Chromium's log (`--enable-logging=stderr`).
pub(crate) fn console_messages(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// A page without script logs nothing to its console; anything there is an error.
pub(crate) fn assert_no_console_messages(log: &str) {
    let console = console_messages(log);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
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

#[test]
fn console_messages_are_the_log_lines_chromium_marks_as_console() {
    let log = "[1:2:INFO:CONSOLE(3)] \"Uncaught x\", source: http://h/ (3)\n[1:2:WARNING:other.cc(9)] y\n";
    assert_eq!(console_messages(log).len(), 1);
    assert!(std::panic::catch_unwind(|| assert_no_console_messages(log)).is_err());
    assert_no_console_messages("[1:2:WARNING:other.cc(9)] y\n");
}
