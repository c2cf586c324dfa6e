//! Secrets in the config: inline, `${ENV}` references, or `*_file` paths read by the
//! section's `validate()` at load time (and re-read on reload). Their `Debug`, `Display` and `Serialize` never show the
//! value, so neither logs nor `check --print` can leak one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
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
fn expand_env(raw: &str) -> Result<String, SecretError> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(SecretError::Unterminated)?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| SecretError::EnvUnset(name.to_string()))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The most bytes a `*_file` secret may hold (64 KiB): a token, a password or a PEM
/// key fits many times over; `/dev/zero` or a log file does not get read into memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

thread_local! {
    /// Directory relative `*_file` paths resolve against while a config is parsed.
    static BASE_DIR: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a config parse) with relative `*_file` secret paths resolved against `dir`
/// (the config file's directory; `None`: the current directory, for the embedded
/// default config). Rule globs resolve against the same directory.
pub fn with_base_dir<T>(dir: Option<&Path>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<PathBuf>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            BASE_DIR.with(|b| *b.borrow_mut() = prev);
        }
    }
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf);
    let _restore = Restore(BASE_DIR.with(|b| std::mem::replace(&mut *b.borrow_mut(), dir)));
    f()
}

fn resolve(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    BASE_DIR.with(|b| match &*b.borrow() {
        Some(dir) => dir.join(&path),
        None => path,
    })
}

/// What a file that is not a regular file is, for the error message.
fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Why a `*_file` secret or a `${ENV}` reference cannot be read. The messages start
/// with [`SECRET_ERROR_PREFIXES`], which the config loader uses to point at the
/// secret's own key.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {} is {kind}; it must be a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("secret file {} is larger than {MAX_SECRET_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("secret file {} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("secret file {} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("unterminated ${{...}} reference")]
    Unterminated,
}

/// How every [`SecretError`] message begins.
pub const SECRET_ERROR_PREFIXES: &[&str] = &[
    "cannot read secret file ",
    "secret file ",
    "environment variable ",
    "unterminated ${",
];

/// Reads a secret file: a regular file of at most [`MAX_SECRET_FILE_BYTES`], UTF-8.
/// Opened non-blocking, so a FIFO without a writer cannot hang the load; its type is
/// checked on the opened descriptor before a byte is read.
pub fn read_secret_file(path: &Path) -> Result<String, SecretError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SecretError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(meta.file_type()),
        });
    }
    let too_big = || SecretError::TooLarge {
        path: path.to_path_buf(),
    };
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow between stat and read: one byte more tells.
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(buf).map_err(|_| SecretError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// A `*_file` secret as written in the config: only the path, resolved against the
/// config file's directory while parsing. Nothing is read while deserializing; the
/// section's `validate()` reads it ([`SecretFile::read`], through [`either_at`]), so a
/// missing, oversized or non-regular file fails the load with an error located at the
/// `*_file` key, and the runtime value built from the config holds the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
}

impl SecretFile {
    /// A secret file at `path` (taken as given, not resolved).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SecretFile { path: path.into() }
    }

    /// Reads the secret with the checks of [`read_secret_file`] (regular file, at most
    /// [`MAX_SECRET_FILE_BYTES`], UTF-8, opened non-blocking); the trailing newline is
    /// removed and an empty secret is refused.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let content = read_secret_file(&self.path)?;
        let value = content.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(SecretError::Empty {
                path: self.path.clone(),
            });
        }
        Ok(Secret::new(value))
    }
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
        Ok(SecretFile {
            path: resolve(PathBuf::from(String::deserialize(d)?)),
        })
    }
}

/// Why an inline-or-file secret pair cannot give a secret.
#[derive(Debug, thiserror::Error)]
pub enum EitherError {
    /// Both the value and its `*_file` are set.
    #[error("set either the value or the *_file, not both")]
    Both,
    /// The `*_file` cannot be read.
    #[error(transparent)]
    File(#[from] SecretError),
}

/// Picks the secret from an inline value or a file (reading the file now); both set is
/// an error the caller reports against its field path.
pub fn either(
    inline: &Option<SecretString>,
    file: &Option<SecretFile>,
) -> Result<Option<Secret>, EitherError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(EitherError::Both),
        (Some(s), None) => Ok(Some(s.0.clone())),
        (None, Some(f)) => Ok(Some(f.read()?)),
        (None, None) => Ok(None),
    }
}

/// [`either`] for a `validate()`: both set is an error at `key`, an unreadable file one
/// at `{key}_file` (the key the loader then locates in the file).
pub fn either_at(
    inline: &Option<SecretString>,
    file: &Option<SecretFile>,
    key: &str,
) -> Result<Option<Secret>, super::FieldError> {
    either(inline, file).map_err(|e| match e {
        EitherError::Both => super::FieldError::new(key, e.to_string()),
        EitherError::File(_) => super::FieldError::new(format!("{key}_file"), e.to_string()),
    })
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

    #[test]
    fn dev_zero_secret_file_is_refused_as_not_a_regular_file() {
        let e = read_secret_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
    }

    #[test]
    fn fifo_secret_file_is_refused_without_hanging() {
        let dir = std::env::temp_dir().join(format!("sb-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("token");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_secret_file(&fifo).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        let e = read_secret_file(&dir).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oversized_secret_file_is_refused() {
        let p = std::env::temp_dir().join(format!("sb-big-{}", std::process::id()));
        std::fs::write(&p, vec![b'a'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        let e = read_secret_file(&p).unwrap_err().to_string();
        assert!(e.contains("larger than 65536 bytes"), "{e}");
        std::fs::write(&p, b"tok\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "tok\n");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn relative_secret_paths_resolve_against_the_base_dir() {
        let dir = std::env::temp_dir().join(format!("sb-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tok"), "s3cret\n").unwrap();
        let f: SecretFile = with_base_dir(Some(&dir), || {
            serde_json::from_str::<SecretFile>("\"tok\"").unwrap()
        });
        assert_eq!(f.read().unwrap().expose(), "s3cret");
        assert_eq!(f.path, dir.join("tok"));
        // Outside with_base_dir, the same relative path is the current directory's.
        let f = serde_json::from_str::<SecretFile>("\"tok\"").unwrap();
        assert_eq!(f.path, Path::new("tok"));
        assert!(f.read().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_file_is_read_by_validation_not_while_deserializing() {
        // Parsing only resolves the path: a missing file is not an error yet.
        let f: SecretFile = serde_json::from_str("\"/nonexistent/sentinel-token\"").unwrap();
        assert_eq!(f.path, Path::new("/nonexistent/sentinel-token"));
        // Validation reads it and names the `*_file` key.
        let e = either_at(&None, &Some(f.clone()), "ingest.token").unwrap_err();
        assert_eq!(e.path, "ingest.token_file");
        assert!(
            e.message
                .starts_with("cannot read secret file /nonexistent/sentinel-token"),
            "{e}"
        );
        // Both set is reported at the value's key.
        let inline = Some(SecretString(Secret::new("x")));
        let e = either_at(&inline, &Some(f), "ingest.token").unwrap_err();
        assert_eq!(e.path, "ingest.token");
        // The character-device check still applies when validation reads.
        let e = either_at(
            &None,
            &Some(SecretFile::new("/dev/zero")),
            "web.bearer_token",
        )
        .unwrap_err();
        assert_eq!(e.path, "web.bearer_token_file");
        assert!(e.message.contains("character device"), "{e}");
    }
}
