//! Metrics fed by `operation` and `circuit_breaker` events from the application's
//! retry/recovery layer: outcomes, attempts, operation vs overhead time (the overhead
//! ratio is `rate(recovery_overhead_seconds_total) / rate(recovery_operation_seconds_total)`),
//! recovery and persistence latency, and circuit-breaker state with its transitions.
//! Label values arrive already folded by `limits::LabelCaps`.

use super::events::{BreakerEvent, BreakerState, OperationEvent, Outcome};
use super::limits::{add_finite, observe_finite};
use crate::metrics::registry::{CounterVec, GaugeVec, HistogramVec, Registry};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// 1 ms … 10 s; 100 ms is a bound so that "p95 above 100 ms" is exact, not interpolated.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct RecoveryMetrics {
    operations: Arc<CounterVec>,
    attempts: Arc<CounterVec>,
    operation_seconds: Arc<CounterVec>,
    overhead_seconds: Arc<CounterVec>,
    errors: Arc<CounterVec>,
    operation_duration: Arc<HistogramVec>,
    recovery_duration: Arc<HistogramVec>,
    persistence: Arc<HistogramVec>,
    breaker_state: Arc<GaugeVec>,
    breaker_open_since: Arc<GaugeVec>,
    breaker_transitions: Arc<CounterVec>,
    /// Last known state and opening time per breaker (bounded by the label cap).
    breakers: Mutex<HashMap<String, Tracked>>,
    /// Held while an operation updates its running totals, so that the finiteness
    /// check and the addition happen as one step.
    totals: Mutex<()>,
}

#[derive(Clone, Copy)]
struct Tracked {
    state: BreakerState,
    open_since: Option<f64>,
}

