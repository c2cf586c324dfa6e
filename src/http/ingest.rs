//! The HTTP side of the events ingest API, `POST /api/v1/events` (the domain, which
//! validates and applies a batch, is `crate::ingest`). A request passes, in order: the
//! per-client request rate limit (429), authentication (401/403, `ingest::auth`),
//! content type and encoding (415), body size (413), signature (401), parsing and
//! validation of the whole batch (400 naming the index and reason of the first bad
//! event; 413 past `max_events_per_batch`), the per-client event rate limit (429), and
//! only then is the batch applied: whole or not at all. Wrong methods get 405 from the
//! router. Every answer is JSON.
//!
//! Mounted by [`super::router`] outside its `web:` auth layer, because a client has only
//! one `Authorization` header to spend and the ingest API has credentials of its own.

use crate::app::App;
use crate::ingest::auth;
use crate::ingest::events::{self, BatchError, Framing, Limits};
use crate::ingest::{Ingest, Settings};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the API is mounted.
pub const PATH: &str = "/api/v1/events";

fn reply(ingest: &Ingest, status: StatusCode, body: serde_json::Value) -> Response {
    ingest.count_request(status.as_str());
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(ingest: &Ingest, status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    reply(
        ingest,
        status,
        serde_json::json!({ "error": error, "message": message.into() }),
    )
}

fn too_many_requests(ingest: &Ingest, wait: Duration, message: &str) -> Response {
    let mut resp = error(
        ingest,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        message,
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::ingest::limits::retry_after_seconds(wait)),
    );
    resp
}

fn rejected(ingest: &Ingest, e: BatchError) -> Response {
    match e {
        BatchError::Invalid {
            index,
            kind,
            reason,
            mut preceding,
        } => {
            let message = format!("event {index}: {reason}");
            match kind {
                Some(k) => preceding[k.index()] += 1,
                None => ingest.count_unknown_rejected(),
            }
            ingest.count(&preceding, "rejected");
            reply(
                ingest,
                StatusCode::BAD_REQUEST,
                serde_json::json!({
                    "error": "invalid_event",
                    "message": message,
                    "index": index,
                    "reason": reason,
                }),
            )
        }
        BatchError::TooMany { limit } => reply(
            ingest,
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({
                "error": "too_many_events",
                "message": e.to_string(),
                "limit": limit,
            }),
        ),
        BatchError::Empty | BatchError::NotEvents => error(
            ingest,
            StatusCode::BAD_REQUEST,
            "invalid_body",
            e.to_string(),
        ),
    }
}

/// Reads the framing from `Content-Type`; `None` means 415.
fn framing(headers: &HeaderMap) -> Option<Framing> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Some(Framing::Sniff);
    };
    let value = value.to_str().ok()?;
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("charset")
                && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            {
                return None;
            }
        }
    }
    match mime.as_str() {
        "application/json" => Some(Framing::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Some(Framing::Ndjson),
        _ => None,
    }
}

/// What the request's head allowed, for the body's turn.
struct Admitted {
    verdict: auth::Verdict,
    framing: Framing,
    client: IpAddr,
}

/// Body bytes read and thrown away past a refusal, so that a client still sending is
/// not reset (losing our answer) by a close with unread data; bounded in size and time
/// (counted from the refusal). Refusals of clients that may not push at all (403), and
/// of signed requests when no HMAC key is configured, discard nothing: the connection
/// is closed at once.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

pub(super) enum BodyError {
    TooLarge,
    /// `web.request_body_timeout` passed before the body ended.
    Timeout,
    Unreadable(String),
}

/// Reads at most `max` bytes; past it, keeps discarding up to [`DRAIN_BYTES`] for at most
/// [`DRAIN_TIME`] before reporting `TooLarge`. With `max == 0` (a refusal), the drain
/// starts at once. Every read also ends at the body's own deadline
/// (`web.request_body_timeout`, set by `http::serve`).
pub(super) async fn read_body(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    let mut drain_until = (max == 0).then(|| tokio::time::Instant::now() + DRAIN_TIME);
    loop {
        let frame = match drain_until {
            Some(until) => match tokio::time::timeout_at(until, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Err(BodyError::TooLarge),
            },
            None => body.frame().await,
        };
        match frame {
            None => break,
            Some(Err(e)) if super::is_body_timeout(&e) => return Err(BodyError::Timeout),
            Some(Err(_)) if seen > max => return Err(BodyError::TooLarge),
            Some(Err(e)) => return Err(BodyError::Unreadable(e.to_string())),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen = seen.saturating_add(data.len());
                if seen <= max {
                    buf.extend_from_slice(&data);
                } else {
                    buf = Vec::new();
                    drain_until.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN_TIME);
                    if seen > DRAIN_BYTES {
                        return Err(BodyError::TooLarge);
                    }
                }
            }
        }
    }
    if seen > max {
        Err(BodyError::TooLarge)
    } else {
        Ok(Bytes::from(buf))
    }
}

/// Whether a refused request's body may be drained (see [`DRAIN_BYTES`]).
fn may_drain(resp: &Response, headers: &HeaderMap, s: &Settings) -> bool {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let unverifiable_signature =
        headers.contains_key(auth::SIGNATURE_HEADER) && s.auth.hmac_secret.is_none();
    !expects_continue && resp.status() != StatusCode::FORBIDDEN && !unverifiable_signature
}

