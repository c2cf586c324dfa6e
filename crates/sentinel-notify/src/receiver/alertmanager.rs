//! Forwarding to an existing Alertmanager (or a cluster of them): `POST
//! /api/v2/alerts` with the alerts as `postableAlert`s, to every URL at once; the
//! attempt succeeds if any instance accepts (Alertmanager instances gossip, as
//! Prometheus relies on when it sends to all of them).

use super::{
    check_response, http_client, transport_error, Delivery, Notify, NotifyError, ReceiverError,
};
use sentinel_base::config::{Dur, FieldError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `receivers[].alertmanagers[]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URLs of the instances (`http://alertmanager:9093`); all receive every alert.
    pub urls: Vec<String>,
    /// PEM bundle of CAs to trust in addition to the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Per-attempt timeout.
    pub timeout: Dur,
    /// Forward resolved alerts (needed for Alertmanager to end them early).
    pub send_resolved: bool,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            urls: Vec::new(),
            ca_file: None,
            timeout: Dur::secs(10),
            send_resolved: true,
        }
    }
}

impl AlertmanagerConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.urls.is_empty() {
            return Err(FieldError::new("urls", "at least one URL is required"));
        }
        for (i, u) in self.urls.iter().enumerate() {
            let p = url::Url::parse(u).map_err(|e| {
                FieldError::new(format!("urls[{i}]"), format!("invalid URL {u:?}: {e}"))
            })?;
            if !matches!(p.scheme(), "http" | "https") {
                return Err(FieldError::new(
                    format!("urls[{i}]"),
                    "must be http:// or https://",
                ));
            }
        }
        Ok(())
    }
}

pub struct Alertmanager {
    cfg: AlertmanagerConfig,
    endpoints: Vec<String>,
    client: reqwest::Client,
}

impl Alertmanager {
    pub fn new(cfg: AlertmanagerConfig) -> Result<Self, ReceiverError> {
        cfg.validate().map_err(ReceiverError::invalid)?;
        let client = http_client(cfg.ca_file.as_deref(), cfg.timeout.get(), false)?;
        let endpoints = cfg
            .urls
            .iter()
            .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
            .collect();
        Ok(Alertmanager {
            cfg,
            endpoints,
            client,
        })
    }
}

#[async_trait::async_trait]
impl Notify for Alertmanager {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, d: &Delivery<'_>) -> Result<(), NotifyError> {
        // The base Alert is Alertmanager's postableAlert; endsAt stays as the rule
        // engine set it, so firing alerts expire on their own if we go silent.
        let body = serde_json::to_vec(&d.notification.alerts)
            .map_err(|e| NotifyError::permanent(format!("cannot encode alerts: {e}")))?;
        let attempts = self.endpoints.iter().map(|url| {
            let req = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            async move {
                match req.send().await {
                    Ok(r) => check_response(r).await,
                    Err(e) => Err(transport_error(e)),
                }
                .map_err(|e| (url.clone(), e))
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        if results.iter().any(Result::is_ok) {
            return Ok(());
        }
        let errs: Vec<(String, NotifyError)> =
            results.into_iter().filter_map(Result::err).collect();
        let retryable = errs.iter().any(|(_, e)| e.retryable);
        let reason = errs
            .iter()
            .map(|(u, e)| format!("{u}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = if retryable {
            NotifyError::retry(reason)
        } else {
            NotifyError::permanent(reason)
        };
        e.retry_after = errs.iter().filter_map(|(_, e)| e.retry_after).min();
        Err(e)
    }
}
