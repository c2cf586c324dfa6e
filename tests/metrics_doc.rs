//! `docs/metrics.md` is generated from the running binary and checked against it.
//!
//! The test starts the real binary (system collector, a probe against a local HTTP server,
//! the GPU collector in whatever state the host gives it), scrapes `/metrics` and compares
//! every family's name and type with the doc's tables. `UPDATE_DOCS=1` rewrites the doc
//! (family, type, labels, help), keeping the "appears" notes already written for families
//! that depend on the host. Families a CI machine cannot serve (GPU without a GPU) are
//! listed from their source lists and checked against those, not against the scrape.
//!
//! Rules of the comparison:
//! - every scraped family must be in the doc, with the same type;
//! - every doc row marked `always` must be scraped; rows with another note (e.g. "with
//!   PSI") may be missing here;
//! - the source-listed sections equal their lists exactly.

use crate::support::exposition::Exposition;
use crate::util::*;
use comfy_sentinel::collect::gpu;
use comfy_sentinel::metrics::MetricType;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

const HEADER: &str = "# Metrics

Generated from the running binary by `UPDATE_DOCS=1 cargo test --test tests metrics_doc::`;
the same test, without the variable, fails when this file and the binary disagree on a
family's name or type.

## Naming

- Base units only: seconds, bytes, watts, joules, hertz, celsius, ratios 0–1
  (`_seconds`, `_bytes`, `_watts`, `_joules`, `_hertz`, `_celsius`, `_ratio`); never
  milliseconds, kilobytes or percent.
- Counters end in `_total`; `_info` gauges carry identity in labels and are always 1;
  timestamps are `_timestamp_seconds` (Unix time).
- Dimensions are labels, not name parts (`node_cpu_seconds_total{cpu,mode}`).
- Host metrics keep node_exporter's names and labels (`node_*`), process metrics the
  client libraries' (`process_*`), so existing dashboards and alerts work unchanged.
- The sidecar's own metrics start with `sentinel_`; each collector's with its area
  (`gpu_`, `comfyui_`, `recovery_`, `quality_`, `probe_`).
- A value that could not be read is left out, never reported as 0.

## Series creation

Counters and histograms born from an event (a new `operation` in
`recovery_operations_total`/`recovery_errors_total`, a new `(node_type, exception_type)` in
`comfyui_node_errors_total`, a new `workflow` in `quality_score`, and every other
counter or histogram series that appears with its first event) carry their creation time:

- **OpenMetrics** (`Accept: application/openmetrics-text`): each such series has a
  `<name>_created{...} <unix seconds>` line after its last sample (after `_total` for
  counters, after `_count` for histograms), as OpenMetrics 1.0 defines. A Prometheus
  that ingests created timestamps (a feature flag in recent versions) records a zero
  there, so `rate()`/`increase()` count the first event. A Prometheus without it stores
  `<name>_created` as a series of its own and, as before, misses the first event. The
  text format 0.0.4 has no `_created`.
- **The sidecar's own rule engine**: when a series born after the engine's first snapshot
  reaches it, the engine records a zero at the series' creation time just before its first
  sample, so `increase(x[2m])` over a window holding the creation counts the first event.
- **No fake increases**: series present in the engine's first snapshot (created at 0 at
  start, or restored from `data_dir`, such as the ComfyUI history counters) get no zero,
  and restored series carry no creation time at all, so a sidecar restart never looks like
  an increase. A series that comes back after it went away is counted again only if its
  creation time is still inside the engine's retention. Gauges never carry a creation time.
- Counters created at 0 ahead of their first event (every outcome of an operation,
  `quality_image_failures_total{check}`, per-receiver notification counters) also carry
  their creation time; their zero adds nothing.
";

const SERVED: &str = "## Served by the binary";
const SERVED_INTRO: &str =
    "Seen in a scrape of the binary with the system collector, a probe target and the GPU\n\
collector (GPU families are listed in the next section). \"appears\" says when a family is\n\
present: `always`, or the condition it needs.";
const LISTED: &str = "## Listed from source";
const LISTED_INTRO: &str =
    "Families a CI machine cannot serve, checked against the collector's own list instead of\n\
a scrape. The ComfyUI, ingest (recovery, quality scores, heartbeats), rule and notification\n\
families join here, each with its source list, as those parts land.";

/// A family as a source list gives it: (name, type, help).
type Listed = (String, String, String);

/// Each source-listed section: its heading and its list.
fn source_lists() -> Vec<(&'static str, Vec<Listed>)> {
    vec![(
        "### GPU (`collect::gpu::FAMILIES`; per-device series carry `gpu`, `uuid`, `name`)",
        gpu::FAMILIES
            .iter()
            .map(|f| (f.name.to_string(), type_name(f.kind), f.help.to_string()))
            .collect(),
    )]
}

