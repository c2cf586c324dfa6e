//! The configuration a user writes: one YAML file, every field defaulted, unknown fields
//! rejected. Errors carry `file:line:column` and the field path. Each area's own section
//! type lives beside its code (`collect::system::SystemConfig`, ...); this module holds
//! the top level, shared value types (durations, secrets) and loading.

pub use sentinel_base::config::{
    either_secret, either_secret_at, format_duration, locate, parse_duration, Dur, DurationError,
    FieldError, Secret, SecretFile, SecretString,
};

pub mod auth;
pub mod ingest;
mod web;

pub use web::{load_server_config, BasicAuthConfig, TlsConfig, TlsError, WebConfig};

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
    /// Log level and format.
    pub log: LogConfig,
    /// TLS, authentication and connection limits of the HTTP server.
    pub web: WebConfig,
    /// Hard caps that keep memory bounded.
    pub limits: LimitsConfig,
    /// One section per collector.
    pub collectors: crate::collect::CollectorsConfig,
    /// The events ingest API (`POST /api/v1/events`).
    pub ingest: ingest::IngestConfig,
    /// Rule files and the evaluation interval.
    pub rules: sentinel_rules::RulesConfig,
    /// Limits of every PromQL evaluation (query API, rules).
    pub query: sentinel_rules::eval::QueryConfig,
    /// Routing, receivers, silences and inhibition of notifications.
    pub notify: sentinel_notify::NotifyConfig,
    /// Retention, budget and flushing of the on-disk history (docs/history.md).
    pub history: HistoryConfig,
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
            history: Default::default(),
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

/// `history:` every series at full resolution, in compressed chunks in
/// `data_dir/history/` (docs/history.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// How long samples are kept.
    pub retention: Dur,
    /// Budget of the history in memory (and so on disk); the oldest data is evicted
    /// first and counted in `sentinel_history_evicted_samples_total`.
    pub max_bytes: u64,
    /// How often new samples are written to disk: a SIGKILL loses at most this much.
    pub flush_interval: Dur,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention: Dur::secs(24 * 3600),
            max_bytes: sentinel_store::history::DEFAULT_MAX_BYTES,
            flush_interval: Dur::secs(30),
        }
    }
}

impl HistoryConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let d = |f: &str, m: &str| Err(FieldError::new(format!("history.{f}"), m));
        if self.retention.get() < std::time::Duration::from_secs(60) {
            return d("retention", "must be at least 1m");
        }
        if self.max_bytes < 1 << 20 {
            return d("max_bytes", "must be at least 1048576 (1 MiB)");
        }
        let f = self.flush_interval.get();
        if f < std::time::Duration::from_secs(1) || f > std::time::Duration::from_secs(600) {
            return d("flush_interval", "must be between 1s and 10m");
        }
        Ok(())
    }
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// An error at a known position. URL passwords and token-like query parameters in
    /// the message are redacted (a message may quote a bad URL).
    pub fn new(file: &str, line: usize, column: usize, path: &str, message: &str) -> Self {
        ConfigError {
            file: file.to_string(),
            line,
            column,
            path: path.to_string(),
            message: sentinel_base::text::redact_secrets_in(message).into_owned(),
        }
    }

    /// An error found after parsing, located by its field path.
    pub fn at(file: &str, source: &str, path: &str, message: impl Into<String>) -> Self {
        let pos = locate::locate(source, path).unwrap_or(locate::Position { line: 1, column: 1 });
        Self::new(file, pos.line, pos.column, path, &message.into())
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

/// Parses and validates a config document. `file` names it in errors; relative
/// `*_file` secret paths and rule globs resolve against its directory.
pub fn parse(file: &str, source: &str) -> Result<Config, ConfigError> {
    // An empty file (or one holding only comments) is the all-defaults config.
    if source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        let mut config = Config::default();
        config.collectors.resolve_timeouts();
        return Ok(config);
    }
    // Before any YAML parser: their time grows with the square of the nesting depth.
    let scan = sentinel_base::config::depth::scan(source, MAX_YAML_DEPTH);
    if let Some(e) = scan.too_deep {
        return Err(ConfigError::new(
            file,
            e.line,
            e.column,
            "",
            &format!("{} (the limit keeps parsing fast)", e.message),
        ));
    }
    if let Some(d) = locate::find_duplicate_key(source) {
        return Err(ConfigError::new(
            file,
            d.duplicate.line,
            d.duplicate.column,
            &d.path,
            &format!(
                "duplicate key (first set at {}:{})",
                d.first.line, d.first.column
            ),
        ));
    }
    let base_dir = Path::new(file).parent();
    let de = serde_yaml_ng::Deserializer::from_str(source);
    let result: Result<Config, _> = sentinel_base::config::with_secret_base_dir(base_dir, || {
        serde_path_to_error::deserialize(de)
    });
    let mut config = result.map_err(|e| {
        // A flow collection left open makes the parser read on into the next keys;
        // whatever it then reports, the open bracket is the mistake.
        if let Some(u) = &scan.unclosed {
            return ConfigError::new(file, u.line, u.column, "", &u.message);
        }
        let path = e.path().to_string();
        // Segments the parser could not name ("log.?") say nothing.
        let path = path.trim_end_matches('?').trim_end_matches('.').to_string();
        let inner = e.into_inner();
        let message = strip_path_prefix(&strip_location(&inner.to_string()), &path);
        let serde_pos = inner.location().map(|l| (l.line(), l.column()));
        // serde points at the key; for a bad value, point at the value itself
        // (an unknown field is best shown at its key).
        let value_pos = if message.starts_with("unknown field") {
            None
        } else if is_secret_error(&message) {
            // Read while the enclosing mapping is deserialized, so serde points at that
            // mapping's first key; the path names the secret's own field.
            locate::locate(source, &path).map(|p| (p.line, p.column))
        } else {
            locate::locate(source, &path)
                .filter(|p| serde_pos.is_none_or(|(l, _)| l == p.line))
                .map(|p| (p.line, p.column))
        };
        let (line, column) = value_pos.or(serde_pos).unwrap_or((1, 1));
        let message =
            explain_number_out_of_range(&message, source, line, column).unwrap_or(message);
        ConfigError::new(
            file,
            line,
            column,
            if path == "." { "" } else { &path },
            &message,
        )
    })?;
    // Rule file globs are relative to the config file, as Prometheus's rule_files are;
    // so are secret files (resolved while parsing) and the other files the config reads.
    config.rules.base_dir = base_dir.map(|p| p.to_path_buf());
    resolve_paths(&mut config, base_dir);
    validate(&config, file, source)?;
    // Unset collector timeouts become min(default, interval), shown by `check --print`.
    config.collectors.resolve_timeouts();
    check_build(&config, file, source)?;
    Ok(config)
}

