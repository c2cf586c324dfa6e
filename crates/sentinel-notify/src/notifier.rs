//! The running notification pipeline, composed where the flow can be read:
//!
//! ```text
//! AlertSink::send ─▶ channel ─▶ dispatcher.ingest ─┬─▶ forwards ─────────────┐
//!                               dispatcher.tick ───┴─▶ grouped notifications ─┴─▶ outbox.put (fsync)
//!                                                                                  │
//!   delivery loop: outbox.due ─▶ receiver.notify (one attempt) ─▶ complete | reschedule | dead letter
//! ```
//!
//! Two tasks: the driver (owns the dispatcher's clock) and the delivery loop. `send`
//! never blocks. The HTTP API reads through the methods at the bottom.

use crate::config::NotifyConfig;
use crate::dispatch::silence::{Silence, SilenceError};
use crate::dispatch::{AlertView, Dispatcher, HistoryEvent, LogEntry, Origin, ReceiverInfo};
use crate::metrics::Metrics;
use crate::notification::Notification;
use crate::outbox::{Attempt, DeadLetter, Entry, Outbox};
use crate::receiver::alertmanager::Alertmanager;
use crate::receiver::email::Email;
use crate::receiver::webhook::Webhook;
use crate::receiver::{Delivery, Notify};
use crate::retry::Backoff;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use sentinel_base::alert::{Alert, AlertSink};
use sentinel_base::config::FieldError;
use sentinel_base::metrics::registry::Registry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify as Wake, Semaphore};

const SILENCE_PREFIX: &str = "silence/";
const NFLOG_PREFIX: &str = "nflog/";
/// History keys sort by time: `history/<unix millis, 15 digits>/<seq>`.
const HISTORY_PREFIX: &str = "history/";

fn history_key(at: DateTime<Utc>, seq: u64) -> String {
    format!(
        "{HISTORY_PREFIX}{:015}/{seq:08}",
        at.timestamp_millis().max(0)
    )
}

/// A batch of rule alerts on its way to the dispatcher (posted alerts are taken by
/// [`Notifier::send_external`] at once).
type Batch = Vec<Alert>;

struct Integration {
    name: String,
    notify: Arc<dyn Notify>,
}

/// What a config builds: receivers and retry policy.
struct Runtime {
    external_url: String,
    integrations: BTreeMap<String, Vec<Integration>>,
    backoff: Backoff,
    max_attempts: u32,
    max_pending: usize,
}

/// Why a notify config cannot be turned into running receivers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The config fails validation at `path` (`notify.outbox.max_attempts`).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// One integration of a receiver cannot be built (its TLS client, its keys, ...).
    #[error("notify.receivers[{receiver}].{kind}[{index}]: {reason}")]
    Receiver {
        receiver: usize,
        /// `webhooks`, `emails` or `alertmanagers`.
        kind: &'static str,
        index: usize,
        reason: crate::receiver::ReceiverError,
    },
    #[error("outbox: {0}")]
    Backoff(#[from] crate::retry::BackoffError),
}

impl BuildError {
    fn receiver(
        receiver: usize,
        kind: &'static str,
        index: usize,
        reason: crate::receiver::ReceiverError,
    ) -> Self {
        BuildError::Receiver {
            receiver,
            kind,
            index,
            reason,
        }
    }
}

/// `/readyz`'s reason when notifications are not being persisted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification outbox cannot persist ({reason}); alerts go out best-effort from memory")]
pub struct NotPersisting {
    /// The outbox's last storage error.
    pub reason: String,
}

/// For callers that report readiness as text.
impl From<NotPersisting> for String {
    fn from(e: NotPersisting) -> String {
        e.to_string()
    }
}

