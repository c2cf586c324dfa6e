//! Fuzz targets on the stable toolchain (property tests) for the binary crate's parsers:
//! the config loader, the events ingest API (JSON and NDJSON) and ComfyUI's `/history`,
//! `/queue` and `/system_stats` bodies. None may panic on any input; a config error
//! names its file, line and column; a rejected ingest batch changes no metric it feeds.
//!
//! `PROPTEST_CASES` sets the cases per target (default 256, a few seconds each in a
//! debug build); hunt longer with e.g.
//! `PROPTEST_CASES=5000 cargo test --test tests fuzz::`.

use comfy_sentinel::collect::comfyui::api::{parse_history_page, parse_queue, parse_system_stats};
use comfy_sentinel::collect::comfyui::history::Tracker;
use comfy_sentinel::config::{parse, Config, ConfigSource};
use comfy_sentinel::ingest::events::{parse_batch, BatchError, Framing, Limits};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::OnceLock;

#[path = "support/fuzz_kit.rs"]
mod fuzz_kit;
use fuzz_kit::{config, mutate, mutation};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------
// Config loader
// ---------------------------------------------------------------------------------

const YAML_TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "!!float ",
    "!!int ",
    "<<: *a\n",
    "~",
    "null",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "0x10",
    "0o7",
    "-1",
    "99999999999999999999",
    "  ",
    "\t",
    "#",
    "|\n",
    ">-\n",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\u{feff}",
    "\r\n",
    "\u{0}",
    "\u{85}",
    "? ",
    "!",
    "@",
    "`",
    "\\",
    "${X}",
    "${",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "0s",
    "1y",
    "-5s",
    "1e3s",
    "auto",
    "é",
    "listen: ",
    "data_dir: ",
    "collectors:\n",
    "notify:\n",
    "ingest:\n",
    "web:\n",
    "rules:\n",
    "log:\n",
    "level: ",
    "format: ",
    "enabled: ",
    "interval: ",
    "timeout: ",
    "url: ",
    "receivers: ",
    "route: ",
    "token: ",
    "external_url: ",
    "http://u:p@h:1/",
    "0.0.0.0:0",
    "[::1]:9188",
    "files: ",
    "webhooks: ",
    "matchers: ",
];

/// The repository's config files and the YAML examples of its docs.
fn config_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut s: Vec<Vec<u8>> = Vec::new();
        for f in ["config/default.yaml", "config/example.yaml"] {
            s.push(std::fs::read(repo().join(f)).expect("seed config"));
        }
        let mut docs: Vec<_> = std::fs::read_dir(repo().join("docs"))
            .expect("docs")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        for d in docs {
            let text = std::fs::read_to_string(&d).unwrap_or_default();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("```yaml\n") {
                let body = &rest[i + 8..];
                let end = body.find("```").unwrap_or(body.len());
                s.push(body.as_bytes()[..end].to_vec());
                rest = &body[end..];
            }
        }
        let mut fixtures: Vec<_> = std::fs::read_dir(repo().join("tests/fixtures/comfyui/config"))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        fixtures.sort();
        s.extend(fixtures.iter().filter_map(|p| std::fs::read(p).ok()));
        assert!(s.len() >= 4, "config seeds found: {}", s.len());
        s
    })
}

/// Parses a config; an error must carry this file's name and a position inside it.
fn check_config(text: &str) {
    const FILE: &str = "fuzz/config.yaml";
    match parse(FILE, text) {
        Ok(c) => {
            // What `check --print` does with a good config.
            let _ = comfy_sentinel::config::render_redacted(&c);
        }
        Err(e) => {
            assert_eq!(e.file, FILE, "{e}");
            // YAML also breaks lines at CR, NEL, LS and PS, and counts them.
            let lines = 1 + text
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            assert!(
                e.line >= 1 && e.line <= lines + 1 && e.column >= 1,
                "error outside the file ({lines} lines): {e}"
            );
            assert!(e.to_string().starts_with(FILE), "{e}");
        }
    }
}

