//! Reading one ComfyUI output image, with a byte cap, either from ComfyUI's output
//! folder mounted into the sidecar or from ComfyUI's `GET /view`. The file names come
//! from ComfyUI's `/history` (through the workflow collector), so they are checked
//! before use: a name or subfolder that could leave the folder (`..`, an absolute
//! path, a symlink pointing outside) is refused, on both paths. `quality/mod.rs`
//! decides what to fetch and when; this file only reads.

use crate::collect::comfyui::output::OutputImage;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The name or subfolder would leave the output folder, or is not a plain name.
    #[error("unsafe image path: {0}")]
    Unsafe(String),
    /// Larger than the cap; `size` when the source told it before sending.
    #[error("image larger than {cap} bytes")]
    TooLarge { size: Option<u64>, cap: u64 },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("GET /view: {0}")]
    Http(#[from] reqwest::Error),
    #[error("GET /view answered {0}")]
    Status(u16),
    /// No `/view` client could be built (an unusable ComfyUI URL).
    #[error("cannot fetch from ComfyUI: {0}")]
    NoClient(String),
}

/// Checks the name parts ComfyUI gave: `filename` must be one plain path component,
/// `subfolder` zero or more plain components (ComfyUI writes `""` for none).
pub fn check_names(img: &OutputImage) -> Result<(), FetchError> {
    // Each message quotes the part it is about: the file name, or the subfolder.
    let bad_name = |why: &str| FetchError::Unsafe(format!("{why}: {:?}", img.filename));
    let bad_sub = |why: &str| {
        FetchError::Unsafe(format!(
            "{why}: subfolder {:?} (file {:?})",
            img.subfolder, img.filename
        ))
    };
    let f = img.filename.as_str();
    if f.is_empty() || f.contains(['/', '\\', '\0']) || f == "." || f == ".." {
        return Err(bad_name("filename is not a plain file name"));
    }
    if img.subfolder.contains('\0') || img.subfolder.contains('\\') {
        return Err(bad_sub("subfolder holds a NUL or backslash"));
    }
    for c in Path::new(&img.subfolder).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(bad_sub("subfolder climbs with ..")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad_sub("subfolder is absolute"));
            }
        }
    }
    Ok(())
}

/// Resolves an image under `root`, following symlinks, and refuses it unless the real
/// path is a regular file still inside the real `root`.
pub fn resolve_in(root: &Path, img: &OutputImage) -> Result<PathBuf, FetchError> {
    check_names(img)?;
    let io = |path: &Path, source| FetchError::Io {
        path: path.display().to_string(),
        source,
    };
    let real_root = std::fs::canonicalize(root).map_err(|e| io(root, e))?;
    let joined = root.join(&img.subfolder).join(&img.filename);
    let real = std::fs::canonicalize(&joined).map_err(|e| io(&joined, e))?;
    if !real.starts_with(&real_root) {
        return Err(FetchError::Unsafe(format!(
            "{} resolves outside the output folder",
            joined.display()
        )));
    }
    Ok(real)
}

/// Reads an image from the output folder, at most `cap` bytes. Blocking: call it from
/// `spawn_blocking`.
pub fn read_from_dir(root: &Path, img: &OutputImage, cap: u64) -> Result<Vec<u8>, FetchError> {
    let path = resolve_in(root, img)?;
    let io = |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    };
    // The path was resolved just above; O_NOFOLLOW refuses a symlink swapped in since.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FetchError::Unsafe(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > cap {
        return Err(FetchError::TooLarge {
            size: Some(meta.len()),
            cap,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow between stat and read; take one byte more to notice.
    file.take(cap + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > cap {
        return Err(FetchError::TooLarge { size: None, cap });
    }
    Ok(buf)
}

/// ComfyUI's `/view` endpoint under a base URL (which may carry a path prefix when
/// ComfyUI sits behind a reverse proxy).
#[derive(Clone)]
pub struct ViewClient {
    view: url::Url,
    client: reqwest::Client,
}

impl ViewClient {
    pub fn new(base: &url::Url, timeout: Duration) -> Result<Self, String> {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let view = base.join("view").map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("comfy-sentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ViewClient { view, client })
    }

    /// The request URL for one image.
    pub fn url_for(&self, img: &OutputImage) -> url::Url {
        let mut u = self.view.clone();
        u.query_pairs_mut()
            .append_pair("filename", &img.filename)
            .append_pair("subfolder", &img.subfolder)
            .append_pair("type", &img.kind);
        u
    }

    /// Fetches an image, at most `cap` bytes; stops reading as soon as it is over.
    pub async fn fetch(&self, img: &OutputImage, cap: u64) -> Result<Vec<u8>, FetchError> {
        check_names(img)?;
        let mut resp = self.client.get(self.url_for(img)).send().await?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        if let Some(len) = resp.content_length() {
            if len > cap {
                return Err(FetchError::TooLarge {
                    size: Some(len),
                    cap,
                });
            }
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if (buf.len() + chunk.len()) as u64 > cap {
                return Err(FetchError::TooLarge { size: None, cap });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(subfolder: &str, filename: &str) -> OutputImage {
        OutputImage {
            prompt_id: "p".into(),
            filename: filename.into(),
            subfolder: subfolder.into(),
            kind: "output".into(),
        }
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        // Each case is a name ComfyUI's history could carry if something upstream were
        // compromised or buggy.
        let bad = [
            ("", "../secret.png"),
            ("", ".."),
            ("", "a/b.png"),
            ("", ""),
            ("..", "x.png"),
            ("a/../../x", "x.png"),
            ("/etc", "passwd"),
            ("a\\..\\..", "x.png"),
            ("", "x\0.png"),
        ];
        for (sub, name) in bad {
            assert!(check_names(&img(sub, name)).is_err(), "{sub:?} {name:?}");
        }
        for (sub, name) in [("", "ComfyUI_00001_.png"), ("a/b", "x.png"), ("./a", "x")] {
            assert!(check_names(&img(sub, name)).is_ok(), "{sub:?} {name:?}");
        }
    }

    #[test]
    fn bad_subfolder_error_names_the_subfolder_not_only_the_file() {
        for sub in ["../../etc", "/etc", "a\\b"] {
            let e = check_names(&img(sub, "ok.png")).unwrap_err().to_string();
            assert!(e.contains(&format!("subfolder {sub:?}")), "{e}");
        }
        let e = check_names(&img("", "../x.png")).unwrap_err().to_string();
        assert!(
            e.contains("\"../x.png\"") && !e.contains("subfolder \""),
            "{e}"
        );
    }

    #[test]
    fn view_url_keeps_a_path_prefix_and_encodes_names() {
        let base = url::Url::parse("http://h:8188/comfy").unwrap();
        let c = ViewClient::new(&base, Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.url_for(&img("a b", "x&y.png")).as_str(),
            "http://h:8188/comfy/view?filename=x%26y.png&subfolder=a+b&type=output"
        );
        let c = ViewClient::new(
            &url::Url::parse("http://h:8188").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(c
            .url_for(&img("", "x.png"))
            .as_str()
            .starts_with("http://h:8188/view?"));
    }
}
