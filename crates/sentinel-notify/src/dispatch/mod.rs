//! The dispatcher: from the rule engine's alerts to notifications, with
//! Alertmanager's semantics: routing (`route`), aggregation groups flushed after
//! `group_wait`, then every `group_interval` when something changed, and again after
//! `repeat_interval` (the dedup rules of Alertmanager's `DedupStage.needsUpdate`);
//! resolved alerts leave a group once notified; inhibition and silences mute alerts at
//! flush time; a per-receiver rate limit delays a group (which keeps gathering alerts)
//! instead of dropping anything.
//!
//! Everything here is a pure decision over an explicit `now`: no I/O, no clock, no
//! sleeping. The notifier (`crate::Notifier`) owns the clock, persists silences and
//! the notification log, and hands notifications to the outbox.

pub mod inhibit;
pub mod matcher;
pub mod route;
pub mod silence;

use crate::config::NotifyConfig;
use crate::notification::Notification;
use crate::webhook::payload::label_set_string;
use chrono::{DateTime, Duration as CDuration, Utc};
use inhibit::Inhibitor;
use route::Route;
use sentinel_base::alert::Alert;
use serde::{Deserialize, Serialize};
use silence::Silences;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Most rule alerts held at once; beyond it new fingerprints are refused and counted.
/// Posted (external) alerts do not count against it: they have their own cap.
pub const MAX_ALERTS: usize = 100_000;
/// Most posted (external, `POST /api/v2/alerts`) alerts held at once, firing or
/// resolved and still kept; beyond it new ones are refused (the API answers 429).
pub const MAX_EXTERNAL_ALERTS: usize = 10_000;
/// Most history events kept, whatever the retention.
const MAX_HISTORY: usize = 100_000;
/// Resolved alerts stay visible (and can still be notified) this long.
const RESOLVED_RETENTION: CDuration = CDuration::minutes(15);

/// What a receiver's integrations need from the dispatcher.
#[derive(Debug, Clone, Default)]
pub struct ReceiverInfo {
    /// Has webhooks or emails (grouped notifications).
    pub grouped: bool,
    /// Some grouped integration wants resolved notifications.
    pub send_resolved: bool,
    /// Has Alertmanager forwarding (every incoming batch is forwarded).
    pub forwards: bool,
    pub max_per_minute: u32,
}

/// The notification log entry of one group at one receiver (Alertmanager's nflog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fired,
    Resolved,
    Notified,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub alertname: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiver: Option<String>,
}

/// Chooses alerts to view: sees every alert (borrowed) with its status, `firing` or
/// `resolved`, and returns the indices of those to view, in the order to view them.
pub type PickAlerts<'p> = dyn FnMut(&[(&Alert, &'static str)]) -> Vec<usize> + 'p;

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    pub fingerprint: String,
    pub status: &'static str,
    #[serde(rename = "silencedBy")]
    pub silenced_by: Vec<String>,
    pub inhibited: bool,
    pub receivers: Vec<String>,
}

struct Stored {
    alert: Alert,
    /// Last state recorded in the history, to notice transitions (incl. timeouts).
    firing: bool,
    /// Posted by a client and never sent by the rules: counts against
    /// [`MAX_EXTERNAL_ALERTS`], not [`MAX_ALERTS`].
    external: bool,
}

/// Where a batch of alerts comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The rule engine.
    Rules,
    /// A client (`POST /api/v2/alerts`); [`Dispatcher::ingest_external`] admits and
    /// takes such a batch in one step.
    External,
}

struct Group {
    key: String,
    receiver: String,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<u64, Alert>,
    next_flush: DateTime<Utc>,
    group_interval: Duration,
    repeat_interval: Duration,
}

struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// Outcome of a tick: notifications to enqueue and log entries to persist.
#[derive(Default)]
pub struct Flush {
    pub notifications: Vec<Notification>,
    pub log: Vec<(String, LogEntry)>,
}

