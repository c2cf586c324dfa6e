//! The store's write side and its latest samples, encoded as the `/metrics` snapshot.
//!
//! Collectors write their families here after each run ([`Exposition::set`]); the
//! sidecar's own metrics (the [`Registry`]: collector health, pushed event counters, ...)
//! are read at each [`Exposition::refresh`]. Each write goes into the [`Store`] as one
//! write of its source (only that source's series: see [`Store::write`]); a registry
//! source is written when its generation moves, and every
//! [`DEFAULT_SELF_SCRAPE_INTERVAL`] (1 s, or the interval set) even when unchanged, so
//! an unchanged counter keeps fresh samples inside the rules' lookback. The latest families
//! of every source are the latest-samples table: merged (same-name families joined,
//! first one wins), capped per family, and encoded in both formats per family, once per
//! change; the HTTP layer serves the bytes as they are. A scrape never triggers
//! collection or encoding (gzip is compressed once per snapshot, lazily).

use crate::store::{system_time_ms, Store};
use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use parking_lot::Mutex;
use sentinel_base::metrics::encode::{
    encode_openmetrics_family, encode_text_family, OPENMETRICS_EOF,
};
use sentinel_base::metrics::registry::{CounterVec, FamilySource, Registry};
use sentinel_base::metrics::{MetricFamily, Suffix};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// How often the registry's sources are written into the store when unchanged (the
/// sidecar's self-scrape): at each tick of the once-a-second refresher, the resolution
/// the store keeps anyway (see [`crate::store::SNAPSHOT_SPACING_MS`]), so the sidecar's
/// own series have the same density as before writes went per source. A tick up to a
/// tenth of the interval early still counts (the refresher's timer jitters).
pub const DEFAULT_SELF_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

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

/// One family of one source as it goes into the snapshot: its series deduplicated
/// (first one wins, as in [`Exposition::merged`]) and its encoding in both formats.
/// Kept across refreshes while its source does not change.
struct Piece {
    family: MetricFamily,
    /// Whether deduplication removed nothing (then `family` equals what the source gave).
    as_given: bool,
    text: String,
    openmetrics: String,
}

impl Piece {
    /// `unique`: the source guarantees distinct series (then nothing is deduplicated).
    fn new(given: &MetricFamily, unique: bool) -> Arc<Piece> {
        if unique {
            return Piece::encode(given.clone(), true);
        }
        let family = join_families([given]).expect("one family joins into one");
        let as_given = family.samples.len() == given.samples.len();
        Piece::encode(family, as_given)
    }

    fn encode(family: MetricFamily, as_given: bool) -> Arc<Piece> {
        let mut text = String::new();
        encode_text_family(&family, &mut text);
        let mut openmetrics = String::new();
        encode_openmetrics_family(&family, &mut openmetrics);
        Arc::new(Piece {
            family,
            as_given,
            text,
            openmetrics,
        })
    }

    /// The cached piece when `given` is what it was made from, else a new one.
    fn reuse_or_new(old: Option<&Arc<Piece>>, given: &MetricFamily, unique: bool) -> Arc<Piece> {
        match old {
            Some(p) if p.as_given && p.family == *given => p.clone(),
            _ => Piece::new(given, unique),
        }
    }

    /// [`pieces`](Self::pieces) of families the caller gives away (not copied).
    fn pieces_owned(given: Vec<MetricFamily>, old: &[Arc<Piece>], unique: bool) -> Vec<Arc<Piece>> {
        given
            .into_iter()
            .enumerate()
            .map(|(i, f)| match old.get(i) {
                Some(p) if p.as_given && p.family == f => p.clone(),
                _ if unique => Piece::encode(f, true),
                _ => Piece::new(&f, false),
            })
            .collect()
    }

    fn pieces(given: &[MetricFamily], old: &[Arc<Piece>], unique: bool) -> Vec<Arc<Piece>> {
        given
            .iter()
            .enumerate()
            .map(|(i, f)| Piece::reuse_or_new(old.get(i), f, unique))
            .collect()
    }
}

/// The encoded pieces of one collector's families, valid while its `Arc` is the same.
struct CollectedPieces {
    families: Arc<Vec<MetricFamily>>,
    pieces: Vec<Arc<Piece>>,
}

/// The encoded pieces of one registry source, valid while its generation is the same
/// (their families are what each self-scrape writes into the store again).
struct RegistryPieces {
    source: Arc<dyn FamilySource>,
    generation: Option<u64>,
    pieces: Vec<Arc<Piece>>,
}

