//! `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total{cpu,mode}` from
//! the `cpuN` lines of `/proc/stat`, as node_exporter 1.5's cpu collector reports them:
//! USER_HZ ticks divided into seconds, the eight modes `user nice system idle iowait irq
//! softirq steal`, guest time (already inside user/nice) as its own family.
//!
//! We parse by hand rather than with `procfs::KernelStats`: that parser drops the CPU
//! number, and with an offline CPU in the middle every later CPU would take the wrong
//! `cpu` label. Counters are kept monotonic the way node_exporter keeps them (some
//! kernels let idle/iowait step backwards): a value lower than the last one reported is
//! held, and an idle drop of 3 s or more is taken as a CPU hot-plug and resets that CPU.

use super::ParseError;
use crate::metrics::MetricFamily;
use std::collections::BTreeMap;

/// The columns of a `cpuN` line, in kernel order.
pub const MODES: [&str; 10] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
];
const IDLE: usize = 3;
const GUEST: usize = 8;
const GUEST_NICE: usize = 9;

/// node_exporter's `jumpBackSeconds`.
const JUMP_BACK_SECONDS: f64 = 3.0;

/// Most CPUs we accept from one file; more is not a real machine.
const MAX_CPUS: usize = 8192;

/// One `cpuN` line: the CPU number and its ticks per column (None when the kernel
/// does not print that column).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTicks {
    pub cpu: u32,
    pub ticks: [Option<u64>; 10],
}

/// Parses the per-CPU lines of `/proc/stat` (the `cpu ` total line is skipped).
pub fn parse_cpu_stat(text: &str) -> Result<Vec<CpuTicks>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(id) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        let cpu: u32 = id
            .parse()
            .map_err(|_| ParseError::bad("cpu line", truncate(line)))?;
        let mut ticks = [None; 10];
        for (slot, f) in ticks.iter_mut().zip(fields) {
            *slot = Some(f.parse().map_err(|_| ParseError::BadValueIn {
                value: f.to_string(),
                line: truncate(line).to_string(),
            })?);
        }
        if ticks[IDLE].is_none() {
            return Err(ParseError::ShortCpuLine(truncate(line).to_string()));
        }
        if out.len() >= MAX_CPUS {
            return Err(ParseError::TooManyCpus(MAX_CPUS as u64));
        }
        out.push(CpuTicks { cpu, ticks });
    }
    if out.is_empty() {
        return Err(ParseError::Missing("cpuN lines"));
    }
    Ok(out)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Seconds per mode of one CPU, after the monotonic guard.
pub type CpuSeconds = BTreeMap<u32, [Option<f64>; 10]>;

/// The last values reported per CPU.
#[derive(Debug, Default)]
pub struct CpuState {
    last: CpuSeconds,
}

impl CpuState {
    /// Converts ticks to seconds and applies node_exporter's monotonic guard.
    pub fn update(&mut self, cpus: &[CpuTicks], user_hz: f64) -> CpuSeconds {
        // A changed set of CPUs resets everything, as node_exporter does when the
        // count changes.
        if cpus.len() != self.last.len() || cpus.iter().any(|c| !self.last.contains_key(&c.cpu)) {
            self.last.clear();
        }
        for c in cpus {
            let new: [Option<f64>; 10] = c.ticks.map(|t| t.map(|t| t as f64 / user_hz));
            let old = self.last.entry(c.cpu).or_insert([None; 10]);
            if let (Some(o), Some(n)) = (old[IDLE], new[IDLE]) {
                if o - n >= JUMP_BACK_SECONDS {
                    tracing::debug!(
                        cpu = c.cpu,
                        old = o,
                        new = n,
                        "cpu idle jumped back; resetting"
                    );
                    *old = [None; 10];
                }
            }
            for (o, n) in old.iter_mut().zip(new) {
                *o = match (*o, n) {
                    (Some(o), Some(n)) if n < o => Some(o),
                    (_, n) => n,
                };
            }
        }
        self.last.clone()
    }
}

