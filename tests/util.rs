//! Helpers shared by the integration tests: start the real binary on an ephemeral port,
//! scrape it, find peer tools (promtool, node_exporter, ...).

#![allow(dead_code)]

pub use crate::support::peer::{in_ci, peer};
use crate::support::process::KillOnDrop;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_comfy-sentinel"))
}

/// The repository root (for fixtures and shipped files).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// A running comfy-sentinel, killed on drop.
pub struct Sentinel {
    pub child: KillOnDrop,
    pub addr: String,
    pub stderr: mpsc::Receiver<String>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sentinel {
    /// Starts `comfy-sentinel run` with the given extra arguments on 127.0.0.1:0 and
    /// waits until it logs its address.
    pub fn start(args: &[&str]) -> Sentinel {
        Self::start_with_env(args, &[])
    }

    /// Starts it with a config file in `dir`: `data_dir` under `dir`, then `config`.
    pub fn start_in(dir: &Path, config: &str) -> Sentinel {
        let cfg = temp_file(
            dir,
            "config.yaml",
            &format!("data_dir: {:?}\n{config}", dir.join("data")),
        );
        Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Sentinel {
        let mut cmd = Sentinel::command();
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Sentinel::spawn(cmd)
    }

    /// `comfy-sentinel run` logging at info level without colours, for `spawn` once the
    /// caller has added its arguments (`--listen` among them).
    pub fn command() -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("run").env("RUST_LOG", "info").env("NO_COLOR", "1");
        cmd
    }

    /// Spawns `cmd` (from `command`) and waits until it logs its address; an address
    /// bound to all interfaces is reached on loopback.
    pub fn spawn(mut cmd: Command) -> Sentinel {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start comfy-sentinel");
        let mut child = KillOnDrop(child);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "comfy-sentinel did not start; log: {:?}",
                    log.lock().unwrap()
                )
            });
            if let Some(i) = line.find("listen=") {
                let rest = &line[i + "listen=".len()..];
                let word = rest.split_whitespace().next().unwrap().trim_matches('"');
                let mut addr: std::net::SocketAddr = word
                    .parse()
                    .unwrap_or_else(|e| panic!("listen={word}: {e}"));
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                break addr.to_string();
            }
        };
        Sentinel {
            child,
            addr,
            stderr: rx,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until /readyz answers 200 (every collector ran once).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http_get(&self.url("/readyz"), &[]) {
                if r.0 == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "comfy-sentinel never became ready; log: {:?}",
            self.log.lock().unwrap()
        );
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal (e.g. "HUP", "TERM").
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

/// Status, lower-cased headers, body.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// The blocking HTTP/1.1 client every test shares: no redirects followed, no proxy, no
/// transparent decompression (tests check `Content-Encoding` themselves), and no pooled
/// connections (each request gets its own, as a scraper's would). Tests that must send
/// malformed or slow bytes on purpose write to a socket themselves (`hardening_http`).
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .no_gzip()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client")
    })
}

/// A blocking request for tests: returns (status, headers, body). Errors (refused,
/// reset, timed out) come back as `io::Error`s.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut req = client().request(
        reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?,
        url,
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // A body (and its Content-Length, 0 included) for every method that carries one.
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        req = req.body(body.to_vec());
    }
    let resp = req.send().map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let hdrs = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.bytes().map_err(std::io::Error::other)?.to_vec();
    Ok((status, hdrs, body))
}

pub fn http_get(url: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
    http_request("GET", url, headers, b"")
}

#[test]
fn a_missing_peer_fails_under_ci_naming_its_package_and_skips_elsewhere() {
    let why = std::panic::catch_unwind(|| {
        crate::support::peer::find_peer("prometheus-no-such-peer", true)
    })
    .expect_err("a missing peer under CI fails the test");
    let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        why.contains("prometheus-no-such-peer") && why.contains("scripts/test.sh"),
        "{why}"
    );
    assert_eq!(
        crate::support::peer::peer_package("amtool"),
        "Debian package prometheus-alertmanager"
    );
    assert_eq!(
        crate::support::peer::find_peer("prometheus-no-such-peer", false),
        None
    );
    assert!(crate::support::peer::find_peer("sh", true).is_some());
    if crate::support::peer::find_peer("python3", false).is_some() {
        let why = std::panic::catch_unwind(|| {
            crate::support::peer::find_python_module("no_such_module_x", "no-such", true)
        })
        .expect_err("a missing python module under CI fails the test");
        let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(why.contains("PyPI package no-such"), "{why}");
        assert!(!crate::support::peer::find_python_module(
            "no_such_module_x",
            "no-such",
            false
        ));
        assert!(crate::support::peer::find_python_module("json", "-", true));
    }
}

/// The shared client answers what the server sent: a redirect is not followed, a gzip
/// body stays compressed with its `Content-Encoding`, and an empty POST carries
/// `Content-Length: 0`.
#[test]
fn http_client_returns_redirects_and_encodings_as_sent() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for answer in [
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nxyz",
        ] {
            let (mut c, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            heads.push(String::from_utf8_lossy(&head).to_ascii_lowercase());
            c.write_all(answer.as_bytes()).expect("answer");
        }
        heads
    });
    let (status, h, _) = http_request("POST", &format!("http://{addr}/x"), &[], b"").unwrap();
    assert_eq!((status, header(&h, "location")), (302, Some("/elsewhere")));
    let (status, h, body) = http_get(&format!("http://{addr}/y"), &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(body, b"xyz");
    let heads = server.join().expect("server");
    assert!(heads[0].starts_with("post /x ") && heads[0].contains("content-length: 0"));
    assert!(!heads[1].contains("accept-encoding"), "{}", heads[1]);
}

/// `comfy-sentinel check --config cfg` on a config it must refuse: asserts exit code 2
/// and returns its stderr.
pub fn check_refuses(cfg: &Path) -> String {
    let out = Command::new(bin())
        .args(["check", "--config", cfg.to_str().expect("utf-8 path")])
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

/// GET `url`: the status, the body as JSON (`Null` when it is not JSON) and as text.
pub fn get_json(url: &str) -> (u16, serde_json::Value, String) {
    let (st, _, body) = http_get(url, &[]).unwrap_or_else(|e| panic!("{url}: {e}"));
    let text = String::from_utf8_lossy(&body).to_string();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (st, v, text)
}

/// GET `path` from two servers, the sidecar (`ours`) and the real peer (`theirs`): both
/// answers as [`get_json`] gives them.
pub fn get_pair(ours: &str, theirs: &str, path: &str) -> [(u16, serde_json::Value, String); 2] {
    [
        get_json(&format!("{ours}{path}")),
        get_json(&format!("{theirs}{path}")),
    ]
}

/// The value's shape: objects keep their keys (each value's shape), arrays their first
/// element's shape, scalars their JSON type.
pub fn json_shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json_shape(v))).collect())
        }
        Value::Array(a) => Value::Array(a.first().map(json_shape).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

/// Every byte but the unreserved ones percent-encoded, for a query parameter.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Scrapes /metrics as text.
pub fn scrape(s: &Sentinel) -> String {
    let (status, _, body) = http_get(&s.url("/metrics"), &[]).expect("scrape");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8 exposition")
}

/// Scrapes /metrics until the text contains `needle` (at most 20 s), and returns it.
pub fn scrape_until(s: &Sentinel, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = scrape(s);
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} within 20 s in:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs a command that must succeed; panics with its output otherwise.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `content` to a fresh temp file with the given name and returns its path.
pub fn temp_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}
