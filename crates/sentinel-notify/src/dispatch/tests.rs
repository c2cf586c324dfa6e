//! Dispatcher decisions over a fake clock: grouping timers, dedup, resolve, muting,
//! rate limits.

use super::silence::{MatcherSpec, Silence};
use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn alert(name: &str, extra: &[(&str, &str)], start: i64, end: i64) -> Alert {
    let mut labels: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("alertname".into(), name.into());
    Alert {
        labels,
        annotations: BTreeMap::new(),
        starts_at: t(start),
        ends_at: t(end),
        generator_url: String::new(),
    }
}

fn dispatcher(yaml: &str) -> Dispatcher {
    let cfg: NotifyConfig = serde_yaml_ng::from_str(yaml).unwrap();
    cfg.validate().unwrap();
    let receivers = cfg
        .receivers
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                ReceiverInfo {
                    grouped: true,
                    send_resolved: true,
                    forwards: !r.alertmanagers.is_empty(),
                    max_per_minute: r.max_notifications_per_minute,
                },
            )
        })
        .collect();
    Dispatcher::new(&cfg, receivers)
}

const BASIC: &str = r#"
route: { receiver: r, group_by: [alertname], group_wait: 10s, group_interval: 1m, repeat_interval: 1h }
receivers: [{ name: r }]
"#;

fn names(f: &Flush) -> Vec<usize> {
    f.notifications.iter().map(|n| n.alerts.len()).collect()
}

#[test]
fn group_wait_then_interval_then_repeat() {
    let mut d = dispatcher(BASIC);
    d.ingest(vec![alert("A", &[("i", "1")], 0, 240)], t(0));
    assert!(d.tick(t(5)).notifications.is_empty(), "inside group_wait");
    d.ingest(vec![alert("A", &[("i", "2")], 6, 246)], t(6));
    let f = d.tick(t(10));
    assert_eq!(names(&f), [2], "both alerts in the first notification");
    assert_eq!(f.notifications[0].group_key, "{}:{alertname=\"A\"}");
    // Re-sends of the same firing alerts: nothing new until repeat_interval.
    for m in 1..60 {
        d.ingest(
            vec![
                alert("A", &[("i", "1")], 0, 60 * m + 240),
                alert("A", &[("i", "2")], 6, 60 * m + 240),
            ],
            t(60 * m),
        );
        assert!(
            d.tick(t(60 * m + 10)).notifications.is_empty(),
            "minute {m}"
        );
    }
    d.ingest(
        vec![
            alert("A", &[("i", "1")], 0, 3600 + 240),
            alert("A", &[("i", "2")], 6, 3600 + 240),
        ],
        t(3600),
    );
    assert_eq!(names(&d.tick(t(3610))), [2], "repeat_interval");
}

#[test]
fn new_alert_waits_for_group_interval_and_resolve_is_sent_once() {
    let mut d = dispatcher(BASIC);
    d.ingest(vec![alert("A", &[("i", "1")], 0, 240)], t(0));
    assert_eq!(names(&d.tick(t(10))), [1]);
    d.ingest(vec![alert("A", &[("i", "2")], 20, 260)], t(20));
    assert!(
        d.tick(t(30)).notifications.is_empty(),
        "waits for group_interval"
    );
    assert_eq!(names(&d.tick(t(70))), [2]);
    // i=1 resolves.
    d.ingest(
        vec![
            alert("A", &[("i", "1")], 0, 80),
            alert("A", &[("i", "2")], 20, 320),
        ],
        t(80),
    );
    let f = d.tick(t(130));
    assert_eq!(names(&f), [2]);
    assert_eq!(f.notifications[0].resolved().count(), 1);
    // The resolved alert left the group: not repeated.
    d.ingest(vec![alert("A", &[("i", "2")], 20, 380)], t(140));
    assert!(d.tick(t(190)).notifications.is_empty());
    // All resolved → one resolved notification, then the group is gone.
    d.ingest(vec![alert("A", &[("i", "2")], 20, 200)], t(200));
    let f = d.tick(t(250));
    assert_eq!(names(&f), [1]);
    assert_eq!(f.notifications[0].firing().count(), 0);
    assert!(d.tick(t(400)).notifications.is_empty());
    assert!(d.next_due().is_none());
}

#[test]
fn resolved_only_group_is_not_notified() {
    let mut d = dispatcher(BASIC);
    d.ingest(vec![alert("A", &[], 0, 5)], t(6));
    assert!(d.tick(t(20)).notifications.is_empty());
}

