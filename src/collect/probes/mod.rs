//! Dependency probes: is each configured HTTP(S) or TCP dependency reachable, how long
//! does each phase take, and when does its certificate expire. Every run probes all
//! targets at once, each under its own timeout, so a hung target never delays another;
//! a run ends when the slowest target's timeout does at the latest.
//!
//! This file holds the `collectors.probes` config, the collector and its families. The
//! hand-assembled HTTP/TCP client that times each phase is `client.rs`; the TLS parts
//! (client configs, certificate expiry) are `tls.rs`.
//!
//! Metrics use blackbox_exporter's names and meanings, with a `target` label (the
//! target's `name`) since one sidecar probes many targets:
//! - `probe_success{target}` 1 or 0; `probe_duration_seconds{target}` the whole probe.
//! - `probe_dns_lookup_time_seconds{target}`.
//! - `probe_http_duration_seconds{target,phase}`, phase ∈ resolve, connect, tls,
//!   processing (request sent → response headers), transfer (body read), each summed
//!   over redirects as blackbox_exporter does. The total is not a phase here: it is
//!   `probe_duration_seconds`, as in blackbox_exporter.
//! - `probe_http_status_code`, `probe_http_content_length` (when the header is sent),
//!   `probe_http_uncompressed_body_length`, `probe_http_version`,
//!   `probe_http_redirects`, `probe_http_ssl` (final response over TLS),
//!   `probe_ip_protocol` (4 or 6).
//! - `probe_ssl_earliest_cert_expiry{target}` (unix seconds, earliest `notAfter` in the
//!   chain the peer sent) and `probe_tls_version_info{target,version}`.
//!
//! A value the probe did not get (no response, no TLS) is left out, not reported as 0.

mod client;
mod tls;

pub use client::ProbeResult;
use client::{split_host_port, Target};
use sentinel_base::config::FieldError;

use super::{CollectError, Collector};
use crate::metrics::MetricFamily;
use parking_lot::Mutex;
use sentinel_base::config::{Dur, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Most targets in one config: each costs a task and a connection per run.
pub const MAX_TARGETS: usize = 100;

/// `collectors.probes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbesConfig {
    /// Probe the targets (nothing runs while `targets` is empty).
    pub enabled: bool,
    /// How often to probe every target.
    pub interval: Dur,
    /// Limit of one whole run; every target's own `timeout` must be shorter. Unset:
    /// `min(10s, interval)`.
    pub timeout: Option<Dur>,
    /// The dependencies to probe.
    pub targets: Vec<ProbeTarget>,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            enabled: true,
            interval: Dur::secs(15),
            timeout: None,
            targets: Vec::new(),
        }
    }
}

/// One dependency: exactly one of `http` and `tcp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeTarget {
    /// The `target` label; unique.
    pub name: String,
    /// `http://` or `https://` URL to request.
    pub http: Option<String>,
    /// `host:port` to connect to (`[v6addr]:port` for IPv6).
    pub tcp: Option<String>,
    /// Limit of this target's whole probe, redirects included. Default: 5s, or 90% of
    /// the probes' `timeout` when that is shorter, so the run ends before its own limit.
    pub timeout: Option<Dur>,
    /// HTTP method.
    pub method: String,
    /// Status codes that count as success: numbers (`200`) or classes (`"2xx"`);
    /// empty means any 2xx.
    pub expect_status: Vec<StatusMatch>,
    /// Extra request headers; values may use `${ENV}`. Not sent to another origin
    /// after a redirect.
    pub headers: BTreeMap<String, SecretString>,
    /// Follow redirects (up to 10); otherwise the 3xx answer is the result.
    pub follow_redirects: bool,
    /// For `tcp` targets: do a TLS handshake after connecting (reads the certificate).
    pub tls: bool,
    /// PEM CA certificates that replace the public roots for this target.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate (the expiry is still read and exported).
    pub insecure_skip_verify: bool,
}

impl Default for ProbeTarget {
    fn default() -> Self {
        ProbeTarget {
            name: String::new(),
            http: None,
            tcp: None,
            timeout: None,
            method: "GET".to_string(),
            expect_status: Vec::new(),
            headers: BTreeMap::new(),
            follow_redirects: true,
            tls: false,
            tls_ca_file: None,
            insecure_skip_verify: false,
        }
    }
}

