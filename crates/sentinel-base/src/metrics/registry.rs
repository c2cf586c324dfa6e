//! The sidecar's own metrics (`sentinel_*`, ingest-fed `recovery_*`/`quality_*`):
//! long-lived counters, gauges and histograms that components update as things happen.
//! Each component creates its vectors from the shared [`Registry`]; the exposition layer
//! collects them together with the collectors' families.
//!
//! The hot path takes no exclusive lock: an update hashes the label values (no
//! allocation), finds the series under a shared read lock, and changes its value with
//! atomics (an `f64` in an `AtomicU64`; a histogram's buckets and sum likewise). Only the
//! first update of a new series takes the write lock. A caller on a very hot path can
//! hold a [`Series`] handle from [`MetricVec::series`] and skip the lookup too. A
//! [`Family`] keys its series by a typed [`LabelSet`], whose names are fixed at compile
//! time.

use super::{HistogramSnapshot, Labels, MetricFamily, MetricType};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Something that contributes families to the exposition at encode time.
pub trait FamilySource: Send + Sync {
    fn collect(&self, out: &mut Vec<MetricFamily>);

    /// A number that changes whenever what [`collect`](Self::collect) would return
    /// changes, so the exposition can keep its encoding of an unchanged source; `None`
    /// (the default) means unknown, and the source is collected on every refresh.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// Whether no two samples that [`collect`](Self::collect) gives share a family, suffix
    /// and label set, so the exposition can skip deduplicating them. `false` (the default)
    /// when unsure.
    fn series_are_unique(&self) -> bool {
        false
    }
}

/// Holds every long-lived metric source. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    sources: Mutex<Vec<Arc<dyn FamilySource>>>,
    /// Bumped on every update so the exposition re-encodes only when something changed.
    generation: AtomicU64,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, source: Arc<dyn FamilySource>) {
        self.inner.sources.lock().push(source);
        self.touch();
    }

    /// Marks the registry as changed (for sources that update outside the vec types).
    pub fn touch(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Every registered source, in registration order (the order of [`collect`](Self::collect)).
    pub fn sources(&self) -> Vec<Arc<dyn FamilySource>> {
        self.inner.sources.lock().clone()
    }

    pub fn collect(&self) -> Vec<MetricFamily> {
        let sources = self.sources();
        let mut out = Vec::new();
        for s in sources {
            s.collect(&mut out);
        }
        out
    }

    fn vec<T: Value>(
        &self,
        name: &str,
        help: &str,
        kind: MetricType,
        label_names: &[&str],
        template: T,
    ) -> Arc<MetricVec<T>>
    where
        MetricVec<T>: FamilySource,
    {
        let v = Arc::new(MetricVec {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            series: RwLock::new(HashMap::new()),
            template,
            generation: Arc::new(AtomicU64::new(1)),
            registry: self.clone(),
        });
        self.register(v.clone());
        v
    }

    /// A counter family with the given label names (name must end in `_total`).
    pub fn counter_vec(&self, name: &str, help: &str, label_names: &[&str]) -> Arc<CounterVec> {
        self.vec(name, help, MetricType::Counter, label_names, 0.0)
    }

    pub fn gauge_vec(&self, name: &str, help: &str, label_names: &[&str]) -> Arc<GaugeVec> {
        self.vec(name, help, MetricType::Gauge, label_names, 0.0)
    }

    /// A counter family whose label set is the type `L` (names fixed at compile time).
    pub fn counter_family<L: LabelSet>(&self, name: &str, help: &str) -> Family<L, f64> {
        Family::new(self.counter_vec(name, help, L::NAMES))
    }

    /// A gauge family whose label set is the type `L`.
    pub fn gauge_family<L: LabelSet>(&self, name: &str, help: &str) -> Family<L, f64> {
        Family::new(self.gauge_vec(name, help, L::NAMES))
    }

    /// A histogram family whose label set is the type `L`.
    pub fn histogram_family<L: LabelSet>(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Family<L, HistogramSnapshot> {
        Family::new(self.histogram_vec(name, help, L::NAMES, buckets))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Arc<HistogramVec> {
        self.vec(
            name,
            help,
            MetricType::Histogram,
            label_names,
            HistogramSnapshot::new(buckets),
        )
    }
}

/// What a family's series hold: the zero state ([`MetricVec`]'s template) and the
/// atomic cell a series keeps it in.
pub trait Value: Send + Sync + 'static {
    /// One series' value, updated through `&self` with atomics.
    type Cell: Send + Sync + 'static;
    fn cell(&self) -> Self::Cell;
}

/// An `f64` updated atomically (its bits in an `AtomicU64`).
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, v: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

impl Value for f64 {
    type Cell = AtomicF64;
    fn cell(&self) -> AtomicF64 {
        AtomicF64::new(*self)
    }
}

/// A histogram's series: per-bucket counts and the sum, each atomic. The count is the
/// total of the buckets, so a snapshot taken during an observation is never a
/// histogram whose `+Inf` bucket is below a finite one.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: Arc<[f64]>,
    /// Not cumulative; the last slot counts the observations above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
}

