//! The webhook receiver: POSTs the Alertmanager v4 body (`webhook::payload`), signed
//! per Standard Webhooks (`sign`), over rustls with certificates verified (optionally
//! against a custom CA file). Config beside code: [`WebhookConfig`].

use super::{
    check_response, http_client, transport_error, Delivery, Notify, NotifyError, ReceiverError,
};
use crate::sign::{sign_headers, WebhookKey};
use crate::webhook::payload::Message;
use sentinel_base::config::{
    either_secret, either_secret_at, Dur, FieldError, SecretFile, SecretString,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `receivers[].webhooks[]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (http or https).
    pub url: String,
    /// Signing secret: `whsec_<base64>`, or a raw string used as the key bytes (its
    /// `whsec_` form is `comfy-sentinel verify --show-whsec`). Several separated by
    /// spaces during a rotation: each signs, newest first. Unset: unsigned.
    pub secret: Option<SecretString>,
    /// The same, read from a file.
    pub secret_file: Option<SecretFile>,
    /// Also send GitHub's `X-Hub-Signature-256: sha256=<hex>` (first secret).
    pub github_signature: bool,
    /// Extra request headers (e.g. an API key of the receiving service); values are
    /// secrets (`${ENV}` expanded, never printed).
    pub headers: BTreeMap<String, SecretString>,
    /// PEM bundle of CAs to trust in addition to the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (a test receiver with a self-signed
    /// certificate); prefer `ca_file`.
    pub insecure_skip_verify: bool,
    /// Per-attempt timeout.
    pub timeout: Dur,
    /// Most alerts per body; the rest are counted in `truncatedAlerts`. 0: all.
    pub max_alerts: usize,
    /// Send resolved notifications (Alertmanager's default for webhooks: true).
    pub send_resolved: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: None,
            secret_file: None,
            github_signature: false,
            headers: BTreeMap::new(),
            ca_file: None,
            insecure_skip_verify: false,
            timeout: Dur::secs(10),
            max_alerts: 0,
            send_resolved: true,
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        let u = url::Url::parse(&self.url).map_err(|e| {
            FieldError::new(
                "url".to_string(),
                format!("invalid URL {:?}: {e}", self.url),
            )
        })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(FieldError::new("url", "must be http:// or https://"));
        }
        // An unreadable `secret_file` is reported at its own key, a bad key list at `secret`.
        either_secret_at(&self.secret, &self.secret_file, "secret")?;
        self.keys()
            .map_err(|e| FieldError::new("secret".to_string(), e.to_string()))?;
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v.0.expose()).is_err()
            {
                return Err(FieldError::new(
                    format!("headers.{k}"),
                    "invalid header name or value",
                ));
            }
        }
        if self.timeout.get().is_zero() {
            return Err(FieldError::new("timeout", "must be > 0"));
        }
        Ok(())
    }

    fn keys(&self) -> Result<Vec<WebhookKey>, ReceiverError> {
        let secret = |e: &dyn std::fmt::Display| ReceiverError::Secret(e.to_string());
        match either_secret(&self.secret, &self.secret_file).map_err(|e| secret(&e))? {
            None => Ok(Vec::new()),
            Some(s) => WebhookKey::parse_list(s.expose()).map_err(|e| secret(&e)),
        }
    }
}

pub struct Webhook {
    cfg: WebhookConfig,
    keys: Vec<WebhookKey>,
    client: reqwest::Client,
}

impl Webhook {
    /// Builds what [`Webhook::new`] builds, without its warning (for `check`).
    pub fn check(cfg: &WebhookConfig) -> Result<(), ReceiverError> {
        cfg.validate().map_err(ReceiverError::invalid)?;
        cfg.keys()?;
        http_client(
            cfg.ca_file.as_deref(),
            cfg.timeout.get(),
            cfg.insecure_skip_verify,
        )
        .map(|_| ())
    }

    pub fn new(cfg: WebhookConfig) -> Result<Self, ReceiverError> {
        let keys = cfg.keys()?;
        let client = http_client(
            cfg.ca_file.as_deref(),
            cfg.timeout.get(),
            cfg.insecure_skip_verify,
        )?;
        if cfg.insecure_skip_verify {
            tracing::warn!(
                "a webhook receiver skips TLS certificate verification (insecure_skip_verify)"
            );
        }
        Ok(Webhook { cfg, keys, client })
    }
}

#[async_trait::async_trait]
impl Notify for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, d: &Delivery<'_>) -> Result<(), NotifyError> {
        let body = Message::build(d.notification, d.external_url, self.cfg.max_alerts).to_body();
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.0.expose());
        }
        if self.keys.is_empty() {
            // Unsigned receivers still get the id, to dedupe retries.
            req = req.header(crate::sign::HEADER_ID, d.id);
        } else {
            let ts = chrono::Utc::now().timestamp();
            for (k, v) in sign_headers(&self.keys, d.id, ts, &body, self.cfg.github_signature) {
                req = req.header(k, v);
            }
        }
        let resp = req.body(body).send().await.map_err(transport_error)?;
        check_response(resp).await
    }
}
