//! The samples of every series, written by their sources and read by every reader.
//!
//! Writers: each collector run and each change of the sidecar's own metrics is one
//! [`Store::write`] of that source's families at one time (one scrape of that source, as
//! Prometheus sees it); the rule engine appends its own output (recording rules,
//! `ALERTS`) with [`Store::append`]. Readers: the evaluator and the query APIs through
//! [`Store::select`] and friends; the `/metrics` exposition
//! ([`crate::exposition::Exposition`]) is encoded from the same writes. Retention follows
//! the loaded rules (longest range + offset + `for` + lookback), so memory stays
//! proportional to what the rules can see; the series count is capped and overflow is
//! dropped and counted.
//!
//! Sources: a write appends only that source's series. The store keeps, per source, the
//! store-side labels of each series it gave (built once, when the series first appears),
//! so a write builds no label set for a series it already knows. A series belongs to the
//! source that wrote it first while it is live; another source giving the same series
//! (same name and labels) is ignored for it, as the exposition keeps the first one.
//!
//! Staleness follows Prometheus: a series its source gave last time and not now gets a
//! stale marker (a special NaN) so instant selectors stop returning it at once instead
//! of after the 5 m lookback; so do all of a source's series when the source goes away
//! ([`Store::forget_source`]).
//!
//! Creation: a counter or histogram series with a creation time
//! ([`sentinel_base::metrics::Sample::created`]) that appears after its source's first
//! write was born from an event since. The store records a zero at its creation time
//! before its first sample, so `increase()`/`rate()` count the event that created it (a
//! series born at 1 would otherwise never show an increase). Series in a source's first
//! write (they existed when the source started, as in a first scrape) get no zero, and
//! series restored from disk carry no creation time, so a restart never looks like an
//! increase. A zero older than the retention is dropped at once, so a series that comes
//! back long after it went away is not counted again.
//!
//! History: with a [`History`] attached ([`Store::attach_history`]), every sample the
//! store accepts is also kept there at full resolution for `history.retention`. A
//! selection whose start lies before the store's own window (the newest sample minus
//! the metric's retention) reads the history for the part older than the window, so the
//! rules, whose windows the retention covers, see exactly what they saw without it.

use crate::history::History;
use crate::labels::{Labels, METRIC_NAME};
use parking_lot::{Mutex, RwLock};
use promql_parser::label::Matcher;
use sentinel_base::metrics::{MetricFamily, Sample};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prometheus's stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Default lookback of instant selectors (`--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Where a series' samples come from: a source's [`Store::write`] (staleness applies to
/// the source's own series) or the rule engine's [`Store::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Snapshot,
    Rules,
}

#[derive(Debug)]
struct Series {
    samples: VecDeque<(i64, f64)>,
    /// The write that last carried this series.
    seen: u64,
    /// The source that writes this series (0: none, appended directly).
    owner: u32,
}

/// What the store keeps of one source between its writes: by position (family, then
/// sample), the store-side labels of each sample of its last write, built once, when the
/// series first appears.
struct SourceSeries {
    id: u32,
    labels: Vec<Vec<Labels>>,
}

/// One selected series: its labels and its samples in `[mint, maxt]` (stale markers kept).
pub type SelectedSeries = (Labels, Vec<(i64, f64)>);

/// Smallest spacing kept between two written samples of a series (see `append_locked`).
pub const SNAPSHOT_SPACING_MS: i64 = 1000;

pub struct Store {
    by_name: RwLock<HashMap<String, BTreeMap<Labels, Series>>>,
    /// Retention of series whose metric name has no entry in `retention_by_name`.
    retention_ms: AtomicU64,
    /// Longer (or shorter) retention per metric name, from what the rules select: a
    /// `[1h]` window on one metric must not make every series keep an hour of samples.
    retention_by_name: RwLock<HashMap<String, i64>>,
    /// See `SNAPSHOT_SPACING_MS`; 0 keeps every sample (the unit-test runner's store).
    snapshot_spacing_ms: i64,
    /// When the snapshot feed last swept old samples.
    last_gc_ms: AtomicU64,
    max_series: AtomicU64,
    series: AtomicU64,
    dropped: AtomicU64,
    generation: AtomicU64,
    /// Per source name, what its last write gave (see [`SourceSeries`]).
    sources: Mutex<HashMap<String, SourceSeries>>,
    next_source: AtomicU32,
    /// Newest sample time accepted (`i64::MIN` before the first).
    newest_ms: AtomicI64,
    history: OnceLock<Arc<History>>,
    /// Newest sample time the history held when it was attached (loaded from disk or
    /// imported): the store never saw those samples, so a selection reaching back to
    /// them reads the history even inside the store's window.
    history_loaded_ms: AtomicI64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(LOOKBACK_MS as u64 * 2, 100_000)
    }
}

