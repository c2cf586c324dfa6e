//! `ingest:`: the events ingest API's section (the API itself is `src/ingest/`, its
//! handler `http/ingest.rs`). Kept under config so that the domain imports its config
//! and the config never imports the domain.

use super::{either_secret_at, Dur, FieldError, Secret, SecretFile, SecretString};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The resolved ingest credentials (see [`IngestConfig::secrets`]).
#[derive(Debug, Clone, Default)]
pub struct IngestSecrets {
    pub token: Option<Secret>,
    pub hmac_secret: Option<Secret>,
}

/// Default bucket bounds of `quality_score`.
pub const DEFAULT_QUALITY_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, 100.0,
];

/// `ingest:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Serve `POST /api/v1/events` (404 when off).
    pub enabled: bool,
    /// Bearer token clients send as `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// File holding the bearer token (instead of `token`).
    pub token_file: Option<SecretFile>,
    /// Key for `X-Sentinel-Signature: sha256=<hex HMAC-SHA256>` request signatures.
    /// With neither a token nor an HMAC secret, the `web:` credentials apply, and with
    /// none of those either, only loopback clients are accepted.
    pub hmac_secret: Option<SecretString>,
    /// File holding the HMAC key (instead of `hmac_secret`).
    pub hmac_secret_file: Option<SecretFile>,
    /// Refuse signatures without `X-Sentinel-Timestamp` (replay protection).
    pub hmac_require_timestamp: bool,
    /// Largest accepted distance between `X-Sentinel-Timestamp` and our clock.
    pub hmac_max_skew: Dur,
    /// Largest accepted request body (413 past it).
    pub max_body_bytes: usize,
    /// Most events in one request (413 past it).
    pub max_events_per_batch: usize,
    /// Longest accepted label value (operation, workflow, metric, breaker and heartbeat
    /// names, error class), in characters; longer is a 400.
    pub max_label_value_length: usize,
    /// Distinct values kept per label; later values are folded into `other` and counted
    /// in `sentinel_ingest_label_overflow_total{label}`.
    pub max_values_per_label: usize,
    /// Per-client rate limits (429 with `Retry-After`).
    pub rate_limit: RateLimitConfig,
    /// Bucket upper bounds of `quality_score` (ascending; `+Inf` is implied). Changes
    /// take effect on restart.
    pub quality_buckets: Vec<f64>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            token: None,
            token_file: None,
            hmac_secret: None,
            hmac_secret_file: None,
            hmac_require_timestamp: false,
            hmac_max_skew: Dur::secs(300),
            max_body_bytes: 1 << 20,
            max_events_per_batch: 10_000,
            max_label_value_length: 128,
            max_values_per_label: 100,
            rate_limit: RateLimitConfig::default(),
            quality_buckets: DEFAULT_QUALITY_BUCKETS.to_vec(),
        }
    }
}

impl IngestConfig {
    /// The second stage of the ingest credentials: the bearer token and the HMAC key,
    /// each from its inline value or its file, or the field that is wrong.
    /// [`IngestConfig::validate`] runs it, so on a validated config it cannot fail.
    pub fn secrets(&self) -> Result<IngestSecrets, FieldError> {
        Ok(IngestSecrets {
            token: either_secret_at(&self.token, &self.token_file, "ingest.token")?,
            hmac_secret: either_secret_at(
                &self.hmac_secret,
                &self.hmac_secret_file,
                "ingest.hmac_secret",
            )?,
        })
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |f: &str, m: &str| Err(FieldError::new(format!("ingest.{f}"), m));
        self.secrets()?;
        if self.hmac_max_skew.get() < Duration::from_secs(1) {
            return err("hmac_max_skew", "must be at least 1s");
        }
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        if self.max_events_per_batch == 0 {
            return err("max_events_per_batch", "must be at least 1");
        }
        if !(1..=1024).contains(&self.max_label_value_length) {
            return err("max_label_value_length", "must be between 1 and 1024");
        }
        if !(1..=100_000).contains(&self.max_values_per_label) {
            return err("max_values_per_label", "must be between 1 and 100000");
        }
        let b = &self.quality_buckets;
        if b.is_empty() || b.len() > 64 {
            return err("quality_buckets", "must hold between 1 and 64 bounds");
        }
        if b.iter().any(|v| !v.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
            return err(
                "quality_buckets",
                "bounds must be finite and strictly ascending (+Inf is implied)",
            );
        }
        self.rate_limit.validate(self.max_events_per_batch)
    }
}

/// `ingest.rate_limit`: per-client token buckets, keyed by the client's IP address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second each client may sustain; 0 turns the request limit off.
    pub requests_per_second: f64,
    /// Requests a client may send at once after being idle.
    pub requests_burst: f64,
    /// Events per second each client may sustain; 0 turns the event limit off.
    pub events_per_second: f64,
    /// Events a client may send at once; at least `max_events_per_batch`, or a full
    /// batch could never pass.
    pub events_burst: f64,
    /// Clients tracked at once; past it, idle clients are forgotten first, then the
    /// longest unseen.
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 200.0,
            requests_burst: 400.0,
            events_per_second: 20_000.0,
            events_burst: 40_000.0,
            max_clients: 1024,
        }
    }
}

impl RateLimitConfig {
    pub fn validate(&self, max_events_per_batch: usize) -> Result<(), FieldError> {
        let field = |f: &str| format!("ingest.rate_limit.{f}");
        for (name, v) in [
            ("requests_per_second", self.requests_per_second),
            ("requests_burst", self.requests_burst),
            ("events_per_second", self.events_per_second),
            ("events_burst", self.events_burst),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(FieldError::new(field(name), "must be a finite number >= 0"));
            }
        }
        if self.requests_per_second > 0.0 && self.requests_burst < 1.0 {
            return Err(FieldError::new(
                field("requests_burst"),
                "must be at least 1",
            ));
        }
        if self.events_per_second > 0.0 && self.events_burst < max_events_per_batch as f64 {
            return Err(FieldError::new(
                field("events_burst"),
                format!("must be at least ingest.max_events_per_batch ({max_events_per_batch})"),
            ));
        }
        if self.max_clients == 0 {
            return Err(FieldError::new(field("max_clients"), "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        let bad = |f: fn(&mut IngestConfig)| {
            let mut c = IngestConfig::default();
            f(&mut c);
            c.validate().unwrap_err().path
        };
        assert!(IngestConfig::default().validate().is_ok());
        assert_eq!(
            bad(|c| c.max_events_per_batch = 0),
            "ingest.max_events_per_batch"
        );
        assert_eq!(
            bad(|c| c.quality_buckets = vec![1.0, 0.5]),
            "ingest.quality_buckets"
        );
        assert_eq!(
            bad(|c| c.quality_buckets = vec![]),
            "ingest.quality_buckets"
        );
        assert_eq!(
            bad(|c| c.max_values_per_label = 0),
            "ingest.max_values_per_label"
        );
        assert_eq!(
            bad(|c| c.max_events_per_batch = 50_000),
            "ingest.rate_limit.events_burst"
        );
        assert_eq!(
            bad(|c| {
                c.token = Some(SecretString(crate::config::Secret::new("a")));
                c.token_file = Some(SecretFile::new("/x"));
            }),
            "ingest.token"
        );
    }
}