#[test]
fn old_alert_in_new_group_flushes_at_once() {
    let mut d = dispatcher(BASIC);
    d.ingest(vec![alert("A", &[], -600, 240)], t(0));
    assert_eq!(names(&d.tick(t(0))), [1]);
}

#[test]
fn group_by_all_and_none() {
    let mut d = dispatcher(
        "route: { receiver: r, group_by: ['...'], group_wait: 0s }\nreceivers: [{ name: r }]",
    );
    d.ingest(
        vec![
            alert("A", &[("i", "1")], 0, 240),
            alert("A", &[("i", "2")], 0, 240),
        ],
        t(0),
    );
    assert_eq!(names(&d.tick(t(0))), [1, 1]);
    let mut d = dispatcher("route: { receiver: r, group_wait: 0s }\nreceivers: [{ name: r }]");
    d.ingest(vec![alert("A", &[], 0, 240), alert("B", &[], 0, 240)], t(0));
    let f = d.tick(t(0));
    assert_eq!(names(&f), [2]);
    assert_eq!(f.notifications[0].group_key, "{}:{}");
}

#[test]
fn critical_inhibits_its_warning_by_default() {
    let mut d = dispatcher(
        "route: { receiver: r, group_by: ['...'], group_wait: 0s }\nreceivers: [{ name: r }]",
    );
    d.ingest(
        vec![
            alert("Hot", &[("severity", "critical"), ("gpu", "0")], 0, 240),
            alert("Hot", &[("severity", "warning"), ("gpu", "0")], 0, 240),
            alert("Hot", &[("severity", "warning"), ("gpu", "1")], 0, 240),
        ],
        t(0),
    );
    let f = d.tick(t(0));
    let sent: Vec<String> = f
        .notifications
        .iter()
        .map(|n| {
            format!(
                "{}/{}",
                n.alerts[0].labels["severity"], n.alerts[0].labels["gpu"]
            )
        })
        .collect();
    assert_eq!(sent, ["critical/0", "warning/1"]);
    let views = d.alerts(t(0));
    assert_eq!(views.iter().filter(|v| v.inhibited).count(), 1);
}

#[test]
fn configured_inhibition_with_equal() {
    let mut d = dispatcher(
        r#"
route: { receiver: r, group_by: ['...'], group_wait: 0s }
inhibit_warning_by_critical: false
inhibit_rules:
  - source_matchers: ['alertname="ComfyUIDown"']
    target_matchers: ['component="workflow"']
    equal: [instance]
receivers: [{ name: r }]
"#,
    );
    d.ingest(
        vec![
            alert("ComfyUIDown", &[("instance", "a")], 0, 240),
            alert(
                "SlowPrompts",
                &[("instance", "a"), ("component", "workflow")],
                0,
                240,
            ),
            alert(
                "SlowPrompts",
                &[("instance", "b"), ("component", "workflow")],
                0,
                240,
            ),
        ],
        t(0),
    );
    let f = d.tick(t(0));
    assert_eq!(
        f.notifications.len(),
        2,
        "instance a's workflow alert is muted"
    );
    assert!(f
        .notifications
        .iter()
        .all(
            |n| n.alerts[0].labels.get("instance") != Some(&"a".to_string())
                || n.alerts[0].name() == "ComfyUIDown"
        ));
}

#[test]
fn silences_mute_while_active() {
    let mut d = dispatcher("route: { receiver: r, group_by: ['...'], group_wait: 0s, group_interval: 10s }\nreceivers: [{ name: r }]");
    let s = d
        .silences
        .upsert(
            Silence {
                id: String::new(),
                matchers: vec![MatcherSpec {
                    name: "alertname".into(),
                    value: "A".into(),
                    is_regex: false,
                    is_equal: true,
                }],
                starts_at: t(0),
                ends_at: t(100),
                created_by: "ops".into(),
                comment: "maintenance".into(),
                updated_at: t(0),
            },
            t(0),
        )
        .unwrap();
    d.ingest(vec![alert("A", &[], 0, 400), alert("B", &[], 0, 400)], t(1));
    let f = d.tick(t(1));
    assert_eq!(f.notifications.len(), 1);
    assert_eq!(f.notifications[0].alerts[0].name(), "B");
    assert_eq!(
        d.alerts(t(1))
            .iter()
            .find(|v| v.alert.name() == "A")
            .unwrap()
            .silenced_by,
        std::slice::from_ref(&s.id)
    );
    d.silences.expire(&s.id, t(50));
    assert_eq!(
        names(&d.tick(t(60))),
        [1],
        "A notified once the silence ended"
    );
}

