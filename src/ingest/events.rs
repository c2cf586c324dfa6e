//! The typed events of `POST /api/v1/events` and their validation: a JSON array or a
//! stream of objects (NDJSON) becomes a `Vec<Event>` that borrows its strings from the
//! body, or the index and reason of the first bad event. Nothing here touches metrics:
//! the handler in `mod.rs` applies a batch only once all of it has parsed, so a batch is
//! accepted whole or not at all. `schemas/events.schema.json` describes the same shapes
//! and `tests/ingest.rs` checks that the two agree.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// How far in the future an event `timestamp` may lie (clock skew); beyond that it is
/// most likely milliseconds sent as seconds.
pub const MAX_FUTURE_SKEW_SECONDS: f64 = 300.0;

/// Highest accepted `attempts`; more is a reporting bug, not a retry policy.
pub const MAX_ATTEMPTS: u64 = 1_000_000;

/// Plausibility cap of every duration field (`duration_seconds`, `overhead_seconds`,
/// `recovery_seconds`, `persistence_seconds`): 7 days. No single operation, recovery or
/// checkpoint write of a generation server lasts longer; a bigger value is a unit mix-up
/// (milliseconds or nanoseconds sent as seconds) or garbage, and once added to a running
/// total it would hide every real increase (or, near `f64::MAX`, make it `+Inf`).
pub const MAX_SECONDS: f64 = 604_800.0;

/// Plausibility cap of a quality `value`, both ways: |value| <= 1e6. Scores come on
/// 0-1, 0-10 and 0-100 scales (CLIP, aesthetic, FID, PSNR in dB, BRISQUE); a million is
/// four orders of magnitude above any of them and still keeps `quality_score_sum`
/// finite for more events than the sidecar can ever receive.
pub const MAX_QUALITY_ABS: f64 = 1_000_000.0;

/// The `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Operation,
    CircuitBreaker,
    Quality,
    Heartbeat,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Operation,
        Kind::CircuitBreaker,
        Kind::Quality,
        Kind::Heartbeat,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Operation => "operation",
            Kind::CircuitBreaker => "circuit_breaker",
            Kind::Quality => "quality",
            Kind::Heartbeat => "heartbeat",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Succeeded on the first attempt.
    Success,
    /// Succeeded after the recovery layer stepped in (retries, fallback).
    Recovered,
    /// Gave up.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Recovered, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Recovered => "recovered",
            Outcome::Failed => "failed",
        }
    }
}

/// A circuit breaker's state; the numbers are the gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// A scheduled job's result, for dead man's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatStatus {
    Success,
    Failure,
}

/// One operation that went through the application's recovery layer.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationEvent<'a> {
    pub operation: Cow<'a, str>,
    /// Time spent in the operation itself, summed over its attempts.
    pub duration_seconds: f64,
    /// Time spent in the recovery layer outside the operation (backoff waits,
    /// bookkeeping, state persistence); 0 when not reported.
    pub overhead_seconds: f64,
    pub attempts: u64,
    pub outcome: Outcome,
    /// From the first failure until the operation recovered or gave up.
    pub recovery_seconds: Option<f64>,
    /// Latency of persisting recovery state (checkpoint, journal write).
    pub persistence_seconds: Option<f64>,
    pub error_class: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerEvent<'a> {
    pub name: Cow<'a, str>,
    pub state: BreakerState,
    /// The state it left, when the reporter knows it (counts a transition even when
    /// the sidecar had not seen the breaker before).
    pub from: Option<BreakerState>,
    /// When the change happened (Unix seconds); now when absent.
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QualityEvent<'a> {
    pub workflow: Cow<'a, str>,
    pub metric: Cow<'a, str>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatEvent<'a> {
    pub name: Cow<'a, str>,
    pub status: HeartbeatStatus,
    /// When the job finished (Unix seconds); now when absent.
    pub timestamp: Option<f64>,
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Operation(OperationEvent<'a>),
    CircuitBreaker(BreakerEvent<'a>),
    Quality(QualityEvent<'a>),
    Heartbeat(HeartbeatEvent<'a>),
}

impl Event<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Event::Operation(_) => Kind::Operation,
            Event::CircuitBreaker(_) => Kind::CircuitBreaker,
            Event::Quality(_) => Kind::Quality,
            Event::Heartbeat(_) => Kind::Heartbeat,
        }
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("empty body: send a JSON array of events or NDJSON (one event object per line)")]
    Empty,
    #[error("body is not a JSON array of events or NDJSON event objects")]
    NotEvents,
    #[error("more than {limit} events in one batch")]
    TooMany { limit: usize },
    #[error("event {index}: {reason}")]
    Invalid {
        index: usize,
        /// The bad event's type, when it was readable.
        kind: Option<Kind>,
        reason: String,
        /// How many good events of each kind (in [`Kind::ALL`] order) preceded it, so
        /// that `sentinel_ingest_events_total{result="rejected"}` counts the batch.
        preceding: [u64; 4],
    },
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: an array of events (or a single event object).
    Json,
    /// `application/x-ndjson`: one event object per line.
    Ndjson,
    /// No usable content type: decided by the first non-blank byte.
    Sniff,
}

/// The limits and clock a batch is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_label_value_length: usize,
    /// Unix seconds, for timestamp checks.
    pub now: f64,
}

