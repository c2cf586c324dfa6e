//! Incremental reading of ComfyUI's `/history`: which entries are new, and the counters
//! they feed. Pure state, no I/O besides [`Tracker::load`] / [`Tracker::save`], which
//! keep it in `data_dir` so a sidecar restart counts nothing twice.
//!
//! An entry is keyed by its prompt id **and** its terminal message's timestamp: ComfyUI
//! loses its history on restart and accepts client-chosen prompt ids, so the same id can
//! come back for a new run. The id alone would hide that run; the timestamp tells it
//! apart. The set of seen keys is bounded (ComfyUI keeps at most 10001 entries), oldest
//! forgotten first.

use super::api::{EntryHead, HistoryPage, Outcome};
use super::output::{OutputImage, OutputQueue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;

/// Seen keys kept: twice ComfyUI's history cap (`MAXIMUM_HISTORY_SIZE` + 1).
pub const SEEN_CAP: usize = 2 * 10_001;

/// Default prompt-duration buckets (`collectors.comfyui.duration_buckets`): 10 ms to
/// 1 h. Video and upscaling workflows run 20-60 min; the bounds up to 600 s are those of
/// earlier versions, so dashboards keep their meaning.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];

/// The buckets of state saved before the bounds were saved with it (10 ms to 10 min).
const LEGACY_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The failure classes, by exception type and message.
pub const FAILURE_CLASSES: [&str; 5] = ["oom", "cuda", "model_load", "interrupted", "other"];

/// Longest label value kept from ComfyUI (node types, exception types).
const MAX_LABEL_LEN: usize = 128;

/// The label value that takes every node-error series past the cap.
pub const OVERFLOW_LABEL: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Key {
    id: String,
    /// Terminal timestamp (ms); `None` for an entry that could not be classified.
    ts: Option<i64>,
}

/// A histogram's counts, in a form that survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// The bucket bounds the counts are for (empty in state saved before they were
    /// saved: [`LEGACY_DURATION_BUCKETS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<f64>,
    /// Per bucket plus one above them, not cumulative.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Hist {
    fn bounds(&self) -> &[f64] {
        if self.bounds.is_empty() {
            LEGACY_DURATION_BUCKETS
        } else {
            &self.bounds
        }
    }

    /// Whether the counts are for `bounds` (and consistent with them).
    fn fits(&self, bounds: &[f64]) -> bool {
        self.bounds() == bounds && self.counts.len() == bounds.len() + 1
    }

    fn observe(&mut self, v: f64, bounds: &[f64]) {
        if !self.fits(bounds) {
            *self = Hist {
                bounds: bounds.to_vec(),
                counts: vec![0; bounds.len() + 1],
                ..Hist::default()
            };
        }
        let idx = bounds.partition_point(|b| *b < v);
        self.counts[idx] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// The histogram over `bounds`; empty if its counts are for other bounds.
    pub fn snapshot(&self, bounds: &[f64]) -> crate::metrics::HistogramSnapshot {
        let mut h = crate::metrics::HistogramSnapshot::new(bounds);
        if self.fits(bounds) {
            h.counts.clone_from(&self.counts);
            h.sum = self.sum;
            h.count = self.count;
        }
        h
    }
}

/// Counters derived from history; persisted with the seen keys so that they keep
/// their values across sidecar restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub prompts: BTreeMap<String, u64>,
    pub durations: BTreeMap<String, Hist>,
    pub nodes_executed: u64,
    pub nodes_cached: u64,
    /// (node_type, exception_type) → count, at most `max_node_error_series` pairs.
    pub node_errors: BTreeMap<String, BTreeMap<String, u64>>,
    pub node_error_series: usize,
    pub node_error_labels_folded: u64,
    pub failures: BTreeMap<String, u64>,
    pub parse_errors: u64,
    pub output_images: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Persisted {
    version: u32,
    counts: Counts,
    seen: Vec<Key>,
}

/// What one applied page did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    pub new_entries: usize,
    /// The newest new output images, at most [`OutputQueue::CAPACITY`]: the hand-off
    /// queue would drop older ones anyway, and a page can list hundreds of thousands.
    pub images: Vec<OutputImage>,
    /// New output images counted but not kept in `images` (the queue's drop count).
    pub images_dropped: u64,
}

