//! Server-side TLS from PEM files (rustls, ring provider).

use super::config::TlsConfig;
use std::sync::Arc;

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