pub fn families(cpus: &CpuSeconds) -> Vec<MetricFamily> {
    let mut secs = MetricFamily::counter(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = MetricFamily::counter(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    for (cpu, values) in cpus {
        let cpu = cpu.to_string();
        for (i, v) in values.iter().enumerate() {
            let Some(v) = *v else { continue };
            match i {
                GUEST => guest.push(&[("cpu", cpu.as_str()), ("mode", "user")], v),
                GUEST_NICE => guest.push(&[("cpu", cpu.as_str()), ("mode", "nice")], v),
                _ => secs.push(&[("cpu", cpu.as_str()), ("mode", MODES[i])], v),
            }
        }
    }
    vec![secs, guest]
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  2000 10 300 40000 50 6 7 8 9 1\n\
cpu0 1000 5 150 20000 25 3 4 4 9 1\n\
cpu2 1000 5 150 20000 25 3 3 4 0 0\n\
intr 12345 0 0\n\
ctxt 99\n\
btime 1700000000\n";

    #[test]
    fn keeps_cpu_numbers_across_an_offline_cpu() {
        let cpus = parse_cpu_stat(STAT).unwrap();
        assert_eq!(cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(cpus[0].ticks[7], Some(4)); // steal
        assert_eq!(cpus[0].ticks[9], Some(1)); // guest_nice
    }

    #[test]
    fn ticks_become_seconds_in_every_mode() {
        let mut st = CpuState::default();
        let secs = st.update(&parse_cpu_stat(STAT).unwrap(), 100.0);
        let fams = families(&secs);
        let find = |f: &MetricFamily, cpu: &str, mode: &str| {
            f.samples
                .iter()
                .find(|s| s.labels == crate::metrics::labels(&[("cpu", cpu), ("mode", mode)]))
                .map(|s| s.value)
        };
        assert_eq!(find(&fams[0], "0", "user"), Some(10.0));
        assert_eq!(find(&fams[0], "0", "steal"), Some(0.04));
        assert_eq!(find(&fams[0], "2", "softirq"), Some(0.03));
        assert_eq!(find(&fams[0], "0", "guest"), None);
        assert_eq!(find(&fams[1], "0", "user"), Some(0.09));
        assert_eq!(find(&fams[1], "0", "nice"), Some(0.01));
        assert_eq!(fams[0].samples.len(), 16);
    }

    #[test]
    fn old_kernels_without_steal_leave_it_out() {
        let cpus = parse_cpu_stat("cpu0 1 2 3 4 5 6 7\n").unwrap();
        let fams = families(&CpuState::default().update(&cpus, 100.0));
        assert_eq!(fams[0].samples.len(), 7);
        assert!(fams[1].samples.is_empty());
    }

    #[test]
    fn counters_never_step_back_and_hotplug_resets() {
        let mut st = CpuState::default();
        st.update(
            &parse_cpu_stat("cpu0 100 0 0 1000 50 0 0 0 0 0").unwrap(),
            100.0,
        );
        // iowait stepped back by 0.2 s: held.
        let s = st.update(
            &parse_cpu_stat("cpu0 110 0 0 1010 30 0 0 0 0 0").unwrap(),
            100.0,
        );
        assert_eq!(s[&0][4], Some(0.5));
        assert_eq!(s[&0][0], Some(1.1));
        // idle dropped by more than 3 s: the CPU was replugged, take the new values.
        let s = st.update(&parse_cpu_stat("cpu0 1 0 0 10 1 0 0 0 0 0").unwrap(), 100.0);
        assert_eq!(s[&0][IDLE], Some(0.1));
        assert_eq!(s[&0][4], Some(0.01));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_cpu_stat("cpu0 1 x 3 4").is_err());
        assert!(parse_cpu_stat("cpu0 1 2").is_err());
        assert!(parse_cpu_stat("intr 1 2 3").is_err());
    }
}