/// The seen keys and the counters.
#[derive(Debug, Default)]
pub struct Tracker {
    seen_order: VecDeque<Key>,
    seen: HashSet<Key>,
    pub counts: Counts,
    /// Entries whose graph or outputs were parsed (the work that grows with a page):
    /// lets tests check that polling is incremental.
    pub detailed_entries: u64,
    /// Prompt-duration bucket bounds (empty: [`DURATION_BUCKETS`]).
    duration_buckets: Vec<f64>,
    /// When each node-error series born in this process was created (Unix seconds);
    /// restored series have no entry (their creation time is unknown).
    pub node_error_created: HashMap<(String, String), f64>,
}

fn key_of(e: &EntryHead<'_>) -> Key {
    Key {
        id: e.prompt_id.clone(),
        ts: e.terminal.as_ref().map(|t| t.timestamp_ms),
    }
}

impl Tracker {
    /// The prompt-duration bucket bounds in use.
    pub fn duration_buckets(&self) -> &[f64] {
        if self.duration_buckets.is_empty() {
            DURATION_BUCKETS
        } else {
            &self.duration_buckets
        }
    }

    /// Sets the prompt-duration buckets. Histograms restored with other bounds cannot be
    /// re-bucketed: they start again from zero (a counter reset, which `rate()` handles).
    pub fn set_duration_buckets(&mut self, bounds: &[f64]) {
        self.duration_buckets = bounds.to_vec();
        for (outcome, h) in self.counts.durations.iter_mut() {
            if h.count > 0 && !h.fits(bounds) {
                tracing::info!(outcome = %outcome, "prompt duration buckets changed; the histogram starts again from zero");
                *h = Hist::default();
            }
        }
    }

    /// How many of the page's entries have not been counted yet.
    pub fn count_new(&self, page: &HistoryPage<'_>) -> usize {
        page.entries
            .iter()
            .filter(|e| !self.seen.contains(&key_of(e)))
            .count()
    }

    /// Counts every entry of the page not seen before, oldest first.
    pub fn apply(&mut self, page: &HistoryPage<'_>, max_node_error_series: usize) -> Applied {
        self.apply_bounded(page, max_node_error_series, OutputQueue::CAPACITY)
    }

    /// [`apply`](Self::apply) keeping at most `max_images` of the new images: every
    /// image is counted, only the newest are materialised, so memory does not grow with
    /// the number of images a page lists.
    pub fn apply_bounded(
        &mut self,
        page: &HistoryPage<'_>,
        max_node_error_series: usize,
        max_images: usize,
    ) -> Applied {
        let mut out = Applied::default();
        let mut images: VecDeque<OutputImage> = VecDeque::new();
        for e in &page.entries {
            let key = key_of(e);
            if self.seen.contains(&key) {
                continue;
            }
            self.remember(key);
            out.new_entries += 1;
            let Some(t) = &e.terminal else {
                self.counts.parse_errors += 1;
                continue;
            };
            self.detailed_entries += 1;
            // A cached output node reports the earlier run's files: not new.
            let detail = e.detail_bounded(
                if t.outcome == Outcome::Success {
                    max_images
                } else {
                    0
                },
                &t.cached,
            );
            let outcome = t.outcome.as_str();
            *self.counts.prompts.entry(outcome.into()).or_default() += 1;
            if let Some(ms) = t.duration_ms {
                let bounds = if self.duration_buckets.is_empty() {
                    DURATION_BUCKETS
                } else {
                    &self.duration_buckets
                };
                self.counts
                    .durations
                    .entry(outcome.into())
                    .or_default()
                    .observe(ms as f64 / 1000.0, bounds);
            }
            self.counts.nodes_cached += t.cached.len() as u64;
            let executed = match (&t.executed, &detail.needed_nodes) {
                (Some(ex), _) => Some(ex.len()),
                (None, Some(needed)) => {
                    Some(needed.iter().filter(|n| !t.cached.contains(n)).count())
                }
                (None, None) => None,
            };
            self.counts.nodes_executed += executed.unwrap_or(0) as u64;
            match t.outcome {
                Outcome::Success => {
                    let total = detail.image_total as u64;
                    self.counts.output_images += total;
                    out.images_dropped += total - detail.images.len() as u64;
                    for (_, img) in detail.images {
                        // `detail.images` is empty when `max_images` is 0.
                        if images.len() == max_images && images.pop_front().is_some() {
                            out.images_dropped += 1;
                        }
                        images.push_back(OutputImage {
                            prompt_id: e.prompt_id.clone(),
                            filename: img.filename,
                            subfolder: img.subfolder,
                            kind: img.kind,
                        });
                    }
                }
                Outcome::Interrupted => {
                    *self
                        .counts
                        .failures
                        .entry("interrupted".into())
                        .or_default() += 1;
                }
                Outcome::Error => {
                    let class = classify_failure(
                        t.exception_type.as_deref().unwrap_or(""),
                        t.exception_message.as_deref().unwrap_or(""),
                        t.node_type.as_deref().unwrap_or(""),
                    );
                    *self.counts.failures.entry(class.into()).or_default() += 1;
                    self.count_node_error(
                        t.node_type.as_deref().unwrap_or("unknown"),
                        t.exception_type.as_deref().unwrap_or("unknown"),
                        max_node_error_series,
                    );
                }
            }
        }
        out.images = images.into();
        out
    }

