//! The sidecar's own metrics (`sentinel_*`, ingest-fed `recovery_*`/`quality_*`):
//! long-lived counters, gauges and histograms that components update as things happen.
//! Each component creates its vectors from the shared [`Registry`]; the exposition layer
//! collects them together with the collectors' families.

use super::{HistogramSnapshot, Labels, MetricFamily, MetricType};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Something that contributes families to the exposition at encode time.
pub trait FamilySource: Send + Sync {
    fn collect(&self, out: &mut Vec<MetricFamily>);
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
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    pub fn collect(&self) -> Vec<MetricFamily> {
        let sources = self.inner.sources.lock().clone();
        let mut out = Vec::new();
        for s in sources {
            s.collect(&mut out);
        }
        out
    }

    fn vec<T>(
        &self,
        name: &str,
        help: &str,
        kind: MetricType,
        label_names: &[&str],
        state: T,
    ) -> Arc<MetricVec<T>>
    where
        MetricVec<T>: FamilySource,
        T: Send + 'static,
    {
        let v = Arc::new(MetricVec {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            values: Mutex::new(BTreeMap::new()),
            template: state,
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

/// A family of series keyed by label values, all sharing one label-name list.
pub struct MetricVec<T> {
    name: String,
    help: String,
    kind: MetricType,
    label_names: Vec<String>,
    /// Each series' value and its creation time (Unix seconds).
    values: Mutex<BTreeMap<Vec<String>, (T, f64)>>,
    /// The zero state a new series starts from (holds the buckets for histograms).
    template: T,
    registry: Registry,
}

pub type CounterVec = MetricVec<f64>;
pub type GaugeVec = MetricVec<f64>;
pub type HistogramVec = MetricVec<HistogramSnapshot>;

impl<T: Clone> MetricVec<T> {
    fn update(&self, label_values: &[&str], f: impl FnOnce(&mut T)) {
        debug_assert_eq!(label_values.len(), self.label_names.len(), "{}", self.name);
        let mut values = self.values.lock();
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        let (slot, _) = values
            .entry(key)
            .or_insert_with(|| (self.template.clone(), super::unix_seconds_now()));
        f(slot);
        drop(values);
        self.registry.touch();
    }

    fn labels_for(&self, values: &[String]) -> Labels {
        self.label_names
            .iter()
            .cloned()
            .zip(values.iter().cloned())
            .collect()
    }

    /// Removes one series (e.g. a device that disappeared).
    pub fn remove(&self, label_values: &[&str]) {
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().remove(&key);
        self.registry.touch();
    }

    /// When the series was created (Unix seconds), if it exists.
    pub fn created(&self, label_values: &[&str]) -> Option<f64> {
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().get(&key).map(|(_, c)| *c)
    }

    /// Number of series currently held.
    pub fn len(&self) -> usize {
        self.values.lock().len()
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
        self.update(label_values, |x| *x += v);
    }

    pub fn set(&self, label_values: &[&str], v: f64) {
        self.update(label_values, |x| *x = v);
    }

    pub fn get(&self, label_values: &[&str]) -> Option<f64> {
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().get(&key).map(|(v, _)| *v)
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
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().get(&key).map(|(h, _)| h.clone())
    }
}

impl FamilySource for MetricVec<f64> {
    fn collect(&self, out: &mut Vec<MetricFamily>) {
        let mut f = MetricFamily::new(&self.name, &self.help, self.kind);
        // Counters carry their creation time (OpenMetrics `_created`); gauges do not.
        let counter = self.kind == MetricType::Counter;
        for (k, (v, created)) in self.values.lock().iter() {
            f.push_created(self.labels_for(k), *v, counter.then_some(*created));
        }
        out.push(f);
    }
}

impl FamilySource for MetricVec<HistogramSnapshot> {
    fn collect(&self, out: &mut Vec<MetricFamily>) {
        let mut f = MetricFamily::new(&self.name, &self.help, self.kind);
        for (k, (h, created)) in self.values.lock().iter() {
            f.push_histogram_created(self.labels_for(k), h, Some(*created));
        }
        out.push(f);
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
}