impl RecoveryMetrics {
    pub fn register(r: &Registry) -> Self {
        RecoveryMetrics {
            operations: r.counter_vec(
                "recovery_operations_total",
                "Operations through the recovery layer by outcome: success (first try), recovered (after retries or fallback), failed.",
                &["operation", "outcome"],
            ),
            attempts: r.counter_vec(
                "recovery_attempts_total",
                "Attempts made, first tries included.",
                &["operation"],
            ),
            operation_seconds: r.counter_vec(
                "recovery_operation_seconds_total",
                "Time spent in the operations themselves, summed over attempts.",
                &["operation"],
            ),
            overhead_seconds: r.counter_vec(
                "recovery_overhead_seconds_total",
                "Time spent in the recovery layer outside the operations (backoff, bookkeeping, persistence); divide its rate by recovery_operation_seconds_total's for the overhead ratio.",
                &["operation"],
            ),
            errors: r.counter_vec(
                "recovery_errors_total",
                "Operations that needed recovery (recovered or failed), by the class of their last error (\"unknown\" when not reported).",
                &["operation", "error_class"],
            ),
            operation_duration: r.histogram_vec(
                "recovery_operation_duration_seconds",
                "Time spent in each operation itself, summed over its attempts.",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            recovery_duration: r.histogram_vec(
                "recovery_duration_seconds",
                "Time from an operation's first failure until it recovered or gave up.",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            persistence: r.histogram_vec(
                "recovery_persistence_seconds",
                "Latency of persisting recovery state (checkpoint, journal write).",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            breaker_state: r.gauge_vec(
                "recovery_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                &["breaker"],
            ),
            breaker_open_since: r.gauge_vec(
                "recovery_circuit_breaker_open_since_seconds",
                "Unix time the breaker opened; kept while it probes half-open, absent while it is closed.",
                &["breaker"],
            ),
            breaker_transitions: r.counter_vec(
                "recovery_circuit_breaker_transitions_total",
                "Circuit breaker state changes.",
                &["breaker", "from", "to"],
            ),
            breakers: Mutex::new(HashMap::new()),
            totals: Mutex::new(()),
        }
    }

    /// Records one operation; `operation` and `error_class` are the folded label values.
    pub fn operation(&self, ev: &OperationEvent<'_>, operation: &str, error_class: Option<&str>) {
        let op = [operation];
        let _totals = self.totals.lock();
        if self
            .operations
            .get(&[operation, Outcome::Success.as_str()])
            .is_none()
        {
            // Every outcome exists from the operation's first event on, so that
            // rate() sees the first failure instead of a series that starts at 1.
            for o in Outcome::ALL {
                self.operations.touch_series(&[operation, o.as_str()]);
            }
        }
        self.operations.inc(&[operation, ev.outcome.as_str()]);
        // Sums go through the finiteness guard: the caps of `events.rs` keep them far
        // from f64::MAX, the guard keeps them finite even if a value got past a cap.
        add_finite(&self.attempts, &op, ev.attempts as f64);
        add_finite(&self.operation_seconds, &op, ev.duration_seconds);
        add_finite(&self.overhead_seconds, &op, ev.overhead_seconds);
        observe_finite(&self.operation_duration, &op, ev.duration_seconds);
        if ev.outcome != Outcome::Success {
            self.errors
                .inc(&[operation, error_class.unwrap_or("unknown")]);
        }
        if let Some(s) = ev.recovery_seconds {
            observe_finite(&self.recovery_duration, &op, s);
        }
        if let Some(s) = ev.persistence_seconds {
            observe_finite(&self.persistence, &op, s);
        }
    }

    /// Records a breaker state report; `breaker` is the folded name, `now` Unix seconds.
    pub fn breaker(&self, ev: &BreakerEvent<'_>, breaker: &str, now: f64) {
        let at = ev.timestamp.unwrap_or(now);
        let mut breakers = self.breakers.lock();
        let known = breakers.get(breaker).copied();
        // The reporter's `from` wins: it saw the change; we may have restarted since.
        let from = ev.from.or(known.map(|k| k.state));
        if let Some(from) = from {
            if from != ev.state {
                self.breaker_transitions
                    .inc(&[breaker, from.as_str(), ev.state.as_str()]);
            }
        }
        let open_since = match ev.state {
            BreakerState::Closed => None,
            // Still the same outage while it probes or re-opens.
            BreakerState::HalfOpen => known.and_then(|k| k.open_since),
            BreakerState::Open => known.and_then(|k| k.open_since).or(Some(at)),
        };
        breakers.insert(
            breaker.to_string(),
            Tracked {
                state: ev.state,
                open_since,
            },
        );
        drop(breakers);
        self.breaker_state.set(&[breaker], ev.state.gauge_value());
        match open_since {
            Some(t) => self.breaker_open_since.set(&[breaker], t),
            None => self.breaker_open_since.remove(&[breaker]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(outcome: Outcome) -> OperationEvent<'static> {
        OperationEvent {
            operation: "load".into(),
            duration_seconds: 1.0,
            overhead_seconds: 0.5,
            attempts: 2,
            outcome,
            recovery_seconds: Some(0.3),
            persistence_seconds: None,
            error_class: None,
        }
    }

    fn br(state: BreakerState, from: Option<BreakerState>) -> BreakerEvent<'static> {
        BreakerEvent {
            name: "api".into(),
            state,
            from,
            timestamp: None,
        }
    }

    #[test]
    fn operations_feed_counters_and_histograms() {
        let m = RecoveryMetrics::register(&Registry::new());
        m.operation(&op(Outcome::Recovered), "load", Some("transient"));
        m.operation(&op(Outcome::Success), "load", Some("ignored"));
        assert_eq!(m.operations.get(&["load", "recovered"]), Some(1.0));
        assert_eq!(m.operations.get(&["load", "failed"]), Some(0.0));
        assert_eq!(m.attempts.get(&["load"]), Some(4.0));
        assert_eq!(m.overhead_seconds.get(&["load"]), Some(1.0));
        assert_eq!(m.operation_seconds.get(&["load"]), Some(2.0));
        assert_eq!(m.errors.get(&["load", "transient"]), Some(1.0));
        assert_eq!(m.errors.get(&["load", "ignored"]), None);
        assert_eq!(m.recovery_duration.snapshot(&["load"]).unwrap().count, 2);
        assert!(m.persistence.snapshot(&["load"]).is_none());
        assert!(LATENCY_BUCKETS.contains(&0.1));
    }

    #[test]
    fn operation_totals_stay_finite_past_the_caps() {
        let m = RecoveryMetrics::register(&Registry::new());
        let mut huge = op(Outcome::Success);
        huge.duration_seconds = 1e308;
        huge.overhead_seconds = 1e308;
        huge.recovery_seconds = Some(1e308);
        for _ in 0..3 {
            m.operation(&huge, "load", None);
        }
        for v in [
            m.operation_seconds.get(&["load"]).unwrap(),
            m.overhead_seconds.get(&["load"]).unwrap(),
            m.operation_duration.snapshot(&["load"]).unwrap().sum,
            m.recovery_duration.snapshot(&["load"]).unwrap().sum,
        ] {
            assert!(v.is_finite(), "{v}");
        }
        assert_eq!(m.operations.get(&["load", "success"]), Some(3.0));
    }

    #[test]
    fn breaker_open_since_survives_half_open_and_clears_on_close() {
        let m = RecoveryMetrics::register(&Registry::new());
        // First sight: no transition unless the reporter says where it came from.
        m.breaker(&br(BreakerState::Open, None), "api", 100.0);
        assert_eq!(m.breaker_transitions.len(), 0);
        assert_eq!(m.breaker_state.get(&["api"]), Some(2.0));
        assert_eq!(m.breaker_open_since.get(&["api"]), Some(100.0));
        m.breaker(&br(BreakerState::HalfOpen, None), "api", 130.0);
        m.breaker(&br(BreakerState::Open, None), "api", 140.0);
        assert_eq!(m.breaker_open_since.get(&["api"]), Some(100.0));
        m.breaker(&br(BreakerState::Open, None), "api", 150.0); // repeated report
        m.breaker(&br(BreakerState::Closed, None), "api", 160.0);
        assert_eq!(m.breaker_state.get(&["api"]), Some(0.0));
        assert_eq!(m.breaker_open_since.get(&["api"]), None);
        assert_eq!(
            m.breaker_transitions.get(&["api", "open", "half_open"]),
            Some(1.0)
        );
        assert_eq!(
            m.breaker_transitions.get(&["api", "half_open", "open"]),
            Some(1.0)
        );
        assert_eq!(
            m.breaker_transitions.get(&["api", "open", "closed"]),
            Some(1.0)
        );
        assert_eq!(m.breaker_transitions.get(&["api", "open", "open"]), None);
        // A reporter-supplied `from` counts even for an unseen breaker.
        m.breaker(
            &br(BreakerState::Open, Some(BreakerState::Closed)),
            "db",
            170.0,
        );
        assert_eq!(
            m.breaker_transitions.get(&["db", "closed", "open"]),
            Some(1.0)
        );
    }
}
