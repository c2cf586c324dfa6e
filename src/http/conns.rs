//! Connection hygiene: every open connection is tracked with the phase it is in, so that
//! a client that is slow to send its request cannot hold a connection (and a file
//! descriptor) for longer than the deadlines, and so that, at `web.max_connections`,
//! the connection stuck longest in sending its request is closed to make room for the
//! new one (slow clients are shed first; healthy new clients are not refused).
//!
//! Phases:
//! - `Head`: waiting for (or reading) a request head: right after accept, during the
//!   TLS handshake, and between keep-alive requests. hyper's `header_read_timeout`
//!   bounds it.
//! - `Body`: the head is in, the body is not finished. [`TimedBody`] bounds it with the
//!   whole-body deadline (`web.request_body_timeout`): past it, the body read fails, the
//!   answer is 408 and the connection is closed. The reaper closes a connection still in
//!   this phase a little after the deadline, whoever holds the body.
//! - `Busy`: the request is complete (or was refused), the handler runs or the answer
//!   is being written. Not shed while the answer flows; a client that stops reading it
//!   (writes blocked, [`TrackedIo`]) is a slow client too: shed like the others, and
//!   closed by the reaper after `web.write_stall_timeout`.

use crate::metrics::registry::{CounterVec, GaugeVec, Registry};
use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub(crate) const HEAD: u8 = 0;
pub(crate) const BODY: u8 = 1;
pub(crate) const BUSY: u8 = 2;

/// One open connection.
pub(crate) struct Conn {
    id: u64,
    epoch: Instant,
    phase: AtomicU8,
    /// When the current phase began, in ms since `epoch`.
    since_ms: AtomicU64,
    /// Since when writes to the client have been blocked, in ms since `epoch` plus 1;
    /// 0 when they are not.
    write_blocked_ms: AtomicU64,
    /// Cancelled to close the connection.
    pub close: CancellationToken,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn enter(&self, phase: u8) {
        if self.phase.swap(phase, Ordering::Relaxed) != phase {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// How long the connection has been in its current phase.
    pub(crate) fn stuck_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Relaxed)),
        )
    }

    /// How long writes to the client have been blocked (None: they are not).
    fn write_blocked_for(&self) -> Option<Duration> {
        match self.write_blocked_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(self.now_ms().saturating_sub(t - 1))),
        }
    }

    fn note_write(&self, blocked: bool) {
        if blocked {
            let _ = self.write_blocked_ms.compare_exchange(
                0,
                self.now_ms() + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.write_blocked_ms.store(0, Ordering::Relaxed);
        }
    }

    /// How long this connection has been held up by its client: in `Head`/`Body`, the
    /// time in that phase; in `Busy`, the time its writes have been blocked (None
    /// while the answer flows: a client being served).
    fn slow_for(&self) -> Option<Duration> {
        if self.phase() == BUSY {
            self.write_blocked_for()
        } else {
            Some(self.stuck_for())
        }
    }
}

/// Why a connection was closed by the server rather than by its client.
const REASONS: [&str; 5] = [
    "shed",
    "refused",
    "body_timeout",
    "write_stalled",
    "fd_exhausted",
];

struct Metrics {
    open: Arc<GaugeVec>,
    closed: Arc<CounterVec>,
}

/// The set of open connections.
pub(crate) struct Tracker {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// The cap in force (`web.max_connections`, lowered to fit the fd limit).
    pub max: usize,
    metrics: Option<Metrics>,
}

/// Removes its connection from the tracker when the connection's task ends.
pub(crate) struct Registration {
    tracker: Arc<Tracker>,
    pub conn: Arc<Conn>,
    /// Another connection was shed to admit this one.
    pub shed_one: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tracker.remove(self.conn.id);
    }
}

/// File descriptors kept free, beyond those open when the server starts, for
/// everything that is not a client connection: outgoing connections to ComfyUI, probes
/// and receivers, the outbox database, files read on reload.
pub(crate) const FD_RESERVE: u64 = 64;

/// File descriptors open now (Linux: `/proc/self/fd`; elsewhere 0).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The connection cap to enforce: `configured`, lowered so that the connections, the
/// descriptors open now and [`FD_RESERVE`] fit under the soft `RLIMIT_NOFILE` (never
/// below 8).
pub(crate) fn effective_max(configured: usize) -> usize {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) if soft != RLIM_INFINITY => soft,
        _ => return configured,
    };
    // rlim_t is not u64 everywhere.
    #[allow(clippy::unnecessary_cast)]
    let fit = (soft as u64).saturating_sub(open_fds() + FD_RESERVE).max(8);
    configured.min(usize::try_from(fit).unwrap_or(usize::MAX))
}

