//! The history's memory (issue 11, "Performance"): after a restart the sealed chunks of a
//! day stay in the history file and memory keeps their index; a query still reads them.

use crate::util::*;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape"))
}

#[test]
fn restarted_sidecar_keeps_sealed_chunks_on_disk_and_their_index_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        dir.path(),
        "config.yaml",
        &format!(
            "data_dir: {:?}\ncollectors:\n  system: {{ enabled: false }}\n  gpu: {{ enabled: false }}\n",
            dir.path().join("data")
        ),
    );
    // Six hours of 8 series at 5 s (34,560 samples), ending now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut text = String::from("# TYPE gpu_temp_celsius gauge\n");
    for gpu in 0..8 {
        for k in 0..4320u64 {
            let t = now - 6 * 3600 + k * 5;
            text.push_str(&format!(
                "gpu_temp_celsius{{gpu=\"{gpu}\"}} {} {t}\n",
                (k * 7919 + gpu * 31) % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    let input = temp_file(dir.path(), "six_hours.om", &text);
    run_ok(
        Command::new(bin())
            .args(["history", "import", "--config", cfg.to_str().unwrap()])
            .arg(&input),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let scrape = scrape_until(&s, "sentinel_history_memory_bytes");
    let (memory, total) = (
        metric(&scrape, "sentinel_history_memory_bytes"),
        metric(&scrape, "sentinel_history_bytes"),
    );
    assert!(
        memory * 3.0 < total,
        "memory {memory} of {total}: the sealed chunks were loaded into memory"
    );
    let q = percent_encode("count_over_time(gpu_temp_celsius{gpu=\"3\"}[7h])");
    let (status, v, body) = get_json(&s.url(&format!("/api/v1/query?query={q}")));
    assert_eq!(status, 200, "{body}");
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .parse()
        .unwrap();
    assert_eq!(got, 4320.0, "{body}");
}