fn config_yaml() -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        "",
        "x",
        "0",
        "-1",
        "1e309",
        "5s",
        "0s",
        "-1s",
        "1y",
        "99999999999999999999s",
        "auto",
        "true",
        "null",
        "[]",
        "{}",
        "[a, b]",
        "{a: 1}",
        "\"127.0.0.1:1\"",
        "'[::1]:0'",
        "\"not a url\"",
        "\"http://u:SECRET@h:1\"",
        "\"${NOPE}\"",
        "&a 1",
        "*a",
        "!!binary aGk=",
    ]);
    let key = prop::sample::select(vec![
        "listen",
        "data_dir",
        "external_url",
        "external_labels",
        "log.level",
        "log.format",
        "limits.max_series_per_family",
        "collectors.system.enabled",
        "collectors.system.interval",
        "collectors.gpu.enabled",
        "collectors.comfyui.url",
        "collectors.comfyui.interval",
        "collectors.comfyui.timeout",
        "collectors.probes.targets",
        "ingest.enabled",
        "ingest.token",
        "ingest.max_body_bytes",
        "ingest.max_events_per_batch",
        "ingest.rate_limit.requests_per_second",
        "ingest.quality_buckets",
        "rules.files",
        "rules.evaluation_interval",
        "notify.route.receiver",
        "notify.receivers",
        "notify.outbox.max_attempts",
        "notify.outbox.jitter",
        "notify.history_retention",
        "web.basic_auth.username",
        "web.tls",
        "nope",
        "collectors.nope",
    ]);
    prop::collection::vec((key, value), 0..6).prop_map(|kvs| {
        let mut s = String::new();
        for (k, v) in kvs {
            let parts: Vec<&str> = k.split('.').collect();
            for (depth, p) in parts.iter().enumerate() {
                let indent = "  ".repeat(depth);
                if depth + 1 == parts.len() {
                    s.push_str(&format!("{indent}{p}: {v}\n"));
                } else {
                    s.push_str(&format!("{indent}{p}:\n"));
                }
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_config(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn config_mutated_seeds_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(YAML_TOKENS), 1..8),
    ) {
        let seeds = config_seeds();
        let seed = &seeds[seed.index(seeds.len())];
        check_config(&String::from_utf8_lossy(&mutate(seed, &muts)));
    }

    #[test]
    fn config_generated_never_panics(text in config_yaml()) {
        check_config(&text);
    }
}

// ---------------------------------------------------------------------------------
// Ingest: JSON and NDJSON batches
// ---------------------------------------------------------------------------------

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn label_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        30 => prop::sample::select(vec!["load", "db", "wf", "clip_score", "nightly", "é", "a\\u0000b"])
            .prop_map(|s| json!(s)),
        1 => Just(json!("")),
        1 => (100usize..140).prop_map(|n| json!("x".repeat(n))),
        1 => Just(json!(7)),
        1 => Just(Value::Null),
    ]
}

fn seconds_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        30 => (0.0f64..1000.0).prop_map(|v| json!(v)),
        1 => prop::sample::select(vec![-1.0, 0.0, 1e308, -1.7e308, 5e-324, f64::MAX])
            .prop_map(|v| json!(v)),
        1 => Just(json!("1")),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(-9_223_372_036_854_775_807i64)),
    ]
}

