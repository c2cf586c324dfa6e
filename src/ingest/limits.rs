//! Bounds on what clients of the ingest API can make us hold: a cap on distinct values
//! per user-supplied label (overflow folds into `other` and is counted), and a per-client
//! token-bucket rate limit over a bounded map of clients. Both are reconfigured in place
//! on reload; the handler in `mod.rs` consults them, the metric modules never do.

use crate::metrics::registry::{CounterVec, HistogramVec, Registry};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::config::ingest::RateLimitConfig;

/// The value that stands for every value past a label's cap.
pub const OTHER: &str = "other";

/// Distinct values seen per label name, capped.
pub struct LabelCaps {
    max_values: AtomicUsize,
    seen: Mutex<HashMap<&'static str, HashSet<String>>>,
    overflow: Arc<CounterVec>,
}

impl LabelCaps {
    pub fn new(registry: &Registry, max_values: usize) -> Self {
        LabelCaps {
            max_values: AtomicUsize::new(max_values),
            seen: Mutex::new(HashMap::new()),
            overflow: registry.counter_vec(
                "sentinel_ingest_label_overflow_total",
                "Ingested events whose label value was folded into \"other\" because the label had reached its cap of distinct values.",
                &["label"],
            ),
        }
    }

    pub fn set_max_values(&self, n: usize) {
        self.max_values.store(n, Ordering::Relaxed);
    }

    /// The value to export for `value` under `label`: itself while the label has room
    /// (or already holds it), `other` once the cap is reached. Values already admitted
    /// stay admitted when the cap is lowered by a reload.
    pub fn fold<'v>(&self, label: &'static str, value: &'v str) -> &'v str {
        if value == OTHER {
            return value;
        }
        let max = self.max_values.load(Ordering::Relaxed);
        let mut seen = self.seen.lock();
        let set = seen.entry(label).or_default();
        if set.contains(value) {
            return value;
        }
        if set.len() < max {
            set.insert(value.to_string());
            return value;
        }
        drop(seen);
        self.overflow.inc(&[label]);
        OTHER
    }
}

struct Bucket {
    requests: f64,
    events: f64,
    last: Instant,
}

/// Token buckets per client.
pub struct RateLimiter {
    state: Mutex<LimiterState>,
}

struct LimiterState {
    config: RateLimitConfig,
    clients: HashMap<IpAddr, Bucket>,
}

impl LimiterState {
    fn bucket(&mut self, client: IpAddr, now: Instant) -> &mut Bucket {
        if !self.clients.contains_key(&client) && self.clients.len() >= self.config.max_clients {
            self.evict(now);
        }
        let c = &self.config;
        let b = self.clients.entry(client).or_insert(Bucket {
            requests: c.requests_burst,
            events: c.events_burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.requests = (b.requests + dt * c.requests_per_second).min(c.requests_burst);
        b.events = (b.events + dt * c.events_per_second).min(c.events_burst);
        b.last = now;
        b
    }

    /// Makes room for one client: forget those whose buckets have refilled (nothing is
    /// lost), else the longest unseen one.
    fn evict(&mut self, now: Instant) {
        let c = self.config.clone();
        let full = |b: &Bucket| {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            (c.requests_per_second == 0.0
                || b.requests + dt * c.requests_per_second >= c.requests_burst)
                && (c.events_per_second == 0.0
                    || b.events + dt * c.events_per_second >= c.events_burst)
        };
        self.clients.retain(|_, b| !full(b));
        while self.clients.len() >= c.max_clients {
            let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(ip, _)| *ip)
            else {
                break;
            };
            self.clients.remove(&oldest);
        }
    }
}

/// How long to wait, rounded up to whole seconds for `Retry-After`.
fn wait(missing: f64, rate: f64) -> Duration {
    Duration::from_secs_f64((missing / rate).max(0.0)).max(Duration::from_millis(1))
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            state: Mutex::new(LimiterState {
                config,
                clients: HashMap::new(),
            }),
        }
    }

    pub fn reconfigure(&self, config: RateLimitConfig) {
        let mut s = self.state.lock();
        if s.config != config {
            s.config = config;
            s.clients.clear();
        }
    }

    /// Takes one request token; `Err(wait)` when the client must slow down.
    pub fn request(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock();
        let rate = s.config.requests_per_second;
        if rate == 0.0 {
            return Ok(());
        }
        let b = s.bucket(client, now);
        if b.requests >= 1.0 {
            b.requests -= 1.0;
            Ok(())
        } else {
            Err(wait(1.0 - b.requests, rate))
        }
    }

    /// Takes `n` event tokens, all or none.
    pub fn events(&self, client: IpAddr, n: usize, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock();
        let rate = s.config.events_per_second;
        if rate == 0.0 || n == 0 {
            return Ok(());
        }
        let b = s.bucket(client, now);
        let n = n as f64;
        if b.events >= n {
            b.events -= n;
            Ok(())
        } else {
            Err(wait(n - b.events, rate))
        }
    }

    pub fn clients(&self) -> usize {
        self.state.lock().clients.len()
    }
}

