//! What the dispatcher hands to the outbox: one group's alerts at one flush, for one
//! receiver. Alerts keep their raw `endsAt`; their status is decided against
//! `flushed_at`, so the rendered body is the same on every retry.

use chrono::{DateTime, Utc};
use sentinel_base::alert::Alert;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub alerts: Vec<Alert>,
    pub flushed_at: DateTime<Utc>,
}

impl Notification {
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| !a.is_resolved_at(self.flushed_at))
    }

    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.is_resolved_at(self.flushed_at))
    }
}
