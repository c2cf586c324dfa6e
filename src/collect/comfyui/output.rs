//! The hand-off of new ComfyUI output images from the workflow collector (the producer,
//! `comfyui/history.rs`) to the quality collector's image checks (`quality/`).

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A ComfyUI output image as listed in `/history` outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputImage {
    pub prompt_id: String,
    pub filename: String,
    pub subfolder: String,
    /// `output` or `temp`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A bounded hand-off queue of new output images: when full, the oldest are dropped
/// and counted, so a stalled consumer never grows memory.
#[derive(Clone, Default)]
pub struct OutputQueue {
    inner: Arc<Mutex<std::collections::VecDeque<OutputImage>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl OutputQueue {
    pub const CAPACITY: usize = 1024;

    pub fn push(&self, img: OutputImage) {
        let mut q = self.inner.lock();
        if q.len() >= Self::CAPACITY {
            q.pop_front();
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(img);
    }

    /// Takes up to `max` images, oldest first.
    pub fn take(&self, max: usize) -> Vec<OutputImage> {
        let mut q = self.inner.lock();
        let n = max.min(q.len());
        q.drain(..n).collect()
    }

    /// Counts images a producer dropped before pushing (it kept only the newest
    /// [`CAPACITY`](Self::CAPACITY), as the queue would have).
    pub fn count_dropped(&self, n: u64) {
        self.dropped
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}
