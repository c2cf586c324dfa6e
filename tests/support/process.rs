//! The one kill-on-drop wrapper for processes a test starts (the binary under test and
//! the real peers: Prometheus, node_exporter, blackbox_exporter), and a free port for
//! them to listen on.

use std::ops::{Deref, DerefMut};
use std::process::Child;

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