#[test]
fn rate_limit_groups_a_storm_without_dropping() {
    let mut d = dispatcher(
        "route: { receiver: r, group_by: ['...'], group_wait: 0s, group_interval: 1h }\nreceivers: [{ name: r, max_notifications_per_minute: 2 }]",
    );
    let storm: Vec<Alert> = (0..10)
        .map(|i| alert("Storm", &[("i", &i.to_string())], 0, 99999))
        .collect();
    d.ingest(storm, t(0));
    let mut seen = BTreeSet::new();
    let mut now = 0;
    while seen.len() < 10 && now < 600 {
        let f = d.tick(t(now));
        assert!(f.notifications.len() <= 2);
        for n in f.notifications {
            for a in n.alerts {
                seen.insert(a.labels["i"].clone());
            }
        }
        now += 1;
    }
    assert_eq!(seen.len(), 10, "every alert notified eventually");
    assert!(now > 120, "spread over minutes, not sent at once");
}

#[test]
fn routes_send_to_several_receivers_with_continue() {
    let mut d = dispatcher(
        r#"
route:
  receiver: ops
  group_wait: 0s
  routes:
    - { matchers: ['severity="critical"'], receiver: pager, continue: true }
    - { matchers: ['team="gpu"'], receiver: gpu }
receivers: [{ name: ops }, { name: pager }, { name: gpu }]
"#,
    );
    d.ingest(
        vec![alert(
            "A",
            &[("severity", "critical"), ("team", "gpu")],
            0,
            240,
        )],
        t(0),
    );
    // Alertmanager semantics: `continue` goes on to the siblings; the parent only
    // takes alerts no child took.
    d.ingest(vec![alert("B", &[("severity", "critical")], 0, 240)], t(0));
    d.ingest(vec![alert("C", &[], 0, 240)], t(0));
    let f = d.tick(t(0));
    let r: Vec<String> = f
        .notifications
        .iter()
        .map(|n| {
            format!(
                "{}:{}",
                n.receiver,
                n.alerts
                    .iter()
                    .map(|a| a.name())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<String>()
            )
        })
        .collect();
    let r: BTreeSet<String> = r.into_iter().collect();
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        ["gpu:A", "ops:C", "pager:AB"]
    );
}

#[test]
fn history_records_fired_notified_resolved() {
    let mut d = dispatcher(BASIC);
    d.ingest(vec![alert("A", &[], 0, 30)], t(0));
    d.tick(t(10));
    d.tick(t(40)); // timed out (no re-send) → resolved
    let kinds: Vec<EventKind> = d.history().iter().rev().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Fired, EventKind::Notified, EventKind::Resolved]
    );
}

#[test]
fn group_wait_zero_group_is_due_the_moment_its_alert_arrives() {
    // The driver ticks right after taking a batch and sleeps until `next_due`: a new
    // group with group_wait 0 must be due at the ingest instant itself, so its first
    // notification leaves without waiting for any later tick.
    let mut d = dispatcher(
        "route: { receiver: r, group_by: [alertname, name], group_wait: 0s, group_interval: 1s }\nreceivers: [{ name: r }]",
    );
    let now = t(100) + CDuration::milliseconds(437);
    // startsAt a few ms before the dispatcher sees it (the evaluation timestamp).
    let mut a = alert("A", &[("name", "x")], 100, 340);
    a.starts_at = now - CDuration::milliseconds(3);
    d.ingest(vec![a.clone()], now);
    assert_eq!(d.next_due(), Some(now), "due at once, not at a later tick");
    let f = d.tick(now);
    assert_eq!(names(&f), [1]);
    assert_eq!(f.notifications[0].flushed_at, now);
    // Even an alert stamped after the dispatcher's clock (skew) is due at once.
    let mut b = alert("A", &[("name", "y")], 100, 340);
    b.starts_at = now + CDuration::milliseconds(5);
    d.ingest(vec![b], now);
    assert_eq!(names(&d.tick(now)), [1]);
}