/// The `Retry-After` value in whole seconds (at least 1).
pub fn retry_after_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Adds `v` to a running total unless the result would not be finite. The plausibility
/// caps in `events.rs` already keep every total finite for longer than the sidecar can
/// run; this is the second line: a value that got past them (a cap raised by mistake,
/// a new caller) is refused and logged instead of turning the series into `±Inf` until
/// restart. Callers serialise check and add (see `RecoveryMetrics::totals`).
pub fn add_finite(c: &CounterVec, labels: &[&str], v: f64) -> bool {
    let now = c.get(labels).unwrap_or(0.0);
    if (now + v).is_finite() {
        c.add(labels, v);
        true
    } else {
        refused(c.name(), labels, v);
        false
    }
}

/// Like [`add_finite`] for a histogram's `_sum`: the observation is refused whole
/// (bucket and count too) so that the histogram stays consistent.
pub fn observe_finite(h: &HistogramVec, labels: &[&str], v: f64) -> bool {
    let sum = h.snapshot(labels).map_or(0.0, |s| s.sum);
    if v.is_finite() && (sum + v).is_finite() {
        h.observe(labels, v);
        true
    } else {
        refused(h.name(), labels, v);
        false
    }
}

fn refused(series: &str, labels: &[&str], v: f64) {
    tracing::warn!(
        series,
        labels = ?labels,
        value = v,
        "ingest: refused a value that would make a running total infinite"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_totals_refuse_to_become_infinite() {
        let r = Registry::new();
        let c = r.counter_vec("x_seconds_total", "x", &["op"]);
        assert!(add_finite(&c, &["a"], f64::MAX));
        assert!(!add_finite(&c, &["a"], f64::MAX));
        assert_eq!(c.get(&["a"]), Some(f64::MAX));
        assert!(add_finite(&c, &["a"], -f64::MAX));
        let h = r.histogram_vec("y", "y", &["m"], &[1.0]);
        assert!(observe_finite(&h, &["m"], -1.7e308));
        assert!(!observe_finite(&h, &["m"], -1.7e308));
        assert!(!observe_finite(&h, &["m"], f64::NAN));
        let s = h.snapshot(&["m"]).unwrap();
        assert_eq!((s.count, s.sum), (1, -1.7e308));
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn labels_fold_into_other_past_the_cap_and_are_counted() {
        let r = Registry::new();
        let caps = LabelCaps::new(&r, 2);
        assert_eq!(caps.fold("operation", "a"), "a");
        assert_eq!(caps.fold("operation", "b"), "b");
        assert_eq!(caps.fold("operation", "c"), "other");
        assert_eq!(caps.fold("operation", "a"), "a");
        // Caps are per label.
        assert_eq!(caps.fold("workflow", "c"), "c");
        // A literal "other" takes no slot and is no overflow.
        assert_eq!(caps.fold("operation", "other"), "other");
        assert_eq!(caps.overflow.get(&["operation"]), Some(1.0));
        caps.set_max_values(3);
        assert_eq!(caps.fold("operation", "c"), "c");
    }

    #[test]
    fn request_bucket_refills_at_its_rate() {
        let l = RateLimiter::new(RateLimitConfig {
            requests_per_second: 2.0,
            requests_burst: 2.0,
            ..Default::default()
        });
        let t0 = Instant::now();
        assert!(l.request(ip(1), t0).is_ok());
        assert!(l.request(ip(1), t0).is_ok());
        let wait = l.request(ip(1), t0).unwrap_err();
        assert_eq!(retry_after_seconds(wait), 1);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another client has its own bucket.
        assert!(l.request(ip(2), t0).is_ok());
        assert!(l.request(ip(1), t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn event_bucket_takes_all_or_nothing() {
        let l = RateLimiter::new(RateLimitConfig {
            events_per_second: 100.0,
            events_burst: 150.0,
            ..Default::default()
        });
        let t0 = Instant::now();
        assert!(l.events(ip(1), 100, t0).is_ok());
        let wait = l.events(ip(1), 100, t0).unwrap_err();
        assert_eq!(retry_after_seconds(wait), 1); // 50 missing at 100/s
        assert!(l.events(ip(1), 50, t0).is_ok());
    }

    #[test]
    fn client_map_stays_bounded() {
        let l = RateLimiter::new(RateLimitConfig {
            max_clients: 3,
            ..Default::default()
        });
        let t0 = Instant::now();
        for n in 0..50 {
            let _ = l.request(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(l.clients() <= 3);
    }

    #[test]
    fn zero_rate_is_unlimited_and_burst_must_fit_a_batch() {
        let l = RateLimiter::new(RateLimitConfig {
            requests_per_second: 0.0,
            events_per_second: 0.0,
            ..Default::default()
        });
        for _ in 0..1000 {
            assert!(l.request(ip(1), Instant::now()).is_ok());
        }
        let c = RateLimitConfig {
            events_burst: 10.0,
            ..Default::default()
        };
        assert_eq!(
            c.validate(100).unwrap_err().path,
            "ingest.rate_limit.events_burst"
        );
    }
}