impl AtomicHistogram {
    pub fn observe(&self, v: f64) {
        // NaN is counted (as Prometheus clients do) in +Inf only, and poisons the sum.
        let idx = self.bounds.partition_point(|b| *b < v);
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum.add(v);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum: self.sum.get(),
        }
    }
}

impl Value for HistogramSnapshot {
    type Cell = AtomicHistogram;
    fn cell(&self) -> AtomicHistogram {
        AtomicHistogram {
            bounds: self.bounds.clone().into(),
            counts: self.counts.iter().map(|c| AtomicU64::new(*c)).collect(),
            sum: AtomicF64::new(self.sum),
        }
    }
}

/// One series of a family: its label values (in the family's label-name order), its
/// creation time (Unix seconds, for OpenMetrics `_created` and the rule store) and its
/// value.
pub struct SeriesData<C> {
    label_values: Box<[Box<str>]>,
    created: f64,
    cell: C,
}

impl<C> SeriesData<C> {
    fn matches(&self, label_values: &[&str]) -> bool {
        self.label_values.len() == label_values.len()
            && self
                .label_values
                .iter()
                .zip(label_values)
                .all(|(a, b)| &**a == *b)
    }
}

/// A handle on one series, bound to its label values: updates skip the lookup. A handle
/// kept after [`MetricVec::remove`] updates a series that is no longer exported.
pub struct Series<T: Value> {
    data: Arc<SeriesData<T::Cell>>,
    /// The family's generation ([`FamilySource::generation`]).
    generation: Arc<AtomicU64>,
    registry: Registry,
}

impl<T: Value> Series<T> {
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.registry.touch();
    }
}

impl Series<f64> {
    pub fn inc(&self) {
        self.add(1.0);
    }

    pub fn add(&self, v: f64) {
        self.data.cell.add(v);
        self.changed();
    }

    pub fn set(&self, v: f64) {
        self.data.cell.set(v);
        self.changed();
    }

    pub fn get(&self) -> f64 {
        self.data.cell.get()
    }
}

impl Series<HistogramSnapshot> {
    pub fn observe(&self, v: f64) {
        self.data.cell.observe(v);
        self.changed();
    }
}

