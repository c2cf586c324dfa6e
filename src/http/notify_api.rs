//! The notification API, read/write over the notifier's state:
//! - `GET /api/v1/alerts` — known alerts with status, silences and inhibition
//! - `GET /api/v1/alerts/history` — fired/resolved/notified events (history retention)
//! - `GET /api/v1/silences`, `POST /api/v1/silences` (Alertmanager's silence body;
//!   with `id` it updates), `DELETE /api/v1/silences/{id}` (expires it)
//! - `GET /api/v1/notifications` — recent attempts, pending outbox entries, dead letters

use crate::app::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use sentinel_notify::dispatch::silence::Silence;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/silences", get(list_silences).post(post_silence))
        .route("/api/v1/silences/{id}", delete(delete_silence))
        .route("/api/v1/notifications", get(notifications))
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

async fn post_silence(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let s: Silence = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("invalid silence: {e}") })),
            )
                .into_response()
        }
    };
    match app.notifier.put_silence(s) {
        Ok(s) => Json(json!({ "silenceID": s.id })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
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
