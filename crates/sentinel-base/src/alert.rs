//! The alert as it travels from the rule engine to the dispatcher: the shape of
//! Alertmanager's `postableAlert` (labels, annotations, startsAt, endsAt, generatorURL).
//! Like Alertmanager, an alert whose `endsAt` has passed is resolved; the rule engine
//! re-sends firing alerts with `endsAt` in the future (4 × the resend delay).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_resolved_at(&self, now: DateTime<Utc>) -> bool {
        self.ends_at <= now
    }

    /// Alertmanager's label-set fingerprint: FNV-1a 64 over the sorted label names and
    /// values, each followed by the 0xff separator byte; shown as 16 hex digits.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.fingerprint())
    }
}

pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut h = OFFSET;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= *x as u64;
            h = h.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in sorted key order, as Alertmanager sorts label names.
    for (k, v) in labels {
        feed(k.as_bytes());
        feed(&[0xff]);
        feed(v.as_bytes());
        feed(&[0xff]);
    }
    h
}

/// Where the rule engine sends alerts (the notification dispatcher implements it).
/// Called after every evaluation with the alerts to (re)send, firing and resolved;
/// must not block.
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: Vec<Alert>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_empty_set_is_fnv_offset() {
        assert_eq!(fingerprint(&BTreeMap::new()), 14695981039346656037);
    }
}
