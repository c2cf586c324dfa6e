//! A fake ComfyUI for the collector's integration tests, following ComfyUI 0.3.64
//! (`server.py`, `execution.py` at a125cd84) and the responses recorded in
//! `tests/fixtures/comfyui/`: `/system_stats`, `/queue`, `/history?max_items=N` (newest
//! N, in completion order; a non-integer N answers 500 text/plain), each also under
//! `/api`, optionally behind a path prefix and a bearer token. Like ComfyUI it refuses a
//! request carrying an `Origin` header (403, empty body).
//!
//! Tests script it: add history entries, clear the history (what a ComfyUI restart
//! does), and make endpoints answer 500, garbage, a truncated or huge body, or slowly.
//! A plain `std::net` server on threads: no runtime to share with the tests.

#![allow(dead_code)]

use serde::de::{MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How an endpoint misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 500 text/plain, as ComfyUI answers bad input.
    Status500,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 announcing more bytes than it sends, then closing.
    Truncated,
    /// 200 with a body of this many bytes, no Content-Length, streamed until close.
    Huge(usize),
    /// Waits this long before answering normally.
    Slow(Duration),
}

#[derive(Default)]
struct State {
    /// (prompt id, raw entry JSON), oldest first.
    history: Vec<(String, String)>,
    system_stats: String,
    queue: String,
    /// endpoint ("system_stats", "queue", "history") or "*" → fault.
    faults: Vec<(String, Fault)>,
    /// Request lines seen, with a flag for an Origin header.
    requests: Vec<String>,
    saw_origin: bool,
    /// Header lines (lower-cased names) of the last request.
    last_headers: Vec<(String, String)>,
}

pub struct FakeComfy {
    pub addr: String,
    prefix: String,
    token: Option<String>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::util::fixture(&format!("comfyui/{name}")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The entries of a recorded `/history` body, in order.
pub fn fixture_entries(name: &str) -> Vec<(String, String)> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some((k, raw)) = m.next_entry::<String, Box<RawValue>>()? {
                v.push((k, raw.get().to_string()));
            }
            Ok(v)
        }
    }
    let text = fixture(name);
    let mut de = serde_json::Deserializer::from_str(&text);
    de.deserialize_map(V).expect("fixture is a JSON object")
}

