//! The one kill-on-drop wrapper for processes a test starts (the binary under test and
//! the real peers: Prometheus, node_exporter, blackbox_exporter), and a free port for
//! them to listen on, and the wait until one answers.

use std::ops::{Deref, DerefMut};
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process, killed and reaped when dropped, so that a failing assertion never
/// leaves a server running. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago, for a peer that cannot bind port 0
/// and report it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Polls `url` for up to 60 s until `ok(status, body)`; false when it never is.
pub fn poll(url: &str, ok: impl Fn(u16, &str) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok((status, _, body)) = crate::util::http_get(url, &[]) {
            if ok(status, &String::from_utf8_lossy(&body)) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