/// Parses and validates a whole batch.
pub fn parse_batch<'a>(
    body: &'a [u8],
    framing: Framing,
    limits: &Limits,
) -> Result<Vec<Event<'a>>, BatchError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(BatchError::Empty);
    };
    match (body[first], framing) {
        (b'[', Framing::Json | Framing::Sniff) => parse_array(body, limits),
        (b'{', _) => parse_stream(body, limits),
        (b'[', Framing::Ndjson) => Err(BatchError::Invalid {
            index: 0,
            kind: None,
            reason: "NDJSON body: each line must be one event object, not an array".into(),
            preceding: [0; 4],
        }),
        _ => Err(BatchError::NotEvents),
    }
}

fn parse_array<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<Event<'a>>, BatchError> {
    let mut events = Vec::new();
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = ArraySeed {
        limits,
        events: &mut events,
        failure: &mut failure,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (result, failure) {
        (Ok(()), _) => Ok(events),
        (Err(_), Some(f)) => Err(with_preceding(f, &events)),
        // A syntax error outside any element (unclosed array, trailing bytes).
        (Err(e), None) => Err(with_preceding(
            BatchError::Invalid {
                index: events.len(),
                kind: None,
                reason: e.to_string(),
                preceding: [0; 4],
            },
            &events,
        )),
    }
}

fn with_preceding(mut err: BatchError, events: &[Event<'_>]) -> BatchError {
    if let BatchError::Invalid { preceding, .. } = &mut err {
        for e in events {
            preceding[e.kind().index()] += 1;
        }
    }
    err
}

fn parse_stream<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<Event<'a>>, BatchError> {
    let mut events = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<ObjectOnly<RawEvent<'a>>>();
    for (index, raw) in stream.enumerate() {
        if index == limits.max_events {
            return Err(BatchError::TooMany {
                limit: limits.max_events,
            });
        }
        let failed = |kind, reason| {
            with_preceding(
                BatchError::Invalid {
                    index,
                    kind,
                    reason,
                    preceding: [0; 4],
                },
                &events,
            )
        };
        let raw = match raw {
            Ok(r) => r.0,
            Err(e) => return Err(failed(None, e.to_string())),
        };
        let kind = raw.kind;
        match raw.validate(limits) {
            Ok(event) => events.push(event),
            Err(reason) => return Err(failed(Some(kind), reason.to_string())),
        }
    }
    Ok(events)
}

/// Walks the array element by element so that the failing index is known, and stops
/// at the batch limit without parsing the rest.
struct ArraySeed<'l, 'a> {
    limits: &'l Limits,
    events: &'l mut Vec<Event<'a>>,
    failure: &'l mut Option<BatchError>,
}

impl<'l, 'a> DeserializeSeed<'a> for ArraySeed<'l, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'l, 'a> Visitor<'a> for ArraySeed<'l, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let index = self.events.len();
            if index == self.limits.max_events {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    *self.failure = Some(BatchError::TooMany {
                        limit: self.limits.max_events,
                    });
                    return Err(de::Error::custom("too many events"));
                }
                return Ok(());
            }
            let raw = match seq.next_element::<ObjectOnly<RawEvent<'a>>>() {
                Ok(Some(r)) => r.0,
                Ok(None) => return Ok(()),
                Err(e) => {
                    *self.failure = Some(BatchError::Invalid {
                        index,
                        kind: None,
                        reason: e.to_string(),
                        preceding: [0; 4],
                    });
                    return Err(e);
                }
            };
            let kind = raw.kind;
            match raw.validate(self.limits) {
                Ok(ev) => self.events.push(ev),
                Err(reason) => {
                    *self.failure = Some(BatchError::Invalid {
                        index,
                        kind: Some(kind),
                        reason: reason.to_string(),
                        preceding: [0; 4],
                    });
                    return Err(de::Error::custom("invalid event"));
                }
            }
        }
    }
}

