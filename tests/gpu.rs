//! The GPU collector in the running binary on a host without NVML: the absent state
//! is served, the collector stays successful, and the absence is logged once.

use crate::util::*;
use std::time::Duration;

/// Starts the binary with a GPU section whose NVML library cannot exist, so the test
/// means the same on a host that has a GPU.
fn start_without_nvml(enabled: &str) -> (Sentinel, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Sentinel::start_in(
        dir.path(),
        &format!(
            "collectors:\n  gpu:\n    enabled: {enabled}\n    interval: 200ms\n    timeout: 200ms\n    library_path: /nonexistent/libnvidia-ml.so.1\n"
        ),
    );
    s.wait_ready();
    // Let several runs happen: the log line must not repeat per run.
    std::thread::sleep(Duration::from_millis(1000));
    (s, dir)
}

fn check_absent_state(s: &Sentinel) {
    let text = scrape(s);
    assert!(text.contains("\ngpu_nvml_up 0\n"), "{text}");
    assert!(text.contains("\ngpu_devices 0\n"), "{text}");
    assert!(
        text.contains("sentinel_collector_success{collector=\"gpu\"} 1"),
        "{text}"
    );
}

#[test]
fn auto_without_nvml_reports_absent_and_logs_once_at_info() {
    let (s, _dir) = start_without_nvml("auto");
    check_absent_state(&s);
    let logs = s.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("NVML not available"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("INFO"), "{logs}");
}

#[test]
fn enabled_without_nvml_warns_once_and_keeps_serving() {
    let (s, _dir) = start_without_nvml("true");
    check_absent_state(&s);
    let logs = s.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("NVML is unavailable"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("WARN"), "{logs}");
    let (status, _, _) = http_get(&s.url("/healthz"), &[]).expect("healthz");
    assert_eq!(status, 200);
}
