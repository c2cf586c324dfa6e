//! The long history: every series at full resolution (at most one sample per
//! [`History::min_spacing_ms`], stale markers always kept) in compressed chunks, kept for
//! `retention_ms` and within `max_bytes` (the oldest chunks are evicted first and counted).
//! The [`crate::store::Store`] feeds it and reads it for selections reaching past its own
//! short window; [`crate::persist`] writes it to disk.

use crate::chunk::{Chunk, ChunkBuilder, SAMPLES_PER_CHUNK};
use crate::labels::{Labels, METRIC_NAME};
use crate::store::is_stale;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default `history.retention`.
pub const DEFAULT_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Default `history.max_bytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Fixed cost charged per series beside its chunks and labels.
const SERIES_OVERHEAD: usize = 96;

#[derive(Debug, Default)]
pub(crate) struct HSeries {
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) head: ChunkBuilder,
    /// Newest sample time (i64::MIN when empty).
    pub(crate) last_t: i64,
    /// Newest sample time already written to disk.
    pub(crate) flushed_t: i64,
}

impl HSeries {
    fn new() -> Self {
        HSeries {
            last_t: i64::MIN,
            flushed_t: i64::MIN,
            ..Default::default()
        }
    }

    fn bytes(&self, labels: &Labels) -> usize {
        SERIES_OVERHEAD
            + labels.heap_bytes()
            + self.head.heap_bytes()
            + self.chunks.iter().map(|c| c.data.len() + 40).sum::<usize>()
    }

    fn mint(&self) -> Option<i64> {
        match self.chunks.first() {
            Some(c) => Some(c.mint),
            None => (!self.head.is_empty()).then(|| self.head.mint()),
        }
    }

    fn push(&mut self, t: i64, v: f64) {
        if self.head.len() >= SAMPLES_PER_CHUNK {
            let full = std::mem::take(&mut self.head);
            self.chunks.push(full.finish());
        }
        self.head.push(t, v);
        self.last_t = t;
    }

    /// Samples in `[mint, maxt]`, in order.
    pub(crate) fn range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let first = self.chunks.partition_point(|c| c.maxt < mint);
        for c in &self.chunks[first..] {
            if c.mint > maxt {
                return;
            }
            out.extend(c.iter().filter(|(t, _)| *t >= mint && *t <= maxt));
        }
        if !self.head.is_empty() && self.head.maxt() >= mint && self.head.mint() <= maxt {
            out.extend(
                crate::chunk::ChunkIter::new(self.head.bytes(), self.head.len())
                    .filter(|(t, _)| *t >= mint && *t <= maxt),
            );
        }
    }

    pub(crate) fn all(&self) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        self.range(i64::MIN, i64::MAX, &mut out);
        out
    }

    fn samples(&self) -> u64 {
        self.chunks.iter().map(|c| c.n as u64).sum::<u64>() + self.head.len() as u64
    }
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) by_name: HashMap<String, BTreeMap<Labels, HSeries>>,
    pub(crate) bytes: usize,
}

/// Counters of what the history dropped (exported as `sentinel_history_*`).
#[derive(Debug, Default)]
pub struct HistoryStats {
    pub evicted_samples: AtomicU64,
    pub evicted_bytes: AtomicU64,
    pub expired_samples: AtomicU64,
    pub corrupt_files: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
}

/// Receives one selected series and its samples.
pub type Visit<'a> = dyn FnMut(&Labels, Vec<(i64, f64)>) + 'a;

pub struct History {
    pub(crate) inner: Mutex<Inner>,
    retention_ms: AtomicU64,
    max_bytes: AtomicU64,
    /// Smallest spacing kept between two samples of a series (stale markers excepted).
    pub min_spacing_ms: i64,
    pub stats: HistoryStats,
}

impl History {
    pub fn new(retention_ms: i64, max_bytes: u64) -> Self {
        History {
            inner: Mutex::new(Inner::default()),
            retention_ms: AtomicU64::new(retention_ms.max(0) as u64),
            max_bytes: AtomicU64::new(max_bytes),
            min_spacing_ms: 1000,
            stats: HistoryStats::default(),
        }
    }

    pub fn retention_ms(&self) -> i64 {
        self.retention_ms.load(Ordering::Relaxed) as i64
    }

    pub fn set_limits(&self, retention_ms: i64, max_bytes: u64) {
        self.retention_ms
            .store(retention_ms.max(0) as u64, Ordering::Relaxed);
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Approximate bytes held (chunks, labels, per-series overhead).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    pub fn series_count(&self) -> usize {
        self.inner.lock().by_name.values().map(|f| f.len()).sum()
    }

    pub fn sample_count(&self) -> u64 {
        self.inner
            .lock()
            .by_name
            .values()
            .flat_map(|f| f.values())
            .map(|s| s.samples())
            .sum()
    }

    /// Appends one sample of a live series: ignored when not newer than the series'
    /// newest, or closer than `min_spacing_ms` to it (stale markers always kept).
    pub fn append(&self, labels: &Labels, t: i64, v: f64) {
        let mut inner = self.inner.lock();
        self.append_locked(&mut inner, labels, t, v, self.min_spacing_ms);
        if inner.bytes as u64 > self.max_bytes() {
            self.evict_locked(&mut inner);
        }
    }

    fn append_locked(&self, inner: &mut Inner, labels: &Labels, t: i64, v: f64, spacing: i64) {
        let name = labels.get(METRIC_NAME);
        let family = match inner.by_name.get_mut(name) {
            Some(f) => f,
            None => inner.by_name.entry(name.to_string()).or_default(),
        };
        let (s, added) = match family.get_mut(labels) {
            Some(s) => (s, 0),
            None => {
                if is_stale(v) {
                    return;
                }
                let s = family.entry(labels.clone()).or_insert_with(HSeries::new);
                (s, SERIES_OVERHEAD + labels.heap_bytes())
            }
        };
        if t <= s.last_t
            || (s.last_t != i64::MIN && !is_stale(v) && t.saturating_sub(s.last_t) < spacing)
        {
            inner.bytes += added;
            return;
        }
        let before = s.head.heap_bytes();
        let chunks = s.chunks.len();
        s.push(t, v);
        let mut after = s.head.heap_bytes();
        if s.chunks.len() > chunks {
            after += s.chunks.last().map_or(0, |c| c.data.len() + 40);
        }
        inner.bytes = (inner.bytes + added + after).saturating_sub(before);
    }

    /// Inserts samples (any order, any overlap with what is there; on equal timestamps
    /// the new value wins). Used by loading and importing.
    pub fn insert(&self, labels: &Labels, samples: &[(i64, f64)]) {
        let mut inner = self.inner.lock();
        self.insert_locked(&mut inner, labels, samples);
    }

    pub(crate) fn insert_locked(&self, inner: &mut Inner, labels: &Labels, samples: &[(i64, f64)]) {
        if samples.is_empty() {
            return;
        }
        let sorted = samples.windows(2).all(|w| w[0].0 < w[1].0);
        let name = labels.get(METRIC_NAME);
        let last_t = inner
            .by_name
            .get(name)
            .and_then(|f| f.get(labels))
            .map(|s| s.last_t)
            .unwrap_or(i64::MIN);
        if sorted && samples[0].0 > last_t {
            for &(t, v) in samples {
                self.append_locked(inner, labels, t, v, 0);
            }
            return;
        }
        // Merge: rebuild the series from both sample sets.
        let mut merged: BTreeMap<i64, f64> = BTreeMap::new();
        let family = inner.by_name.entry(name.to_string()).or_default();
        let mut flushed_t = i64::MIN;
        if let Some(old) = family.remove(labels) {
            inner.bytes = inner.bytes.saturating_sub(old.bytes(labels));
            flushed_t = old.flushed_t;
            merged.extend(old.all());
        }
        merged.extend(samples.iter().copied());
        // The rebuilt series must be written again in full at the next flush when new
        // samples landed before what was flushed.
        let min_new = samples.iter().map(|s| s.0).min().unwrap_or(i64::MAX);
        let mut s = HSeries::new();
        for (t, v) in merged {
            s.push(t, v);
        }
        s.flushed_t = if min_new <= flushed_t {
            i64::MIN
        } else {
            flushed_t
        };
        if s.last_t == i64::MIN {
            return;
        }
        inner.bytes += s.bytes(labels);
        family.insert(labels.clone(), s);
    }

    /// Drops what is older than the retention before `now_ms`, then evicts by bytes.
    pub fn maintain(&self, now_ms: i64) {
        let mut inner = self.inner.lock();
        let cutoff = now_ms.saturating_sub(self.retention_ms());
        let mut expired = 0u64;
        let mut freed = 0usize;
        for family in inner.by_name.values_mut() {
            family.retain(|labels, s| {
                if s.last_t < cutoff {
                    expired += s.samples();
                    freed += s.bytes(labels);
                    return false;
                }
                let n = s.chunks.partition_point(|c| c.maxt < cutoff);
                for c in s.chunks.drain(..n) {
                    expired += c.n as u64;
                    freed += c.data.len() + 40;
                }
                true
            });
        }
        inner.by_name.retain(|_, f| !f.is_empty());
        inner.bytes = inner.bytes.saturating_sub(freed);
        self.stats
            .expired_samples
            .fetch_add(expired, Ordering::Relaxed);
        if inner.bytes as u64 > self.max_bytes() {
            self.evict_locked(&mut inner);
        }
    }

    /// Evicts the oldest chunks (then, if need be, the series whose newest sample is
    /// oldest) until the history holds at most 90% of `max_bytes`.
    fn evict_locked(&self, inner: &mut Inner) {
        let target = (self.max_bytes() / 10 * 9) as usize;
        let mut candidates: Vec<(i64, String, Labels)> = inner
            .by_name
            .iter()
            .flat_map(|(n, f)| f.iter().map(move |(l, s)| (n, l, s)))
            .filter_map(|(n, l, s)| s.chunks.first().map(|c| (c.maxt, n.clone(), l.clone())))
            .collect();
        let mut samples = 0u64;
        let mut bytes = 0usize;
        // Repeatedly take the oldest first chunk (a min-heap over the series' first chunks).
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(i64, String, Labels)>> =
            candidates.drain(..).map(std::cmp::Reverse).collect();
        while inner.bytes > target {
            let Some(std::cmp::Reverse((_, name, labels))) = heap.pop() else {
                break;
            };
            let Some(s) = inner
                .by_name
                .get_mut(&name)
                .and_then(|f| f.get_mut(&labels))
            else {
                continue;
            };
            if s.chunks.is_empty() {
                continue;
            }
            let c = s.chunks.remove(0);
            samples += c.n as u64;
            let freed = c.data.len() + 40;
            bytes += freed;
            inner.bytes = inner.bytes.saturating_sub(freed);
            if let Some(next) = s.chunks.first() {
                heap.push(std::cmp::Reverse((next.maxt, name, labels)));
            }
        }
        if inner.bytes > target {
            // Only heads left: drop whole series, oldest newest-sample first.
            let mut rest: Vec<(i64, String, Labels)> = inner
                .by_name
                .iter()
                .flat_map(|(n, f)| f.iter().map(move |(l, s)| (s.last_t, n.clone(), l.clone())))
                .collect();
            rest.sort();
            for (_, name, labels) in rest {
                if inner.bytes <= target {
                    break;
                }
                if let Some(s) = inner.by_name.get_mut(&name).and_then(|f| f.remove(&labels)) {
                    samples += s.samples();
                    let freed = s.bytes(&labels);
                    bytes += freed;
                    inner.bytes = inner.bytes.saturating_sub(freed);
                }
            }
            inner.by_name.retain(|_, f| !f.is_empty());
        }
        self.stats
            .evicted_samples
            .fetch_add(samples, Ordering::Relaxed);
        self.stats
            .evicted_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if samples > 0 {
            tracing::warn!(
                samples,
                bytes,
                max_bytes = self.max_bytes(),
                "history over its byte budget: oldest data evicted"
            );
        }
    }

    /// Visits every series matching `keep` with its samples in `[mint, maxt]`.
    pub fn select_with(
        &self,
        name: Option<&str>,
        keep: &mut dyn FnMut(&Labels) -> bool,
        mint: i64,
        maxt: i64,
        visit: &mut Visit<'_>,
    ) {
        let inner = self.inner.lock();
        let families: Vec<&BTreeMap<Labels, HSeries>> = match name {
            Some(n) => inner.by_name.get(n).into_iter().collect(),
            None => inner.by_name.values().collect(),
        };
        for f in families {
            for (labels, s) in f {
                if s.last_t < mint || s.mint().is_none_or(|t| t > maxt) || !keep(labels) {
                    continue;
                }
                let mut out = Vec::new();
                s.range(mint, maxt, &mut out);
                visit(labels, out);
            }
        }
    }

    /// Every series with all its samples, sorted by labels.
    pub fn dump(&self) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let inner = self.inner.lock();
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = inner
            .by_name
            .values()
            .flat_map(|f| f.iter())
            .map(|(l, s)| (l.clone(), s.all()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::stale_nan;

    fn l(name: &str, i: usize) -> Labels {
        Labels::from_pairs([(METRIC_NAME, name.to_string()), ("i", i.to_string())])
    }

    #[test]
    fn retention_drops_old_chunks_and_series() {
        let h = History::new(3_600_000, u64::MAX);
        for k in 0..2000i64 {
            h.append(&l("a", 0), k * 5000, k as f64);
        }
        h.append(&l("b", 0), 0, 1.0);
        h.maintain(2000 * 5000);
        let d = h.dump();
        assert_eq!(d.len(), 1, "series b ended before the retention");
        // Whole chunks older than the cutoff are gone; the rest is kept.
        let first = d[0].1[0].0;
        assert!(first >= 10_000_000 - 3_600_000 - 120 * 5000, "{first}");
        assert!(first <= 10_000_000 - 3_600_000, "{first}");
        assert!(h.stats.expired_samples.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn byte_budget_evicts_oldest_data_first_and_counts_it() {
        let h = History::new(i64::MAX / 4, 40_000);
        for k in 0..5000i64 {
            for i in 0..4 {
                h.append(&l("a", i), k * 1000, (k * 31 % 97) as f64 * 1.37);
            }
        }
        assert!(h.bytes() <= 40_000, "{}", h.bytes());
        let evicted = h.stats.evicted_samples.load(Ordering::Relaxed);
        assert!(evicted > 0);
        assert!(h.stats.evicted_bytes.load(Ordering::Relaxed) > 0);
        for (_, s) in h.dump() {
            // The newest samples are all there, the oldest are gone.
            assert_eq!(s.last().unwrap().0, 4_999_000);
            assert!(s[0].0 > 0);
            assert!(s.windows(2).all(|w| w[1].0 - w[0].0 == 1000));
        }
        assert_eq!(
            h.sample_count() + evicted,
            4 * 5000,
            "every sample kept or counted as evicted"
        );
    }

    #[test]
    fn spacing_keeps_one_sample_per_second_but_every_stale_marker() {
        let h = History::new(i64::MAX / 4, u64::MAX);
        for k in 0..10 {
            h.append(&l("a", 0), 1000 + k * 100, k as f64);
        }
        h.append(&l("a", 0), 2050, stale_nan());
        h.append(&l("a", 1), 5, stale_nan()); // a new series never starts stale
        let d = h.dump();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.len(), 2);
        assert!(is_stale(d[0].1[1].1));
    }

    #[test]
    fn insert_merges_out_of_order_samples_and_new_values_win() {
        let h = History::new(i64::MAX / 4, u64::MAX);
        h.insert(&l("a", 0), &[(10, 1.0), (30, 3.0)]);
        h.insert(&l("a", 0), &[(20, 2.0), (30, 4.0), (5, 0.5)]);
        assert_eq!(
            h.dump()[0].1,
            vec![(5, 0.5), (10, 1.0), (20, 2.0), (30, 4.0)]
        );
    }
}