/// A label set as a type, in the spirit of prometheus-client's `EncodeLabelSet`: its
/// label names are fixed at compile time, so a family built from it cannot be updated
/// with the wrong number or order of values.
///
/// ```
/// use sentinel_base::metrics::registry::{LabelSet, Registry};
/// struct Request<'a> {
///     endpoint: &'a str,
///     code: &'a str,
/// }
/// impl LabelSet for Request<'_> {
///     const NAMES: &'static [&'static str] = &["endpoint", "code"];
///     fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
///         f(&[self.endpoint, self.code])
///     }
/// }
/// let requests = Registry::new().counter_family::<Request>("requests_total", "Requests.");
/// requests.inc(&Request { endpoint: "/metrics", code: "200" });
/// ```
pub trait LabelSet {
    /// The label names, in exposition order.
    const NAMES: &'static [&'static str];
    /// Calls `f` with this set's values, in the order of [`LabelSet::NAMES`], without
    /// allocating.
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R;
}

/// The empty label set (a family with one series).
impl LabelSet for () {
    const NAMES: &'static [&'static str] = &[];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[])
    }
}

/// A family whose series are keyed by the typed label set `L`.
pub struct Family<L: LabelSet, T: Value> {
    vec: Arc<MetricVec<T>>,
    _labels: std::marker::PhantomData<fn(&L)>,
}

impl<L: LabelSet, T: Value> Family<L, T> {
    fn new(vec: Arc<MetricVec<T>>) -> Self {
        Family {
            vec,
            _labels: std::marker::PhantomData,
        }
    }

    /// The untyped family underneath (for `len`, `remove`, `created`, ...).
    pub fn vec(&self) -> &Arc<MetricVec<T>> {
        &self.vec
    }

    /// A handle on the series of `labels`, created at zero if new.
    pub fn series(&self, labels: &L) -> Series<T> {
        labels.with_values(|v| self.vec.series(v))
    }
}

impl<L: LabelSet> Family<L, f64> {
    pub fn inc(&self, labels: &L) {
        labels.with_values(|v| self.vec.inc(v))
    }

    pub fn add(&self, labels: &L, v: f64) {
        labels.with_values(|vals| self.vec.add(vals, v))
    }

    pub fn set(&self, labels: &L, v: f64) {
        labels.with_values(|vals| self.vec.set(vals, v))
    }

    pub fn get(&self, labels: &L) -> Option<f64> {
        labels.with_values(|v| self.vec.get(v))
    }
}

impl<L: LabelSet> Family<L, HistogramSnapshot> {
    pub fn observe(&self, labels: &L, v: f64) {
        labels.with_values(|vals| self.vec.observe(vals, v))
    }
}

/// The hash of a label-value list, the same for `&[&str]` and the stored values:
/// FNV-1a over the bytes, with a byte that cannot occur in UTF-8 after each value (so
/// `["ab", "c"]` and `["a", "bc"]` differ). Collisions are resolved by comparing values.
fn key_hash<'a>(values: impl Iterator<Item = &'a str>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// Series by the hash of their label values; a collision shares a bucket.
type SeriesMap<C> = HashMap<u64, Vec<Arc<SeriesData<C>>>>;

/// A family of series keyed by label values, all sharing one label-name list.
pub struct MetricVec<T: Value> {
    name: String,
    help: String,
    kind: MetricType,
    label_names: Vec<String>,
    series: RwLock<SeriesMap<T::Cell>>,
    /// The zero state a new series starts from (holds the buckets for histograms).
    template: T,
    /// Bumped (before the registry's) on every change to this family.
    generation: Arc<AtomicU64>,
    registry: Registry,
}

pub type CounterVec = MetricVec<f64>;
pub type GaugeVec = MetricVec<f64>;
pub type HistogramVec = MetricVec<HistogramSnapshot>;