fn build_runtime(
    cfg: &NotifyConfig,
) -> Result<(Runtime, BTreeMap<String, ReceiverInfo>), BuildError> {
    cfg.validate()
        .map_err(|FieldError { path, message }| BuildError::Invalid { path, message })?;
    let mut integrations = BTreeMap::new();
    let mut infos = BTreeMap::new();
    for (ri, r) in cfg.receivers.iter().enumerate() {
        let mut list = Vec::new();
        let mut info = ReceiverInfo {
            max_per_minute: r.max_notifications_per_minute,
            ..Default::default()
        };
        for (i, w) in r.webhooks.iter().enumerate() {
            let n =
                Webhook::new(w.clone()).map_err(|e| BuildError::receiver(ri, "webhooks", i, e))?;
            info.grouped = true;
            info.send_resolved |= n.send_resolved();
            list.push(Integration {
                name: format!("webhook/{i}"),
                notify: Arc::new(n),
            });
        }
        for (i, w) in r.emails.iter().enumerate() {
            let n = Email::new(w.clone()).map_err(|e| BuildError::receiver(ri, "emails", i, e))?;
            info.grouped = true;
            info.send_resolved |= n.send_resolved();
            list.push(Integration {
                name: format!("email/{i}"),
                notify: Arc::new(n),
            });
        }
        for (i, w) in r.alertmanagers.iter().enumerate() {
            let n = Alertmanager::new(w.clone())
                .map_err(|e| BuildError::receiver(ri, "alertmanagers", i, e))?;
            info.forwards = true;
            list.push(Integration {
                name: format!("alertmanager/{i}"),
                notify: Arc::new(n),
            });
        }
        integrations.insert(r.name.clone(), list);
        infos.insert(r.name.clone(), info);
    }
    let backoff = cfg.outbox.backoff()?;
    Ok((
        Runtime {
            external_url: cfg.external_url.clone(),
            integrations,
            backoff,
            max_attempts: cfg.outbox.max_attempts,
            max_pending: cfg.outbox.max_pending,
        },
        infos,
    ))
}

pub struct Notifier {
    runtime: RwLock<Arc<Runtime>>,
    dispatcher: Mutex<Dispatcher>,
    outbox: Arc<Outbox>,
    metrics: Metrics,
    tx: mpsc::UnboundedSender<Batch>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Batch>>>,
    wake_delivery: Wake,
    /// Entries being attempted: id → `receiver/integration`. Claimed under this lock
    /// together with the choice of what is due, so a forward merge never rewrites an
    /// entry that is on its way out.
    in_flight: Mutex<HashMap<String, String>>,
    /// Tie-breaker for history keys recorded in the same millisecond.
    history_seq: Mutex<u64>,
    /// Held from taking a batch into the dispatcher until its forwarded copies are
    /// enqueued, by the driver (rule batches) and by posts alike: forwards reach the
    /// outbox in the order the dispatcher saw their alerts, so an older state of an
    /// alert never overtakes a newer one on its way to Alertmanager.
    forward_order: Mutex<()>,
    /// Wakes the driver after a post, to flush the groups it made due (a stored permit:
    /// posts before the driver wakes coalesce into one).
    wake_driver: Wake,
    /// Called by a post between taking its alerts and enqueueing their forwards.
    #[cfg(test)]
    window_hook: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    permits: Arc<Semaphore>,
    persistence_enabled: bool,
    /// Some receiver is configured (otherwise persistence does not matter).
    has_receivers: std::sync::atomic::AtomicBool,
}

