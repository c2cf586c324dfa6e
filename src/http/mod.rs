//! The HTTP server. Routes:
//! - `GET /metrics` — the pre-encoded snapshot; OpenMetrics when the scraper asks, gzip when asked
//! - `GET /healthz` — the process is alive
//! - `GET /readyz` — config loaded and every collector has run once
//! - `GET /` — the status page (`status.rs`)
//! - `POST /-/reload` — re-read the config (as SIGHUP does)
//! - `/api/v1/query`, `/api/v1/query_range`, `/api/v1/series`, ... — Prometheus's HTTP
//!   API (`prom_api`)
//! - `/api/v2/alerts`, `/api/v2/silences`, `/api/v2/silence/{id}`, ... — Alertmanager's
//!   API v2 (`am_api`)
//! - `/api/v1/alerts/history`, `/api/v1/notifications` — see `notify_api`
//! - `POST /api/v1/events` — the events ingest API (`ingest.rs`; domain in `crate::ingest`), with its own auth
//!
//! Every route sits behind optional basic/bearer auth and optional TLS (`web:`). Without
//! `web:` credentials, the routes that change state (silences, reload) answer loopback
//! clients only (403 for the rest), as the ingest API does; reads stay open.
//! Handlers only read state; none collects or does I/O on the scrape path.
//!
//! Connections (`serve`): a deadline for the request head and for the whole body, a
//! cap on open connections that sheds the slowest sender first (`conns.rs`), backoff
//! when accept runs out of file descriptors, and a plain-text 400 for plain HTTP sent
//! to the TLS port.

mod am_api;
mod conns;
mod ingest;
mod notify_api;
mod params;
mod prom_api;
mod sparkline;
pub mod status;
pub(crate) mod trends;

pub use conns::{is_body_timeout, BodyTimeout};
pub use prom_api::QueryGate;

use crate::app::App;
use crate::config::auth::{authorized, is_loopback};
use crate::config::WebConfig;
use crate::metrics::encode::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::metrics::registry::Registry;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use hyper::body::Body as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One route: the router mounts `handler` at `path`, and the status page lists
/// `methods`, `path` and `about` from the same entry, so the two cannot drift apart.
pub struct Route {
    /// The methods `handler` answers, as listed (`GET`, `GET, POST`).
    pub methods: &'static str,
    pub path: &'static str,
    /// What it is for, one line.
    pub about: &'static str,
    pub handler: MethodRouter<Arc<App>>,
}

impl Route {
    pub fn new(
        methods: &'static str,
        path: &'static str,
        about: &'static str,
        handler: MethodRouter<Arc<App>>,
    ) -> Route {
        Route {
            methods,
            path,
            about,
            handler,
        }
    }
}

/// The routes behind the `web:` auth layer that this module serves.
fn core_routes() -> Vec<Route> {
    vec![
        Route::new(
            "GET",
            "/metrics",
            "Prometheus exposition (OpenMetrics when asked)",
            get(metrics),
        ),
        Route::new("GET", "/healthz", "liveness", get(healthz)),
        Route::new(
            "GET",
            "/readyz",
            "readiness: every collector has run once",
            get(readyz),
        ),
        Route::new("GET", "/", "this status page", get(index)),
        Route::new(
            "POST",
            "/-/reload",
            "re-read the config (as SIGHUP)",
            post(reload),
        ),
    ]
}

/// The routes outside the `web:` auth layer (they authenticate on their own).
fn ingest_routes() -> Vec<Route> {
    vec![Route::new(
        "POST",
        ingest::PATH,
        "events ingest (its own auth: ingest.tokens)",
        post(ingest::handle),
    )]
}

/// The one list of routes: what [`router`] mounts and the status page lists.
pub fn routes() -> Vec<Route> {
    let mut all = core_routes();
    all.extend(notify_api::routes());
    all.extend(prom_api::routes());
    all.extend(am_api::routes());
    all.extend(ingest_routes());
    all
}

fn mount(routes: Vec<Route>) -> Router<Arc<App>> {
    routes
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
}