/// Whether a parse error came from reading a secret (a `*_file` or a `${ENV}`
/// reference; see `sentinel_base::config::SecretFile`).
fn is_secret_error(message: &str) -> bool {
    [
        "secret file ",
        "cannot read secret file ",
        "environment variable ",
        "unterminated ${",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// Makes the relative paths of files the config reads (TLS certificate and key, CA
/// files) relative to the config file's directory, as secret files and rule globs are.
/// `data_dir` (where state is written) stays relative to the working directory.
fn resolve_paths(c: &mut Config, base: Option<&Path>) {
    let Some(base) = base.filter(|b| !b.as_os_str().is_empty()) else {
        return;
    };
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(t) = &mut c.web.tls {
        fix(&mut t.cert_file);
        fix(&mut t.key_file);
    }
    for r in &mut c.notify.receivers {
        r.webhooks
            .iter_mut()
            .filter_map(|w| w.ca_file.as_mut())
            .for_each(fix);
        r.emails
            .iter_mut()
            .filter_map(|w| w.ca_file.as_mut())
            .for_each(fix);
        r.alertmanagers
            .iter_mut()
            .filter_map(|w| w.ca_file.as_mut())
            .for_each(fix);
    }
    c.collectors
        .probes
        .targets
        .iter_mut()
        .filter_map(|t| t.tls_ca_file.as_mut())
        .for_each(fix);
}

/// The deepest nesting a config file may have (flow `[`/`{` and block levels
/// together); deeper files are refused before parsing.
pub const MAX_YAML_DEPTH: usize = sentinel_base::config::depth::MAX_YAML_DEPTH;

/// YAML reads a number too large for a float (`1e309`) as a string, and serde then
/// says "invalid type: string"; say what it is instead.
fn explain_number_out_of_range(
    message: &str,
    source: &str,
    line: usize,
    column: usize,
) -> Option<String> {
    let rest = message.strip_prefix("invalid type: string ")?;
    let expected = rest.split_once(", expected ").map(|(_, e)| e)?;
    if !matches!(
        expected,
        "f64" | "f32" | "u64" | "u32" | "u16" | "u8" | "usize" | "i64" | "i32" | "i16" | "i8"
    ) && !expected.contains("integer")
        && !expected.contains("number")
    {
        return None;
    }
    let text = locate::scalar_at(source, locate::Position { line, column })?;
    looks_numeric(text).then(|| format!("number out of range: {text} does not fit in {expected}"))
}

/// `[-+]digits[.digits][e[-+]digits]`: a number YAML could not represent.
fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '_');
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (digits(a) || a.is_empty())
                && (digits(b) || b.is_empty())
                && !(a.is_empty() && b.is_empty())
        }
        None => digits(mantissa),
    };
    mantissa_ok && exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)))
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
    // Sections report a field path and a reason; located here in the file. (The rules,
    // query and notify sections still report `(path, message)` pairs.)
    let at = |e: FieldError| ConfigError::at(file, source, &e.path, e.message);
    if c.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError::at(
            file,
            source,
            "listen",
            format!("invalid listen address {:?} (want host:port)", c.listen),
        ));
    }
    validate_log_level(&c.log.level)
        .map_err(|m| ConfigError::at(file, source, "log.level", m.to_string()))?;
    if let Some(u) = &c.external_url {
        match url::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") => {}
            Ok(_) => {
                return Err(ConfigError::at(
                    file,
                    source,
                    "external_url",
                    "must be an http:// or https:// URL",
                ))
            }
            Err(e) => {
                return Err(ConfigError::at(
                    file,
                    source,
                    "external_url",
                    format!("invalid URL {u:?}: {e}"),
                ))
            }
        }
    }
    if c.limits.max_series_per_family == 0 {
        return Err(ConfigError::at(
            file,
            source,
            "limits.max_series_per_family",
            "must be at least 1",
        ));
    }
    c.web.validate().map_err(at)?;
    c.collectors.validate().map_err(at)?;
    c.ingest.validate().map_err(at)?;
    // Rule files are YAML too: the same depth limit, before their parser sees them.
    if let Ok(sources) = c.rules.sources() {
        for (name, text) in &sources {
            if let Err(e) = sentinel_base::config::depth::check(text, MAX_YAML_DEPTH) {
                return Err(ConfigError::at(
                    file,
                    source,
                    "rules.files",
                    format!("{name}:{}:{}: {}", e.line, e.column, e.message),
                ));
            }
        }
    }
    c.rules.validate().map_err(at)?;
    c.query.validate().map_err(at)?;
    c.notify.validate().map_err(at)?;
    c.history.validate().map_err(at)?;
    Ok(())
}

