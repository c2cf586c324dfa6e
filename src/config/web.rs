//! `web:` — TLS, authentication and connection limits for every endpoint. The server
//! that applies them is `http/`; the credentials it checks are [`super::auth`].

use super::auth::Credentials;
use super::{either_secret, Dur, SecretFile, SecretString};
use sentinel_base::config::FieldError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve HTTPS with this certificate and key (PEM).
    pub tls: Option<TlsConfig>,
    /// Require HTTP basic auth on every endpoint.
    pub basic_auth: Option<BasicAuthConfig>,
    /// Require `Authorization: Bearer <token>` on every endpoint (accepted alongside
    /// basic auth when both are set).
    pub bearer_token: Option<SecretString>,
    pub bearer_token_file: Option<SecretFile>,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Most connections open at once. At the cap, the connection stuck longest in
    /// sending its request is closed to make room; lowered at startup to fit the
    /// open-file limit (`RLIMIT_NOFILE` minus 64 kept for everything else).
    pub max_connections: usize,
    /// Time allowed to send a request head (request line and headers), and to send the
    /// next one on an idle keep-alive connection.
    pub header_read_timeout: Dur,
    /// Time allowed to send a whole request body, from the end of its head; past it the
    /// answer is 408 and the connection is closed.
    pub request_body_timeout: Dur,
    /// Time an answer may wait for the client to read it (writes blocked); past it the
    /// connection is closed.
    pub write_stall_timeout: Dur,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            tls: None,
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            max_header_bytes: 16 * 1024,
            max_connections: 256,
            header_read_timeout: Dur::secs(10),
            request_body_timeout: Dur::secs(30),
            write_stall_timeout: Dur::secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_file: Option<SecretFile>,
}

impl WebConfig {
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    pub fn credentials(&self) -> Credentials {
        let basic = self.basic_auth.as_ref().and_then(|b| {
            either_secret(&b.password, &b.password_file)
                .ok()
                .flatten()
                .map(|p| (b.username.clone(), p))
        });
        let bearer = either_secret(&self.bearer_token, &self.bearer_token_file)
            .ok()
            .flatten();
        Credentials { basic, bearer }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(b) = &self.basic_auth {
            match either_secret(&b.password, &b.password_file) {
                Err(m) => return Err(FieldError::new("web.basic_auth.password", m)),
                Ok(None) => {
                    return Err(FieldError::new(
                        "web.basic_auth",
                        "basic_auth needs password or password_file",
                    ))
                }
                Ok(Some(_)) => {}
            }
            if b.username.is_empty() || b.username.contains(':') {
                return Err(FieldError::new(
                    "web.basic_auth.username",
                    "username must be non-empty and contain no ':'",
                ));
            }
        }
        if let Err(m) = either_secret(&self.bearer_token, &self.bearer_token_file) {
            return Err(FieldError::new("web.bearer_token", m));
        }
        if self.max_header_bytes < 8192 {
            return Err(FieldError::new(
                "web.max_header_bytes",
                "must be at least 8192 (hyper's smallest read buffer)",
            ));
        }
        if self.max_connections == 0 {
            return Err(FieldError::new("web.max_connections", "must be at least 1"));
        }
        for (key, d) in [
            ("web.header_read_timeout", self.header_read_timeout),
            ("web.request_body_timeout", self.request_body_timeout),
            ("web.write_stall_timeout", self.write_stall_timeout),
        ] {
            if d.get() < std::time::Duration::from_millis(100) {
                return Err(FieldError::new(key, "must be at least 100ms"));
            }
        }
        if let Some(t) = &self.tls {
            load_server_config(t).map_err(|e| FieldError::new("web.tls", e))?;
        }
        Ok(())
    }
}

/// Server-side TLS from PEM files (rustls, ring provider): read when the config is
/// validated, so a bad certificate is a config error, and again when the server starts.
pub fn load_server_config(t: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let cert_pem = std::fs::read(&t.cert_file)
        .map_err(|e| format!("cannot read cert_file {}: {e}", t.cert_file.display()))?;
    let key_pem = std::fs::read(&t.key_file)
        .map_err(|e| format!("cannot read key_file {}: {e}", t.key_file.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM in {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", t.cert_file.display()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("invalid PEM in {}: {e}", t.key_file.display()))?
        .ok_or_else(|| format!("no private key in {}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
