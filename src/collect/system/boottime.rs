//! `node_boot_time_seconds` from the `btime` line of `/proc/stat`, as node_exporter's
//! stat collector reports it (a gauge in Unix seconds). `cpu` reads the same file;
//! `mod.rs` reads it once for both.

use crate::metrics::MetricFamily;

/// The `btime` value, if the file has a well-formed one.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn families(btime: u64) -> Vec<MetricFamily> {
    vec![
        MetricFamily::gauge("node_boot_time_seconds", "Node boot time, in unixtime.")
            .with::<&str, &str>(&[], btime as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_btime_among_other_lines() {
        let stat = "cpu  1 2 3 4\ncpu0 1 2 3 4\nctxt 5\nbtime 1795452733\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_795_452_733));
        assert_eq!(parse_btime("cpu 1 2 3 4\n"), None);
        assert_eq!(parse_btime("btime soon\n"), None);
    }
}
