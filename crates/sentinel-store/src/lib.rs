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

pub use persist::release_freed_memory;

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
    /// What the whole history (old and imported) holds: samples, bytes (on disk and in
    /// memory, what `history.max_bytes` bounds), and the part of them in memory.
    pub total_samples: u64,
    pub total_bytes: usize,
    pub memory_bytes: usize,
    /// Times the import moved its sealed chunks from memory to a spill file.
    pub spills: u32,
}

#[derive(Debug)]
pub enum ImportError {
    Parse(openmetrics::ParseError),
    Persist(persist::PersistError),
    /// The input could not be read again for the second pass.
    Read(std::io::Error),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Parse(e) => write!(f, "{e}"),
            ImportError::Persist(e) => write!(f, "{e}"),
            ImportError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// Sealed chunk bytes an import keeps in memory before it moves them to a spill file.
pub const IMPORT_MEMORY_BYTES: usize = 32 << 20;

/// Samples an import holds at most before handing them to the history (16 bytes each).
const PENDING_SAMPLES: usize = 1 << 18;

/// Imports OpenMetrics text from `r` into the history in `dir`, streaming: a first pass
/// checks the whole input (an error imports nothing), a second one adds it to what is
/// there (merged), moving sealed chunks to spill files whenever more than
/// `memory_bytes` of them are in memory; then one full file is written (fsynced) before
/// it returns. Memory: one line, the series' labels, and at most about `memory_bytes`
/// of chunks. Refused while another process (a running sidecar) holds `dir`.
pub fn import_from<R: std::io::BufRead + std::io::Seek>(
    dir: &Path,
    mut r: R,
    now_ms: i64,
    retention_ms: i64,
    max_bytes: u64,
    memory_bytes: usize,
) -> Result<ImportReport, ImportError> {
    openmetrics::parse_reader(&mut r, &mut |_, _, _| {}).map_err(ImportError::Parse)?;
    r.seek(std::io::SeekFrom::Start(0))
        .map_err(ImportError::Read)?;
    let mut p = persist::Persist::open(dir).map_err(ImportError::Persist)?;
    let h = History::new(retention_ms, u64::MAX);
    p.load_into(&h).map_err(ImportError::Persist)?;
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut report = ImportReport::default();
    let mut imported: std::collections::HashSet<labels::Labels> = Default::default();
    // Samples wait per series (in file order, so in time order) and go to the history
    // in batches: interleaved series cost one insert per batch, not per line.
    let mut pending: std::collections::HashMap<labels::Labels, Vec<(i64, f64)>> =
        Default::default();
    let mut pending_n = 0usize;
    let pending_cap = (memory_bytes / 16).clamp(4096, PENDING_SAMPLES);
    let mut cur: Option<labels::Labels> = None;
    let mut batch: Vec<(i64, f64)> = Vec::with_capacity(4096);
    let mut spill_error: Option<std::io::Error> = None;
    // How often the chunks in memory are measured: a sample costs at most about 20
    // bytes, so the memory between two checks stays well below the cap.
    let check_every = (memory_bytes / 64).clamp(256, 1 << 16);
    let mut since_check = 0usize;
    let flush_pending =
        |pending: &mut std::collections::HashMap<labels::Labels, Vec<(i64, f64)>>| {
            for (l, s) in pending.drain() {
                h.insert(&l, &s);
            }
        };
    let second = openmetrics::parse_reader(&mut r, &mut |labels, t, v| {
        if t < cutoff {
            report.outside_retention += 1;
            return;
        }
        report.samples += 1;
        if cur.as_ref() != Some(labels) || batch.len() >= 4096 {
            if let Some(l) = &cur {
                match pending.get_mut(l) {
                    Some(p) => p.extend_from_slice(&batch),
                    None => {
                        pending.insert(l.clone(), batch.clone());
                    }
                }
                pending_n += batch.len();
            }
            batch.clear();
            if cur.as_ref() != Some(labels) {
                if !imported.contains(labels) {
                    imported.insert(labels.clone());
                }
                cur = Some(labels.clone());
            }
        }
        batch.push((t, v));
        if pending_n >= pending_cap {
            flush_pending(&mut pending);
            pending_n = 0;
        }
        since_check += 1;
        if since_check >= check_every && spill_error.is_none() {
            since_check = 0;
            if h.sealed_memory_bytes() > memory_bytes {
                match p.spill(&h) {
                    Ok(_) => report.spills += 1,
                    Err(e) => spill_error = Some(e),
                }
            }
        }
    });
    if let Some(l) = &cur {
        pending
            .entry(l.clone())
            .or_default()
            .extend_from_slice(&batch);
    }
    flush_pending(&mut pending);
    let io = |e| ImportError::Persist(persist::PersistError::Io(dir.to_path_buf(), e));
    if let Err(e) = second {
        p.remove_spills();
        return Err(ImportError::Parse(e));
    }
    if let Some(e) = spill_error {
        p.remove_spills();
        return Err(io(e));
    }
    report.series = imported.len();
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
    p.write_full(&h).map_err(|e| {
        p.remove_spills();
        io(e)
    })?;
    report.total_samples = h.sample_count();
    report.total_bytes = h.bytes();
    report.memory_bytes = h.memory_bytes();
    Ok(report)
}

/// Writes the history in `dir` as OpenMetrics text, one series at a time; returns the
/// samples written.
pub fn export(dir: &Path, w: &mut dyn std::io::Write) -> Result<u64, persist::PersistError> {
    let h = History::new(i64::MAX / 4, u64::MAX);
    persist::read_dir_into(dir, &h)?;
    let mut n = 0u64;
    let mut err = None;
    h.for_each_sorted(&mut |labels, samples| {
        if err.is_none() {
            match openmetrics::write_series(labels, &samples, w) {
                Ok(k) => n += k,
                Err(e) => err = Some(e),
            }
        }
    });
    let io = |e| persist::PersistError::Io(dir.to_path_buf(), e);
    if let Some(e) = err {
        return Err(io(e));
    }
    w.write_all(b"# EOF\n").map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 24 * 3600 * 1000;

    /// `series` series of `per` samples each at 5 s, ending at NOW; `interleaved` lists
    /// the series' lines alternately instead of one series after the other.
    fn text(series: usize, per: i64, interleaved: bool) -> Vec<u8> {
        let line = |i: usize, k: i64| {
            let t = NOW - (per - k) * 5000;
            format!(
                "gpu_temp_celsius{{gpu=\"{i}\",host=\"box\"}} {} {}.{:03}\n",
                ((k * 7919 + i as i64 * 31) % 1000) as f64 / 7.0,
                t / 1000,
                t % 1000
            )
        };
        let mut out = String::from("# TYPE gpu_temp_celsius gauge\n");
        if interleaved {
            for k in 0..per {
                for i in 0..series {
                    out.push_str(&line(i, k));
                }
            }
        } else {
            for i in 0..series {
                for k in 0..per {
                    out.push_str(&line(i, k));
                }
            }
        }
        out.push_str("# EOF\n");
        out.into_bytes()
    }

    fn exported(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        export(dir, &mut out).unwrap();
        out
    }

    fn import_capped(dir: &Path, text: &[u8], cap: usize) -> Result<ImportReport, ImportError> {
        import_from(dir, std::io::Cursor::new(text), NOW, DAY, u64::MAX, cap)
    }

    #[test]
    fn import_streams_a_file_larger_than_its_memory_cap() {
        let input = text(20, 6000, false);
        assert!(input.len() > 4 << 20, "{}", input.len());
        let dir = tempfile::tempdir().unwrap();
        let r = import_capped(dir.path(), &input, 64 << 10).unwrap();
        assert_eq!((r.series, r.samples), (20, 120_000));
        assert!(r.spills >= 2, "{r:?}");
        // What memory keeps is the index, far below the file and the chunks.
        assert!(r.memory_bytes * 4 < r.total_bytes, "{r:?}");
        // Spill files are gone; what was imported reads back exactly.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(name == "LOCK" || name.ends_with(".hist"), "{name}");
        }
        let mut want = openmetrics::parse(&input).unwrap();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(openmetrics::parse(&exported(dir.path())).unwrap(), want);
    }

