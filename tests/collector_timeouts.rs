//! Collector timeouts follow Prometheus's `scrape_timeout` (issue 13, section 3): an
//! unset timeout is `min(default, interval)`, so a short interval alone is accepted; an
//! explicit timeout longer than the interval stays an error that names its place.

use crate::util::*;
use std::process::Command;

fn check(args: &[&str], yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(dir.path(), "c.yaml", yaml);
    let out = Command::new(bin())
        .arg("check")
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env_remove("COMFY_SENTINEL_CONFIG")
        .output()
        .expect("run check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_one_second_interval_without_a_timeout_and_prints_the_derived_one() {
    let yaml = "collectors:\n  comfyui: { url: 'http://127.0.0.1:8188', interval: 1s }\n  \
                system: { interval: 1s }\n  gpu: { interval: 1s }\n  \
                quality: { interval: 1s }\n  probes: { interval: 1s }\n";
    let (ok, stdout, stderr) = check(&["--print"], yaml);
    assert!(
        ok,
        "check refused a short interval without a timeout: {stderr}"
    );
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout).expect("YAML");
    for kind in ["comfyui", "system", "gpu", "quality", "probes"] {
        assert_eq!(
            v["collectors"][kind]["timeout"].as_str(),
            Some("1s"),
            "{kind}: the effective timeout is min(default, interval)"
        );
    }
    assert_eq!(
        v["collectors"]["quality"]["fetch_timeout"].as_str(),
        Some("1s")
    );
    // Defaults are unchanged when the interval is long enough.
    let (ok, stdout, stderr) = check(&["--print"], "# defaults\n");
    assert!(ok, "{stderr}");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!(v["collectors"]["comfyui"]["timeout"].as_str(), Some("2s"));
    assert_eq!(v["collectors"]["probes"]["timeout"].as_str(), Some("10s"));
}

#[test]
fn check_refuses_an_explicit_timeout_longer_than_the_interval_at_its_line() {
    let yaml = "collectors:\n  comfyui:\n    interval: 1s\n    timeout: 3s\n";
    let (ok, _, stderr) = check(&[], yaml);
    assert!(
        !ok,
        "an explicit timeout over the interval must stay an error"
    );
    assert!(
        stderr.contains("collectors.comfyui.timeout") && stderr.contains("at most the interval"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":4:"),
        "located at the timeout's line: {stderr}"
    );
}
