//! Who may push events. In order:
//! 1. `ingest.token`: `Authorization: Bearer <token>`, compared in constant time;
//! 2. `ingest.hmac_secret`: `X-Sentinel-Signature: sha256=<hex HMAC-SHA256>` of the body,
//!    or of `<timestamp>.<body>` when `X-Sentinel-Timestamp: <unix seconds>` is sent
//!    (which then must be within `hmac_max_skew` of our clock, against replays);
//!    either credential is accepted when both are configured;
//! 3. neither set: the `web:` credentials guard this route as they guard every other;
//! 4. nothing configured at all: loopback clients only (403 for the rest), so that an
//!    unconfigured sidecar cannot be fed fake metrics from the network.
//!
//! The `/api/v1/events` route sits outside the `web:` auth middleware (see
//! `http::router`, handler in `http/ingest.rs`) because a client has only one `Authorization` header to spend.

pub use crate::config::auth::is_loopback;
use crate::config::auth::{authorized, Credentials};
use crate::config::Secret;
use axum::http::{header, HeaderMap};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;

pub const SIGNATURE_HEADER: &str = "x-sentinel-signature";
pub const TIMESTAMP_HEADER: &str = "x-sentinel-timestamp";

/// The resolved ingest credentials.
#[derive(Debug, Clone, Default)]
pub struct IngestAuth {
    pub token: Option<Secret>,
    pub hmac_secret: Option<Secret>,
    pub require_timestamp: bool,
    pub max_skew_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401: credentials missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: no credential is configured and the client is not on loopback.
    #[error("{0}")]
    Forbidden(&'static str),
}

/// What the headers alone decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The signature must be checked against the body once it is read.
    CheckSignature,
}

impl IngestAuth {
    fn own_credentials(&self) -> bool {
        self.token.is_some() || self.hmac_secret.is_some()
    }

    /// Decides from the headers and the peer address; `web` are the `web:` credentials.
    pub fn check_headers(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        web: &Credentials,
    ) -> Result<Verdict, AuthError> {
        if self.own_credentials() {
            if let Some(token) = &self.token {
                if bearer(headers).is_some_and(|t| token.ct_eq(t.as_bytes())) {
                    return Ok(Verdict::Allow);
                }
            }
            if self.hmac_secret.is_some() && headers.contains_key(SIGNATURE_HEADER) {
                return Ok(Verdict::CheckSignature);
            }
            return Err(AuthError::Unauthorized(
                match (&self.token, &self.hmac_secret) {
                    (Some(_), Some(_)) => {
                        "send Authorization: Bearer <ingest token> or an X-Sentinel-Signature"
                    }
                    (Some(_), None) => "send Authorization: Bearer <ingest token>",
                    _ => "send X-Sentinel-Signature: sha256=<hex HMAC-SHA256 of the body>",
                },
            ));
        }
        if web.required() {
            return if authorized(web, headers) {
                Ok(Verdict::Allow)
            } else {
                Err(AuthError::Unauthorized("send the web: credentials"))
            };
        }
        match peer {
            Some(p) if is_loopback(p.ip()) => Ok(Verdict::Allow),
            _ => Err(AuthError::Forbidden(
                "no ingest credential is configured: only loopback clients may push events (set ingest.token_file or ingest.hmac_secret_file)",
            )),
        }
    }