pub struct Dispatcher {
    root: Route,
    receivers: BTreeMap<String, ReceiverInfo>,
    inhibitor: Inhibitor,
    alerts: BTreeMap<u64, Stored>,
    groups: BTreeMap<(usize, String), Group>,
    nflog: BTreeMap<String, LogEntry>,
    buckets: BTreeMap<String, Bucket>,
    pub silences: Silences,
    history: VecDeque<HistoryEvent>,
    /// Events not yet handed to storage (see [`Dispatcher::take_new_history`]).
    history_new: Vec<HistoryEvent>,
    history_retention: CDuration,
    /// Alerts refused because the store was full.
    pub refused: u64,
    /// Posted alerts refused because [`MAX_EXTERNAL_ALERTS`] were held.
    pub refused_external: u64,
    /// Posted alerts held (`external` in [`Stored`]).
    external_held: usize,
    max_external: usize,
    /// The rule-alert cap ([`MAX_ALERTS`]; tests use a small one).
    max_alerts: usize,
}

fn to_cd(d: Duration) -> CDuration {
    CDuration::from_std(d).unwrap_or(CDuration::MAX)
}

impl Dispatcher {
    pub fn new(cfg: &NotifyConfig, receivers: BTreeMap<String, ReceiverInfo>) -> Dispatcher {
        Dispatcher {
            root: Route::build(&cfg.route),
            receivers,
            inhibitor: Inhibitor::new(cfg),
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            nflog: BTreeMap::new(),
            buckets: BTreeMap::new(),
            silences: Silences::default(),
            history: VecDeque::new(),
            history_new: Vec::new(),
            history_retention: to_cd(cfg.history_retention.get()),
            refused: 0,
            refused_external: 0,
            external_held: 0,
            max_external: MAX_EXTERNAL_ALERTS,
            max_alerts: MAX_ALERTS,
        }
    }

    /// The posted-alert cap (tests use a small one).
    pub fn set_max_external(&mut self, n: usize) {
        self.max_external = n;
    }

    /// The rule-alert cap (tests use a small one).
    pub fn set_max_alerts(&mut self, n: usize) {
        self.max_alerts = n;
    }

    /// Rule alerts held now.
    fn rule_alerts(&self) -> usize {
        self.alerts.len() - self.external_held
    }

    /// The posted-alert cap.
    pub fn max_external(&self) -> usize {
        self.max_external
    }

    /// Posted alerts held now.
    pub fn external_alerts(&self) -> usize {
        self.external_held
    }

