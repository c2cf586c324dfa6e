//! Events ingest API, `POST /api/v1/events`: the application's recovery layer, quality
//! scorers and scheduled jobs push typed events (see `events.rs` and
//! `schemas/events.schema.json`) that become the `recovery_*`, `quality_score` and
//! `sentinel_heartbeat_*` metrics in the shared registry.
//!
//! A request passes, in order: the per-client request rate limit (429), authentication
//! (401/403, `auth.rs`), content type and encoding (415), body size (413), signature
//! (401), parsing and validation of the whole batch (400 naming the index and reason of
//! the first bad event; 413 past `max_events_per_batch`), the per-client event rate
//! limit (429), and only then is the batch applied: whole or not at all. Wrong methods
//! get 405 from the router. Every answer is JSON.
//!
//! Neighbours: `http::router` mounts [`routes`] outside its `web:` auth layer; `App`
//! holds the [`Ingest`] state and reconfigures it on reload.

pub mod auth;
pub mod events;
pub mod heartbeat;
pub mod limits;
pub mod quality;
pub mod recovery;

use crate::app::App;
use crate::config::{either_secret, Dur, SecretFile, SecretString};
use crate::metrics::registry::{CounterVec, Registry};
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use events::{BatchError, Event, Framing, Kind, Limits, Outcome};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use limits::RateLimitConfig;

/// Where the API is mounted.
pub const PATH: &str = "/api/v1/events";

/// `ingest:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Serve `POST /api/v1/events` (404 when off).
    pub enabled: bool,
    /// Bearer token clients send as `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// File holding the bearer token (instead of `token`).
    pub token_file: Option<SecretFile>,
    /// Key for `X-Sentinel-Signature: sha256=<hex HMAC-SHA256>` request signatures.
    /// With neither a token nor an HMAC secret, the `web:` credentials apply, and with
    /// none of those either, only loopback clients are accepted.
    pub hmac_secret: Option<SecretString>,
    /// File holding the HMAC key (instead of `hmac_secret`).
    pub hmac_secret_file: Option<SecretFile>,
    /// Refuse signatures without `X-Sentinel-Timestamp` (replay protection).
    pub hmac_require_timestamp: bool,
    /// Largest accepted distance between `X-Sentinel-Timestamp` and our clock.
    pub hmac_max_skew: Dur,
    /// Largest accepted request body (413 past it).
    pub max_body_bytes: usize,
    /// Most events in one request (413 past it).
    pub max_events_per_batch: usize,
    /// Longest accepted label value (operation, workflow, metric, breaker and heartbeat
    /// names, error class), in characters; longer is a 400.
    pub max_label_value_length: usize,
    /// Distinct values kept per label; later values are folded into `other` and counted
    /// in `sentinel_ingest_label_overflow_total{label}`.
    pub max_values_per_label: usize,
    /// Per-client rate limits (429 with `Retry-After`).
    pub rate_limit: RateLimitConfig,
    /// Bucket upper bounds of `quality_score` (ascending; `+Inf` is implied). Changes
    /// take effect on restart.
    pub quality_buckets: Vec<f64>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            token: None,
            token_file: None,
            hmac_secret: None,
            hmac_secret_file: None,
            hmac_require_timestamp: false,
            hmac_max_skew: Dur::secs(300),
            max_body_bytes: 1 << 20,
            max_events_per_batch: 10_000,
            max_label_value_length: 128,
            max_values_per_label: 100,
            rate_limit: RateLimitConfig::default(),
            quality_buckets: quality::DEFAULT_BUCKETS.to_vec(),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((format!("ingest.{f}"), m.to_string()));
        if let Err(m) = either_secret(&self.token, &self.token_file) {
            return err("token", m);
        }
        if let Err(m) = either_secret(&self.hmac_secret, &self.hmac_secret_file) {
            return err("hmac_secret", m);
        }
        if self.hmac_max_skew.get() < Duration::from_secs(1) {
            return err("hmac_max_skew", "must be at least 1s");
        }
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        if self.max_events_per_batch == 0 {
            return err("max_events_per_batch", "must be at least 1");
        }
        if !(1..=1024).contains(&self.max_label_value_length) {
            return err("max_label_value_length", "must be between 1 and 1024");
        }
        if !(1..=100_000).contains(&self.max_values_per_label) {
            return err("max_values_per_label", "must be between 1 and 100000");
        }
        let b = &self.quality_buckets;
        if b.is_empty() || b.len() > 64 {
            return err("quality_buckets", "must hold between 1 and 64 bounds");
        }
        if b.iter().any(|v| !v.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
            return err(
                "quality_buckets",
                "bounds must be finite and strictly ascending (+Inf is implied)",
            );
        }
        self.rate_limit.validate(self.max_events_per_batch)
    }

    fn auth(&self) -> auth::IngestAuth {
        auth::IngestAuth {
            // Validated: at most one of each pair is set.
            token: either_secret(&self.token, &self.token_file).ok().flatten(),
            hmac_secret: either_secret(&self.hmac_secret, &self.hmac_secret_file)
                .ok()
                .flatten(),
            require_timestamp: self.hmac_require_timestamp,
            max_skew_seconds: self.hmac_max_skew.get().as_secs_f64(),
        }
    }
}

