//! The durable outbox: every notification is written here, and fsync'd, before its
//! first attempt, and leaves only once a receiver accepted it or it was dead-lettered.
//! A crash or a receiver outage delays a notification; it never loses one. Its id (the
//! `webhook-id`) is fixed at enqueue time, so a resend after a crash between "accepted"
//! and "removed" carries an id the receiver has already seen (at-least-once + dedupe).
//!
//! Storage is `redb`: an embedded ACID key-value store whose commits are durable
//! (fsync, copy-on-write pages, checksummed), so a SIGKILL mid-write leaves the last
//! committed state and no torn record, with no log format, compaction or recovery code
//! of our own to get wrong. Entries are also mirrored in memory; when the data dir is
//! unwritable or the disk is full, notifications still go out from memory
//! (best-effort), are counted as not persisted, and [`Outbox::persistent`] turns false
//! for `/readyz`. The same database holds the dispatcher's silences and notification
//! log (`kv_*`).
//!
//! Neighbours: the delivery loop in [`crate::notifier`] drives attempts over
//! [`Outbox::due`]; `dispatch` produces the
//! notifications; the HTTP API lists [`Outbox::recent`] and [`Outbox::dead_letters`].

// redb's error type is large; it only travels on the cold failure path, once per
// write, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use crate::notification::Notification;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// How many dead letters are kept (oldest dropped first).
const MAX_DEAD: usize = 1000;
/// How many recent delivery outcomes the API shows.
const MAX_RECENT: usize = 500;

/// One pending delivery: one notification to one integration of one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The Standard Webhooks `webhook-id`; also the outbox key.
    pub id: String,
    pub receiver: String,
    /// Which integration of the receiver: `webhook/0`, `email/1`, `alertmanager/0`.
    pub integration: String,
    pub notification: Notification,
    pub created_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// An entry that will not be retried any more, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub entry: Entry,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The outcome of one attempt, for the API's recent list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub id: String,
    pub receiver: String,
    pub integration: String,
    pub group_key: String,
    pub alerts: usize,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// `delivered`, `retry`, `failed` (dead-lettered).
    pub result: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("outbox record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("outbox has no storage ({0})")]
    NoStorage(String),
}

pub struct Outbox {
    path: PathBuf,
    db: Mutex<Option<redb::Database>>,
    mem: Mutex<BTreeMap<String, Entry>>,
    dead: Mutex<VecDeque<DeadLetter>>,
    recent: Mutex<VecDeque<Attempt>>,
    persistent: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Whether pending entries were loaded from disk (once per process).
    loaded: AtomicBool,
}

fn open_db(path: &Path) -> Result<redb::Database, redb::Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(redb::Error::Io)?;
    }
    let db = redb::Database::create(path)?;
    let tx = db.begin_write()?;
    tx.open_table(OUTBOX)?;
    tx.open_table(DEAD)?;
    tx.open_table(KV)?;
    tx.commit()?;
    Ok(db)
}

impl Outbox {
    /// Opens (or creates) `<data_dir>/notify.redb` and loads what was pending. Never
    /// fails: without storage the outbox runs in memory and says so.
    pub fn open(data_dir: &Path) -> Outbox {
        let ob = Outbox::deferred(data_dir);
        ob.ensure_open();
        ob
    }

    /// An outbox that opens its file on first use (no receiver configured yet: no
    /// need to hold the file, or to fail readiness over it).
    pub fn deferred(data_dir: &Path) -> Outbox {
        Outbox {
            path: data_dir.join("notify.redb"),
            db: Mutex::new(None),
            mem: Mutex::new(BTreeMap::new()),
            dead: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
            persistent: AtomicBool::new(false),
            last_error: Mutex::new(None),
            loaded: AtomicBool::new(false),
        }
    }

    /// Opens the database if it is not open (loading what was pending the first
    /// time); returns whether it is open.
    pub fn ensure_open(&self) -> bool {
        if self.path.as_os_str().is_empty() {
            return false;
        }
        let mut guard = self.db.lock();
        if guard.is_some() {
            return true;
        }
        match open_db(&self.path) {
            Ok(db) => {
                if !self.loaded.swap(true, Ordering::Relaxed) {
                    if let Err(e) = self.load(&db) {
                        tracing::error!(error = %e, "cannot load pending notifications");
                    }
                }
                *guard = Some(db);
                drop(guard);
                // After a failed write, opening again proves nothing (a full disk still
                // opens): only the next committed write marks the outbox persistent.
                if self.last_error.lock().is_none() {
                    self.ok();
                }
                true
            }
            Err(e) => {
                drop(guard);
                self.fail(&format!("cannot open {}: {e}", self.path.display()));
                false
            }
        }
    }

