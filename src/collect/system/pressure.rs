//! `node_pressure_*` from `/proc/pressure/{cpu,io,memory}` (PSI, Linux ≥ 4.20), as
//! node_exporter 1.5's pressure collector reports them: CPU `some` → waiting; io and
//! memory `some` → waiting, `full` → stalled; the kernel's microseconds → seconds.
//! A kernel without PSI (no files, or EOPNOTSUPP with `psi=0`) is "no data", not an
//! error. Lines are parsed with `procfs`'s `parse_pressure_record`; we do not use its
//! whole-file parsers because they require a `full` line, which the CPU file lacks
//! before Linux 5.13.

use super::{read_file, AreaError, ParseError};
use crate::metrics::MetricFamily;
use std::path::Path;

/// Total stall time of the `some` and `full` lines, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some_us: Option<u64>,
    pub full_us: Option<u64>,
}

pub fn parse_pressure(text: &str) -> Result<Pressure, ParseError> {
    let mut p = Pressure::default();
    for line in text.lines() {
        let rec = || {
            procfs::parse_pressure_record(line)
                .map(|r| r.total)
                .map_err(|e| ParseError::BadLine {
                    line: line.to_string(),
                    reason: e.to_string(),
                })
        };
        if line.starts_with("some ") {
            p.some_us = Some(rec()?);
        } else if line.starts_with("full ") {
            p.full_us = Some(rec()?);
        }
    }
    if p.some_us.is_none() {
        return Err(ParseError::Missing("\"some\" line"));
    }
    Ok(p)
}

/// Microseconds to seconds, dividing twice as node_exporter does so that both print
/// the same float.
fn seconds(us: u64) -> f64 {
    us as f64 / 1000.0 / 1000.0
}

pub fn families(cpu: Pressure, io: Pressure, memory: Pressure) -> Vec<MetricFamily> {
    let one = |name: &str, help: &str, v: Option<u64>| {
        v.map(|v| MetricFamily::counter(name, help).with::<&str, &str>(&[], seconds(v)))
    };
    [
        one(
            "node_pressure_cpu_waiting_seconds_total",
            "Total time in seconds that processes have waited for CPU time",
            cpu.some_us,
        ),
        one(
            "node_pressure_io_waiting_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
            io.some_us,
        ),
        one(
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IO congestion",
            io.full_us,
        ),
        one(
            "node_pressure_memory_waiting_seconds_total",
            "Total time in seconds that processes have waited for memory",
            memory.some_us,
        ),
        one(
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds no process could make progress due to memory congestion",
            memory.full_us,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Reads the three PSI files under `proc`.
pub fn read(proc: &Path) -> Result<Vec<MetricFamily>, AreaError> {
    let mut got = [Pressure::default(); 3];
    for (slot, res) in got.iter_mut().zip(["cpu", "io", "memory"]) {
        let path = proc.join("pressure").join(res);
        let text = match read_file(&path) {
            Ok(t) => t,
            Err(AreaError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
            {
                return Err(AreaError::NoData(format!(
                    "{}: {source} (PSI needs Linux 4.20+ with CONFIG_PSI and psi=1)",
                    path.display()
                )));
            }
            Err(e) => return Err(e),
        };
        *slot = parse_pressure(&text).map_err(|m| AreaError::parse(&path, m))?;
    }
    Ok(families(got[0], got[1], got[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_and_full_totals() {
        let io = parse_pressure(
            "some avg10=0.00 avg60=0.05 avg300=0.01 total=8355498\n\
full avg10=0.00 avg60=0.02 avg300=0.00 total=4736485\n",
        )
        .unwrap();
        assert_eq!(
            io,
            Pressure {
                some_us: Some(8_355_498),
                full_us: Some(4_736_485)
            }
        );
        // Before Linux 5.13 the cpu file has no full line.
        let cpu =
            parse_pressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=48905472\n").unwrap();
        assert_eq!(cpu.full_us, None);
        let f = families(cpu, io, Pressure::default());
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_pressure_cpu_waiting_seconds_total",
                "node_pressure_io_waiting_seconds_total",
                "node_pressure_io_stalled_seconds_total"
            ]
        );
        assert_eq!(f[0].samples[0].value, 48.905472);
        // Divided twice, as node_exporter does: both print 8.355497999999999.
        assert_eq!(f[1].samples[0].value, 8.355497999999999);
    }

    #[test]
    fn missing_psi_is_no_data() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Err(AreaError::NoData(_))));
        assert!(parse_pressure("full avg10=0 avg60=0 avg300=0 total=1\n").is_err());
        assert!(parse_pressure("some avg10=0 total=x\n").is_err());
    }
}