    /// Checks `X-Sentinel-Signature` (and `X-Sentinel-Timestamp`) against the body.
    pub fn verify_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: f64,
    ) -> Result<(), AuthError> {
        let Some(secret) = &self.hmac_secret else {
            return Err(AuthError::Unauthorized("signatures are not configured"));
        };
        let sig = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .and_then(decode_hex)
            .ok_or(AuthError::Unauthorized(
                "malformed X-Sentinel-Signature (want sha256=<64 hex digits>)",
            ))?;
        let timestamp = match headers.get(TIMESTAMP_HEADER) {
            None if self.require_timestamp => {
                return Err(AuthError::Unauthorized("X-Sentinel-Timestamp is required"))
            }
            None => None,
            Some(v) => {
                let text = v
                    .to_str()
                    .map_err(|_| AuthError::Unauthorized("malformed X-Sentinel-Timestamp"))?
                    .trim();
                let ts: i64 = text.parse().map_err(|_| {
                    AuthError::Unauthorized("malformed X-Sentinel-Timestamp (want Unix seconds)")
                })?;
                if (now - ts as f64).abs() > self.max_skew_seconds {
                    return Err(AuthError::Unauthorized(
                        "X-Sentinel-Timestamp is too far from the server's clock",
                    ));
                }
                Some(text.to_string())
            }
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        if let Some(ts) = &timestamp {
            mac.update(ts.as_bytes());
            mac.update(b".");
        }
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::Unauthorized("signature does not match the body"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header value for `body` (for clients written in Rust, and tests).
pub fn sign(secret: &str, timestamp: Option<i64>, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    if let Some(ts) = timestamp {
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn without_credentials_only_loopback_is_allowed() {
        let a = IngestAuth::default();
        let none = Credentials::default();
        for ok in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                a.check_headers(&HeaderMap::new(), peer(ok), &none),
                Ok(Verdict::Allow),
                "{ok}"
            );
        }
        for bad in ["192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1", "0.0.0.0"] {
            assert!(
                matches!(
                    a.check_headers(&HeaderMap::new(), peer(bad), &none),
                    Err(AuthError::Forbidden(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            a.check_headers(&HeaderMap::new(), None, &none),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn web_credentials_guard_the_route_when_ingest_has_none() {
        let a = IngestAuth::default();
        let web = Credentials {
            basic: None,
            bearer: Some(Secret::new("web")),
        };
        let remote = peer("192.0.2.7");
        assert_eq!(
            a.check_headers(&headers(&[("authorization", "Bearer web")]), remote, &web),
            Ok(Verdict::Allow)
        );
        // Loopback is no excuse once credentials exist.
        assert!(matches!(
            a.check_headers(&HeaderMap::new(), peer("127.0.0.1"), &web),
            Err(AuthError::Unauthorized(_))
        ));
    }

    #[test]
    fn ingest_token_replaces_web_credentials() {
        let a = IngestAuth {
            token: Some(Secret::new("tok")),
            ..Default::default()
        };
        let web = Credentials {
            basic: None,
            bearer: Some(Secret::new("web")),
        };
        let remote = peer("192.0.2.7");
        assert_eq!(
            a.check_headers(&headers(&[("authorization", "Bearer tok")]), remote, &web),
            Ok(Verdict::Allow)
        );
        assert_eq!(
            a.check_headers(&headers(&[("authorization", "bearer tok")]), remote, &web),
            Ok(Verdict::Allow)
        );
        for bad in ["Bearer web", "Bearer tok2", "Bearer", "Basic dG9r"] {
            assert!(
                matches!(
                    a.check_headers(&headers(&[("authorization", bad)]), remote, &web),
                    Err(AuthError::Unauthorized(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            a.check_headers(&HeaderMap::new(), peer("127.0.0.1"), &web),
            Err(AuthError::Unauthorized(_))
        ));
    }

    #[test]
    fn signatures_with_and_without_timestamp() {
        let a = IngestAuth {
            hmac_secret: Some(Secret::new("k")),
            max_skew_seconds: 300.0,
            ..Default::default()
        };
        let body = br#"[{"type":"heartbeat","name":"a","status":"success"}]"#;
        let now = 1_700_000_000.0;
        let plain = sign("k", None, body);
        let h = headers(&[(SIGNATURE_HEADER, &plain)]);
        assert_eq!(
            a.check_headers(&h, peer("192.0.2.7"), &Credentials::default()),
            Ok(Verdict::CheckSignature)
        );
        assert_eq!(a.verify_signature(&h, body, now), Ok(()));
        assert!(a.verify_signature(&h, b"[]", now).is_err(), "tampered body");
        assert!(a
            .verify_signature(
                &headers(&[(SIGNATURE_HEADER, &sign("other", None, body))]),
                body,
                now
            )
            .is_err());
        assert!(a
            .verify_signature(&headers(&[(SIGNATURE_HEADER, "sha256=zz")]), body, now)
            .is_err());

        let ts = now as i64;
        let stamped = sign("k", Some(ts), body);
        let h = headers(&[
            (SIGNATURE_HEADER, &stamped),
            (TIMESTAMP_HEADER, &ts.to_string()),
        ]);
        assert_eq!(a.verify_signature(&h, body, now), Ok(()));
        // A replay ten minutes later is refused.
        assert!(a.verify_signature(&h, body, now + 600.0).is_err());
        // The timestamp is part of what is signed.
        let moved = headers(&[
            (SIGNATURE_HEADER, &stamped),
            (TIMESTAMP_HEADER, &(ts + 1).to_string()),
        ]);
        assert!(a.verify_signature(&moved, body, now).is_err());

        let strict = IngestAuth {
            require_timestamp: true,
            ..a
        };
        assert!(strict
            .verify_signature(&headers(&[(SIGNATURE_HEADER, &plain)]), body, now)
            .is_err());
        assert_eq!(strict.verify_signature(&h, body, now), Ok(()));
    }
}
