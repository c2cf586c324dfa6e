//! Fuzz targets on the stable toolchain (property tests) for the silence API: arbitrary
//! JSON bodies go through `Silence` deserialisation, `Silences::upsert`/`expire`/`gc`
//! and the notifier's `put_silence`/`expire_silence` (which persist them), and must
//! never panic. A silence that was accepted must survive its own persistence format.
//!
//! `PROPTEST_CASES` sets the cases per target (default 256); for a longer hunt:
//! `PROPTEST_CASES=5000 cargo test -p sentinel-notify --test fuzz`.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use sentinel_base::metrics::registry::Registry;
use sentinel_notify::dispatch::silence::{Silence, SilenceState, Silences};
use sentinel_notify::{Notifier, NotifyConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

#[path = "../../../tests/support/fuzz_kit.rs"]
mod fuzz_kit;
use fuzz_kit::{config, mutate, mutation};

fn label_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "alertname", "severity", "instance", "a", "_x", "", "1bad", "a-b", "__name__", "é",
            "a b",
        ])
        .prop_map(|s| json!(s)),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => Just(Value::Null),
    ]
}

fn label_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "x", "", ".*", ".+", "(", "a|b", "[", "\\", "gpu-.*", "(?i)X", "a{2,1}", "\\p{Greek}+",
            "(a+)+$", "x{1000}{1000}", "\u{0}", "é", "critical",
        ])
        .prop_map(|s| json!(s)),
        1 => "\\PC{0,40}".prop_map(|s| json!(s)),
        1 => (1usize..3000).prop_map(|n| json!("v".repeat(n))),
        1 => any::<bool>().prop_map(|b| json!(b)),
    ]
}

fn flag() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        4 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!("true")),
        1 => Just(json!(1)),
        1 => Just(Value::Null),
    ])
}

fn matcher() -> impl Strategy<Value = Value> {
    (
        prop::option::of(label_name()),
        prop::option::of(label_value()),
        flag(),
        flag(),
    )
        .prop_map(|(n, v, re, eq)| {
            let mut m = serde_json::Map::new();
            if let Some(n) = n {
                m.insert("name".into(), n);
            }
            if let Some(v) = v {
                m.insert("value".into(), v);
            }
            if let Some(re) = re {
                m.insert("isRegex".into(), re);
            }
            if let Some(eq) = eq {
                m.insert("isEqual".into(), eq);
            }
            Value::Object(m)
        })
}

/// Times around now, far away, at chrono's limits, and not times at all.
fn time() -> impl Strategy<Value = Value> {
    let now = Utc::now();
    prop_oneof![
        6 => (-3_600i64 * 48..3_600 * 48)
            .prop_map(move |s| json!((now + Duration::seconds(s)).to_rfc3339())),
        3 => prop::sample::select(vec![
            "1970-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "+10000-01-01T00:00:00Z",
            "+262142-12-31T23:59:59Z",
            "-0001-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00+14:00",
            "2026-01-01T00:00:00-23:59",
            "2026-01-01T00:00:60Z",
            "2026-01-01 00:00:00",
            "now",
            "",
        ])
        .prop_map(|s| json!(s)),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => Just(Value::Null),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec!["ops", "", " ", "maintenance", "é", "\u{0}"])
            .prop_map(|s| json!(s)),
        1 => (1usize..5000).prop_map(|n| json!("c".repeat(n))),
        1 => Just(Value::Null),
        1 => Just(json!(["a"])),
    ]
}