    /// An outbox that never persists (tests, or `outbox.enabled: false`).
    pub fn in_memory() -> Outbox {
        Outbox {
            path: PathBuf::new(),
            db: Mutex::new(None),
            mem: Mutex::new(BTreeMap::new()),
            dead: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
            persistent: AtomicBool::new(false),
            last_error: Mutex::new(Some("outbox persistence disabled".to_string())),
            loaded: AtomicBool::new(true),
        }
    }

    fn load(&self, db: &redb::Database) -> Result<(), OutboxError> {
        let tx = db.begin_read().map_err(redb::Error::from)?;
        let t = tx.open_table(OUTBOX).map_err(redb::Error::from)?;
        let mut mem = self.mem.lock();
        for row in t.iter().map_err(redb::Error::from)? {
            let (_, v) = row.map_err(redb::Error::from)?;
            match serde_json::from_slice::<Entry>(v.value()) {
                Ok(e) => {
                    mem.insert(e.id.clone(), e);
                }
                // One bad record must not block the others.
                Err(e) => tracing::error!(error = %e, "skipping an unreadable outbox record"),
            }
        }
        let d = tx.open_table(DEAD).map_err(redb::Error::from)?;
        let mut dead = self.dead.lock();
        for row in d.iter().map_err(redb::Error::from)? {
            let (_, v) = row.map_err(redb::Error::from)?;
            if let Ok(x) = serde_json::from_slice::<DeadLetter>(v.value()) {
                dead.push_back(x);
            }
        }
        dead.make_contiguous().sort_by_key(|d| d.at);
        if !mem.is_empty() {
            tracing::info!(
                pending = mem.len(),
                "outbox: resuming pending notifications"
            );
        }
        Ok(())
    }

    fn fail(&self, why: &str) {
        if self.persistent.swap(false, Ordering::Relaxed) || self.last_error.lock().is_none() {
            tracing::error!(path = %self.path.display(), error = why, "outbox cannot persist: notifications are delivered from memory only until storage works again");
        }
        *self.last_error.lock() = Some(why.to_string());
    }

    fn ok(&self) {
        if !self.persistent.swap(true, Ordering::Relaxed) {
            tracing::info!(path = %self.path.display(), "outbox persisting");
        }
        *self.last_error.lock() = None;
    }

