//! Shared by the crate's integration tests: a capture server on 127.0.0.1:0 with a
//! scripted answer, alert builders, peer lookup (required under CI=true), waiting.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sentinel_base::alert::Alert;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Script = Arc<dyn Fn(usize) -> (u16, Vec<(String, String)>) + Send + Sync>;

pub struct Capture {
    pub url: String,
    pub got: Arc<Mutex<Vec<Captured>>>,
}

/// Starts a server answering the n-th request (0-based) with `script(n)`.
pub async fn capture(
    script: impl Fn(usize) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
) -> Capture {
    let got: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let script: Script = Arc::new(script);
    let g = got.clone();
    let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
        let g = g.clone();
        let script = script.clone();
        async move {
            let n = {
                let mut v = g.lock();
                v.push(Captured {
                    path: uri.path().to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    body: body.to_vec(),
                });
                v.len() - 1
            };
            let (code, hs) = script(n);
            let mut resp = StatusCode::from_u16(code).unwrap().into_response();
            for (k, v) in hs {
                resp.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            resp
        }
    };
    let app = axum::Router::new().fallback(handler);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    Capture {
        url: format!("http://{addr}"),
        got,
    }
}

pub fn at(secs_from_now: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(secs_from_now)
}

pub fn alert(name: &str, labels: &[(&str, &str)], ends_in: i64) -> Alert {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("alertname".into(), name.into());
    Alert {
        labels: l,
        annotations: [("summary".to_string(), format!("{name} <is> & firing"))].into(),
        starts_at: at(-5),
        ends_at: at(ends_in),
        generator_url: "http://127.0.0.1:9188/rules?x=1&y=2".into(),
    }
}

// The peer lookup shared with the other test suites: under CI=true a missing peer fails
// the test naming its package; locally it is skipped.
#[path = "../../../../tests/support/peer.rs"]
mod peer_kit;

pub fn in_ci() -> bool {
    peer_kit::in_ci()
}

/// A peer program on PATH (or in /usr/sbin, /usr/bin, /usr/local/bin).
pub fn peer(name: &str) -> Option<PathBuf> {
    peer_kit::peer(name)
}

/// Whether python3 can import `m` (the PyPI package of the same name).
pub fn python_module(m: &str) -> bool {
    peer_kit::python_module(m, m)
}

/// Polls `f` until it returns Some, or panics after `limit` (generous: shared CI).
pub async fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