/// A silence body: a well-formed one, then up to three fields replaced by something
/// odd (missing, mistyped, out of range), so that both acceptance and every refusal
/// are reached.
fn silence_json(ids: Vec<String>) -> impl Strategy<Value = Value> {
    let now = Utc::now();
    let good_matcher = (
        prop::sample::select(vec!["alertname", "severity", "instance", "a", "_x"]),
        prop::sample::select(vec!["x", "GpuHot", "gpu-.*", "a|b", "", ".+", "(?i)X", "é"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(n, v, re, eq)| json!({"name": n, "value": v, "isRegex": re, "isEqual": eq}));
    let good = (
        prop::collection::vec(good_matcher, 1..4),
        -3_600i64 * 2..3_600,
        1i64..3_600 * 24 * 30,
        prop::sample::select(vec!["ops", "é", "a b"]),
        prop::sample::select(vec!["maintenance", "x", "\u{1F600}"]),
    )
        .prop_map(move |(ms, start, len, by, comment)| {
            json!({
                "matchers": ms,
                "startsAt": (now + Duration::seconds(start)).to_rfc3339(),
                "endsAt": (now + Duration::seconds(start + len)).to_rfc3339(),
                "createdBy": by,
                "comment": comment,
            })
        });
    let id = prop_oneof![
        2 => prop::sample::select(if ids.is_empty() { vec![String::new()] } else { ids })
            .prop_map(|s| json!(s)),
        1 => prop::sample::select(vec!["", "nope", "../x", "\u{0}"]).prop_map(|s| json!(s)),
        1 => Just(json!(7)),
    ];
    let field = prop_oneof![
        Just("matchers"),
        Just("startsAt"),
        Just("endsAt"),
        Just("createdBy"),
        Just("comment"),
        Just("updatedAt"),
        Just("id"),
        Just("extra"),
    ];
    let bad_value = prop_oneof![
        3 => Just(None),
        2 => time().prop_map(Some),
        2 => text().prop_map(Some),
        3 => prop::collection::vec(matcher(), 0..4).prop_map(|v| Some(Value::Array(v))),
        1 => id.prop_map(Some),
        1 => Just(Some(json!({}))),
    ];
    (good, prop::collection::vec((field, bad_value), 0..3)).prop_map(|(mut body, edits)| {
        for (k, v) in edits {
            match v {
                Some(v) => body[k] = v,
                None => {
                    body.as_object_mut().unwrap().remove(k);
                }
            }
        }
        body
    })
}

/// A valid silence body, as seed for byte mutations.
fn valid_body() -> String {
    let now = Utc::now();
    json!({
        "matchers": [
            {"name": "alertname", "value": "GpuHot", "isRegex": false, "isEqual": true},
            {"name": "instance", "value": "gpu-.*", "isRegex": true}
        ],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + Duration::hours(2)).to_rfc3339(),
        "createdBy": "ops",
        "comment": "maintenance"
    })
    .to_string()
}

/// Tokens that JSON parsers and silence validation treat specially.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "null",
    "true",
    "false",
    "-1",
    "1e309",
    "\"matchers\"",
    "\"isRegex\": true",
    "\"value\": \"(\"",
    "\"endsAt\"",
    "\"id\"",
    "é",
];

fn label_sets() -> Vec<BTreeMap<String, String>> {
    let l = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    vec![
        l(&[]),
        l(&[("alertname", "GpuHot"), ("instance", "gpu-01")]),
        l(&[("severity", "critical"), ("a", "x")]),
        l(&[("a", "")]),
    ]
}

/// What the API does with a body, on the dispatcher's silences: parse, upsert, look up,
/// expire, collect. Returns the accepted silence, if any.
fn exercise(silences: &mut Silences, body: &[u8]) -> Option<Silence> {
    let now = Utc::now();
    let s: Silence = serde_json::from_slice(body).ok()?;
    let accepted = silences.upsert(s, now).ok()?;
    assert!(!accepted.id.is_empty());
    assert!(silences.list().iter().any(|x| x.id == accepted.id));
    // What the notifier persists must read back as the same silence.
    let stored = serde_json::to_vec(&accepted).expect("silences serialise");
    let back: Silence = serde_json::from_slice(&stored).unwrap_or_else(|e| {
        panic!(
            "an accepted silence does not read back from its stored form ({e}): {}",
            String::from_utf8_lossy(&stored)
        )
    });
    assert_eq!(back, accepted);
    for labels in label_sets() {
        let _ = silences.silenced_by(&labels, now);
    }
    let expired = silences.expire(&accepted.id, now).expect("known id");
    assert_ne!(expired.state(now), SilenceState::Active);
    let _ = silences.gc(now - Duration::days(8));
    Some(accepted)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn silence_structured_json_never_panics(
        bodies in prop::collection::vec(silence_json(Vec::new()), 1..4),
        ids_from_first in any::<bool>(),
    ) {
        let mut silences = Silences::default();
        let mut ids = Vec::new();
        for b in &bodies {
            let mut b = b.clone();
            // Updates of what was accepted before.
            if ids_from_first && !ids.is_empty() {
                b["id"] = json!(ids[0]);
            }
            if let Some(s) = exercise(&mut silences, b.to_string().as_bytes()) {
                ids.push(s.id);
            }
        }
    }

    #[test]
    fn silence_mutated_bytes_never_panic(
        muts in prop::collection::vec(mutation(JSON_TOKENS), 1..6),
    ) {
        let mut silences = Silences::default();
        exercise(&mut silences, &mutate(valid_body().as_bytes(), &muts));
    }

    #[test]
    fn silence_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut silences = Silences::default();
        exercise(&mut silences, &bytes);
    }
}