impl Notifier {
    /// Builds receivers from a validated config and opens the outbox under
    /// `data_dir`. Nothing runs until [`Notifier::start`].
    pub fn new(
        cfg: &NotifyConfig,
        data_dir: &Path,
        registry: &Registry,
    ) -> Result<Arc<Self>, BuildError> {
        let (rt, infos) = build_runtime(cfg)?;
        let outbox = if !cfg.outbox.enabled {
            Outbox::in_memory()
        } else if cfg.receivers.is_empty() {
            Outbox::deferred(data_dir)
        } else {
            Outbox::open(data_dir)
        };
        let metrics = Metrics::register(registry);
        for r in &cfg.receivers {
            metrics.touch_receiver(&r.name);
        }
        let mut d = Dispatcher::new(cfg, infos);
        for (_, v) in outbox.kv_scan(SILENCE_PREFIX) {
            if let Ok(s) = serde_json::from_slice::<Silence>(&v) {
                d.silences.restore(s);
            }
        }
        let history: Vec<HistoryEvent> = outbox
            .kv_scan(HISTORY_PREFIX)
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        d.restore_history(history, Utc::now());
        for (k, v) in outbox.kv_scan(NFLOG_PREFIX) {
            if let Ok(e) = serde_json::from_slice::<LogEntry>(&v) {
                d.restore_log(k[NFLOG_PREFIX.len()..].to_string(), e);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let n = Arc::new(Notifier {
            runtime: RwLock::new(Arc::new(rt)),
            dispatcher: Mutex::new(d),
            outbox: Arc::new(outbox),
            metrics,
            tx,
            rx: Mutex::new(Some(rx)),
            wake_delivery: Wake::new(),
            in_flight: Mutex::new(HashMap::new()),
            history_seq: Mutex::new(0),
            forward_order: Mutex::new(()),
            wake_driver: Wake::new(),
            #[cfg(test)]
            window_hook: Mutex::new(None),
            permits: Arc::new(Semaphore::new(cfg.outbox.concurrency)),
            persistence_enabled: cfg.outbox.enabled,
            has_receivers: (!cfg.receivers.is_empty()).into(),
        });
        n.update_gauges();
        Ok(n)
    }

    /// Spawns the driver and the delivery loop on the current tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let Some(rx) = self.rx.lock().take() else {
            return;
        };
        tokio::spawn(self.clone().drive(rx));
        tokio::spawn(self.clone().deliver_loop());
    }

    /// Applies a new config (receivers, routes, retry policy); pending notifications
    /// keep their ids and go to the receiver of the same name and integration index.
    pub fn reconfigure(&self, cfg: &NotifyConfig) -> Result<(), BuildError> {
        let (rt, infos) = build_runtime(cfg)?;
        for r in &cfg.receivers {
            self.metrics.touch_receiver(&r.name);
        }
        *self.runtime.write() = Arc::new(rt);
        let has = !cfg.receivers.is_empty();
        self.has_receivers
            .store(has, std::sync::atomic::Ordering::Relaxed);
        if has && self.persistence_enabled {
            self.outbox.ensure_open();
        }
        self.dispatcher.lock().reconfigure(cfg, infos);
        self.wake_delivery.notify_one();
        Ok(())
    }

    /// Storage records for the history events recorded since the last call.
    fn new_history_records(&self, d: &mut Dispatcher) -> Vec<(String, Vec<u8>)> {
        let events = d.take_new_history();
        let mut seq = self.history_seq.lock();
        events
            .iter()
            .map(|e| {
                *seq = seq.wrapping_add(1);
                (
                    history_key(e.at, *seq),
                    serde_json::to_vec(e).expect("history events serialise"),
                )
            })
            .collect()
    }