/// The parts of the config a request needs, resolved once per (re)load.
struct Settings {
    enabled: bool,
    auth: auth::IngestAuth,
    max_body_bytes: usize,
    max_events: usize,
    max_label_value_length: usize,
}

impl Settings {
    fn resolve(c: &IngestConfig) -> Self {
        Settings {
            enabled: c.enabled,
            auth: c.auth(),
            max_body_bytes: c.max_body_bytes,
            max_events: c.max_events_per_batch,
            max_label_value_length: c.max_label_value_length,
        }
    }
}

/// The ingest API's long-lived state: settings, limits and the metrics it feeds.
pub struct Ingest {
    settings: ArcSwap<Settings>,
    limiter: limits::RateLimiter,
    caps: limits::LabelCaps,
    recovery: recovery::RecoveryMetrics,
    quality: quality::QualityMetrics,
    heartbeat: heartbeat::HeartbeatMetrics,
    requests: Arc<CounterVec>,
    events: Arc<CounterVec>,
}

/// Answers that are counted under their status code.
const CODES: &[u16] = &[200, 400, 401, 403, 404, 413, 415, 429];
const RESULTS: &[&str] = &["accepted", "rejected", "rate_limited"];

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Ingest {
    pub fn new(registry: &Registry, config: &IngestConfig) -> Self {
        let requests = registry.counter_vec(
            "sentinel_ingest_requests_total",
            "Requests to the events ingest API by HTTP status code.",
            &["code"],
        );
        for c in CODES {
            requests.touch_series(&[&c.to_string()]);
        }
        let events = registry.counter_vec(
            "sentinel_ingest_events_total",
            "Ingested events by type and result: accepted, rejected (the whole batch failed validation), rate_limited.",
            &["type", "result"],
        );
        for k in Kind::ALL {
            for r in RESULTS {
                events.touch_series(&[k.as_str(), r]);
            }
        }
        Ingest {
            settings: ArcSwap::from_pointee(Settings::resolve(config)),
            limiter: limits::RateLimiter::new(config.rate_limit.clone()),
            caps: limits::LabelCaps::new(registry, config.max_values_per_label),
            recovery: recovery::RecoveryMetrics::register(registry),
            quality: quality::QualityMetrics::register(registry, &config.quality_buckets),
            heartbeat: heartbeat::HeartbeatMetrics::register(registry),
            requests,
            events,
        }
    }

    /// Takes a reloaded config into use.
    pub fn apply_config(&self, config: &IngestConfig) {
        self.settings.store(Arc::new(Settings::resolve(config)));
        self.limiter.reconfigure(config.rate_limit.clone());
        self.caps.set_max_values(config.max_values_per_label);
        if config.quality_buckets != self.quality.buckets() {
            tracing::warn!("ingest.quality_buckets takes effect on restart");
        }
    }

    /// Applies a validated batch; it cannot fail.
    fn apply(&self, events: &[Event<'_>], now: f64) {
        let mut counts = [0u64; 4];
        for ev in events {
            counts[ev.kind().index()] += 1;
            match ev {
                Event::Operation(o) => {
                    let op = self.caps.fold("operation", &o.operation);
                    let class = match (&o.error_class, o.outcome) {
                        // A first-try success had no error to classify.
                        (Some(c), Outcome::Recovered | Outcome::Failed) => {
                            Some(self.caps.fold("error_class", c))
                        }
                        _ => None,
                    };
                    self.recovery.operation(o, op, class);
                }
                Event::CircuitBreaker(b) => {
                    let name = self.caps.fold("breaker", &b.name);
                    self.recovery.breaker(b, name, now);
                }
                Event::Quality(q) => {
                    let workflow = self.caps.fold("workflow", &q.workflow);
                    let metric = self.caps.fold("metric", &q.metric);
                    self.quality.record(q, workflow, metric);
                }
                Event::Heartbeat(h) => {
                    let name = self.caps.fold("name", &h.name);
                    self.heartbeat.record(h, name, now);
                }
            }
        }
        self.count(&counts, "accepted");
    }

    fn count(&self, counts: &[u64; 4], result: &str) {
        for k in Kind::ALL {
            let n = counts[k.index()];
            if n > 0 {
                self.events.add(&[k.as_str(), result], n as f64);
            }
        }
    }

    fn reply(&self, status: StatusCode, body: serde_json::Value) -> Response {
        self.requests.inc(&[status.as_str()]);
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }

    fn error(&self, status: StatusCode, error: &str, message: impl Into<String>) -> Response {
        self.reply(
            status,
            serde_json::json!({ "error": error, "message": message.into() }),
        )
    }

    fn too_many_requests(&self, wait: Duration, message: &str) -> Response {
        let mut resp = self.error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(limits::retry_after_seconds(wait)),
        );
        resp
    }

    fn rejected(&self, e: BatchError) -> Response {
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
                    None => self.events.inc(&["unknown", "rejected"]),
                }
                self.count(&preceding, "rejected");
                self.reply(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({
                        "error": "invalid_event",
                        "message": message,
                        "index": index,
                        "reason": reason,
                    }),
                )
            }
            BatchError::TooMany { limit } => self.reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({
                    "error": "too_many_events",
                    "message": e.to_string(),
                    "limit": limit,
                }),
            ),
            BatchError::Empty | BatchError::NotEvents => {
                self.error(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
            }
        }
    }
}