/// A status code (`200`) or class (`2xx`) in `expect_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl Serialize for StatusMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StatusMatch::Code(c) => s.serialize_u16(*c),
            StatusMatch::Class(c) => s.serialize_str(&format!("{c}xx")),
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let bad = |v: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!(
                "expected a status code 100-599 or a class like \"2xx\", got {v}"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::N(n) if (100..=599).contains(&n) => Ok(StatusMatch::Code(n as u16)),
            Raw::N(n) => Err(bad(&n)),
            Raw::S(s) => {
                let t = s.trim().to_ascii_lowercase();
                if let Some(c) = t.strip_suffix("xx") {
                    match c.parse::<u16>() {
                        Ok(c @ 1..=5) => Ok(StatusMatch::Class(c)),
                        _ => Err(bad(&format!("{s:?}"))),
                    }
                } else {
                    match t.parse::<u16>() {
                        Ok(n @ 100..=599) => Ok(StatusMatch::Code(n)),
                        _ => Err(bad(&format!("{s:?}"))),
                    }
                }
            }
        }
    }
}

impl ProbesConfig {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    /// The run's timeout: the explicit one, or `min(10s, interval)`.
    pub fn timeout(&self) -> std::time::Duration {
        super::resolve_timeout(self.timeout, Self::DEFAULT_TIMEOUT, self.interval.get())
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        super::validate_schedule(self.interval.get(), self.timeout, Self::DEFAULT_TIMEOUT)?;
        if self.targets.len() > MAX_TARGETS {
            return Err(FieldError::new(
                "targets",
                format!("at most {MAX_TARGETS} targets"),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            t.validate(Dur(self.timeout()))
                .map_err(|e| e.within(&format!("targets[{i}]")))?;
            if !names.insert(t.name.as_str()) {
                return Err(FieldError::new(
                    format!("targets[{i}].name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
        }
        Ok(())
    }

    /// What a reload compares: the section plus a digest of the header values, whose
    /// serialized form is redacted (a changed token must restart the probes).
    pub fn fingerprint(&self) -> impl Serialize + '_ {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in &self.targets {
            for (k, v) in &t.headers {
                h.update(k.as_bytes());
                h.update([0]);
                h.update(v.0.expose().as_bytes());
                h.update([0]);
            }
        }
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        (self, digest)
    }
}

impl ProbeTarget {
    fn validate(&self, run_timeout: Dur) -> Result<(), FieldError> {
        let err = |f: &str, m: String| Err(FieldError::new(f, m));
        if self.name.is_empty() || self.name.len() > 128 {
            return err("name", "must be 1 to 128 characters".into());
        }
        match (&self.http, &self.tcp) {
            (Some(u), None) => {
                match url::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                    _ => return err("http", format!("{u:?} is not an http(s) URL with a host")),
                }
                if self.tls {
                    return err("tls", "applies to tcp targets; use an https URL".into());
                }
            }
            (None, Some(a)) => {
                if let Err(e) = split_host_port(a) {
                    return err("tcp", e.to_string());
                }
                if !self.tls && (self.tls_ca_file.is_some() || self.insecure_skip_verify) {
                    return err("tls", "TLS options are set but tls is false".into());
                }
            }
            (Some(_), Some(_)) => return err("tcp", "set either http or tcp, not both".into()),
            (None, None) => return err("name", "the target needs http or tcp".into()),
        }
        if let Some(t) = self.timeout {
            if t.get().is_zero() || t >= run_timeout {
                return err(
                    "timeout",
                    format!(
                        "must be more than 0s and less than the probes timeout ({run_timeout})"
                    ),
                );
            }
        }
        if http::Method::from_bytes(self.method.as_bytes()).is_err() {
            return err("method", format!("invalid HTTP method {:?}", self.method));
        }
        for (k, v) in &self.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v.0.expose()).is_err()
            {
                return err("headers", format!("invalid header {k:?}"));
            }
        }
        if let Some(p) = &self.tls_ca_file {
            if let Err(e) = tls::load_ca_file(p) {
                return err("tls_ca_file", e.to_string());
            }
        }
        Ok(())
    }
}

/// Probes every configured target each run.
pub struct ProbesCollector {
    targets: Vec<Target>,
    /// Last outcome per target, to log changes rather than every failure.
    last: Mutex<Vec<Option<bool>>>,
}

impl ProbesCollector {
    /// The collector when enabled with at least one target.
    pub fn from_config(cfg: &ProbesConfig, _ctx: &super::BuildContext) -> Option<Self> {
        if !cfg.enabled || cfg.targets.is_empty() {
            return None;
        }
        let targets: Vec<Target> = cfg
            .targets
            .iter()
            .filter_map(|t| match Target::new(t, cfg.timeout()) {
                Ok(t) => Some(t),
                // Validation accepted it, so this cannot happen short of a bug.
                Err(e) => {
                    tracing::error!(probe = %t.name, error = %e, "probe target skipped");
                    None
                }
            })
            .collect();
        Some(ProbesCollector {
            last: Mutex::new(vec![None; targets.len()]),
            targets,
        })
    }

