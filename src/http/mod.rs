//! The HTTP server. Routes:
//! - `GET /metrics` — the pre-encoded snapshot; OpenMetrics when the scraper asks, gzip when asked
//! - `GET /healthz` — the process is alive
//! - `GET /readyz` — config loaded and every collector has run once
//! - `GET /` — the status page (`status.rs`)
//! - `POST /-/reload` — re-read the config (as SIGHUP does)
//! - `/api/v1/alerts`, `/api/v1/silences`, `/api/v1/notifications` — see `notify_api`
//! - `GET|POST /api/v1/query` — instant PromQL on the rule store (`query_api`)
//! - `POST /api/v1/events` — the events ingest API (`crate::ingest`), with its own auth
//!
//! Every route sits behind optional basic/bearer auth and optional TLS (`web:`).
//! Handlers only read state; none collects or does I/O on the scrape path.

pub mod config;
mod notify_api;
mod query_api;
pub mod status;
mod tls;

pub use config::WebConfig;

use crate::app::App;
use crate::metrics::encode::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// All routes, with auth and common headers applied.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .route("/-/reload", post(reload))
        .merge(notify_api::routes())
        .merge(query_api::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        // After the auth layer: the ingest API authenticates on its own (ingest/auth.rs).
        .merge(crate::ingest::routes())
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

/// Checks basic or bearer credentials (constant-time) when the config asks for them.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let creds = app.credentials();
    if !creds.required() || authorized(&creds, req.headers()) {
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

pub(crate) fn authorized(creds: &config::Credentials, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return creds
            .bearer
            .as_ref()
            .is_some_and(|t| t.ct_eq(rest.as_bytes()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some((user, pass)) = creds.basic.as_ref() else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        let Some(i) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        // Compare both parts, always, so timing does not reveal which one was wrong.
        let user_ok = crate::config::Secret::new(user.clone()).ct_eq(&decoded[..i]);
        let pass_ok = pass.ct_eq(&decoded[i + 1..]);
        return user_ok & pass_ok;
    }
    false
}

/// Whether the client prefers OpenMetrics (Prometheus sends it first in its Accept list).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';').map(str::trim);
            it.next() == Some("application/openmetrics-text") && !it.any(|p| p == "q=0")
        })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';').map(str::trim);
            it.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && !it.any(|p| p.replace(' ', "") == "q=0")
        })
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

async fn index(State(app): State<Arc<App>>) -> Html<String> {
    Html(status::page(&app))
}

/// Serves `router` on `listener` until `shutdown` fires, then drains open connections
/// (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: &WebConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = match &web.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            tls::load_server_config(t).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let max_buf = web.max_header_bytes();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of fds and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(max_buf)
            .keep_alive(true);
        // The peer address, for handlers that need it (ingest's loopback rule, rate limits).
        let service =
            hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                router.clone(),
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                },
            ));
        match &acceptor {
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn).await;
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

    #[test]
    fn basic_and_bearer_credentials() {
        let creds = config::Credentials {
            basic: Some(("u".into(), crate::config::Secret::new("p"))),
            bearer: Some(crate::config::Secret::new("t")),
        };
        let mut h = HeaderMap::new();
        assert!(!authorized(&creds, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        ); // u:p
        assert!(authorized(&creds, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpx"),
        ); // u:q
        assert!(!authorized(&creds, &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(authorized(&creds, &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer tt"));
        assert!(!authorized(&creds, &h));
    }
}