/// All routes, with auth and common headers applied.
pub fn router(app: Arc<App>) -> Router {
    let mut authed = core_routes();
    authed.extend(notify_api::routes());
    authed.extend(prom_api::routes());
    authed.extend(am_api::routes());
    mount(authed)
        .fallback(not_found)
        // Bodies the extractors buffer (the query form); silences and events cap their own.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        // After the auth layer: the ingest API authenticates on its own (ingest/auth.rs).
        .merge(mount(ingest_routes()))
        .layer(middleware::from_fn(common_headers))
        .with_state(app)
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn common_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// Largest body the router's extractors buffer (the PromQL form of `POST /api/v1/query`).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// POST routes that only read (PromQL over POST, as Prometheus allows): open like GET.
const READ_ONLY_POSTS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
];

/// Whether a request may change state (silences, reload, any admin endpoint to come):
/// every method but GET, HEAD and OPTIONS, except the read-only POST routes.
fn is_mutating(method: &Method, path: &str) -> bool {
    !(matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && READ_ONLY_POSTS.contains(&path)))
}

/// Whether the request came from a loopback address (the peer socket, never a
/// forwarded header); unknown peers are not.
fn from_loopback(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| is_loopback(c.0.ip()))
}

/// Checks basic or bearer credentials (constant-time) when the config asks for them;
/// without any, keeps the state-changing routes to loopback clients.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let creds = app.credentials();
    if !creds.required() {
        if is_mutating(req.method(), req.uri().path()) && !from_loopback(&req) {
            let msg = format!(
                "{} {} changes state: without web: credentials only loopback clients may call it (set web.basic_auth or web.bearer_token to allow it from the network)\n",
                req.method(),
                req.uri().path()
            );
            return (StatusCode::FORBIDDEN, msg).into_response();
        }
        return next.run(req).await;
    }
    if authorized(&creds, req.headers()) {
        return next.run(req).await;
    }
    let mut resp = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    let challenge = if creds.basic.is_some() {
        "Basic realm=\"comfy-sentinel\", charset=\"UTF-8\""
    } else {
        "Bearer realm=\"comfy-sentinel\""
    };
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

/// A q-value as RFC 9110 writes it (`0`, `0.5`, `1.000`, ...); anything else is
/// None, and counts as not acceptable.
fn parse_q(v: &str) -> Option<f32> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if !matches!(int, "0" | "1")
        || frac.len() > 3
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (int == "1" && frac.bytes().any(|b| b != b'0'))
    {
        return None;
    }
    v.parse().ok()
}

/// The elements of every `name` header: (lower-cased value, q-value; 1 when absent,
/// 0 when malformed).
fn weighted(headers: &HeaderMap, name: header::HeaderName) -> Vec<(String, f32)> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| {
            let mut it = part.split(';');
            let value = it.next()?.trim().to_ascii_lowercase();
            if value.is_empty() {
                return None;
            }
            let mut q = 1.0;
            for p in it {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = parse_q(v).unwrap_or(0.0);
                    }
                }
            }
            Some((value, q))
        })
        .collect()
}

/// Whether the client prefers OpenMetrics (Prometheus sends it first in its Accept
/// list): it is acceptable (q > 0) and weighted at least as high as plain text.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let accept = weighted(headers, header::ACCEPT);
    let best = |mime: &str| {
        accept
            .iter()
            .filter(|(v, _)| v == mime)
            .map(|(_, q)| *q)
            .fold(None, |m: Option<f32>, q| Some(m.map_or(q, |m| m.max(q))))
    };
    let om = best("application/openmetrics-text").unwrap_or(0.0);
    om > 0.0 && om >= best("text/plain").unwrap_or(0.0)
}

/// Whether gzip is acceptable: named with q > 0, or covered by `*` with q > 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let enc = weighted(headers, header::ACCEPT_ENCODING);
    let q = |name: &str| {
        enc.iter()
            .filter(|(v, _)| v == name)
            .map(|(_, q)| *q)
            .reduce(f32::max)
    };
    q("gzip").or_else(|| q("*")).is_some_and(|q| q > 0.0)
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let snap = app.exposition.current();
    let om = wants_openmetrics(&headers);
    let gzip = accepts_gzip(&headers);
    let body = snap.body(om, gzip);
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if om {
            OPENMETRICS_CONTENT_TYPE
        } else {
            TEXT_CONTENT_TYPE
        }),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    resp
}

