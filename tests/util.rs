//! Helpers shared by the integration tests: start the real binary on an ephemeral port
//! and run its CLI. The HTTP kit (`support::http`: client, JSON, events, scrapes, waits)
//! and the peer lookup are re-exported here, so `use crate::util::*;` brings them in.

#![allow(dead_code)]

pub use crate::support::http::*;
pub use crate::support::peer::{in_ci, peer};
use crate::support::process::KillOnDrop;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_comfy-sentinel"))
}

/// The repository root (for fixtures and shipped files).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// A running comfy-sentinel, killed on drop.
pub struct Sentinel {
    pub child: KillOnDrop,
    pub addr: String,
    pub stderr: mpsc::Receiver<String>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sentinel {
    /// Starts `comfy-sentinel run` with the given extra arguments on 127.0.0.1:0 and
    /// waits until it logs its address.
    pub fn start(args: &[&str]) -> Sentinel {
        Self::start_with_env(args, &[])
    }

    /// Starts it with a config file in `dir`: `data_dir` under `dir`, then `config`.
    pub fn start_in(dir: &Path, config: &str) -> Sentinel {
        let cfg = temp_file(
            dir,
            "config.yaml",
            &format!("data_dir: {:?}\n{config}", dir.join("data")),
        );
        Sentinel::start(&["--config", cfg.to_str().expect("utf-8 path")])
    }

    /// [`Sentinel::start_in`], then [`Sentinel::wait_ready`].
    pub fn start_ready_in(dir: &Path, config: &str) -> Sentinel {
        let s = Sentinel::start_in(dir, config);
        s.wait_ready();
        s
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Sentinel {
        let mut cmd = Sentinel::command();
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Sentinel::spawn(cmd)
    }

    /// `comfy-sentinel run` logging at info level without colours, for `spawn` once the
    /// caller has added its arguments (`--listen` among them).
    pub fn command() -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("run").env("RUST_LOG", "info").env("NO_COLOR", "1");
        cmd
    }

    /// Spawns `cmd` (from `command`) and waits until it logs its address; an address
    /// bound to all interfaces is reached on loopback.
    pub fn spawn(mut cmd: Command) -> Sentinel {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start comfy-sentinel");
        let mut child = KillOnDrop(child);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "comfy-sentinel did not start; log: {:?}",
                    log.lock().unwrap()
                )
            });
            if let Some(i) = line.find("listen=") {
                let rest = &line[i + "listen=".len()..];
                let word = rest.split_whitespace().next().unwrap().trim_matches('"');
                let mut addr: std::net::SocketAddr = word
                    .parse()
                    .unwrap_or_else(|e| panic!("listen={word}: {e}"));
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                break addr.to_string();
            }
        };
        Sentinel {
            child,
            addr,
            stderr: rx,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until /readyz answers 200 (every collector ran once).
    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(30), || {
            match http_get(&self.url("/readyz"), &[]) {
                Ok((200, _, _)) => Ok(()),
                _ => Err(format!(
                    "comfy-sentinel never became ready; log: {:?}",
                    self.log.lock().unwrap()
                )),
            }
        });
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal (e.g. "HUP", "TERM").
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

#[test]
fn a_missing_peer_fails_under_ci_naming_its_package_and_skips_elsewhere() {
    let why = std::panic::catch_unwind(|| {
        crate::support::peer::find_peer("prometheus-no-such-peer", true)
    })
    .expect_err("a missing peer under CI fails the test");
    let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        why.contains("prometheus-no-such-peer") && why.contains("scripts/test.sh"),
        "{why}"
    );
    assert_eq!(
        crate::support::peer::peer_package("amtool"),
        "Debian package prometheus-alertmanager"
    );
    assert_eq!(
        crate::support::peer::find_peer("prometheus-no-such-peer", false),
        None
    );
    assert!(crate::support::peer::find_peer("sh", true).is_some());
    if crate::support::peer::find_peer("python3", false).is_some() {
        let why = std::panic::catch_unwind(|| {
            crate::support::peer::find_python_module("no_such_module_x", "no-such", true)
        })
        .expect_err("a missing python module under CI fails the test");
        let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(why.contains("PyPI package no-such"), "{why}");
        assert!(!crate::support::peer::find_python_module(
            "no_such_module_x",
            "no-such",
            false
        ));
        assert!(crate::support::peer::find_python_module("json", "-", true));
    }
}

/// `comfy-sentinel check --config cfg` on a config it must refuse: asserts exit code 2
/// and returns its stderr.
pub fn check_refuses(cfg: &Path) -> String {
    let out = Command::new(bin())
        .args(["check", "--config", cfg.to_str().expect("utf-8 path")])
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

/// Runs a command that must succeed; panics with its output otherwise, and returns it.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `content` to a fresh temp file with the given name and returns its path.
pub fn temp_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}