    async fn drive(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Batch>) {
        let mut last_gc = Instant::now();
        loop {
            // History recorded while taking a batch is written with the flush that
            // follows at once, in one transaction: one fsync between an alert and its
            // notification, not two.
            let mut history_in = Vec::new();
            let now = Utc::now();
            let next = self.dispatcher.lock().next_due();
            let wait = next
                .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { return };
                    self.metrics.alerts_received.add(&[], batch.len() as f64);
                    let received = Instant::now();
                    let order = self.forward_order.lock();
                    let forwards = {
                        let mut d = self.dispatcher.lock();
                        let f = d.ingest_from(batch, Origin::Rules, Utc::now());
                        history_in = self.new_history_records(&mut d);
                        f
                    };
                    if !forwards.is_empty() {
                        self.enqueue(forwards, Vec::new(), true);
                    }
                    drop(order);
                    tracing::debug!(elapsed_us = received.elapsed().as_micros() as u64, "notify: batch taken by the dispatcher");
                }
                _ = self.wake_driver.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            let now = Utc::now();
            let (flush, old_log, history, retention) = {
                let mut d = self.dispatcher.lock();
                let f = d.tick(now);
                let mut h = history_in;
                h.extend(self.new_history_records(&mut d));
                (f, d.gc_log(now), h, d.history_retention())
            };
            for k in old_log {
                self.outbox.kv_delete(&format!("{NFLOG_PREFIX}{k}"));
            }
            if last_gc.elapsed() > Duration::from_secs(3600) {
                last_gc = Instant::now();
                let cutoff = history_key(now - retention, 0);
                self.outbox.kv_delete_range(HISTORY_PREFIX, &cutoff);
            }
            if !flush.notifications.is_empty() || !flush.log.is_empty() || !history.is_empty() {
                let mut state: Vec<(String, Vec<u8>)> = flush
                    .log
                    .iter()
                    .map(|(k, e)| {
                        (
                            format!("{NFLOG_PREFIX}{k}"),
                            serde_json::to_vec(e).expect("log entries serialise"),
                        )
                    })
                    .collect();
                state.extend(history);
                let flushed = Instant::now();
                let n = flush.notifications.len();
                self.enqueue(flush.notifications, state, false);
                if n > 0 {
                    tracing::debug!(
                        notifications = n,
                        commit_us = flushed.elapsed().as_micros() as u64,
                        "notify: group flushed and committed to the outbox"
                    );
                }
            }
        }
    }

    /// Turns notifications into one outbox entry per integration and persists them
    /// (with the notification-log entries) before any attempt.
    fn enqueue(
        &self,
        notifications: Vec<Notification>,
        state: Vec<(String, Vec<u8>)>,
        forward: bool,
    ) {
        // Without receivers there is nothing to deliver, and no reason to hold the
        // data dir's file (history stays in memory).
        if !self
            .has_receivers
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let rt = self.runtime.read().clone();
        let now = Utc::now();
        let mut entries = Vec::new();
        for n in notifications {
            let Some(list) = rt.integrations.get(&n.receiver) else {
                continue;
            };
            for integ in list {
                if (integ.notify.kind() == "alertmanager") != forward {
                    continue;
                }
                let mut n = n.clone();
                if !integ.notify.send_resolved() {
                    n.alerts.retain(|a| !a.is_resolved_at(n.flushed_at));
                }
                if n.alerts.is_empty() {
                    continue;
                }
                entries.push(Entry {
                    id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
                    receiver: n.receiver.clone(),
                    integration: integ.name.clone(),
                    notification: n,
                    created_at: now,
                    attempts: 0,
                    next_at: now,
                    last_error: None,
                });
            }
        }
        if entries.is_empty() && state.is_empty() {
            return;
        }
        // Hold the claim lock: a pending forward merged here cannot be claimed meanwhile.
        let inflight = self.in_flight.lock();
        if forward {
            entries = entries
                .into_iter()
                .map(|e| self.merge_forward(e, &inflight))
                .collect();
        }
        let persisted = self.outbox.put_with_state(&entries, &state);
        // Over the cap, the oldest waiting notifications give way (never silently).
        let excess = self.outbox.depth().saturating_sub(rt.max_pending);
        let evicted: Vec<Entry> = if excess > 0 {
            let mut old: Vec<Entry> = self
                .outbox
                .pending()
                .into_iter()
                .filter(|e| !inflight.contains_key(&e.id))
                .collect();
            old.sort_by_key(|e| e.created_at);
            old.truncate(excess);
            old
        } else {
            Vec::new()
        };
        drop(inflight);
        for e in evicted {
            self.finish_dead(
                e,
                "outbox full (outbox.max_pending): oldest notifications dropped".into(),
            );
        }
        if !persisted && self.persistence_enabled {
            self.metrics.not_persisted.add(&[], entries.len() as f64);
        }
        self.update_gauges();
        self.wake_delivery.notify_one();
    }

    /// Folds a new forward batch into the newest pending (unclaimed) forward to the same
    /// Alertmanager, newest alert per fingerprint: while an Alertmanager is down the
    /// outbox holds one forward for it, not one per evaluation.
    fn merge_forward(&self, new: Entry, inflight: &HashMap<String, String>) -> Entry {
        let key = integ_key(&new);
        let pending = self
            .outbox
            .find(|e| is_forward(e) && integ_key(e) == key && !inflight.contains_key(&e.id));
        let Some(mut old) = pending else {
            return new;
        };
        let mut by_fp: BTreeMap<u64, Alert> = old
            .notification
            .alerts
            .drain(..)
            .map(|a| (a.fingerprint(), a))
            .collect();
        for a in new.notification.alerts {
            by_fp.insert(a.fingerprint(), a);
        }
        old.notification.alerts = by_fp.into_values().collect();
        old.notification.flushed_at = new.notification.flushed_at;
        old
    }

    fn update_gauges(&self) {
        self.metrics
            .outbox_depth
            .set(&[], self.outbox.depth() as f64);
        self.metrics
            .persistent
            .set(&[], if self.outbox.persistent() { 1.0 } else { 0.0 });
    }

    async fn deliver_loop(self: Arc<Self>) {
        loop {
            let now = Utc::now();
            let due = {
                let mut inflight = self.in_flight.lock();
                let candidates = self.outbox.due(now, 256, |id| inflight.contains_key(id));
                // Forwards to one Alertmanager go one at a time, strictly oldest
                // first, so a stale "firing" can never land after a newer "resolved".
                let heads = self.outbox.heads(forward_queue);
                let mut busy: HashSet<String> = inflight.values().cloned().collect();
                let mut claimed = Vec::new();
                for e in candidates {
                    let k = integ_key(&e);
                    if is_forward(&e) && (heads.get(&k) != Some(&e.id) || !busy.insert(k.clone())) {
                        continue;
                    }
                    inflight.insert(e.id.clone(), k);
                    claimed.push(e);
                }
                claimed
            };
            for e in due {
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let id = e.id.clone();
                    me.attempt(e).await;
                    me.in_flight.lock().remove(&id);
                    drop(permit);
                    me.wake_delivery.notify_one();
                });
            }
            let next = {
                let inflight = self.in_flight.lock();
                let busy: HashSet<&String> = inflight.values().collect();
                let heads = self.outbox.heads(forward_queue);
                self.outbox.next_due(|e| {
                    inflight.contains_key(&e.id)
                        || (is_forward(e)
                            && (busy.contains(&integ_key(e))
                                || heads.get(&integ_key(e)) != Some(&e.id)))
                })
            };
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake_delivery.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, mut e: Entry) {
        let rt = self.runtime.read().clone();
        let integ = rt
            .integrations
            .get(&e.receiver)
            .and_then(|l| l.iter().find(|i| i.name == e.integration));
        let Some(integ) = integ else {
            let reason = format!(
                "receiver {}/{} is no longer configured",
                e.receiver, e.integration
            );
            self.finish_dead(e, reason);
            return;
        };
        let start = Instant::now();
        let res = integ
            .notify
            .notify(&Delivery {
                id: &e.id,
                notification: &e.notification,
                external_url: &rt.external_url,
            })
            .await;
        self.metrics
            .duration
            .observe(&[&e.receiver], start.elapsed().as_secs_f64());
        e.attempts += 1;
        let now = Utc::now();
        let mut note = Attempt {
            id: e.id.clone(),
            receiver: e.receiver.clone(),
            integration: e.integration.clone(),
            group_key: e.notification.group_key.clone(),
            alerts: e.notification.alerts.len(),
            attempt: e.attempts,
            at: now,
            result: "delivered",
            error: None,
        };
        match res {
            Ok(()) => {
                tracing::debug!(id = %e.id, attempt_us = start.elapsed().as_micros() as u64, since_flush_us = (now - e.notification.flushed_at).num_microseconds().unwrap_or(-1), "notify: delivered");
                self.metrics.notifications.inc(&[&e.receiver, "success"]);
                self.outbox.complete(&e.id);
            }
            Err(err) if err.retryable && e.attempts < rt.max_attempts => {
                let mut delay = rt.backoff.delay(e.attempts, &mut rand::rng());
                if let Some(ra) = err.retry_after {
                    delay = delay.max(ra);
                }
                tracing::warn!(receiver = %e.receiver, integration = %e.integration, id = %e.id, attempt = e.attempts, retry_in = ?delay, error = %err.reason, "notification failed; will retry");
                self.metrics.notifications.inc(&[&e.receiver, "retry"]);
                e.next_at =
                    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                e.last_error = Some(err.reason.clone());
                note.result = "retry";
                note.error = Some(err.reason);
                self.outbox.reschedule(&e);
            }
            Err(err) => {
                let why = if err.retryable {
                    format!("gave up after {} attempts: {}", e.attempts, err.reason)
                } else {
                    format!("permanent error: {}", err.reason)
                };
                note.result = "failed";
                note.error = Some(why.clone());
                self.outbox.note_attempt(note);
                self.finish_dead(e, why);
                return;
            }
        }
        self.outbox.note_attempt(note);
        self.update_gauges();
    }

    fn finish_dead(&self, e: Entry, reason: String) {
        tracing::error!(receiver = %e.receiver, integration = %e.integration, id = %e.id, reason = %reason, "notification dead-lettered");
        self.metrics.notifications.inc(&[&e.receiver, "failed"]);
        self.metrics.dead.inc(&[&e.receiver]);
        self.outbox.kill(e, Utc::now(), reason);
        self.update_gauges();
    }

    // ---- read side, for the HTTP API and /readyz ----

    /// Err with the reason when notifications are not being persisted.
    pub fn readiness(&self) -> Result<(), NotPersisting> {
        if !self.persistence_enabled
            || !self
                .has_receivers
                .load(std::sync::atomic::Ordering::Relaxed)
            || self.outbox.persistent()
        {
            return Ok(());
        }
        Err(NotPersisting {
            reason: self.outbox.last_error().unwrap_or_default(),
        })
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn alerts(&self) -> Vec<AlertView> {
        self.dispatcher.lock().alerts(Utc::now())
    }

    /// The alerts `pick` chooses (see [`crate::dispatch::Dispatcher::alerts_picked`]):
    /// only those are cloned.
    pub fn alerts_picked(&self, pick: &mut crate::dispatch::PickAlerts<'_>) -> Vec<AlertView> {
        self.dispatcher.lock().alerts_picked(Utc::now(), pick)
    }

    /// `(receiver, group labels, alert fingerprints)` of every aggregation group.
    pub fn alert_groups(&self) -> Vec<(String, BTreeMap<String, String>, Vec<u64>)> {
        self.dispatcher.lock().group_views()
    }

    pub fn history(&self) -> Vec<HistoryEvent> {
        self.dispatcher.lock().history()
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.dispatcher.lock().silences.list()
    }

    /// Creates (no id) or updates (id) a silence and persists it.
    /// Refusals are counted in `sentinel_silences_rejected_total{reason}`.
    pub fn put_silence(&self, s: Silence) -> Result<Silence, SilenceError> {
        let res = self.dispatcher.lock().silences.upsert(s, Utc::now());
        let s = res.inspect_err(|e| self.silence_rejected(e.reason()))?;
        self.persist_silence(&s);
        Ok(s)
    }

    /// Counts a silence refused before it reached [`Notifier::put_silence`] (a body too
    /// large, or not a silence at all).
    pub fn silence_rejected(&self, reason: &str) {
        self.metrics.silences_rejected.inc(&[reason]);
    }

    /// Expires a silence now; false when unknown.
    pub fn expire_silence(&self, id: &str) -> bool {
        let s = self.dispatcher.lock().silences.expire(id, Utc::now());
        match s {
            Some(s) => {
                self.persist_silence(&s);
                true
            }
            None => false,
        }
    }

    fn persist_silence(&self, s: &Silence) {
        let v = serde_json::to_vec(s).expect("silences serialise");
        if !self.outbox.kv_put(&format!("{SILENCE_PREFIX}{}", s.id), &v) {
            tracing::warn!(id = %s.id, "silence not persisted; it holds until restart");
        }
    }

    /// Recent attempts, pending entries and dead letters.
    pub fn notifications(&self) -> (Vec<Attempt>, Vec<Entry>, Vec<DeadLetter>) {
        (
            self.outbox.recent(),
            self.outbox.pending(),
            self.outbox.dead_letters(),
        )
    }

    /// Takes alerts posted by a client (`POST /api/v2/alerts`) as the rule engine's are
    /// taken, under their own cap ([`crate::dispatch::MAX_EXTERNAL_ALERTS`]), so they can
    /// never push out rule alerts. Admitted and stored in one step under the dispatcher's
    /// lock: `Ok` means every alert is held. When the batch's new alerts do not fit, none
    /// is taken, each is counted in `sentinel_notify_external_alerts_rejected_total`, and
    /// the error says how many more would have fit. Blocks on the outbox's disk write
    /// when the alerts are forwarded to an Alertmanager: call it off the async runtime.
    pub fn send_external(&self, alerts: Vec<Alert>) -> Result<(), ExternalFull> {
        if alerts.is_empty() {
            return Ok(());
        }
        let n = alerts.len();
        let order = self.forward_order.lock();
        let taken = {
            let mut d = self.dispatcher.lock();
            let limit = d.max_external();
            d.ingest_external(alerts, Utc::now())
                .map(|forwards| (forwards, self.new_history_records(&mut d)))
                .map_err(|room| ExternalFull { room, limit })
        };
        // Tests hold a post between taking and enqueueing, the window the order lock
        // closes.
        #[cfg(test)]
        {
            let hook = self.window_hook.lock().clone();
            if let Some(hook) = hook {
                hook();
            }
        }
        match taken {
            Ok((forwards, history)) => {
                self.metrics.alerts_received.add(&[], n as f64);
                // The forwards and the history the post recorded (its alerts fired or
                // resolved), in one commit before the answer: a stop right after a
                // `200` loses neither.
                self.enqueue(forwards, history, true);
                drop(order);
                // The driver flushes the groups the post made due.
                self.wake_driver.notify_one();
                Ok(())
            }
            Err(e) => {
                self.metrics.external_alerts_rejected.add(&[], n as f64);
                Err(e)
            }
        }
    }

    /// Posted alerts held now (tests, status).
    pub fn external_alerts(&self) -> usize {
        self.dispatcher.lock().external_alerts()
    }

    /// For tests: the time the dispatcher would flush next.
    pub fn next_flush(&self) -> Option<DateTime<Utc>> {
        self.dispatcher.lock().next_due()
    }
}

