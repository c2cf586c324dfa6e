//! When to try again: the one status-code → verdict table every HTTP receiver shares,
//! `Retry-After` parsing, and the exponential backoff with jitter the outbox schedules
//! retries with. The backoff is validated when built (a zero or inverted schedule is a
//! config error, not a busy loop) and property-tested below.

use rand::Rng;
use std::time::Duration;

/// What an HTTP answer means for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later (the receiver is overloaded, timed out, or broken for now).
    Retry,
    /// Trying again cannot help (the request itself is refused).
    Permanent,
}

/// The shared table: 2xx delivered; 408, 429 and 5xx retried; 410 Gone and every
/// other code permanent. 3xx counts as permanent: redirects are not followed (a
/// webhook URL that redirects is a config error, and following them would let a
/// receiver point the sidecar anywhere).
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 => Verdict::Retry,
        500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// Parses `Retry-After` (delay-seconds or an HTTP date), capped at `cap` so a receiver
/// cannot park a notification for days.
pub fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
    cap: Duration,
) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (t.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(cap))
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("initial backoff must be > 0")]
    ZeroInitial,
    #[error("max backoff must be >= the initial backoff")]
    MaxBelowInitial,
    #[error("multiplier must be >= 1 and finite")]
    BadMultiplier,
    #[error("jitter must be in [0, 1)")]
    BadJitter,
}

/// Exponential backoff: the n-th retry waits `min(initial × multiplier^(n-1), max)`,
/// of which the fraction `jitter` is randomised ("equal jitter"): the delay lies in
/// `[base × (1 − jitter), base]`. Bounded by `max`, never zero, and its expectation
/// `base × (1 − jitter/2)` grows with n.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
}

impl Backoff {
    pub fn new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    ) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial);
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(BackoffError::BadMultiplier);
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(BackoffError::BadJitter);
        }
        Ok(Backoff {
            initial,
            max,
            multiplier,
            jitter,
        })
    }

    /// The un-jittered delay before retry number `attempt` (1 = the first retry).
    pub fn base(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(1000) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay before retry number `attempt`, jittered.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base(attempt);
        let u: f64 = rng.random();
        let d = base.mul_f64(1.0 - self.jitter * u);
        // Jitter below 1 keeps it positive; the floor guards rounding to zero.
        d.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn status_table() {
        // (code, verdict, why)
        let cases = [
            (200, Verdict::Delivered, "ok"),
            (204, Verdict::Delivered, "no content is success"),
            (299, Verdict::Delivered, "any 2xx"),
            (301, Verdict::Permanent, "redirects are not followed"),
            (400, Verdict::Permanent, "bad request will not change"),
            (401, Verdict::Permanent, "auth is config"),
            (404, Verdict::Permanent, "wrong url"),
            (408, Verdict::Retry, "request timeout"),
            (410, Verdict::Permanent, "gone: the endpoint is disabled"),
            (413, Verdict::Permanent, "too large"),
            (429, Verdict::Retry, "throttled"),
            (500, Verdict::Retry, "server error"),
            (502, Verdict::Retry, "bad gateway"),
            (503, Verdict::Retry, "unavailable"),
            (504, Verdict::Retry, "gateway timeout"),
            (100, Verdict::Permanent, "informational is not an answer"),
        ];
        for (code, v, why) in cases {
            assert_eq!(classify(code), v, "{code}: {why}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let cap = Duration::from_secs(3600);
        assert_eq!(
            parse_retry_after("120", now, cap),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now, cap),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("999999", now, cap), Some(cap));
        assert_eq!(parse_retry_after("soon", now, cap), None);
    }

    #[test]
    fn invalid_backoffs_are_refused() {
        let s = Duration::from_secs(1);
        assert_eq!(
            Backoff::new(Duration::ZERO, s, 2.0, 0.1),
            Err(BackoffError::ZeroInitial)
        );
        assert_eq!(
            Backoff::new(s * 2, s, 2.0, 0.1),
            Err(BackoffError::MaxBelowInitial)
        );
        assert_eq!(
            Backoff::new(s, s, 0.5, 0.1),
            Err(BackoffError::BadMultiplier)
        );
        assert_eq!(
            Backoff::new(s, s, f64::NAN, 0.1),
            Err(BackoffError::BadMultiplier)
        );
        assert_eq!(Backoff::new(s, s, 2.0, 1.0), Err(BackoffError::BadJitter));
    }

    /// Property test over random valid backoffs: every delay is within (0, max], the
    /// base is monotone, and the sample mean grows (expectation is monotone).
    #[test]
    fn backoff_properties() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let initial = Duration::from_millis(rng.random_range(1..5_000));
            let max = initial + Duration::from_millis(rng.random_range(0..3_600_000));
            let mult = rng.random_range(1.0..4.0);
            let jitter = rng.random_range(0.0..0.99);
            let b = Backoff::new(initial, max, mult, jitter).unwrap();
            let mut prev_base = Duration::ZERO;
            let mut prev_mean = 0.0;
            for attempt in 1..60 {
                let base = b.base(attempt);
                assert!(base >= prev_base && base <= max);
                prev_base = base;
                let mut sum = 0.0;
                for _ in 0..50 {
                    let d = b.delay(attempt, &mut rng);
                    assert!(d > Duration::ZERO && d <= max, "{d:?} outside (0, {max:?}]");
                    assert!(d >= base.mul_f64(1.0 - jitter) - Duration::from_millis(1));
                    sum += d.as_secs_f64();
                }
                // Expectation is monotone; the sample mean can dip by jitter noise only
                // once the cap is reached, so compare with the analytical expectation.
                let expect = base.as_secs_f64() * (1.0 - jitter / 2.0);
                assert!(expect >= prev_mean);
                prev_mean = expect;
                let mean = sum / 50.0;
                assert!(
                    mean >= base.as_secs_f64() * (1.0 - jitter) - 1e-3
                        && mean <= base.as_secs_f64() + 1e-3
                );
            }
        }
    }
}