fn type_name(t: MetricType) -> String {
    t.as_str().to_string()
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Family {
    kind: String,
    help: String,
    labels: BTreeSet<String>,
}

/// Families of a text exposition: type, help and the label names their samples use.
fn parse_scrape(text: &str) -> BTreeMap<String, Family> {
    let e = Exposition::parse(text);
    let mut out: BTreeMap<String, Family> = e
        .families
        .into_iter()
        .map(|(name, meta)| {
            let fam = Family {
                kind: meta.kind,
                help: meta.help,
                labels: BTreeSet::new(),
            };
            (name, fam)
        })
        .collect();
    for sample in e.samples {
        if let Some(fam) = out.get_mut(&sample.family) {
            fam.labels.extend(
                sample
                    .labels
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|l| l != "le" && l != "quantile"),
            );
        }
    }
    out
}

/// One table row of the doc.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    kind: String,
    appears: Option<String>,
}

/// The doc's rows by section (`SERVED`, or a source-list heading).
fn parse_doc(doc: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut section = String::new();
    for line in doc.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            section = line.to_string();
            continue;
        }
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<String> = line
            .replace("\\|", "\u{0}")
            .split('|')
            .map(|c| c.trim().replace('\u{0}', "|"))
            .collect();
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].clone();
        let appears = (section == SERVED).then(|| cells[3].trim_matches('`').to_string());
        out.entry(section.clone()).or_default().push(Row {
            name,
            kind,
            appears,
        });
    }
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn labels_cell(labels: &BTreeSet<String>) -> String {
    if labels.is_empty() {
        "—".to_string()
    } else {
        labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The whole doc from a scrape, keeping the old doc's notes and the rows of host-dependent
/// families this host did not serve.
fn generate(scraped: &BTreeMap<String, Family>, old: &str) -> String {
    let listed: BTreeSet<String> = source_lists()
        .into_iter()
        .flat_map(|(_, l)| l.into_iter().map(|(n, _, _)| n))
        .collect();
    // Old served rows: the note, and the whole row text for families not seen now.
    let mut old_notes: BTreeMap<String, String> = BTreeMap::new();
    let mut old_lines: BTreeMap<String, String> = BTreeMap::new();
    let mut in_served = false;
    for line in old.lines() {
        if line.starts_with("## ") {
            in_served = line == SERVED;
        }
        if in_served && line.starts_with("| `") {
            let cells: Vec<&str> = line.split(" | ").collect();
            let name = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_string();
            old_notes.insert(name.clone(), cells[2].to_string());
            old_lines.insert(name, line.to_string());
        }
    }
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for (name, f) in scraped.iter().filter(|(n, _)| !listed.contains(*n)) {
        let appears = old_notes
            .get(name)
            .cloned()
            .unwrap_or_else(|| "`always`".to_string());
        rows.insert(
            name.clone(),
            format!(
                "| `{name}` | {} | {appears} | {} | {} |",
                f.kind,
                labels_cell(&f.labels),
                md(&f.help)
            ),
        );
    }
    for (name, line) in old_lines {
        let conditional = old_notes.get(&name).is_some_and(|n| n != "`always`");
        if conditional && !listed.contains(&name) {
            rows.entry(name).or_insert(line);
        }
    }
    let mut doc = format!("{HEADER}\n{SERVED}\n\n{SERVED_INTRO}\n\n| family | type | appears | labels | help |\n| --- | --- | --- | --- | --- |\n");
    for line in rows.values() {
        doc.push_str(line);
        doc.push('\n');
    }
    doc.push_str(&format!("\n{LISTED}\n\n{LISTED_INTRO}\n"));
    for (heading, list) in source_lists() {
        doc.push_str(&format!(
            "\n{heading}\n\n| family | type | help |\n| --- | --- | --- |\n"
        ));
        for (name, kind, help) in list {
            doc.push_str(&format!("| `{name}` | {kind} | {} |\n", md(&help)));
        }
    }
    doc
}

/// A local HTTP server that answers every request with 200, for the probe collector.
fn http_target() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let h = std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    (addr, h)
}

fn doc_path() -> PathBuf {
    repo().join("docs/metrics.md")
}

/// Starts the binary with every family this machine can produce and scrapes it once the
/// probe has reported.
fn scrape_families() -> BTreeMap<String, Family> {
    let (target, _server) = http_target();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  system:\n    interval: 1s\n    timeout: 1s\n  gpu:\n    interval: 1s\n    timeout: 1s\n  probes:\n    interval: 1s\n    timeout: 1s\n    targets:\n      - {{name: local, http: \"http://{target}/\"}}\nnotify:\n  route: {{receiver: hook, group_wait: 1s}}\n  receivers:\n    - name: hook\n      webhooks: [{{url: \"http://{target}/hook\"}}]\n"
        ),
    );
    s.wait_ready();
    // One event of every type, so the event-fed families exist too.
    let events = r#"[{"type":"operation","operation":"load_model","duration_seconds":1.2,"overhead_seconds":0.01,"attempts":2,"outcome":"recovered","recovery_seconds":0.3,"persistence_seconds":0.002,"error_class":"transient"},
        {"type":"circuit_breaker","name":"comfyui-api","state":"open","from":"closed"},
        {"type":"quality","workflow":"portrait","metric":"clip_score","value":0.31},
        {"type":"heartbeat","name":"nightly-backup","status":"success"},
        {"type":"heartbeat","name":"nightly-backup","status":"failure"}]"#;
    post_events(&s, events);
    // The probe has reported, and the always-firing Watchdog has reached the webhook,
    // so delivery metrics exist too.
    wait_for(
        &s,
        &[
            "probe_success{",
            "probe_http_status_code{",
            "sentinel_notifications_total{",
        ],
    );
    // Then a second round of every collector, so counters that need two reads (rates,
    // deltas) are there too.
    std::thread::sleep(Duration::from_secs(2));
    parse_scrape(&scrape(&s))
}