/// `POST /api/v1/events`.
pub(crate) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let ingest = &app.ingest;
    let s = ingest.settings();
    let (parts, body) = req.into_parts();
    let admitted = match admit(&app, &s, &parts) {
        Ok(a) => a,
        Err(mut resp) => {
            // A client waiting for `100 Continue` has sent no body: answer at once.
            if may_drain(&resp, &parts.headers, &s) {
                let _ = read_body(body, 0).await;
            } else {
                drop(body);
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    let bytes = match read_body(body, s.max_body_bytes).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(ingest, &s),
        Err(BodyError::Timeout) => {
            return error(
                ingest,
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive within web.request_body_timeout",
            )
        }
        Err(BodyError::Unreadable(e)) => {
            return error(
                ingest,
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("cannot read the body: {e}"),
            )
        }
    };
    let now = crate::ingest::unix_now();
    if admitted.verdict == auth::Verdict::CheckSignature {
        if let Err(e) = s.auth.verify_signature(&parts.headers, &bytes, now) {
            return error(
                ingest,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                e.to_string(),
            );
        }
    }
    let limits = Limits {
        max_events: s.max_events,
        max_label_value_length: s.max_label_value_length,
        now,
    };
    let events = match events::parse_batch(&bytes, admitted.framing, &limits) {
        Ok(ev) => ev,
        Err(e) => return rejected(ingest, e),
    };
    if let Err(wait) = ingest
        .limiter()
        .events(admitted.client, events.len(), Instant::now())
    {
        let mut counts = [0u64; 4];
        for e in &events {
            counts[e.kind().index()] += 1;
        }
        ingest.count(&counts, "rate_limited");
        return too_many_requests(ingest, wait, "too many events from this client");
    }
    ingest.apply(&events, now);
    // Pushed values should reach /metrics and the rules now, not at the next tick:
    // refreshed off the request path, and the rules reading them evaluated at once.
    app.inputs_changed(&crate::ingest::changed_families(&events));
    reply(
        ingest,
        StatusCode::OK,
        serde_json::json!({ "accepted": events.len() }),
    )
}

fn too_large(ingest: &Ingest, s: &Settings) -> Response {
    error(
        ingest,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "body larger than {} bytes (ingest.max_body_bytes)",
            s.max_body_bytes
        ),
    )
}

/// The checks the request head decides: enabled, request rate, auth, content type and
/// encoding, declared length.
// The error is the refusal itself, made once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn admit(
    app: &App,
    s: &Settings,
    parts: &axum::http::request::Parts,
) -> Result<Admitted, Response> {
    let ingest = &app.ingest;
    if !s.enabled {
        return Err(error(
            ingest,
            StatusCode::NOT_FOUND,
            "disabled",
            "the ingest API is disabled (ingest.enabled: false)",
        ));
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
    if let Err(wait) = ingest.limiter().request(client, Instant::now()) {
        return Err(too_many_requests(
            ingest,
            wait,
            "too many requests from this client",
        ));
    }
    let verdict = match s
        .auth
        .check_headers(&parts.headers, peer, &app.credentials())
    {
        Ok(v) => v,
        Err(auth::AuthError::Unauthorized(m)) => {
            let mut resp = error(ingest, StatusCode::UNAUTHORIZED, "unauthorized", m);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"comfy-sentinel\""),
            );
            return Err(resp);
        }
        Err(auth::AuthError::Forbidden(m)) => {
            return Err(error(ingest, StatusCode::FORBIDDEN, "forbidden", m))
        }
    };
    let Some(framing) = framing(&parts.headers) else {
        return Err(error(ingest,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json (an array of events) or application/x-ndjson (one event per line), UTF-8",
        ));
    };
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(error(
            ingest,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "compressed bodies are not accepted",
        ));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
        return Err(too_large(ingest, s));
    }
    Ok(Admitted {
        verdict,
        framing,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_framing() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            framing(&m)
        };
        assert_eq!(framing(&HeaderMap::new()), Some(Framing::Sniff));
        assert_eq!(h("application/json"), Some(Framing::Json));
        assert_eq!(h("Application/JSON; charset=utf-8"), Some(Framing::Json));
        assert_eq!(h("application/x-ndjson"), Some(Framing::Ndjson));
        assert_eq!(h("application/json; charset=latin1"), None);
        assert_eq!(h("text/plain"), None);
        assert_eq!(h("application/x-www-form-urlencoded"), None);
    }
}

#[cfg(test)]
mod router_tests {
    //! The real router in process, where the peer address can be one no test client
    //! could connect from.
    use crate::app::App;
    use crate::config::{Config, ConfigSource};
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use std::net::SocketAddr;
    use tower::ServiceExt;

    async fn post_from(peer: &str) -> StatusCode {
        let app = App::start(Config::default(), ConfigSource::Embedded);
        let mut req = Request::post(super::PATH)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"[{"type":"heartbeat","name":"a","status":"success"}]"#,
            ))
            .unwrap();
        let addr: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = crate::http::router(app.clone()).oneshot(req).await.unwrap();
        app.runner.stop_all();
        resp.status()
    }

    #[tokio::test]
    async fn unconfigured_ingest_refuses_remote_clients() {
        assert_eq!(post_from("192.0.2.7:40000").await, StatusCode::FORBIDDEN);
        assert_eq!(
            post_from("[2001:db8::1]:40000").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(post_from("127.0.0.1:40000").await, StatusCode::OK);
        assert_eq!(post_from("[::1]:40000").await, StatusCode::OK);
    }
}
