//! Silences: matchers plus a time window, author and comment, in Alertmanager's API
//! shape (`matchers: [{name, value, isRegex, isEqual}]`, `startsAt`, `endsAt`,
//! `createdBy`, `comment`). Persisted by the notifier beside the outbox; expired ones
//! are kept for the history period, then dropped.

use super::matcher::{Matcher, MatcherError, Op};
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

/// Most silences held (active, pending and recently expired).
pub const MAX_SILENCES: usize = 10_000;
/// Most silences in force or pending at once.
pub const MAX_ACTIVE_SILENCES: usize = 1_000;
/// Largest silence request body (the HTTP layer answers 413 past it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_COMMENT_BYTES: usize = 4 * 1024;
pub const MAX_CREATED_BY_BYTES: usize = 256;
pub const MAX_MATCHERS: usize = 16;
pub const MAX_MATCHER_NAME_BYTES: usize = 256;
pub const MAX_MATCHER_VALUE_BYTES: usize = 1024;
/// Compiled size allowed to the regex matchers of one silence, together (a 1 KiB
/// pattern could otherwise compile to megabytes).
pub const MAX_REGEX_BYTES_PER_SILENCE: usize = 256 * 1024;

/// Every `reason` a refused silence is counted under
/// (`sentinel_silences_rejected_total{reason}`).
pub const REJECT_REASONS: [&str; 9] = [
    "invalid",
    "body_too_large",
    "too_many_silences",
    "comment_too_long",
    "created_by_too_long",
    "too_many_matchers",
    "matcher_name_too_long",
    "matcher_value_too_long",
    "matcher_regex_too_large",
];

/// Why a silence request is malformed or contradictory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSilence {
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("endsAt must be after startsAt")]
    EndsBeforeStart,
    #[error("createdBy is required")]
    NoCreator,
    #[error("comment is required")]
    NoComment,
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    #[error("matchers would silence every alert; add one that needs a label")]
    SilencesEverything,
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// Malformed or contradictory (400).
    #[error("{0}")]
    Invalid(#[from] InvalidSilence),
    /// An update names a silence that does not exist (404).
    #[error("silence {0} not found")]
    NotFound(String),
    /// Over a size or count limit (422); `reason` is the metric label.
    #[error("{message}")]
    Limit {
        reason: &'static str,
        message: String,
    },
}

impl SilenceError {
    /// The `reason` label it is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            SilenceError::Limit { reason, .. } => reason,
            _ => "invalid",
        }
    }
}

fn too_long(reason: &'static str, field: String, len: usize, max: usize) -> SilenceError {
    SilenceError::Limit {
        reason,
        message: format!("{field} is {len} bytes; at most {max} are allowed"),
    }
}

