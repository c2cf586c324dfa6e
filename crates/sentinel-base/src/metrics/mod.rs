//! The metric data model shared by every stage: collectors produce [`MetricFamily`]s,
//! the store (`sentinel-store`) keeps their samples, and its exposition merges and
//! encodes the latest ones for `/metrics`.
//!
//! We keep our own small model rather than a client library's because the same samples
//! feed both `/metrics` and the rule store, and collectors build fresh families each run
//! (node_exporter's "const metrics" style) instead of mutating long-lived ones.

pub mod encode;
pub mod registry;

use std::fmt;

/// The Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Untyped => "untyped",
        }
    }
}

/// Which series of a family a sample belongs to; histograms expose three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suffix {
    None,
    Bucket,
    Sum,
    Count,
}

impl Suffix {
    pub fn as_str(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Bucket => "_bucket",
            Suffix::Sum => "_sum",
            Suffix::Count => "_count",
        }
    }
}

/// Label pairs in the order they were given. Names are Prometheus label names;
/// values are arbitrary UTF-8 (escaped when encoded).
pub type Labels = Vec<(String, String)>;

/// One sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub suffix: Suffix,
    pub labels: Labels,
    pub value: f64,
    /// When the series was created (Unix seconds), for counters and histograms whose
    /// creation time is known: OpenMetrics exposes it as `<name>_created`, and the rule
    /// store records a zero at that time for a series born since its previous snapshot,
    /// so `rate()`/`increase()` count the event that created the series. `None` for
    /// gauges and for series restored from disk (their creation time is unknown).
    pub created: Option<f64>,
}

/// A metric family: name, help, type and its samples. Counter names end in `_total`
/// (the OpenMetrics encoder strips it for the metadata lines).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

/// Turns anything label-like into owned [`Labels`].
pub fn labels<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect()
}

impl MetricFamily {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Self {
        let name = name.into();
        debug_assert!(
            kind != MetricType::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        MetricFamily {
            name,
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Gauge)
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Counter)
    }

    pub fn histogram(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Histogram)
    }

    /// Adds one plain sample (gauge, counter or untyped).
    pub fn push<K: AsRef<str>, V: AsRef<str>>(&mut self, labels: &[(K, V)], value: f64) {
        self.samples.push(Sample {
            suffix: Suffix::None,
            labels: self::labels(labels),
            value,
            created: None,
        });
    }

    /// Adds one plain sample with owned labels.
    pub fn push_owned(&mut self, labels: Labels, value: f64) {
        self.push_created(labels, value, None);
    }

    /// Adds one counter sample with its creation time (Unix seconds), if known.
    pub fn push_created(&mut self, labels: Labels, value: f64, created: Option<f64>) {
        self.samples.push(Sample {
            suffix: Suffix::None,
            labels,
            value,
            created,
        });
    }

    /// Builder form of [`push`](Self::push).
    pub fn with<K: AsRef<str>, V: AsRef<str>>(mut self, labels: &[(K, V)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds the `_bucket`/`_sum`/`_count` series of one histogram.
    pub fn push_histogram(&mut self, labels: Labels, h: &HistogramSnapshot) {
        self.push_histogram_created(labels, h, None);
    }

    /// [`push_histogram`](Self::push_histogram) with the series' creation time (Unix
    /// seconds), if known; every series of the histogram carries it.
    pub fn push_histogram_created(
        &mut self,
        labels: Labels,
        h: &HistogramSnapshot,
        created: Option<f64>,
    ) {
        for (bound, cumulative) in h.bounds.iter().zip(h.cumulative_counts()) {
            let mut l = labels.clone();
            l.push(("le".to_string(), format_le(*bound)));
            self.samples.push(Sample {
                suffix: Suffix::Bucket,
                labels: l,
                value: cumulative as f64,
                created,
            });
        }
        let mut inf = labels.clone();
        inf.push(("le".to_string(), "+Inf".to_string()));
        self.samples.push(Sample {
            suffix: Suffix::Bucket,
            labels: inf,
            value: h.count as f64,
            created,
        });
        self.samples.push(Sample {
            suffix: Suffix::Sum,
            labels: labels.clone(),
            value: h.sum,
            created,
        });
        self.samples.push(Sample {
            suffix: Suffix::Count,
            labels,
            value: h.count as f64,
            created,
        });
    }

    /// Number of distinct series (histograms count each `le` bucket, as Prometheus does).
    pub fn series_count(&self) -> usize {
        self.samples.len()
    }
}

/// Formats a bucket bound the way Prometheus client libraries do (`0.005`, `1`, `+Inf`).
pub fn format_le(bound: f64) -> String {
    encode::format_value(bound)
}

/// Now as Unix seconds to the millisecond (the unit of [`Sample::created`]; the rule
/// store keeps milliseconds).
pub fn unix_seconds_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// Why a list of histogram bucket bounds was refused; the message says which bound.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BucketError {
    #[error("must list at least one bucket bound")]
    Empty,
    #[error("bound {index} ({}) must be a finite number above 0", encode::format_value(*.value))]
    NotPositive { index: usize, value: f64 },
    #[error(
        "bounds must be strictly increasing: bound {index} ({}) is not above bound {} ({})",
        encode::format_value(*.value),
        .index - 1,
        encode::format_value(*.previous)
    )]
    NotIncreasing {
        index: usize,
        value: f64,
        previous: f64,
    },
}

