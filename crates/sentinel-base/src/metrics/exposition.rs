//! The pre-encoded `/metrics` snapshot. Collectors hand their latest families here after
//! each run; we merge them with the sidecar's own metrics, apply the cardinality guard,
//! encode both formats once, and the HTTP layer serves the bytes as they are. A scrape
//! never triggers collection or encoding (gzip is compressed once per snapshot, lazily).

use super::encode::{encode_openmetrics, encode_text};
use super::registry::{CounterVec, Registry};
use super::{MetricFamily, Suffix};
use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Receives every merged snapshot (the rule engine's sample store is one).
pub trait SnapshotSink: Send + Sync {
    fn accept(&self, families: &[MetricFamily], at: SystemTime);
}

/// One encoded snapshot, in both formats; gzip variants are made on first request.
pub struct Encoded {
    pub text: Bytes,
    pub openmetrics: Bytes,
    pub generated_at: SystemTime,
    text_gz: OnceLock<Bytes>,
    openmetrics_gz: OnceLock<Bytes>,
}

impl Encoded {
    fn new(text: String, openmetrics: String, at: SystemTime) -> Self {
        Encoded {
            text: Bytes::from(text),
            openmetrics: Bytes::from(openmetrics),
            generated_at: at,
            text_gz: OnceLock::new(),
            openmetrics_gz: OnceLock::new(),
        }
    }

    pub fn body(&self, openmetrics: bool, gzip: bool) -> Bytes {
        let (plain, cache) = if openmetrics {
            (&self.openmetrics, &self.openmetrics_gz)
        } else {
            (&self.text, &self.text_gz)
        };
        if !gzip {
            return plain.clone();
        }
        cache.get_or_init(|| gzip_bytes(plain)).clone()
    }
}

fn gzip_bytes(b: &[u8]) -> Bytes {
    // Level 1: scrapes are frequent and the text compresses ~10x even at the fastest level.
    let mut e = GzEncoder::new(Vec::with_capacity(b.len() / 8), Compression::fast());
    e.write_all(b).expect("writing to a Vec cannot fail");
    Bytes::from(e.finish().expect("writing to a Vec cannot fail"))
}

/// Identifies one series while merging: family, suffix, sorted labels.
type SeriesKey = (String, Suffix, Vec<(String, String)>);

pub struct Exposition {
    collected: Mutex<BTreeMap<String, Arc<Vec<MetricFamily>>>>,
    collected_generation: AtomicU64,
    registry: Registry,
    max_series_per_family: AtomicUsize,
    dropped: Arc<CounterVec>,
    encoded: ArcSwap<Encoded>,
    sinks: Mutex<Vec<Arc<dyn SnapshotSink>>>,
    /// (collected, registry) generations of the current snapshot.
    encoded_generation: Mutex<(u64, u64)>,
}

impl Exposition {
    pub fn new(registry: Registry, max_series_per_family: usize) -> Arc<Self> {
        let dropped = registry.counter_vec(
            "sentinel_series_dropped_total",
            "Series dropped by the per-family cardinality cap.",
            &["family"],
        );
        Arc::new(Exposition {
            collected: Mutex::new(BTreeMap::new()),
            collected_generation: AtomicU64::new(1),
            registry,
            max_series_per_family: AtomicUsize::new(max_series_per_family),
            dropped,
            encoded: ArcSwap::from_pointee(Encoded::new(
                String::new(),
                "# EOF\n".to_string(),
                SystemTime::now(),
            )),
            sinks: Mutex::new(Vec::new()),
            encoded_generation: Mutex::new((0, 0)),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_max_series_per_family(&self, n: usize) {
        self.max_series_per_family.store(n, Ordering::Relaxed);
    }

    pub fn add_sink(&self, sink: Arc<dyn SnapshotSink>) {
        self.sinks.lock().push(sink);
    }

    /// Replaces the families of one source (a collector). The cardinality cap applies
    /// here, once per collection, so a steady overflow is counted once per run.
    pub fn set(&self, source: &str, mut families: Vec<MetricFamily>) {
        let cap = self.max_series_per_family.load(Ordering::Relaxed);
        for f in &mut families {
            if f.samples.len() > cap {
                let over = f.samples.len() - cap;
                f.samples.truncate(cap);
                self.dropped.add(&[&f.name], over as f64);
                tracing::warn!(family = %f.name, dropped = over, cap, "series cap reached");
            }
        }
        self.collected
            .lock()
            .insert(source.to_string(), Arc::new(families));
        self.collected_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a source entirely (its collector failed or was disabled).
    pub fn clear(&self, source: &str) {
        if self.collected.lock().remove(source).is_some() {
            self.collected_generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The merged families of every source plus the registry, sorted by name, with
    /// duplicate series removed (first one wins) and same-name families joined.
    pub fn merged(&self) -> Vec<MetricFamily> {
        let sources: Vec<Arc<Vec<MetricFamily>>> =
            self.collected.lock().values().cloned().collect();
        let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
        let mut seen: HashSet<SeriesKey> = HashSet::new();
        let own = self.registry.collect();
        let all = sources.iter().flat_map(|v| v.iter()).chain(own.iter());
        for f in all {
            let entry = by_name
                .entry(f.name.clone())
                .or_insert_with(|| MetricFamily {
                    name: f.name.clone(),
                    help: f.help.clone(),
                    kind: f.kind,
                    samples: Vec::new(),
                });
            if entry.kind != f.kind {
                tracing::warn!(family = %f.name, "family exported with two types; keeping the first");
                continue;
            }
            for s in &f.samples {
                let mut key_labels = s.labels.clone();
                key_labels.sort();
                if seen.insert((f.name.clone(), s.suffix, key_labels)) {
                    entry.samples.push(s.clone());
                }
            }
        }
        by_name.into_values().collect()
    }

    /// Re-encodes if anything changed since the last snapshot. Returns whether it did.
    pub fn refresh(&self) -> bool {
        let generation = (
            self.collected_generation.load(Ordering::Relaxed),
            self.registry.generation(),
        );
        // Held for the whole refresh: refreshes are serialized, so when this returns the
        // stored snapshot includes everything that happened before the call.
        let mut last = self.encoded_generation.lock();
        if *last == generation {
            return false;
        }
        *last = generation;
        let families = self.merged();
        let now = SystemTime::now();
        let mut text = String::with_capacity(self.encoded.load().text.len() + 1024);
        encode_text(&families, &mut text);
        let mut om = String::with_capacity(text.len() + 1024);
        encode_openmetrics(&families, &mut om);
        self.encoded.store(Arc::new(Encoded::new(text, om, now)));
        let sinks = self.sinks.lock().clone();
        for s in sinks {
            s.accept(&families, now);
        }
        true
    }

    /// The current snapshot; cheap (an `Arc` clone).
    pub fn current(&self) -> Arc<Encoded> {
        self.encoded.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_drops_and_counts_overflow() {
        let e = Exposition::new(Registry::new(), 2);
        let mut f = MetricFamily::gauge("g", "h");
        for i in 0..5 {
            f.push(&[("i", i.to_string())], 1.0);
        }
        e.set("c", vec![f]);
        assert!(e.refresh());
        let text = String::from_utf8(e.current().text.to_vec()).unwrap();
        assert_eq!(text.matches("\ng{").count(), 2);
        assert!(text.contains("sentinel_series_dropped_total{family=\"g\"} 3"));
        assert!(!e.refresh(), "nothing changed");
    }

    #[test]
    fn same_family_from_two_sources_is_joined_and_deduplicated() {
        let e = Exposition::new(Registry::new(), 100);
        e.set(
            "a",
            vec![MetricFamily::gauge("g", "h").with(&[("x", "1")], 1.0)],
        );
        e.set(
            "b",
            vec![MetricFamily::gauge("g", "h")
                .with(&[("x", "1")], 2.0)
                .with(&[("x", "2")], 3.0)],
        );
        let merged = e.merged();
        let g = merged.iter().find(|f| f.name == "g").unwrap();
        assert_eq!(g.samples.len(), 2);
        assert_eq!(g.samples[0].value, 1.0);
    }

    #[test]
    fn gzip_round_trips() {
        let e = Exposition::new(Registry::new(), 100);
        e.set(
            "a",
            vec![MetricFamily::gauge("g", "h").with::<&str, &str>(&[], 1.0)],
        );
        e.refresh();
        let snap = e.current();
        let gz = snap.body(false, true);
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut d, &mut s).unwrap();
        assert_eq!(s.as_bytes(), &snap.text[..]);
    }
}
