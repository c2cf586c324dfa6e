//! The sidecar's own notification API, read-only over the notifier's state:
//! - `GET /api/v1/alerts/history` — fired/resolved/notified events (history retention)
//! - `GET /api/v1/notifications` — recent attempts, pending outbox entries, dead letters
//!
//! Alerts and silences are served in Alertmanager's API v2 shape by `am_api`
//! (`/api/v2/alerts`, `/api/v2/silences`, `/api/v2/silence/{id}`); `/api/v1/alerts` is
//! Prometheus's (`prom_api`).

use super::Route;
use crate::app::App;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// The notifications API's routes (mounted by `http::router`, listed on the status page).
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "GET",
            "/api/v1/alerts/history",
            "alert history (JSON)",
            get(history),
        ),
        Route::new(
            "GET",
            "/api/v1/notifications",
            "recent notifications (JSON)",
            get(notifications),
        ),
    ]
}

async fn history(State(app): State<Arc<App>>) -> Response {
    Json(app.notifier.history()).into_response()
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
