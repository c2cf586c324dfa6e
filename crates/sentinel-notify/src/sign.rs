//! Webhook signing and verification per the Standard Webhooks spec
//! (`spec/standard-webhooks.md`): `webhook-id` (the notification's outbox id, the same on
//! every retry, so receivers can dedupe), `webhook-timestamp` (unix seconds of this
//! attempt) and `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`,
//! space-separated when several secrets are live during a rotation. Optionally also
//! GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`.
//!
//! Secrets: `whsec_<base64>` is decoded to the key bytes, as every Standard Webhooks
//! library does. A secret without the prefix is used as raw key bytes (its UTF-8); its
//! receiver-side form is `whsec_` + base64 of those bytes ([`WebhookKey::to_whsec`],
//! printed by `comfy-sentinel verify --show-whsec`).
//!
//! Used by the webhook receiver (signing) and the `verify` subcommand (checking).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
pub const HEADER_GITHUB: &str = "x-hub-signature-256";
const PREFIX: &str = "whsec_";

/// One HMAC key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookKey(Vec<u8>);

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("secret is empty")]
    Empty,
    #[error("secret after whsec_ is not valid base64")]
    NotBase64,
}

impl WebhookKey {
    /// Parses one secret: `whsec_<base64>` or a raw string (see the module doc).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        let bytes = match s.strip_prefix(PREFIX) {
            Some(b64) => B64.decode(b64).map_err(|_| KeyError::NotBase64)?,
            None => s.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(WebhookKey(bytes))
    }

    /// Parses a whitespace-separated list (rotation: old and new secret side by side).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, KeyError> {
        let keys: Vec<Self> = s
            .split_whitespace()
            .map(Self::parse)
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(keys)
    }

    /// The `whsec_` form a Standard Webhooks library on the receiving side expects.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// The base64 `v1` signature of one message.
    pub fn sign_v1(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut m = self.mac();
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        B64.encode(m.finalize().into_bytes())
    }

    /// GitHub's `sha256=<hex>` over the body alone.
    pub fn sign_github(&self, body: &[u8]) -> String {
        let mut m = self.mac();
        m.update(body);
        let bytes = m.finalize().into_bytes();
        let mut hex = String::with_capacity(7 + 64);
        hex.push_str("sha256=");
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    }
}

/// The headers to add to one attempt, as (name, value).
pub fn sign_headers(
    keys: &[WebhookKey],
    id: &str,
    timestamp: i64,
    body: &[u8],
    github: bool,
) -> Vec<(&'static str, String)> {
    let sigs: Vec<String> = keys
        .iter()
        .map(|k| format!("v1,{}", k.sign_v1(id, timestamp, body)))
        .collect();
    let mut h = vec![
        (HEADER_ID, id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, sigs.join(" ")),
    ];
    // GitHub's scheme has one signature only: the first (newest) key signs it.
    if let (true, Some(k)) = (github, keys.first()) {
        h.push((HEADER_GITHUB, k.sign_github(body)));
    }
    h
}

/// Why a message failed verification. Messages are meant for a receiver's author.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp {0:?} is not an integer number of unix seconds")]
    BadTimestamp(String),
    #[error("message timestamp is too old: {age}s before now, tolerance {tolerance}s (a replay, or clocks out of sync)")]
    TooOld { age: i64, tolerance: i64 },
    #[error("message timestamp is too new: {ahead}s after now, tolerance {tolerance}s (clocks out of sync)")]
    TooNew { ahead: i64, tolerance: i64 },
    #[error("webhook-signature has no v1 entry (found: {0})")]
    NoV1Signature(String),
    #[error("no signature matches: wrong secret, or the body or id/timestamp changed in transit ({0} v1 signature(s) checked)")]
    Mismatch(usize),
    #[error("x-hub-signature-256 does not match the body")]
    GithubMismatch,
}