async fn healthz() -> impl IntoResponse {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Ok(()) => "config reloaded\n".into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

async fn index(State(app): State<Arc<App>>) -> Response {
    // The page runs the trend queries: CPU work bounded by `query.timeout`, kept off
    // the runtime's workers so other requests are served meanwhile.
    match tokio::task::spawn_blocking(move || status::page(&app)).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status page rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "status page rendering failed\n",
            )
                .into_response()
        }
    }
}

/// Reads and throws away a refused request's body (at most 8 MiB, for at most 2 s), so
/// that a client still sending it sees the answer rather than a reset connection.
pub(crate) async fn discard_body(mut body: Body) {
    use http_body_util::BodyExt;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut left = 8usize << 20;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, body.frame()).await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        left = left.saturating_sub(n);
        if left == 0 {
            break;
        }
    }
}

/// Whether an accept error means the process (or system) is out of file descriptors.
fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The answer to a request whose body outlived `web.request_body_timeout`.
fn body_timeout_response() -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        "request body not received within web.request_body_timeout\n",
    )
        .into_response()
}

/// Runs one request: hands the router the peer address and a body with the whole-body
/// deadline, tracks the connection's phase, and turns an expired body into 408 and a
/// closed connection.
async fn handle(
    router: Router,
    peer: SocketAddr,
    conn: Arc<conns::Conn>,
    body_timeout: Duration,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    conn.enter(if body.is_end_stream() {
        conns::BUSY
    } else {
        conns::BODY
    });
    let timed = conns::TimedBody::new(body, body_timeout, Some(conn.clone()));
    let expired = timed.expired.clone();
    let req = Request::from_parts(parts, Body::new(timed));
    let mut resp = tower::ServiceExt::oneshot(router, req)
        .await
        .unwrap_or_else(|e| match e {});
    conn.enter(conns::BUSY);
    if expired.load(Ordering::Relaxed) {
        if resp.status() != StatusCode::REQUEST_TIMEOUT {
            resp = body_timeout_response();
        }
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| {
        Body::new(conns::TrackedBody {
            inner: b,
            conn: conn.clone(),
        })
    })
}

