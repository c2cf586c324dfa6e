//! Silences: matchers plus a time window, author and comment, in Alertmanager's API
//! shape (`matchers: [{name, value, isRegex, isEqual}]`, `startsAt`, `endsAt`,
//! `createdBy`, `comment`). Persisted by the notifier beside the outbox; expired ones
//! are kept for the history period, then dropped.

use super::matcher::{Matcher, Op};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatcherSpec {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex", default)]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    pub matchers: Vec<MatcherSpec>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
    #[serde(rename = "updatedAt", default = "Utc::now")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

/// Most silences held (active and recently expired).
pub const MAX_SILENCES: usize = 10_000;

impl Silence {
    /// Checks the request and compiles its matchers.
    pub fn compile(&self) -> Result<Vec<Matcher>, String> {
        if self.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if self.ends_at <= self.starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if self.created_by.trim().is_empty() {
            return Err("createdBy is required".into());
        }
        if self.comment.trim().is_empty() {
            return Err("comment is required".into());
        }
        let ms: Vec<Matcher> = self
            .matchers
            .iter()
            .map(|m| {
                let op = match (m.is_regex, m.is_equal) {
                    (false, true) => Op::Eq,
                    (false, false) => Op::Ne,
                    (true, true) => Op::Re,
                    (true, false) => Op::NotRe,
                };
                Matcher::new(&m.name, op, &m.value)
            })
            .collect::<Result<_, _>>()?;
        // A silence that matches the empty label set would mute everything.
        if ms.iter().all(|m| m.matches(&BTreeMap::new())) {
            return Err("matchers would silence every alert; add one that needs a label".into());
        }
        Ok(ms)
    }

    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }
}

/// The silences in force, compiled.
#[derive(Default)]
pub struct Silences {
    by_id: BTreeMap<String, (Silence, Vec<Matcher>)>,
}

impl Silences {
    /// Adds or replaces (same id) a silence; returns its id.
    pub fn upsert(&mut self, mut s: Silence, now: DateTime<Utc>) -> Result<Silence, String> {
        let ms = s.compile()?;
        if s.id.is_empty() {
            s.id = uuid::Uuid::new_v4().to_string();
        } else if !self.by_id.contains_key(&s.id) {
            return Err(format!("silence {} not found", s.id));
        }
        if self.by_id.len() >= MAX_SILENCES && !self.by_id.contains_key(&s.id) {
            return Err("too many silences".into());
        }
        s.updated_at = now;
        self.by_id.insert(s.id.clone(), (s.clone(), ms));
        Ok(s)
    }

    /// Loads a stored silence as it was (no validation of times against now).
    pub fn restore(&mut self, s: Silence) {
        if let Ok(ms) = s.compile() {
            self.by_id.insert(s.id.clone(), (s, ms));
        }
    }

    /// Ends a silence now; returns it, or None if unknown.
    pub fn expire(&mut self, id: &str, now: DateTime<Utc>) -> Option<Silence> {
        let (s, _) = self.by_id.get_mut(id)?;
        if s.ends_at > now {
            s.ends_at = now.max(s.starts_at);
            s.updated_at = now;
        }
        Some(s.clone())
    }

    /// Ids of the active silences muting these labels.
    pub fn silenced_by(
        &self,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        self.by_id
            .values()
            .filter(|(s, ms)| {
                s.state(now) == SilenceState::Active && ms.iter().all(|m| m.matches(labels))
            })
            .map(|(s, _)| s.id.clone())
            .collect()
    }

    pub fn list(&self) -> Vec<Silence> {
        self.by_id.values().map(|(s, _)| s.clone()).collect()
    }

    /// Drops silences expired before `cutoff`; returns their ids.
    pub fn gc(&mut self, cutoff: DateTime<Utc>) -> Vec<String> {
        let old: Vec<String> = self
            .by_id
            .values()
            .filter(|(s, _)| s.ends_at < cutoff)
            .map(|(s, _)| s.id.clone())
            .collect();
        for id in &old {
            self.by_id.remove(id);
        }
        old
    }
}
