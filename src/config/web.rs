//! `web:` — TLS, authentication and connection limits for every endpoint. The server
//! that applies them is `http/`; the credentials it checks are [`super::auth`].

use super::auth::Credentials;
use super::{either_secret_at, Dur, SecretFile, SecretString};
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
    /// File holding the bearer token (instead of `bearer_token`).
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
    /// PEM certificate chain, leaf first (relative to the config file's directory).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name (non-empty, no `:`).
    pub username: String,
    /// The password, inline (`${ENV}` references expand).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// File holding the password (instead of `password`).
    #[serde(default)]
    pub password_file: Option<SecretFile>,
}

impl WebConfig {
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    /// The second stage of `web:` auth: the credentials the server checks, resolved once,
    /// or the field that is wrong. [`WebConfig::validate`] runs it, so on a validated
    /// config it cannot fail.
    pub fn credentials(&self) -> Result<Credentials, FieldError> {
        let basic = match &self.basic_auth {
            None => None,
            Some(b) => {
                let password =
                    either_secret_at(&b.password, &b.password_file, "web.basic_auth.password")?
                        .ok_or_else(|| {
                            FieldError::new(
                                "web.basic_auth",
                                "basic_auth needs password or password_file",
                            )
                        })?;
                if b.username.is_empty() || b.username.contains(':') {
                    return Err(FieldError::new(
                        "web.basic_auth.username",
                        "username must be non-empty and contain no ':'",
                    ));
                }
                Some((b.username.clone(), password))
            }
        };
        let bearer = either_secret_at(
            &self.bearer_token,
            &self.bearer_token_file,
            "web.bearer_token",
        )?;
        Ok(Credentials { basic, bearer })
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        self.credentials()?;
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
            load_server_config(t).map_err(|e| FieldError::new("web.tls", e.to_string()))?;
        }
        Ok(())
    }
}

/// Why the server's certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {field} {}: {source}", path.display())]
    Read {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid PEM in {}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("no private key in {}", .0.display())]
    NoKey(PathBuf),
    #[error("{0}")]
    Protocols(rustls::Error),
    #[error("certificate and key do not match: {0}")]
    Mismatch(rustls::Error),
}

/// Server-side TLS from PEM files (rustls, ring provider): read when the config is
/// validated, so a bad certificate is a config error, and again when the server starts.
pub fn load_server_config(t: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |field, path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            field,
            path: path.clone(),
            source,
        })
    };
    let cert_pem = read("cert_file", &t.cert_file)?;
    let key_pem = read("key_file", &t.key_file)?;
    let pem = |path: &PathBuf| {
        let path = path.clone();
        move |source| TlsError::Pem { path, source }
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(pem(&t.cert_file))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(t.cert_file.clone()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(pem(&t.key_file))?
        .ok_or_else(|| TlsError::NoKey(t.key_file.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Mismatch)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
