//! The history at run time (docs/history.md): built beside the store, loaded from
//! `data_dir/history/`, flushed every `history.flush_interval` and once more at
//! shutdown; and the `history import` / `history export` commands. The logic lives in
//! the `sentinel-store` crate; this is wiring.

use crate::config::Config;
use parking_lot::Mutex;
use sentinel_base::metrics::registry::{GaugeVec, Registry};
use sentinel_store::history::{History, HistoryStats};
use sentinel_store::persist::Persist;
use sentinel_store::store::Store;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub struct Running {
    pub history: Arc<History>,
    /// None when the directory could not be used (locked, unknown version, I/O): the
    /// history then lives in memory only and nothing on disk is touched.
    persist: Mutex<Option<Persist>>,
    /// Gauges and counters, each with the reading it exports.
    metrics: Vec<(Arc<GaugeVec>, Reading)>,
}

type Reading = Box<dyn Fn(&History) -> f64 + Send + Sync>;

static RUNNING: OnceLock<Arc<Running>> = OnceLock::new();

/// Builds the history, loads what `data_dir` holds, attaches it to `store` and starts
/// the flush task. Must run inside a tokio runtime.
pub fn start(config: &Config, store: &Store, registry: &Registry) {
    let h = &config.history;
    let history = Arc::new(History::new(
        h.retention.get().as_millis() as i64,
        h.max_bytes,
    ));
    let dir = sentinel_store::history_dir(&config.data_dir);
    let persist = match Persist::open(&dir) {
        Ok(mut p) => match p.load_into(&history) {
            Ok(r) => {
                history.maintain(now_ms());
                tracing::info!(
                    dir = %dir.display(),
                    files = r.files,
                    corrupt_files = r.corrupt_files,
                    series = r.series,
                    samples = r.samples,
                    "history loaded"
                );
                // One full file, and every sealed chunk on disk rather than in memory.
                if r.files > 1 || history.sealed_chunks_in_memory() > 0 {
                    if let Err(e) = p.write_full(&history) {
                        tracing::warn!(error = %e, "history: cannot compact the loaded files");
                    }
                }
                Some(p)
            }
            Err(e) => {
                tracing::error!(error = %e, "history: cannot load; kept in memory only, files left untouched");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "history: cannot open its directory; kept in memory only");
            None
        }
    };
    store.attach_history(history.clone());
    let running = Arc::new(Running {
        history,
        persist: Mutex::new(persist),
        metrics: register(registry),
    });
    running.export_metrics();
    if RUNNING.set(running.clone()).is_err() {
        return;
    }
    let every = h.flush_interval.get();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let r = running.clone();
            let _ = tokio::task::spawn_blocking(move || r.flush()).await;
        }
    });
}

/// The last flush, at shutdown.
pub fn final_flush() {
    if let Some(r) = RUNNING.get() {
        r.flush();
    }
}

fn now_ms() -> i64 {
    sentinel_store::store::system_time_ms(std::time::SystemTime::now())
}

impl Running {
    fn flush(&self) {
        self.history.maintain(now_ms());
        if let Some(p) = self.persist.lock().as_mut() {
            let start = std::time::Instant::now();
            match p.flush(&self.history) {
                Ok(n) => tracing::debug!(
                    samples = n,
                    ms = start.elapsed().as_millis() as u64,
                    "history flushed"
                ),
                Err(e) => {
                    self.history
                        .stats
                        .flush_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, dir = %p.dir().display(), "history: flush failed");
                }
            }
        }
        self.export_metrics();
    }

    fn export_metrics(&self) {
        for (m, read) in &self.metrics {
            m.set(&[], read(&self.history));
        }
    }
}

fn register(r: &Registry) -> Vec<(Arc<GaugeVec>, Reading)> {
    let gauge = |name: &str, help: &str, read: fn(&History) -> f64| -> (Arc<GaugeVec>, Reading) {
        (r.gauge_vec(name, help, &[]), Box::new(read))
    };
    // A counter reads one of the history's own counts.
    let counter = |name: &str,
                   help: &str,
                   count: fn(&HistoryStats) -> &AtomicU64|
     -> (Arc<GaugeVec>, Reading) {
        let read = move |h: &History| count(&h.stats).load(Ordering::Relaxed) as f64;
        (r.counter_vec(name, help, &[]), Box::new(read))
    };
    vec![
        gauge(
            "sentinel_history_bytes",
            "Bytes the history holds against history.max_bytes (compressed chunks on disk or in memory, their index, labels, overhead).",
            |h| h.bytes() as f64,
        ),
        gauge(
            "sentinel_history_memory_bytes",
            "Bytes of the history in memory (open chunks, sealed chunks not yet in a full file, the chunk index, labels, overhead).",
            |h| h.memory_bytes() as f64,
        ),
        gauge("sentinel_history_series", "Series in the history.", |h| {
            h.series_count() as f64
        }),
        counter(
            "sentinel_history_evicted_samples_total",
            "Samples evicted (oldest first) to keep the history within history.max_bytes.",
            |s| &s.evicted_samples,
        ),
        counter(
            "sentinel_history_evicted_bytes_total",
            "Bytes evicted to keep the history within history.max_bytes.",
            |s| &s.evicted_bytes,
        ),
        counter(
            "sentinel_history_expired_samples_total",
            "Samples dropped from the history because they were older than history.retention.",
            |s| &s.expired_samples,
        ),
        counter(
            "sentinel_history_corrupt_files_total",
            "History files found corrupt or truncated at load and skipped.",
            |s| &s.corrupt_files,
        ),
        counter(
            "sentinel_history_flush_errors_total",
            "Failed writes of the history to data_dir.",
            |s| &s.flush_errors,
        ),
    ]
}

/// `history import FILE`: prints what was imported; errors as a message. The file is
/// read as a stream (twice: checked whole, then imported), never held in memory.
pub fn import(config: &Config, file: &std::path::Path) -> Result<String, String> {
    let input = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let dir = sentinel_store::history_dir(&config.data_dir);
    let r = sentinel_store::import_from(
        &dir,
        std::io::BufReader::with_capacity(256 << 10, input),
        now_ms(),
        config.history.retention.get().as_millis() as i64,
        config.history.max_bytes,
        sentinel_store::IMPORT_MEMORY_BYTES,
    )
    .map_err(|e| match e {
        sentinel_store::ImportError::Parse(p) => format!("{}:{p}", file.display()),
        sentinel_store::ImportError::Read(e) => format!("{}: {e}", file.display()),
        e => e.to_string(),
    })?;
    Ok(format!(
        "imported {} samples of {} series into {}; {} samples outside the retention ({}) skipped; {} samples evicted by history.max_bytes; the history holds {} samples in {} bytes ({} bytes of it in memory)",
        r.samples,
        r.series,
        dir.display(),
        r.outside_retention,
        crate::config::format_duration(config.history.retention.get()),
        r.evicted,
        r.total_samples,
        r.total_bytes,
        r.memory_bytes,
    ))
}

/// `history export [--out FILE]`.
pub fn export(config: &Config, out: Option<&std::path::Path>) -> Result<u64, String> {
    let dir = sentinel_store::history_dir(&config.data_dir);
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let n = sentinel_store::export(&dir, &mut sink).map_err(|e| e.to_string())?;
    sink.flush().map_err(|e| e.to_string())?;
    Ok(n)
}