/// One event of a random type: valid most of the time, with odd fields sometimes.
fn event() -> impl Strategy<Value = Value> {
    let now = now();
    let ts = prop_oneof![
        20 => (-86_400.0f64..200.0).prop_map(move |d| json!(now + d)),
        1 => prop::sample::select(vec![0.0, -1.0, 1e300, now * 1000.0, now + 301.0])
            .prop_map(|v| json!(v)),
    ];
    let attempts = prop_oneof![
        20 => (1u64..10).prop_map(|v| json!(v)),
        1 => prop::sample::select(vec![json!(0), json!(2.0), json!(2.5), json!(1_000_001), json!(-1)]),
    ];
    let op = (
        label_text(),
        seconds_value(),
        prop::option::of(seconds_value()),
        prop::option::of(attempts),
        prop::sample::select(vec!["success", "recovered", "failed", "success", "recovered", "failed", "success", "recovered", "failed", "maybe"]),
        prop::option::of(seconds_value()),
        prop::option::of(seconds_value()),
        prop::option::of(label_text()),
    )
        .prop_map(|(o, d, oh, a, outcome, r, p, ec)| {
            let mut m = json!({"type": "operation", "operation": o, "duration_seconds": d, "outcome": outcome});
            let set = |m: &mut Value, k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m[k] = v;
                }
            };
            set(&mut m, "overhead_seconds", oh);
            set(&mut m, "attempts", a);
            set(&mut m, "recovery_seconds", r);
            set(&mut m, "persistence_seconds", p);
            set(&mut m, "error_class", ec);
            m
        });
    let state = prop::sample::select(vec![
        "closed",
        "half_open",
        "open",
        "closed",
        "half_open",
        "open",
        "closed",
        "half_open",
        "open",
        "ajar",
    ]);
    let breaker = (
        label_text(),
        state.clone(),
        prop::option::of(state),
        prop::option::of(ts.clone()),
    )
        .prop_map(|(n, s, f, t)| {
            let mut m = json!({"type": "circuit_breaker", "name": n, "state": s});
            if let Some(f) = f {
                m["from"] = json!(f);
            }
            if let Some(t) = t {
                m["timestamp"] = t;
            }
            m
        });
    let quality = (
        label_text(),
        label_text(),
        prop_oneof![
            20 => (-10.0f64..10.0).prop_map(|v| json!(v)),
            1 => prop::sample::select(vec![1e308, -1.7e308, f64::MIN_POSITIVE]).prop_map(|v| json!(v)),
            1 => Just(json!("0.5")),
        ],
    )
        .prop_map(|(w, m, v)| json!({"type": "quality", "workflow": w, "metric": m, "value": v}));
    let heartbeat = (
        label_text(),
        prop::sample::select(vec![
            "success", "failure", "success", "failure", "success", "failure", "ok",
        ]),
        prop::option::of(ts),
    )
        .prop_map(|(n, s, t)| {
            let mut m = json!({"type": "heartbeat", "name": n, "status": s});
            if let Some(t) = t {
                m["timestamp"] = t;
            }
            m
        });
    let odd = prop_oneof![
        Just(json!({"type": "nope"})),
        Just(json!({"type": "heartbeat", "name": "x", "status": "success", "extra": 1})),
        Just(json!({"type": "quality", "workflow": "w", "metric": "m", "value": 1, "name": "x"})),
        Just(json!(["heartbeat", "x", "success"])),
        Just(json!(null)),
        Just(json!(1)),
        Just(json!({})),
    ];
    prop_oneof![6 => op, 5 => breaker, 5 => quality, 5 => heartbeat, 1 => odd]
}

/// A body: JSON array, a single object, or NDJSON (blank lines, CRLF), sometimes cut or
/// with a byte changed.
fn ingest_body() -> impl Strategy<Value = (Vec<u8>, Framing)> {
    let framing = prop::sample::select(vec![Framing::Json, Framing::Ndjson, Framing::Sniff]);
    let shape = prop::sample::select(vec!["array", "object", "ndjson", "ndjson_crlf", "concat"]);
    (
        prop::collection::vec(event(), 0..6),
        shape,
        framing,
        prop::option::weighted(0.25, (any::<usize>(), any::<u8>(), any::<bool>())),
    )
        .prop_map(|(events, shape, framing, edit)| {
            let mut body = match shape {
                "array" => Value::Array(events.clone()).to_string().into_bytes(),
                "object" => events
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
                "ndjson" => events
                    .iter()
                    .map(|e| format!("{e}\n\n"))
                    .collect::<String>()
                    .into_bytes(),
                "ndjson_crlf" => events
                    .iter()
                    .map(|e| format!("  {e}\r\n"))
                    .collect::<String>()
                    .into_bytes(),
                _ => events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<String>()
                    .into_bytes(),
            };
            if let Some((p, b, cut)) = edit {
                let at = p % (body.len() + 1);
                if cut {
                    body.truncate(at);
                } else if at < body.len() {
                    body[at] = b;
                }
            }
            (body, framing)
        })
}