impl RegistryPieces {
    fn families(&self) -> Vec<&MetricFamily> {
        self.pieces.iter().map(|p| &p.family).collect()
    }
}

/// What the last refresh encoded, per source, so the next one re-encodes only the
/// families of sources that changed.
#[derive(Default)]
struct PieceCache {
    collected: BTreeMap<String, CollectedPieces>,
    registry: Vec<RegistryPieces>,
}

/// Joins same-name families given by several sources, exactly as [`Exposition::merged`]
/// does: help and type from the first, a family of another type skipped, duplicate
/// series removed (first one wins). One family alone comes back deduplicated (what
/// [`Piece::new`] keeps of a source's family).
fn join_families<'a>(parts: impl IntoIterator<Item = &'a MetricFamily>) -> Option<MetricFamily> {
    let mut joined: Option<MetricFamily> = None;
    let mut seen: HashSet<(Suffix, Vec<(String, String)>)> = HashSet::new();
    for f in parts {
        let entry = joined.get_or_insert_with(|| MetricFamily {
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
            if seen.insert((s.suffix, key_labels)) {
                entry.samples.push(s.clone());
            }
        }
    }
    joined
}

/// The store name of the `i`-th registry source.
fn registry_source(i: usize) -> String {
    format!("registry/{i}")
}

pub struct Exposition {
    collected: Mutex<BTreeMap<String, Arc<Vec<MetricFamily>>>>,
    collected_generation: AtomicU64,
    registry: Registry,
    max_series_per_family: AtomicUsize,
    dropped: Arc<CounterVec>,
    encoded: ArcSwap<Encoded>,
    store: Arc<Store>,
    self_scrape_ms: AtomicI64,
    /// When the registry was last written whole (`i64::MIN` before the first refresh).
    last_self_scrape_ms: AtomicI64,
    /// (collected, registry) generations of the current snapshot.
    encoded_generation: Mutex<(u64, u64)>,
    /// Per-source encodings of the current snapshot (locked only by `refresh`).
    pieces: Mutex<PieceCache>,
}

impl Exposition {
    /// Writes go into `store`.
    pub fn new(registry: Registry, max_series_per_family: usize, store: Arc<Store>) -> Arc<Self> {
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
            store,
            self_scrape_ms: AtomicI64::new(DEFAULT_SELF_SCRAPE_INTERVAL.as_millis() as i64),
            last_self_scrape_ms: AtomicI64::new(i64::MIN),
            encoded_generation: Mutex::new((0, 0)),
            pieces: Mutex::new(PieceCache::default()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_max_series_per_family(&self, n: usize) {
        self.max_series_per_family.store(n, Ordering::Relaxed);
    }

    /// The store every write goes into.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How often unchanged registry sources are written into the store anyway.
    pub fn set_self_scrape_interval(&self, every: Duration) {
        self.self_scrape_ms
            .store(every.as_millis().max(1) as i64, Ordering::Relaxed);
    }

    /// Replaces the families of one source (a collector) and writes them into the store
    /// now. The cardinality cap applies here, once per collection, so a steady overflow
    /// is counted once per run.
    pub fn set(&self, source: &str, families: Vec<MetricFamily>) {
        self.set_at(source, families, system_time_ms(SystemTime::now()));
    }

    /// [`set`](Self::set) at `t_ms`.
    pub fn set_at(&self, source: &str, mut families: Vec<MetricFamily>, t_ms: i64) {
        let cap = self.max_series_per_family.load(Ordering::Relaxed);
        for f in &mut families {
            if f.samples.len() > cap {
                let over = f.samples.len() - cap;
                f.samples.truncate(cap);
                self.dropped.add(&[&f.name], over as f64);
                tracing::warn!(family = %f.name, dropped = over, cap, "series cap reached");
            }
        }
        let families = Arc::new(families);
        self.collected
            .lock()
            .insert(source.to_string(), families.clone());
        self.collected_generation.fetch_add(1, Ordering::Relaxed);
        self.store.write(source, &families[..], t_ms);
    }

    /// Forgets a source entirely (its collector failed or was disabled); its series in
    /// the store get stale markers.
    pub fn clear(&self, source: &str) {
        if self.collected.lock().remove(source).is_some() {
            self.collected_generation.fetch_add(1, Ordering::Relaxed);
            self.store
                .forget_source(source, system_time_ms(SystemTime::now()));
        }
    }

    /// The merged families of every source plus the registry, sorted by name, with
    /// duplicate series removed (first one wins) and same-name families joined.
    pub fn merged(&self) -> Vec<MetricFamily> {
        let sources: Vec<Arc<Vec<MetricFamily>>> =
            self.collected.lock().values().cloned().collect();
        let own = self.registry.collect();
        let mut by_name: BTreeMap<&str, Vec<&MetricFamily>> = BTreeMap::new();
        for f in sources.iter().flat_map(|v| v.iter()).chain(own.iter()) {
            by_name.entry(f.name.as_str()).or_default().push(f);
        }
        by_name.into_values().filter_map(join_families).collect()
    }

    /// Brings the per-source pieces up to date — re-encoding only the families of a
    /// collector whose families were replaced and of a registry source whose generation
    /// moved (or that has none), and only those that differ — then assembles the
    /// snapshot from them. Returns the number of merged families and both bodies
    /// (byte-identical to encoding [`merged`](Self::merged) in full). Each registry source
    /// collected anew is written into the store at `t_ms`; with `scrape`, every one is.
    fn assemble(&self, t_ms: i64, scrape: bool) -> (usize, String, String) {
        let sources: Vec<(String, Arc<Vec<MetricFamily>>)> = self
            .collected
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut cache = self.pieces.lock();
        let cache = &mut *cache;
        let mut collected = BTreeMap::new();
        for (name, families) in sources {
            let entry = match cache.collected.remove(&name) {
                Some(c) if Arc::ptr_eq(&c.families, &families) => c,
                old => {
                    let old = old.map(|c| c.pieces).unwrap_or_default();
                    CollectedPieces {
                        pieces: Piece::pieces(&families, &old, false),
                        families,
                    }
                }
            };
            collected.insert(name, entry);
        }
        cache.collected = collected;

        let own = self.registry.sources();
        let mut old_registry = std::mem::take(&mut cache.registry);
        for (i, source) in own.into_iter().enumerate() {
            // Read before collecting: a change during the collection moves it again.
            let generation = source.generation();
            let same_source = old_registry
                .get(i)
                .is_some_and(|o| Arc::ptr_eq(&o.source, &source));
            let fresh = same_source
                && generation.is_some()
                && old_registry
                    .get(i)
                    .is_some_and(|o| o.generation == generation);
            let old_pieces = match old_registry.get_mut(i) {
                Some(o) if same_source => std::mem::take(&mut o.pieces),
                _ => Vec::new(),
            };
            let entry = if fresh {
                RegistryPieces {
                    source,
                    generation,
                    pieces: old_pieces,
                }
            } else {
                let mut families = Vec::new();
                source.collect(&mut families);
                let unique = source.series_are_unique();
                RegistryPieces {
                    source,
                    generation,
                    pieces: Piece::pieces_owned(families, &old_pieces, unique),
                }
            };
            if scrape || !fresh {
                self.store
                    .write(&registry_source(i), &entry.families(), t_ms);
            }
            cache.registry.push(entry);
        }

        // Same order as `merged`: collectors by source name, then the registry.
        let mut by_name: BTreeMap<&str, Vec<&Arc<Piece>>> = BTreeMap::new();
        let all = cache
            .collected
            .values()
            .flat_map(|c| c.pieces.iter())
            .chain(cache.registry.iter().flat_map(|r| r.pieces.iter()));
        for p in all {
            by_name.entry(&p.family.name).or_default().push(p);
        }
        let families = by_name.len();
        let mut text = String::with_capacity(self.encoded.load().text.len() + 1024);
        let mut om = String::with_capacity(self.encoded.load().openmetrics.len() + 1024);
        for parts in by_name.into_values() {
            if let [one] = parts[..] {
                text.push_str(&one.text);
                om.push_str(&one.openmetrics);
                continue;
            }
            // A family given by more than one source: joined and encoded in full.
            if let Some(f) = join_families(parts.iter().map(|p| &p.family)) {
                encode_text_family(&f, &mut text);
                encode_openmetrics_family(&f, &mut om);
            }
        }
        om.push_str(OPENMETRICS_EOF);
        (families, text, om)
    }

    /// Re-encodes if anything changed since the last snapshot, writing the registry
    /// sources that changed into the store (all of them when the self-scrape interval
    /// has passed). Returns whether it re-encoded.
    pub fn refresh(&self) -> bool {
        self.refresh_at(system_time_ms(SystemTime::now()))
    }

    /// [`refresh`](Self::refresh) at `t_ms`.
    pub fn refresh_at(&self, t_ms: i64) -> bool {
        let generation = (
            self.collected_generation.load(Ordering::Relaxed),
            self.registry.generation(),
        );
        // Held for the whole refresh: refreshes are serialized, so when this returns the
        // stored snapshot includes everything that happened before the call.
        let mut last = self.encoded_generation.lock();
        let last_scrape = self.last_self_scrape_ms.load(Ordering::Relaxed);
        let every = self.self_scrape_ms.load(Ordering::Relaxed);
        let scrape =
            last_scrape == i64::MIN || t_ms.saturating_sub(last_scrape) >= every - every / 10;
        if scrape {
            self.last_self_scrape_ms.store(t_ms, Ordering::Relaxed);
        }
        if *last == generation {
            if scrape {
                // Nothing changed: the same families again, as fresh samples.
                let cache = self.pieces.lock();
                for (i, r) in cache.registry.iter().enumerate() {
                    self.store.write(&registry_source(i), &r.families(), t_ms);
                }
            }
            return false;
        }
        *last = generation;
        let start = std::time::Instant::now();
        let (families, text, om) = self.assemble(t_ms, scrape);
        let encode_us = start.elapsed().as_micros() as u64;
        let at = std::time::UNIX_EPOCH + Duration::from_millis(t_ms.max(0) as u64);
        self.encoded.store(Arc::new(Encoded::new(text, om, at)));
        tracing::debug!(families, encode_us, "snapshot refreshed");
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
        let e = Exposition::new(Registry::new(), 2, Arc::new(Store::default()));
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
        let e = Exposition::new(Registry::new(), 100, Arc::new(Store::default()));
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

    /// A registry source without a generation (collected on every refresh), like the
    /// rule engine's alert families.
    struct Ungenerated(Mutex<Vec<MetricFamily>>);

    impl FamilySource for Ungenerated {
        fn collect(&self, out: &mut Vec<MetricFamily>) {
            out.extend(self.0.lock().iter().cloned());
        }
    }

    /// Refreshes and checks the snapshot against a full merge and re-encode of the same
    /// inputs, byte for byte.
    fn assert_matches_full_encode(e: &Exposition, step: &str) {
        assert!(e.refresh(), "{step}: something changed");
        let full = e.merged();
        let mut text = String::new();
        sentinel_base::metrics::encode::encode_text(&full, &mut text);
        let mut om = String::new();
        sentinel_base::metrics::encode::encode_openmetrics(&full, &mut om);
        let snap = e.current();
        assert_eq!(
            std::str::from_utf8(&snap.text).unwrap(),
            text,
            "{step}: text"
        );
        assert_eq!(
            std::str::from_utf8(&snap.openmetrics).unwrap(),
            om,
            "{step}: openmetrics"
        );
    }

    #[test]
    fn incremental_refresh_is_byte_identical_to_a_full_re_encode() {
        let registry = Registry::new();
        let e = Exposition::new(registry.clone(), 100, Arc::new(Store::default()));
        let events = registry.counter_vec("ev_total", "Events.", &["kind"]);
        let gauge = registry.gauge_vec("up_now", "Up.", &[]);
        let hist = registry.histogram_vec("lat_seconds", "Latency.", &["op"], &[0.1, 1.0]);
        let alerts = Arc::new(Ungenerated(Mutex::new(vec![MetricFamily::gauge(
            "alerts", "Alerts.",
        )
        .with(&[("name", "a")], 1.0)])));
        registry.register(alerts.clone());
        let gpu = |v: f64, n: usize| {
            let mut f = MetricFamily::gauge("gpu_util", "GPU \"util\".\nSecond line.");
            for i in 0..n {
                f.push(
                    &[("gpu", i.to_string()), ("uuid", format!("u-{i}"))],
                    v + i as f64,
                );
            }
            vec![
                f,
                MetricFamily::counter("gpu_err_total", "Errors.").with(&[("gpu", "0")], v),
            ]
        };

        events.inc(&["start"]);
        gauge.set(&[], 1.0);
        e.set("gpu", gpu(10.0, 2));
        assert_matches_full_encode(&e, "first snapshot");

        events.inc(&["start"]);
        assert_matches_full_encode(&e, "registry increment");

        events.inc(&["done"]);
        hist.observe(&["run"], 0.5);
        assert_matches_full_encode(&e, "new registry series");

        e.set("gpu", gpu(11.0, 3));
        assert_matches_full_encode(&e, "collector replaced, new series");

        e.set("gpu", gpu(11.0, 1));
        assert_matches_full_encode(&e, "collector replaced, series removed");

        events.remove(&["start"]);
        assert_matches_full_encode(&e, "registry series removed");

        // A second source sharing a family name (and one series) with the first, with a
        // duplicate series of its own and a family of another type under a used name.
        e.set("gpu", gpu(12.0, 2));
        e.set(
            "another",
            vec![
                MetricFamily::gauge("gpu_util", "Other help.")
                    .with(&[("gpu", "0"), ("uuid", "u-0")], 99.0)
                    .with(&[("uuid", "u-7"), ("gpu", "7")], 7.0)
                    .with(&[("gpu", "7"), ("uuid", "u-7")], 8.0),
                MetricFamily::gauge("ev_total", "Clash.").with(&[("kind", "done")], 5.0),
                MetricFamily::gauge("aaa_first", "Sorted first.").with::<&str, &str>(&[], 1.0),
                MetricFamily::gauge("empty", "No samples."),
            ],
        );
        assert_matches_full_encode(&e, "shared family names");

        alerts.0.lock()[0].samples[0].value = 2.0;
        registry.touch();
        assert_matches_full_encode(&e, "ungenerated source changed");

        gauge.series(&[]).set(3.0);
        assert_matches_full_encode(&e, "series handle update");

        e.clear("another");
        assert_matches_full_encode(&e, "source cleared");

        e.set("gpu", gpu(11.0, 1));
        assert_matches_full_encode(&e, "collector replaced with equal families");
        assert!(!e.refresh(), "nothing changed");
    }

    #[test]
    fn unchanged_sources_are_not_re_encoded() {
        let registry = Registry::new();
        let e = Exposition::new(registry.clone(), 100, Arc::new(Store::default()));
        let a = registry.counter_vec("a_total", "A.", &[]);
        let b = registry.counter_vec("b_total", "B.", &[]);
        a.inc(&[]);
        b.inc(&[]);
        e.set(
            "c",
            vec![MetricFamily::gauge("g", "G.").with(&[("x", "1")], 1.0)],
        );
        e.refresh();
        let piece = |name: &str| {
            let cache = e.pieces.lock();
            cache
                .collected
                .values()
                .flat_map(|c| c.pieces.iter())
                .chain(cache.registry.iter().flat_map(|r| r.pieces.iter()))
                .find(|p| p.family.name == name)
                .unwrap()
                .clone()
        };
        let (pa, pb, pg) = (piece("a_total"), piece("b_total"), piece("g"));
        a.inc(&[]);
        e.refresh();
        assert!(
            !Arc::ptr_eq(&pa, &piece("a_total")),
            "changed family re-encoded"
        );
        assert!(Arc::ptr_eq(&pb, &piece("b_total")), "unchanged family kept");
        assert!(Arc::ptr_eq(&pg, &piece("g")), "unchanged collector kept");
    }

    #[test]
    fn a_piece_drops_duplicate_series_first_one_wins_and_says_so() {
        let dup = MetricFamily::gauge("g", "h")
            .with(&[("a", "1"), ("b", "2")], 1.0)
            .with(&[("b", "2"), ("a", "1")], 2.0)
            .with(&[("a", "3")], 3.0);
        let p = Piece::new(&dup, false);
        assert!(!p.as_given);
        let values: Vec<f64> = p.family.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![1.0, 3.0]);
        assert_eq!((p.family.name.as_str(), p.family.help.as_str()), ("g", "h"));
        let plain = MetricFamily::gauge("g", "h").with(&[("a", "1")], 1.0);
        let p = Piece::new(&plain, false);
        assert!(p.as_given && p.family == plain);
    }

    #[test]
    fn gzip_round_trips() {
        let e = Exposition::new(Registry::new(), 100, Arc::new(Store::default()));
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

    fn store_samples(e: &Exposition, name: &str) -> Vec<(crate::labels::Labels, Vec<(i64, f64)>)> {
        use promql_parser::label::{MatchOp, Matcher};
        let m = [Matcher::new(
            MatchOp::Equal,
            crate::labels::METRIC_NAME,
            name,
        )];
        e.store().select(&m, 0, i64::MAX / 2)
    }

    /// Regression (issue 11): the registry only reached the store with the whole
    /// merged snapshot; it is written per source, and an unchanged counter is written
    /// again at each self-scrape so the rules' windows keep fresh samples.
    #[test]
    fn registry_counter_is_resampled_while_unchanged() {
        let registry = Registry::new();
        let e = Exposition::new(registry.clone(), 100, Arc::new(Store::default()));
        e.set_self_scrape_interval(Duration::from_secs(10));
        let c = registry.counter_vec("ev_total", "Events.", &[]);
        c.inc(&[]);
        let t0 = 1_700_000_000_000;
        assert!(e.refresh_at(t0));
        assert!(!e.refresh_at(t0 + 5_000), "nothing changed, no scrape due");
        assert!(!e.refresh_at(t0 + 10_000), "nothing changed, scrape due");
        assert!(!e.refresh_at(t0 + 20_000));
        let got = store_samples(&e, "ev_total");
        assert_eq!(
            got[0].1,
            vec![(t0, 1.0), (t0 + 10_000, 1.0), (t0 + 20_000, 1.0)]
        );
    }

    #[test]
    fn a_registry_change_writes_only_the_changed_source() {
        let registry = Registry::new();
        let e = Exposition::new(registry.clone(), 100, Arc::new(Store::default()));
        e.set_self_scrape_interval(Duration::from_secs(60));
        let a = registry.counter_vec("a_total", "A.", &[]);
        let b = registry.counter_vec("b_total", "B.", &[]);
        a.inc(&[]);
        b.inc(&[]);
        e.set_at(
            "coll",
            vec![MetricFamily::gauge("g", "G.").with(&[("x", "1")], 1.0)],
            1_000_000,
        );
        let t0 = 1_000_000;
        e.refresh_at(t0);
        a.inc(&[]);
        assert!(e.refresh_at(t0 + 2_000));
        assert_eq!(
            store_samples(&e, "a_total")[0].1,
            vec![(t0, 1.0), (t0 + 2_000, 2.0)]
        );
        assert_eq!(store_samples(&e, "b_total")[0].1, vec![(t0, 1.0)]);
        assert_eq!(
            store_samples(&e, "g")[0].1,
            vec![(t0, 1.0)],
            "collector not re-written"
        );
    }

    #[test]
    fn a_collector_run_is_written_at_once_and_a_failed_one_marks_its_series_stale() {
        let e = Exposition::new(Registry::new(), 100, Arc::new(Store::default()));
        e.set_at(
            "coll",
            vec![MetricFamily::gauge("g", "G.").with(&[("x", "1")], 1.0)],
            1_000,
        );
        // In the store before any refresh (the rules see it at once).
        assert_eq!(store_samples(&e, "g")[0].1, vec![(1_000, 1.0)]);
        e.clear("coll");
        let got = &store_samples(&e, "g")[0].1;
        assert_eq!(got.len(), 2);
        assert!(crate::store::is_stale(got[1].1));
    }

    /// The cardinality cap applies before the store: capped series never reach it.
    #[test]
    fn capped_series_reach_neither_the_exposition_nor_the_store() {
        let e = Exposition::new(Registry::new(), 2, Arc::new(Store::default()));
        let mut f = MetricFamily::gauge("g", "h");
        for i in 0..5 {
            f.push(&[("i", i.to_string())], 1.0);
        }
        e.set_at("c", vec![f], 1_000);
        assert_eq!(store_samples(&e, "g").len(), 2);
    }

    /// Issue 13 §2 through the write path: a counter born from an event after the
    /// registry's first write gets its zero at its creation time.
    #[test]
    fn a_registry_counter_born_after_start_gets_its_creation_zero() {
        let registry = Registry::new();
        let e = Exposition::new(registry.clone(), 100, Arc::new(Store::default()));
        let c = registry.counter_vec("ops_total", "Ops.", &["op"]);
        c.inc(&["old"]);
        let t0 = system_time_ms(SystemTime::now());
        e.refresh_at(t0);
        c.inc(&["new"]);
        e.refresh_at(t0 + 60_000);
        let got = store_samples(&e, "ops_total");
        let old = &got.iter().find(|(l, _)| l.get("op") == "old").unwrap().1;
        assert_eq!(old[0], (t0, 1.0), "present at the first write: no zero");
        let new = &got.iter().find(|(l, _)| l.get("op") == "new").unwrap().1;
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(new[0].1, 0.0);
        assert!(new[0].0 >= t0 - 1_000 && new[0].0 < t0 + 60_000, "{new:?}");
        assert_eq!(new[1], (t0 + 60_000, 1.0));
    }
}