/// Accepts what `run` can apply: a level (`trace`, `debug`, `info`, `warn`, `error`,
/// `off`) or `tracing` directives (`info,comfy_sentinel=debug`). A bare word that is
/// not a level (`verbose`) would be read as a target name and silence every log, so it
/// is refused.
pub fn validate_log_level(level: &str) -> Result<(), LogLevelError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    let want =
        "want trace, debug, info, warn, error, off, or directives like info,comfy_sentinel=debug";
    if level.trim().is_empty() {
        return Err(LogLevelError::Empty(want));
    }
    for d in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match d.rsplit_once('=') {
            Some((_, l)) => is_level(l),
            None => d.contains('[') || is_level(d),
        };
        if !ok {
            return Err(LogLevelError::Invalid(d.to_string(), want));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| LogLevelError::Filter(level.to_string(), e.to_string()))
}

/// Why `log.level` cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogLevelError {
    #[error("empty log level ({0})")]
    Empty(&'static str),
    #[error("invalid log level {0:?} ({1})")]
    Invalid(String, &'static str),
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
}

/// Builds, and drops, what `run` builds from the config beyond plain values: the
/// notification receivers (HTTP clients, CA files, signing keys, SMTP TLS) and the
/// ComfyUI request headers. What `run` could not build is an error here, so `check`
/// refuses it and a reload keeps the running config.
fn check_build(c: &Config, file: &str, source: &str) -> Result<(), ConfigError> {
    let at = |e: FieldError| ConfigError::at(file, source, &e.path, e.message);
    c.notify.check_build().map_err(at)?;
    let comfy = &c.collectors.comfyui;
    if comfy.enabled {
        let token = either_secret_at(
            &comfy.bearer_token,
            &comfy.bearer_token_file,
            "collectors.comfyui.bearer_token",
        )
        .map_err(at)?;
        if let Some(t) = token {
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose())).is_err() {
                let p = if comfy.bearer_token_file.is_some() {
                    "collectors.comfyui.bearer_token_file"
                } else {
                    "collectors.comfyui.bearer_token"
                };
                return Err(ConfigError::at(
                    file,
                    source,
                    p,
                    "the token holds characters an HTTP header cannot carry",
                ));
            }
        }
        for (name, value) in &comfy.headers {
            if reqwest::header::HeaderValue::from_str(value.0.expose()).is_err() {
                return Err(ConfigError::at(
                    file,
                    source,
                    &format!("collectors.comfyui.headers.{name}"),
                    "the value holds characters an HTTP header cannot carry",
                ));
            }
        }
    }
    Ok(())
}

