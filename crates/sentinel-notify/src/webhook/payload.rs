//! The webhook body: Alertmanager's webhook payload version 4 (`notify/webhook/webhook.go`
//! `Message` around `template.Data`), byte-compatible with what Alertmanager 0.25 sends so
//! that receivers written for Alertmanager work unchanged. Built from a [`Notification`]
//! (the dispatcher's output, stored in the outbox); the alertmanager and email receivers
//! read the same structure.

use crate::notification::Notification;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// One webhook POST body, fields in Alertmanager's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub receiver: String,
    pub status: Status,
    pub alerts: Vec<PayloadAlert>,
    #[serde(rename = "groupLabels")]
    pub group_labels: BTreeMap<String, String>,
    #[serde(rename = "commonLabels")]
    pub common_labels: BTreeMap<String, String>,
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    #[serde(rename = "groupKey")]
    pub group_key: String,
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadAlert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt", serialize_with = "go_time")]
    pub starts_at: DateTime<Utc>,
    /// `None` for a firing alert: Alertmanager hides a not-yet-reached end time
    /// (`types.Alerts`) and Go prints the zero time.
    #[serde(
        rename = "endsAt",
        serialize_with = "go_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Go's zero `time.Time` as `MarshalJSON` prints it.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 with Go's `RFC3339Nano` trimming (no trailing zeros in the fraction).
pub fn format_go_time(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

fn go_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_go_time(t))
}

fn go_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => go_time(t, s),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

fn de_opt_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s = String::deserialize(d)?;
    if s == GO_ZERO_TIME {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(&s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(serde::de::Error::custom)
}

impl Message {
    /// Builds the body for one notification. `max_alerts` > 0 keeps the first that many
    /// alerts and reports the rest in `truncatedAlerts`, as Alertmanager does.
    pub fn build(n: &Notification, external_url: &str, max_alerts: usize) -> Message {
        let mut alerts: Vec<PayloadAlert> = n
            .alerts
            .iter()
            .map(|a| {
                let resolved = a.is_resolved_at(n.flushed_at);
                PayloadAlert {
                    status: if resolved {
                        Status::Resolved
                    } else {
                        Status::Firing
                    },
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: a.starts_at,
                    ends_at: resolved.then_some(a.ends_at),
                    generator_url: a.generator_url.clone(),
                    fingerprint: a.fingerprint_hex(),
                }
            })
            .collect();
        // Common labels and annotations are computed over every alert, before
        // truncation, like Alertmanager's template data.
        let common_labels = common(alerts.iter().map(|a| &a.labels));
        let common_annotations = common(alerts.iter().map(|a| &a.annotations));
        let status = if alerts.iter().any(|a| a.status == Status::Firing) {
            Status::Firing
        } else {
            Status::Resolved
        };
        let mut truncated = 0;
        if max_alerts > 0 && alerts.len() > max_alerts {
            truncated = (alerts.len() - max_alerts) as u64;
            alerts.truncate(max_alerts);
        }
        Message {
            receiver: n.receiver.clone(),
            status,
            alerts,
            group_labels: n.group_labels.clone(),
            common_labels,
            common_annotations,
            external_url: external_url.to_string(),
            version: "4".to_string(),
            group_key: n.group_key.clone(),
            truncated_alerts: truncated,
        }
    }

    /// The exact bytes POSTed: Go's `json.Encoder` output, i.e. HTML-safe escaping of
    /// `<`, `>`, `&`, U+2028 and U+2029 and a trailing newline.
    pub fn to_body(&self) -> Vec<u8> {
        let json = serde_json::to_string(self).expect("a Message always serialises");
        let mut out = String::with_capacity(json.len() + 16);
        // These characters can only occur inside JSON strings, so escaping them
        // byte-wise keeps the document equivalent.
        for c in json.chars() {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// The label pairs that every map shares (empty when there is no map).
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// A label set as Prometheus' `model.LabelSet.String()` prints it: `{a="b", c="d"}`.
pub fn label_set_string(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

pub use sentinel_base::text::go_quote;

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_base::alert::Alert;

    const FIRING: &str = include_str!("../../tests/fixtures/alertmanager/webhook-v4.json");
    const RESOLVED: &str =
        include_str!("../../tests/fixtures/alertmanager/webhook-v4-resolved.json");
    const FROM_PROM: &str =
        include_str!("../../tests/fixtures/alertmanager/webhook-v4-from-prometheus.json");

    /// Rebuilds the notification Alertmanager had from the fixture's own alerts, then
    /// renders it: the bytes must be the fixture's bytes.
    fn roundtrip(fixture: &str) {
        let v: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let flushed_at = DateTime::parse_from_rfc3339("2026-11-23T03:40:19.900Z")
            .unwrap()
            .with_timezone(&Utc);
        let alerts = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let starts_at = DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc);
                let ends_at = match a["endsAt"].as_str().unwrap() {
                    GO_ZERO_TIME => flushed_at + chrono::Duration::minutes(5),
                    s => DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
                };
                Alert {
                    labels: serde_json::from_value(a["labels"].clone()).unwrap(),
                    annotations: serde_json::from_value(a["annotations"].clone()).unwrap(),
                    starts_at,
                    ends_at,
                    generator_url: a["generatorURL"].as_str().unwrap().to_string(),
                }
            })
            .collect();
        let n = Notification {
            receiver: v["receiver"].as_str().unwrap().to_string(),
            group_key: v["groupKey"].as_str().unwrap().to_string(),
            group_labels: serde_json::from_value(v["groupLabels"].clone()).unwrap(),
            alerts,
            flushed_at,
        };
        let body = Message::build(&n, v["externalURL"].as_str().unwrap(), 0).to_body();
        assert_eq!(String::from_utf8(body).unwrap(), fixture);
        // The fingerprint Alertmanager computed matches ours.
        let parsed: Message = serde_json::from_str(fixture).unwrap();
        assert_eq!(parsed.alerts[0].fingerprint, n.alerts[0].fingerprint_hex());
    }

    #[test]
    fn firing_fixture_bytes_match() {
        roundtrip(FIRING);
    }

    #[test]
    fn resolved_fixture_bytes_match() {
        roundtrip(RESOLVED);
    }

    #[test]
    fn prometheus_fixture_bytes_match() {
        roundtrip(FROM_PROM);
    }

    #[test]
    fn group_key_uses_go_label_set_format() {
        let mut l = BTreeMap::new();
        l.insert("alertname".to_string(), "NodeLoadHigh".to_string());
        assert_eq!(
            format!("{{}}:{}", label_set_string(&l)),
            "{}:{alertname=\"NodeLoadHigh\"}"
        );
    }

    #[test]
    fn go_time_trims_fraction() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T03:40:17.830Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_go_time(&t), "2026-11-23T03:40:17.83Z");
        let t = DateTime::parse_from_rfc3339("2026-11-23T03:40:17Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_go_time(&t), "2026-11-23T03:40:17Z");
    }

    #[test]
    fn max_alerts_truncates_and_counts() {
        let now = Utc::now();
        let mk = |i: u32| Alert {
            labels: [("alertname".to_string(), format!("A{i}"))].into(),
            annotations: BTreeMap::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::minutes(5),
            generator_url: String::new(),
        };
        let n = Notification {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: BTreeMap::new(),
            alerts: (0..5).map(mk).collect(),
            flushed_at: now,
        };
        let m = Message::build(&n, "", 2);
        assert_eq!(m.alerts.len(), 2);
        assert_eq!(m.truncated_alerts, 3);
        assert_eq!(m.status, Status::Firing);
    }
}
