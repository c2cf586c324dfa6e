//! Notifications: routing, grouping, inhibition, durable outbox and receivers.
//! (Being written: see the issue.)

use serde::{Deserialize, Serialize};

/// `notify:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}