impl Store {
    pub fn new(retention_ms: u64, max_series: u64) -> Self {
        Store {
            by_name: RwLock::new(HashMap::new()),
            retention_ms: AtomicU64::new(retention_ms),
            retention_by_name: RwLock::new(HashMap::new()),
            snapshot_spacing_ms: SNAPSHOT_SPACING_MS,
            last_gc_ms: AtomicU64::new(0),
            max_series: AtomicU64::new(max_series),
            series: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            sources: Mutex::new(HashMap::new()),
            next_source: AtomicU32::new(1),
            newest_ms: AtomicI64::new(i64::MIN),
            history: OnceLock::new(),
            history_loaded_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// A store that never forgets (the unit-test runner loads whole test inputs).
    pub fn unbounded() -> Self {
        Store {
            snapshot_spacing_ms: 0,
            ..Store::new(u64::MAX / 4, u64::MAX / 4)
        }
    }

    /// Keeps every accepted sample in `history` from now on (once; later calls are
    /// ignored and return false).
    pub fn attach_history(&self, history: Arc<History>) -> bool {
        let loaded = history
            .inner
            .lock()
            .by_name
            .values()
            .flat_map(|f| f.values().map(|s| s.last_t))
            .max()
            .unwrap_or(i64::MIN);
        let attached = self.history.set(history).is_ok();
        if attached {
            self.history_loaded_ms.store(loaded, Ordering::Relaxed);
        }
        attached
    }

    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.get()
    }

    /// Hands an accepted sample to the history; `exact` keeps it whatever its spacing
    /// (a creation zero and the sample right after it, a stale marker). The history's
    /// own check decides what it keeps (one sample per its spacing, every stale marker).
    fn record(&self, labels: &Labels, t: i64, v: f64, exact: bool) {
        self.newest_ms.fetch_max(t, Ordering::Relaxed);
        if let Some(h) = self.history.get() {
            let spacing = if exact { 0 } else { h.min_spacing_ms };
            h.append_spaced(labels, t, v, spacing);
        }
    }

    /// The history when a selection starting at `mint` reaches past the store's window.
    fn history_for(&self, matchers: &[Matcher], mint: i64) -> Option<&History> {
        let h = self.history.get()?;
        let newest = self.newest_ms.load(Ordering::Relaxed);
        let retention = self.retention_of(
            &self.retention_by_name.read(),
            name_eq(matchers).unwrap_or(""),
        );
        (mint < newest.saturating_sub(retention)
            || mint <= self.history_loaded_ms.load(Ordering::Relaxed))
        .then_some(&**h)
    }

    pub fn set_retention_ms(&self, ms: u64) {
        self.retention_ms.store(ms, Ordering::Relaxed);
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_ms.load(Ordering::Relaxed)
    }

    /// Sets per-metric-name retentions (milliseconds); other names keep the default.
    pub fn set_retention_by_name(&self, by_name: HashMap<String, i64>) {
        *self.retention_by_name.write() = by_name;
    }

    fn retention_of(&self, by_name: &HashMap<String, i64>, name: &str) -> i64 {
        by_name
            .get(name)
            .copied()
            .unwrap_or_else(|| self.retention_ms.load(Ordering::Relaxed) as i64)
    }

    pub fn set_max_series(&self, n: u64) {
        self.max_series.store(n, Ordering::Relaxed);
    }

    /// Series refused because the cap was reached, since start.
    pub fn dropped_series(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn series_count(&self) -> u64 {
        self.series.load(Ordering::Relaxed)
    }

    /// Appends one sample. Out-of-order or duplicate timestamps are ignored, as a TSDB
    /// head refuses them.
    pub fn append(&self, labels: &Labels, t: i64, v: f64, origin: Origin) {
        let mut map = self.by_name.write();
        self.append_locked(&mut map, labels, (t, v), (origin, 0), 0, (true, None));
    }

    /// `owner`: the writing source (0 for a direct append). A live series another source
    /// writes is left to it. `float`: the sample may replace the newest one (see below);
    /// `zero`: when the series is new or ended by a stale marker, it was born at this time
    /// and gets a zero there before the sample (see the module docs).
    fn append_locked(
        &self,
        map: &mut HashMap<String, BTreeMap<Labels, Series>>,
        labels: &Labels,
        (t, v): (i64, f64),
        (origin, owner): (Origin, u32),
        generation: u64,
        (float, zero): (bool, Option<i64>),
    ) {
        let name = labels.get(METRIC_NAME);
        let retention = self.retention_of(&self.retention_by_name.read(), name);
        let family = match map.get_mut(name) {
            Some(f) => f,
            None => map.entry(name.to_string()).or_default(),
        };
        let series = match family.get_mut(labels) {
            Some(s) => s,
            None => {
                if is_stale(v) {
                    return;
                }
                if self.series.load(Ordering::Relaxed) >= self.max_series.load(Ordering::Relaxed) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.series.fetch_add(1, Ordering::Relaxed);
                family.entry(labels.clone()).or_insert(Series {
                    samples: VecDeque::with_capacity(4),
                    seen: generation,
                    owner,
                })
            }
        };
        if owner != 0 && series.owner != owner {
            let live = series.samples.back().is_some_and(|(_, v)| !is_stale(*v));
            if series.owner != 0 && live {
                return;
            }
            series.owner = owner;
        }
        series.seen = generation;
        let mut float = float;
        if let Some(z) = zero {
            if series.samples.back().is_none_or(|(_, v)| is_stale(*v)) {
                if series.samples.back().is_none_or(|(last, _)| z > *last) {
                    series.samples.push_back((z, 0.0));
                    self.record(labels, z, 0.0, true);
                }
                // The first sample must not replace the zero before it.
                float = false;
            }
        }
        if let Some((last, _)) = series.samples.back() {
            if t <= *last {
                return;
            }
        }
        // Snapshots can come several times a second (each collector run, pushed events);
        // keep at most one sample per series per SNAPSHOT_SPACING_MS, the newest, so
        // memory follows the rules' windows and not the refresh rate.
        // The newest sample floats: it is replaced while it is closer than the spacing to
        // the one before it, so kept samples stay spaced and the newest value is current.
        let n = series.samples.len();
        if float && origin == Origin::Snapshot && !is_stale(v) && n >= 2 {
            let prev = series.samples[n - 2].0;
            let head = series.samples[n - 1];
            if !is_stale(head.1) && head.0 - prev < self.snapshot_spacing_ms {
                series.samples[n - 1] = (t, v);
                self.record(labels, t, v, false);
                return;
            }
        }
        series.samples.push_back((t, v));
        self.record(labels, t, v, !float);
        let cutoff = t.saturating_sub(retention);
        while series.samples.front().is_some_and(|(ts, _)| *ts < cutoff) {
            series.samples.pop_front();
        }
    }

    /// Forgets series whose newest sample is older than the retention (or only stale).
    pub fn gc(&self, now_ms: i64) {
        let by_name = self.retention_by_name.read().clone();
        let mut map = self.by_name.write();
        let mut removed = 0u64;
        for (name, family) in map.iter_mut() {
            let cutoff = now_ms.saturating_sub(self.retention_of(&by_name, name));
            family.retain(|_, s| {
                while s.samples.front().is_some_and(|(ts, _)| *ts < cutoff) {
                    s.samples.pop_front();
                }
                let keep = s.samples.iter().any(|(_, v)| !is_stale(*v));
                if !keep {
                    removed += 1;
                }
                keep
            });
        }
        map.retain(|_, f| !f.is_empty());
        self.series.fetch_sub(removed, Ordering::Relaxed);
    }

    /// For each matching series, its newest sample in `[mint, maxt]` (stale markers
    /// included, so the caller can drop the series), sorted by labels.
    pub fn select_last(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, (i64, f64))> {
        if let Some(h) = self.history_for(matchers, mint) {
            return self
                .select_merged(h, matchers, mint, maxt, u64::MAX)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(l, s)| s.last().map(|last| (l, *last)))
                .collect();
        }
        self.walk_matching(matchers, |labels, series| {
            // Newest sample at or before maxt.
            let idx = series.samples.partition_point(|(t, _)| *t <= maxt);
            let (t, v) = *series.samples.get(idx.checked_sub(1)?)?;
            (t >= mint).then(|| (labels.clone(), (t, v)))
        })
    }

    /// The series matching every matcher, with their samples in `[mint, maxt]`, sorted by
    /// labels (the order a TSDB returns them in, which decides ties in topk and friends).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries> {
        if let Some(h) = self.history_for(matchers, mint) {
            return self
                .select_merged(h, matchers, mint, maxt, u64::MAX)
                .unwrap_or_default();
        }
        self.walk_matching(matchers, |labels, series| {
            let lo = series.samples.partition_point(|(t, _)| *t < mint);
            let hi = series.samples.partition_point(|(t, _)| *t <= maxt);
            Some((
                labels.clone(),
                series.samples.range(lo..hi.max(lo)).copied().collect(),
            ))
        })
    }

