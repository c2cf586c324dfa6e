//! Value types used across config sections.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// Duration units, largest first, with their size in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Why a duration string was refused. Every message but [`DurationError::Empty`]
/// quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected a number")]
    ExpectedNumber(String),
    #[error("invalid duration {0:?}: number too large")]
    NumberTooLarge(String),
    #[error("invalid duration {input:?}: expected a unit (ms, s, m, h, d, w, y) after {number}")]
    ExpectedUnit { input: String, number: u64 },
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ms, s, m, h, d, w, y)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?}: units must be in descending order")]
    UnitOrder(String),
    #[error("invalid duration {0:?}: too large")]
    TooLarge(String),
}

/// Parses a Prometheus-style duration: one or more `<number><unit>` with units
/// `ms s m h d w y` in descending order (`5s`, `1m30s`, `250ms`, `0s`).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    let mut last_rank = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(DurationError::ExpectedNumber(s.to_string()));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::NumberTooLarge(s.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(DurationError::ExpectedUnit {
                input: s.to_string(),
                number: n,
            });
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            });
        };
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(DurationError::UnitOrder(s.to_string()));
        }
        last_rank = Some(rank);
        total_ms = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| DurationError::TooLarge(s.to_string()))?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way Prometheus prints them (`1m30s`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for &(unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

/// A duration field written as `5s`, `1m`, `250ms`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        let ok = [
            ("5s", 5_000),
            ("1m", 60_000),
            ("1m30s", 90_000),
            ("250ms", 250),
            ("0s", 0),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
            assert_eq!(
                parse_duration(&format_duration(Duration::from_millis(ms)))
                    .unwrap()
                    .as_millis() as u64,
                ms
            );
        }
        for bad in ["", "5", "5x", "s", "1s1m", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn duration_errors_are_typed_with_the_same_messages() {
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(parse_duration(" "), Err(DurationError::Empty));
        assert_eq!(msg(""), "empty duration");
        assert_eq!(msg("s"), r#"invalid duration "s": expected a number"#);
        assert_eq!(
            msg("99999999999999999999s"),
            r#"invalid duration "99999999999999999999s": number too large"#
        );
        assert_eq!(
            msg("5"),
            r#"invalid duration "5": expected a unit (ms, s, m, h, d, w, y) after 5"#
        );
        assert_eq!(
            msg("5x"),
            r#"invalid duration "5x": unknown unit "x" (use ms, s, m, h, d, w, y)"#
        );
        assert_eq!(
            msg("1s1m"),
            r#"invalid duration "1s1m": units must be in descending order"#
        );
        assert_eq!(
            msg("99999999999y"),
            r#"invalid duration "99999999999y": too large"#
        );
    }
}
