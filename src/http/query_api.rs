//! `GET|POST /api/v1/query`: instant PromQL queries on the rule engine's store, in
//! Prometheus's HTTP API shape, so `comfy-sentinel gate`, scripts and tools written for
//! Prometheus can ask the sidecar directly. Bounded by `query:` of the config: the query
//! text is capped, at most `max_concurrent` evaluations run at once, and each runs under
//! the sample, label-byte and resolution caps and the deadline of
//! [`sentinel_rules::eval::QueryLimits`]. The concurrency slot travels into the blocking
//! job and is released only when the evaluation has actually stopped; on a deadline the
//! job's cancellation flag is set before the 503 is sent.

use crate::app::App;
use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use sentinel_rules::eval::{Budget, EvalError, Evaluator};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_QUERY_BYTES: usize = 4096;
/// How long past the evaluation deadline the handler waits for the job to notice it.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The evaluation slots; resized to `query.max_concurrent` (see [`resize_slots`]).
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// Slots `SLOTS` currently stands for (in use or free).
static SLOT_COUNT: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Brings the slot count to `want`. Shrinking retires free slots now and the rest as
/// running queries finish (each later request retries).
fn resize_slots(want: usize) {
    let mut n = SLOT_COUNT.lock().unwrap_or_else(|e| e.into_inner());
    if *n < want {
        SLOTS.add_permits(want - *n);
        *n = want;
    } else if *n > want {
        *n -= SLOTS.forget_permits(*n - want);
    }
}

#[derive(Debug, Deserialize)]
pub struct QueryParams {
    query: Option<String>,
    time: Option<String>,
}

/// The query API's route (mounted by `http::router`, listed on the status page).
pub fn routes() -> Vec<super::Route> {
    vec![super::Route::new(
        "GET, POST",
        "/api/v1/query",
        "PromQL instant query over the rule engine's store (JSON)",
        get(query_get).post(query_post),
    )]
}

async fn query_get(State(app): State<Arc<App>>, Query(p): Query<QueryParams>) -> Response {
    run(app, p).await
}

async fn query_post(State(app): State<Arc<App>>, Form(p): Form<QueryParams>) -> Response {
    run(app, p).await
}

fn error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": kind, "error": msg.into()})),
    )
        .into_response()
}

