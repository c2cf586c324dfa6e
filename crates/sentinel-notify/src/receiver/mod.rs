//! Receivers: one module per integration, one trait. [`Notify::notify`] makes exactly
//! one attempt and says, through [`NotifyError`], whether another could succeed; it
//! never loops or sleeps. Retries, backoff and dead letters belong to the delivery loop
//! in [`crate::notifier`] (with the policy in [`crate::retry`]).

pub mod alertmanager;
pub mod email;
pub mod webhook;

use crate::notification::Notification;
use crate::retry::{classify, parse_retry_after, Verdict};
use std::time::Duration;

/// One attempt's input.
pub struct Delivery<'a> {
    /// The outbox id: `webhook-id`, the same on every retry.
    pub id: &'a str,
    pub notification: &'a Notification,
    /// `externalURL` of the payload and the link in emails.
    pub external_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct NotifyError {
    pub retryable: bool,
    /// What the receiver asked for (`Retry-After`), already capped.
    pub retry_after: Option<Duration>,
    /// Bounded, one line.
    pub reason: String,
}

/// The most a receiver may push a retry out with `Retry-After`.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

impl NotifyError {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self {
            retryable: true,
            retry_after: None,
            reason: bound(reason.into()),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            reason: bound(reason.into()),
        }
    }
}

/// One line, at most 300 bytes, URL passwords and token-like query parameters
/// redacted: these reasons reach logs, dead letters, the API and the status page.
fn bound(s: String) -> String {
    let mut s = sentinel_base::text::redact_secrets_in(&s).replace(['\n', '\r'], " ");
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[async_trait::async_trait]
pub trait Notify: Send + Sync {
    /// `webhook`, `email`, `alertmanager` (the metrics' `integration`).
    fn kind(&self) -> &'static str;
    /// Whether resolved alerts are sent to this integration.
    fn send_resolved(&self) -> bool;
    /// One attempt.
    async fn notify(&self, d: &Delivery<'_>) -> Result<(), NotifyError>;
}

/// Turns an HTTP answer into the attempt's result through the shared table.
pub(crate) async fn check_response(resp: reqwest::Response) -> Result<(), NotifyError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now(), RETRY_AFTER_CAP));
    match classify(status.as_u16()) {
        Verdict::Delivered => Ok(()),
        v => {
            // A short excerpt of the answer helps whoever reads the dead letter.
            let body = resp.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(120).collect();
            let reason = format!("http {}: {}", status.as_u16(), excerpt.trim());
            let mut e = if v == Verdict::Retry {
                NotifyError::retry(reason)
            } else {
                NotifyError::permanent(reason)
            };
            e.retry_after = retry_after;
            Err(e)
        }
    }
}

/// Transport failures (connect, TLS, timeout) are worth retrying; a request that could
/// not even be built is not.
pub(crate) fn transport_error(e: reqwest::Error) -> NotifyError {
    // The URL may carry a token (many webhook services put one in the path): keep it
    // out of logs, dead letters and the API.
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    if e.is_builder() {
        NotifyError::permanent(s)
    } else {
        NotifyError::retry(s)
    }
}

/// Why a receiver cannot be built from its config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    /// The config fails validation at `field` (relative to the receiver).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("cannot read {}: {reason}", path.display())]
    ReadCaFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{}: not a PEM certificate bundle: {reason}", path.display())]
    NotPemBundle {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{}: not a PEM certificate: {reason}", path.display())]
    NotPem {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{}: no certificate found", path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("cannot build HTTP client: {0}")]
    HttpClient(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A secret or secret file that cannot be read or parsed (signing keys, password).
    #[error("{0}")]
    Secret(String),
    #[error("{0:?} is not host:port")]
    NotHostPort(String),
    #[error("{0:?}: bad port")]
    BadPort(String),
    #[error("empty host")]
    EmptyHost,
    /// `from` or `to` is not a mailbox.
    #[error("{field}: {reason}")]
    Address { field: &'static str, reason: String },
}

impl ReceiverError {
    /// A validation error of the receiver's config.
    pub(crate) fn invalid(e: sentinel_base::config::FieldError) -> Self {
        ReceiverError::Invalid {
            field: e.path,
            message: e.message,
        }
    }
}

/// A CA file's bytes.
pub(crate) fn read_ca_file(p: &std::path::Path) -> Result<Vec<u8>, ReceiverError> {
    std::fs::read(p).map_err(|e| ReceiverError::ReadCaFile {
        path: p.to_path_buf(),
        reason: e.to_string(),
    })
}

/// An HTTP client for receivers: rustls with the system's web PKI roots plus an
/// optional CA file, no redirects, a per-request timeout.
pub(crate) fn http_client(
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
    insecure: bool,
) -> Result<reqwest::Client, ReceiverError> {
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("comfy-sentinel/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = ca_file {
        let pem = read_ca_file(p)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ReceiverError::NotPemBundle {
                path: p.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        if certs.is_empty() {
            return Err(ReceiverError::NoCertificate {
                path: p.to_path_buf(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| ReceiverError::HttpClient(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::webhook::{Webhook, WebhookConfig};
    use super::*;

    #[test]
    fn receiver_build_errors_are_typed_and_name_the_file() {
        let cfg = WebhookConfig {
            url: "https://example.invalid/hook".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = Webhook::new(cfg).err().expect("refused");
        assert!(
            matches!(&e, ReceiverError::ReadCaFile { path, .. } if path.ends_with("ca.pem")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/ca.pem: "),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = http_client(Some(&empty), Duration::from_secs(1), false).unwrap_err();
        assert_eq!(
            e,
            ReceiverError::NoCertificate {
                path: empty.clone()
            }
        );
        assert_eq!(
            e.to_string(),
            format!("{}: no certificate found", empty.display())
        );
    }
}