/// The ingest route; mounted by `http::router` outside the `web:` auth layer.
pub fn routes() -> Router<Arc<App>> {
    Router::new().route(PATH, post(handle))
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

enum BodyError {
    TooLarge,
    /// `web.request_body_timeout` passed before the body ended.
    Timeout,
    Unreadable(String),
}

/// Reads at most `max` bytes; past it, keeps discarding up to [`DRAIN_BYTES`] for at most
/// [`DRAIN_TIME`] before reporting `TooLarge`. With `max == 0` (a refusal), the drain
/// starts at once. Every read also ends at the body's own deadline
/// (`web.request_body_timeout`, set by `http::serve`).
async fn read_body(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
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
            Some(Err(e)) if crate::http::is_body_timeout(&e) => return Err(BodyError::Timeout),
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

pub(crate) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let ingest = &app.ingest;
    let s = ingest.settings.load_full();
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
            return ingest.error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive within web.request_body_timeout",
            )
        }
        Err(BodyError::Unreadable(e)) => {
            return ingest.error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("cannot read the body: {e}"),
            )
        }
    };
    let now = unix_now();
    if admitted.verdict == auth::Verdict::CheckSignature {
        if let Err(e) = s.auth.verify_signature(&parts.headers, &bytes, now) {
            return ingest.error(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
        }
    }
    let limits = Limits {
        max_events: s.max_events,
        max_label_value_length: s.max_label_value_length,
        now,
    };
    let events = match events::parse_batch(&bytes, admitted.framing, &limits) {
        Ok(ev) => ev,
        Err(e) => return ingest.rejected(e),
    };
    if let Err(wait) = ingest
        .limiter
        .events(admitted.client, events.len(), Instant::now())
    {
        let mut counts = [0u64; 4];
        for e in &events {
            counts[e.kind().index()] += 1;
        }
        ingest.count(&counts, "rate_limited");
        return ingest.too_many_requests(wait, "too many events from this client");
    }
    ingest.apply(&events, now);
    // Pushed values should reach /metrics and the rules now, not at the next tick:
    // refreshed off the request path, and the rules reading them evaluated at once.
    app.inputs_changed(&changed_families(&events));
    ingest.reply(
        StatusCode::OK,
        serde_json::json!({ "accepted": events.len() }),
    )
}

