//! Limits that hold for every PromQL evaluation (query API, rules, `rules test`): a cap on
//! the samples held at once, on the bytes of label sets a query builds, on subquery
//! resolution, and a deadline with a cancellation flag. The evaluator carries one
//! [`Budget`] per evaluation and checks it inside its loops, so a query that hits a limit
//! stops its work at once and answers a typed [`EvalError`](super::EvalError).
//!
//! Accounting follows what is alive, like Prometheus's `currentSamples`: when a node of
//! the expression returns, what its children used is released and only its own output
//! is charged; a subquery charges the points it keeps and releases each step's
//! intermediate values. Nested subqueries multiply: the innermost expression runs once per
//! step of every enclosing subquery, so the product of their step counts is capped.

use super::EvalError;
use crate::labels::Labels;
use sentinel_base::config::{Dur, FieldError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Most samples (instant-vector elements and range points) held at once.
    pub max_samples: u64,
    /// Most bytes of label sets built by the query (label_replace, label_join, dropping
    /// `__name__`, grouping...) held at once.
    pub max_label_bytes: u64,
    /// Most points per series of a subquery; nested subqueries multiply their step counts.
    pub max_points_per_series: u64,
    /// Deadline of one evaluation; none for no deadline.
    pub timeout: Option<Duration>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryConfig::default().limits()
    }
}

impl QueryLimits {
    /// No caps and no deadline (benchmarks and tests that need them off).
    pub fn unlimited() -> Self {
        QueryLimits {
            max_samples: u64::MAX,
            max_label_bytes: u64::MAX,
            max_points_per_series: u64::MAX,
            timeout: None,
        }
    }
}

/// `query:` of the configuration: the limits of every PromQL evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Most samples one evaluation may hold at once (Prometheus: `--query.max-samples`).
    pub max_samples: u64,
    /// Most bytes of label sets one evaluation may build and hold at once.
    pub max_label_bytes: u64,
    /// Most points per series of a subquery (and of a range query); nested subqueries
    /// multiply their step counts.
    pub max_points_per_series: u64,
    /// Deadline of one evaluation (`--query.timeout`).
    pub timeout: Dur,
    /// Most `/api/v1/query` evaluations running at once (`--query.max-concurrency`).
    pub max_concurrent: usize,
}

/// Default of `query.max_samples`. Held samples cost at most about 48 bytes each
/// (24-byte vector elements or 16-byte points, with vector growth doubling), so 2 M
/// samples stay under 96 MiB.
pub const DEFAULT_MAX_SAMPLES: u64 = 2_000_000;
/// Default of `query.max_label_bytes`: 16 MiB of label sets (held label sets cost at
/// most about twice their bytes).
pub const DEFAULT_MAX_LABEL_BYTES: u64 = 16 << 20;
/// Default of `query.max_points_per_series`, Prometheus's 11,000.
pub const DEFAULT_MAX_POINTS_PER_SERIES: u64 = 11_000;

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_samples: DEFAULT_MAX_SAMPLES,
            max_label_bytes: DEFAULT_MAX_LABEL_BYTES,
            max_points_per_series: DEFAULT_MAX_POINTS_PER_SERIES,
            timeout: Dur::secs(10),
            max_concurrent: 2,
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            max_samples: self.max_samples,
            max_label_bytes: self.max_label_bytes,
            max_points_per_series: self.max_points_per_series,
            timeout: Some(self.timeout.get()),
        }
    }

    /// Every limit must be positive: a zero would refuse every query.
    pub fn validate(&self) -> Result<(), FieldError> {
        let zero = |k: &str| {
            Err(FieldError::new(
                format!("query.{k}"),
                "must be greater than 0",
            ))
        };
        if self.max_samples == 0 {
            return zero("max_samples");
        }
        if self.max_label_bytes == 0 {
            return zero("max_label_bytes");
        }
        if self.max_points_per_series == 0 {
            return zero("max_points_per_series");
        }
        if self.timeout.get().is_zero() {
            return zero("timeout");
        }
        if self.max_concurrent == 0 {
            return zero("max_concurrent");
        }
        Ok(())
    }
}

