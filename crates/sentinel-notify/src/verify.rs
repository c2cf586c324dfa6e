//! The logic behind `comfy-sentinel verify`, for people writing a receiver: given the
//! secret, the received headers and body, say whether the signature is valid and, if
//! not, why. Headers come as HTTP header lines (`Name: value`, a request line and
//! anything after the first blank line ignored) or as a JSON object; without a headers
//! file the input is a whole raw HTTP request (headers, blank line, body).

use crate::sign::{self, WebhookKey};

/// Splits `Name: value` lines; a leading request/status line and lines without a colon
/// are skipped; stops at the first blank line.
pub fn parse_header_lines(text: &str) -> Vec<(String, String)> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(trimmed) {
            return m
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
        }
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if !k.contains(' ') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// Splits a raw HTTP request into its header lines and body.
pub fn split_request(raw: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    (
        parse_header_lines(&String::from_utf8_lossy(head)),
        body.to_vec(),
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A message whose signature checks out; prints as the one-line verdict
/// (`valid: webhook-id ..., N body bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `webhook-id` header (empty when absent).
    pub id: String,
    pub body_bytes: usize,
    /// Whether `x-hub-signature-256` matched too; `None` when the header is absent.
    pub github: Option<bool>,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let github = match self.github {
            None => "",
            Some(true) => "; x-hub-signature-256 valid",
            Some(false) => "; x-hub-signature-256 does not match (signed by another key)",
        };
        write!(
            f,
            "valid: webhook-id {}, {} body bytes{github}",
            self.id, self.body_bytes
        )
    }
}

/// Why a message does not verify; prints as the one-line verdict (`invalid: ...`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("invalid: bad --secret: {0}")]
    BadSecret(#[from] sign::KeyError),
    #[error("invalid: {0}")]
    Signature(#[from] sign::VerifyError),
}

/// Verifies a message against the `--secret` keys.
pub fn verify_message(
    secrets: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, Invalid> {
    let keys = WebhookKey::parse_list(secrets)?;
    sign::verify(&keys, headers, body, now, tolerance_secs)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    Ok(Verified {
        id: header(sign::HEADER_ID).unwrap_or("").to_string(),
        body_bytes: body.len(),
        github: header(sign::HEADER_GITHUB).map(|v| sign::verify_github(&keys, v, body).is_ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_request_roundtrip() {
        let key = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = b"{\"a\":1}\n";
        let h = sign::sign_headers(std::slice::from_ref(&key), "msg_1", 100, body, false);
        let mut raw = String::from("POST /hook HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in &h {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        let (hs, b) = split_request(&bytes);
        assert_eq!(b, body);
        let ok = verify_message(&key.to_whsec(), &hs, &b, 100, 300).unwrap();
        assert_eq!(ok.to_string(), "valid: webhook-id msg_1, 8 body bytes");
        let bad = verify_message(&key.to_whsec(), &hs, b"{}", 100, 300).unwrap_err();
        assert!(matches!(bad, Invalid::Signature(_)), "{bad:?}");
        assert!(
            bad.to_string().starts_with("invalid: no signature matches"),
            "{bad}"
        );
        let e = verify_message("whsec_!!!", &hs, &b, 100, 300).unwrap_err();
        assert!(matches!(e, Invalid::BadSecret(_)), "{e:?}");
        assert!(e.to_string().starts_with("invalid: bad --secret: "), "{e}");
    }

    #[test]
    fn json_headers() {
        let h = parse_header_lines(r#"{"webhook-id": "x", "webhook-timestamp": 5}"#);
        assert!(h.contains(&("webhook-timestamp".to_string(), "5".to_string())));
    }
}