    /// [`Self::select`] that gives up (None) as soon as the series and samples it would
    /// copy out exceed `max_samples`, so an oversized selection never allocates.
    pub fn select_bounded(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_samples: u64,
    ) -> Option<Vec<SelectedSeries>> {
        if let Some(h) = self.history_for(matchers, mint) {
            return self.select_merged(h, matchers, mint, maxt, max_samples);
        }
        let mut used = 0u64;
        let mut over = false;
        let out = self.walk_matching(matchers, |labels, series| {
            if over {
                return None;
            }
            let lo = series.samples.partition_point(|(t, _)| *t < mint);
            let hi = series.samples.partition_point(|(t, _)| *t <= maxt);
            used = used.saturating_add(hi.saturating_sub(lo) as u64 + 1);
            if used > max_samples {
                over = true;
                return None;
            }
            Some((
                labels.clone(),
                series.samples.range(lo..hi.max(lo)).copied().collect(),
            ))
        });
        (!over).then_some(out)
    }

    /// A selection over the history (the part older than each series' oldest sample in
    /// the store) and the store, sorted by labels; None past `max_samples`.
    fn select_merged(
        &self,
        h: &History,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_samples: u64,
    ) -> Option<Vec<SelectedSeries>> {
        let recent = self.walk_matching(matchers, |labels, series| {
            let front = series.samples.front().map_or(i64::MAX, |s| s.0);
            let lo = series.samples.partition_point(|(t, _)| *t < mint);
            let hi = series.samples.partition_point(|(t, _)| *t <= maxt);
            let got: Vec<(i64, f64)> = series.samples.range(lo..hi.max(lo)).copied().collect();
            Some((labels.clone(), (front, got)))
        });
        let fronts: HashMap<&Labels, i64> = recent.iter().map(|(l, (f, _))| (l, *f)).collect();
        let used = std::cell::Cell::new(0u64);
        let mut merged: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        h.select_with(
            name_eq(matchers),
            &mut |l| {
                used.get() <= max_samples && matchers.iter().all(|m| m.is_match(l.get(&m.name)))
            },
            mint,
            maxt,
            &mut |l, mut s| {
                let front = fronts.get(l).copied().unwrap_or(i64::MAX);
                s.truncate(s.partition_point(|x| x.0 < front));
                used.set(used.get().saturating_add(s.len() as u64 + 1));
                if !s.is_empty() && used.get() <= max_samples {
                    merged.insert(l.clone(), s);
                }
            },
        );
        let mut used = used.get();
        for (l, (_, s)) in recent {
            used = used.saturating_add(s.len() as u64 + 1);
            if used > max_samples {
                return None;
            }
            merged.entry(l).or_default().extend(s);
        }
        (used <= max_samples).then(|| merged.into_iter().collect())
    }