/// What Go's server answers to plain HTTP on a TLS port.
const PLAIN_HTTP_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Answers plain HTTP sent to the TLS port with a 400 in plain text, then closes after
/// reading what the client sent (at most 64 KiB, 1 s), so the close does not reset the
/// connection before the client reads the answer.
async fn refuse_plain_http(mut stream: TcpStream) {
    let write = async {
        stream.write_all(PLAIN_HTTP_TO_TLS).await?;
        stream.shutdown().await
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(5), write).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut left = 64 * 1024usize;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains open connections
/// (at most 10 s). Connection metrics go to `registry`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: &WebConfig,
    registry: &Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = match &web.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            crate::config::load_server_config(t)?,
        )),
        None => None,
    };
    let max_buf = web.max_header_bytes();
    let head_timeout = web.header_read_timeout.get();
    let body_timeout = web.request_body_timeout.get();
    let write_stall = web.write_stall_timeout.get();
    let max = conns::effective_max(web.max_connections);
    if max < web.max_connections {
        tracing::warn!(
            configured = web.max_connections,
            max,
            "web.max_connections lowered to fit the open-file limit (RLIMIT_NOFILE)"
        );
    }
    let tracker = conns::Tracker::new(max, Some(registry));
    {
        // Bodies nobody is reading past their deadline; clients not reading answers.
        let tracker = tracker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => tracker.reap(body_timeout, write_stall),
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = Duration::ZERO;
    let mut last_warned: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => {
                    backoff = Duration::ZERO;
                    s
                }
                Err(e) => {
                    // Out of fds: close the slowest sender to free one, and back off
                    // (5 ms doubling to 1 s) instead of spinning.
                    let fds = out_of_fds(&e);
                    let shed = fds && tracker.shed_for_fd();
                    backoff = if !fds {
                        Duration::from_millis(10)
                    } else if backoff.is_zero() {
                        Duration::from_millis(5)
                    } else {
                        (backoff * 2).min(Duration::from_secs(1))
                    };
                    if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_warned = Some(Instant::now());
                        tracing::warn!(error = %e, shed_slowest = shed, open = tracker.len(), "accept failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(reg) = tracker.admit() else {
            // At the cap with every connection busy being served: refuse this one.
            drop(stream);
            continue;
        };
        if reg.shed_one {
            // Let the shed connection's task close its socket before the next accept.
            tokio::task::yield_now().await;
        }
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout)
            .max_buf_size(max_buf)
            .keep_alive(true);
        let conn = reg.conn.clone();
        let service = {
            let router = router.clone();
            let conn = conn.clone();
            hyper::service::service_fn(move |req| {
                let fut = handle(router.clone(), peer, conn.clone(), body_timeout, req);
                async move { Ok::<_, Infallible>(fut.await) }
            })
        };
        let close = conn.close.clone();
        match &acceptor {
            None => {
                let io = conns::TrackedIo {
                    inner: stream,
                    conn: conn.clone(),
                };
                let served = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
                tokio::spawn(async move {
                    let _reg = reg;
                    tokio::select! {
                        _ = served => {}
                        _ = close.cancelled() => {}
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let tracked = conn.clone();
                tokio::spawn(async move {
                    let _reg = reg;
                    let work = async move {
                        let mut first = [0u8; 1];
                        match tokio::time::timeout(head_timeout, stream.peek(&mut first)).await {
                            // A TLS handshake record.
                            Ok(Ok(1)) if first[0] == 0x16 => {}
                            // Plain HTTP (a method name) sent to the TLS port.
                            Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
                                return refuse_plain_http(stream).await;
                            }
                            _ => return,
                        }
                        let io = conns::TrackedIo {
                            inner: stream,
                            conn: tracked,
                        };
                        let tls =
                            match tokio::time::timeout(head_timeout, acceptor.accept(io)).await {
                                Ok(Ok(s)) => s,
                                _ => return,
                            };
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        let _ = watcher.watch(conn).await;
                    };
                    tokio::select! {
                        _ = work => {}
                        _ = close.cancelled() => {}
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10s; closing");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_openmetrics_like_prometheus() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(wants_openmetrics(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        assert!(!wants_openmetrics(&h));
    }

    #[test]
    fn q_zero_in_any_spelling_refuses_gzip_and_openmetrics() {
        let enc = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        for refused in [
            "gzip;q=0",
            "gzip;q=0.0",
            "gzip;q=0.000",
            "gzip ; q = 0.0",
            "gzip;Q=0",
            "gzip;q=0, deflate",
            "*;q=0",
            "gzip;q=bogus",
            "gzip;q=0.0001",
            "identity",
        ] {
            assert!(!enc(refused), "{refused}");
        }
        for accepted in [
            "gzip",
            "gzip;q=0.001",
            "gzip;q=1.000",
            "GZIP",
            "*",
            "deflate, gzip;q=0.5",
        ] {
            assert!(enc(accepted), "{accepted}");
        }
        // The explicit entry wins over the wildcard.
        assert!(!enc("*, gzip;q=0"));

        let acc = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(v));
            wants_openmetrics(&h)
        };
        for refused in [
            "application/openmetrics-text;q=0.0",
            "application/openmetrics-text; version=1.0.0; q=0.000",
            "application/openmetrics-text;q=0",
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5",
            "text/plain",
        ] {
            assert!(!acc(refused), "{refused}");
        }
        assert!(acc(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
        ));
    }

    #[test]
    fn state_changing_routes_are_told_apart_from_reads() {
        assert!(is_mutating(&Method::POST, "/api/v2/silences"));
        assert!(is_mutating(&Method::POST, "/api/v2/alerts"));
        assert!(is_mutating(&Method::DELETE, "/api/v2/silence/x"));
        assert!(is_mutating(&Method::POST, "/-/reload"));
        assert!(is_mutating(&Method::PUT, "/api/v1/query"));
        assert!(!is_mutating(&Method::POST, "/api/v1/query"));
        assert!(!is_mutating(&Method::GET, "/api/v2/silences"));
        assert!(!is_mutating(&Method::HEAD, "/metrics"));
    }

    #[test]
    fn gzip_negotiation_honours_q0() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("deflate, gzip"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }
}

#[cfg(test)]
mod router_tests {
    //! The real router in process, where the peer can be any address.
    use crate::app::App;
    use crate::config::{Config, ConfigSource};
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use std::net::SocketAddr;
    use tower::ServiceExt;

    async fn call(
        app: &std::sync::Arc<App>,
        method: &str,
        path: &str,
        peer: Option<&str>,
        ctype: &str,
        body: &str,
    ) -> StatusCode {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ctype)
            .body(Body::from(body.to_string()))
            .unwrap();
        if let Some(p) = peer {
            let addr: SocketAddr = p.parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        super::router(app.clone())
            .oneshot(req)
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn every_listed_route_answers_each_method_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let app = App::start(config, ConfigSource::Embedded);
        for r in super::routes() {
            let path = r
                .path
                .replace("{id}", "00000000-0000-0000-0000-000000000000");
            for m in r.methods.split(", ") {
                let code = call(
                    &app,
                    m,
                    &path,
                    Some("127.0.0.1:4000"),
                    "application/json",
                    "{}",
                )
                .await;
                // An unknown silence id is a 404 of the route, not a missing route.
                assert!(
                    code != StatusCode::METHOD_NOT_ALLOWED && code != StatusCode::NOT_FOUND
                        || (r.path.contains("{id}") && code == StatusCode::NOT_FOUND),
                    "{m} {path} is listed but answers {code}"
                );
            }
        }
    }

    #[tokio::test]
    async fn network_clients_cannot_silence_or_reload_without_web_auth() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let app = App::start(config, ConfigSource::Embedded);
        let silence = r#"{"matchers":[{"name":"alertname","value":"A"}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"ops","comment":"m"}"#;
        let json = "application/json";
        for peer in [Some("192.0.2.7:4000"), Some("[2001:db8::1]:4000"), None] {
            assert_eq!(
                call(&app, "POST", "/api/v2/silences", peer, json, silence).await,
                StatusCode::FORBIDDEN,
                "{peer:?}"
            );
            assert_eq!(
                call(&app, "DELETE", "/api/v2/silence/x", peer, json, "").await,
                StatusCode::FORBIDDEN
            );
            assert_eq!(
                call(&app, "POST", "/-/reload", peer, json, "").await,
                StatusCode::FORBIDDEN
            );
            assert_eq!(
                call(&app, "POST", "/api/v2/alerts", peer, json, "[]").await,
                StatusCode::FORBIDDEN
            );
            for read in ["/api/v1/query_range", "/api/v1/series", "/api/v1/labels"] {
                assert_ne!(
                    call(
                        &app,
                        "POST",
                        read,
                        peer,
                        "application/x-www-form-urlencoded",
                        "match[]=up&query=vector(1)&start=1&end=2&step=1"
                    )
                    .await,
                    StatusCode::FORBIDDEN,
                    "{read} only reads"
                );
            }
            assert_eq!(
                call(&app, "GET", "/api/v2/silences", peer, json, "").await,
                StatusCode::OK
            );
            assert_ne!(
                call(
                    &app,
                    "POST",
                    "/api/v1/query",
                    peer,
                    "application/x-www-form-urlencoded",
                    "query=vector(1)"
                )
                .await,
                StatusCode::FORBIDDEN
            );
        }
        // Bodies are never buffered past the cap: the query form stops at 1 MiB.
        let big = format!("query={}", "1".repeat(super::MAX_BODY_BYTES + 1));
        assert_eq!(
            call(
                &app,
                "POST",
                "/api/v1/query",
                Some("127.0.0.1:4000"),
                "application/x-www-form-urlencoded",
                &big
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        for peer in ["127.0.0.1:4000", "[::1]:4000", "[::ffff:127.0.0.1]:4000"] {
            assert_eq!(
                call(&app, "POST", "/api/v2/silences", Some(peer), json, silence).await,
                StatusCode::OK,
                "{peer}"
            );
        }
        app.runner.stop_all();
    }
}
