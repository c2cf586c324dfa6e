//! Inhibition: a firing source alert mutes target alerts with equal values of the
//! `equal` labels (Alertmanager's `inhibit.go`; a missing label equals ""; an alert
//! matching both sides is not muted by sources that also match both). Built in, unless
//! turned off: the critical level of an alert mutes its warning level (same labels but
//! `severity`), so a rule with two levels notifies once.

use super::matcher::{self, Matcher};
use crate::config::NotifyConfig;
use chrono::{DateTime, Utc};
use sentinel_base::alert::Alert;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

struct Rule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

pub struct Inhibitor {
    rules: Arc<Vec<Rule>>,
    critical_mutes_warning: bool,
}

/// The sources firing at one instant, indexed for cheap lookups.
pub struct Snapshot {
    rules: Arc<Vec<Rule>>,
    /// Per rule: equal-label values → (some source, some source not matching the target side).
    sources: Vec<HashMap<Vec<String>, (bool, bool)>>,
    /// Label sets (without `severity`) of firing critical alerts.
    critical: Option<HashSet<Vec<(String, String)>>>,
}

fn without_severity(l: &BTreeMap<String, String>) -> Vec<(String, String)> {
    l.iter()
        .filter(|(k, _)| k.as_str() != "severity")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Inhibitor {
    /// The config must have been validated (matchers parse).
    pub fn new(cfg: &NotifyConfig) -> Self {
        let rules = cfg
            .inhibit_rules
            .iter()
            .map(|r| Rule {
                source: matcher::parse_list(&r.source_matchers).unwrap_or_default(),
                target: matcher::parse_list(&r.target_matchers).unwrap_or_default(),
                equal: r.equal.clone(),
            })
            .collect();
        Inhibitor {
            rules: Arc::new(rules),
            critical_mutes_warning: cfg.inhibit_warning_by_critical,
        }
    }

    pub fn snapshot<'a>(
        &self,
        alerts: impl Iterator<Item = &'a Alert>,
        now: DateTime<Utc>,
    ) -> Snapshot {
        let mut sources = vec![HashMap::new(); self.rules.len()];
        let mut critical = self.critical_mutes_warning.then(HashSet::new);
        for a in alerts.filter(|a| !a.is_resolved_at(now)) {
            for (i, r) in self.rules.iter().enumerate() {
                if matcher::matches_all(&r.source, &a.labels) {
                    let key = equal_key(&r.equal, &a.labels);
                    let both = matcher::matches_all(&r.target, &a.labels);
                    let e = sources[i].entry(key).or_insert((false, false));
                    e.0 = true;
                    e.1 |= !both;
                }
            }
            if let Some(c) = critical.as_mut() {
                if a.labels.get("severity").map(String::as_str) == Some("critical") {
                    c.insert(without_severity(&a.labels));
                }
            }
        }
        Snapshot {
            rules: self.rules.clone(),
            sources,
            critical,
        }
    }
}

fn equal_key(equal: &[String], l: &BTreeMap<String, String>) -> Vec<String> {
    equal
        .iter()
        .map(|n| l.get(n).cloned().unwrap_or_default())
        .collect()
}

impl Snapshot {
    pub fn inhibits(&self, a: &Alert) -> bool {
        if let Some(c) = &self.critical {
            if a.labels.get("severity").map(String::as_str) == Some("warning")
                && c.contains(&without_severity(&a.labels))
            {
                return true;
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if !matcher::matches_all(&r.target, &a.labels) {
                continue;
            }
            let Some(&(any, not_both)) = self.sources[i].get(&equal_key(&r.equal, &a.labels))
            else {
                continue;
            };
            let target_is_both = matcher::matches_all(&r.source, &a.labels);
            if (target_is_both && not_both) || (!target_is_both && any) {
                return true;
            }
        }
        false
    }
}
