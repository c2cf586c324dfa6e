//! Rule engine: PromQL subset over the sample store, warning/critical levels, Prometheus
//! alerting semantics. Data flows store → eval → rules (groups, levels, templates) →
//! alert state machine → `AlertSink`; `unittest` runs promtool test files on the same
//! path and `export` writes the rules back out as plain Prometheus rule files.

#![forbid(unsafe_code)]

pub mod cli;
pub mod engine;
pub mod eval;
pub mod export_operator;
pub mod group;
pub mod rulefile;
pub mod template;

/// The store and label sets live in their own crate; these paths stay for callers.
pub use sentinel_store::{labels, store};
pub mod unittest;

use sentinel_base::config::{Dur, FieldError};
use serde::{Deserialize, Serialize};

/// `rules:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule file globs; the embedded default rules when empty.
    pub files: Vec<String>,
    /// Evaluation interval of groups without their own `interval`.
    pub evaluation_interval: Dur,
    /// Directory relative rule globs resolve against (the config file's); set by the loader.
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval: Dur::secs(5),
            base_dir: None,
        }
    }
}

/// The default rule files compiled into the binary, used when `rules.files` is empty:
/// `(name, text)` pairs, `include_str!` of the repository's `rules/*.yaml` (build.rs).
pub const DEFAULT_RULES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/default_rules.rs"));

impl RulesConfig {
    /// Checks that the globs match readable files and that every rule loads.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.evaluation_interval.get().is_zero() {
            return Err(FieldError::new(
                "rules.evaluation_interval",
                "must be greater than 0",
            ));
        }
        let sources = self
            .sources()
            .map_err(|e| FieldError::new("rules.files", e.to_string()))?;
        for (name, text) in &sources {
            rulefile::parse_rule_file(text, name)
                .map_err(|e| FieldError::new("rules.files", e.to_string()))?;
        }
        Ok(())
    }

    /// The rule files' names and texts: the globbed files, or the embedded defaults.
    pub fn sources(&self) -> Result<Vec<(String, String)>, rulefile::LoadError> {
        if self.files.is_empty() {
            return Ok(DEFAULT_RULES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect());
        }
        let mut out = Vec::new();
        for pattern in &self.files {
            let base = self
                .base_dir
                .as_deref()
                .filter(|b| !b.as_os_str().is_empty());
            let paths = rulefile::expand_globs(std::slice::from_ref(pattern), base)?;
            if paths.is_empty() {
                return Err(rulefile::LoadError::Invalid(format!(
                    "rule file pattern {pattern:?} matches no file"
                )));
            }
            for p in paths {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(&p).map_err(|e| rulefile::LoadError::Io {
                    file: name.clone(),
                    message: e.to_string(),
                })?;
                out.push((name, text));
            }
        }
        Ok(out)
    }
}