    /// Applies `pick` to every series matching all matchers (only the named family when
    /// `__name__` is an equality) and returns the picks sorted by labels, the order a TSDB
    /// returns series in, which decides ties in topk and friends.
    fn walk_matching<T>(
        &self,
        matchers: &[Matcher],
        mut pick: impl FnMut(&Labels, &Series) -> Option<(Labels, T)>,
    ) -> Vec<(Labels, T)> {
        let map = self.by_name.read();
        let families: Vec<&BTreeMap<Labels, Series>> = match name_eq(matchers) {
            Some(n) => map.get(n).into_iter().collect(),
            None => map.values().collect(),
        };
        let several = families.len() > 1;
        let mut out = Vec::new();
        for family in families {
            for (labels, series) in family {
                if matchers.iter().all(|m| m.is_match(labels.get(&m.name))) {
                    out.extend(pick(labels, series));
                }
            }
        }
        // One family is already in label order (a BTreeMap).
        if several {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }

    /// Heap bytes held by the samples and labels of every series (approximate).
    pub fn heap_bytes(&self) -> usize {
        let map = self.by_name.read();
        map.values()
            .flat_map(|f| f.iter())
            .map(|(l, s)| {
                l.heap_bytes()
                    + s.samples.capacity() * std::mem::size_of::<(i64, f64)>()
                    + std::mem::size_of::<Series>()
                    + std::mem::size_of::<Labels>()
            })
            .sum()
    }

    /// One write of `source` at `t_ms` (one run of a collector, one change of a registry
    /// source): appends each of its samples, records a zero at the creation time of each
    /// series born since the previous write (see the module docs), and writes a stale
    /// marker for each series the source gave last time and not now. Series of other
    /// sources are not touched. `ALERTS` and `ALERTS_FOR_STATE` are skipped: the engine
    /// writes them itself at evaluation time.
    pub fn write<F: std::borrow::Borrow<MetricFamily>>(
        &self,
        source: &str,
        families: &[F],
        t_ms: i64,
    ) {
        let mut sources = self.sources.lock();
        // A source's first write: its series existed when it started (no creation zero).
        let first = !sources.contains_key(source);
        let src = match sources.get_mut(source) {
            Some(s) => s,
            None => sources
                .entry(source.to_string())
                .or_insert_with(|| SourceSeries {
                    id: self.next_source.fetch_add(1, Ordering::Relaxed),
                    labels: Vec::new(),
                }),
        };
        let (labels, same_series) = series_labels(&src.labels, families);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = self.by_name.write();
        for (f, ls) in families.iter().zip(&labels) {
            for (s, labels) in f.borrow().samples.iter().zip(ls) {
                // Just before the first sample if the clock put creation at or after the
                // write; never after it.
                let zero = s
                    .created
                    .filter(|_| !first)
                    .map(|c| ((c * 1000.0) as i64).min(t_ms - 1));
                self.append_locked(
                    &mut map,
                    labels,
                    (t_ms, s.value),
                    (Origin::Snapshot, src.id),
                    generation,
                    (true, zero),
                );
            }
        }
        // The same series at the same places: none went away.
        if !same_series {
            self.mark_stale(&mut map, src, generation, t_ms);
        }
        drop(map);
        src.labels = labels;
        drop(sources);
        // Writes can come many times a second; sweeping every series once a second is
        // enough to honour the retention.
        if t_ms - self.last_gc_ms.load(Ordering::Relaxed) as i64 >= 1000 {
            self.last_gc_ms.store(t_ms as u64, Ordering::Relaxed);
            self.gc(t_ms);
        }
    }

    /// The source went away (its collector failed, gave no data or was disabled): each
    /// of its series gets a stale marker at `t_ms`.
    pub fn forget_source(&self, source: &str, t_ms: i64) {
        let mut sources = self.sources.lock();
        let Some(src) = sources.get_mut(source) else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.mark_stale(&mut self.by_name.write(), src, generation, t_ms);
        src.labels = Vec::new();
    }

    /// A stale marker at `t_ms` for each live series of `src` that write `generation`
    /// did not carry.
    fn mark_stale(
        &self,
        map: &mut HashMap<String, BTreeMap<Labels, Series>>,
        src: &SourceSeries,
        generation: u64,
        t_ms: i64,
    ) {
        for labels in src.labels.iter().flatten() {
            let Some(s) = map
                .get_mut(labels.get(METRIC_NAME))
                .and_then(|f| f.get_mut(labels))
            else {
                continue;
            };
            if s.owner != src.id || s.seen == generation {
                continue;
            }
            let last_stale = s.samples.back().is_some_and(|(_, v)| is_stale(*v));
            let last_t = s.samples.back().map(|(t, _)| *t).unwrap_or(i64::MIN);
            if !last_stale && t_ms > last_t {
                s.samples.push_back((t_ms, stale_nan()));
                self.record(labels, t_ms, stale_nan(), true);
            }
        }
    }

    /// Feeds `families` as one write of a single unnamed source (the unit tests' and
    /// benchmarks' shorthand for [`Store::write`]).
    pub fn ingest(&self, families: &[MetricFamily], t_ms: i64) {
        self.write("", families, t_ms);
    }

    /// The sources the store has seen written, with how many series each gave last.
    #[cfg(test)]
    pub fn sources(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .sources
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.labels.iter().map(Vec::len).sum()))
            .collect();
        out.sort();
        out
    }
}

