//! `quality_score{workflow,metric}`: scores the application computes for its outputs
//! (CLIP score, aesthetic score, ...) pushed as `quality` events. One histogram family,
//! so its bucket layout is one list for every metric: the default covers scores in
//! 0..1 at tenths and then the usual 0..10 and 0..100 scales more coarsely
//! (`ingest.quality_buckets` replaces it, on restart).

use super::events::QualityEvent;
use super::limits::observe_finite;
use crate::metrics::registry::{HistogramVec, Registry};
use parking_lot::Mutex;
use std::sync::Arc;

pub use crate::config::ingest::DEFAULT_QUALITY_BUCKETS as DEFAULT_BUCKETS;

pub struct QualityMetrics {
    score: Arc<HistogramVec>,
    buckets: Vec<f64>,
    /// Makes the finiteness check of `quality_score_sum` and the observation one step.
    totals: Mutex<()>,
}

impl QualityMetrics {
    pub fn register(r: &Registry, buckets: &[f64]) -> Self {
        QualityMetrics {
            score: r.histogram_vec(
                "quality_score",
                "Quality scores pushed by the application, per workflow and scoring metric.",
                &["workflow", "metric"],
                buckets,
            ),
            buckets: buckets.to_vec(),
            totals: Mutex::new(()),
        }
    }

    pub fn buckets(&self) -> &[f64] {
        &self.buckets
    }

    /// Records one score under the folded label values.
    pub fn record(&self, ev: &QualityEvent<'_>, workflow: &str, metric: &str) {
        // `events.rs` caps |value| at 1e6; the guard keeps the sum finite regardless.
        let _totals = self.totals.lock();
        observe_finite(&self.score, &[workflow, metric], ev.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_land_in_their_buckets() {
        let m = QualityMetrics::register(&Registry::new(), DEFAULT_BUCKETS);
        let ev = |v| QualityEvent {
            workflow: "w".into(),
            metric: "clip_score".into(),
            value: v,
        };
        m.record(&ev(0.31), "w", "clip_score");
        m.record(&ev(6.0), "w", "clip_score");
        let h = m.score.snapshot(&["w", "clip_score"]).unwrap();
        assert_eq!(h.count, 2);
        assert_eq!(h.counts[3], 1); // (0.3, 0.4]
        assert_eq!(h.counts[12], 1); // (5, 7.5]
    }

    #[test]
    fn huge_negative_values_cannot_make_the_sum_infinite() {
        let m = QualityMetrics::register(&Registry::new(), DEFAULT_BUCKETS);
        let ev = QualityEvent {
            workflow: "w".into(),
            metric: "m".into(),
            value: -1.7e308,
        };
        m.record(&ev, "w", "m");
        m.record(&ev, "w", "m");
        let h = m.score.snapshot(&["w", "m"]).unwrap();
        assert!(h.sum.is_finite());
        assert_eq!(h.count, 1);
    }
}