    /// Takes a batch of posted alerts when the alerts it would add (fingerprints not
    /// held) fit under the posted-alert cap, all of it in this one step (so nothing held
    /// when it was admitted can go before it is taken): `Ok` means every alert is
    /// stored, with the batches to forward as [`Dispatcher::ingest_from`] returns them;
    /// `Err(room)` when they do not fit (nothing taken).
    pub fn ingest_external(
        &mut self,
        alerts: Vec<Alert>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, usize> {
        let new: BTreeSet<u64> = alerts
            .iter()
            .map(Alert::fingerprint)
            .filter(|fp| !self.alerts.contains_key(fp))
            .collect();
        let room = self.max_external.saturating_sub(self.external_held);
        if new.len() > room {
            return Err(room);
        }
        Ok(self.ingest_from(alerts, Origin::External, now))
    }

    /// Takes a new config; groups on routes that no longer exist are dropped (their
    /// alerts are regrouped on the next send from the rule engine).
    pub fn reconfigure(&mut self, cfg: &NotifyConfig, receivers: BTreeMap<String, ReceiverInfo>) {
        self.root = Route::build(&cfg.route);
        self.receivers = receivers;
        self.inhibitor = Inhibitor::new(cfg);
        self.history_retention = to_cd(cfg.history_retention.get());
        let mut keep = BTreeSet::new();
        self.root.walk(&mut |r| {
            keep.insert((r.id, r.receiver.clone()));
        });
        self.groups
            .retain(|(id, _), g| keep.contains(&(*id, g.receiver.clone())));
    }

    pub fn restore_log(&mut self, key: String, e: LogEntry) {
        self.nflog.insert(key, e);
    }

    /// Takes alerts from the rule engine. Returns the batches to forward to receivers
    /// with Alertmanager integrations (one notification per receiver).
    pub fn ingest(&mut self, alerts: Vec<Alert>, now: DateTime<Utc>) -> Vec<Notification> {
        self.ingest_from(alerts, Origin::Rules, now)
    }

    /// [`Dispatcher::ingest`] for alerts of `origin`. Rule alerts count against
    /// [`MAX_ALERTS`] and posted ones against [`MAX_EXTERNAL_ALERTS`], so posted alerts
    /// never take the room of rule alerts; a rule alert with a posted one's labels takes
    /// it over when the rule alerts have room (else it is refused, as a new one is).
    pub fn ingest_from(
        &mut self,
        alerts: Vec<Alert>,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let external = origin == Origin::External;
        // Per receiver, by fingerprint: an alert on two routes of one receiver is
        // forwarded once.
        let mut forwards: BTreeMap<String, BTreeMap<u64, Alert>> = BTreeMap::new();
        for a in alerts {
            let fp = a.fingerprint();
            let firing = !a.is_resolved_at(now);
            let rules_full = self.rule_alerts() >= self.max_alerts;
            match self.alerts.get_mut(&fp) {
                Some(s) => {
                    if s.external && !external && rules_full {
                        // Taking it over would hold one rule alert past the cap.
                        self.refused += 1;
                        continue;
                    }
                    if s.firing != firing {
                        s.firing = firing;
                        let kind = if firing {
                            EventKind::Fired
                        } else {
                            EventKind::Resolved
                        };
                        push_history(
                            &mut self.history,
                            &mut self.history_new,
                            now,
                            kind,
                            &a,
                            None,
                        );
                    }
                    s.alert = a.clone();
                    if s.external && !external {
                        s.external = false;
                        self.external_held -= 1;
                    }
                }
                None => {
                    if external {
                        if self.external_held >= self.max_external {
                            self.refused_external += 1;
                            continue;
                        }
                        self.external_held += 1;
                    } else if rules_full {
                        self.refused += 1;
                        continue;
                    }
                    if !firing {
                        // A resolve for an alert we never saw firing: record nothing,
                        // still route it (a group may hold it from before a restart).
                    } else {
                        self.history_push(now, EventKind::Fired, &a, None);
                    }
                    self.alerts.insert(
                        fp,
                        Stored {
                            alert: a.clone(),
                            firing,
                            external,
                        },
                    );
                }
            }
            for r in self.root.matching(&a.labels) {
                let info = self.receivers.get(&r.receiver).cloned().unwrap_or_default();
                if info.forwards {
                    forwards
                        .entry(r.receiver.clone())
                        .or_default()
                        .insert(fp, a.clone());
                }
                if !info.grouped {
                    continue;
                }
                let labels = r.group_labels(&a.labels);
                let key = format!("{}:{}", r.key, label_set_string(&labels));
                let g = self.groups.entry((r.id, key.clone())).or_insert_with(|| {
                    // Alertmanager flushes a new group at once when its alert has
                    // already waited out group_wait (e.g. after a restart).
                    let wait_over = a.starts_at + to_cd(r.group_wait) <= now;
                    Group {
                        key,
                        receiver: r.receiver.clone(),
                        labels,
                        alerts: BTreeMap::new(),
                        next_flush: if wait_over {
                            now
                        } else {
                            now + to_cd(r.group_wait)
                        },
                        group_interval: r.group_interval,
                        repeat_interval: r.repeat_interval,
                    }
                });
                g.alerts.insert(fp, a.clone());
            }
        }
        forwards
            .into_iter()
            .map(|(receiver, alerts)| Notification {
                receiver,
                group_key: "forward".into(),
                group_labels: BTreeMap::new(),
                alerts: alerts.into_values().collect(),
                flushed_at: now,
            })
            .collect()
    }

    /// When the next group is due (for the driver's sleep).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    fn muted(&self, a: &Alert, inh: &inhibit::Snapshot, now: DateTime<Utc>) -> bool {
        inh.inhibits(a) || !self.silences.silenced_by(&a.labels, now).is_empty()
    }

