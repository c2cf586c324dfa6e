//! node_exporter's stat collector from the non-CPU lines of `/proc/stat`:
//! `node_boot_time_seconds` (`btime`, a gauge in Unix seconds), `node_intr_total`,
//! `node_context_switches_total`, `node_forks_total`, `node_procs_running`,
//! `node_procs_blocked`. `cpu` reads the per-CPU lines of the same file; `mod.rs` reads
//! it once for both. A line the kernel does not print is left out.

use super::ParseError;
use crate::metrics::MetricFamily;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub btime: Option<u64>,
    /// First number of the `intr` line: interrupts serviced, all sources.
    pub intr: Option<u64>,
    pub ctxt: Option<u64>,
    /// `processes`: forks since boot.
    pub forks: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let mut s = Stat::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let slot = match it.next() {
            Some("btime") => &mut s.btime,
            Some("intr") => &mut s.intr,
            Some("ctxt") => &mut s.ctxt,
            Some("processes") => &mut s.forks,
            Some("procs_running") => &mut s.procs_running,
            Some("procs_blocked") => &mut s.procs_blocked,
            _ => continue,
        };
        let v = it
            .next()
            .ok_or_else(|| ParseError::NoValue(line.to_string()))?;
        *slot = Some(v.parse().map_err(|_| ParseError::bad("value", v))?);
    }
    if s == Stat::default() {
        return Err(ParseError::Missing("btime/intr/ctxt/processes/procs lines"));
    }
    Ok(s)
}

pub fn families(s: Stat) -> Vec<MetricFamily> {
    let gauge = |name: &str, help: &str, v: Option<u64>| {
        v.map(|v| MetricFamily::gauge(name, help).with::<&str, &str>(&[], v as f64))
    };
    let counter = |name: &str, help: &str, v: Option<u64>| {
        v.map(|v| MetricFamily::counter(name, help).with::<&str, &str>(&[], v as f64))
    };
    [
        gauge(
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            s.btime,
        ),
        counter(
            "node_intr_total",
            "Total number of interrupts serviced.",
            s.intr,
        ),
        counter(
            "node_context_switches_total",
            "Total number of context switches.",
            s.ctxt,
        ),
        counter("node_forks_total", "Total number of forks.", s.forks),
        gauge(
            "node_procs_running",
            "Number of processes in runnable state.",
            s.procs_running,
        ),
        gauge(
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            s.procs_blocked,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_line_it_knows() {
        let stat = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 375502 0 9 0\nctxt 527652\nbtime 1795452733\nprocesses 18913\nprocs_running 3\nprocs_blocked 0\nsoftirq 1 2 3\n";
        let s = parse_stat(stat).unwrap();
        assert_eq!(
            s,
            Stat {
                btime: Some(1_795_452_733),
                intr: Some(375_502),
                ctxt: Some(527_652),
                forks: Some(18_913),
                procs_running: Some(3),
                procs_blocked: Some(0),
            }
        );
        assert_eq!(families(s).len(), 6);
    }

    #[test]
    fn missing_lines_are_left_out() {
        let s = parse_stat("cpu 1 2 3 4\nbtime 1795452733\n").unwrap();
        let f = families(s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "node_boot_time_seconds");
        assert!(parse_stat("cpu 1 2 3 4\n").is_err());
        assert!(parse_stat("btime soon\n").is_err());
    }
}