/// Accepts only a JSON object: serde's derived structs also take an array of
/// positional fields, which the schema does not allow.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(ObjectOnly)
    }
}

/// A string that borrows from the body unless it had escapes.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// An integer count; also takes `2.0`, which JSON Schema counts as an integer.
#[derive(Debug)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
            // Integers out of u64's range become 0 or u64::MAX, so that the range
            // check of `validate` refuses them with a reason that names the field.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).unwrap_or(0)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                if v.is_finite() && v.fract() == 0.0 {
                    // `as` saturates: 1e300 becomes u64::MAX, -3.0 becomes 0.
                    Ok(Count(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Every field of every event type, as sent. Which fields a type allows and requires
/// is checked in [`RawEvent::validate`], so that an error can name the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(borrow)]
    operation: Option<Text<'a>>,
    duration_seconds: Option<f64>,
    overhead_seconds: Option<f64>,
    attempts: Option<Count>,
    outcome: Option<Outcome>,
    recovery_seconds: Option<f64>,
    persistence_seconds: Option<f64>,
    #[serde(borrow)]
    error_class: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    state: Option<BreakerState>,
    from: Option<BreakerState>,
    #[serde(borrow)]
    workflow: Option<Text<'a>>,
    #[serde(borrow)]
    metric: Option<Text<'a>>,
    value: Option<f64>,
    status: Option<HeartbeatStatus>,
    timestamp: Option<f64>,
}

impl<'a> RawEvent<'a> {
    /// Names of the fields that are set, in declaration order.
    fn present(&self) -> impl Iterator<Item = &'static str> {
        [
            ("operation", self.operation.is_some()),
            ("duration_seconds", self.duration_seconds.is_some()),
            ("overhead_seconds", self.overhead_seconds.is_some()),
            ("attempts", self.attempts.is_some()),
            ("outcome", self.outcome.is_some()),
            ("recovery_seconds", self.recovery_seconds.is_some()),
            ("persistence_seconds", self.persistence_seconds.is_some()),
            ("error_class", self.error_class.is_some()),
            ("name", self.name.is_some()),
            ("state", self.state.is_some()),
            ("from", self.from.is_some()),
            ("workflow", self.workflow.is_some()),
            ("metric", self.metric.is_some()),
            ("value", self.value.is_some()),
            ("status", self.status.is_some()),
            ("timestamp", self.timestamp.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n)
    }

    fn validate(self, limits: &Limits) -> Result<Event<'a>, EventError> {
        let allowed: &[&str] = match self.kind {
            Kind::Operation => &[
                "operation",
                "duration_seconds",
                "overhead_seconds",
                "attempts",
                "outcome",
                "recovery_seconds",
                "persistence_seconds",
                "error_class",
            ],
            Kind::CircuitBreaker => &["name", "state", "from", "timestamp"],
            Kind::Quality => &["workflow", "metric", "value"],
            Kind::Heartbeat => &["name", "status", "timestamp"],
        };
        if let Some(f) = self.present().find(|f| !allowed.contains(f)) {
            return Err(EventError::NotAllowed {
                field: f,
                kind: self.kind.as_str(),
            });
        }
        let label =
            |field: &'static str, v: Option<Text<'a>>| -> Result<Cow<'a, str>, EventError> {
                let v = v.ok_or(EventError::Missing(field))?.0;
                check_label(field, &v, limits.max_label_value_length)?;
                Ok(v)
            };
        let optional_label = |field: &'static str, v: Option<Text<'a>>| match v {
            None => Ok(None),
            Some(t) => check_label(field, &t.0, limits.max_label_value_length).map(|()| Some(t.0)),
        };
        let required = |field: &'static str, v: Option<f64>| v.ok_or(EventError::Missing(field));
        Ok(match self.kind {
            Kind::Operation => {
                let operation = label("operation", self.operation)?;
                let duration_seconds = seconds(
                    "duration_seconds",
                    required("duration_seconds", self.duration_seconds)?,
                )?;
                let overhead_seconds = match self.overhead_seconds {
                    Some(v) => seconds("overhead_seconds", v)?,
                    None => 0.0,
                };
                let attempts = self.attempts.map_or(1, |c| c.0);
                if !(1..=MAX_ATTEMPTS).contains(&attempts) {
                    return Err(EventError::Attempts);
                }
                let outcome = self.outcome.ok_or(EventError::Missing("outcome"))?;
                Event::Operation(OperationEvent {
                    operation,
                    duration_seconds,
                    overhead_seconds,
                    attempts,
                    outcome,
                    recovery_seconds: self
                        .recovery_seconds
                        .map(|v| seconds("recovery_seconds", v))
                        .transpose()?,
                    persistence_seconds: self
                        .persistence_seconds
                        .map(|v| seconds("persistence_seconds", v))
                        .transpose()?,
                    error_class: optional_label("error_class", self.error_class)?,
                })
            }
            Kind::CircuitBreaker => Event::CircuitBreaker(BreakerEvent {
                name: label("name", self.name)?,
                state: self.state.ok_or(EventError::Missing("state"))?,
                from: self.from,
                timestamp: self
                    .timestamp
                    .map(|t| timestamp(t, limits.now))
                    .transpose()?,
            }),
            Kind::Quality => {
                let workflow = label("workflow", self.workflow)?;
                let metric = label("metric", self.metric)?;
                let value = quality_value(required("value", self.value)?)?;
                Event::Quality(QualityEvent {
                    workflow,
                    metric,
                    value,
                })
            }
            Kind::Heartbeat => Event::Heartbeat(HeartbeatEvent {
                name: label("name", self.name)?,
                status: self.status.ok_or(EventError::Missing("status"))?,
                timestamp: self
                    .timestamp
                    .map(|t| timestamp(t, limits.now))
                    .transpose()?,
            }),
        })
    }
}