/// What one evaluation has used so far, its deadline and its cancellation flag.
#[derive(Debug)]
pub struct Budget {
    limits: QueryLimits,
    deadline: Option<Instant>,
    cancel: Arc<AtomicBool>,
    samples: AtomicU64,
    label_bytes: AtomicU64,
    peak_samples: AtomicU64,
    peak_label_bytes: AtomicU64,
    /// Label bytes held for the whole query (label sets a range query builds once and
    /// reuses at every step): charged in `label_bytes` too, never released.
    pinned_label_bytes: AtomicU64,
    /// Calls of [`Self::check`]: the clock is read at every 16th.
    checks: AtomicU64,
    /// Samples a range query's selections hold for its whole run (capped on their own
    /// at `max_samples` each, not charged): what the caller may give back afterwards.
    preloaded: AtomicU64,
}

/// A point to release a budget back to (see [`Budget::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    samples: u64,
    label_bytes: u64,
    pinned_label_bytes: u64,
}

impl Budget {
    /// A budget whose deadline starts now.
    pub fn new(limits: QueryLimits) -> Self {
        Budget {
            limits,
            deadline: limits.timeout.and_then(|t| Instant::now().checked_add(t)),
            cancel: Arc::new(AtomicBool::new(false)),
            samples: AtomicU64::new(0),
            label_bytes: AtomicU64::new(0),
            peak_samples: AtomicU64::new(0),
            peak_label_bytes: AtomicU64::new(0),
            pinned_label_bytes: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            preloaded: AtomicU64::new(0),
        }
    }

    pub fn unlimited() -> Self {
        Budget::new(QueryLimits::unlimited())
    }