impl<T: Value> MetricVec<T> {
    /// Records a change: this family's generation first, then the registry's, so a
    /// refresh that sees the registry's new generation sees this family's too.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.registry.touch();
    }

    fn find(&self, label_values: &[&str]) -> Option<Arc<SeriesData<T::Cell>>> {
        let h = key_hash(label_values.iter().copied());
        self.series
            .read()
            .get(&h)?
            .iter()
            .find(|s| s.matches(label_values))
            .cloned()
    }

    /// Runs `f` on the series' cell, creating the series first when it is new.
    fn update(&self, label_values: &[&str], f: impl FnOnce(&T::Cell)) {
        debug_assert_eq!(label_values.len(), self.label_names.len(), "{}", self.name);
        let h = key_hash(label_values.iter().copied());
        {
            let map = self.series.read();
            if let Some(s) = map
                .get(&h)
                .and_then(|b| b.iter().find(|s| s.matches(label_values)))
            {
                f(&s.cell);
                drop(map);
                self.changed();
                return;
            }
        }
        let s = self.insert(h, label_values);
        f(&s.cell);
        self.changed();
    }

    fn insert(&self, h: u64, label_values: &[&str]) -> Arc<SeriesData<T::Cell>> {
        let mut map = self.series.write();
        let bucket = map.entry(h).or_default();
        if let Some(s) = bucket.iter().find(|s| s.matches(label_values)) {
            return s.clone();
        }
        let s = Arc::new(SeriesData {
            label_values: label_values.iter().map(|v| Box::from(*v)).collect(),
            created: super::unix_seconds_now(),
            cell: self.template.cell(),
        });
        bucket.push(s.clone());
        s
    }

    /// The series for these label values (created at zero if new), as a handle that
    /// updates without a lookup.
    pub fn series(&self, label_values: &[&str]) -> Series<T> {
        debug_assert_eq!(label_values.len(), self.label_names.len(), "{}", self.name);
        let data = match self.find(label_values) {
            Some(s) => s,
            None => {
                let s = self.insert(key_hash(label_values.iter().copied()), label_values);
                self.changed();
                s
            }
        };
        Series {
            data,
            generation: self.generation.clone(),
            registry: self.registry.clone(),
        }
    }

    /// Every series, ordered by label values (the exposition order).
    fn sorted(&self) -> Vec<Arc<SeriesData<T::Cell>>> {
        let mut all: Vec<_> = self.series.read().values().flatten().cloned().collect();
        all.sort_by(|a, b| a.label_values.cmp(&b.label_values));
        all
    }

    fn labels_for(&self, values: &[Box<str>]) -> Labels {
        self.label_names
            .iter()
            .cloned()
            .zip(values.iter().map(|v| v.to_string()))
            .collect()
    }

    /// Removes one series (e.g. a device that disappeared).
    pub fn remove(&self, label_values: &[&str]) {
        let h = key_hash(label_values.iter().copied());
        let mut map = self.series.write();
        if let Some(bucket) = map.get_mut(&h) {
            bucket.retain(|s| !s.matches(label_values));
            if bucket.is_empty() {
                map.remove(&h);
            }
        }
        drop(map);
        self.changed();
    }

    /// When the series was created (Unix seconds), if it exists.
    pub fn created(&self, label_values: &[&str]) -> Option<f64> {
        self.find(label_values).map(|s| s.created)
    }

    /// Number of series currently held.
    pub fn len(&self) -> usize {
        self.series.read().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl MetricVec<f64> {
    pub fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1.0);
    }

    pub fn add(&self, label_values: &[&str], v: f64) {
        self.update(label_values, |x| x.add(v));
    }

    pub fn set(&self, label_values: &[&str], v: f64) {
        self.update(label_values, |x| x.set(v));
    }

    pub fn get(&self, label_values: &[&str]) -> Option<f64> {
        self.find(label_values).map(|s| s.cell.get())
    }

    /// Creates the series at zero so that it is exported before its first event.
    /// A series created by its first event is counted too (its creation time goes to
    /// `_created` and the rule store), so this is for series that should be visible
    /// before anything happened.
    pub fn touch_series(&self, label_values: &[&str]) {
        self.update(label_values, |_| {});
    }
}

impl MetricVec<HistogramSnapshot> {
    pub fn observe(&self, label_values: &[&str], v: f64) {
        self.update(label_values, |h| h.observe(v));
    }

