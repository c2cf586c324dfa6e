//! Prometheus's HTTP API (v1) over the store and the rule engine, in Prometheus 2.42's
//! exact shapes, so Grafana's Prometheus data source, `promtool query` and scripts
//! written for Prometheus talk to the sidecar as to a Prometheus server:
//!
//! - `GET|POST /api/v1/query` (`query`, `time`) and `/api/v1/query_range` (`query`,
//!   `start`, `end`, `step`)
//! - `GET|POST /api/v1/series` (`match[]`, `start`, `end`), `/api/v1/labels`,
//!   `GET /api/v1/label/{name}/values`
//! - `GET /api/v1/metadata`, `/api/v1/status/buildinfo`, `/api/v1/rules`, `/api/v1/alerts`
//!
//! Every answer is `{"status":"success","data":...}` or `{"status":"error","errorType":
//! ...,"error":...}` with Prometheus's status codes (400 `bad_data`, 422 `execution`,
//! 503 `timeout`). POST takes an `application/x-www-form-urlencoded` body; its values
//! come before those of the URL, as in Go's `FormValue`. The body is capped at 1 MiB
//! (413) and the parameters, URL and form together, at 1,000 while they are parsed
//! (400), both answered in the envelope above.
//!
//! Bounded by `query:` of the config: the query text is capped, at most `max_concurrent`
//! evaluations run at once, and each runs under the sample, label-byte and resolution
//! caps and the deadline of [`sentinel_rules::eval::QueryLimits`]. A range query may
//! have at most `max_points_per_series` steps (Prometheus's 11,000). `series`, `labels`
//! and label values charge every series they list against `max_samples` and its labels
//! against `max_label_bytes`. The concurrency slot travels into the blocking job and is
//! released only when the evaluation has actually stopped; on a deadline the job's
//! cancellation flag is set before the 503 is sent.

// Helpers return the refusal they would answer (a `Response`) as their error: it is
// sent at once, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::params::{json_body, read_capped, Params, ReadError};
use super::Route;
use crate::app::App;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr};
use sentinel_rules::eval::{eval_range, Budget, EvalError, Evaluator, QueryLimits, Value};
use sentinel_rules::labels::Labels;
use sentinel_rules::store::Store;
use serde_json::{json, Map};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest PromQL text (`query`, each `match[]`) accepted.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most `match[]` selectors one series, labels or label values call may carry.
pub const MAX_MATCHERS: usize = 64;
/// How long past the evaluation deadline the handler waits for the job to notice it.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The query settings of the running config, applied once when it is loaded and again
/// at each reload ([`QueryGate::apply`]), not per query: the evaluation limits, and the
/// concurrency slots sized to `query.max_concurrent`. Shrinking retires free slots at
/// once and busy ones as their queries end.
pub struct QueryGate {
    limits: parking_lot::Mutex<QueryLimits>,
    slots: Arc<tokio::sync::Semaphore>,
    /// `(slots the semaphore stands for, busy slots still to retire when released)`.
    size: Arc<parking_lot::Mutex<(usize, usize)>>,
}

impl QueryGate {
    pub fn new(cfg: &sentinel_rules::eval::QueryConfig) -> QueryGate {
        let gate = QueryGate {
            limits: parking_lot::Mutex::new(cfg.limits()),
            slots: Arc::new(tokio::sync::Semaphore::new(0)),
            size: Arc::new(parking_lot::Mutex::new((0, 0))),
        };
        gate.apply(cfg);
        gate
    }

    /// Takes `query:` of a new config.
    pub fn apply(&self, cfg: &sentinel_rules::eval::QueryConfig) {
        *self.limits.lock() = cfg.limits();
        let want = cfg.max_concurrent;
        let mut size = self.size.lock();
        let (n, debt) = &mut *size;
        if want > *n {
            // Slots still due to retire are kept instead of adding new ones.
            let grow = want - *n;
            let kept = grow.min(*debt);
            *debt -= kept;
            self.slots.add_permits(grow - kept);
        } else if want < *n {
            let shrink = *n - want;
            *debt += shrink - self.slots.forget_permits(shrink);
        }
        *n = want;
    }

    /// The limits of one evaluation.
    pub fn limits(&self) -> QueryLimits {
        *self.limits.lock()
    }

    /// Slots free now (tests).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits up to `wait` for a slot.
    async fn acquire(&self, wait: Duration) -> Option<Slot> {
        let permit = tokio::time::timeout(wait, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(Slot {
            permit: Some(permit),
            size: self.size.clone(),
        })
    }
}

/// A concurrency slot; when the gate shrank while it was busy, it retires on release.
struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    size: Arc<parking_lot::Mutex<(usize, usize)>>,
}