/// The store-side labels of every sample of `families` (none for `ALERTS` and
/// `ALERTS_FOR_STATE`), reusing those of the previous write's sample at the same place
/// where they are the labels this sample would get; and whether every one was reused
/// (then the write carries exactly the series of the previous one).
fn series_labels<F: std::borrow::Borrow<MetricFamily>>(
    prev: &[Vec<Labels>],
    families: &[F],
) -> (Vec<Vec<Labels>>, bool) {
    let mut same = families.len() == prev.len();
    let out = families
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.borrow();
            if f.name == "ALERTS" || f.name == "ALERTS_FOR_STATE" {
                return Vec::new();
            }
            let old = prev.get(i).map_or(&[][..], |v| &v[..]);
            if old.len() != f.samples.len() {
                same = false;
            }
            f.samples
                .iter()
                .enumerate()
                .map(|(j, s)| match old.get(j) {
                    Some(l) if labels_are(l, &f.name, s) => l.clone(),
                    _ => {
                        same = false;
                        sample_labels(&f.name, s)
                    }
                })
                .collect()
        })
        .collect();
    (out, same)
}

/// Whether `l` equals `sample_labels(family, s)`, without building it: the name is the
/// family's and suffix, each given pair with a value is in `l` with that value and one
/// with an empty value is not (an empty value deletes a label), and each label of `l`
/// is given with a value.
fn labels_are(l: &Labels, family: &str, s: &Sample) -> bool {
    let name = l.get(METRIC_NAME);
    let suffix = s.suffix.as_str();
    if name.len() != family.len() + suffix.len()
        || !name.starts_with(family)
        || !name.ends_with(suffix)
    {
        return false;
    }
    let given = |k: &str, v: &str| {
        k != METRIC_NAME
            && if v.is_empty() {
                !l.has(k)
            } else {
                l.get(k) == v
            }
    };
    s.labels.iter().all(|(k, v)| given(k, v))
        && l.pairs().iter().all(|(k, _)| {
            k == METRIC_NAME || s.labels.iter().any(|(sk, sv)| sk == k && !sv.is_empty())
        })
}

/// The store-side labels of one sample: its labels and `__name__` (family name and suffix).
fn sample_labels(family: &str, s: &Sample) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(s.labels.len() + 1);
    pairs.extend(s.labels.iter().cloned());
    pairs.push((
        METRIC_NAME.to_string(),
        format!("{family}{}", s.suffix.as_str()),
    ));
    Labels::from_pairs(pairs)
}

/// The metric name of an equality `__name__` matcher.
fn name_eq(matchers: &[Matcher]) -> Option<&str> {
    matchers.iter().find_map(|m| {
        (m.name == METRIC_NAME && matches!(m.op, promql_parser::label::MatchOp::Equal))
            .then_some(m.value.as_str())
    })
}