    /// Flushes every due group.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Flush {
        self.housekeeping(now);
        let mut out = Flush::default();
        let due: Vec<(usize, String)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return out;
        }
        let inh = self
            .inhibitor
            .snapshot(self.alerts.values().map(|s| &s.alert), now);
        for gk in due {
            let Some(receiver) = self.groups.get(&gk).map(|g| g.receiver.clone()) else {
                continue;
            };
            let info = self.receivers.get(&receiver).cloned().unwrap_or_default();
            if !self.take_token(&receiver, info.max_per_minute, now) {
                let wait = self.token_wait(&receiver, info.max_per_minute, now);
                if let Some(g) = self.groups.get_mut(&gk) {
                    g.next_flush = now + wait;
                }
                continue;
            }
            let g = self.groups.get(&gk).expect("present: looked up above");
            let alerts: Vec<Alert> = g
                .alerts
                .values()
                .filter(|a| !self.muted(a, &inh, now))
                .cloned()
                .collect();
            let firing: BTreeSet<u64> = alerts
                .iter()
                .filter(|a| !a.is_resolved_at(now))
                .map(Alert::fingerprint)
                .collect();
            let resolved: BTreeSet<u64> = alerts
                .iter()
                .filter(|a| a.is_resolved_at(now))
                .map(Alert::fingerprint)
                .collect();
            let log_key = format!("{}\u{0}{}", g.receiver, g.key);
            let prev = self.nflog.get(&log_key);
            let notify = needs_update(
                prev,
                &firing,
                &resolved,
                info.send_resolved,
                g.repeat_interval,
                now,
            );
            let resolved_all: Vec<(u64, Alert)> = g
                .alerts
                .iter()
                .filter(|(_, a)| a.is_resolved_at(now))
                .map(|(k, a)| (*k, a.clone()))
                .collect();
            let (receiver, key, labels) = (g.receiver.clone(), g.key.clone(), g.labels.clone());
            let receiver_name = receiver.clone();
            if notify {
                let entry = LogEntry {
                    firing,
                    resolved,
                    at: now,
                };
                self.nflog.insert(log_key.clone(), entry.clone());
                out.log.push((log_key, entry));
                // Nothing to say to a receiver that wants no resolved notifications
                // when all are resolved; the log still records it.
                let sendable = alerts.iter().any(|a| !a.is_resolved_at(now)) || info.send_resolved;
                if sendable && !alerts.is_empty() {
                    for a in &alerts {
                        self.history_push(now, EventKind::Notified, a, Some(receiver.clone()));
                    }
                    out.notifications.push(Notification {
                        receiver,
                        group_key: key,
                        group_labels: labels,
                        alerts,
                        flushed_at: now,
                    });
                } else {
                    self.refund_token(&receiver_name);
                }
            } else {
                self.refund_token(&receiver);
            }
            let g = self.groups.get_mut(&gk).expect("present: looked up above");
            // Alertmanager deletes the resolved alerts it flushed, unless they changed.
            for (fp, a) in resolved_all {
                if g.alerts.get(&fp) == Some(&a) {
                    g.alerts.remove(&fp);
                }
            }
            g.next_flush = now + to_cd(g.group_interval);
            if g.alerts.is_empty() {
                self.groups.remove(&gk);
            }
        }
        out
    }

    fn take_token(&mut self, receiver: &str, per_minute: u32, now: DateTime<Utc>) -> bool {
        if per_minute == 0 {
            return true;
        }
        let cap = per_minute as f64;
        let b = self.buckets.entry(receiver.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 60_000.0;
        b.tokens = (b.tokens + elapsed * cap).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refund_token(&mut self, receiver: &str) {
        if let Some(b) = self.buckets.get_mut(receiver) {
            b.tokens += 1.0;
        }
    }

    fn token_wait(&self, receiver: &str, per_minute: u32, _now: DateTime<Utc>) -> CDuration {
        let missing = self
            .buckets
            .get(receiver)
            .map(|b| 1.0 - b.tokens)
            .unwrap_or(0.0)
            .max(0.0);
        let ms = (missing * 60_000.0 / per_minute.max(1) as f64).ceil() as i64;
        CDuration::milliseconds(ms.max(100))
    }

    fn history_push(
        &mut self,
        now: DateTime<Utc>,
        kind: EventKind,
        a: &Alert,
        receiver: Option<String>,
    ) {
        push_history(
            &mut self.history,
            &mut self.history_new,
            now,
            kind,
            a,
            receiver,
        );
    }

    fn housekeeping(&mut self, now: DateTime<Utc>) {
        // Alerts that stopped being re-sent time out into resolved, as in Alertmanager.
        let mut timed_out = Vec::new();
        for s in self.alerts.values_mut() {
            if s.firing && s.alert.is_resolved_at(now) {
                s.firing = false;
                timed_out.push(s.alert.clone());
            }
        }
        for a in timed_out {
            self.history_push(now, EventKind::Resolved, &a, None);
        }
        let mut external_gone = 0;
        self.alerts.retain(|_, s| {
            let keep = s.firing || s.alert.ends_at + RESOLVED_RETENTION > now;
            if !keep && s.external {
                external_gone += 1;
            }
            keep
        });
        self.external_held -= external_gone;
        let cutoff = now - self.history_retention;
        while self.history.front().is_some_and(|e| e.at < cutoff) {
            self.history.pop_front();
        }
        self.silences.gc(cutoff);
    }

    /// Notification-log keys older than the history retention (the caller deletes
    /// them from storage).
    pub fn gc_log(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let cutoff = now - self.history_retention;
        let old: Vec<String> = self
            .nflog
            .iter()
            .filter(|(_, e)| e.at < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.nflog.remove(k);
        }
        old
    }

    /// Events recorded since the last call, for the notifier to persist.
    pub fn take_new_history(&mut self) -> Vec<HistoryEvent> {
        std::mem::take(&mut self.history_new)
    }

    /// Loads stored events (oldest first), keeping those within the retention.
    pub fn restore_history(&mut self, events: Vec<HistoryEvent>, now: DateTime<Utc>) {
        let cutoff = now - self.history_retention;
        for e in events.into_iter().filter(|e| e.at >= cutoff) {
            if self.history.len() >= MAX_HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(e);
        }
    }

    pub fn history_retention(&self) -> CDuration {
        self.history_retention
    }

    pub fn history(&self) -> Vec<HistoryEvent> {
        self.history.iter().rev().cloned().collect()
    }

    /// Every aggregation group: `(receiver, group labels, fingerprints of its alerts)`,
    /// for Alertmanager's `/api/v2/alerts/groups`.
    pub fn group_views(&self) -> Vec<(String, BTreeMap<String, String>, Vec<u64>)> {
        self.groups
            .values()
            .map(|g| {
                (
                    g.receiver.clone(),
                    g.labels.clone(),
                    g.alerts.keys().copied().collect(),
                )
            })
            .collect()
    }

    /// Every known alert with its muting state.
    pub fn alerts(&self, now: DateTime<Utc>) -> Vec<AlertView> {
        self.alerts_picked(now, &mut |all| (0..all.len()).collect())
    }

    /// The alerts `pick` chooses, with their muting state, in the order it gives. `pick`
    /// sees every alert, borrowed, with its status (`firing` or `resolved`), and returns
    /// the indices of those to view: only those are cloned.
    pub fn alerts_picked(&self, now: DateTime<Utc>, pick: &mut PickAlerts<'_>) -> Vec<AlertView> {
        let all: Vec<(&Alert, &'static str)> = self
            .alerts
            .values()
            .map(|s| {
                let status = if s.alert.is_resolved_at(now) {
                    "resolved"
                } else {
                    "firing"
                };
                (&s.alert, status)
            })
            .collect();
        let picked = pick(&all);
        let inh = self.inhibitor.snapshot(all.iter().map(|(a, _)| *a), now);
        picked
            .into_iter()
            .filter_map(|i| all.get(i))
            .map(|&(alert, status)| AlertView {
                fingerprint: alert.fingerprint_hex(),
                status,
                silenced_by: self.silences.silenced_by(&alert.labels, now),
                inhibited: inh.inhibits(alert),
                receivers: self
                    .root
                    .matching(&alert.labels)
                    .iter()
                    .map(|r| r.receiver.clone())
                    .collect(),
                alert: alert.clone(),
            })
            .collect()
    }
}

fn push_history(
    h: &mut VecDeque<HistoryEvent>,
    new: &mut Vec<HistoryEvent>,
    now: DateTime<Utc>,
    kind: EventKind,
    a: &Alert,
    receiver: Option<String>,
) {
    if h.len() >= MAX_HISTORY {
        h.pop_front();
    }
    let e = HistoryEvent {
        at: now,
        kind,
        alertname: a.name().to_string(),
        fingerprint: a.fingerprint_hex(),
        labels: a.labels.clone(),
        receiver,
    };
    // Bounded like the history itself, should storage stop draining it.
    if new.len() < MAX_HISTORY {
        new.push(e.clone());
    }
    h.push_back(e);
}

/// Alertmanager's `DedupStage.needsUpdate`.
pub fn needs_update(
    prev: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(e) = prev else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    if firing.is_empty() {
        // All resolved: tell the receiver only if it had been told they fired.
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    e.at + to_cd(repeat) <= now
}

#[cfg(test)]
mod tests;
