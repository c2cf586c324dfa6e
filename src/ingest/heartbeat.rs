//! Dead man's switches: `heartbeat` events from scheduled jobs (backups, cleanups) set
//! the time of their last success and last failure, so that a rule such as
//! `time() - sentinel_heartbeat_last_success_timestamp_seconds{name="nightly-backup"} > 26*3600`
//! fires when a job stops reporting. A series appears with its first report.

use super::events::{HeartbeatEvent, HeartbeatStatus};
use crate::metrics::registry::{GaugeVec, Registry};
use std::sync::Arc;

pub struct HeartbeatMetrics {
    last_success: Arc<GaugeVec>,
    last_failure: Arc<GaugeVec>,
}

impl HeartbeatMetrics {
    pub fn register(r: &Registry) -> Self {
        HeartbeatMetrics {
            last_success: r.gauge_vec(
                "sentinel_heartbeat_last_success_timestamp_seconds",
                "Unix time of the last successful run reported by a heartbeat.",
                &["name"],
            ),
            last_failure: r.gauge_vec(
                "sentinel_heartbeat_last_failure_timestamp_seconds",
                "Unix time of the last failed run reported by a heartbeat.",
                &["name"],
            ),
        }
    }

    /// Records a report under the folded `name`; `now` stands in for a missing timestamp.
    /// A late report with an older timestamp never moves the time back.
    pub fn record(&self, ev: &HeartbeatEvent<'_>, name: &str, now: f64) {
        let gauge = match ev.status {
            HeartbeatStatus::Success => &self.last_success,
            HeartbeatStatus::Failure => &self.last_failure,
        };
        let at = ev.timestamp.unwrap_or(now);
        if gauge.get(&[name]).is_none_or(|prev| at > prev) {
            gauge.set(&[name], at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_only_move_forward() {
        let m = HeartbeatMetrics::register(&Registry::new());
        let ev = |status, timestamp| HeartbeatEvent {
            name: "backup".into(),
            status,
            timestamp,
        };
        m.record(&ev(HeartbeatStatus::Success, None), "backup", 200.0);
        m.record(&ev(HeartbeatStatus::Success, Some(150.0)), "backup", 210.0);
        assert_eq!(m.last_success.get(&["backup"]), Some(200.0));
        assert_eq!(m.last_failure.get(&["backup"]), None);
        m.record(&ev(HeartbeatStatus::Failure, Some(205.0)), "backup", 210.0);
        assert_eq!(m.last_failure.get(&["backup"]), Some(205.0));
    }
}