impl Silence {
    /// Checks field sizes against the limits (before anything is compiled).
    pub fn check_limits(&self) -> Result<(), SilenceError> {
        if self.comment.len() > MAX_COMMENT_BYTES {
            return Err(too_long(
                "comment_too_long",
                "comment".into(),
                self.comment.len(),
                MAX_COMMENT_BYTES,
            ));
        }
        if self.created_by.len() > MAX_CREATED_BY_BYTES {
            return Err(too_long(
                "created_by_too_long",
                "createdBy".into(),
                self.created_by.len(),
                MAX_CREATED_BY_BYTES,
            ));
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(SilenceError::Limit {
                reason: "too_many_matchers",
                message: format!(
                    "{} matchers; at most {MAX_MATCHERS} are allowed",
                    self.matchers.len()
                ),
            });
        }
        let regexes = self.matchers.iter().filter(|m| m.is_regex).count();
        for (i, m) in self.matchers.iter().enumerate() {
            if m.name.len() > MAX_MATCHER_NAME_BYTES {
                return Err(too_long(
                    "matcher_name_too_long",
                    format!("matchers[{i}].name"),
                    m.name.len(),
                    MAX_MATCHER_NAME_BYTES,
                ));
            }
            if m.value.len() > MAX_MATCHER_VALUE_BYTES {
                return Err(too_long(
                    "matcher_value_too_long",
                    format!("matchers[{i}].value"),
                    m.value.len(),
                    MAX_MATCHER_VALUE_BYTES,
                ));
            }
            if m.is_regex {
                let budget = MAX_REGEX_BYTES_PER_SILENCE / regexes;
                let built = regex::RegexBuilder::new(&format!("^(?:{})$", m.value))
                    .size_limit(budget)
                    .build();
                if let Err(regex::Error::CompiledTooBig(_)) = built {
                    return Err(SilenceError::Limit {
                        reason: "matcher_regex_too_large",
                        message: format!(
                            "matchers[{i}].value compiles to more than {budget} bytes (the regex matchers of one silence share {MAX_REGEX_BYTES_PER_SILENCE})"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks the request and compiles its matchers.
    pub fn compile(&self) -> Result<Vec<Matcher>, InvalidSilence> {
        if self.matchers.is_empty() {
            return Err(InvalidSilence::NoMatchers);
        }
        if self.ends_at <= self.starts_at {
            return Err(InvalidSilence::EndsBeforeStart);
        }
        if self.created_by.trim().is_empty() {
            return Err(InvalidSilence::NoCreator);
        }
        if self.comment.trim().is_empty() {
            return Err(InvalidSilence::NoComment);
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
            return Err(InvalidSilence::SilencesEverything);
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
    pub fn upsert(&mut self, mut s: Silence, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        s.check_limits()?;
        let ms = s.compile()?;
        if s.id.is_empty() {
            s.id = uuid::Uuid::new_v4().to_string();
        } else if !self.by_id.contains_key(&s.id) {
            return Err(SilenceError::NotFound(s.id));
        }
        let is_new = !self.by_id.contains_key(&s.id);
        if self.by_id.len() >= MAX_SILENCES && is_new {
            return Err(SilenceError::Limit {
                reason: "too_many_silences",
                message: format!(
                    "{MAX_SILENCES} silences are held (expired ones are kept for the history period); no more can be added"
                ),
            });
        }
        let in_force = |x: &Silence| x.state(now) != SilenceState::Expired;
        if in_force(&s) {
            let others = self
                .by_id
                .values()
                .filter(|(x, _)| x.id != s.id && in_force(x))
                .count();
            if others >= MAX_ACTIVE_SILENCES {
                return Err(SilenceError::Limit {
                    reason: "too_many_silences",
                    message: format!(
                        "{others} silences are active or pending, the most allowed ({MAX_ACTIVE_SILENCES}); expire one first"
                    ),
                });
            }
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

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn silence(comment: &str) -> Silence {
        Silence {
            id: String::new(),
            matchers: vec![MatcherSpec {
                name: "alertname".into(),
                value: "A".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: Utc::now() - chrono::Duration::minutes(1),
            ends_at: Utc::now() + chrono::Duration::hours(1),
            created_by: "ops".into(),
            comment: comment.into(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn huge_silence_comment_is_refused_with_its_size() {
        let mut ss = Silences::default();
        let e = ss
            .upsert(silence(&"x".repeat(1_900_000)), Utc::now())
            .unwrap_err();
        assert_eq!(e.reason(), "comment_too_long");
        assert_eq!(
            e.to_string(),
            "comment is 1900000 bytes; at most 4096 are allowed"
        );
        assert!(ss.list().is_empty());
    }

    #[test]
    fn silence_fields_over_their_caps_are_named() {
        let mut ss = Silences::default();
        let mut s = silence("c");
        s.created_by = "u".repeat(MAX_CREATED_BY_BYTES + 1);
        assert_eq!(
            ss.upsert(s, Utc::now()).unwrap_err().reason(),
            "created_by_too_long"
        );
        let mut s = silence("c");
        s.matchers[0].value = "v".repeat(MAX_MATCHER_VALUE_BYTES + 1);
        let e = ss.upsert(s, Utc::now()).unwrap_err();
        assert!(
            e.to_string().starts_with("matchers[0].value is 1025 bytes"),
            "{e}"
        );
        let mut s = silence("c");
        s.matchers[0].name = "n".repeat(MAX_MATCHER_NAME_BYTES + 1);
        assert_eq!(
            ss.upsert(s, Utc::now()).unwrap_err().reason(),
            "matcher_name_too_long"
        );
        let mut s = silence("c");
        s.matchers = vec![s.matchers[0].clone(); MAX_MATCHERS + 1];
        assert_eq!(
            ss.upsert(s, Utc::now()).unwrap_err().reason(),
            "too_many_matchers"
        );
    }

    #[test]
    fn active_silences_are_capped_but_updates_and_expired_ones_pass() {
        let mut ss = Silences::default();
        let now = Utc::now();
        let mut first = None;
        for _ in 0..MAX_ACTIVE_SILENCES {
            let s = ss.upsert(silence("c"), now).unwrap();
            first.get_or_insert(s);
        }
        let e = ss.upsert(silence("c"), now).unwrap_err();
        assert_eq!(e.reason(), "too_many_silences");
        assert!(e.to_string().contains("expire one first"), "{e}");
        // Updating one in force is not adding one.
        let mut upd = first.unwrap();
        upd.comment = "longer maintenance".into();
        ss.upsert(upd.clone(), now).unwrap();
        // Expiring one makes room.
        ss.expire(&upd.id, now);
        ss.upsert(silence("c"), now + chrono::Duration::seconds(1))
            .unwrap();
    }

    #[test]
    fn a_short_regex_that_compiles_huge_is_refused() {
        let mut ss = Silences::default();
        let mut s = silence("c");
        s.matchers[0].is_regex = true;
        s.matchers[0].value = r"\w{200}".into();
        let e = ss.upsert(s, Utc::now()).unwrap_err();
        assert_eq!(e.reason(), "matcher_regex_too_large", "{e}");
        let mut s = silence("c");
        s.matchers[0].is_regex = true;
        s.matchers[0].value = "gpu-[0-9]+|host-.*".into();
        ss.upsert(s, Utc::now()).unwrap();
    }

    #[test]
    fn updating_an_unknown_silence_is_not_found() {
        let mut ss = Silences::default();
        let mut s = silence("c");
        s.id = "nope".into();
        assert_eq!(
            ss.upsert(s, Utc::now()).unwrap_err(),
            SilenceError::NotFound("nope".into())
        );
    }
}
