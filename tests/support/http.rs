//! The one HTTP kit of the integration tests: the shared blocking client, JSON GETs,
//! posting an events batch, scraping `/metrics`, and the waits every test polls with
//! (`wait_until` under all of them). `crate::util` re-exports all of it, so
//! `use crate::util::*;` brings it in.

use crate::support::exposition::value;
use crate::util::Sentinel;
use std::time::{Duration, Instant};

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

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
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

/// GET `url`: the status, the body as JSON (`Null` when it is not JSON) and as text.
pub fn get_json(url: &str) -> (u16, serde_json::Value, String) {
    let (st, _, body) = http_get(url, &[]).unwrap_or_else(|e| panic!("{url}: {e}"));
    let text = String::from_utf8_lossy(&body).to_string();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (st, v, text)
}

/// [`get_json`] for an answer that must be JSON: fails, with the body, when it is not.
pub fn get_json_strict(url: &str) -> (u16, serde_json::Value) {
    let (st, v, text) = get_json(url);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        panic!("GET {url}: {e}: {text}");
    }
    (st, v)
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

/// GET `path` from the sidecar (`ours`) and the real peer (`theirs`): the statuses and
/// the JSON shapes (see [`json_shape`]) must be equal. Returns both bodies.
pub fn get_pair_same_shape(ours: &str, theirs: &str, path: &str) -> [serde_json::Value; 2] {
    let [(so, o, _), (sp, p, _)] = get_pair(ours, theirs, path);
    assert_eq!(
        (so, json_shape(&o)),
        (sp, json_shape(&p)),
        "{path}:\n{o}\n{p}"
    );
    [o, p]
}

/// GETs `url` until `found` picks something out of its JSON answer, and returns that;
/// fails after `within` saying what never showed and the last answer.
pub fn wait_json<T>(
    url: &str,
    within: Duration,
    what: &str,
    found: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    wait_until(within, || {
        let (_, v, text) = get_json(url);
        found(&v).ok_or_else(|| format!("{url}: {what} never showed; last answer: {text}"))
    })
}

/// POSTs a JSON events batch to the sentinel's ingest API (`/api/v1/events`); fails
/// unless it is taken (200). Returns the answer's body.
pub fn post_events(s: &Sentinel, batch: impl AsRef<[u8]>) -> Vec<u8> {
    let (status, _, body) = http_request(
        "POST",
        &s.url("/api/v1/events"),
        &[("Content-Type", "application/json")],
        batch.as_ref(),
    )
    .expect("POST /api/v1/events");
    assert_eq!(
        status,
        200,
        "ingest refused: {status} {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// Scrapes /metrics as text.
pub fn scrape(s: &Sentinel) -> String {
    let (status, _, body) = http_get(&s.url("/metrics"), &[]).expect("scrape");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8 exposition")
}

/// The one poll loop: calls `probe` every 100 ms until it gives `Ok`, and returns that.
/// After `within` it fails with the last `Err` (what is still missing, and whatever the
/// probe adds to say why).
pub fn wait_until<T>(within: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "not within {within:?}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs `path` from the sentinel until `missing(body)` is empty, and returns that body;
/// every answer must be a 200 in UTF-8. Fails after `within` with what is missing, the
/// last body and the sentinel's log.
pub fn wait_text(
    s: &Sentinel,
    path: &str,
    within: Duration,
    missing: impl Fn(&str) -> Vec<String>,
) -> String {
    wait_until(within, || {
        let (status, _, body) =
            http_get(&s.url(path), &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let text = String::from_utf8(body).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {text}");
        let missing = missing(&text);
        if missing.is_empty() {
            Ok(text)
        } else {
            Err(format!(
                "{path} never showed {missing:?}:\n{text}\nlog:\n{}",
                s.logs()
            ))
        }
    })
}

/// Scrapes /metrics until `missing(text)` is empty, and returns that scrape (see
/// [`wait_text`]).
pub fn wait_scrape(
    s: &Sentinel,
    within: Duration,
    missing: impl Fn(&str) -> Vec<String>,
) -> String {
    wait_text(s, "/metrics", within, missing)
}

/// Scrapes until every needle is in the text (at most 30 s), and returns it.
pub fn wait_for(s: &Sentinel, needles: &[&str]) -> String {
    wait_scrape(s, Duration::from_secs(30), |text| {
        needles
            .iter()
            .filter(|n| !text.contains(**n))
            .map(|n| n.to_string())
            .collect()
    })
}

/// Scrapes until the text contains `needle` (at most 30 s), and returns it.
pub fn scrape_until(s: &Sentinel, needle: &str) -> String {
    wait_for(s, &[needle])
}

/// Scrapes until `series` (a name with its labels, as [`value`] reads it) is `want`
/// (at most 30 s), and returns that scrape.
pub fn wait_value(s: &Sentinel, series: &str, want: f64) -> String {
    wait_value_where(s, series, Duration::from_secs(30), |v| v == want)
}

/// Scrapes until `series` has a value `ok` accepts, within `within`.
pub fn wait_value_where(
    s: &Sentinel,
    series: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> String {
    wait_scrape(s, within, |text| match value(text, series) {
        Some(v) if ok(v) => vec![],
        got => vec![format!("{series} (now {got:?})")],
    })
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

/// The waits give what they waited for and, when it never comes, fail naming it.
#[test]
fn wait_until_returns_the_value_or_fails_with_what_is_missing() {
    let mut n = 0;
    let got = wait_until(Duration::from_secs(5), || {
        n += 1;
        if n < 3 {
            Err(format!("only {n}"))
        } else {
            Ok(n)
        }
    });
    assert_eq!(got, 3);
    let why = std::panic::catch_unwind(|| {
        wait_until(Duration::from_millis(250), || -> Result<(), String> {
            Err("the marker".into())
        })
    })
    .expect_err("a probe that never succeeds fails the wait");
    let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(why.contains("the marker"), "{why}");
}