/// Name prefixes of the metric families a batch's events change (the rule groups that
/// read them are evaluated at once; see `App::inputs_changed`).
fn changed_families(events: &[Event<'_>]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = events
        .iter()
        .map(|e| match e {
            Event::Operation(_) => "recovery_",
            Event::CircuitBreaker(_) => "recovery_circuit_breaker_",
            Event::Quality(_) => "quality_",
            Event::Heartbeat(_) => "sentinel_heartbeat_",
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn too_large(ingest: &Ingest, s: &Settings) -> Response {
    ingest.error(
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
        return Err(ingest.error(
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
    if let Err(wait) = ingest.limiter.request(client, Instant::now()) {
        return Err(ingest.too_many_requests(wait, "too many requests from this client"));
    }
    let verdict = match s
        .auth
        .check_headers(&parts.headers, peer, &app.credentials())
    {
        Ok(v) => v,
        Err(auth::AuthError::Unauthorized(m)) => {
            let mut resp = ingest.error(StatusCode::UNAUTHORIZED, "unauthorized", m);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"comfy-sentinel\""),
            );
            return Err(resp);
        }
        Err(auth::AuthError::Forbidden(m)) => {
            return Err(ingest.error(StatusCode::FORBIDDEN, "forbidden", m))
        }
    };
    let Some(framing) = framing(&parts.headers) else {
        return Err(ingest.error(
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
        return Err(ingest.error(
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

    #[test]
    fn config_validation_names_the_field() {
        let bad = |f: fn(&mut IngestConfig)| {
            let mut c = IngestConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert!(IngestConfig::default().validate().is_ok());
        assert_eq!(
            bad(|c| c.max_events_per_batch = 0),
            "ingest.max_events_per_batch"
        );
        assert_eq!(
            bad(|c| c.quality_buckets = vec![1.0, 0.5]),
            "ingest.quality_buckets"
        );
        assert_eq!(
            bad(|c| c.quality_buckets = vec![]),
            "ingest.quality_buckets"
        );
        assert_eq!(
            bad(|c| c.max_values_per_label = 0),
            "ingest.max_values_per_label"
        );
        assert_eq!(
            bad(|c| c.max_events_per_batch = 50_000),
            "ingest.rate_limit.events_burst"
        );
        assert_eq!(
            bad(|c| {
                c.token = Some(SecretString(crate::config::Secret::new("a")));
                c.token_file = Some(SecretFile {
                    path: "/x".into(),
                    secret: crate::config::Secret::new("b"),
                });
            }),
            "ingest.token"
        );
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