    /// Runs one write transaction; reopens the database after a failure (redb refuses
    /// further writes after an I/O error until it is reopened).
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), OutboxError> {
        if self.path.as_os_str().is_empty() {
            return Err(OutboxError::NoStorage("persistence disabled".into()));
        }
        if !self.ensure_open() {
            return Err(OutboxError::NoStorage(
                self.last_error().unwrap_or_else(|| "cannot open".into()),
            ));
        }
        let mut guard = self.db.lock();
        let Some(db) = guard.as_ref() else {
            return Err(OutboxError::NoStorage("closed concurrently".into()));
        };
        let res = (|| {
            let tx = db.begin_write()?;
            f(&tx)?;
            tx.commit()?;
            Ok::<_, redb::Error>(())
        })();
        if res.is_err() {
            *guard = None;
        }
        Ok(res?)
    }

    fn record(&self, res: Result<(), OutboxError>) -> bool {
        match res {
            Ok(()) => {
                self.ok();
                true
            }
            Err(e) => {
                self.fail(&e.to_string());
                false
            }
        }
    }

    /// Adds entries (one transaction, fsync'd). Returns whether they are on disk; they
    /// are queued in memory either way.
    pub fn put(&self, entries: &[Entry]) -> bool {
        self.put_with_state(entries, &[])
    }

    /// Adds entries and state records in one transaction (a flush and its
    /// notification-log entries land together or not at all).
    pub fn put_with_state(&self, entries: &[Entry], state: &[(String, Vec<u8>)]) -> bool {
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            encoded.push((
                e.id.as_str(),
                serde_json::to_vec(e).expect("entries serialise"),
            ));
        }
        let res = self.write(|tx| {
            let mut t = tx.open_table(OUTBOX)?;
            for (k, v) in &encoded {
                t.insert(*k, v.as_slice())?;
            }
            let mut kv = tx.open_table(KV)?;
            for (k, v) in state {
                kv.insert(k.as_str(), v.as_slice())?;
            }
            Ok(())
        });
        let persisted = self.record(res);
        let mut mem = self.mem.lock();
        for e in entries {
            mem.insert(e.id.clone(), e.clone());
        }
        persisted
    }

    /// Stores a new retry state for an entry.
    pub fn reschedule(&self, e: &Entry) -> bool {
        let v = serde_json::to_vec(e).expect("entries serialise");
        let res = self.write(|tx| {
            tx.open_table(OUTBOX)?.insert(e.id.as_str(), v.as_slice())?;
            Ok(())
        });
        self.mem.lock().insert(e.id.clone(), e.clone());
        self.record(res)
    }

    /// Removes a delivered entry.
    pub fn complete(&self, id: &str) {
        let res = self.write(|tx| {
            tx.open_table(OUTBOX)?.remove(id)?;
            Ok(())
        });
        self.record(res);
        self.mem.lock().remove(id);
    }

    /// Moves an entry to the dead letters.
    pub fn kill(&self, e: Entry, at: DateTime<Utc>, reason: String) {
        let d = DeadLetter {
            entry: e,
            at,
            reason,
        };
        let v = serde_json::to_vec(&d).expect("dead letters serialise");
        let mut dead = self.dead.lock();
        let evict: Vec<String> = if dead.len() >= MAX_DEAD {
            let n = dead.len() + 1 - MAX_DEAD;
            dead.drain(..n).map(|x| x.entry.id).collect()
        } else {
            Vec::new()
        };
        let id = d.entry.id.clone();
        let res = self.write(|tx| {
            tx.open_table(OUTBOX)?.remove(id.as_str())?;
            let mut t = tx.open_table(DEAD)?;
            t.insert(id.as_str(), v.as_slice())?;
            for k in &evict {
                t.remove(k.as_str())?;
            }
            Ok(())
        });
        self.record(res);
        self.mem.lock().remove(&id);
        dead.push_back(d);
    }

    /// Entries due at `now`, oldest first, at most `limit`.
    pub fn due(&self, now: DateTime<Utc>, limit: usize, skip: impl Fn(&str) -> bool) -> Vec<Entry> {
        let mem = self.mem.lock();
        let mut v: Vec<Entry> = mem
            .values()
            .filter(|e| e.next_at <= now && !skip(&e.id))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.next_at);
        v.truncate(limit);
        v
    }

    /// When the next entry not excluded by `skip` becomes due.
    pub fn next_due(&self, skip: impl Fn(&Entry) -> bool) -> Option<DateTime<Utc>> {
        self.mem
            .lock()
            .values()
            .filter(|e| !skip(e))
            .map(|e| e.next_at)
            .min()
    }

    /// For entries that `key` puts in a queue, the id of each queue's oldest entry.
    pub fn heads(&self, key: impl Fn(&Entry) -> Option<String>) -> HashMap<String, String> {
        let mut heads: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
        for e in self.mem.lock().values() {
            if let Some(k) = key(e) {
                let h = heads.entry(k).or_insert((e.created_at, e.id.clone()));
                if (e.created_at, &e.id) < (h.0, &h.1) {
                    *h = (e.created_at, e.id.clone());
                }
            }
        }
        heads.into_iter().map(|(k, (_, id))| (k, id)).collect()
    }

    /// The newest pending entry satisfying `f`.
    pub fn find(&self, f: impl Fn(&Entry) -> bool) -> Option<Entry> {
        self.mem
            .lock()
            .values()
            .filter(|e| f(e))
            .max_by_key(|e| e.created_at)
            .cloned()
    }

    pub fn depth(&self) -> usize {
        self.mem.lock().len()
    }

    pub fn pending(&self) -> Vec<Entry> {
        self.mem.lock().values().cloned().collect()
    }

    /// Whether notifications are being persisted (for `/readyz`).
    pub fn persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }

    /// Why persistence is off, when it is.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn note_attempt(&self, a: Attempt) {
        let mut r = self.recent.lock();
        if r.len() >= MAX_RECENT {
            r.pop_front();
        }
        r.push_back(a);
    }

    pub fn recent(&self) -> Vec<Attempt> {
        self.recent.lock().iter().rev().cloned().collect()
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.lock().iter().rev().cloned().collect()
    }

    /// Stores a small state record (silences, notification log) beside the outbox.
    pub fn kv_put(&self, key: &str, value: &[u8]) -> bool {
        let res = self.write(|tx| {
            tx.open_table(KV)?.insert(key, value)?;
            Ok(())
        });
        self.record(res)
    }

    /// Deletes every state record with `from <= key < to`.
    pub fn kv_delete_range(&self, from: &str, to: &str) -> bool {
        let res = self.write(|tx| {
            tx.open_table(KV)?.retain_in(from..to, |_, _| false)?;
            Ok(())
        });
        self.record(res)
    }

    pub fn kv_delete(&self, key: &str) -> bool {
        let res = self.write(|tx| {
            tx.open_table(KV)?.remove(key)?;
            Ok(())
        });
        self.record(res)
    }

    /// Every state record whose key starts with `prefix`.
    pub fn kv_scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        // A deferred outbox (no receiver configured) still holds state written by an
        // earlier run, silences above all: open the file when there is one.
        if !self.path.as_os_str().is_empty() && self.path.exists() {
            self.ensure_open();
        }
        let guard = self.db.lock();
        let Some(db) = guard.as_ref() else {
            return Vec::new();
        };
        let read = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let tx = db.begin_read()?;
            let t = tx.open_table(KV)?;
            let mut out = Vec::new();
            for row in t.range(prefix..)? {
                let (k, v) = row?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read notification state");
            Vec::new()
        })
    }

    /// Rows on disk in the outbox table (for tests and checks).
    pub fn stored_len(&self) -> Option<u64> {
        let guard = self.db.lock();
        let db = guard.as_ref()?;
        let tx = db.begin_read().ok()?;
        let t = tx.open_table(OUTBOX).ok()?;
        t.len().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(id: &str, now: DateTime<Utc>) -> Entry {
        Entry {
            id: id.to_string(),
            receiver: "r".into(),
            integration: "webhook/0".into(),
            notification: Notification {
                receiver: "r".into(),
                group_key: "{}:{}".into(),
                group_labels: BTreeMap::new(),
                alerts: vec![],
                flushed_at: now,
            },
            created_at: now,
            attempts: 0,
            next_at: now,
            last_error: None,
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let ob = Outbox::open(dir.path());
            assert!(ob.persistent());
            assert!(ob.put(&[entry("a", now), entry("b", now), entry("c", now)]));
            ob.complete("b");
            let mut c = entry("c", now);
            c.attempts = 3;
            assert!(ob.reschedule(&c));
            ob.kill(entry("a", now), now, "gone".into());
            assert!(ob.kv_put("silence/1", b"x"));
        }
        let ob = Outbox::open(dir.path());
        let p = ob.pending();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].id, "c");
        assert_eq!(p[0].attempts, 3);
        assert_eq!(ob.dead_letters().len(), 1);
        assert_eq!(
            ob.kv_scan("silence/"),
            vec![("silence/1".to_string(), b"x".to_vec())]
        );
        assert_eq!(ob.stored_len(), Some(1));
    }

    #[test]
    fn reopen_after_failed_write_is_not_persistent_until_a_write_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path());
        assert!(ob.persistent());
        // What `write` does when a commit fails (e.g. the disk is full): drop the
        // database and record the error.
        *ob.db.lock() = None;
        ob.fail("No space left on device");
        assert!(!ob.persistent());
        assert!(ob.ensure_open(), "the file still opens");
        assert!(!ob.persistent(), "an open is not a committed write");
        assert!(ob.put(&[entry("a", Utc::now())]));
        assert!(ob.persistent());
        assert!(ob.last_error().is_none());
    }

    #[test]
    fn unwritable_dir_degrades_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the data dir should be: no directory can be created there.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        let ob = Outbox::open(&blocked.join("sub"));
        assert!(!ob.persistent());
        assert!(ob.last_error().is_some());
        assert!(!ob.put(&[entry("a", Utc::now())]));
        assert_eq!(ob.depth(), 1, "still delivered from memory");
    }
}