impl Slot {
    /// Gives the slot back: retired when the gate owes a slot (it shrank while this
    /// one was busy), else its permit returns to the semaphore. Both happen under the
    /// size lock, so a concurrent shrink sees the slot either busy or free, never busy
    /// and then free as well (which would run one query past `max_concurrent`).
    fn release(&mut self) {
        let mut size = self.size.lock();
        let Some(p) = self.permit.take() else {
            return;
        };
        if size.1 > 0 {
            size.1 -= 1;
            p.forget();
        } else {
            drop(p);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The Prometheus API's routes (mounted by `http::router`, listed on the status page).
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "GET, POST",
            "/api/v1/query",
            "PromQL instant query (Prometheus API)",
            get(query).post(query),
        ),
        Route::new(
            "GET, POST",
            "/api/v1/query_range",
            "PromQL range query (Prometheus API)",
            get(query_range).post(query_range),
        ),
        Route::new(
            "GET, POST",
            "/api/v1/series",
            "series matching match[] (Prometheus API)",
            get(series).post(series),
        ),
        Route::new(
            "GET, POST",
            "/api/v1/labels",
            "label names (Prometheus API)",
            get(labels).post(labels),
        ),
        Route::new(
            "GET",
            "/api/v1/label/{name}/values",
            "values of one label (Prometheus API)",
            get(label_values),
        ),
        Route::new(
            "GET, POST",
            "/api/v1/query_exemplars",
            "exemplars (Prometheus API; the sidecar keeps none)",
            get(query_exemplars).post(query_exemplars),
        ),
        Route::new(
            "GET",
            "/api/v1/metadata",
            "metric types and help (Prometheus API)",
            get(metadata),
        ),
        Route::new(
            "GET",
            "/api/v1/status/buildinfo",
            "build information (Prometheus API)",
            get(buildinfo),
        ),
        Route::new(
            "GET",
            "/api/v1/rules",
            "loaded rule groups and their health (Prometheus API)",
            get(rules),
        ),
        Route::new(
            "GET",
            "/api/v1/alerts",
            "pending and firing alerts of the rules (Prometheus API)",
            get(alerts),
        ),
    ]
}

// ---- parameters ----

/// A handler's parameters from the URL and, on a POST, from a form body: the body is
/// read under [`super::MAX_BODY_BYTES`] and the parameters under [`super::params::MAX_PARAMS`] while
/// they are parsed; past either, Prometheus's error envelope (413 or 400 `bad_data`).
impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Params, Response> {
        let (parts, body) = req.into_parts();
        let body = match read_capped(&parts.headers, body, super::MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(ReadError::TooLarge) => {
                return Err(error_with(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "bad_data",
                    format!("request body larger than {} bytes", super::MAX_BODY_BYTES),
                ))
            }
            Err(ReadError::Timeout) => {
                return Err(error_with(
                    StatusCode::REQUEST_TIMEOUT,
                    "bad_data",
                    "the body did not arrive within web.request_body_timeout",
                ))
            }
            Err(ReadError::Unreadable(e)) => {
                return Err(error("bad_data", format!("cannot read the body: {e}")))
            }
        };
        Params::parse(&parts.method, &parts.uri, &parts.headers, &body)
            .map_err(|e| error("bad_data", e.to_string()))
    }
}

/// The parameters of a GET route: the URL's alone.
fn url_params(uri: &Uri) -> Result<Params, Response> {
    Params::of_url(uri).map_err(|e| error("bad_data", e.to_string()))
}

// ---- answers ----

/// An error in Prometheus's envelope; the status follows the `errorType` as in 2.42.
fn error(kind: &str, msg: impl Into<String>) -> Response {
    let status = match kind {
        "bad_data" => StatusCode::BAD_REQUEST,
        "execution" => StatusCode::UNPROCESSABLE_ENTITY,
        "timeout" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "canceled" => StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        "not_found" => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_with(status, kind, msg)
}

/// An error in Prometheus's envelope with its own status (413, 408 for the body).
fn error_with(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    // Prometheus's key order.
    let body = format!(
        "{{\"status\":\"error\",\"errorType\":{},\"error\":{}}}",
        serde_json::Value::from(kind),
        serde_json::Value::from(msg.into())
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_param(name: &str, msg: impl std::fmt::Display) -> Response {
    error("bad_data", format!("invalid parameter {name:?}: {msg}"))
}

fn eval_error(e: &EvalError) -> Response {
    error(e.error_type(), e.to_string())
}

fn success(data: serde_json::Value) -> Response {
    json_body(format!("{{\"status\":\"success\",\"data\":{data}}}").into_bytes())
}

// ---- time and duration parameters ----

/// Unix seconds a time parameter may take here: years 0000 to 9999, the range of RFC
/// 3339, so that every evaluation time and its offsets stay far inside i64 milliseconds.
const MIN_TIME_SECS: f64 = -62_167_219_200.0;
const MAX_TIME_SECS: f64 = 253_402_300_799.999;

/// Why a time or duration parameter cannot be read (Prometheus's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ParamError {
    #[error("cannot parse {0:?} to a valid timestamp")]
    Time(String),
    #[error("cannot parse {0:?} to a valid timestamp: out of range (years 0000 to 9999)")]
    TimeOutOfRange(String),
    #[error("cannot parse {0:?} to a valid duration. It overflows int64")]
    DurationOverflow(String),
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
}

/// Prometheus's `parseTime`: Unix seconds (fractions allowed) or RFC 3339, to ms.
fn parse_time(s: &str) -> Result<i64, ParamError> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(ParamError::Time(s.to_string()));
        }
        if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&secs) {
            return Err(ParamError::TimeOutOfRange(s.to_string()));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ParamError::Time(s.to_string()))
}

/// Prometheus's `parseTimeParam`: `default` when absent, else [`parse_time`] with its
/// error message.
fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, Response> {
    let v = p.get(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|e| bad_param(name, format_args!("Invalid time value for '{name}': {e}")))
}