    #[test]
    fn import_of_interleaved_series_matches_one_in_series_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        import_capped(a.path(), &text(5, 3000, true), 32 << 10).unwrap();
        import_capped(b.path(), &text(5, 3000, false), IMPORT_MEMORY_BYTES).unwrap();
        assert_eq!(exported(a.path()), exported(b.path()));
    }

    #[test]
    fn malformed_line_at_the_end_of_a_large_import_imports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        import_capped(dir.path(), &text(2, 100, false), IMPORT_MEMORY_BYTES).unwrap();
        let before = exported(dir.path());
        let mut bad = text(20, 6000, false);
        bad.truncate(bad.len() - b"# EOF\n".len());
        bad.extend_from_slice(b"gpu_temp_celsius{gpu=\"0\"} 1 x\n# EOF\n");
        let lines = bad.iter().filter(|c| **c == b'\n').count();
        let e = import_capped(dir.path(), &bad, 64 << 10).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:29: invalid timestamp", lines - 1)),
            "{e}"
        );
        assert_eq!(exported(dir.path()), before);
    }

    #[test]
    fn import_refuses_an_overlong_line_and_too_many_labels_with_their_location() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!(
            "up 1 5\nup{{a=\"{}\"}} 1 5\n# EOF\n",
            "x".repeat(openmetrics::MAX_LINE_BYTES)
        );
        let e = import_capped(dir.path(), long.as_bytes(), IMPORT_MEMORY_BYTES).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "2:{}: line longer than {} bytes",
                openmetrics::MAX_LINE_BYTES + 1,
                openmetrics::MAX_LINE_BYTES
            )
        );
        let labels: Vec<String> = (0..openmetrics::MAX_LABELS)
            .map(|i| format!("l{i}=\"v\""))
            .collect();
        let many = format!("up{{{}}} 1 5\n# EOF\n", labels.join(","));
        let e = import_capped(dir.path(), many.as_bytes(), IMPORT_MEMORY_BYTES).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("more than {} labels", openmetrics::MAX_LABELS)),
            "{e}"
        );
        assert!(exported(dir.path()).starts_with(b"# EOF"));
    }
}