    fn remember(&mut self, key: Key) {
        if self.seen_order.len() >= SEEN_CAP {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.seen_order.push_back(key);
    }

    fn count_node_error(&mut self, node_type: &str, exception_type: &str, cap: usize) {
        let nt = truncate(node_type);
        let et = truncate(exception_type);
        let c = &mut self.counts;
        let exists = c.node_errors.get(nt).is_some_and(|m| m.contains_key(et));
        let (nt, et) = if exists || c.node_error_series < cap {
            (nt, et)
        } else {
            c.node_error_labels_folded += 1;
            (OVERFLOW_LABEL, OVERFLOW_LABEL)
        };
        let slot = c
            .node_errors
            .entry(nt.to_string())
            .or_default()
            .entry(et.to_string());
        if let std::collections::btree_map::Entry::Vacant(_) = slot {
            c.node_error_series += 1;
            self.node_error_created.insert(
                (nt.to_string(), et.to_string()),
                crate::metrics::unix_seconds_now(),
            );
        }
        *slot.or_default() += 1;
    }

    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Reads the state saved by [`save`](Self::save); a missing file is a fresh start.
    pub fn load(path: &Path) -> Result<Tracker, std::io::Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tracker::default()),
            Err(e) => return Err(e),
        };
        let p: Persisted = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut t = Tracker {
            counts: p.counts,
            ..Tracker::default()
        };
        for k in p.seen {
            if !t.seen.contains(&k) {
                t.remember(k);
            }
        }
        Ok(t)
    }

    /// The state as bytes, for an atomic write by the caller.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = Persisted {
            version: 1,
            counts: self.counts.clone(),
            seen: self.seen_order.iter().cloned().collect(),
        };
        serde_json::to_vec(&p).expect("plain structs always serialize")
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it, synced, then renamed.
pub async fn save_atomic(path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = tokio::fs::File::create(&tmp).await?;
    f.write_all(&bytes).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, path).await
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_LABEL_LEN {
        return s;
    }
    let mut end = MAX_LABEL_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sorts a failed prompt into one of [`FAILURE_CLASSES`] by its exception, the way