/// One notifier for the whole run (no receivers; the outbox under a temp dir).
fn notifier() -> &'static Arc<Notifier> {
    static N: OnceLock<(tempfile::TempDir, Arc<Notifier>)> = OnceLock::new();
    &N.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(&NotifyConfig::default(), dir.path(), &Registry::new()).unwrap();
        (dir, n)
    })
    .1
}

proptest! {
    #![proptest_config(config(128))]

    /// The notifier's entry points the HTTP API calls, with persistence.
    #[test]
    fn notifier_silence_api_never_panics(
        body in silence_json(Vec::new()),
        expire_unknown in "\\PC{0,12}",
    ) {
        let n = notifier();
        if let Ok(s) = serde_json::from_slice::<Silence>(body.to_string().as_bytes()) {
            if let Ok(s) = n.put_silence(s) {
                prop_assert!(n.silences().iter().any(|x| x.id == s.id));
                prop_assert!(n.expire_silence(&s.id));
            }
        }
        let _ = n.expire_silence(&expire_unknown);
        let _ = n.alerts();
    }
}

/// The times chrono can hold but not every RFC 3339 reader can read back.
#[test]
fn silence_with_far_future_end_reads_back() {
    let now: DateTime<Utc> = Utc::now();
    let body = json!({
        "matchers": [{"name": "a", "value": "x"}],
        "startsAt": now.to_rfc3339(),
        "endsAt": "+10000-01-01T00:00:00Z",
        "createdBy": "ops",
        "comment": "long",
    });
    let mut silences = Silences::default();
    // Either refused, or accepted and stored in a form that reads back.
    let _ = exercise(&mut silences, body.to_string().as_bytes());
}

// ---------------------------------------------------------------------------------
// Found by bench/chaos.sh (smtp-stall), as a named regression test
// ---------------------------------------------------------------------------------

/// An SMTP server that accepts the connection and never sends its greeting: the email
/// attempt must end at its `timeout` (and be retried). Today it never ends, so each
/// alert pins one of the `outbox.concurrency` (16) delivery slots and one fd; after 16
/// such alerts no receiver (webhooks included) gets anything more.
#[tokio::test]

async fn email_attempt_to_a_stalled_smtp_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accepted, never answered
        }
    });
    let yaml = format!(
        r#"
route: {{ receiver: mail, group_by: [alertname], group_wait: 0s, group_interval: 1s }}
receivers:
  - name: mail
    emails: [{{ to: [a@example.com], from: s@example.com, smarthost: "{addr}", require_tls: false, timeout: 1s }}]
outbox: {{ initial_backoff: 100ms, max_backoff: 200ms }}
"#
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let n = Notifier::new(&cfg, dir.path(), &reg).unwrap();
    n.start();
    let now = Utc::now();
    use sentinel_base::alert::AlertSink;
    n.send(vec![sentinel_base::alert::Alert {
        labels: [("alertname".to_string(), "Stalled".to_string())].into(),
        annotations: BTreeMap::new(),
        starts_at: now - Duration::seconds(5),
        ends_at: now + Duration::seconds(240),
        generator_url: String::new(),
    }]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut text = String::new();
        sentinel_base::metrics::encode::encode_text(&reg.collect(), &mut text);
        let ended = text.lines().any(|l| {
            l.starts_with("sentinel_notifications_total{receiver=\"mail\",result=\"retry\"}")
                && !l.ends_with(" 0")
        });
        if ended {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no email attempt ended within 15 s although its timeout is 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