/// The 1-based line and column of byte offset `at` in `bytes` (valid UTF-8 before it).
fn line_col(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = std::str::from_utf8(&before[line_start..]).map_or(1, |s| s.chars().count() + 1);
    (line, column)
}

/// Loads the config from a file, or the embedded default when `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    match path {
        None => Ok((parse("<embedded>", DEFAULT_CONFIG)?, ConfigSource::Embedded)),
        Some(p) => {
            let name = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|e| {
                ConfigError::new(&name, 1, 1, "", &format!("cannot read config file: {e}"))
            })?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let (line, column) = line_col(bytes, at);
                ConfigError::new(
                    &name,
                    line,
                    column,
                    "",
                    &format!(
                        "invalid UTF-8: byte 0x{:02X} (a config file must be UTF-8 text)",
                        bytes[at]
                    ),
                )
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
    // Secret types serialize as `<redacted>` already; URLs may still carry a password
    // or a token parameter (`http://user:SECRET@alertmanager:9093`).
    fn redact(v: &mut serde_yaml_ng::Value) {
        use serde_yaml_ng::Value;
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(r) = sentinel_base::text::redact_secrets_in(s) {
                    *s = r;
                }
            }
            Value::Sequence(items) => items.iter_mut().for_each(redact),
            Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| redact(v)),
            Value::Tagged(t) => redact(&mut t.value),
            _ => {}
        }
    }
    match serde_yaml_ng::to_value(c) {
        Ok(mut v) => {
            redact(&mut v);
            serde_yaml_ng::to_string(&v)
                .unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
        }
        Err(e) => format!("# cannot render config: {e}\n"),
    }
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
        // Unset collector timeouts come back resolved (min(default, interval)).
        let mut defaults = Config::default();
        defaults.collectors.resolve_timeouts();
        assert_eq!(parse("x", "# nothing\n").unwrap(), defaults);
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
    fn duplicate_key_is_reported_at_the_duplicate_not_the_first() {
        let err = parse(
            "c.yaml",
            "listen: 127.0.0.1:1\nlog:\n  level: info\nlisten: 127.0.0.1:2\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (4, 1), "{err}");
        assert_eq!(
            err.to_string(),
            "c.yaml:4:1: listen: duplicate key (first set at 1:1)"
        );
        let err = parse("c.yaml", "log:\n  level: info\n  level: debug\n").unwrap_err();
        assert_eq!(
            (err.line, err.column, err.path.as_str()),
            (3, 3, "log.level"),
            "{err}"
        );
    }

    #[test]
    fn unclosed_flow_mapping_is_reported_as_unclosed_not_as_a_type_error() {
        for src in [
            "log: {level: info, format: text\n\nlisten: \"127.0.0.1:1\"\n",
            "log: {level: info\n",
        ] {
            let err = parse("c.yaml", src).unwrap_err();
            assert_eq!((err.line, err.column), (1, 6), "{err}");
            assert!(err.message.contains("unclosed flow mapping `{`"), "{err}");
        }
    }

    #[test]
    fn number_out_of_range_is_not_called_a_string() {
        let err = parse(
            "c.yaml",
            "ingest:\n  rate_limit:\n    requests_per_second: 1e309\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (3, 26), "{err}");
        assert!(
            err.message.starts_with("number out of range: 1e309"),
            "{err}"
        );
        // A real string is still a type error.
        let err = parse("c.yaml", "limits:\n  max_series_per_family: lots\n").unwrap_err();
        assert!(err.message.contains("invalid type: string"), "{err}");
        assert!(looks_numeric("-1.5e-3") && looks_numeric("1_000") && !looks_numeric("e5"));
    }

    #[test]
    fn invalid_log_level_is_refused_and_located() {
        for bad in ["verbose", "", "info,comfy_sentinel=loud", "[[["] {
            let err = parse("c.yaml", &format!("log:\n  level: \"{bad}\"\n")).unwrap_err();
            assert_eq!((err.line, err.path.as_str()), (2, "log.level"), "{err}");
        }
        for good in [
            "debug",
            "WARN",
            "info,comfy_sentinel=debug,hyper=off",
            "off",
        ] {
            parse("c.yaml", &format!("log:\n  level: \"{good}\"\n")).expect(good);
        }
    }

    #[test]
    fn external_url_that_run_cannot_use_is_refused_by_check() {
        let err = parse(
            "c.yaml",
            "external_url: \"not a url\"\nnotify:\n  route: {receiver: a}\n  receivers: [{name: a, webhooks: [{url: \"http://127.0.0.1:9/x\"}]}]\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.path.as_str()), (1, "external_url"), "{err}");
    }

    #[test]
    fn receiver_that_cannot_be_built_is_refused_by_check() {
        let err = parse(
            "c.yaml",
            "notify:\n  route: {receiver: a}\n  receivers:\n    - name: a\n      webhooks: [{url: \"https://h/x\", ca_file: /nonexistent/ca.pem}]\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "notify.receivers[0].webhooks[0]", "{err}");
        assert!(err.message.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_fast_before_the_yaml_parser() {
        let src = format!("x: {}", "[".repeat(100_000));
        let t = std::time::Instant::now();
        let err = parse("c.yaml", &src).unwrap_err();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        assert!(err.message.contains("nesting deeper than 64"), "{err}");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn url_passwords_in_errors_and_print_are_redacted() {
        let err = parse(
            "c.yaml",
            "notify:\n  route: {receiver: a}\n  receivers: [{name: a, webhooks: [{url: \"ftp://u:SECRET@h/x\"}]}]\n",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let c = parse(
            "c.yaml",
            "notify:\n  route: {receiver: a}\n  receivers: [{name: a, alertmanagers: [{urls: [\"http://u:SECRET@h:9093\"]}], webhooks: [{url: \"https://h/x?token=SECRET\"}]}]\n",
        )
        .unwrap();
        let printed = render_redacted(&c);
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("http://u:<redacted>@h:9093"), "{printed}");
    }

    #[test]
    fn non_utf8_config_is_located_at_the_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            b"listen: \"127.0.0.1:1\"\nlog:\n  level: \"\xc3\xa9x\xff\"\n",
        )
        .unwrap();
        let err = load(Some(&p)).unwrap_err();
        assert_eq!((err.line, err.column), (3, 13), "{err}");
        assert!(err.message.contains("invalid UTF-8: byte 0xFF"), "{err}");
    }

    #[test]
    fn secret_file_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ingest.token"), "tok\n").unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "ingest:\n  token_file: ingest.token\n").unwrap();
        let (c, _) = load(Some(&p)).expect("relative secret file next to the config");
        assert_eq!(
            c.ingest.token_file.unwrap().path,
            dir.path().join("ingest.token")
        );
    }

    #[test]
    fn ca_file_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "notify:\n  route: {receiver: a}\n  receivers: [{name: a, webhooks: [{url: \"https://h/x\", ca_file: ca.pem}]}]\n",
        )
        .unwrap();
        let err = load(Some(&p)).unwrap_err();
        // Read from beside the config (and found: it is its content that is refused).
        assert!(
            err.message
                .contains(&format!("{}: ", dir.path().join("ca.pem").display())),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_in_a_rule_file_is_refused_fast() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("deep.rules.yaml"),
            format!("groups: {}", "[".repeat(100_000)),
        )
        .unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "rules:\n  files: [\"*.rules.yaml\"]\n").unwrap();
        let t = std::time::Instant::now();
        let err = load(Some(&p)).unwrap_err();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(err.path, "rules.files", "{err}");
        assert!(err.message.contains("deep.rules.yaml:1:"), "{err}");
        assert!(err.message.contains("nesting deeper than 64"), "{err}");
    }

    #[test]
    fn depth_prescan_passes_every_shipped_yaml_file() {
        // A false "too deep" or "unclosed" on a real file would refuse a good config.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        let mut dirs = vec![
            root.join("config"),
            root.join("rules"),
            root.join("deploy"),
            root.join("examples"),
            root.join("tests/fixtures"),
        ];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    let Ok(text) = std::fs::read_to_string(&p) else {
                        continue;
                    };
                    let scan = sentinel_base::config::depth::scan(&text, MAX_YAML_DEPTH);
                    assert_eq!(scan, Default::default(), "{}", p.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 3, "found only {seen} YAML files");
    }

    #[test]
    fn bad_listen_is_located() {
        let err = parse("c.yaml", "log: {level: info}\nlisten: nowhere\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 9), "{err}");
    }
}
