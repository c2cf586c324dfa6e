//! The release of start-up pages (`alloc::release_startup_pages`, issue 13 section 8):
//! once the sidecar is up it drops the resident pages of its own binary, and everything
//! still works afterwards, because the code comes back from the file on use.

use crate::support::exposition::Exposition;
use crate::util::*;
use std::time::Duration;

/// Waits (at most `secs`) for a log line containing every one of `needles`.
fn wait_log(s: &Sentinel, needles: &[&str], secs: u64) -> String {
    wait_until(Duration::from_secs(secs), || {
        let log = s.logs();
        log.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .ok_or_else(|| format!("no log line with {needles:?}; log:\n{log}"))
    })
}

/// Sum of every sample of `name` in an exposition.
fn total(text: &str, name: &str) -> f64 {
    Exposition::parse(text)
        .samples
        .iter()
        .filter(|x| x.name == name)
        .map(|x| x.value)
        .sum()
}

/// The sidecar with its defaults and debug logs (where the release reports itself),
/// plus `env`.
fn start_debug(dir: &std::path::Path, env: &[(&str, &str)]) -> Sentinel {
    let cfg = temp_file(
        dir,
        "config.yaml",
        &format!("data_dir: {:?}\n", dir.join("data")),
    );
    let mut all = vec![("RUST_LOG", "info,comfy_sentinel=debug")];
    all.extend_from_slice(env);
    let s = Sentinel::start_with_env(&["--config", cfg.to_str().unwrap()], &all);
    s.wait_ready();
    s
}

/// `key=value` of a log line, as a number.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn sidecar_scrapes_ingests_evaluates_and_reloads_after_releasing_startup_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_debug(dir.path(), &[]);
    let line = wait_log(&s, &["released start-up pages", "after=\"start-up\""], 40);
    if cfg!(target_os = "linux") {
        assert!(field(&line, "mappings") >= 1, "{line}");
        assert!(field(&line, "bytes") > 0, "{line}");
        assert!(
            field(&line, "rss_file_kb_after") < field(&line, "rss_file_kb_before"),
            "the binary's pages left the resident set: {line}"
        );
    }
    let evals = total(&scrape(&s), "sentinel_rule_evaluations_total");
    // An ingest batch, a gzip scrape and a plain one: code paths not run since the release.
    post_events(
        &s,
        r#"[{"type":"operation","operation":"after_release","duration_seconds":1.5,"outcome":"failed"}]"#,
    );
    let (status, headers, _) =
        http_get(&s.url("/metrics"), &[("Accept-Encoding", "gzip")]).expect("gzip scrape");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    scrape_until(&s, "operation=\"after_release\"");
    // Rule evaluation goes on (5 s default interval).
    wait_scrape(&s, Duration::from_secs(20), |text| {
        if total(text, "sentinel_rule_evaluations_total") > evals {
            vec![]
        } else {
            vec!["a rule evaluation after the release".into()]
        }
    });
    // A reload parses and compiles again, then releases again.
    s.signal("HUP");
    wait_log(&s, &["released start-up pages", "after=\"reload\""], 30);
    assert!(scrape(&s).contains("sentinel_rule_evaluations_total"));
}

#[test]
fn startup_page_release_is_off_with_its_environment_switch() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_debug(dir.path(), &[("COMFY_SENTINEL_RELEASE_STARTUP_PAGES", "0")]);
    // Past the point where the release runs (ready + 3 s), with margin.
    std::thread::sleep(Duration::from_secs(9));
    assert!(scrape(&s).contains("sentinel_rule_evaluations_total"));
    assert!(
        !s.logs().contains("start-up pages"),
        "released although switched off:\n{}",
        s.logs()
    );
}