/// Posted alerts refused: the notifier holds its most posted alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the notifier holds its most posted alerts ({limit}); room for {room} more: retry once some resolve")]
pub struct ExternalFull {
    pub room: usize,
    pub limit: usize,
}

fn integ_key(e: &Entry) -> String {
    format!("{}/{}", e.receiver, e.integration)
}

fn forward_queue(e: &Entry) -> Option<String> {
    is_forward(e).then(|| integ_key(e))
}

fn is_forward(e: &Entry) -> bool {
    e.integration.starts_with("alertmanager/")
}

impl AlertSink for Notifier {
    fn send(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        // Unbounded: the rule engine's cadence bounds it, and dropping here would lose
        // alerts silently; the driver drains it continuously.
        let _ = self.tx.send(alerts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One receiver that forwards to an Alertmanager (nothing listens there: the tests
    /// run no driver, so nothing is attempted).
    fn forwarding_config() -> NotifyConfig {
        serde_yaml_ng::from_str(
            "route: {receiver: am}\nreceivers: [{name: am, alertmanagers: [{urls: ['http://127.0.0.1:9/']}]}]",
        )
        .unwrap()
    }

    /// A posted alert `Posted` with `labels` and `annotations` besides, firing from
    /// `start` for `minutes`.
    fn posted_alert(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        start: DateTime<Utc>,
        minutes: i64,
    ) -> Alert {
        let own = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut l = own(labels);
        l.insert("alertname".to_string(), "Posted".to_string());
        Alert {
            labels: l,
            annotations: own(annotations),
            starts_at: start,
            ends_at: start + chrono::Duration::minutes(minutes),
            generator_url: String::new(),
        }
    }

    #[test]
    fn invalid_notify_config_is_a_typed_build_error_with_its_path() {
        let mut cfg = NotifyConfig::default();
        cfg.outbox.max_attempts = 0;
        let dir = std::env::temp_dir();
        let e = Notifier::new(&cfg, &dir, &Registry::new())
            .err()
            .expect("refused");
        assert_eq!(
            e,
            BuildError::Invalid {
                path: "notify.outbox.max_attempts".into(),
                message: "must be >= 1".into()
            }
        );
        assert_eq!(e.to_string(), "notify.outbox.max_attempts: must be >= 1");
    }

    /// A post held between taking its alert and enqueueing its forward while a second
    /// post of a newer state of the same alert comes: the forward left waiting is the
    /// state the dispatcher holds (the newer), not the older enqueued after it.
    #[test]
    fn forwards_of_one_alert_reach_the_outbox_in_the_order_the_dispatcher_took_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = forwarding_config();
        let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
        let t0 = Utc::now();
        let posted = |k: i64| posted_alert(&[], &[("k", &k.to_string())], t0, 5 + k);
        // The first post to reach the window says so and waits there for `go`.
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
        let first = std::sync::atomic::AtomicBool::new(true);
        *n.window_hook.lock() = Some(Arc::new(move || {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                entered_tx.lock().send(()).unwrap();
                go_rx.lock().recv().unwrap();
            }
        }));
        std::thread::scope(|scope| {
            let older = scope.spawn(|| n.send_external(vec![posted(1)]));
            entered.recv().unwrap();
            let newer = scope.spawn(|| n.send_external(vec![posted(2)]));
            // Time for the newer post to finish if nothing holds it back (a slow machine
            // only lets this test pass without checking, never fail).
            std::thread::sleep(Duration::from_millis(200));
            go.send(()).unwrap();
            assert_eq!(older.join().unwrap(), Ok(()));
            assert_eq!(newer.join().unwrap(), Ok(()));
        });
        let held = n.alerts();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].alert.annotations["k"], "2");
        let (_, pending, _) = n.notifications();
        let forwarded: Vec<&Alert> = pending
            .iter()
            .flat_map(|e| e.notification.alerts.iter())
            .collect();
        assert_eq!(forwarded.len(), 1, "one forward waits, merged");
        assert_eq!(
            forwarded[0].annotations["k"], "2",
            "the waiting forward is the state the dispatcher holds"
        );
    }

    /// A `200` to a post means its history is on disk too: a notifier opened again on
    /// the same data dir, with no driver having run, shows the post's alert as fired.
    #[test]
    fn posted_alert_history_is_committed_before_send_external_answers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = forwarding_config();
        let alert = posted_alert(&[], &[], Utc::now(), 5);
        {
            let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
            assert_eq!(n.send_external(vec![alert]), Ok(()));
        }
        let again = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
        let names: Vec<String> = again.history().into_iter().map(|e| e.alertname).collect();
        assert_eq!(names, ["Posted"]);
    }

    #[test]
    fn posted_alerts_are_held_when_send_external_answers_ok_not_queued_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(&NotifyConfig::default(), dir.path(), &Registry::new()).unwrap();
        n.dispatcher.lock().set_max_external(1);
        let posted = |i: &str| posted_alert(&[("i", i)], &[], Utc::now(), 5);
        // No driver runs: what Ok promises must already be true.
        assert_eq!(n.send_external(vec![posted("a")]), Ok(()));
        let held = n.alerts();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].alert.labels["i"], "a");
        assert_eq!(n.external_alerts(), 1);
        assert_eq!(
            n.send_external(vec![posted("b")]),
            Err(ExternalFull { room: 0, limit: 1 })
        );
        assert_eq!(n.send_external(vec![posted("a")]), Ok(()), "re-posted");
        assert_eq!(n.alerts().len(), 1);
    }

    #[test]
    fn readiness_reason_reads_as_before() {
        let e = NotPersisting {
            reason: "disk full".into(),
        };
        assert_eq!(
            String::from(e),
            "notification outbox cannot persist (disk full); alerts go out best-effort from memory"
        );
    }
}