/// operators triage them: out of memory (GPU or host), other CUDA faults, model files
/// that would not load, and the rest.
pub fn classify_failure(exception_type: &str, message: &str, node_type: &str) -> &'static str {
    let t = exception_type.to_ascii_lowercase();
    let m = message.to_ascii_lowercase();
    if t.contains("outofmemory")
        || m.contains("out of memory")
        || m.contains("can't allocate memory")
        || m.contains("cannot allocate memory")
        || m.contains("allocation on device")
    {
        return "oom";
    }
    if t.contains("cuda")
        || m.contains("cuda")
        || m.contains("cudnn")
        || m.contains("cublas")
        || m.contains("device-side assert")
    {
        return "cuda";
    }
    if t.contains("safetensor")
        || t.contains("unpickling")
        || m.contains("safetensor")
        || m.contains("state_dict")
        || m.contains("error while deserializing header")
        || m.contains("could not detect model type")
        || m.contains("checkpoint")
        || node_type.ends_with("Loader")
        || node_type.ends_with("LoaderSimple")
    {
        return "model_load";
    }
    if t.contains("interrupt") {
        return "interrupted";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::super::api::parse_history_page;
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/comfyui")
                .join(name),
        )
        .expect("fixture")
    }

    #[test]
    fn counts_the_recorded_history_once() {
        let body = fixture("get_history_all.json");
        let page = parse_history_page(&body).unwrap();
        let mut t = Tracker::default();
        let a = t.apply(&page, 100);
        assert_eq!(a.new_entries, 11);
        let c = &t.counts;
        assert_eq!(c.prompts["success"], 7);
        assert_eq!(c.prompts["error"], 2);
        assert_eq!(c.prompts["interrupted"], 2);
        assert_eq!(c.nodes_cached, 2);
        assert_eq!(c.node_errors["SaveImage"]["Exception"], 1);
        assert_eq!(c.node_errors["EmptyImage"]["RuntimeError"], 1);
        assert_eq!(c.failures["oom"], 1);
        assert_eq!(c.failures["other"], 1);
        assert_eq!(c.failures["interrupted"], 2);
        // The cached re-run's image is the earlier run's file: not handed on.
        let files: Vec<_> = a.images.iter().map(|i| i.filename.as_str()).collect();
        assert_eq!(
            files
                .iter()
                .filter(|f| **f == "sentinel_ok_00001_.png")
                .count(),
            1
        );
        assert_eq!(a.images.len(), 7);
        let slow = &c.durations["success"];
        assert_eq!(slow.count, 7);
        assert!((slow.sum - 26.688).abs() < 1e-9, "{}", slow.sum);
        // Second time: nothing new.
        let again = t.apply(&page, 100);
        assert_eq!(again, Applied::default());
        assert_eq!(t.counts.prompts["success"], 7);
        assert_eq!(t.detailed_entries, 11);
    }

    #[test]
    fn a_page_listing_300k_images_keeps_only_what_the_queue_can_hold() {
        let per_entry = 30_000;
        let entries: Vec<String> = (0..10)
            .map(|e| {
                let images: Vec<String> = (0..per_entry)
                    .map(|i| format!(r#"{{"filename": "i{e}_{i}.png", "subfolder": "", "type": "output"}}"#))
                    .collect();
                format!(
                    r#""p{e}": {{"outputs": {{"9": {{"images": [{}]}}}}, "status": {{"messages": [["execution_success", {{"timestamp": {e}}}]]}}}}"#,
                    images.join(", ")
                )
            })
            .collect();
        let body = format!("{{{}}}", entries.join(", "));
        let page = parse_history_page(body.as_bytes()).unwrap();
        let mut t = Tracker::default();
        let a = t.apply(&page, 10);
        assert_eq!(t.counts.output_images, 300_000);
        assert_eq!(a.images.len(), OutputQueue::CAPACITY);
        assert_eq!(a.images_dropped, 300_000 - OutputQueue::CAPACITY as u64);
        // The newest are kept, in order.
        assert_eq!(a.images.last().unwrap().filename, "i9_29999.png");
        assert_eq!(a.images.last().unwrap().prompt_id, "p9");
        let b = Tracker::default().apply_bounded(&page, 10, 0);
        assert!(b.images.is_empty());
        assert_eq!(b.images_dropped, 300_000);
        let c = Tracker::default().apply_bounded(&page, 10, 40_000);
        assert_eq!(c.images.len(), 40_000);
        assert_eq!(c.images[0].filename, "i8_20000.png");
    }

    #[test]
    fn reused_id_after_restart_counts_as_new() {
        let one = br#"{"x": {"status": {"messages": [["execution_start", {"timestamp": 1000}], ["execution_success", {"timestamp": 1500}]]}}}"#;
        let two = br#"{"x": {"status": {"messages": [["execution_start", {"timestamp": 9000}], ["execution_error", {"timestamp": 9100, "node_type": "N", "exception_type": "E"}]]}}}"#;
        let mut t = Tracker::default();
        assert_eq!(
            t.apply(&parse_history_page(one).unwrap(), 10).new_entries,
            1
        );
        assert_eq!(
            t.apply(&parse_history_page(one).unwrap(), 10).new_entries,
            0
        );
        assert_eq!(
            t.apply(&parse_history_page(two).unwrap(), 10).new_entries,
            1
        );
        assert_eq!(t.counts.prompts["success"], 1);
        assert_eq!(t.counts.prompts["error"], 1);
    }

    #[test]
    fn node_error_labels_are_capped() {
        let mut t = Tracker::default();
        for i in 0..5 {
            t.count_node_error(&format!("Node{i}"), "E", 3);
        }
        t.count_node_error("Node0", "E", 3);
        assert_eq!(t.counts.node_error_series, 4); // 3 + the overflow series
        assert_eq!(t.counts.node_error_labels_folded, 2);
        assert_eq!(t.counts.node_errors["other"]["other"], 2);
        assert_eq!(t.counts.node_errors["Node0"]["E"], 2);
    }

    #[test]
    fn failure_classes() {
        // (exception_type, message, node_type, class)
        let cases = [
            (
                "torch.OutOfMemoryError",
                "CUDA out of memory. Tried to allocate 2.00 GiB",
                "KSampler",
                "oom",
            ),
            (
                "RuntimeError",
                "DefaultCPUAllocator: can't allocate memory: you tried",
                "EmptyImage",
                "oom",
            ),
            (
                "RuntimeError",
                "CUDA error: an illegal memory access was encountered",
                "KSampler",
                "cuda",
            ),
            (
                "safetensors_rust.SafetensorError",
                "Error while deserializing header",
                "CheckpointLoaderSimple",
                "model_load",
            ),
            (
                "FileNotFoundError",
                "No such file",
                "LoraLoader",
                "model_load",
            ),
            (
                "Exception",
                "Saving image outside the output folder is not allowed",
                "SaveImage",
                "other",
            ),
        ];
        for (t, m, n, want) in cases {
            assert_eq!(classify_failure(t, m, n), want, "{t} {m}");
        }
    }

    #[test]
    fn state_round_trips() {
        let body = fixture("get_history_all.json");
        let page = parse_history_page(&body).unwrap();
        let mut t = Tracker::default();
        t.apply(&page, 100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, t.to_bytes()).unwrap();
        let mut back = Tracker::load(&path).unwrap();
        assert_eq!(back.counts, t.counts);
        assert_eq!(back.seen_len(), 11);
        assert_eq!(back.apply(&page, 100).new_entries, 0);
        assert!(Tracker::load(&dir.path().join("missing.json")).is_ok());
    }

    #[test]
    fn seen_keys_are_bounded() {
        let mut t = Tracker::default();
        for i in 0..SEEN_CAP + 10 {
            t.remember(Key {
                id: i.to_string(),
                ts: Some(1),
            });
        }
        assert_eq!(t.seen_len(), SEEN_CAP);
    }

    /// A body of entries `from..to`, each a success run of a two-node graph.
    fn synthetic(from: usize, to: usize) -> String {
        let entries: Vec<String> = (from..to)
            .map(|i| {
                format!(
                    r#""p{i}": {{"prompt": [{i}, "p{i}", {{"1": {{"class_type": "EmptyImage", "inputs": {{"width": 64}}}}, "2": {{"class_type": "SaveImage", "inputs": {{"images": ["1", 0]}}}}}}, {{}}, ["2"]], "outputs": {{"2": {{"images": [{{"filename": "f{i}.png", "subfolder": "", "type": "output"}}]}}}}, "status": {{"status_str": "success", "completed": true, "messages": [["execution_start", {{"timestamp": {i}}}], ["execution_cached", {{"nodes": []}}], ["execution_success", {{"timestamp": {}}}]]}}, "meta": {{}}}}"#,
                    i + 5
                )
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    }

    /// Polling is incremental: a steady poll parses no graph or output again, however
    /// long the history. Prints the time of both (debug build: relative figures only).
    #[test]
    fn steady_poll_does_no_per_entry_work() {
        let full = synthetic(0, 10_000);
        let newest = synthetic(10_000 - 64, 10_000);
        let mut t = Tracker::default();
        let started = std::time::Instant::now();
        let page = parse_history_page(full.as_bytes()).unwrap();
        assert_eq!(t.apply(&page, 100).new_entries, 10_000);
        let first = started.elapsed();
        assert_eq!(t.detailed_entries, 10_000);
        assert_eq!(t.counts.nodes_executed, 20_000);
        let started = std::time::Instant::now();
        let page = parse_history_page(newest.as_bytes()).unwrap();
        assert_eq!(t.count_new(&page), 0);
        assert_eq!(t.apply(&page, 100).new_entries, 0);
        let steady = started.elapsed();
        assert_eq!(t.detailed_entries, 10_000, "seen entries were parsed again");
        eprintln!(
            "first poll (10k entries, {} bytes): {first:?}; steady poll (64 entries, {} bytes): {steady:?}",
            full.len(),
            newest.len()
        );
    }

    #[test]
    fn duration_buckets_reach_an_hour_and_keep_the_old_bounds() {
        assert_eq!(
            &DURATION_BUCKETS[..LEGACY_DURATION_BUCKETS.len()],
            LEGACY_DURATION_BUCKETS
        );
        assert!(DURATION_BUCKETS.last().copied().unwrap_or(0.0) >= 3600.0);
        crate::metrics::validate_buckets(DURATION_BUCKETS).unwrap();
    }

    #[test]
    fn saved_state_without_bounds_is_read_with_the_old_buckets_and_reset_when_they_change() {
        // State saved by a version that did not save the bounds: 15 buckets + 1.
        let mut old = Hist {
            counts: vec![0; LEGACY_DURATION_BUCKETS.len() + 1],
            ..Hist::default()
        };
        old.counts[3] = 2;
        old.sum = 0.2;
        old.count = 2;
        // Read with the old bounds it keeps its counts.
        assert_eq!(old.snapshot(LEGACY_DURATION_BUCKETS).count, 2);
        let mut t = Tracker::default();
        t.counts.durations.insert("success".into(), old.clone());
        t.set_duration_buckets(LEGACY_DURATION_BUCKETS);
        assert_eq!(t.counts.durations["success"], old);
        // Other bounds cannot re-bucket the counts: the histogram starts from zero.
        t.set_duration_buckets(DURATION_BUCKETS);
        let h = &t.counts.durations["success"];
        assert_eq!(h.snapshot(DURATION_BUCKETS).count, 0);
        // And counts again with the new bounds, which are saved with it.
        let mut h = h.clone();
        h.observe(2000.0, DURATION_BUCKETS);
        assert_eq!(h.bounds, DURATION_BUCKETS);
        let snap = h.snapshot(DURATION_BUCKETS);
        let cumulative: Vec<u64> = snap.cumulative_counts().collect();
        assert_eq!(cumulative[DURATION_BUCKETS.len() - 2], 0, "le=1800");
        assert_eq!(cumulative[DURATION_BUCKETS.len() - 1], 1, "le=3600");
        let json = serde_json::to_string(&h).unwrap();
        let back: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn node_errors_born_in_this_process_carry_their_creation_time() {
        let mut t = Tracker::default();
        t.count_node_error("VAEDecode", "OutOfMemoryError", 10);
        let key = ("VAEDecode".to_string(), "OutOfMemoryError".to_string());
        let created = t.node_error_created[&key];
        t.count_node_error("VAEDecode", "OutOfMemoryError", 10);
        assert_eq!(t.node_error_created[&key], created, "set once, at creation");
        // Restored counts have none: their creation time is unknown.
        let path = std::env::temp_dir().join(format!("sentinel-ne-{}.json", std::process::id()));
        std::fs::write(&path, t.to_bytes()).unwrap();
        let back = Tracker::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.counts.node_errors["VAEDecode"]["OutOfMemoryError"], 2);
        assert!(back.node_error_created.is_empty());
    }
}