fn limits(max_events: usize) -> Limits {
    Limits {
        max_events,
        max_label_value_length: 128,
        now: now(),
    }
}

fn check_batch(body: &[u8], framing: Framing, max_events: usize) {
    match parse_batch(body, framing, &limits(max_events)) {
        Ok(events) => {
            assert!(
                events.len() <= max_events,
                "{} > {max_events}",
                events.len()
            );
        }
        Err(BatchError::Invalid {
            preceding, index, ..
        }) => {
            assert!(preceding.iter().sum::<u64>() <= index as u64);
        }
        Err(_) => {}
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn ingest_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        framing in prop::sample::select(vec![Framing::Json, Framing::Ndjson, Framing::Sniff]),
        max_events in 1usize..8,
    ) {
        check_batch(&bytes, framing, max_events);
    }

    #[test]
    fn ingest_structured_batches_never_panic(
        (body, framing) in ingest_body(),
        max_events in prop::sample::select(vec![1usize, 3, 10_000]),
    ) {
        check_batch(&body, framing, max_events);
    }
}

/// The ingest API in process (loopback peer), and the metric families a batch feeds.
struct IngestApp {
    rt: tokio::runtime::Runtime,
    app: std::sync::Arc<comfy_sentinel::app::App>,
    _dir: tempfile::TempDir,
}

fn ingest_app() -> &'static IngestApp {
    static APP: OnceLock<IngestApp> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "data_dir: {}\nlisten: 127.0.0.1:0\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n  comfyui: {{ enabled: false }}\ningest:\n  rate_limit: {{ requests_per_second: 0, events_per_second: 0 }}\n",
            dir.path().display()
        );
        let cfg: Config = parse("fuzz.yaml", &yaml).expect("fuzz config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(async { comfy_sentinel::app::App::start(cfg, ConfigSource::Embedded) });
        IngestApp { rt, app, _dir: dir }
    })
}

/// The metrics a batch feeds, as text (request and event counters excluded: they count
/// refusals too).
fn fed_metrics(app: &comfy_sentinel::app::App) -> String {
    let fams: Vec<_> = app
        .registry
        .collect()
        .into_iter()
        .filter(|f| {
            f.name.starts_with("recovery_")
                || f.name.starts_with("quality_")
                || f.name.starts_with("sentinel_heartbeat_")
                || f.name == "sentinel_ingest_label_overflow_total"
        })
        .collect();
    let mut out = String::new();
    comfy_sentinel::metrics::encode::encode_text(&fams, &mut out);
    out
}

/// Sends a batch to the in-process router (no socket; not the HTTP kit's `post_events`):
/// the status it answers.
fn route_events(body: Vec<u8>, content_type: Option<&str>) -> u16 {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    let a = ingest_app();
    let mut req = axum::http::Request::post("/api/v1/events");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let router = comfy_sentinel::http::router(a.app.clone());
    a.rt.block_on(async { router.oneshot(req).await.unwrap().status().as_u16() })
}

proptest! {
    #![proptest_config(config(128))]

    /// All or nothing: a refused batch (any 4xx) leaves every metric it feeds as it was.
    #[test]
    fn ingest_rejected_batch_changes_nothing(
        (body, framing) in ingest_body(),
        ct in prop::sample::select(vec![
            Some("application/json"), Some("application/x-ndjson"), None,
            Some("text/plain"), Some("application/json; charset=latin1"),
        ]),
    ) {
        let _ = framing;
        let app = &ingest_app().app;
        let before = fed_metrics(app);
        let status = route_events(body.clone(), ct);
        prop_assert!(status < 500, "status {status}");
        if status != 200 {
            let after = fed_metrics(app);
            prop_assert_eq!(before, after, "status {} changed metrics; body {}", status, String::from_utf8_lossy(&body));
        }
    }
}

