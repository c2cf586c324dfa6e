//! `quality_score{workflow,metric}`: scores the application computes for its outputs
//! (CLIP score, aesthetic score, ...) pushed as `quality` events. One histogram family,
//! so its bucket layout is one list for every metric: the default covers scores in
//! 0..1 at tenths and then the usual 0..10 and 0..100 scales more coarsely
//! (`ingest.quality_buckets` replaces it, on restart).

use super::events::QualityEvent;
use crate::metrics::registry::{HistogramVec, Registry};
use std::sync::Arc;

pub const DEFAULT_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, 100.0,
];

pub struct QualityMetrics {
    score: Arc<HistogramVec>,
    buckets: Vec<f64>,
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
        }
    }

    pub fn buckets(&self) -> &[f64] {
        &self.buckets
    }

    /// Records one score under the folded label values.
    pub fn record(&self, ev: &QualityEvent<'_>, workflow: &str, metric: &str) {
        self.score.observe(&[workflow, metric], ev.value);
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
}
