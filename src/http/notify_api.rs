//! The notification API, read/write over the notifier's state:
//! - `GET /api/v1/alerts` — known alerts with status, silences and inhibition
//! - `GET /api/v1/alerts/history` — fired/resolved/notified events (history retention)
//! - `GET /api/v1/silences`, `POST /api/v1/silences` (Alertmanager's silence body;
//!   with `id` it updates), `DELETE /api/v1/silences/{id}` (expires it)
//! - `GET /api/v1/notifications` — recent attempts, pending outbox entries, dead letters
//!
//! The writes (POST and DELETE) are loopback-only unless `web:` has credentials (the
//! `auth` middleware in `http::mod`). A silence body is capped at 64 KiB (413), its
//! fields and the number of silences in force are capped too (422, see
//! `sentinel_notify::dispatch::silence`); every refusal is counted in
//! `sentinel_silences_rejected_total{reason}`.

use super::Route;
use crate::app::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use sentinel_notify::dispatch::silence::{Silence, SilenceError, MAX_BODY_BYTES};
use serde_json::json;
use std::sync::Arc;

/// The notifications API's routes (mounted by `http::router`, listed on the status page).
pub fn routes() -> Vec<Route> {
    vec![
        Route::new("GET", "/api/v1/alerts", "active alerts (JSON)", get(alerts)),
        Route::new(
            "GET",
            "/api/v1/alerts/history",
            "alert history (JSON)",
            get(history),
        ),
        Route::new(
            "GET, POST",
            "/api/v1/silences",
            "silences (JSON; POST adds one)",
            get(list_silences).post(post_silence),
        ),
        Route::new(
            "DELETE",
            "/api/v1/silences/{id}",
            "expires a silence",
            delete(delete_silence),
        ),
        Route::new(
            "GET",
            "/api/v1/notifications",
            "recent notifications (JSON)",
            get(notifications),
        ),
    ]
}

async fn alerts(State(app): State<Arc<App>>) -> Response {
    Json(app.notifier.alerts()).into_response()
}

async fn history(State(app): State<Arc<App>>) -> Response {
    Json(app.notifier.history()).into_response()
}

async fn list_silences(State(app): State<Arc<App>>) -> Response {
    let now = chrono::Utc::now();
    let list: Vec<serde_json::Value> = app
        .notifier
        .silences()
        .into_iter()
        .map(|s| {
            let state = s.state(now);
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["status"] = json!({ "state": state });
            v
        })
        .collect();
    Json(list).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Whether `e` (or what it wraps) is the body-size limit of `axum::body::to_bytes`.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

async fn post_silence(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let too_large = |app: &App| {
        app.notifier.silence_rejected("body_too_large");
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("silence body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        super::discard_body(body).await;
        return too_large(&app);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return too_large(&app),
        Err(e) if super::conns::is_body_timeout(&e) => {
            return error(StatusCode::REQUEST_TIMEOUT, e.to_string())
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    };
    let s: Silence = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            app.notifier.silence_rejected("invalid");
            return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}"));
        }
    };
    match app.notifier.put_silence(s) {
        Ok(s) => Json(json!({ "silenceID": s.id })).into_response(),
        Err(e @ SilenceError::Limit { .. }) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e @ SilenceError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ SilenceError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn delete_silence(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if app.notifier.expire_silence(&id) {
        Json(json!({ "expired": id })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("silence {id} not found") })),
        )
            .into_response()
    }
}

async fn notifications(State(app): State<Arc<App>>) -> Response {
    let (recent, pending, dead) = app.notifier.notifications();
    let pending: Vec<serde_json::Value> = pending
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "receiver": e.receiver, "integration": e.integration,
                "groupKey": e.notification.group_key, "alerts": e.notification.alerts.len(),
                "attempts": e.attempts, "nextAttemptAt": e.next_at, "lastError": e.last_error,
                "createdAt": e.created_at,
            })
        })
        .collect();
    let dead: Vec<serde_json::Value> = dead
        .iter()
        .map(|d| {
            json!({
                "id": d.entry.id, "receiver": d.entry.receiver, "integration": d.entry.integration,
                "groupKey": d.entry.notification.group_key, "alerts": d.entry.notification.alerts,
                "attempts": d.entry.attempts, "at": d.at, "reason": d.reason,
            })
        })
        .collect();
    Json(json!({
        "persistent": app.notifier.outbox().persistent(),
        "recent": recent,
        "pending": pending,
        "deadLetters": dead,
    }))
    .into_response()
}