impl Tracker {
    pub(crate) fn new(max: usize, registry: Option<&Registry>) -> Arc<Tracker> {
        let metrics = registry.map(|r| {
            let m = Metrics {
                open: r.gauge_vec(
                    "sentinel_http_connections",
                    "Open HTTP connections.",
                    &[],
                ),
                closed: r.counter_vec(
                    "sentinel_http_connections_closed_total",
                    "HTTP connections closed by the server, by reason: shed (slowest client closed at web.max_connections), refused (at the cap with no slow client to shed), body_timeout (request body not finished within web.request_body_timeout), write_stalled (client stopped reading the answer for web.write_stall_timeout), fd_exhausted (closed to free a file descriptor after accept failed).",
                    &["reason"],
                ),
            };
            m.open.set(&[], 0.0);
            r.gauge_vec(
                "sentinel_http_max_connections",
                "The connection cap in force: web.max_connections, lowered to fit the open-file limit.",
                &[],
            )
            .set(&[], max as f64);
            for reason in REASONS {
                m.closed.touch_series(&[reason]);
            }
            m
        });
        // An epoch in the past keeps every "phase began at" positive, even when a test
        // backdates one.
        let now = Instant::now();
        Arc::new(Tracker {
            epoch: now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            max,
            metrics,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.lock().len()
    }

    fn count_closed(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.closed.inc(&[reason]);
        }
    }

    fn set_open(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.open.set(&[], n as f64);
        }
    }

    fn remove(&self, id: u64) {
        let n = {
            let mut conns = self.conns.lock();
            conns.remove(&id);
            conns.len()
        };
        self.set_open(n);
    }

    /// Registers a newly accepted connection. At the cap, first closes the connection
    /// stuck longest in sending its request; with none to close, refuses the new one
    /// (`None`: drop the socket).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Registration> {
        let mut conns = self.conns.lock();
        let mut shed_one = false;
        if conns.len() >= self.max {
            match Self::slowest(&conns) {
                Some(victim) => {
                    conns.remove(&victim.id);
                    victim.close.cancel();
                    self.count_closed("shed");
                    shed_one = true;
                }
                None => {
                    drop(conns);
                    self.count_closed("refused");
                    return None;
                }
            }
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            write_blocked_ms: AtomicU64::new(0),
            close: CancellationToken::new(),
        });
        conns.insert(conn.id, conn.clone());
        let n = conns.len();
        drop(conns);
        self.set_open(n);
        Some(Registration {
            tracker: self.clone(),
            conn,
            shed_one,
        })
    }

    /// The connection held up longest by its client (see [`Conn::slow_for`]).
    fn slowest(conns: &HashMap<u64, Arc<Conn>>) -> Option<Arc<Conn>> {
        conns
            .values()
            .filter_map(|c| Some((c.slow_for()?, c)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, c)| c.clone())
    }

    /// Closes the connection stuck longest in sending its request, to free its file
    /// descriptor (accept failed with EMFILE/ENFILE). Returns whether one was closed.
    pub(crate) fn shed_for_fd(&self) -> bool {
        let mut conns = self.conns.lock();
        let Some(victim) = Self::slowest(&conns) else {
            return false;
        };
        conns.remove(&victim.id);
        let n = conns.len();
        drop(conns);
        victim.close.cancel();
        self.count_closed("fd_exhausted");
        self.set_open(n);
        true
    }

    /// Closes connections whose body has outlived `body_deadline` plus a grace period
    /// (the body's own deadline answers 408 first when a handler is reading it), and
    /// those whose client has not read the answer for `write_stall`.
    pub(crate) fn reap(&self, body_deadline: Duration, write_stall: Duration) {
        let limit = body_deadline + Duration::from_secs(2);
        let mut conns = self.conns.lock();
        let late: Vec<(u64, &'static str)> = conns
            .values()
            .filter_map(|c| {
                if c.phase() == BODY && c.stuck_for() > limit {
                    Some((c.id, "body_timeout"))
                } else if c.write_blocked_for().is_some_and(|d| d > write_stall) {
                    Some((c.id, "write_stalled"))
                } else {
                    None
                }
            })
            .collect();
        for (id, _) in &late {
            if let Some(c) = conns.remove(id) {
                c.close.cancel();
            }
        }
        let n = conns.len();
        drop(conns);
        for (_, reason) in &late {
            self.count_closed(reason);
        }
        if !late.is_empty() {
            self.set_open(n);
        }
    }
}

