//! Events ingest API (`POST /api/v1/events`): typed events from the application's
//! recovery layer and quality scorers. (Being written: see the issue.)

use serde::{Deserialize, Serialize};

/// `ingest:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 1 << 20,
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}
