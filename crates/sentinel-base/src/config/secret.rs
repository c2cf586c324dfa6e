//! Secrets in the config: inline, `${ENV}` references, or `*_file` paths read at load
//! time (and re-read on reload). Their `Debug`, `Display` and `Serialize` never show the
//! value, so neither logs nor `check --print` can leak one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A secret value. Compare with [`Secret::ct_eq`] (constant time).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Arc::from(s.into()))
    }

    /// The value, for the one place that must use it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality, for checking presented credentials.
    pub fn ct_eq(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An inline secret; `${NAME}` is replaced by the environment variable NAME, which
/// must be set.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretString(pub Secret);

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw)
            .map(|v| SecretString(Secret::new(v)))
            .map_err(serde::de::Error::custom)
    }
}

/// Replaces every `${NAME}` with the environment variable's value.
fn expand_env(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${...} reference".to_string())?;
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A `*_file` secret: the path is kept for display, the content (trailing newline
/// removed) is read when the config is loaded, so a missing file fails the load.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub secret: Secret,
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretFile({})", self.path.display())
    }
}

impl Serialize for SecretFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path.display().to_string())
    }
}

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = PathBuf::from(String::deserialize(d)?);
        let content = std::fs::read_to_string(&path).map_err(|e| {
            serde::de::Error::custom(format!("cannot read secret file {}: {e}", path.display()))
        })?;
        let value = content.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(serde::de::Error::custom(format!(
                "secret file {} is empty",
                path.display()
            )));
        }
        Ok(SecretFile {
            path,
            secret: Secret::new(value),
        })
    }
}

/// Picks the secret from an inline value or a file; both set is an error the caller
/// reports against its field path.
pub fn either(
    inline: &Option<SecretString>,
    file: &Option<SecretFile>,
) -> Result<Option<Secret>, &'static str> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("set either the value or the *_file, not both"),
        (Some(s), None) => Ok(Some(s.0.clone())),
        (None, Some(f)) => Ok(Some(f.secret.clone())),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = SecretString(Secret::new("hunter2"));
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        assert_eq!(format!("{}", s.0), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert!(s.0.ct_eq(b"hunter2"));
        assert!(!s.0.ct_eq(b"hunter3"));
    }

    #[test]
    fn env_references_expand() {
        // PATH is always set in a test environment; an unset name must fail.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("a${PATH}b").unwrap(), format!("a{path}b"));
        assert!(expand_env("${COMFY_SENTINEL_SURELY_UNSET_VAR}").is_err());
        assert!(expand_env("${OPEN").is_err());
    }
}
