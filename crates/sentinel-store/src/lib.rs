//! The sample store, the one stage every reader shares: collectors and ingest write
//! samples into it, the `/metrics` exposition, the rule engine, the query APIs and the
//! status page read from it.
//!
//! ```text
//! collectors (each run) ─┐                 ┌─▶ /metrics: exposition (latest samples)
//! ingest API (registry) ─┼─▶ store::Store ─┼─▶ rule engine (writes ALERTS back)
//!                        │                 ├─▶ query APIs (Prometheus HTTP API)
//!                        │                 └─▶ status page (trends)
//! ```
//!
//! - [`exposition::Exposition`]: the write side. A collector run or a change of the
//!   sidecar's own metrics is one [`store::Store::write`] of that source; its latest
//!   families are kept, merged and encoded per family for `/metrics`.
//! - [`store::Store`]: the recent window the rules evaluate over (exactly the samples
//!   they always saw), and the entry point of every read.
//! - [`history::History`]: every series at full resolution for `history.retention`, in
//!   compressed [`chunk`]s, within `history.max_bytes`; selections reaching past the
//!   recent window read it.
//! - [`persist`]: the history on disk in `data_dir/history/`; [`openmetrics`]: the text
//!   format of `history import` / `history export`.

pub mod chunk;
pub mod exposition;
pub mod history;
pub mod labels;
pub mod openmetrics;
pub mod persist;
pub mod store;

use history::History;
use std::path::Path;

/// The history directory inside `data_dir`.
pub fn history_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("history")
}

/// What `history import` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub series: usize,
    pub samples: u64,
    /// Samples older than the retention: counted and skipped.
    pub outside_retention: u64,
    /// Samples the byte budget evicted after the import (the oldest data).
    pub evicted: u64,
    /// What the whole history (old and imported) holds: samples, and bytes in memory.
    pub total_samples: u64,
    pub total_bytes: usize,
}

#[derive(Debug)]
pub enum ImportError {
    Parse(openmetrics::ParseError),
    Persist(persist::PersistError),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Parse(e) => write!(f, "{e}"),
            ImportError::Persist(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// Imports OpenMetrics text into the history in `dir`: parsed whole first (an error
/// imports nothing), merged with what is there, written durably (one full file, fsynced)
/// before it returns. Refused while another process (a running sidecar) holds `dir`.
pub fn import(
    dir: &Path,
    text: &[u8],
    now_ms: i64,
    retention_ms: i64,
    max_bytes: u64,
) -> Result<ImportReport, ImportError> {
    let parsed = openmetrics::parse(text).map_err(ImportError::Parse)?;
    let mut p = persist::Persist::open(dir).map_err(ImportError::Persist)?;
    let h = History::new(retention_ms, u64::MAX);
    p.load_into(&h).map_err(ImportError::Persist)?;
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut report = ImportReport::default();
    for (labels, samples) in parsed {
        let keep: Vec<(i64, f64)> = samples.into_iter().filter(|s| s.0 >= cutoff).collect();
        // `parse` counted every sample; what is left is imported.
        report.samples += keep.len() as u64;
        if !keep.is_empty() {
            report.series += 1;
            h.insert(&labels, &keep);
        }
    }
    report.outside_retention = openmetrics_count(text) - report.samples;
    h.set_limits(retention_ms, max_bytes);
    let before = h
        .stats
        .evicted_samples
        .load(std::sync::atomic::Ordering::Relaxed);
    h.maintain(now_ms);
    report.evicted = h
        .stats
        .evicted_samples
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    report.total_samples = h.sample_count();
    report.total_bytes = h.bytes();
    p.write_full(&h)
        .map_err(|e| ImportError::Persist(persist::PersistError::Io(dir.to_path_buf(), e)))?;
    Ok(report)
}

fn openmetrics_count(text: &[u8]) -> u64 {
    text.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count() as u64
}

/// Writes the history in `dir` as OpenMetrics text; returns the samples written.
pub fn export(dir: &Path, w: &mut dyn std::io::Write) -> Result<u64, persist::PersistError> {
    let h = History::new(i64::MAX / 4, u64::MAX);
    persist::read_dir_into(dir, &h)?;
    openmetrics::write(&h.dump(), w).map_err(|e| persist::PersistError::Io(dir.to_path_buf(), e))
}
