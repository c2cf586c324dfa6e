//! `GET|POST /api/v1/query`: instant PromQL queries on the rule engine's store, in
//! Prometheus's HTTP API shape, so `comfy-sentinel gate`, scripts and tools written for
//! Prometheus can ask the sidecar directly. Bounded: the query text is capped, at most two
//! evaluations run at once, and each has a deadline.

use crate::app::App;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_QUERY_BYTES: usize = 4096;
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

#[derive(Debug, Deserialize)]
pub struct QueryParams {
    query: Option<String>,
    time: Option<String>,
}

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/query", get(query_get).post(query_post))
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

/// Parses Prometheus's `time` parameter: Unix seconds (fractions allowed) or RFC 3339.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then_some((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn fmt_value(v: f64) -> String {
    sentinel_rules::eval::format_go_float(v)
}

fn labels_json(l: &sentinel_rules::labels::Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
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
            Some(ms) => ms,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    format!("invalid parameter \"time\": cannot parse {t:?} to a valid timestamp"),
                )
            }
        },
    };
    let expr = match sentinel_rules::eval::parse(&text) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    if let Err(e) = sentinel_rules::eval::check(&expr) {
        return error(StatusCode::BAD_REQUEST, "bad_data", e);
    }
    let Ok(_slot) = tokio::time::timeout(QUERY_TIMEOUT, SLOTS.acquire()).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many queries at once",
        );
    };
    let store = app.rules.store().clone();
    let job = tokio::task::spawn_blocking(move || {
        let ev = sentinel_rules::eval::Evaluator::new(&store, ts);
        ev.eval(&expr).map_err(|e| e.to_string())
    });
    let value = match tokio::time::timeout(QUERY_TIMEOUT, job).await {
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "query timed out",
            )
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Ok(Ok(Err(e))) => return error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e),
        Ok(Ok(Ok(v))) => v,
    };
    let t = ts as f64 / 1000.0;
    use sentinel_rules::eval::Value as V;
    let (kind, result) = match value {
        V::Scalar(v) => ("scalar", json!([t, fmt_value(v)])),
        V::String(s) => ("string", json!([t, s])),
        V::Vector(samples) => (
            "vector",
            Value::Array(
                samples
                    .iter()
                    .map(|s| json!({"metric": labels_json(&s.labels), "value": [t, fmt_value(s.v)]}))
                    .collect(),
            ),
        ),
        V::Matrix(series) => (
            "matrix",
            Value::Array(
                series
                    .iter()
                    .map(|s| {
                        json!({
                            "metric": labels_json(&s.labels),
                            "values": s.points.iter().map(|(pt, v)| json!([*pt as f64 / 1000.0, fmt_value(*v)])).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ),
        ),
    };
    Json(json!({"status": "success", "data": {"resultType": kind, "result": result}}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parameter_forms() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("NaN"), None);
    }
}