/// The connection's socket, noting when writes to the client block.
pub(crate) struct TrackedIo<S> {
    pub inner: S,
    pub conn: Arc<Conn>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.note_write(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.note_write(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.conn.note_write(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a request body yields once `web.request_body_timeout` has passed.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received within web.request_body_timeout")
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether `e` (or an error it wraps) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request body with a deadline for the whole of it. Moves its connection to `Busy`
/// when it ends; sets `expired` when the deadline ended it.
pub(crate) struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    conn: Option<Arc<Conn>>,
    pub expired: Arc<AtomicBool>,
    done: bool,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration, conn: Option<Arc<Conn>>) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            conn,
            expired: Arc::new(AtomicBool::new(false)),
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(c) = &self.conn {
            c.enter(BUSY);
        }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            this.finish();
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that moves its connection back to `Head` (waiting for the next
/// request) once hyper is done with it.
pub(crate) struct TrackedBody<B> {
    pub inner: B,
    pub conn: Arc<Conn>,
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.conn.enter(HEAD);
    }
}

impl<B> HttpBody for TrackedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_for(t: &Arc<Tracker>, r: &Registration, phase: u8, age_ms: u64) {
        r.conn.phase.store(phase, Ordering::Relaxed);
        let now = t.epoch.elapsed().as_millis() as u64;
        r.conn.since_ms.store(now - age_ms, Ordering::Relaxed);
    }

    #[test]
    fn at_the_cap_the_slowest_sender_is_shed_not_the_new_client() {
        let t = Tracker::new(3, None);
        let a = t.admit().unwrap();
        let b = t.admit().unwrap();
        let c = t.admit().unwrap();
        phase_for(&t, &a, BUSY, 90_000); // being served: never shed
        phase_for(&t, &b, BODY, 50_000); // stuck in its body longest
        phase_for(&t, &c, HEAD, 10_000);
        let d = t.admit().expect("a slow client makes room");
        assert!(b.conn.close.is_cancelled());
        assert!(!a.conn.close.is_cancelled() && !c.conn.close.is_cancelled());
        assert_eq!(t.len(), 3);
        drop(b);
        assert_eq!(t.len(), 3, "the shed one was already removed");
        // Nothing slow left but `c` and `d`: `c` goes next.
        phase_for(&t, &d, BUSY, 0);
        let _e = t.admit().unwrap();
        assert!(c.conn.close.is_cancelled());
    }

    #[test]
    fn at_the_cap_with_only_busy_connections_the_new_one_is_refused() {
        let t = Tracker::new(1, None);
        let a = t.admit().unwrap();
        a.conn.enter(BUSY);
        assert!(t.admit().is_none());
        drop(a);
        assert_eq!(t.len(), 0);
        assert!(t.admit().is_some());
    }

    #[test]
    fn the_reaper_closes_bodies_past_their_deadline() {
        let t = Tracker::new(10, None);
        let a = t.admit().unwrap();
        let b = t.admit().unwrap();
        phase_for(&t, &a, BODY, 60_000);
        phase_for(&t, &b, HEAD, 60_000);
        t.reap(Duration::from_secs(30), Duration::from_secs(30));
        assert!(a.conn.close.is_cancelled());
        assert!(!b.conn.close.is_cancelled(), "head timeouts are hyper's");
    }

    #[test]
    fn a_client_that_stops_reading_its_answer_is_slow_too() {
        let t = Tracker::new(2, None);
        let reader = t.admit().unwrap();
        let stalled = t.admit().unwrap();
        phase_for(&t, &reader, BUSY, 60_000);
        phase_for(&t, &stalled, BUSY, 1_000);
        // Writes blocked for 40 s.
        let blocked_at = stalled.conn.now_ms() - 40_000;
        stalled
            .conn
            .write_blocked_ms
            .store(blocked_at + 1, Ordering::Relaxed);
        let _c = t.admit().expect("the stalled reader makes room");
        assert!(stalled.conn.close.is_cancelled());
        assert!(!reader.conn.close.is_cancelled());

        let t = Tracker::new(10, None);
        let stalled = t.admit().unwrap();
        phase_for(&t, &stalled, BUSY, 1_000);
        let blocked_at = stalled.conn.now_ms() - 40_000;
        stalled
            .conn
            .write_blocked_ms
            .store(blocked_at + 1, Ordering::Relaxed);
        t.reap(Duration::from_secs(30), Duration::from_secs(60));
        assert!(!stalled.conn.close.is_cancelled());
        t.reap(Duration::from_secs(30), Duration::from_secs(30));
        assert!(stalled.conn.close.is_cancelled());
        stalled.conn.note_write(false);
        assert_eq!(stalled.conn.write_blocked_for(), None);
    }

    #[test]
    fn fd_limit_lowers_the_cap() {
        assert!(effective_max(usize::MAX) < usize::MAX);
        assert_eq!(effective_max(3), 3);
    }

    #[test]
    fn body_timeout_is_found_through_wrappers() {
        let e = axum::Error::new(BodyTimeout);
        assert!(is_body_timeout(&e));
        let other = axum::Error::new(std::io::Error::other("x"));
        assert!(!is_body_timeout(&other));
    }
}