/// Checks histogram bucket bounds: at least one, each finite and above zero, strictly
/// increasing. The error says which bound is wrong.
pub fn validate_buckets(bounds: &[f64]) -> Result<(), BucketError> {
    if bounds.is_empty() {
        return Err(BucketError::Empty);
    }
    for (i, b) in bounds.iter().enumerate() {
        if !b.is_finite() || *b <= 0.0 {
            return Err(BucketError::NotPositive {
                index: i,
                value: *b,
            });
        }
        if i > 0 && *b <= bounds[i - 1] {
            return Err(BucketError::NotIncreasing {
                index: i,
                value: *b,
                previous: bounds[i - 1],
            });
        }
    }
    Ok(())
}

/// Default latency buckets (seconds), the Prometheus client default set.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram's state: per-bucket (non-cumulative) counts, sum and count.
/// Collectors and self metrics keep one of these per label set and snapshot it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, ascending, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    pub fn new(bounds: &[f64]) -> Self {
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        // NaN is counted (as Prometheus clients do) in +Inf only, and poisons the sum.
        let idx = self.bounds.partition_point(|b| *b < v);
        self.counts[idx] += 1;
        self.sum += v;
        self.count += 1;
    }

    pub fn cumulative_counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts[..self.bounds.len()]
            .iter()
            .scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{validate_buckets, BucketError};

    #[test]
    fn bucket_errors_are_typed_with_the_same_messages() {
        assert_eq!(validate_buckets(&[]), Err(BucketError::Empty));
        assert_eq!(
            validate_buckets(&[]).unwrap_err().to_string(),
            "must list at least one bucket bound"
        );
        assert_eq!(
            validate_buckets(&[1.0, f64::INFINITY])
                .unwrap_err()
                .to_string(),
            "bound 1 (+Inf) must be a finite number above 0"
        );
        assert_eq!(
            validate_buckets(&[0.5, 2.0, 2.0]).unwrap_err().to_string(),
            "bounds must be strictly increasing: bound 2 (2) is not above bound 1 (2)"
        );
        assert_eq!(validate_buckets(&[0.1, 1.0]), Ok(()));
    }

    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let mut h = HistogramSnapshot::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        // le is inclusive: 0.1 falls in the 0.1 bucket.
        assert_eq!(h.cumulative_counts().collect::<Vec<_>>(), vec![2, 3]);
        let mut f = MetricFamily::histogram("x_seconds", "x");
        f.push_histogram(vec![], &h);
        let buckets: Vec<_> = f
            .samples
            .iter()
            .filter(|s| s.suffix == Suffix::Bucket)
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect();
        assert_eq!(
            buckets,
            vec![("0.1".into(), 2.0), ("1".into(), 3.0), ("+Inf".into(), 4.0)]
        );
    }
}