#[test]
fn metrics_doc_matches_the_binary() {
    let scraped = scrape_families();
    let old = std::fs::read_to_string(doc_path()).unwrap_or_default();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(doc_path(), generate(&scraped, &old)).expect("write docs/metrics.md");
        return;
    }
    assert!(
        !old.is_empty(),
        "docs/metrics.md is missing: run with UPDATE_DOCS=1"
    );
    let doc = parse_doc(&old);
    let lists = source_lists();
    let listed: BTreeMap<String, String> = lists
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(n, k, _)| (n.clone(), k.clone())))
        .collect();
    let served: BTreeMap<&str, &Row> = doc
        .get(SERVED)
        .map(|rows| rows.iter().map(|r| (r.name.as_str(), r)).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (name, f) in &scraped {
        if let Some(kind) = listed.get(name) {
            if *kind != f.kind {
                problems.push(format!(
                    "{name}: served as {}, its source list says {kind}",
                    f.kind
                ));
            }
            continue;
        }
        match served.get(name.as_str()) {
            None => problems.push(format!("{name} ({}) is served but not in the doc", f.kind)),
            Some(r) if r.kind != f.kind => problems.push(format!(
                "{name}: served as {}, the doc says {}",
                f.kind, r.kind
            )),
            Some(_) => {}
        }
    }
    for (name, r) in &served {
        if r.appears.as_deref() == Some("always") && !scraped.contains_key(*name) {
            problems.push(format!(
                "{name} is marked `always` in the doc but was not served"
            ));
        }
        if listed.contains_key(*name) {
            problems.push(format!(
                "{name} is source-listed; it belongs in its own section"
            ));
        }
    }
    for (heading, list) in &lists {
        let want: Vec<(String, String)> = list
            .iter()
            .map(|(n, k, _)| (n.clone(), k.clone()))
            .collect();
        let have: Vec<(String, String)> = doc
            .get(*heading)
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.name.clone(), r.kind.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if want != have {
            let missing: Vec<_> = want.iter().filter(|w| !have.contains(w)).collect();
            let extra: Vec<_> = have.iter().filter(|h| !want.contains(h)).collect();
            problems.push(format!(
                "section {heading:?} differs from its source list (order included):\n  \
                 listed but not in the doc: {missing:?}\n  in the doc but not listed: {extra:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/metrics.md disagrees with the binary (UPDATE_DOCS=1 regenerates it):\n{}",
        problems.join("\n")
    );
}

#[test]
fn scrape_parser_reads_types_help_and_labels() {
    let text = "# HELP a_total Things, with \\\\ a backslash.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"}z\"} 1\n\
# HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1\",path=\"/\"} 0\nh_sum 0\nh_count 0\n";
    let f = parse_scrape(text);
    assert_eq!(f["a_total"].kind, "counter");
    assert_eq!(f["a_total"].help, "Things, with \\ a backslash.");
    assert_eq!(
        f["a_total"].labels,
        BTreeSet::from(["x".to_string(), "y".to_string()])
    );
    assert_eq!(f["h"].kind, "histogram");
    assert_eq!(f["h"].labels, BTreeSet::from(["path".to_string()]));
}

#[test]
fn regenerating_keeps_host_notes_and_unseen_conditional_rows() {
    let mut scraped = BTreeMap::new();
    scraped.insert(
        "node_load1".to_string(),
        Family {
            kind: "gauge".into(),
            help: "1m load | average.".into(),
            labels: BTreeSet::new(),
        },
    );
    let old = format!(
        "{SERVED}\n| `node_load1` | gauge | with /proc/loadavg | — | x |\n| `node_pressure_cpu_waiting_seconds_total` | counter | with PSI | — | y |\n| `gone_total` | counter | `always` | — | z |\n"
    );
    let doc = generate(&scraped, &old);
    let rows = &parse_doc(&doc)[SERVED];
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["node_load1", "node_pressure_cpu_waiting_seconds_total"]
    );
    assert_eq!(rows[0].appears.as_deref(), Some("with /proc/loadavg"));
    assert!(doc.contains("1m load \\| average."));
    assert!(doc.contains("| `gpu_nvml_up` | gauge |"));
}