pub fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;
    use sentinel_base::metrics::{HistogramSnapshot, Suffix};

    fn name(n: &str) -> Vec<Matcher> {
        vec![Matcher::new(MatchOp::Equal, METRIC_NAME, n)]
    }

    #[test]
    fn histograms_become_suffixed_series_and_missing_series_go_stale() {
        let s = Store::new(600_000, 1000);
        let mut h = MetricFamily::histogram("lat_seconds", "h");
        h.push_histogram(vec![], &HistogramSnapshot::new(&[0.1]));
        let c = MetricFamily::counter("ops_total", "c").with(&[("k", "a")], 3.0);
        s.ingest(&[h.clone(), c], 1000);
        assert_eq!(s.select(&name("lat_seconds_bucket"), 0, 2000).len(), 2);
        assert_eq!(s.select(&name("lat_seconds_count"), 0, 2000).len(), 1);
        s.ingest(&[h], 2000);
        let ops = s.select(&name("ops_total"), 0, 3000);
        assert_eq!(ops.len(), 1);
        assert!(
            is_stale(ops[0].1[1].1),
            "missing series gets a stale marker"
        );
    }

    #[test]
    fn frequent_snapshots_keep_about_one_sample_per_second() {
        let s = Store::new(600_000, 1000);
        // 50 snapshots 100 ms apart: 5 s of data.
        for i in 0..50 {
            let g = MetricFamily::gauge("g", "g").with::<&str, &str>(&[], i as f64);
            s.ingest(&[g], 1_000 + i * 100);
        }
        let got = s.select(&name("g"), 0, 10_000);
        let samples = &got[0].1;
        assert!(samples.len() <= 7, "{samples:?}");
        // The newest value is always there.
        assert_eq!(*samples.last().unwrap(), (5_900, 49.0));
        // Kept samples (all but the floating newest) are at least a second apart.
        for w in samples[..samples.len() - 1].windows(2) {
            assert!(w[1].0 - w[0].0 >= SNAPSHOT_SPACING_MS, "{samples:?}");
        }
    }

    fn counter(v: f64, created: Option<f64>) -> MetricFamily {
        let mut f = MetricFamily::counter("ops_total", "c");
        f.push_created(sentinel_base::metrics::labels(&[("op", "new")]), v, created);
        f
    }

    fn gauge(v: f64) -> MetricFamily {
        MetricFamily::gauge("g", "g").with::<&str, &str>(&[], v)
    }

    #[test]
    fn series_born_from_an_event_gets_a_zero_at_its_creation_time() {
        let s = Store::new(600_000, 1000);
        s.ingest(&[gauge(1.0)], 10_000);
        // Created at 12.5 s by its first increment, first seen in the snapshot at 15 s.
        s.ingest(&[gauge(1.0), counter(1.0, Some(12.5))], 15_000);
        let got = s.select(&name("ops_total"), 0, 20_000);
        assert_eq!(got[0].1, vec![(12_500, 0.0), (15_000, 1.0)]);
        // Created 200 ms before the snapshot: a snapshot 100 ms later floats the newest
        // sample (kept samples stay a second apart), never the zero.
        let mut f = counter(2.0, Some(15.8));
        f.name = "other_total".into();
        s.ingest(&[gauge(1.0), f.clone()], 16_000);
        f.samples[0].value = 3.0;
        s.ingest(&[gauge(1.0), f], 16_100);
        let got = s.select(&name("other_total"), 0, 20_000);
        assert_eq!(got[0].1, vec![(15_800, 0.0), (16_100, 3.0)]);
    }

    #[test]
    fn creation_at_the_snapshot_time_puts_the_zero_just_before_it() {
        let s = Store::new(600_000, 1000);
        s.ingest(&[gauge(1.0)], 10_000);
        s.ingest(&[counter(1.0, Some(20.0))], 15_000);
        let got = s.select(&name("ops_total"), 0, 20_000);
        assert_eq!(got[0].1, vec![(14_999, 0.0), (15_000, 1.0)]);
    }

    #[test]
    fn series_present_at_start_or_without_creation_time_get_no_fake_reset() {
        let s = Store::new(600_000, 1000);
        // In the first snapshot: existed at start (or restored); no zero.
        s.ingest(&[counter(40.0, Some(1.0))], 10_000);
        s.ingest(&[counter(41.0, Some(1.0))], 15_000);
        let got = s.select(&name("ops_total"), 0, 20_000);
        assert_eq!(got[0].1, vec![(10_000, 40.0), (15_000, 41.0)]);
        // Appearing later without a creation time (restored from disk): no zero.
        let s = Store::new(600_000, 1000);
        s.ingest(&[gauge(1.0)], 10_000);
        s.ingest(&[gauge(1.0), counter(40.0, None)], 15_000);
        let got = s.select(&name("ops_total"), 0, 20_000);
        assert_eq!(got[0].1, vec![(15_000, 40.0)]);
    }

    #[test]
    fn series_that_returns_long_after_it_went_away_is_not_counted_again() {
        let s = Store::new(60_000, 1000);
        s.ingest(&[gauge(1.0)], 1_000);
        s.ingest(&[gauge(1.0), counter(5.0, Some(1.5))], 2_000);
        s.ingest(&[gauge(1.0)], 3_000); // gone: stale marker
        s.gc(200_000);
        // Back with its old creation time, past the retention: no zero.
        s.ingest(&[gauge(1.0), counter(5.0, Some(1.5))], 200_000);
        let got = s.select(&name("ops_total"), 0, 300_000);
        assert_eq!(got[0].1, vec![(200_000, 5.0)]);
    }

    #[test]
    fn cap_drops_and_counts_new_series() {
        let s = Store::new(600_000, 2);
        for i in 0..5 {
            s.append(
                &Labels::from_pairs([(METRIC_NAME, "x"), ("i", &i.to_string())]),
                1,
                1.0,
                Origin::Rules,
            );
        }
        assert_eq!(s.series_count(), 2);
        assert_eq!(s.dropped_series(), 3);
    }

    #[test]
    fn memory_per_series_at_five_minutes_of_five_second_samples_is_under_2kib() {
        let s = Store::new(LOOKBACK_MS as u64, 100_000);
        let n = 1000;
        for i in 0..n {
            let l = Labels::from_pairs([
                (METRIC_NAME, "node_cpu_seconds_total"),
                ("cpu", &i.to_string()),
                ("mode", "idle"),
            ]);
            for k in 0..120i64 {
                s.append(&l, k * 5000, k as f64, Origin::Rules);
            }
        }
        let per_series = s.heap_bytes() / n;
        assert!(per_series <= 2048, "{per_series} bytes per series");
    }

    #[test]
    fn selections_past_the_window_read_the_history_and_rule_windows_do_not() {
        let s = Store::new(60_000, 1000);
        s.attach_history(Arc::new(History::new(3_600_000, u64::MAX)));
        for k in 0..600i64 {
            let g = MetricFamily::gauge("g", "g").with::<&str, &str>(&[], k as f64);
            s.ingest(&[g], k * 5000);
        }
        let newest = 599 * 5000;
        // Inside the store's window: the store alone, as before.
        let recent = s.select(&name("g"), newest - 30_000, newest);
        assert_eq!(recent[0].1.len(), 7);
        // Past it: the whole hour from the history, then the store, no duplicates.
        let all = s.select(&name("g"), 0, newest);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.len(), 600);
        assert!(all[0].1.windows(2).all(|w| w[1].0 - w[0].0 == 5000));
        // Instant selection at an old time.
        let last = s.select_last(&name("g"), 100_000 - LOOKBACK_MS, 100_000);
        assert_eq!(last[0].1, (100_000, 20.0));
        // The sample bound holds across both.
        assert!(s.select_bounded(&name("g"), 0, newest, 100).is_none());
        assert!(s.select_bounded(&name("g"), 0, newest, 1000).is_some());
    }

    #[test]
    fn history_keeps_the_creation_zero_and_the_first_sample_after_it() {
        let s = Store::new(600_000, 1000);
        s.attach_history(Arc::new(History::new(3_600_000, u64::MAX)));
        s.ingest(&[gauge(1.0)], 1_000);
        // Born at 1.9995 s, first seen at 2 s with 1: the zero lands 1 ms before.
        s.ingest(&[gauge(1.0), counter(1.0, Some(1.9995))], 2_000);
        let h = s.history().unwrap().dump();
        let ops = h
            .iter()
            .find(|(l, _)| l.get(METRIC_NAME) == "ops_total")
            .unwrap();
        assert_eq!(ops.1, vec![(1_999, 0.0), (2_000, 1.0)]);
    }

    /// Regression (issue 11 differential test): after `history import` or a restart,
    /// the history holds samples up to just before the start that the store never saw;
    /// a selection inside the store's window of the live samples must still read them.
    #[test]
    fn history_loaded_before_start_is_read_inside_the_store_window() {
        let h = Arc::new(History::new(3_600_000, u64::MAX));
        let l = Labels::from_pairs([(crate::labels::METRIC_NAME, "g")]);
        h.insert(
            &l,
            &(0..100i64)
                .map(|k| (k * 5000, k as f64))
                .collect::<Vec<_>>(),
        );
        let s = Store::new(600_000, 1000);
        s.attach_history(h);
        // A live sample of another series after start moves the store's newest time.
        let other = MetricFamily::gauge("other", "o").with::<&str, &str>(&[], 1.0);
        s.ingest(&[other], 100 * 5000);
        let last = s.select_last(&name("g"), 99 * 5000 - LOOKBACK_MS, 99 * 5000);
        assert_eq!(last.len(), 1, "the imported sample is visible");
        assert_eq!(last[0].1, (99 * 5000, 99.0));
        let sel = s.select(&name("g"), 90 * 5000, 100 * 5000);
        assert_eq!(sel[0].1.len(), 10);
    }

    fn g(name: &str, x: &str, v: f64) -> MetricFamily {
        MetricFamily::gauge(name, "g").with(&[("x", x)], v)
    }

    fn samples(s: &Store, n: &str) -> Vec<(i64, f64)> {
        let got = s.select(&name(n), 0, i64::MAX / 2);
        assert!(got.len() <= 1, "{got:?}");
        got.into_iter().flat_map(|(_, v)| v).collect()
    }

    fn stale_count(v: &[(i64, f64)]) -> usize {
        v.iter().filter(|(_, v)| is_stale(*v)).count()
    }

    /// Regression (issue 11): every refresh re-appended every sample of every source;
    /// a write now carries only its own source's series.
    #[test]
    fn a_collector_write_appends_only_its_own_series() {
        let s = Store::new(600_000, 1000);
        s.write("a", &[g("ga", "1", 1.0)], 1_000);
        s.write("b", &[g("gb", "1", 1.0)], 1_000);
        s.write("a", &[g("ga", "1", 2.0)], 3_000);
        s.write("a", &[g("ga", "1", 3.0)], 5_000);
        assert_eq!(
            samples(&s, "ga"),
            vec![(1_000, 1.0), (3_000, 2.0), (5_000, 3.0)]
        );
        assert_eq!(samples(&s, "gb"), vec![(1_000, 1.0)], "b untouched by a");
        assert_eq!(s.sources(), vec![("a".into(), 1), ("b".into(), 1)]);
    }

    #[test]
    fn series_dropped_by_a_source_gets_one_stale_marker() {
        let s = Store::new(600_000, 1000);
        let both = || [g("g", "1", 1.0).with(&[("x", "2")], 2.0)];
        let one = || [g("g", "1", 1.0)];
        s.write("a", &both(), 1_000);
        s.write("a", &one(), 3_000);
        s.write("a", &one(), 5_000);
        s.write("b", &[g("other", "1", 1.0)], 7_000);
        let got = s.select(&name("g"), 0, 10_000);
        let dropped = &got.iter().find(|(l, _)| l.get("x") == "2").unwrap().1;
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert_eq!(stale_count(dropped), 1);
        assert_eq!(dropped[1].0, 3_000);
        let kept = &got.iter().find(|(l, _)| l.get("x") == "1").unwrap().1;
        assert_eq!(stale_count(kept), 0);
        // It comes back: live again, and a later drop marks it again, once.
        s.write("a", &both(), 9_000);
        s.write("a", &one(), 11_000);
        s.write("a", &one(), 13_000);
        let got = s.select(&name("g"), 0, 20_000);
        let dropped = &got.iter().find(|(l, _)| l.get("x") == "2").unwrap().1;
        assert_eq!(stale_count(dropped), 2, "{dropped:?}");
    }

    #[test]
    fn a_forgotten_source_marks_each_of_its_series_stale_once() {
        let s = Store::new(600_000, 1000);
        s.write("a", &[g("ga", "1", 1.0)], 1_000);
        s.write("b", &[g("gb", "1", 1.0)], 1_000);
        s.forget_source("a", 2_000);
        s.forget_source("a", 3_000);
        s.forget_source("nobody", 3_000);
        assert_eq!(samples(&s, "ga").len(), 2);
        assert_eq!(stale_count(&samples(&s, "ga")), 1);
        assert_eq!(samples(&s, "gb"), vec![(1_000, 1.0)]);
    }

    /// Two sources giving the same series: the exposition keeps the first one, and so
    /// does the store (the first writer) while that series is live.
    #[test]
    fn a_series_given_by_two_sources_is_written_by_the_first_while_live() {
        let s = Store::new(600_000, 1000);
        s.write("a", &[g("g", "1", 1.0)], 1_000);
        s.write("b", &[g("g", "1", 9.0)], 1_500);
        s.write("a", &[g("g", "1", 2.0)], 3_000);
        // b stops giving it: no stale marker, the series is a's.
        s.write::<MetricFamily>("b", &[], 3_500);
        assert_eq!(samples(&s, "g"), vec![(1_000, 1.0), (3_000, 2.0)]);
        // a stops: stale; then b's value takes over.
        s.write::<MetricFamily>("a", &[], 5_000);
        s.write("b", &[g("g", "1", 9.0)], 7_000);
        let got = samples(&s, "g");
        assert_eq!(stale_count(&got), 1);
        assert_eq!(got.last(), Some(&(7_000, 9.0)));
    }

    /// Regression (issue 11): each refresh rebuilt a label set per sample; a known
    /// series keeps the one built when it first appeared.
    #[test]
    fn known_series_keep_their_store_labels_across_writes() {
        let s = Store::new(600_000, 1000);
        let fam = |v: f64| {
            vec![
                g("g", "1", v).with(&[("x", "2")], v),
                MetricFamily::counter("c_total", "c").with(&[("k", "v")], v),
            ]
        };
        s.write("a", &fam(1.0)[..], 1_000);
        let before = s.sources.lock()["a"].labels.clone();
        s.write("a", &fam(2.0)[..], 2_000);
        let after = s.sources.lock()["a"].labels.clone();
        for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!(std::ptr::eq(b.pairs().as_ptr(), a.pairs().as_ptr()));
        }
        assert_eq!(after.iter().flatten().count(), 3);
        // A changed series gets new labels; the others keep theirs.
        s.write("a", &[g("g", "1", 3.0).with(&[("x", "3")], 3.0)], 3_000);
        let changed = s.sources.lock()["a"].labels.clone();
        assert!(std::ptr::eq(
            before[0][0].pairs().as_ptr(),
            changed[0][0].pairs().as_ptr()
        ));
        assert_eq!(changed[0][1].get("x"), "3");
        assert_eq!(changed.len(), 1);
    }

    /// The reuse check must say "same labels" exactly when building them would give
    /// the same set: later duplicates win, an empty value deletes the label.
    #[test]
    fn label_reuse_check_agrees_with_building_the_labels() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases: Vec<Vec<(String, String)>> = vec![
            pairs(&[]),
            pairs(&[("a", "1")]),
            pairs(&[("a", "1"), ("b", "2")]),
            pairs(&[("b", "2"), ("a", "1")]),
            pairs(&[("a", "1"), ("a", "1")]),
            pairs(&[("a", "1"), ("a", "2")]),
            pairs(&[("a", "1"), ("a", "")]),
            pairs(&[("a", ""), ("a", "1")]),
            pairs(&[("a", "")]),
            pairs(&[("a", "1"), ("b", "")]),
            pairs(&[("__name__", "x")]),
        ];
        for suffix in [Suffix::None, Suffix::Bucket] {
            for given in &cases {
                let sample = Sample {
                    suffix,
                    labels: given.clone(),
                    value: 1.0,
                    created: None,
                };
                for cached in &cases {
                    let other = Sample {
                        suffix: Suffix::None,
                        labels: cached.clone(),
                        value: 1.0,
                        created: None,
                    };
                    let l = sample_labels("m", &other);
                    let same = l == sample_labels("m", &sample);
                    let reused = labels_are(&l, "m", &sample);
                    // Reused only when the same; rebuilt (correct, only slower) when the
                    // given pairs repeat a name or carry `__name__`.
                    let plain = given.iter().all(|(k, _)| k != METRIC_NAME)
                        && given
                            .iter()
                            .enumerate()
                            .all(|(i, (k, _))| given[..i].iter().all(|(o, _)| o != k));
                    assert!(
                        reused == same || (!plain && !reused),
                        "{given:?} against {cached:?}: reused {reused}, same {same}"
                    );
                }
            }
        }
    }

    /// Writes many times a second leave the history one sample per spacing and every
    /// stale marker: the history's own spacing check decides (the store keeps no copy).
    #[test]
    fn frequent_writes_hand_the_history_one_sample_per_spacing() {
        let s = Store::new(600_000, 1000);
        s.attach_history(Arc::new(History::new(3_600_000, u64::MAX)));
        for i in 0..50i64 {
            s.write("a", &[g("g", "1", i as f64)], 1_000 + i * 100);
        }
        s.write::<MetricFamily>("a", &[], 6_000);
        let h = s.history().unwrap().dump();
        let got = &h.iter().find(|(l, _)| l.get(METRIC_NAME) == "g").unwrap().1;
        let times: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![1_000, 2_000, 3_000, 4_000, 5_000, 6_000]);
        assert_eq!(got[1], (2_000, 10.0));
        assert!(is_stale(got[5].1));
    }
}