/// Prometheus's `parseDuration`: float seconds or a duration (`1m`, `1h30m`), to ms.
fn parse_duration(s: &str) -> Result<i64, ParamError> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 / 1e6 {
            return Err(ParamError::DurationOverflow(s.to_string()));
        }
        return Ok(ms.round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| ParamError::Duration(s.to_string()))
}

fn now_ms() -> i64 {
    sentinel_store::store::system_time_ms(SystemTime::now())
}

// ---- queries ----

/// The query text, parsed and checked (a 400 `bad_data` when it is not usable). Parse
/// errors name the parameter for instant queries and not for range queries, as 2.42.
fn parse_query(p: &Params) -> Result<Expr, Response> {
    parse_query_as(p, true)
}

fn parse_query_as(p: &Params, name_it: bool) -> Result<Expr, Response> {
    let refuse = |e: sentinel_rules::eval::QueryError| {
        let e = e.to_string();
        if name_it {
            bad_param("query", e)
        } else {
            error("bad_data", e)
        }
    };
    let text = p.get("query");
    if text.len() > MAX_QUERY_BYTES {
        return Err(error(
            "bad_data",
            format!("query longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    if text.trim().is_empty() {
        return Err(bad_param(
            "query",
            "1:1: parse error: no expression found in input",
        ));
    }
    let expr = sentinel_rules::eval::parse(text).map_err(refuse)?;
    sentinel_rules::eval::check(&expr).map_err(refuse)?;
    Ok(expr)
}

/// A concurrency slot, a fresh budget under `query:` and its cancellation flag.
async fn admit(app: &App) -> Result<(impl Send + 'static, Arc<Budget>, Arc<AtomicBool>), Response> {
    let limits = app.queries.limits();
    let timeout = limits.timeout.unwrap_or(Duration::from_secs(10));
    let Some(slot) = app.queries.acquire(timeout).await else {
        return Err(error("unavailable", "too many queries at once"));
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(Budget::new(limits).with_cancel(cancel.clone()));
    Ok((slot, budget, cancel))
}

fn wait_for(limits: &QueryLimits) -> Duration {
    limits.timeout.unwrap_or(Duration::from_secs(10)) + DEADLINE_GRACE
}

fn finish(end: JobEnd<Vec<u8>>) -> Response {
    match end {
        JobEnd::TimedOut => eval_error(&EvalError::Timeout),
        JobEnd::Failed(e) => error("internal", e),
        JobEnd::Done(Err(e)) => eval_error(&e),
        JobEnd::Done(Ok(body)) => json_body(body),
    }
}

/// Runs `work` over the store as an evaluation job: in a concurrency slot, under a fresh
/// budget and the deadline, answered as [`finish`] says.
async fn evaluate(
    app: &App,
    work: impl FnOnce(&Store, Arc<Budget>) -> Result<Vec<u8>, EvalError> + Send + 'static,
) -> Result<Response, Response> {
    let (slot, budget, cancel) = admit(app).await?;
    let wait = wait_for(budget.limits());
    let store = app.rules.store().clone();
    Ok(finish(
        run_job(slot, cancel, wait, move || {
            let answer = work(&store, budget.clone());
            release_if_large(&budget);
            answer
        })
        .await,
    ))
}

/// A query that held at least this many samples (selected, in ranges, answered, or
/// series listed) has the memory they took handed back to the OS when it ends: about
/// 16 MB of samples.
const TRIM_AFTER_SAMPLES: u64 = 1_000_000;

/// The one memory-release rule, applied once per query as its job ends (the selections
/// are dropped by then): after a large query, give the freed memory back before
/// answering (glibc keeps it otherwise). `malloc_trim` costs a few milliseconds, so
/// small queries skip it however long they ran.
fn release_if_large(budget: &Budget) {
    if budget
        .peak_samples()
        .saturating_add(budget.preloaded_samples())
        >= TRIM_AFTER_SAMPLES
    {
        sentinel_store::release_freed_memory();
    }
}

async fn query(State(app): State<Arc<App>>, p: Params) -> Result<Response, Response> {
    let ts = time_param(&p, "time", now_ms())?;
    let expr = pin_start_end(parse_query(&p)?, ts, ts);
    evaluate(&app, move |store, budget| {
        let value = Evaluator::new(store, ts).with_budget(budget).eval(&expr)?;
        Ok(render(&value, ts))
    })
    .await
}

async fn query_range(State(app): State<Arc<App>>, p: Params) -> Result<Response, Response> {
    let param = |name: &str, parse: fn(&str) -> Result<i64, ParamError>| {
        parse(p.get(name)).map_err(|e| bad_param(name, e))
    };
    let start = param("start", parse_time)?;
    let end = param("end", parse_time)?;
    if end < start {
        return Err(bad_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = param("step", parse_duration)?;
    if step <= 0 {
        return Err(bad_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let max_points = app.queries.limits().max_points_per_series;
    if ((end - start) / step) as u64 > max_points {
        return Err(error(
            "bad_data",
            format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                sentinel_rules::eval::limits::thousands(max_points)
            ),
        ));
    }
    let expr = parse_query_as(&p, false)?;
    if let Some(kind) = range_kind(&expr) {
        return Err(error(
            "bad_data",
            format!(
                "invalid expression type {kind:?} for range query, must be Scalar or instant Vector"
            ),
        ));
    }
    let expr = pin_start_end(expr, start, end);
    evaluate(&app, move |store, budget| {
        let m = eval_range(store, &expr, start, end, step, &budget)?;
        Ok(render(&Value::Matrix(m), end))
    })
    .await
}

/// The kind of an expression a range query refuses ("range vector", "string"), or None.
fn range_kind(e: &Expr) -> Option<&'static str> {
    use promql_parser::parser::value::ValueType;
    match e.value_type() {
        ValueType::Matrix => Some("range vector"),
        ValueType::String => Some("string"),
        _ => None,
    }
}

/// Replaces `@ start()` and `@ end()` by the query's start and end, as Prometheus's
/// engine does before it evaluates.
fn pin_start_end(mut e: Expr, start: i64, end: i64) -> Expr {
    fn at(ms: i64) -> AtModifier {
        let t = if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
        };
        AtModifier::At(t)
    }
    fn fix(a: &mut Option<AtModifier>, start: i64, end: i64) {
        match a {
            Some(AtModifier::Start) => *a = Some(at(start)),
            Some(AtModifier::End) => *a = Some(at(end)),
            _ => {}
        }
    }
    fn walk(e: &mut Expr, start: i64, end: i64) {
        match e {
            Expr::Aggregate(a) => {
                walk(&mut a.expr, start, end);
                if let Some(p) = a.param.as_mut() {
                    walk(p, start, end);
                }
            }
            Expr::Unary(u) => walk(&mut u.expr, start, end),
            Expr::Binary(b) => {
                walk(&mut b.lhs, start, end);
                walk(&mut b.rhs, start, end);
            }
            Expr::Paren(p) => walk(&mut p.expr, start, end),
            Expr::Subquery(s) => {
                fix(&mut s.at, start, end);
                walk(&mut s.expr, start, end);
            }
            Expr::VectorSelector(vs) => fix(&mut vs.at, start, end),
            Expr::MatrixSelector(m) => fix(&mut m.vs.at, start, end),
            Expr::Call(c) => {
                for a in c.args.args.iter_mut() {
                    walk(a, start, end);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    walk(&mut e, start, end);
    e
}

/// Sets the evaluation's cancellation flag when dropped: on a deadline, and when the
/// client goes away and the handler is dropped mid-flight.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How an evaluation job ended, as the handler sees it.
enum JobEnd<T> {
    Done(Result<T, EvalError>),
    /// Not done within the wait; its cancellation flag is set and it still holds its slot.
    TimedOut,
    /// The job panicked.
    Failed(String),
}

/// Runs `work` on the blocking pool. The job owns `slot` (a concurrency permit) and drops
/// it only when `work` returns, so a slot is never free while its work still runs. Waits
/// up to `wait`; then, or when the caller is dropped (the client went away), sets `cancel`
/// so the evaluator stops at its next check.
async fn run_job<T: Send + 'static>(
    slot: impl Send + 'static,
    cancel: Arc<AtomicBool>,
    wait: Duration,
    work: impl FnOnce() -> Result<T, EvalError> + Send + 'static,
) -> JobEnd<T> {
    let _cancel_on_drop = CancelOnDrop(cancel);
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    });
    match tokio::time::timeout(wait, job).await {
        Err(_) => JobEnd::TimedOut,
        Ok(Err(e)) => JobEnd::Failed(e.to_string()),
        Ok(Ok(r)) => JobEnd::Done(r),
    }
}

/// A timestamp in ms as Prometheus writes it: seconds, then `.` and three digits when
/// there is a fraction (`1700000000`, `1.500`).
fn write_ts(out: &mut Vec<u8>, t: i64) {
    use std::io::Write;
    let (sign, t) = if t < 0 {
        ("-", t.unsigned_abs())
    } else {
        ("", t as u64)
    };
    let _ = write!(out, "{sign}{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

fn str_json(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `items` written by `each`, comma-separated, between `open` and `close`.
fn write_list<T>(
    out: &mut Vec<u8>,
    (open, close): (u8, u8),
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(close);
}

const ARRAY: (u8, u8) = (b'[', b']');

fn write_labels(out: &mut Vec<u8>, l: &Labels) {
    write_list(out, (b'{', b'}'), l.iter(), |out, (k, v)| {
        str_json(out, k);
        out.push(b':');
        str_json(out, v);
    });
}

/// A sample value as a JSON string, as `format_go_float` spells it (Go's
/// `FormatFloat(v, 'f', -1, 64)`), written in place: no string per point, and nothing
/// to escape in digits, signs, `.`, `NaN` and `Inf`.
fn write_value(out: &mut Vec<u8>, v: f64) {
    use std::io::Write;
    out.push(b'"');
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
    out.push(b'"');
}

/// The success answer of a query, written straight to bytes (no JSON tree per sample).
fn render(value: &Value, ts: i64) -> Vec<u8> {
    use std::io::Write;
    fn point(out: &mut Vec<u8>, t: i64, v: f64) {
        out.push(b'[');
        write_ts(out, t);
        out.push(b',');
        write_value(out, v);
        out.push(b']');
    }
    let mut out = Vec::with_capacity(256);
    let kind = match value {
        Value::Scalar(_) => "scalar",
        Value::String(_) => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    };
    let _ = write!(
        out,
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"{kind}\",\"result\":"
    );
    match value {
        Value::Scalar(v) => point(&mut out, ts, *v),
        Value::String(s) => {
            out.push(b'[');
            write_ts(&mut out, ts);
            out.push(b',');
            str_json(&mut out, s);
            out.push(b']');
        }
        Value::Vector(samples) => write_list(&mut out, ARRAY, samples, |out, s| {
            out.extend_from_slice(b"{\"metric\":");
            write_labels(out, &s.labels);
            out.extend_from_slice(b",\"value\":");
            point(out, ts, s.v);
            out.push(b'}');
        }),
        Value::Matrix(series) => write_list(&mut out, ARRAY, series, |out, s| {
            out.extend_from_slice(b"{\"metric\":");
            write_labels(out, &s.labels);
            out.extend_from_slice(b",\"values\":");
            write_list(out, ARRAY, &s.points, |out, (pt, v)| point(out, *pt, *v));
            out.push(b'}');
        }),
    }
    out.extend_from_slice(b"}}");
    out
}

// ---- series, labels, label values ----

/// The `match[]` selectors, each a list of matchers (Prometheus's `ParseMetricSelector`
/// plus its rule that a selector needs one matcher that does not match "").
fn parse_matches(p: &Params) -> Result<Vec<Vec<Matcher>>, Response> {
    let list = p.all("match[]");
    if list.len() > MAX_MATCHERS {
        return Err(bad_param(
            "match[]",
            format_args!(
                "{} selectors; at most {MAX_MATCHERS} are allowed",
                list.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for text in list {
        if text.len() > MAX_QUERY_BYTES {
            return Err(bad_param(
                "match[]",
                format_args!("selector longer than {MAX_QUERY_BYTES} bytes"),
            ));
        }
        let vs = match sentinel_rules::eval::parse(text) {
            Ok(Expr::VectorSelector(vs)) => vs,
            Ok(_) => {
                return Err(bad_param(
                    "match[]",
                    format_args!("{text:?} is not a series selector"),
                ))
            }
            // Prometheus checks this itself, in its own words.
            Err(e) if e.to_string().contains("at least one non-empty matcher") => {
                return Err(bad_param(
                    "match[]",
                    "match[] must contain at least one non-empty matcher",
                ))
            }
            Err(e) => return Err(bad_param("match[]", e)),
        };
        if !vs.matchers.or_matchers.is_empty() {
            return Err(bad_param(
                "match[]",
                "`or` inside label matchers is not supported",
            ));
        }
        let mut ms = vs.matchers.matchers.clone();
        if let Some(n) = &vs.name {
            ms.push(Matcher::new(MatchOp::Equal, "__name__", n));
        }
        if ms.iter().all(|m| m.is_match("")) {
            return Err(bad_param(
                "match[]",
                "match[] must contain at least one non-empty matcher",
            ));
        }
        out.push(ms);
    }
    Ok(out)
}

/// Every series with a sample in `[start, end]` matching one of `sets` (all series when
/// `sets` is empty), deduplicated and sorted. Each series counts against `max_samples`
/// and its labels against `max_label_bytes`.
fn matching_series(
    store: &Store,
    budget: &Budget,
    sets: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> Result<BTreeSet<Labels>, EvalError> {
    let all = [vec![Matcher::new(MatchOp::NotEqual, "__name__", "")]];
    let sets = if sets.is_empty() { &all[..] } else { sets };
    let mut out = BTreeSet::new();
    for ms in sets {
        budget.check()?;
        for (labels, _) in store.select_last(ms, start, end) {
            if out.contains(&labels) {
                continue;
            }
            budget.charge_samples(1)?;
            budget.charge_label_bytes(labels.heap_bytes() as u64)?;
            out.insert(labels);
        }
    }
    Ok(out)
}

/// `start` and `end` of series, labels and label values (all time when absent).
fn span(p: &Params) -> Result<(i64, i64), Response> {
    let start = time_param(p, "start", i64::MIN)?;
    let end = time_param(p, "end", i64::MAX)?;
    Ok((start, end))
}

/// The series that `match[]`, `start` and `end` of `p` ask for, with `default` as the
/// selector when `p` names none (all series when that is `None` too). Runs as a query
/// job: in a `query.max_concurrent` slot, under `query.timeout` and the sample budget,
/// since a scan of the whole store costs as much as a query.
async fn find_series(
    app: &App,
    p: &Params,
    default: Option<Vec<Matcher>>,
) -> Result<BTreeSet<Labels>, Response> {
    let (start, end) = span(p)?;
    let mut sets = parse_matches(p)?;
    if sets.is_empty() {
        sets.extend(default);
    }
    let (slot, budget, cancel) = admit(app).await?;
    let wait = wait_for(budget.limits());
    let store = app.rules.store().clone();
    let job = move || {
        let found = matching_series(&store, &budget, &sets, start, end);
        release_if_large(&budget);
        found
    };
    match run_job(slot, cancel, wait, job).await {
        JobEnd::Done(Ok(found)) => Ok(found),
        JobEnd::Done(Err(e)) => Err(eval_error(&e)),
        JobEnd::TimedOut => Err(eval_error(&EvalError::Timeout)),
        JobEnd::Failed(e) => Err(error("internal", e)),
    }
}

async fn series(State(app): State<Arc<App>>, p: Params) -> Result<Response, Response> {
    if !p.has("match[]") {
        return Err(error("bad_data", "no match[] parameter provided"));
    }
    let found = find_series(&app, &p, None).await?;
    let mut out = b"{\"status\":\"success\",\"data\":".to_vec();
    write_list(&mut out, ARRAY, &found, write_labels);
    out.push(b'}');
    Ok(json_body(out))
}

async fn labels(State(app): State<Arc<App>>, p: Params) -> Result<Response, Response> {
    let found = find_series(&app, &p, None).await?;
    let names: BTreeSet<&str> = found
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k))
        .collect();
    Ok(success(json!(names)))
}

async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Response> {
    let p = url_params(&uri)?;
    if !sentinel_rules::labels::valid_label_name(&name) {
        return Err(error("bad_data", format!("invalid label name: {name:?}")));
    }
    // Without a selector, only the series that carry the label.
    let carry = vec![Matcher::new(MatchOp::NotEqual, &name, "")];
    let found = find_series(&app, &p, Some(carry)).await?;
    let values: BTreeSet<&str> = found
        .iter()
        .map(|l| l.get(&name))
        .filter(|v| !v.is_empty())
        .collect();
    Ok(success(json!(values)))
}

/// Prometheus's checks of `query`, `start` and `end`, then no exemplars: the store
/// keeps none, and Grafana asks whenever a panel has exemplars switched on.
async fn query_exemplars(p: Params) -> Result<Response, Response> {
    span(&p)?;
    parse_query(&p)?;
    Ok(success(json!([])))
}

// ---- metadata, build info ----

async fn metadata(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let p = match url_params(&uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limit = match p.get("limit") {
        "" => -1,
        s => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return error("bad_data", "limit must be a number"),
        },
    };
    let metric = p.get("metric");
    let mut out = Map::new();
    for f in app.exposition.merged() {
        if !metric.is_empty() && f.name != metric {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        let kind = match f.kind.as_str() {
            "untyped" => "unknown",
            k => k,
        };
        if let Some(a) = out
            .entry(f.name.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            a.push(json!({"type": kind, "help": f.help, "unit": ""}));
        }
    }
    success(serde_json::Value::Object(out))
}

/// The Prometheus release whose HTTP API the sidecar answers: clients such as Grafana
/// read `version` to pick the API calls they may use.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": option_env!("SENTINEL_REVISION").unwrap_or("unknown"),
        "branch": concat!("comfy-sentinel-", env!("CARGO_PKG_VERSION")),
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

// ---- rules and alerts ----

/// A time in ms as Go's `time.Time` marshals it (RFC 3339 with nanoseconds trimmed);
/// Go's zero time when absent.
fn go_time(ms: Option<i64>) -> String {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Seconds as Go's JSON writes a float64: `60`, `0.5` (never `60.0`).
fn go_secs(d: Duration) -> serde_json::Value {
    if d.subsec_nanos() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_secs_f64())
    }
}

fn labels_json(l: &Labels) -> serde_json::Value {
    let m: Map<String, serde_json::Value> =
        l.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    serde_json::Value::Object(m)
}

/// The active alerts of rule `r`, sorted by their labels.
fn sorted_alerts(r: &sentinel_rules::group::Rule) -> Vec<&sentinel_rules::group::ActiveAlert> {
    let mut alerts: Vec<_> = r.active_alerts().collect();
    alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
    alerts
}

fn alert_json(a: &sentinel_rules::group::ActiveAlert) -> serde_json::Value {
    json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": go_time(Some(a.active_at)),
        // Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as Prometheus writes alert values.
        "value": sentinel_base::text::format_float(a.value, 'e', -1),
    })
}

async fn rules(State(app): State<Arc<App>>, uri: Uri) -> Response {
    use sentinel_rules::rulefile::RuleKind;
    let p = match url_params(&uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (want_alert, want_record) = match p.get("type").to_ascii_lowercase().as_str() {
        "" => (true, true),
        "alert" => (true, false),
        "record" => (false, true),
        t => return bad_param("type", format_args!("not supported value {t:?}")),
    };
    let mut groups = Vec::new();
    app.rules.visit_groups(|g| {
        let mut rules = Vec::new();
        let mut last_eval = None;
        for r in &g.rules {
            let h = &r.health;
            last_eval = last_eval.max(h.last_evaluation_ms);
            let health = match h.ok {
                Some(true) => "ok",
                Some(false) => "err",
                None => "unknown",
            };
            let mut v = match r.def.kind {
                RuleKind::Alerting if want_alert => {
                    let alerts = sorted_alerts(r);
                    let state = if alerts
                        .iter()
                        .any(|a| a.state == sentinel_rules::group::AlertState::Firing)
                    {
                        "firing"
                    } else if alerts.is_empty() {
                        "inactive"
                    } else {
                        "pending"
                    };
                    json!({
                        "state": state,
                        "name": r.def.name,
                        "query": r.def.expr_text,
                        "duration": go_secs(r.def.for_),
                        "keepFiringFor": go_secs(r.def.keep_firing_for),
                        "labels": r.def.labels,
                        "annotations": r.def.annotations,
                        "alerts": alerts.iter().map(|a| alert_json(a)).collect::<Vec<_>>(),
                        "health": health,
                    })
                }
                RuleKind::Recording if want_record => {
                    let mut v = json!({
                        "name": r.def.name,
                        "query": r.def.expr_text,
                    });
                    if !r.def.labels.is_empty() {
                        v["labels"] = json!(r.def.labels);
                    }
                    v["health"] = json!(health);
                    v
                }
                _ => continue,
            };
            if let Some(e) = &h.last_error {
                v["lastError"] = json!(e);
            }
            v["evaluationTime"] = json!(h.last_duration.as_secs_f64());
            v["lastEvaluation"] = json!(go_time(h.last_evaluation_ms));
            v["type"] = json!(match r.def.kind {
                RuleKind::Alerting => "alerting",
                RuleKind::Recording => "recording",
            });
            rules.push(v);
        }
        if rules.is_empty() && !(want_alert && want_record) {
            return;
        }
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": go_secs(g.interval),
            "limit": g.limit,
            "evaluationTime": g.last_duration.as_secs_f64(),
            "lastEvaluation": go_time(last_eval),
        }));
    });
    success(json!({ "groups": groups }))
}

async fn alerts(State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    app.rules.visit_groups(|g| {
        for r in &g.rules {
            out.extend(sorted_alerts(r).into_iter().map(alert_json));
        }
    });
    success(json!({ "alerts": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parameter_forms() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.25+00:00"),
            Ok(1_700_000_000_250)
        );
        assert!(parse_time("soon").is_err());
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn step_as_duration_or_float_seconds() {
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1m"), Ok(60_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(
            parse_duration("x").unwrap_err().to_string(),
            "cannot parse \"x\" to a valid duration"
        );
        assert_eq!(
            parse_duration("1e300").unwrap_err().to_string(),
            "cannot parse \"1e300\" to a valid duration. It overflows int64"
        );
        assert_eq!(
            parse_time("1e12").unwrap_err().to_string(),
            "cannot parse \"1e12\" to a valid timestamp: out of range (years 0000 to 9999)"
        );
    }

    #[test]
    fn timestamps_are_written_as_prometheus_writes_them() {
        let w = |t| {
            let mut v = Vec::new();
            write_ts(&mut v, t);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(w(1_700_000_000_000), "1700000000");
        assert_eq!(w(1500), "1.500");
        assert_eq!(w(1005), "1.005");
        assert_eq!(w(-1500), "-1.500");
    }

    #[test]
    fn alert_values_use_gos_exponent_format() {
        let e = |v: f64| sentinel_base::text::format_float(v, 'e', -1);
        assert_eq!(e(1.0), "1e+00");
        assert_eq!(e(0.5), "5e-01");
        assert_eq!(e(123.456), "1.23456e+02");
        assert_eq!(e(1e100), "1e+100");
        assert_eq!(e(-2.0), "-2e+00");
        assert_eq!(e(f64::NAN), "NaN");
        assert_eq!(e(f64::NEG_INFINITY), "-Inf");
        assert_eq!(e(1.5e-7), "1.5e-07");
    }

    #[tokio::test]
    async fn timed_out_job_keeps_its_slot_until_the_work_stops() {
        use std::time::Instant;
        let sem = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = sem.clone().acquire_owned().await.unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let t0 = Instant::now();
        // Work that notices the cancellation only at its next check, a second later.
        let end = run_job(
            slot,
            cancel.clone(),
            Duration::from_millis(100),
            move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(1000));
                Err::<(), _>(EvalError::Canceled)
            },
        )
        .await;
        assert!(matches!(end, JobEnd::TimedOut));
        assert!(cancel.load(Ordering::Relaxed), "the deadline sets the flag");
        assert_eq!(sem.available_permits(), 0, "the slot is still held");
        let _again = tokio::time::timeout(Duration::from_secs(10), sem.acquire())
            .await
            .expect("the slot frees when the work stops")
            .unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(1100),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn reloaded_max_concurrent_resizes_the_slots_even_while_they_are_busy() {
        let mut cfg = sentinel_rules::eval::QueryConfig {
            max_concurrent: 2,
            ..Default::default()
        };
        let gate = QueryGate::new(&cfg);
        let wait = Duration::from_secs(1);
        assert_eq!(gate.free(), 2);
        let a = gate.acquire(wait).await.unwrap();
        let b = gate.acquire(wait).await.unwrap();
        assert!(gate.acquire(Duration::from_millis(10)).await.is_none());
        // Shrunk to 1 while both run: one retires when it ends.
        cfg.max_concurrent = 1;
        gate.apply(&cfg);
        drop(a);
        assert_eq!(gate.free(), 0);
        drop(b);
        assert_eq!(gate.free(), 1);
        // Grown to 3.
        cfg.max_concurrent = 3;
        cfg.max_samples = 7;
        gate.apply(&cfg);
        assert_eq!(gate.free(), 3);
        assert_eq!(gate.limits().max_samples, 7);
        // Shrunk to 1 and grown to 2 while three run: two, then one, to retire.
        let busy: Vec<Slot> = acquire_n(&gate, 3).await;
        cfg.max_concurrent = 1;
        gate.apply(&cfg);
        cfg.max_concurrent = 2;
        gate.apply(&cfg);
        drop(busy);
        assert_eq!(gate.free(), 2);
    }

    #[tokio::test]
    async fn a_released_slot_returns_its_permit_under_the_size_lock_so_a_shrink_counts_it_once() {
        let mut cfg = sentinel_rules::eval::QueryConfig {
            max_concurrent: 2,
            ..Default::default()
        };
        let gate = QueryGate::new(&cfg);
        let mut a = gate.acquire(Duration::from_secs(1)).await.unwrap();
        let b = gate.acquire(Duration::from_secs(1)).await.unwrap();
        // What dropping `a` does, in the order it does it: the release step, then the
        // fields (the permit, if the release left it there). A reload shrinks the gate
        // in between.
        a.release();
        let left = a.permit.take();
        cfg.max_concurrent = 1;
        gate.apply(&cfg);
        drop(left);
        // Dropping it now releases nothing more: the release took the permit.
        drop(a);
        // `b` still runs and the gate allows one query: no slot is free.
        assert_eq!(gate.free(), 0, "a second query could run beside b");
        drop(b);
        assert_eq!(gate.free(), 1);
        assert_eq!(*gate.size.lock(), (1, 0));
    }

    async fn acquire_n(gate: &QueryGate, n: usize) -> Vec<Slot> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(gate.acquire(Duration::from_secs(1)).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn finished_job_frees_its_slot() {
        let sem = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = sem.clone().acquire_owned().await.unwrap();
        let end = run_job(
            slot,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(5),
            || Ok(7),
        )
        .await;
        assert!(matches!(end, JobEnd::Done(Ok(7))));
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn huge_time_is_refused_not_clamped() {
        let e = parse_time("1e300").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse \"1e300\" to a valid timestamp: out of range (years 0000 to 9999)"
        );
        assert!(parse_time("-1e300").is_err());
        assert!(parse_time("253402300799").is_ok());
        assert!(parse_time("253402300800").is_err());
    }

    #[test]
    fn start_and_end_modifiers_are_pinned_to_the_query_range() {
        let e = sentinel_rules::eval::parse("m @ start() + m @ end()").unwrap();
        let e = pin_start_end(e, 1000, 5000);
        let s = e.to_string();
        assert!(s.contains("@ 1.000") || s.contains("@ 1 "), "{s}");
        assert!(s.contains("@ 5"), "{s}");
        assert!(!s.contains("start()") && !s.contains("end()"), "{s}");
    }

    #[test]
    fn range_evaluation_folds_steps_into_sorted_series() {
        let store = sentinel_rules::store::Store::unbounded();
        let a = Labels::from_pairs([("__name__", "m"), ("k", "b")]);
        let b = Labels::from_pairs([("__name__", "m"), ("k", "a")]);
        for t in [0i64, 10_000, 20_000] {
            store.append(&a, t, t as f64, sentinel_rules::store::Origin::Snapshot);
            store.append(&b, t, 1.0, sentinel_rules::store::Origin::Snapshot);
        }
        let expr = sentinel_rules::eval::parse("m").unwrap();
        let budget = Arc::new(Budget::new(QueryLimits::unlimited()));
        let m = eval_range(&store, &expr, 0, 20_000, 10_000, &budget).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels.get("k"), "a");
        assert_eq!(
            m[1].points,
            vec![(0, 0.0), (10_000, 10_000.0), (20_000, 20_000.0)]
        );
        let scalar = sentinel_rules::eval::parse("1").unwrap();
        let m = eval_range(&store, &scalar, 0, 20_000, 10_000, &budget).unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].labels.is_empty());
    }

    #[test]
    fn range_evaluation_is_held_to_the_sample_cap() {
        let store = sentinel_rules::store::Store::unbounded();
        for i in 0..10 {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
            store.append(&l, 0, 1.0, sentinel_rules::store::Origin::Snapshot);
        }
        let expr = sentinel_rules::eval::parse("m").unwrap();
        let limits = QueryLimits {
            max_samples: 25,
            ..QueryLimits::unlimited()
        };
        let budget = Arc::new(Budget::new(limits));
        let e = eval_range(&store, &expr, 0, 100_000, 10_000, &budget).unwrap_err();
        assert_eq!(e, EvalError::TooManySamples);
    }

    #[test]
    fn values_written_in_place_equal_the_go_float_formatter() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            1e21,
            1e-7,
            123456789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            sentinel_rules::store::stale_nan(),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, v);
            let want = format!("{:?}", sentinel_rules::eval::format_go_float(v));
            assert_eq!(String::from_utf8(out).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn rendered_answer_is_prometheus_json() {
        use sentinel_rules::eval::Sample;
        let parse = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            String::from_utf8(render(&Value::Scalar(2.0), 1_700_000_000_000)).unwrap(),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}}"#
        );
        let l = Labels::from_pairs([("__name__", "m"), ("q", "a\"b")]);
        let v = Value::Vector(vec![Sample {
            labels: l.clone(),
            t: 0,
            v: f64::NAN,
        }]);
        assert_eq!(
            parse(render(&v, 1500)),
            json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","q":"a\"b"},"value":[1.5,"NaN"]}]}})
        );
        let m = Value::Matrix(vec![sentinel_rules::eval::RangeSeries {
            labels: l,
            points: vec![(1000, 1.0), (2000, f64::INFINITY)],
        }]);
        assert_eq!(
            parse(render(&m, 2000))["data"]["result"][0]["values"],
            json!([[1, "1"], [2, "+Inf"]])
        );
    }
}