    /// Probes all targets concurrently and returns their results in config order.
    pub async fn probe_all(&self) -> Vec<ProbeResult> {
        futures_util::future::join_all(self.targets.iter().map(|t| t.probe())).await
    }

    fn log_changes(&self, results: &[ProbeResult]) {
        let mut last = self.last.lock();
        for ((t, r), prev) in self.targets.iter().zip(results).zip(last.iter_mut()) {
            if *prev != Some(r.success) {
                if r.success {
                    tracing::info!(probe = %t.cfg.name, "probe succeeded");
                } else {
                    tracing::warn!(
                        probe = %t.cfg.name,
                        error = r.error.as_deref().unwrap_or(""),
                        "probe failed"
                    );
                }
                *prev = Some(r.success);
            }
        }
    }
}

/// The families for one run's results.
pub fn families(names: &[&str], results: &[ProbeResult]) -> Vec<MetricFamily> {
    let gauge = |name: &str, help: &str| MetricFamily::gauge(name, help);
    let mut success = gauge("probe_success", "Whether the probe succeeded.");
    let mut duration = gauge(
        "probe_duration_seconds",
        "How long the whole probe took, redirects included.",
    );
    let mut dns = gauge(
        "probe_dns_lookup_time_seconds",
        "How long resolving the target's name took.",
    );
    let mut phases = gauge(
        "probe_http_duration_seconds",
        "Duration of an HTTP probe by phase, summed over redirects.",
    );
    let mut status = gauge(
        "probe_http_status_code",
        "Response HTTP status code of the last request.",
    );
    let mut length = gauge(
        "probe_http_content_length",
        "Content-Length of the last response, when sent.",
    );
    let mut body_length = gauge(
        "probe_http_uncompressed_body_length",
        "Body bytes read of the last response (reading stops at 16 MiB).",
    );
    let mut http_version = gauge("probe_http_version", "HTTP version of the last response.");
    let mut ip_protocol = gauge(
        "probe_ip_protocol",
        "The IP protocol of the connection: 4 or 6.",
    );
    let mut redirects = gauge("probe_http_redirects", "The number of redirects followed.");
    let mut ssl = gauge(
        "probe_http_ssl",
        "Whether the last request of the probe used TLS.",
    );
    let mut expiry = gauge(
        "probe_ssl_earliest_cert_expiry",
        "Earliest notAfter (unix seconds) in the certificate chain the target sent.",
    );
    let mut version = gauge(
        "probe_tls_version_info",
        "The TLS version the probe negotiated; always 1.",
    );
    for (name, r) in names.iter().zip(results) {
        let l = [("target", *name)];
        success.push(&l, if r.success { 1.0 } else { 0.0 });
        duration.push(&l, r.duration);
        if let Some(v) = r.dns {
            dns.push(&l, v);
        }
        if let Some(v) = r.redirects {
            // Only HTTP probes set redirects; the phases belong to them.
            for (phase, v) in [
                ("resolve", r.resolve),
                ("connect", r.connect),
                ("tls", r.tls),
                ("processing", r.processing),
                ("transfer", r.transfer),
            ] {
                phases.push(&[("target", *name), ("phase", phase)], v);
            }
            redirects.push(&l, f64::from(v));
        }
        if let Some(v) = r.status {
            status.push(&l, f64::from(v));
        }
        if let Some(v) = r.content_length {
            length.push(&l, v as f64);
        }
        if let Some(v) = r.body_length {
            body_length.push(&l, v as f64);
        }
        if let Some(v) = r.http_version {
            http_version.push(&l, v);
        }
        if let Some(v) = r.ip_protocol {
            ip_protocol.push(&l, f64::from(v));
        }
        if let Some(v) = r.ssl {
            ssl.push(&l, if v { 1.0 } else { 0.0 });
        }
        if let Some(v) = r.cert_expiry {
            expiry.push(&l, v);
        }
        if let Some(v) = r.tls_version {
            version.push(&[("target", *name), ("version", v)], 1.0);
        }
    }
    [
        success,
        duration,
        dns,
        ip_protocol,
        phases,
        status,
        length,
        body_length,
        http_version,
        redirects,
        ssl,
        expiry,
        version,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .collect()
}

#[async_trait::async_trait]
impl Collector for ProbesCollector {
    fn name(&self) -> &'static str {
        "probes"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let results = self.probe_all().await;
        self.log_changes(&results);
        let names: Vec<&str> = self.targets.iter().map(|t| t.cfg.name.as_str()).collect();
        Ok(families(&names, &results))
    }
}

/// What a reload compares (see [`ProbesConfig::fingerprint`]).
pub fn fingerprint(cfg: &ProbesConfig) -> impl Serialize + '_ {
    cfg.fingerprint()
}

