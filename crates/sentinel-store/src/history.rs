//! The long history: every series at full resolution (at most one sample per
//! [`History::min_spacing_ms`], stale markers always kept) in compressed chunks, kept for
//! `retention_ms` and within `max_bytes` (the oldest chunks are evicted first and counted).
//! The [`crate::store::Store`] feeds it and reads it for selections reaching past its own
//! short window; [`crate::persist`] writes it to disk. Once a full file holds them, sealed
//! chunks live only there: memory keeps a `DiskChunk` index entry per chunk and reads
//! the bytes with `pread` when a selection reaches them.

use crate::chunk::{Chunk, ChunkBuilder, RangeDecoder, SAMPLES_PER_CHUNK};
use crate::labels::{Labels, METRIC_NAME};
use crate::store::is_stale;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Default `history.retention`.
pub const DEFAULT_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Default `history.max_bytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Fixed cost charged per series beside its chunks and labels.
const SERIES_OVERHEAD: usize = 96;
/// Cost charged per sealed chunk beside its bytes (its index entry or its struct).
const CHUNK_OVERHEAD: usize = 40;

/// A sealed chunk that lives in a history file: only this index entry is in memory,
/// the bytes are read (`pread`, served by the page cache) when a query reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskChunk {
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    /// Offset of the chunk's bytes in the file.
    pub(crate) offset: u64,
    pub(crate) len: u32,
    /// Slot of the file in [`Inner::files`].
    pub(crate) file: u16,
    pub(crate) n: u16,
}

/// The open history files that disk chunks point into, by slot.
pub(crate) type Files = Vec<Option<Arc<File>>>;

#[derive(Debug, Default)]
pub(crate) struct HSeries {
    /// Sealed chunks on disk (older than every chunk in `chunks`).
    pub(crate) disk: Vec<DiskChunk>,
    /// Sealed chunks not yet written to a full file, in memory.
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) head: ChunkBuilder,
    /// Newest sample time (i64::MIN when empty).
    pub(crate) last_t: i64,
    /// Newest sample time already written to disk.
    pub(crate) flushed_t: i64,
    /// Identity of this series' chunk sequence: a rebuild (merge) gets a new one, so a
    /// full rewrite that ran meanwhile does not re-point it.
    pub(crate) id: u64,
}

static NEXT_SERIES_ID: AtomicU64 = AtomicU64::new(1);

impl HSeries {
    pub(crate) fn new() -> Self {
        HSeries {
            last_t: i64::MIN,
            flushed_t: i64::MIN,
            id: NEXT_SERIES_ID.fetch_add(1, Ordering::Relaxed),
            ..Default::default()
        }
    }

    pub(crate) fn bytes(&self, labels: &Labels) -> usize {
        SERIES_OVERHEAD
            + labels.heap_bytes()
            + self.head.heap_bytes()
            + self
                .disk
                .iter()
                .map(|c| c.len as usize + CHUNK_OVERHEAD)
                .sum::<usize>()
            + self
                .chunks
                .iter()
                .map(|c| c.data.len() + CHUNK_OVERHEAD)
                .sum::<usize>()
    }

    /// Bytes of the sealed chunks this series holds in memory.
    fn sealed_memory(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.data.len() + CHUNK_OVERHEAD)
            .sum()
    }

    /// Bytes of this series that live in memory (see [`History::memory_bytes`]).
    fn memory(&self, labels: &Labels) -> usize {
        SERIES_OVERHEAD
            + labels.heap_bytes()
            + self.head.heap_bytes()
            + self.disk.capacity() * std::mem::size_of::<DiskChunk>()
            + self.sealed_memory()
    }

    fn mint(&self) -> Option<i64> {
        if let Some(c) = self.disk.first() {
            return Some(c.mint);
        }
        match self.chunks.first() {
            Some(c) => Some(c.mint),
            None => (!self.head.is_empty()).then(|| self.head.mint()),
        }
    }

    /// The newest end of the oldest sealed chunk (disk first, then memory).
    fn first_sealed_maxt(&self) -> Option<i64> {
        self.disk
            .first()
            .map(|c| c.maxt)
            .or_else(|| self.chunks.first().map(|c| c.maxt))
    }

    /// Drops the oldest sealed chunk; returns what it held.
    fn drop_first_sealed(&mut self) -> Option<Dropped> {
        if !self.disk.is_empty() {
            let c = self.disk.remove(0);
            return Some(Dropped {
                samples: c.n as u64,
                bytes: c.len as usize + CHUNK_OVERHEAD,
                memory: 0,
            });
        }
        if !self.chunks.is_empty() {
            let c = self.chunks.remove(0);
            let cost = c.data.len() + CHUNK_OVERHEAD;
            return Some(Dropped {
                samples: c.n as u64,
                bytes: cost,
                memory: cost,
            });
        }
        None
    }

    /// Drops the sealed chunks that end before `cutoff`; returns what they held.
    fn drop_before(&mut self, cutoff: i64) -> Dropped {
        let mut d = Dropped::default();
        let n = self.disk.partition_point(|c| c.maxt < cutoff);
        for c in self.disk.drain(..n) {
            d.samples += c.n as u64;
            d.bytes += c.len as usize + CHUNK_OVERHEAD;
        }
        let n = self.chunks.partition_point(|c| c.maxt < cutoff);
        for c in self.chunks.drain(..n) {
            let cost = c.data.len() + CHUNK_OVERHEAD;
            d.samples += c.n as u64;
            d.bytes += cost;
            d.memory += cost;
        }
        d
    }

    pub(crate) fn push(&mut self, t: i64, v: f64) {
        if self.head.len() >= SAMPLES_PER_CHUNK {
            let full = std::mem::take(&mut self.head);
            self.chunks.push(full.finish());
        }
        self.head.push(t, v);
        self.last_t = t;
    }

    /// Samples in `[mint, maxt]`, in order.
    pub(crate) fn range(&self, files: &Files, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let mut dec = RangeDecoder::default();
        read_disk_range(files, self.disk_in(mint, maxt), mint, maxt, &mut dec, out);
        self.range_in_memory(mint, maxt, &mut dec, out);
    }

    /// The sealed chunks on disk that overlap `[mint, maxt]`.
    fn disk_in(&self, mint: i64, maxt: i64) -> &[DiskChunk] {
        let first = self.disk.partition_point(|c| c.maxt < mint);
        let end = first + self.disk[first..].partition_point(|c| c.mint <= maxt);
        &self.disk[first..end]
    }

    /// Samples in `[mint, maxt]` of the chunks in memory (all newer than those on disk).
    fn range_in_memory(
        &self,
        mint: i64,
        maxt: i64,
        dec: &mut RangeDecoder,
        out: &mut Vec<(i64, f64)>,
    ) {
        // Chunks built here are never truncated: a decoding error cannot happen.
        let first = self.chunks.partition_point(|c| c.maxt < mint);
        for c in &self.chunks[first..] {
            if c.mint > maxt {
                return;
            }
            let _ = dec.decode_into(&c.data, c.n, mint, maxt, out);
        }
        if !self.head.is_empty() && self.head.maxt() >= mint && self.head.mint() <= maxt {
            let _ = dec.decode_into(self.head.bytes(), self.head.len(), mint, maxt, out);
        }
    }

    /// Every sample, or an error when a chunk could not be read or its bytes end
    /// before its samples (damaged contents): what a merge rebuilds the series from,
    /// so a partial read must not pass for the whole.
    pub(crate) fn try_all(&self, files: &Files) -> std::io::Result<Vec<(i64, f64)>> {
        let mut out = Vec::new();
        let mut dec = RangeDecoder::default();
        let mut damaged = false;
        read_disk_chunks(files, &self.disk, &mut |c, data| {
            damaged |= dec
                .decode_into(data, c.n, i64::MIN, i64::MAX, &mut out)
                .is_err();
        })?;
        if damaged {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a history chunk's bytes end before its samples",
            ));
        }
        self.range_in_memory(i64::MIN, i64::MAX, &mut dec, &mut out);
        Ok(out)
    }

    pub(crate) fn all(&self, files: &Files) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        self.range(files, i64::MIN, i64::MAX, &mut out);
        out
    }

    fn samples(&self) -> u64 {
        self.disk.iter().map(|c| c.n as u64).sum::<u64>()
            + self.chunks.iter().map(|c| c.n as u64).sum::<u64>()
            + self.head.len() as u64
    }
}

/// What dropping sealed chunks freed: samples, bytes charged against the budget, and
/// bytes of memory (the sealed chunks that were in memory; a disk chunk's index entry
/// keeps its room until the series goes).
#[derive(Debug, Default)]
struct Dropped {
    samples: u64,
    bytes: usize,
    memory: usize,
}

/// Appends the samples in `[mint, maxt]` of the disk `chunks`; a read error is logged
/// and the chunks it hit are skipped.
fn read_disk_range(
    files: &Files,
    chunks: &[DiskChunk],
    mint: i64,
    maxt: i64,
    dec: &mut RangeDecoder,
    out: &mut Vec<(i64, f64)>,
) {
    // A chunk whose bytes end early gives the samples before the break, as reading it
    // one sample at a time would.
    let read = read_disk_chunks(files, chunks, &mut |c, data| {
        let _ = dec.decode_into(data, c.n, mint, maxt, out);
    });
    if let Err(e) = read {
        tracing::error!(error = %e, "history: cannot read chunks from disk; skipped");
    }
}

/// Reads the bytes of `chunks` (one `pread` per run of chunks of one file) and hands
/// each chunk with its bytes to `each`; stops at the first read error.
pub(crate) fn read_disk_chunks(
    files: &Files,
    chunks: &[DiskChunk],
    each: &mut dyn FnMut(&DiskChunk, &[u8]),
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        // A run: the same file, each chunk after the previous, at most 4 MiB.
        let first = chunks[i];
        let mut j = i + 1;
        while j < chunks.len()
            && chunks[j].file == first.file
            && chunks[j].offset >= chunks[j - 1].offset + chunks[j - 1].len as u64
            && chunks[j].offset + chunks[j].len as u64 - first.offset <= 4 << 20
        {
            j += 1;
        }
        let last = chunks[j - 1];
        let span = (last.offset + last.len as u64 - first.offset) as usize;
        buf.clear();
        buf.resize(span, 0);
        match files.get(first.file as usize).and_then(|f| f.as_ref()) {
            Some(f) => f.read_exact_at(&mut buf, first.offset)?,
            None => return Err(std::io::Error::other("history file slot is closed")),
        }
        for c in &chunks[i..j] {
            let at = (c.offset - first.offset) as usize;
            each(c, &buf[at..at + c.len as usize]);
        }
        i = j;
    }
    Ok(())
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) by_name: HashMap<String, BTreeMap<Labels, HSeries>>,
    pub(crate) bytes: usize,
    /// Running total of [`History::memory_bytes`], kept where bytes come and go (append,
    /// seal, merge, load, expiry, eviction, the rewrites that move chunks to disk).
    memory: usize,
    /// Running total of [`History::sealed_memory_bytes`] (a part of `memory`).
    sealed_memory: usize,
    pub(crate) files: Files,
}

impl Inner {
    /// Appends the samples of `run` (in time order) that are newer than the series'
    /// newest and at least `spacing` ms after the sample before them (stale markers
    /// always kept) to the series of `labels`, created unless `run` holds only stale
    /// markers (a series never starts with one). Bytes are counted by what changes (the
    /// head, the chunks sealed now), so a small run costs the same whatever the series
    /// already holds.
    fn append_run(&mut self, labels: &Labels, run: &[(i64, f64)], spacing: i64) {
        let name = labels.get(METRIC_NAME);
        let family = match self.by_name.get_mut(name) {
            Some(f) => f,
            None => self.by_name.entry(name.to_string()).or_default(),
        };
        let (s, added) = match family.get_mut(labels) {
            Some(s) => (s, 0),
            None => {
                if run.iter().all(|(_, v)| is_stale(*v)) {
                    return;
                }
                let s = family.entry(labels.clone()).or_insert_with(HSeries::new);
                (s, SERIES_OVERHEAD + labels.heap_bytes())
            }
        };
        let head_before = s.head.heap_bytes();
        let sealed_before = s.chunks.len();
        for &(t, v) in run {
            let empty = s.last_t == i64::MIN;
            if (empty && is_stale(v))
                || t <= s.last_t
                || (!empty && !is_stale(v) && t.saturating_sub(s.last_t) < spacing)
            {
                continue;
            }
            s.push(t, v);
        }
        let sealed: usize = s.chunks[sealed_before..]
            .iter()
            .map(|c| c.data.len() + CHUNK_OVERHEAD)
            .sum();
        let head_after = s.head.heap_bytes();
        // Appends touch no disk chunk: what they add to memory is what they add to bytes.
        self.bytes = (self.bytes + added + sealed + head_after).saturating_sub(head_before);
        self.memory = (self.memory + added + sealed + head_after).saturating_sub(head_before);
        self.sealed_memory += sealed;
    }

    /// Counts a series that joins the history in the memory totals.
    fn count_in(&mut self, labels: &Labels, s: &HSeries) {
        self.memory += s.memory(labels);
        self.sealed_memory += s.sealed_memory();
    }

    /// Counts a series that leaves the history out of the memory totals.
    fn count_out(&mut self, labels: &Labels, s: &HSeries) {
        self.memory = self.memory.saturating_sub(s.memory(labels));
        self.sealed_memory = self.sealed_memory.saturating_sub(s.sealed_memory());
    }

    /// Runs `change` on the series of `labels`, if there is one, and keeps the memory
    /// totals right whatever it does to the series' chunks (the rewrites that move sealed
    /// chunks to disk call this).
    pub(crate) fn change_series(&mut self, labels: &Labels, change: impl FnOnce(&mut HSeries)) {
        let Some(s) = self
            .by_name
            .get_mut(labels.get(METRIC_NAME))
            .and_then(|f| f.get_mut(labels))
        else {
            return;
        };
        let (memory, sealed) = (s.memory(labels), s.sealed_memory());
        change(s);
        let (memory_after, sealed_after) = (s.memory(labels), s.sealed_memory());
        self.memory = (self.memory + memory_after).saturating_sub(memory);
        self.sealed_memory = (self.sealed_memory + sealed_after).saturating_sub(sealed);
    }

    /// [`History::memory_bytes`] and [`History::sealed_memory_bytes`] counted from every
    /// series (what the running totals must equal).
    #[cfg(test)]
    fn recount_memory(&self) -> (usize, usize) {
        self.by_name
            .values()
            .flat_map(|f| f.iter())
            .fold((0, 0), |(m, s), (l, series)| {
                (m + series.memory(l), s + series.sealed_memory())
            })
    }

    /// Puts `file` in a free slot; None when every slot is taken.
    pub(crate) fn add_file(&mut self, file: Arc<File>) -> Option<u16> {
        if let Some(i) = self.files.iter().position(|f| f.is_none()) {
            self.files[i] = Some(file);
            return u16::try_from(i).ok();
        }
        let i = u16::try_from(self.files.len()).ok()?;
        self.files.push(Some(file));
        Some(i)
    }

    /// Closes the file slots no disk chunk points into any more.
    pub(crate) fn close_unused_files(&mut self) {
        let mut used = vec![false; self.files.len()];
        for s in self.by_name.values().flat_map(|f| f.values()) {
            for c in &s.disk {
                used[c.file as usize] = true;
            }
        }
        for (slot, used) in self.files.iter_mut().zip(used) {
            if !used {
                *slot = None;
            }
        }
        while self.files.last().is_some_and(|f| f.is_none()) {
            self.files.pop();
        }
    }
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

    /// Bytes charged against `max_bytes`: the chunks (on disk or in memory), an index
    /// entry per chunk, labels and a per-series overhead.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Bytes of the history that live in memory (the open head chunks, the sealed chunks
    /// not yet in a full file, the disk index, labels and per-series overhead). A running
    /// total: reading it walks nothing.
    pub fn memory_bytes(&self) -> usize {
        self.inner.lock().memory
    }

    /// Bytes of the sealed chunks held in memory (not yet in a full or spill file). A
    /// running total, like [`Self::memory_bytes`].
    pub fn sealed_memory_bytes(&self) -> usize {
        self.inner.lock().sealed_memory
    }

    /// Sealed chunks held in memory (not yet in a full or spill file).
    pub fn sealed_chunks_in_memory(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .by_name
            .values()
            .flat_map(|f| f.values())
            .map(|s| s.chunks.len())
            .sum()
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
        self.append_spaced(labels, t, v, self.min_spacing_ms);
    }

    /// [`Self::append`] with another spacing (0: every newer sample is kept).
    pub fn append_spaced(&self, labels: &Labels, t: i64, v: f64, spacing_ms: i64) {
        let mut inner = self.inner.lock();
        self.append_locked(&mut inner, labels, t, v, spacing_ms);
        if inner.bytes as u64 > self.max_bytes() {
            self.evict_locked(&mut inner);
        }
    }

    fn append_locked(&self, inner: &mut Inner, labels: &Labels, t: i64, v: f64, spacing: i64) {
        inner.append_run(labels, &[(t, v)], spacing);
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
            inner.append_run(labels, samples, 0);
            return;
        }
        // Merge: rebuild the series from both sample sets (in memory; the next full
        // rewrite puts its sealed chunks on disk again).
        let mut merged: BTreeMap<i64, f64> = BTreeMap::new();
        let Inner {
            by_name,
            files,
            bytes,
            memory,
            sealed_memory,
        } = inner;
        let family = by_name.entry(name.to_string()).or_default();
        let mut flushed_t = i64::MIN;
        // The stored key, not the caller's `labels`: equal labels built another way
        // (another capacity) take other heap bytes, and the totals counted the key's.
        let mut key = labels.clone();
        if let Some((stored, old)) = family.get_key_value(labels) {
            // A read error must not rebuild the series without its disk chunks (the next
            // full rewrite would then drop them from disk for good): keep it as it is.
            let old_samples = match old.try_all(files) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(series = %labels, error = %e, "history: cannot read a series to merge samples into it; its stored samples are kept, the new ones dropped");
                    return;
                }
            };
            *bytes = bytes.saturating_sub(old.bytes(stored));
            *memory = memory.saturating_sub(old.memory(stored));
            *sealed_memory = sealed_memory.saturating_sub(old.sealed_memory());
            flushed_t = old.flushed_t;
            key = stored.clone();
            family.remove(labels);
            merged.extend(old_samples);
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
        *bytes += s.bytes(&key);
        *memory += s.memory(&key);
        *sealed_memory += s.sealed_memory();
        family.insert(key, s);
    }

    /// Adds a series read from a full file: its sealed chunks stay on disk (`chunks`,
    /// in time order, not overlapping), `head` becomes its open chunk. Returns false
    /// (and adds nothing) when the series already holds samples or the chunks are out
    /// of order: the caller then inserts the decoded samples instead.
    pub(crate) fn add_disk_series(
        &self,
        labels: &Labels,
        chunks: Vec<DiskChunk>,
        head: &[(i64, f64)],
    ) -> bool {
        let ordered = chunks.windows(2).all(|w| w[0].maxt < w[1].mint)
            && chunks.iter().all(|c| c.mint <= c.maxt && c.n > 0);
        let head_after = match (chunks.last(), head.first()) {
            (Some(c), Some(h)) => c.maxt < h.0,
            _ => true,
        };
        let head_sorted = head.windows(2).all(|w| w[0].0 < w[1].0);
        if !ordered || !head_after || !head_sorted || (chunks.is_empty() && head.is_empty()) {
            return false;
        }
        let mut inner = self.inner.lock();
        let name = labels.get(METRIC_NAME);
        if inner
            .by_name
            .get(name)
            .is_some_and(|f| f.contains_key(labels))
        {
            return false;
        }
        let mut s = HSeries::new();
        s.last_t = chunks.last().map_or(i64::MIN, |c| c.maxt);
        s.disk = chunks;
        for &(t, v) in head {
            s.push(t, v);
        }
        inner.bytes += s.bytes(labels);
        inner.count_in(labels, &s);
        inner
            .by_name
            .entry(name.to_string())
            .or_default()
            .insert(labels.clone(), s);
        true
    }

    /// Drops what is older than the retention before `now_ms`, then evicts by bytes.
    pub fn maintain(&self, now_ms: i64) {
        let mut inner = self.inner.lock();
        let cutoff = now_ms.saturating_sub(self.retention_ms());
        let mut expired = 0u64;
        let mut freed = 0usize;
        let (mut memory, mut sealed) = (0usize, 0usize);
        for family in inner.by_name.values_mut() {
            family.retain(|labels, s| {
                if s.last_t < cutoff {
                    expired += s.samples();
                    freed += s.bytes(labels);
                    memory += s.memory(labels);
                    sealed += s.sealed_memory();
                    return false;
                }
                let d = s.drop_before(cutoff);
                expired += d.samples;
                freed += d.bytes;
                memory += d.memory;
                sealed += d.memory;
                true
            });
        }
        inner.by_name.retain(|_, f| !f.is_empty());
        inner.bytes = inner.bytes.saturating_sub(freed);
        inner.memory = inner.memory.saturating_sub(memory);
        inner.sealed_memory = inner.sealed_memory.saturating_sub(sealed);
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
        // Repeatedly take the oldest first chunk (a min-heap over the series' first chunks).
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(i64, String, Labels)>> =
            inner
                .by_name
                .iter()
                .flat_map(|(n, f)| f.iter().map(move |(l, s)| (n, l, s)))
                .filter_map(|(n, l, s)| {
                    let maxt = s.first_sealed_maxt()?;
                    Some(std::cmp::Reverse((maxt, n.clone(), l.clone())))
                })
                .collect();
        let mut samples = 0u64;
        let mut bytes = 0usize;
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
            let Some(d) = s.drop_first_sealed() else {
                continue;
            };
            let next = s.first_sealed_maxt();
            samples += d.samples;
            bytes += d.bytes;
            inner.bytes = inner.bytes.saturating_sub(d.bytes);
            inner.memory = inner.memory.saturating_sub(d.memory);
            inner.sealed_memory = inner.sealed_memory.saturating_sub(d.memory);
            if let Some(next) = next {
                heap.push(std::cmp::Reverse((next, name, labels)));
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
                    inner.count_out(&labels, &s);
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
        // Under the lock only what memory holds is read: the index entries of the disk
        // chunks, the files they point into (an `Arc` keeps a file readable even if a
        // full rewrite replaces it meanwhile) and the samples of the in-memory chunks.
        // The `pread`s run after the lock is released, so a query reading a day from a
        // cold page cache never holds up appends (collector writes, refreshes).
        struct Planned {
            labels: Labels,
            disk: Vec<DiskChunk>,
            memory: Vec<(i64, f64)>,
        }
        let mut dec = RangeDecoder::default();
        let (files, planned) = {
            let inner = self.inner.lock();
            let families: Vec<&BTreeMap<Labels, HSeries>> = match name {
                Some(n) => inner.by_name.get(n).into_iter().collect(),
                None => inner.by_name.values().collect(),
            };
            let mut planned = Vec::new();
            for f in families {
                for (labels, s) in f {
                    if s.last_t < mint || s.mint().is_none_or(|t| t > maxt) || !keep(labels) {
                        continue;
                    }
                    let mut memory = Vec::new();
                    s.range_in_memory(mint, maxt, &mut dec, &mut memory);
                    planned.push(Planned {
                        labels: labels.clone(),
                        disk: s.disk_in(mint, maxt).to_vec(),
                        memory,
                    });
                }
            }
            (inner.files.clone(), planned)
        };
        for p in planned {
            // One allocation of the exact size (a day of one series is a few hundred KiB:
            // growing it by doubling would copy and fault in pages several times).
            if p.disk.is_empty() {
                visit(&p.labels, p.memory);
                continue;
            }
            let disk: usize = p.disk.iter().map(|c| c.n as usize).sum();
            let mut out = Vec::with_capacity(disk + p.memory.len());
            read_disk_range(&files, &p.disk, mint, maxt, &mut dec, &mut out);
            out.extend(p.memory);
            visit(&p.labels, out);
        }
    }

    /// Visits every series with all its samples, sorted by labels, one series at a
    /// time (what `history export` writes without holding the whole history decoded).
    pub fn for_each_sorted(&self, visit: &mut Visit<'_>) {
        let mut all: Vec<Labels> = {
            let inner = self.inner.lock();
            inner
                .by_name
                .values()
                .flat_map(|f| f.keys().cloned())
                .collect()
        };
        all.sort();
        for labels in all {
            let samples = {
                let inner = self.inner.lock();
                let Some(s) = inner
                    .by_name
                    .get(labels.get(METRIC_NAME))
                    .and_then(|f| f.get(&labels))
                else {
                    continue;
                };
                s.all(&inner.files)
            };
            visit(&labels, samples);
        }
    }

    /// Every series with all its samples, sorted by labels.
    #[cfg(test)]
    pub fn dump(&self) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut out = Vec::new();
        self.for_each_sorted(&mut |l, s| out.push((l.clone(), s)));
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

    #[test]
    fn byte_count_matches_what_the_series_hold_after_every_kind_of_change() {
        let h = History::new(200_000, u64::MAX);
        let recount = |h: &History| -> usize {
            let inner = h.inner.lock();
            inner
                .by_name
                .values()
                .flat_map(|f| f.iter())
                .map(|(l, s)| s.bytes(l))
                .sum()
        };
        let batch: Vec<(i64, f64)> = (0..500).map(|k| (k * 1000, k as f64)).collect();
        h.insert(&l("a", 0), &batch);
        assert_eq!(h.bytes(), recount(&h));
        for k in 500..700 {
            h.append(&l("a", 0), k * 1000, 1.0);
            h.append(&l("b", 1), k * 1000, 2.0);
        }
        assert_eq!(h.bytes(), recount(&h));
        h.insert(&l("a", 0), &[(1500, 7.0)]); // merge
        assert_eq!(h.bytes(), recount(&h));
        h.maintain(700_000);
        assert_eq!(h.bytes(), recount(&h));
    }

    /// The memory gauge and the import's spill check read running totals; they must
    /// equal a walk over every series after appends (and the seals they cause), merges,
    /// spills, full rewrites (chunks moved to disk), loading, expiry and eviction.
    #[test]
    fn memory_totals_equal_a_full_walk_after_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(10_000_000, u64::MAX);
        let check = |h: &History, step: &str| {
            let inner = h.inner.lock();
            assert_eq!(
                (inner.memory, inner.sealed_memory),
                inner.recount_memory(),
                "{step}"
            );
        };
        for k in 0..1000i64 {
            for i in 0..4 {
                h.append(&l("a", i), k * 1000, (k * i as i64) as f64 * 0.7);
            }
        }
        assert!(h.sealed_memory_bytes() > 0, "appends sealed chunks");
        assert!(h.memory_bytes() > h.sealed_memory_bytes());
        check(&h, "appends and seals");
        h.insert(&l("a", 1), &[(1500, 1.0), (2_000_000, 2.0)]);
        h.insert(&l("b", 0), &[(5, 1.0), (6, 2.0)]);
        check(&h, "merge and new series");
        let mut p = crate::persist::Persist::open(dir.path()).unwrap();
        p.spill(&h).unwrap();
        check(&h, "spill");
        for k in 1000..1500i64 {
            h.append(&l("a", 0), k * 1000, k as f64);
        }
        p.write_full(&h).unwrap();
        assert_eq!(h.sealed_memory_bytes(), 0, "sealed chunks all on disk");
        check(&h, "full rewrite");
        for k in 1500..1800i64 {
            h.append(&l("a", 2), k * 1000, k as f64);
        }
        check(&h, "appends after the rewrite");
        drop(p);
        let back = History::new(10_000_000, u64::MAX);
        crate::persist::Persist::open(dir.path())
            .unwrap()
            .load_into(&back)
            .unwrap();
        check(&back, "loaded from disk");
        h.maintain(1_000_000 + 10_000_000);
        check(&h, "expiry");
        h.set_limits(10_000_000, h.bytes() as u64 / 2);
        h.maintain(1_000_000 + 10_000_000);
        assert!(h.stats.evicted_samples.load(Ordering::Relaxed) > 0);
        check(&h, "chunk eviction");
        let series = h.series_count();
        h.set_limits(10_000_000, 600);
        h.maintain(1_000_000 + 10_000_000);
        assert!(h.series_count() < series, "whole series evicted");
        check(&h, "series eviction");
    }

    #[test]
    fn merge_with_equal_labels_built_another_way_keeps_memory_and_bytes_totals_exact() {
        let h = History::new(10_000_000, u64::MAX);
        let totals = |h: &History, step: &str| {
            let inner = h.inner.lock();
            let bytes: usize = inner
                .by_name
                .values()
                .flat_map(|f| f.iter())
                .map(|(l, s)| s.bytes(l))
                .sum();
            assert_eq!(
                (inner.bytes, inner.memory, inner.sealed_memory),
                (bytes, inner.recount_memory().0, inner.recount_memory().1),
                "{step}"
            );
        };
        // Equal labels, other heap bytes: from_pairs keeps the value's spare capacity,
        // keep() clones each string to its length.
        let mut value = String::with_capacity(64);
        value.push_str("gpu0");
        let grown = Labels::from_pairs([
            (METRIC_NAME.to_string(), "m".to_string()),
            ("gpu".to_string(), value),
        ]);
        let exact = grown.keep(&[METRIC_NAME.to_string(), "gpu".to_string()]);
        assert_eq!(grown, exact);
        assert_ne!(grown.heap_bytes(), exact.heap_bytes(), "built two ways");
        h.insert(&grown, &[(1000, 1.0), (3000, 3.0)]);
        totals(&h, "new series");
        h.insert(&exact, &[(2000, 2.0)]);
        totals(&h, "merged through labels built with keep()");
        h.insert(&grown, &[(500, 0.5)]);
        totals(&h, "merged through labels built with from_pairs");
        for k in 4..600i64 {
            h.append(&exact, k * 1000, k as f64);
        }
        h.insert(&grown, &[(1500, 1.5)]);
        totals(&h, "merged with sealed chunks");
        assert_eq!(h.series_count(), 1);
        h.maintain(10_000_000 + 700_000);
        totals(&h, "expired");
        assert_eq!(h.memory_bytes(), 0);
        assert_eq!(h.bytes(), 0);
    }
}