    /// Uses `flag` as the cancellation flag: setting it stops the evaluation at its next
    /// check with [`EvalError::Canceled`].
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Stops on cancellation or a passed deadline. The clock is read at the first call
    /// and every 16th after it (a range query checks at every node of every step; the
    /// work between two reads stays far below a millisecond).
    pub fn check(&self) -> Result<(), EvalError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(EvalError::Canceled);
        }
        // One evaluation checks from one thread at a time: a plain load and store
        // (a lost count under a race only moves the next clock read).
        let n = self.checks.load(Ordering::Relaxed);
        self.checks.store(n.wrapping_add(1), Ordering::Relaxed);
        if !n.is_multiple_of(16) {
            return Ok(());
        }
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return Err(EvalError::Timeout);
            }
        }
        Ok(())
    }

    /// Samples still available.
    pub fn samples_left(&self) -> u64 {
        self.limits
            .max_samples
            .saturating_sub(self.samples.load(Ordering::Relaxed))
    }

    /// Charges `n` samples held from now on.
    pub fn charge_samples(&self, n: u64) -> Result<(), EvalError> {
        let now = self.samples.load(Ordering::Relaxed).saturating_add(n);
        self.samples.store(now, Ordering::Relaxed);
        self.peak_samples.fetch_max(now, Ordering::Relaxed);
        if now > self.limits.max_samples {
            return Err(EvalError::TooManySamples);
        }
        self.check()
    }

    /// Whether `n` more label bytes would still fit (checked before building them).
    pub fn label_bytes_fit(&self, n: u64) -> Result<(), EvalError> {
        let now = self.label_bytes.load(Ordering::Relaxed).saturating_add(n);
        if now > self.limits.max_label_bytes {
            return Err(EvalError::TooManyLabelBytes(self.limits.max_label_bytes));
        }
        Ok(())
    }

    /// Charges `n` bytes of label sets held from now on.
    pub fn charge_label_bytes(&self, n: u64) -> Result<(), EvalError> {
        self.label_bytes_fit(n)?;
        let now = self.label_bytes.load(Ordering::Relaxed).saturating_add(n);
        self.label_bytes.store(now, Ordering::Relaxed);
        self.peak_label_bytes.fetch_max(now, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `n` bytes of label sets held until the query ends (no [`Self::release_to`]
    /// gives them back). Never fails: the next charge or [`Self::label_bytes_fit`] does
    /// when the cap is passed.
    pub fn pin_label_bytes(&self, n: u64) {
        self.pinned_label_bytes.fetch_add(n, Ordering::Relaxed);
        let now = self.label_bytes.load(Ordering::Relaxed).saturating_add(n);
        self.label_bytes.store(now, Ordering::Relaxed);
        self.peak_label_bytes.fetch_max(now, Ordering::Relaxed);
    }

    pub fn mark(&self) -> Mark {
        Mark {
            samples: self.samples.load(Ordering::Relaxed),
            label_bytes: self.label_bytes.load(Ordering::Relaxed),
            pinned_label_bytes: self.pinned_label_bytes.load(Ordering::Relaxed),
        }
    }

    /// Releases what was charged since `m` (the values it paid for were dropped), except
    /// what was pinned since.
    pub fn release_to(&self, m: Mark) {
        let pinned = self.pinned_label_bytes.load(Ordering::Relaxed) - m.pinned_label_bytes;
        self.samples.store(m.samples, Ordering::Relaxed);
        self.label_bytes
            .store(m.label_bytes.saturating_add(pinned), Ordering::Relaxed);
    }

    /// The most samples held at once so far.
    pub fn peak_samples(&self) -> u64 {
        self.peak_samples.load(Ordering::Relaxed)
    }

    /// Notes `n` samples selected once for a whole range query.
    pub fn note_preloaded(&self, n: u64) {
        self.preloaded.fetch_add(n, Ordering::Relaxed);
    }

    /// The samples selected once for a whole range query so far.
    pub fn preloaded_samples(&self) -> u64 {
        self.preloaded.load(Ordering::Relaxed)
    }

    /// The most label bytes held at once so far.
    pub fn peak_label_bytes(&self) -> u64 {
        self.peak_label_bytes.load(Ordering::Relaxed)
    }

    /// Charges the label set of a value when the value owns it alone (it was built by the
    /// query, not shared with the store).
    pub fn charge_labels_if_owned(&self, l: &Labels) -> Result<(), EvalError> {
        if l.is_unshared() {
            self.charge_label_bytes(l.heap_bytes() as u64)?;
        }
        Ok(())
    }
}

/// Formats `n` with thousands separators, as Prometheus's messages print 11,000.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(11_000), "11,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn release_returns_what_children_used() {
        let b = Budget::new(QueryLimits {
            max_samples: 10,
            ..QueryLimits::unlimited()
        });
        let m = b.mark();
        b.charge_samples(8).unwrap();
        b.release_to(m);
        b.charge_samples(10).unwrap();
        assert_eq!(b.charge_samples(1), Err(EvalError::TooManySamples));
        assert_eq!(b.peak_samples(), 11);
    }

    #[test]
    fn pinned_label_bytes_outlive_release_and_trip_the_cap() {
        let b = Budget::new(QueryLimits {
            max_label_bytes: 100,
            ..QueryLimits::unlimited()
        });
        let m = b.mark();
        b.charge_label_bytes(30).unwrap();
        b.pin_label_bytes(60);
        b.release_to(m);
        assert_eq!(b.label_bytes_fit(40), Ok(()));
        assert_eq!(
            b.label_bytes_fit(41),
            Err(EvalError::TooManyLabelBytes(100))
        );
        b.pin_label_bytes(50);
        assert_eq!(b.label_bytes_fit(0), Err(EvalError::TooManyLabelBytes(100)));
    }

    #[test]
    fn cancel_flag_stops_the_next_check() {
        let b = Budget::unlimited();
        b.check().unwrap();
        b.cancel_flag().store(true, Ordering::Relaxed);
        assert_eq!(b.check(), Err(EvalError::Canceled));
    }
}