    /// Creates the series with zero observations, exported before the first one.
    pub fn touch_histogram(&self, label_values: &[&str]) {
        self.update(label_values, |_| {});
    }

    pub fn snapshot(&self, label_values: &[&str]) -> Option<HistogramSnapshot> {
        self.find(label_values).map(|s| s.cell.snapshot())
    }
}

impl FamilySource for MetricVec<f64> {
    fn collect(&self, out: &mut Vec<MetricFamily>) {
        let mut f = MetricFamily::new(&self.name, &self.help, self.kind);
        // Counters carry their creation time (OpenMetrics `_created`); gauges do not.
        let counter = self.kind == MetricType::Counter;
        for s in self.sorted() {
            f.push_created(
                self.labels_for(&s.label_values),
                s.cell.get(),
                counter.then_some(s.created),
            );
        }
        out.push(f);
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    /// One family, one series per label-value set.
    fn series_are_unique(&self) -> bool {
        true
    }
}

impl FamilySource for MetricVec<HistogramSnapshot> {
    fn collect(&self, out: &mut Vec<MetricFamily>) {
        let mut f = MetricFamily::new(&self.name, &self.help, self.kind);
        for s in self.sorted() {
            f.push_histogram_created(
                self.labels_for(&s.label_values),
                &s.cell.snapshot(),
                Some(s.created),
            );
        }
        out.push(f);
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    /// One family, one series per label-value set.
    fn series_are_unique(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_collect_with_labels() {
        let r = Registry::new();
        let c = r.counter_vec("x_total", "x", &["a"]);
        let g0 = r.generation();
        c.inc(&["1"]);
        c.add(&["1"], 2.0);
        assert!(r.generation() > g0);
        let h = r.histogram_vec("d_seconds", "d", &[], &[1.0]);
        h.observe(&[], 0.5);
        let fams = r.collect();
        assert_eq!(fams[0].samples[0].value, 3.0);
        assert_eq!(fams[0].samples[0].labels, vec![("a".into(), "1".into())]);
        assert_eq!(fams[1].samples.len(), 4); // le=1, le=+Inf, sum, count
    }

    #[test]
    fn counter_and_histogram_series_carry_their_creation_time_and_gauges_do_not() {
        let r = Registry::new();
        let before = super::super::unix_seconds_now();
        let c = r.counter_vec("x_total", "x", &["a"]);
        c.inc(&["new"]);
        let g = r.gauge_vec("g", "g", &[]);
        g.set(&[], 1.0);
        let h = r.histogram_vec("d_seconds", "d", &[], &[1.0]);
        h.observe(&[], 0.5);
        let after = super::super::unix_seconds_now();
        let fams = r.collect();
        let created = fams[0].samples[0]
            .created
            .expect("counter has a creation time");
        assert!(before <= created && created <= after);
        assert_eq!(c.created(&["new"]), Some(created));
        assert_eq!(fams[1].samples[0].created, None, "gauges have none");
        assert!(fams[2].samples.iter().all(|s| s.created.is_some()));
        // A later increment keeps the creation time.
        c.inc(&["new"]);
        assert_eq!(r.collect()[0].samples[0].created, Some(created));
    }

    #[test]
    fn concurrent_increments_from_many_threads_are_all_counted() {
        let r = Registry::new();
        let c = r.counter_vec("x_total", "x", &["a"]);
        let h = r.histogram_vec("d_seconds", "d", &["a"], &[0.5]);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (c, h) = (&c, &h);
                s.spawn(move || {
                    for i in 0..10_000 {
                        c.inc(&["shared"]);
                        c.add(&[if t % 2 == 0 { "even" } else { "odd" }], 0.5);
                        h.observe(&["x"], (i % 2) as f64);
                    }
                });
            }
        });
        assert_eq!(c.get(&["shared"]), Some(40_000.0));
        assert_eq!(c.get(&["even"]), Some(10_000.0));
        let snap = h.snapshot(&["x"]).unwrap();
        assert_eq!(
            (snap.count, snap.counts.clone(), snap.sum),
            (40_000, vec![20_000, 20_000], 20_000.0)
        );
    }

