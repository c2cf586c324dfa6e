//! Rule engine: PromQL subset over the sample store, warning/critical levels, Prometheus
//! alerting semantics. Data flows store → eval → rules (groups, levels, templates) →
//! alert state machine → `AlertSink`; `unittest` runs promtool test files on the same
//! path and `export` writes the rules back out as plain Prometheus rule files.

pub mod eval;
pub mod labels;
pub mod rulefile;
pub mod store;
pub mod template;

use sentinel_base::config::Dur;
use serde::{Deserialize, Serialize};

/// `rules:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule file globs; the embedded default rules when empty.
    pub files: Vec<String>,
    pub evaluation_interval: Dur,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval: Dur::secs(5),
        }
    }
}

impl RulesConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}