/// An evaluation error in Prometheus's shape and status: 422 `execution` (including
/// too many samples), 400 `bad_data` (resolution), 503 `timeout`, 499 `canceled`.
fn eval_error(e: &EvalError) -> Response {
    let status = match e.error_type() {
        "bad_data" => StatusCode::BAD_REQUEST,
        "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        "canceled" => StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e.error_type(), e.to_string())
}

/// Unix seconds Prometheus's `time` may take here: years 0000 to 9999, the range of RFC
/// 3339, so that every evaluation time and its offsets stay far inside i64 milliseconds.
const MIN_TIME_SECS: f64 = -62_167_219_200.0;
const MAX_TIME_SECS: f64 = 253_402_300_799.999;

/// Parses Prometheus's `time` parameter: Unix seconds (fractions allowed) or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("invalid parameter \"time\": cannot parse {s:?} to a valid timestamp{why}")
    };
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(bad(""));
        }
        if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&secs) {
            return Err(bad(": out of range (years 0000 to 9999)"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| bad(""))
}

/// Sets the evaluation's cancellation flag when dropped: on a deadline, and when the
/// client goes away and the handler is dropped mid-flight.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn run(app: Arc<App>, p: QueryParams) -> Response {
    let Some(text) = p.query.filter(|q| !q.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "missing parameter \"query\"",
        );
    };
    if text.len() > MAX_QUERY_BYTES {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("query longer than {MAX_QUERY_BYTES} bytes"),
        );
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let ts = match p.time.as_deref() {
        None => now_ms,
        Some(t) => match parse_time(t) {
            Ok(ms) => ms,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
        },
    };
    let expr = match sentinel_rules::eval::parse(&text) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    if let Err(e) = sentinel_rules::eval::check(&expr) {
        return error(StatusCode::BAD_REQUEST, "bad_data", e);
    }
    let cfg = app.config().query.clone();
    resize_slots(cfg.max_concurrent);
    let limits = cfg.limits();
    let timeout = limits.timeout.unwrap_or(Duration::from_secs(10));
    let Ok(Ok(slot)) = tokio::time::timeout(timeout, SLOTS.acquire()).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many queries at once",
        );
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(Budget::new(limits).with_cancel(cancel.clone()));
    let store = app.rules.store().clone();
    let end = run_job(slot, cancel, timeout + DEADLINE_GRACE, move || {
        let value = Evaluator::new(&store, ts).with_budget(budget).eval(&expr)?;
        Ok(render(&value, ts))
    })
    .await;
    match end {
        JobEnd::TimedOut => eval_error(&EvalError::Timeout),
        JobEnd::Failed(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        JobEnd::Done(Err(e)) => eval_error(&e),
        JobEnd::Done(Ok(body)) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
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

/// The success answer, written straight to bytes (no JSON tree per sample).
fn render(value: &sentinel_rules::eval::Value, ts: i64) -> Vec<u8> {
    use sentinel_rules::eval::Value as V;
    use std::io::Write;
    fn str_json(out: &mut Vec<u8>, s: &str) {
        let _ = serde_json::to_writer(&mut *out, s);
    }
    fn point(out: &mut Vec<u8>, t: f64, v: f64) {
        out.push(b'[');
        let _ = serde_json::to_writer(&mut *out, &t);
        out.push(b',');
        str_json(out, &sentinel_rules::eval::format_go_float(v));
        out.push(b']');
    }
    fn metric(out: &mut Vec<u8>, l: &sentinel_rules::labels::Labels) {
        out.push(b'{');
        for (i, (k, v)) in l.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            str_json(out, k);
            out.push(b':');
            str_json(out, v);
        }
        out.push(b'}');
    }
    let t = ts as f64 / 1000.0;
    let mut out = Vec::with_capacity(256);
    let kind = match value {
        V::Scalar(_) => "scalar",
        V::String(_) => "string",
        V::Vector(_) => "vector",
        V::Matrix(_) => "matrix",
    };
    let _ = write!(
        out,
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"{kind}\",\"result\":"
    );
    match value {
        V::Scalar(v) => point(&mut out, t, *v),
        V::String(s) => {
            out.push(b'[');
            let _ = serde_json::to_writer(&mut out, &t);
            out.push(b',');
            str_json(&mut out, s);
            out.push(b']');
        }
        V::Vector(samples) => {
            out.push(b'[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"value\":");
                point(&mut out, t, s.v);
                out.push(b'}');
            }
            out.push(b']');
        }
        V::Matrix(series) => {
            out.push(b'[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"values\":[");
                for (j, (pt, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    point(&mut out, *pt as f64 / 1000.0, *v);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parameter_forms() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("NaN").is_err());
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
            e,
            "invalid parameter \"time\": cannot parse \"1e300\" to a valid timestamp: out of range (years 0000 to 9999)"
        );
        assert!(parse_time("-1e300").is_err());
        assert!(parse_time("253402300799").is_ok());
        assert!(parse_time("253402300800").is_err());
    }

    #[test]
    fn rendered_answer_is_prometheus_json() {
        use sentinel_rules::eval::{RangeSeries, Sample, Value as V};
        use sentinel_rules::labels::Labels;
        let parse = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            parse(render(&V::Scalar(2.0), 1_700_000_000_000)),
            json!({"status":"success","data":{"resultType":"scalar","result":[1700000000.0,"2"]}})
        );
        let l = Labels::from_pairs([("__name__", "m"), ("q", "a\"b")]);
        let v = V::Vector(vec![Sample {
            labels: l.clone(),
            t: 0,
            v: f64::NAN,
        }]);
        assert_eq!(
            parse(render(&v, 1500)),
            json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","q":"a\"b"},"value":[1.5,"NaN"]}]}})
        );
        let m = V::Matrix(vec![RangeSeries {
            labels: l,
            points: vec![(1000, 1.0), (2000, f64::INFINITY)],
        }]);
        assert_eq!(
            parse(render(&m, 2000))["data"]["result"][0]["values"],
            json!([[1.0, "1"], [2.0, "+Inf"]])
        );
    }
}
