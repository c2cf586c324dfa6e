//! The configuration a user writes: one YAML file, every field defaulted, unknown fields
//! rejected. Errors carry `file:line:column` and the field path. Each area's own section
//! type lives beside its code (`collect::system::SystemConfig`, ...); this module holds
//! the top level, shared value types (durations, secrets) and loading.

pub use sentinel_base::config::{
    either_secret, format_duration, locate, parse_duration, Dur, Secret, SecretFile, SecretString,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default configuration: what `cargo run --release` runs with.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

/// Top level of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`--listen` overrides).
    pub listen: String,
    /// Directory for durable state: outbox, alert state, seen ComfyUI history ids.
    pub data_dir: PathBuf,
    /// Labels added to every alert and to exported rules (e.g. `host`).
    pub external_labels: BTreeMap<String, String>,
    /// URL under which this sidecar is reachable, used in alert links.
    pub external_url: Option<String>,
    pub log: LogConfig,
    pub web: crate::http::WebConfig,
    pub limits: LimitsConfig,
    pub collectors: crate::collect::CollectorsConfig,
    pub ingest: crate::ingest::IngestConfig,
    pub rules: sentinel_rules::RulesConfig,
    /// Limits of every PromQL evaluation (query API, rules).
    pub query: sentinel_rules::eval::QueryConfig,
    pub notify: sentinel_notify::NotifyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:9188".to_string(),
            data_dir: PathBuf::from("./data"),
            external_labels: BTreeMap::new(),
            external_url: None,
            log: LogConfig::default(),
            web: Default::default(),
            limits: LimitsConfig::default(),
            collectors: Default::default(),
            ingest: Default::default(),
            rules: Default::default(),
            query: Default::default(),
            notify: Default::default(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directive (`info`, `comfy_sentinel=debug`); `RUST_LOG` overrides.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Hard caps that keep memory bounded whatever the input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most series one metric family may export; the rest are dropped and counted in
    /// `sentinel_series_dropped_total{family}`.
    pub max_series_per_family: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_series_per_family: 10_000,
        }
    }
}

/// A configuration problem, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}{sep}{message}", sep = if path.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path (`collectors.comfyui.timeout`), empty when unknown.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// An error found after parsing, located by its field path.
    pub fn at(file: &str, source: &str, path: &str, message: impl Into<String>) -> Self {
        let pos = locate::locate(source, path).unwrap_or(locate::Position { line: 1, column: 1 });
        ConfigError {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Where a config came from, for messages and reloads.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    Embedded,
    File(PathBuf),
}

impl ConfigSource {
    pub fn display_name(&self) -> String {
        match self {
            ConfigSource::Embedded => "<embedded default config>".to_string(),
            ConfigSource::File(p) => p.display().to_string(),
        }
    }
}

/// Parses and validates a config document. `file` names it in errors.
pub fn parse(file: &str, source: &str) -> Result<Config, ConfigError> {
    // An empty file (or one holding only comments) is the all-defaults config.
    if source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Config::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(source);
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_path_prefix(&strip_location(&inner.to_string()), &path);
        let serde_pos = inner.location().map(|l| (l.line(), l.column()));
        // serde points at the key; for a bad value, point at the value itself
        // (an unknown field is best shown at its key).
        let value_pos = if message.starts_with("unknown field") {
            None
        } else {
            locate::locate(source, &path)
                .filter(|p| serde_pos.is_none_or(|(l, _)| l == p.line))
                .map(|p| (p.line, p.column))
        };
        let (line, column) = value_pos.or(serde_pos).unwrap_or((1, 1));
        ConfigError {
            file: file.to_string(),
            line,
            column,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })?;
    // Rule file globs are relative to the config file, as Prometheus's rule_files are.
    config.rules.base_dir = std::path::Path::new(file).parent().map(|p| p.to_path_buf());
    validate(&config, file, source)?;
    Ok(config)
}

/// serde_yaml_ng appends " at line L column C"; we print the location up front instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_yaml_ng prefixes the parent path ("log: unknown field"); we print the full path.
fn strip_path_prefix(msg: &str, path: &str) -> String {
    if let Some((head, rest)) = msg.split_once(": ") {
        if !head.contains(' ') && path.starts_with(head) {
            return rest.to_string();
        }
    }
    msg.to_string()
}

/// Checks that need the whole parsed config (cross-field rules, address syntax).
fn validate(c: &Config, file: &str, source: &str) -> Result<(), ConfigError> {
    if c.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError::at(
            file,
            source,
            "listen",
            format!("invalid listen address {:?} (want host:port)", c.listen),
        ));
    }
    if c.limits.max_series_per_family == 0 {
        return Err(ConfigError::at(
            file,
            source,
            "limits.max_series_per_family",
            "must be at least 1",
        ));
    }
    c.web
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    c.collectors
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    c.ingest
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    c.rules
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    c.query
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    c.notify
        .validate()
        .map_err(|(p, m)| ConfigError::at(file, source, &p, m))?;
    Ok(())
}

/// Loads the config from a file, or the embedded default when `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    match path {
        None => Ok((parse("<embedded>", DEFAULT_CONFIG)?, ConfigSource::Embedded)),
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                file: name.clone(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read config file: {e}"),
            })?;
            Ok((parse(&name, &text)?, ConfigSource::File(p.to_path_buf())))
        }
    }
}

/// Re-reads the config from where it came from.
pub fn reload(source: &ConfigSource) -> Result<Config, ConfigError> {
    match source {
        ConfigSource::Embedded => load(None).map(|(c, _)| c),
        ConfigSource::File(p) => load(Some(p)).map(|(c, _)| c),
    }
}

/// The effective config as YAML, secrets redacted (for `check --print`).
pub fn render_redacted(c: &Config) -> String {
    serde_yaml_ng::to_string(c).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = parse("<embedded>", DEFAULT_CONFIG).expect("default config must parse");
        assert_eq!(c.listen, "0.0.0.0:9188");
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("x", "# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn unknown_field_is_located() {
        let err = parse("c.yaml", "listen: 127.0.0.1:1\nlog:\n  levle: debug\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 3), "{err}");
        assert!(
            err.to_string()
                .starts_with("c.yaml:3:3: log.levle: unknown field `levle`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let err = parse("c.yaml", "limits:\n  max_series_per_family: lots\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(
            err.to_string().contains("limits.max_series_per_family"),
            "{err}"
        );
    }

    #[test]
    fn bad_listen_is_located() {
        let err = parse("c.yaml", "log: {level: info}\nlisten: nowhere\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 9), "{err}");
    }
}