#[test]
fn posted_alerts_cannot_fill_the_alert_store_and_push_out_rule_alerts() {
    let mut d = dispatcher(BASIC);
    d.set_max_external(3);
    let posted = |i: usize| alert("Posted", &[("i", &i.to_string())], 0, 10_000);
    // Three fit; a batch with any new alert past the cap is refused whole.
    let batch: Vec<Alert> = (0..3).map(posted).collect();
    assert!(d.ingest_external(batch, t(0)).is_ok());
    assert_eq!(d.external_alerts(), 3);
    assert_eq!(d.ingest_external(vec![posted(4)], t(0)).err(), Some(0));
    assert_eq!(
        d.ingest_external(vec![posted(1), posted(4)], t(0)).err(),
        Some(0)
    );
    // Re-posting held alerts (to keep them firing) takes no new room.
    assert!(d.ingest_external(vec![posted(0), posted(1)], t(0)).is_ok());
    // A batch that slipped past admission is still held to the cap in the dispatcher.
    d.ingest_from(vec![posted(5)], Origin::External, t(1));
    assert_eq!(d.external_alerts(), 3);
    assert_eq!(d.refused_external, 1);
    // Rule alerts are never refused for posted ones.
    let rules: Vec<Alert> = (0..50)
        .map(|i| alert("Rule", &[("i", &i.to_string())], 0, 10_000))
        .collect();
    d.ingest(rules, t(2));
    assert_eq!(d.refused, 0);
    let held = d.alerts(t(3));
    assert_eq!(held.iter().filter(|v| v.alert.name() == "Rule").count(), 50);
    // A rule alert with a posted alert's labels takes it over: room frees.
    d.ingest(vec![posted(0)], t(4));
    assert_eq!(d.external_alerts(), 2);
    assert!(d.ingest_external(vec![posted(6)], t(4)).is_ok());
    assert_eq!(d.external_alerts(), 3);
    // Posted alerts leave the count when they are dropped after resolving.
    d.ingest_from(
        vec![alert("Posted", &[("i", "1")], 0, 5)],
        Origin::External,
        t(5),
    );
    d.tick(t(5 + 16 * 60));
    assert_eq!(d.external_alerts(), 2, "posted 2 and 6 stay until they end");
}

#[test]
fn posted_alert_dropped_after_resolving_is_admitted_as_new_and_stored_or_refused_never_both() {
    let mut d = dispatcher(BASIC);
    d.set_max_external(2);
    let posted = |i: usize, end: i64| alert("Posted", &[("i", &i.to_string())], 0, end);
    assert!(d
        .ingest_external(vec![posted(0, 5), posted(1, 10_000)], t(0))
        .is_ok());
    // 0 resolves and is dropped; 2 takes its room; 0 again is new and does not fit.
    d.tick(t(5 + 16 * 60));
    assert_eq!(d.external_alerts(), 1);
    assert!(d.ingest_external(vec![posted(2, 10_000)], t(1000)).is_ok());
    assert_eq!(
        d.ingest_external(vec![posted(0, 10_000)], t(1000)).err(),
        Some(0)
    );
    // Every batch answered Ok is held.
    let held: BTreeSet<String> = d
        .alerts(t(1000))
        .iter()
        .map(|v| v.alert.labels["i"].clone())
        .collect();
    assert_eq!(held, BTreeSet::from(["1".to_string(), "2".to_string()]));
    assert_eq!(d.refused_external, 0, "nothing refused after admission");
}

#[test]
fn rule_alert_taking_over_a_posted_one_cannot_pass_the_rule_alert_cap() {
    let mut d = dispatcher(BASIC);
    d.set_max_alerts(2);
    let a = |name: &str, i: usize| alert(name, &[("i", &i.to_string())], 0, 10_000);
    assert!(d.ingest_external(vec![a("Shared", 0)], t(0)).is_ok());
    d.ingest(vec![a("Rule", 0), a("Rule", 1)], t(0));
    assert_eq!(d.refused, 0);
    // The rule alerts are at their cap: taking over the posted alert is refused like a
    // new rule alert would be, and the posted one stays posted.
    d.ingest(vec![a("Shared", 0)], t(1));
    assert_eq!(d.refused, 1);
    assert_eq!(d.external_alerts(), 1);
    assert_eq!(d.alerts(t(1)).len(), 3);
    // With room again (a rule alert resolved and dropped), it takes it over.
    d.ingest(vec![alert("Rule", &[("i", "1")], 0, 5)], t(2));
    d.tick(t(5 + 16 * 60));
    d.ingest(vec![a("Shared", 0)], t(5 + 16 * 60));
    assert_eq!(d.external_alerts(), 0);
    assert_eq!(d.refused, 1);
}