    #[test]
    fn series_are_collected_in_label_value_order_and_removal_drops_one() {
        let r = Registry::new();
        let g = r.gauge_vec("g", "g", &["a", "b"]);
        for (a, b) in [("z", "1"), ("a", "2"), ("a", "10"), ("m", "")] {
            g.set(&[a, b], 1.0);
        }
        let order = |r: &Registry| -> Vec<Labels> {
            r.collect()[0]
                .samples
                .iter()
                .map(|s| s.labels.clone())
                .collect()
        };
        let pairs =
            |a: &str, b: &str| -> Labels { vec![("a".into(), a.into()), ("b".into(), b.into())] };
        assert_eq!(
            order(&r),
            vec![
                pairs("a", "10"),
                pairs("a", "2"),
                pairs("m", ""),
                pairs("z", "1")
            ]
        );
        // Concatenations that agree are different series.
        g.set(&["ab", "c"], 2.0);
        g.set(&["a", "bc"], 3.0);
        assert_eq!(
            (g.get(&["ab", "c"]), g.get(&["a", "bc"])),
            (Some(2.0), Some(3.0))
        );
        g.remove(&["a", "2"]);
        assert_eq!(g.get(&["a", "2"]), None);
        assert_eq!(g.len(), 5);
    }

    #[test]
    fn a_series_handle_updates_the_exported_series() {
        let r = Registry::new();
        let c = r.counter_vec("x_total", "x", &["a"]);
        let s = c.series(&["hot"]);
        assert_eq!(c.get(&["hot"]), Some(0.0), "created at zero");
        let g0 = r.generation();
        s.inc();
        s.add(2.0);
        assert_eq!((s.get(), c.get(&["hot"])), (3.0, Some(3.0)));
        assert!(
            r.generation() > g0,
            "a handle's update marks the registry changed"
        );
        let h = r.histogram_vec("d_seconds", "d", &[], &[1.0]);
        h.series(&[]).observe(2.0);
        assert_eq!(h.snapshot(&[]).unwrap().counts, vec![0, 1]);
    }

    #[test]
    fn typed_label_sets_export_their_names_in_order() {
        #[derive(Clone, Copy)]
        enum Outcome {
            Ok,
            Failed,
        }
        struct Attempt<'a> {
            receiver: &'a str,
            outcome: Outcome,
        }
        impl LabelSet for Attempt<'_> {
            const NAMES: &'static [&'static str] = &["receiver", "outcome"];
            fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
                let outcome = match self.outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failed => "failed",
                };
                f(&[self.receiver, outcome])
            }
        }
        let r = Registry::new();
        let attempts = r.counter_family::<Attempt>("attempts_total", "Attempts.");
        let a = Attempt {
            receiver: "ops",
            outcome: Outcome::Failed,
        };
        attempts.inc(&a);
        attempts.add(&a, 2.0);
        attempts.series(&Attempt {
            receiver: "ops",
            outcome: Outcome::Ok,
        });
        assert_eq!(attempts.get(&a), Some(3.0));
        assert_eq!(attempts.vec().len(), 2);
        let fam = &r.collect()[0];
        assert_eq!(
            fam.samples[0].labels,
            vec![
                ("receiver".to_string(), "ops".to_string()),
                ("outcome".to_string(), "failed".to_string())
            ]
        );
        let up = r.gauge_family::<()>("up", "Up.");
        up.set(&(), 1.0);
        let h = r.histogram_family::<()>("d_seconds", "d", &[1.0]);
        h.observe(&(), 0.5);
        assert_eq!(h.vec().snapshot(&[]).unwrap().count, 1);
    }
}