/// A history entry shaped like ComfyUI 0.3.64's: two nodes (`EmptyImage` → `SaveImage`),
/// ending with `outcome` ("success", "error", "interrupted"); an error names the
/// failing node type and exception.
pub fn entry(id: &str, outcome: &str, start_ms: i64, end_ms: i64, error: (&str, &str)) -> String {
    let start = format!(
        r#"["execution_start", {{"prompt_id": "{id}", "timestamp": {start_ms}}}], ["execution_cached", {{"nodes": [], "prompt_id": "{id}", "timestamp": {start_ms}}}]"#
    );
    let (terminal, outputs, status_str, completed) = match outcome {
        "success" => (
            format!(r#"["execution_success", {{"prompt_id": "{id}", "timestamp": {end_ms}}}]"#),
            format!(
                r#"{{"2": {{"images": [{{"filename": "gen_{id}.png", "subfolder": "", "type": "output"}}]}}}}"#
            ),
            "success",
            "true",
        ),
        "error" => (
            format!(
                r#"["execution_error", {{"prompt_id": "{id}", "node_id": "2", "node_type": "{}", "executed": ["1"], "exception_message": "boom\n", "exception_type": "{}", "traceback": ["x"], "current_inputs": {{}}, "current_outputs": {{}}, "timestamp": {end_ms}}}]"#,
                error.0, error.1
            ),
            "{}".to_string(),
            "error",
            "false",
        ),
        _ => (
            format!(
                r#"["execution_interrupted", {{"prompt_id": "{id}", "node_id": "2", "node_type": "SaveImage", "executed": ["1"], "timestamp": {end_ms}}}]"#
            ),
            "{}".to_string(),
            "error",
            "false",
        ),
    };
    format!(
        r#"{{"prompt": [0, "{id}", {{"1": {{"class_type": "EmptyImage", "inputs": {{"width": 64, "height": 64, "batch_size": 1, "color": 0}}}}, "2": {{"class_type": "SaveImage", "inputs": {{"images": ["1", 0], "filename_prefix": "gen"}}}}}}, {{}}, ["2"]], "outputs": {outputs}, "status": {{"status_str": "{status_str}", "completed": {completed}, "messages": [{start}, {terminal}]}}, "meta": {{}}}}"#
    )
}

impl FakeComfy {
    /// Starts on an ephemeral port, serving the recorded idle `/system_stats` and an
    /// empty queue and history.
    pub fn start() -> FakeComfy {
        Self::start_with("127.0.0.1:0", "", None)
    }

    /// `addr` may name a fixed port (to come back where a test left a dead one);
    /// `prefix` is a path prefix such as `/comfy`; `token` a required bearer token.
    pub fn start_with(addr: &str, prefix: &str, token: Option<&str>) -> FakeComfy {
        let listener = TcpListener::bind(addr).expect("bind fake ComfyUI");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(State {
            system_stats: fixture("get_system_stats.json"),
            queue: fixture("get_queue_empty.json"),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let fake = FakeComfy {
            addr,
            prefix: prefix.to_string(),
            token: token.map(str::to_string),
            state: state.clone(),
            stop: stop.clone(),
        };
        let prefix = fake.prefix.clone();
        let token = fake.token.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (state, prefix, token) = (state.clone(), prefix.clone(), token.clone());
                        std::thread::spawn(move || {
                            let _ = serve(s, &state, &prefix, token.as_deref());
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.prefix)
    }

    pub fn set_history(&self, entries: Vec<(String, String)>) {
        self.state.lock().unwrap().history = entries;
    }

    pub fn add(&self, id: &str, raw: String) {
        self.state
            .lock()
            .unwrap()
            .history
            .push((id.to_string(), raw));
    }

    /// What a ComfyUI restart does to the history.
    pub fn clear_history(&self) {
        self.state.lock().unwrap().history.clear();
    }

    pub fn set_queue_fixture(&self, name: &str) {
        self.state.lock().unwrap().queue = fixture(name);
    }

    /// `endpoint` is "system_stats", "queue", "history" or "*".
    pub fn fault(&self, endpoint: &str, f: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((endpoint.to_string(), f));
    }

    pub fn heal(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn saw_origin(&self) -> bool {
        self.state.lock().unwrap().saw_origin
    }

    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().last_headers.clone()
    }
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    prefix: &str,
    token: Option<&str>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (status, ctype, resp, fault) = route(state, &target, &headers, prefix, token);
        match fault {
            Some(Fault::Slow(d)) => std::thread::sleep(d),
            Some(Fault::Truncated) => {
                write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", resp.len() + 1000)?;
                w.write_all(&resp.as_bytes()[..resp.len() / 2])?;
                return Ok(());
            }
            Some(Fault::Huge(n)) => {
                write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n{{\"x\": \"")?;
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0;
                while sent < n {
                    w.write_all(&chunk)?;
                    sent += chunk.len();
                }
                w.write_all(b"\"}")?;
                return Ok(());
            }
            _ => {}
        }
        let ctype_line = if ctype.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        write!(
            w,
            "HTTP/1.1 {status}\r\n{ctype_line}Content-Length: {}\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\n",
            resp.len()
        )?;
        w.write_all(resp.as_bytes())?;
        w.flush()?;
    }
}

const JSON: &str = "application/json; charset=utf-8";

fn route(
    state: &Mutex<State>,
    target: &str,
    headers: &[(String, String)],
    prefix: &str,
    token: Option<&str>,
) -> (&'static str, &'static str, String, Option<Fault>) {
    let mut st = state.lock().unwrap();
    st.requests.push(target.to_string());
    st.last_headers = headers.to_vec();
    if headers.iter().any(|(k, _)| k == "origin") {
        st.saw_origin = true;
        return ("403 Forbidden", "", String::new(), None);
    }
    if let Some(t) = token {
        let want = format!("Bearer {t}");
        if !headers
            .iter()
            .any(|(k, v)| k == "authorization" && *v == want)
        {
            return ("401 Unauthorized", "", String::new(), None);
        }
    }
    let Some(rest) = target.strip_prefix(prefix) else {
        return (
            "404 Not Found",
            "application/octet-stream",
            String::new(),
            None,
        );
    };
    let rest = rest.strip_prefix("/api").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let endpoint = path.trim_start_matches('/');
    let fault = st
        .faults
        .iter()
        .find(|(e, _)| e == "*" || e == endpoint)
        .map(|(_, f)| f.clone());
    match fault {
        Some(Fault::Status500) => {
            return (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                "500 Internal Server Error\n\nServer got itself in trouble".into(),
                None,
            )
        }
        Some(Fault::Garbage) => return ("200 OK", JSON, "<html>not json".into(), None),
        _ => {}
    }
    let body = match endpoint {
        "system_stats" => st.system_stats.clone(),
        "queue" => st.queue.clone(),
        "history" => {
            let max = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("max_items="))
                .map(|v| v.parse::<usize>());
            let n = match max {
                None => st.history.len(),
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return (
                        "500 Internal Server Error",
                        "text/plain; charset=utf-8",
                        "500 Internal Server Error\n\nServer got itself in trouble".into(),
                        None,
                    )
                }
            };
            let skip = st.history.len().saturating_sub(n);
            let parts: Vec<String> = st.history[skip..]
                .iter()
                .map(|(id, raw)| format!("\"{id}\": {raw}"))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        _ => {
            return (
                "404 Not Found",
                "application/octet-stream",
                String::new(),
                None,
            )
        }
    };
    ("200 OK", JSON, body, fault)
}