/// Why one event of a batch is refused; the batch answer quotes it with the event's
/// index. Messages name the field as the client wrote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("field `{field}` is not allowed for type `{kind}`")]
    NotAllowed {
        field: &'static str,
        kind: &'static str,
    },
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    #[error("`{field}` is longer than {max_len} characters")]
    TooLong { field: &'static str, max_len: usize },
    #[error("`attempts` must be between 1 and {MAX_ATTEMPTS}")]
    Attempts,
    #[error("`{0}` must be a finite number of seconds >= 0")]
    Seconds(&'static str),
    #[error("`{field}` {} exceeds the cap of {MAX_SECONDS} (7 days)", number(*.value))]
    SecondsOverCap { field: &'static str, value: f64 },
    #[error("`value` must be a finite number")]
    ValueNotFinite,
    #[error("`value` {} exceeds the cap of {MAX_QUALITY_ABS}", number(*.0))]
    ValueAboveCap(f64),
    #[error("`value` {} is below the cap of {}", number(*.0), -MAX_QUALITY_ABS)]
    ValueBelowCap(f64),
    #[error("`timestamp` must be Unix seconds > 0")]
    Timestamp,
    #[error("`timestamp` lies more than {MAX_FUTURE_SKEW_SECONDS} s in the future (Unix seconds expected, not milliseconds)")]
    FutureTimestamp,
}

fn check_label(field: &'static str, v: &str, max_len: usize) -> Result<(), EventError> {
    if v.is_empty() {
        return Err(EventError::Empty(field));
    }
    // Counted in characters, as JSON Schema's maxLength counts them.
    if v.chars().count() > max_len {
        return Err(EventError::TooLong { field, max_len });
    }
    Ok(())
}

fn seconds(field: &'static str, v: f64) -> Result<f64, EventError> {
    // JSON has no NaN or Infinity, but a number too large for f64 must not slip through.
    if !v.is_finite() || v < 0.0 {
        return Err(EventError::Seconds(field));
    }
    if v > MAX_SECONDS {
        return Err(EventError::SecondsOverCap { field, value: v });
    }
    Ok(v)
}

fn quality_value(v: f64) -> Result<f64, EventError> {
    if !v.is_finite() {
        return Err(EventError::ValueNotFinite);
    }
    if v.abs() > MAX_QUALITY_ABS {
        return Err(if v > 0.0 {
            EventError::ValueAboveCap(v)
        } else {
            EventError::ValueBelowCap(v)
        });
    }
    Ok(v)
}

/// A number as a client would recognise it: `1e308`, not 309 digits.
fn number(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn timestamp(t: f64, now: f64) -> Result<f64, EventError> {
    if !t.is_finite() || t <= 0.0 {
        return Err(EventError::Timestamp);
    }
    if t > now + MAX_FUTURE_SKEW_SECONDS {
        return Err(EventError::FutureTimestamp);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn limits() -> Limits {
        Limits {
            max_events: 3,
            max_label_value_length: 16,
            now: NOW,
        }
    }

    fn parse(body: &str) -> Result<Vec<Event<'_>>, BatchError> {
        parse_batch(body.as_bytes(), Framing::Sniff, &limits())
    }

    fn reason(body: &str) -> (usize, String) {
        match parse(body) {
            Err(BatchError::Invalid { index, reason, .. }) => (index, reason),
            other => panic!("expected an invalid event, got {other:?}"),
        }
    }

    #[test]
    fn full_operation_event_parses() {
        let ev = parse(r#"[{"type":"operation","operation":"load_model","duration_seconds":1.2,"overhead_seconds":0.01,"attempts":2,"outcome":"recovered","recovery_seconds":0.3,"persistence_seconds":0.002,"error_class":"transient"}]"#).unwrap();
        assert_eq!(
            ev,
            vec![Event::Operation(OperationEvent {
                operation: "load_model".into(),
                duration_seconds: 1.2,
                overhead_seconds: 0.01,
                attempts: 2,
                outcome: Outcome::Recovered,
                recovery_seconds: Some(0.3),
                persistence_seconds: Some(0.002),
                error_class: Some("transient".into()),
            })]
        );
    }

    #[test]
    fn strings_borrow_from_the_body_unless_escaped() {
        let ev = parse(
            r#"{"type":"heartbeat","name":"plain","status":"success"}
{"type":"heartbeat","name":"caf\u00e9","status":"failure"}"#,
        )
        .unwrap();
        let names: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::Heartbeat(h) => h.name.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert!(matches!(names[0], Cow::Borrowed("plain")));
        assert_eq!(names[1], "café");
    }

    #[test]
    fn ndjson_and_single_object_and_array_agree() {
        let a = parse(r#"[{"type":"quality","workflow":"w","metric":"m","value":0.5}]"#).unwrap();
        let b =
            parse("{\"type\":\"quality\",\"workflow\":\"w\",\"metric\":\"m\",\"value\":0.5}\n\n")
                .unwrap();
        assert_eq!(a, b);
        let c = parse_batch(
            br#"{"type":"quality","workflow":"w","metric":"m","value":0.5}"#,
            Framing::Json,
            &limits(),
        )
        .unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn rejections_name_the_index_and_the_reason() {
        let ok = r#"{"type":"heartbeat","name":"a","status":"success"}"#;
        // Each case: the second event is bad; the message must say why.
        let cases = [
            (r#"{"type":"nope"}"#, "unknown variant `nope`"),
            (r#"{"name":"a"}"#, "missing field `type`"),
            (
                r#"{"type":"heartbeat","name":"a","status":"success","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"type":"heartbeat","name":"a","status":"success","value":1}"#,
                "field `value` is not allowed for type `heartbeat`",
            ),
            (
                r#"{"type":"heartbeat","name":"a"}"#,
                "missing field `status`",
            ),
            (
                r#"{"type":"heartbeat","name":"","status":"success"}"#,
                "`name` must not be empty",
            ),
            (
                r#"{"type":"heartbeat","name":"aaaaaaaaaaaaaaaaa","status":"success"}"#,
                "longer than 16",
            ),
            (
                r#"{"type":"heartbeat","name":1,"status":"success"}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":-1,"outcome":"success"}"#,
                "`duration_seconds` must be a finite number",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":1e999,"outcome":"success"}"#,
                "number out of range",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":"1","outcome":"success"}"#,
                "invalid type: string",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":0}"#,
                "`attempts` must be between 1",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"success","attempts":1.5}"#,
                "expected a positive integer",
            ),
            (
                r#"{"type":"operation","operation":"x","duration_seconds":1,"outcome":"meh"}"#,
                "unknown variant `meh`",
            ),
            (
                r#"{"type":"circuit_breaker","name":"b","state":"ajar"}"#,
                "unknown variant `ajar`",
            ),
            (
                r#"{"type":"circuit_breaker","name":"b","state":"open","timestamp":1700000000000}"#,
                "not milliseconds",
            ),
            (
                r#"{"type":"quality","workflow":"w","metric":"m"}"#,
                "missing field `value`",
            ),
            (r#"["heartbeat","a","success"]"#, "expected an event object"),
            (
                r#"{"type":"heartbeat","name":"a","status":"success""#,
                "key must be a string",
            ),
        ];
        for (bad, want) in cases {
            let (index, why) = reason(&format!("[{ok},{bad},{ok}]"));
            assert_eq!(index, 1, "{bad}: {why}");
            assert!(why.contains(want), "{bad}: {why:?} lacks {want:?}");
        }
    }

    #[test]
    fn values_over_their_plausibility_cap_are_refused_by_name() {
        let op = |field: &str, v: &str| {
            let duration = if field == "duration_seconds" {
                ""
            } else {
                r#""duration_seconds":1,"#
            };
            format!(
                r#"[{{"type":"operation","operation":"x",{duration}"outcome":"recovered","{field}":{v}}}]"#
            )
        };
        for field in [
            "duration_seconds",
            "overhead_seconds",
            "recovery_seconds",
            "persistence_seconds",
        ] {
            assert!(parse(&op(field, "604800")).is_ok(), "{field} at the cap");
            let (index, why) = reason(&op(field, "1e308"));
            assert_eq!(index, 0);
            assert_eq!(
                why,
                format!("`{field}` 1e308 exceeds the cap of 604800 (7 days)")
            );
            let (_, why) = reason(&op(field, "604800.5"));
            assert!(why.contains("exceeds the cap of 604800"), "{why}");
        }
        let q =
            |v: &str| format!(r#"[{{"type":"quality","workflow":"w","metric":"m","value":{v}}}]"#);
        assert!(parse(&q("1000000")).is_ok());
        assert!(parse(&q("-1000000")).is_ok());
        assert_eq!(
            reason(&q("-1.7e308")).1,
            "`value` -1.7e308 is below the cap of -1000000"
        );
        assert_eq!(
            reason(&q("1000000.5")).1,
            "`value` 1000000.5 exceeds the cap of 1000000"
        );
        let attempts = |v: &str| {
            format!(
                r#"[{{"type":"operation","operation":"x","duration_seconds":1,"outcome":"recovered","attempts":{v}}}]"#
            )
        };
        for v in [
            "1e300",
            "1000001",
            "18446744073709551615",
            "-3",
            "-3.0",
            "0",
        ] {
            assert_eq!(
                reason(&attempts(v)).1,
                "`attempts` must be between 1 and 1000000",
                "{v}"
            );
        }
        assert_eq!(number(1e-300), "1e-300");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(12.5), "12.5");
    }

    #[test]
    fn integral_float_attempts_are_counts() {
        let ev = parse(r#"[{"type":"operation","operation":"x","duration_seconds":1,"outcome":"recovered","attempts":3.0}]"#).unwrap();
        assert!(matches!(&ev[0], Event::Operation(o) if o.attempts == 3));
    }

    #[test]
    fn batch_limit_is_enforced_without_parsing_the_rest() {
        let ok = r#"{"type":"heartbeat","name":"a","status":"success"}"#;
        let three = format!("[{ok},{ok},{ok}]");
        assert_eq!(parse(&three).unwrap().len(), 3);
        // The fourth element is not a valid event: the limit must answer first.
        let four = format!(r#"[{ok},{ok},{ok},{{"type":"nope"}}]"#);
        assert_eq!(parse(&four), Err(BatchError::TooMany { limit: 3 }));
        let nd = format!("{ok}\n{ok}\n{ok}\n{ok}\n");
        assert_eq!(parse(&nd), Err(BatchError::TooMany { limit: 3 }));
    }

    #[test]
    fn framing_and_empty_bodies() {
        assert_eq!(parse(" \n"), Err(BatchError::Empty));
        assert_eq!(parse("42"), Err(BatchError::NotEvents));
        assert!(parse("[]").unwrap().is_empty());
        assert!(matches!(
            parse_batch(b"[]", Framing::Ndjson, &limits()),
            Err(BatchError::Invalid { index: 0, .. })
        ));
        // Trailing garbage after the array is reported after the last good event.
        let (index, why) = reason(r#"[{"type":"heartbeat","name":"a","status":"success"}] x"#);
        assert_eq!(index, 1, "{why}");
    }

    #[test]
    fn timestamps_in_the_past_and_near_future_are_fine() {
        for t in [1.0, NOW, NOW + 60.0] {
            let body = format!(
                r#"[{{"type":"heartbeat","name":"a","status":"success","timestamp":{t}}}]"#
            );
            assert!(parse(&body).is_ok(), "{t}");
        }
        let (_, why) =
            reason(r#"[{"type":"heartbeat","name":"a","status":"success","timestamp":0}]"#);
        assert!(why.contains("> 0"), "{why}");
    }
}