/// The list's entry for this collector (see `collect::COLLECTORS`).
pub fn spec(
    c: &super::CollectorsConfig,
    ctx: &super::BuildContext,
) -> Option<super::CollectorSpec> {
    let cfg = &c.probes;
    ProbesCollector::from_config(cfg, ctx)
        .map(|p| super::CollectorSpec::new(p, &fingerprint(cfg), cfg.interval.get(), cfg.timeout()))
}

#[cfg(test)]
mod tests {
    use super::client::{connect_host, DEFAULT_TARGET_TIMEOUT};
    use super::*;
    use std::time::Duration;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("db:5432").unwrap(), ("db".into(), 5432));
        assert_eq!(split_host_port("[::1]:80").unwrap(), ("::1".into(), 80));
        for bad in ["db", "db:x", ":80", "::1:80", "[::1:80", "db:0"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_url_hosts_lose_their_brackets() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(connect_host(&u("https://[::1]:8443/x")).unwrap(), "::1");
        assert_eq!(connect_host(&u("http://127.0.0.1/")).unwrap(), "127.0.0.1");
        assert_eq!(
            connect_host(&u("http://Example.COM/")).unwrap(),
            "example.com"
        );
    }

    #[test]
    fn status_matches_parse_numbers_and_classes() {
        let m: Vec<StatusMatch> = serde_yaml_ng::from_str("[200, \"3xx\", \"404\"]").unwrap();
        assert_eq!(
            m,
            vec![
                StatusMatch::Code(200),
                StatusMatch::Class(3),
                StatusMatch::Code(404)
            ]
        );
        assert!(m[1].matches(301) && !m[1].matches(200));
        for bad in ["[99]", "[600]", "[\"6xx\"]", "[\"ok\"]"] {
            assert!(
                serde_yaml_ng::from_str::<Vec<StatusMatch>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_rejections_name_the_field() {
        let cases = [
            // Both kinds at once.
            (
                "targets: [{name: a, http: 'http://x', tcp: 'x:1'}]",
                "targets[0].tcp",
            ),
            // Neither.
            ("targets: [{name: a}]", "targets[0].name"),
            ("targets: [{name: a, http: 'ftp://x'}]", "targets[0].http"),
            // A target may not outlive the run.
            (
                "targets: [{name: a, tcp: 'x:1', timeout: 10s}]",
                "targets[0].timeout",
            ),
            (
                "targets: [{name: a, tcp: 'x:1'}, {name: a, tcp: 'y:1'}]",
                "targets[1].name",
            ),
            (
                "targets: [{name: a, tcp: 'x:1', insecure_skip_verify: true}]",
                "targets[0].tls",
            ),
            (
                "targets: [{name: a, http: 'http://x', headers: {'bad name': v}}]",
                "targets[0].headers",
            ),
            ("targets: [{name: a, https: 'http://x'}]", "unknown"),
        ];
        for (yaml, want) in cases {
            let got = match serde_yaml_ng::from_str::<ProbesConfig>(yaml) {
                Ok(c) => c.validate().map_err(|e| e.path),
                Err(e) => Err(if e.to_string().contains("unknown field") {
                    "unknown".to_string()
                } else {
                    e.to_string()
                }),
            };
            assert_eq!(got, Err(want.to_string()), "{yaml}");
        }
    }

    #[test]
    fn default_target_timeout_fits_inside_the_run() {
        let t = ProbeTarget {
            name: "a".into(),
            tcp: Some("x:1".into()),
            ..Default::default()
        };
        let short = Target::new(&t, Duration::from_secs(2)).unwrap();
        assert_eq!(short.timeout, Duration::from_millis(1800));
        let long = Target::new(&t, Duration::from_secs(30)).unwrap();
        assert_eq!(long.timeout, DEFAULT_TARGET_TIMEOUT);
    }

    #[test]
    fn fingerprint_changes_with_a_header_secret() {
        let a: ProbesConfig = serde_yaml_ng::from_str(
            "targets: [{name: a, http: 'http://x', headers: {Authorization: one}}]",
        )
        .unwrap();
        let b: ProbesConfig = serde_yaml_ng::from_str(
            "targets: [{name: a, http: 'http://x', headers: {Authorization: two}}]",
        )
        .unwrap();
        let fp = |c: &ProbesConfig| serde_json::to_string(&c.fingerprint()).unwrap();
        assert_ne!(fp(&a), fp(&b));
        assert!(!fp(&a).contains("one"));
    }
}
