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

/// Verifies and returns a one-line verdict: `Ok("valid: ...")` or `Err("invalid: ...")`.
pub fn verify_message(
    secrets: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<String, String> {
    let keys =
        WebhookKey::parse_list(secrets).map_err(|e| format!("invalid: bad --secret: {e}"))?;
    match sign::verify(&keys, headers, body, now, tolerance_secs) {
        Ok(()) => {
            let id = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(sign::HEADER_ID))
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let github = match headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(sign::HEADER_GITHUB))
            {
                None => "",
                Some((_, v)) => match sign::verify_github(&keys, v, body) {
                    Ok(()) => "; x-hub-signature-256 valid",
                    Err(_) => "; x-hub-signature-256 does not match (signed by another key)",
                },
            };
            Ok(format!(
                "valid: webhook-id {id}, {} body bytes{github}",
                body.len()
            ))
        }
        Err(e) => Err(format!("invalid: {e}")),
    }
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
        let ok = verify_message(&key.to_whsec(), &hs, &b, 100, 300);
        assert!(ok.as_ref().is_ok_and(|s| s.contains("msg_1")), "{ok:?}");
        let bad = verify_message(&key.to_whsec(), &hs, b"{}", 100, 300).unwrap_err();
        assert!(bad.starts_with("invalid: no signature matches"), "{bad}");
    }

    #[test]
    fn json_headers() {
        let h = parse_header_lines(r#"{"webhook-id": "x", "webhook-timestamp": 5}"#);
        assert!(h.contains(&("webhook-timestamp".to_string(), "5".to_string())));
    }
}