/// Checks a received message the way the Standard Webhooks libraries do: all three
/// headers present, timestamp within ±`tolerance_secs` of `now`, and at least one `v1`
/// signature made by one of `keys` (constant-time comparison).
pub fn verify(
    keys: &[WebhookKey],
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    // svix-* are the same headers under the name of the spec's original vendor.
    let id = get(HEADER_ID)
        .or_else(|| get("svix-id"))
        .ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let ts_raw = get(HEADER_TIMESTAMP)
        .or_else(|| get("svix-timestamp"))
        .ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    let sig_header = get(HEADER_SIGNATURE)
        .or_else(|| get("svix-signature"))
        .ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
    let ts: i64 = ts_raw
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(ts_raw.to_string()))?;
    if now - ts > tolerance_secs {
        return Err(VerifyError::TooOld {
            age: now - ts,
            tolerance: tolerance_secs,
        });
    }
    if ts - now > tolerance_secs {
        return Err(VerifyError::TooNew {
            ahead: ts - now,
            tolerance: tolerance_secs,
        });
    }
    let v1: Vec<&str> = sig_header
        .split_whitespace()
        .filter_map(|e| e.split_once(','))
        .filter(|(v, _)| *v == "v1")
        .map(|(_, s)| s)
        .collect();
    if v1.is_empty() {
        return Err(VerifyError::NoV1Signature(sig_header.to_string()));
    }
    let matched = keys.iter().any(|k| {
        let expected = k.sign_v1(id, ts, body);
        v1.iter().any(|s| ct_eq(s.as_bytes(), expected.as_bytes()))
    });
    if !matched {
        return Err(VerifyError::Mismatch(v1.len()));
    }
    Ok(())
}

/// Checks an `x-hub-signature-256` value. Only the first (newest) key signs it, so
/// during a rotation a receiver on the old secret must rely on `webhook-signature`.
pub fn verify_github(keys: &[WebhookKey], header: &str, body: &[u8]) -> Result<(), VerifyError> {
    if keys
        .iter()
        .any(|k| ct_eq(header.trim().as_bytes(), k.sign_github(body).as_bytes()))
    {
        Ok(())
    } else {
        Err(VerifyError::GithubMismatch)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(h: &[(&'static str, String)]) -> Vec<(String, String)> {
        h.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    /// The spec's published example (standard-webhooks `spec/standard-webhooks.md`
    /// and the libraries' test vectors).
    #[test]
    fn spec_test_vector() {
        let k = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            k.sign_v1("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn sign_then_verify_with_rotation() {
        let old = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = WebhookKey::parse("rotated-raw-secret").unwrap();
        let body = b"{}\n";
        let h = hdrs(&sign_headers(
            &[new.clone(), old.clone()],
            "id1",
            1000,
            body,
            true,
        ));
        assert_eq!(h[2].1.split(' ').count(), 2);
        // A receiver still on the old secret, and one on the new, both accept.
        assert_eq!(
            verify(std::slice::from_ref(&old), &h, body, 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify(std::slice::from_ref(&new), &h, body, 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify_github(std::slice::from_ref(&new), &h[3].1, body),
            Ok(())
        );
        assert!(verify_github(std::slice::from_ref(&new), &h[3].1, b"x").is_err());
        assert_eq!(
            verify(std::slice::from_ref(&old), &h, b"{}x", 1000, 300),
            Err(VerifyError::Mismatch(2))
        );
        assert!(matches!(
            verify(std::slice::from_ref(&old), &h, body, 1301, 300),
            Err(VerifyError::TooOld { .. })
        ));
        assert!(matches!(
            verify(&[old], &h, body, 699, 300),
            Err(VerifyError::TooNew { .. })
        ));
        let other = WebhookKey::parse("whsec_dGhlIHdyb25nIHNlY3JldA==").unwrap();
        assert_eq!(
            verify(&[other], &h, body, 1000, 300),
            Err(VerifyError::Mismatch(2))
        );
        assert_eq!(
            verify(&[new], &h[1..], body, 1000, 300),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
    }

    #[test]
    fn raw_secret_has_whsec_form() {
        let k = WebhookKey::parse("hunter2").unwrap();
        assert_eq!(k.to_whsec(), "whsec_aHVudGVyMg==");
        assert_eq!(WebhookKey::parse(&k.to_whsec()).unwrap(), k);
        assert_eq!(WebhookKey::parse("whsec_!!"), Err(KeyError::NotBase64));
        assert_eq!(format!("{k:?}"), "WebhookKey(<redacted>)");
    }

    #[test]
    fn github_signature_is_hex_of_body_hmac() {
        // Cross-checked with Python: hmac.new(b"mysecret", b"Hello, World!", sha256).hexdigest().
        let k = WebhookKey::parse("mysecret").unwrap();
        assert_eq!(
            k.sign_github(b"Hello, World!"),
            "sha256=e74441163c9ea23f1b6f18b5656d99c910bb25855986273774d2f9e2b23cbbd3"
        );
    }
}