// ---------------------------------------------------------------------------------
// ComfyUI /history, /queue, /system_stats
// ---------------------------------------------------------------------------------

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "1e309",
    "-1",
    "0",
    "1.5",
    "\"x\"",
    "\\u0000",
    "\\ud800",
    "\\",
    "{\"status\":",
    "\"messages\":",
    "[\"execution_success\",{}]",
    "[\"execution_start\",{\"timestamp\":-1e308}]",
    "{\"timestamp\":1e308}",
    "\"outputs\":",
    "\"prompt\":",
    "[0,\"id\",{},{},[\"9\"]]",
    "\"images\":[{\"filename\":1}]",
    "é",
    " ",
];

fn comfy_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = repo().join("tests/fixtures/comfyui");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let s: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
        assert!(s.len() >= 10, "comfyui seeds found: {}", s.len());
        s
    })
}

/// Everything the collector does with one body.
fn check_comfy(body: &[u8]) {
    let _ = parse_queue(body);
    let _ = parse_system_stats(body);
    let Ok(page) = parse_history_page(body) else {
        return;
    };
    let mut t = Tracker::default();
    let new = t.count_new(&page);
    let applied = t.apply(&page, 8);
    assert!(applied.new_entries <= page.entries.len());
    assert!(
        new >= applied.new_entries,
        "{new} < {}",
        applied.new_entries
    );
    for e in &page.entries {
        let _ = e.detail();
    }
    // A page is counted once: the same page again adds nothing.
    assert_eq!(t.apply(&page, 8).new_entries, 0);
    assert_eq!(t.count_new(&page), 0);
    // The state survives its own persistence.
    let bytes = t.to_bytes();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seen.json");
    std::fs::write(&p, &bytes).unwrap();
    let back = Tracker::load(&p).expect("saved state loads");
    assert_eq!(back.seen_len(), t.seen_len());
    assert_eq!(back.count_new(&page), 0);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn comfyui_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_comfy(&bytes);
    }

    #[test]
    fn comfyui_mutated_fixtures_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(JSON_TOKENS), 1..8),
    ) {
        let seeds = comfy_seeds();
        check_comfy(&mutate(&seeds[seed.index(seeds.len())], &muts));
    }
}

// ---------------------------------------------------------------------------------
// Known failures, as named regression tests
// ---------------------------------------------------------------------------------

/// Issue item 8, which `ingest_structured_batches_never_panic` generates (values up to
/// `f64::MAX`): two accepted events with `duration_seconds: 1e308` turn
/// `recovery_operation_seconds_total` into `+Inf` until restart.
#[test]

fn ingest_huge_event_values_keep_running_totals_finite() {
    let body = json!([
        {"type": "operation", "operation": "fuzz_inf", "duration_seconds": 1e308, "outcome": "success"},
        {"type": "operation", "operation": "fuzz_inf", "duration_seconds": 1e308, "outcome": "success"},
        {"type": "quality", "workflow": "fuzz_inf", "metric": "m", "value": -1.7e308},
        {"type": "quality", "workflow": "fuzz_inf", "metric": "m", "value": -1.7e308},
    ])
    .to_string();
    let _ = route_events(body.into_bytes(), Some("application/json"));
    let text = fed_metrics(&ingest_app().app);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("fuzz_inf"))
        .filter(|l| {
            let v = l.rsplit(' ').next().unwrap_or("");
            v == "+Inf" || v == "-Inf" || v == "NaN"
        })
        .collect();
    assert!(
        bad.is_empty(),
        "running totals overflowed:\n{}",
        bad.join("\n")
    );
}
