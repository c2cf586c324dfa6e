//! Label sets as the evaluator sees them: sorted by name, `__name__` included, empty
//! values absent (Prometheus treats `l=""` as "no label l"). Shared by the store, the
//! evaluator and the rule state machine.

pub use sentinel_base::text::go_quote;
use std::fmt;
use std::sync::Arc;

pub const METRIC_NAME: &str = "__name__";

/// A sorted, duplicate-free label set. Shared (cloning is a reference count) because
/// every selected sample carries its series' labels; changed copy-on-write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Labels {
    pub fn empty() -> Self {
        Labels(Arc::new(Vec::new()))
    }

    /// Builds from pairs in any order; later duplicates win, empty values are dropped.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut l = Labels::empty();
        for (k, v) in pairs {
            l.set(k.into(), v.into());
        }
        l
    }

    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .is_ok()
    }

    /// Sets a label; an empty value deletes it (as Prometheus's label builder does).
    pub fn set(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => {
                if value.is_empty() {
                    Arc::make_mut(&mut self.0).remove(i);
                } else if self.0[i].1 != value {
                    Arc::make_mut(&mut self.0)[i].1 = value;
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    Arc::make_mut(&mut self.0).insert(i, (name, value));
                }
            }
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Arc::make_mut(&mut self.0).remove(i);
        }
    }

    pub fn without_name(&self) -> Labels {
        let mut l = self.clone();
        l.del(METRIC_NAME);
        l
    }

    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(Arc::new(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        ))
    }

    pub fn drop_names(&self, names: &[String]) -> Labels {
        if !self.0.iter().any(|(k, _)| names.iter().any(|n| n == k)) {
            return self.clone();
        }
        Labels(Arc::new(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        ))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        Arc::unwrap_or_clone(self.0)
    }

    /// Whether no other value holds this label set (it was built, not shared with the
    /// store): the query limits charge such sets to the query.
    pub fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// Approximate heap bytes, for the store's memory accounting.
    pub fn heap_bytes(&self) -> usize {
        2 * std::mem::size_of::<usize>()
            + self.0.capacity() * std::mem::size_of::<(String, String)>()
            + self
                .0
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity())
                .sum::<usize>()
    }
}

impl fmt::Display for Labels {
    /// Prometheus's `labels.Labels.String()`: `{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={}", go_quote(v))?;
        }
        f.write_str("}")
    }
}

/// Whether `s` is a valid Prometheus label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
