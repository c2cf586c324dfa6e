//! Who may call the HTTP endpoints: the credentials resolved from `web:` and the checks
//! shared by the server's auth layer (`http/mod.rs`) and the ingest API
//! (`ingest/auth.rs`). It sits under config, below both, so neither imports the other.

use super::Secret;
use axum::http::{header, HeaderMap};
use base64::Engine;
use std::net::IpAddr;

/// Credentials resolved from the config.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub basic: Option<(String, Secret)>,
    pub bearer: Option<Secret>,
}

impl Credentials {
    pub fn required(&self) -> bool {
        self.basic.is_some() || self.bearer.is_some()
    }
}

/// Whether a peer address is loopback (IPv4, IPv6, or IPv4-mapped IPv6).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether `headers` carry the basic or bearer credentials of `creds`, compared in
/// constant time. Used by the `web:` auth layer and by the ingest API when it has no
/// credentials of its own.
pub fn authorized(creds: &Credentials, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return creds
            .bearer
            .as_ref()
            .is_some_and(|t| t.ct_eq(rest.as_bytes()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some((user, pass)) = creds.basic.as_ref() else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        let Some(i) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        // Compare both parts, always, so timing does not reveal which one was wrong.
        let user_ok = Secret::new(user.clone()).ct_eq(&decoded[..i]);
        let pass_ok = pass.ct_eq(&decoded[i + 1..]);
        return user_ok & pass_ok;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_and_bearer_credentials() {
        let creds = Credentials {
            basic: Some(("u".into(), Secret::new("p"))),
            bearer: Some(Secret::new("t")),
        };
        let mut h = HeaderMap::new();
        assert!(!authorized(&creds, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        ); // u:p
        assert!(authorized(&creds, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpx"),
        ); // u:q
        assert!(!authorized(&creds, &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(authorized(&creds, &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer tt"));
        assert!(!authorized(&creds, &h));
    }
}
