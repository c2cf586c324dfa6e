//! Our signatures checked by an independent verifier: the reference Python
//! `standardwebhooks` library. Required under `CI=true`; skipped locally when python3
//! or the library is missing.

use base64::Engine;
use sentinel_notify::sign::{sign_headers, WebhookKey};
use std::io::Write;
use std::process::{Command, Stdio};

const VERIFIER: &str = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook
out = []
for case in json.load(sys.stdin):
    try:
        Webhook(case["secret"]).verify(base64.b64decode(case["body"]), case["headers"])
        out.append("ok")
    except Exception as e:
        out.append("error: %s: %s" % (type(e).__name__, e))
print(json.dumps(out))
"#;

// The peer lookup shared with the other test suites (CI=true: a missing peer fails).
#[path = "../../../tests/support/peer.rs"]
mod peer_kit;

fn python_ready() -> bool {
    peer_kit::python_module("standardwebhooks", "standardwebhooks")
}

struct Case {
    what: &'static str,
    secret: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    accept: bool,
}

#[test]
fn python_standardwebhooks_agrees() {
    if !python_ready() {
        eprintln!("skipped: python3 standardwebhooks not available");
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let old = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let new = WebhookKey::parse("whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA==").unwrap();
    let raw = WebhookKey::parse("raw-secret-from-a-config-file").unwrap();
    let body = br#"{"receiver":"ops","status":"firing","alerts":[{"labels":{"a":"x \u0026 y"}}]}
"#
    .to_vec();
    let id = "msg_2f1c7e0a-5b0e-4c1e-9c3a-1d2e3f4a5b6c";
    let sig = |keys: &[WebhookKey], ts: i64| sign_headers(keys, id, ts, &body, true);
    let cases = vec![
        Case {
            what: "one secret",
            secret: old.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now),
            body: body.clone(),
            accept: true,
        },
        Case {
            what: "rotation: verifier on the old secret",
            secret: old.to_whsec(),
            headers: sig(&[new.clone(), old.clone()], now),
            body: body.clone(),
            accept: true,
        },
        Case {
            what: "rotation: verifier on the new secret",
            secret: new.to_whsec(),
            headers: sig(&[new.clone(), old.clone()], now),
            body: body.clone(),
            accept: true,
        },
        Case {
            what: "raw secret, verifier given its whsec form",
            secret: raw.to_whsec(),
            headers: sig(std::slice::from_ref(&raw), now),
            body: body.clone(),
            accept: true,
        },
        Case {
            what: "timestamp 4 min old is within the library's 5 min",
            secret: old.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now - 240),
            body: body.clone(),
            accept: true,
        },
        Case {
            what: "tampered body",
            secret: old.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now),
            body: body
                .iter()
                .map(|b| if *b == b'x' { b'z' } else { *b })
                .collect(),
            accept: false,
        },
        Case {
            what: "wrong secret",
            secret: new.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now),
            body: body.clone(),
            accept: false,
        },
        Case {
            what: "timestamp 10 min old",
            secret: old.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now - 600),
            body: body.clone(),
            accept: false,
        },
        Case {
            what: "timestamp 10 min in the future",
            secret: old.to_whsec(),
            headers: sig(std::slice::from_ref(&old), now + 600),
            body: body.clone(),
            accept: false,
        },
    ];
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            let headers: serde_json::Map<String, serde_json::Value> = c
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({
                "secret": c.secret,
                "headers": headers,
                "body": base64::engine::general_purpose::STANDARD.encode(&c.body),
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", VERIFIER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let verdicts: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for (c, v) in cases.iter().zip(&verdicts) {
        assert_eq!(v == "ok", c.accept, "{}: python said {v}", c.what);
    }
    assert_eq!(verdicts.len(), cases.len());
}
