//! The notifier's own metrics, registered on the sidecar's registry:
//! deliveries by receiver and result, attempt duration, outbox depth, dead letters,
//! and whether the outbox persists.

use sentinel_base::metrics::registry::{CounterVec, GaugeVec, HistogramVec, Registry};
use std::sync::Arc;

#[derive(Clone)]
pub struct Metrics {
    /// `result`: `success`, `retry` (failed, will be retried), `failed` (dead letter).
    pub notifications: Arc<CounterVec>,
    pub duration: Arc<HistogramVec>,
    pub outbox_depth: Arc<GaugeVec>,
    pub dead: Arc<CounterVec>,
    pub not_persisted: Arc<CounterVec>,
    pub persistent: Arc<GaugeVec>,
    pub alerts_received: Arc<CounterVec>,
    pub silences_rejected: Arc<CounterVec>,
    pub external_alerts_rejected: Arc<CounterVec>,
}

impl Metrics {
    pub fn register(r: &Registry) -> Metrics {
        let m = Metrics {
            notifications: r.counter_vec(
                "sentinel_notifications_total",
                "Notification delivery attempts by receiver and result (success, retry, failed).",
                &["receiver", "result"],
            ),
            duration: r.histogram_vec(
                "sentinel_notification_duration_seconds",
                "Duration of one notification delivery attempt.",
                &["receiver"],
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            outbox_depth: r.gauge_vec(
                "sentinel_outbox_depth",
                "Notifications waiting in the outbox (pending or being retried).",
                &[],
            ),
            dead: r.counter_vec(
                "sentinel_notifications_dead_total",
                "Notifications given up after the last attempt or a permanent error, by receiver.",
                &["receiver"],
            ),
            not_persisted: r.counter_vec(
                "sentinel_notifications_not_persisted_total",
                "Notifications queued in memory only because the outbox could not write to disk.",
                &[],
            ),
            persistent: r.gauge_vec(
                "sentinel_outbox_persistent",
                "Whether the outbox is writing notifications to disk (1) or only to memory (0).",
                &[],
            ),
            alerts_received: r.counter_vec(
                "sentinel_notify_alerts_received_total",
                "Alerts received from the rule engine and accepted from POST /api/v2/alerts.",
                &[],
            ),
            silences_rejected: r.counter_vec(
                "sentinel_silences_rejected_total",
                "Silences refused by the API, by reason: invalid, body_too_large, too_many_silences, or a field over its size cap.",
                &["reason"],
            ),
            external_alerts_rejected: r.counter_vec(
                "sentinel_notify_external_alerts_rejected_total",
                "Alerts posted to /api/v2/alerts refused because the notifier held its most posted alerts (rule alerts are never refused for them).",
                &[],
            ),
        };
        for reason in crate::dispatch::silence::REJECT_REASONS {
            m.silences_rejected.touch_series(&[reason]);
        }
        m.outbox_depth.set(&[], 0.0);
        m.not_persisted.touch_series(&[]);
        m.alerts_received.touch_series(&[]);
        m.external_alerts_rejected.touch_series(&[]);
        m
    }

    pub fn touch_receiver(&self, receiver: &str) {
        for r in ["success", "retry", "failed"] {
            self.notifications.touch_series(&[receiver, r]);
        }
        self.dead.touch_series(&[receiver]);
        self.duration.touch_histogram(&[receiver]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_duration_histogram_exists_for_configured_receivers_before_any_attempt() {
        let r = Registry::new();
        let m = Metrics::register(&r);
        assert!(m.duration.snapshot(&["ops"]).is_none());
        m.touch_receiver("ops");
        let h = m
            .duration
            .snapshot(&["ops"])
            .expect("initialized like the counters");
        assert_eq!(h.count, 0);
        assert_eq!(m.notifications.get(&["ops", "success"]), Some(0.0));
    }
}
