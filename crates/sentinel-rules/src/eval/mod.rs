//! Instant-query evaluation of a PromQL subset over the [`Store`], transcribing the
//! semantics of Prometheus 2.42's `promql/engine.go` (selectors, lookback, staleness,
//! vector matching, aggregation) so that our verdicts match promtool's. Functions live
//! in `functions.rs`. Unsupported syntax is refused by [`check`] when a rule loads, so
//! evaluation never meets it; evaluation errors are values, never panics.

mod functions;
pub use functions::{FunctionKind, FUNCTIONS};
pub mod limits;
mod range;
pub use range::eval_range;

pub use limits::{Budget, QueryConfig, QueryLimits};

use crate::labels::{valid_label_name, Labels, METRIC_NAME};
use crate::store::{is_stale, Store, LOOKBACK_MS};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Hash maps keyed by label sets and small integers within one evaluation: a fast
/// non-cryptographic hasher (the keys come from the store and the query, and every map
/// is dropped with the evaluation).
pub(crate) type FxMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;
pub(crate) type FxSet<K> = std::collections::HashSet<K, rustc_hash::FxBuildHasher>;

/// What [`Evaluator::derive`] derives a label set for: these constants, or the address
/// of the syntax node whose fixed parameters (grouping, matching) decide it.
pub(crate) const DERIVE_WITHOUT_NAME: usize = 0;
/// `histogram_quantile`'s group key (`le` and `__name__` dropped) and the bucket bound.
pub(crate) const DERIVE_BUCKET: usize = 1;

/// One element of an instant vector. `t` is the sample's own timestamp for selector
/// output (needed by `timestamp()`), the evaluation time otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Msg(String),
    /// `query.max_samples` reached (Prometheus's `ErrTooManySamples`).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// `query.max_label_bytes` reached.
    #[error("query processing would build more than {0} bytes of label sets in query execution")]
    TooManyLabelBytes(u64),
    /// `query.max_points_per_series` reached by a subquery (Prometheus's resolution error).
    #[error("{0}")]
    TooManyPoints(String),
    /// The deadline passed (Prometheus's `ErrQueryTimeout`).
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The cancellation flag was set (Prometheus's `ErrQueryCanceled`).
    #[error("query was canceled in expression evaluation")]
    Canceled,
}

impl EvalError {
    /// Prometheus's `errorType` for this error in the HTTP API.
    pub fn error_type(&self) -> &'static str {
        match self {
            EvalError::Msg(_) | EvalError::TooManySamples | EvalError::TooManyLabelBytes(_) => {
                "execution"
            }
            EvalError::TooManyPoints(_) => "bad_data",
            EvalError::Timeout => "timeout",
            EvalError::Canceled => "canceled",
        }
    }

    /// Whether a query limit (not the query itself) ended the evaluation.
    pub fn is_limit(&self) -> bool {
        !matches!(self, EvalError::Msg(_))
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Msg(m.into()))
}

pub fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

/// Why a query text is refused before evaluation: by the parser, by the guards that run
/// before it, or by [`check`] (what the evaluator does not implement).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The parser's own message (`1:5: parse error: ...`).
    #[error("{0}")]
    Parse(String),
    #[error("{line}:{column}: parse error: duration out of range: {token} (at most 292y)")]
    DurationOutOfRange {
        line: usize,
        column: usize,
        token: String,
    },
    #[error("{line}:{column}: parse error: brackets nested more than {MAX_DEPTH} deep")]
    BracketsTooDeep { line: usize, column: usize },
    #[error("query has more than {MAX_PUNCTUATION} operators and brackets")]
    TooManyOperators,
    #[error("query nests {depth} levels deep, more than the {MAX_DEPTH} the evaluator allows")]
    TooDeep { depth: usize },
    #[error("unsupported aggregation {0}")]
    UnsupportedAggregation(String),
    #[error("unsupported fill modifier")]
    UnsupportedFill,
    #[error("unsupported function {0}()")]
    UnsupportedFunction(String),
    #[error("`or` inside label matchers is not supported")]
    OrInMatchers,
    #[error("unsupported expression")]
    UnsupportedExpression,
}

/// For callers that report errors as text (the HTTP API's `error` body).
impl From<QueryError> for String {
    fn from(e: QueryError) -> String {
        e.to_string()
    }
}

/// Parses PromQL as Prometheus 2.42 knows it: `promql-parser` plus `holt_winters`,
/// which 2.42 has and newer releases renamed.
pub fn parse(text: &str) -> Result<Expr, QueryError> {
    static EXTRA: std::sync::Once = std::sync::Once::new();
    EXTRA.call_once(|| {
        use promql_parser::parser::value::ValueType;
        let _ = promql_parser::parser::register_extra_functions(vec![
            promql_parser::parser::Function::new(
                "holt_winters",
                vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
                0,
                ValueType::Vector,
                false,
            ),
        ]);
    });
    // Dashboards send the same texts again at every refresh: parsing (and compiling
    // the regular expressions of the matchers) can cost more than evaluating a small
    // range query, so recent accepted texts are kept, parsed.
    static PARSED: std::sync::LazyLock<parking_lot::Mutex<FxMap<String, Expr>>> =
        std::sync::LazyLock::new(Default::default);
    if let Some(e) = PARSED.lock().get(text) {
        return Ok(e.clone());
    }
    check_durations(text)?;
    let expr = promql_parser::parser::parse(text).map_err(QueryError::Parse)?;
    let depth = ast_depth(&expr);
    if depth > MAX_DEPTH {
        return Err(QueryError::TooDeep { depth });
    }
    if worth_keeping_parsed(text) {
        let mut parsed = PARSED.lock();
        if parsed.len() >= PARSED_TEXTS {
            parsed.clear();
        }
        parsed.insert(text.to_string(), expr.clone());
    }
    Ok(expr)
}

/// Most query texts [`parse`] keeps parsed (all are dropped when it is full): a few
/// dashboards' panels.
const PARSED_TEXTS: usize = 128;
/// Longest string literal of a text kept parsed.
const PARSED_MAX_STRING: usize = 128;

/// Whether a text may stay parsed after its query: at most 1 KiB, and every string
/// literal (every regular expression among them) short, without escapes and without
/// braces. A kept text keeps its compiled regular expressions; a counted repetition
/// (`a{1000}`) or a long class-heavy pattern compiles to megabytes, which a client
/// must not be able to pin by sending many different texts. Dashboard texts (`=~".*"`,
/// `=~"host:9100|host2:9100"`) qualify.
fn worth_keeping_parsed(text: &str) -> bool {
    if text.len() > 1024 {
        return false;
    }
    let mut quote: Option<char> = None;
    let mut len = 0;
    for c in text.chars() {
        match quote {
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                    len = 0;
                }
            }
            Some(q) if c == q => quote = None,
            Some(_) => {
                len += 1;
                if matches!(c, '{' | '}' | '\\') || len > PARSED_MAX_STRING {
                    return false;
                }
            }
        }
    }
    true
}

/// Deepest expression nesting `parse` accepts. The evaluator recurses once per level;
/// 64 levels stay far inside the 2 MiB stack of the threads that evaluate, where a
/// hostile 1.5 KB query of 300 nested calls overflowed it and aborted the process.
pub const MAX_DEPTH: usize = 64;
/// Most operator and bracket characters `parse` hands to the parser: a generous bound
/// that keeps the parse tree shallow enough to build and drop without deep recursion.
const MAX_PUNCTUATION: usize = 10_000;

/// Depth of the expression tree, without recursion.
pub fn ast_depth(e: &Expr) -> usize {
    let mut max = 0;
    let mut todo: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, d)) = todo.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                todo.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    todo.push((p, d + 1));
                }
            }
            Expr::Unary(u) => todo.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                todo.push((&b.lhs, d + 1));
                todo.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => todo.push((&p.expr, d + 1)),
            Expr::Subquery(s) => todo.push((&s.expr, d + 1)),
            Expr::Call(c) => todo.extend(c.args.args.iter().map(|a| (a.as_ref(), d + 1))),
            _ => {}
        }
    }
    max
}

/// Longest duration PromQL accepts: Go's `time.Duration` (int64 nanoseconds), about
/// 292 years, as Prometheus's `model.ParseDuration` refuses longer ones.
pub const MAX_DURATION_NS: u128 = i64::MAX as u128;

/// Refuses brackets nested deeper than [`MAX_DEPTH`] and more than
/// `MAX_PUNCTUATION` operators, and finds durations out of range, before the parser
/// sees the text, with a located error
/// (`line:column`) like the parser's: the parser drops a unit number too large for 32
/// bits and then reports "duration must be greater than 0", accepts durations that
/// overflow millisecond arithmetic, and panics on a float duration (`[1e300]`,
/// `offset Inf`) too large for `std::time::Duration`.
fn check_durations(text: &str) -> Result<(), QueryError> {
    const UNITS: [(&str, u128); 7] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
        ("w", 604_800_000_000_000),
        ("y", 31_536_000_000_000_000),
    ];
    let b = text.as_bytes();
    let located = |at: usize, tok: &str| {
        let line = text[..at].matches('\n').count() + 1;
        let col = text[..at].chars().rev().take_while(|c| *c != '\n').count() + 1;
        Err(QueryError::DurationOutOfRange {
            line,
            column: col,
            token: tok.to_string(),
        })
    };
    // `Some(ns)` when the whole token is `<digits><unit>` pairs; `overflow` when a
    // number does not fit 32 bits (the parser silently drops it).
    let unit_duration = |tok: &str| -> Option<(u128, bool)> {
        let mut rest = tok;
        let mut total: u128 = 0;
        let mut overflow = false;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let (num, tail) = rest.split_at(digits);
            let (unit, ns) = UNITS
                .iter()
                .filter(|(u, _)| tail.starts_with(u))
                .max_by_key(|(u, _)| u.len())?;
            let n: u128 = num.parse().unwrap_or(u128::MAX);
            overflow |= n > u32::MAX as u128;
            total = total.saturating_add(n.saturating_mul(*ns));
            rest = &tail[unit.len()..];
        }
        Some((total, overflow))
    };
    let float_out_of_range = |tok: &str| -> bool {
        parse_number(tok).is_some_and(|secs| !(0.0..=MAX_DURATION_NS as f64 / 1e9).contains(&secs))
    };
    let mut i = 0;
    let mut depth = 0i32;
    let mut open = 0usize;
    let mut punctuation = 0usize;
    let mut prev = 0u8;
    let mut after_offset = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' && c != b'`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            prev = c;
            after_offset = false;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let at_duration = prev == b'[' || (prev == b':' && depth > 0) || after_offset;
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &text[start..i];
            if at_duration && float_out_of_range(word) {
                return located(start, word);
            }
            after_offset = word.eq_ignore_ascii_case("offset");
            prev = b'a';
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            while i < b.len() {
                let d = b[i];
                let sign_of_exponent = (d == b'+' || d == b'-')
                    && matches!(b[i - 1], b'e' | b'E')
                    && !text[start..i].starts_with("0x");
                if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || sign_of_exponent {
                    i += 1;
                } else {
                    break;
                }
            }
            let tok = &text[start..i];
            match unit_duration(tok) {
                Some((ns, overflow)) if overflow || ns > MAX_DURATION_NS => {
                    return located(start, tok)
                }
                Some(_) => {}
                None if at_duration && float_out_of_range(tok) => return located(start, tok),
                None => {}
            }
            prev = b'0';
            after_offset = false;
            continue;
        }
        if c == b'-' && after_offset {
            i += 1;
            continue;
        }
        match c {
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ => {}
        }
        match c {
            b'(' | b'[' | b'{' => {
                open += 1;
                if open > MAX_DEPTH {
                    let line = text[..i].matches('\n').count() + 1;
                    let col = text[..i].chars().rev().take_while(|c| *c != '\n').count() + 1;
                    return Err(QueryError::BracketsTooDeep { line, column: col });
                }
            }
            b')' | b']' | b'}' => open = open.saturating_sub(1),
            _ => {}
        }
        punctuation += 1;
        if punctuation > MAX_PUNCTUATION {
            return Err(QueryError::TooManyOperators);
        }
        prev = c;
        after_offset = false;
        i += 1;
    }
    Ok(())
}

/// Refuses what the evaluator does not implement, with a message naming the construct.
pub fn check(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.id();
            let ok = [
                token::T_SUM,
                token::T_AVG,
                token::T_MIN,
                token::T_MAX,
                token::T_COUNT,
                token::T_STDDEV,
                token::T_STDVAR,
                token::T_QUANTILE,
                token::T_TOPK,
                token::T_BOTTOMK,
                token::T_COUNT_VALUES,
                token::T_GROUP,
            ];
            if !ok.contains(&op) {
                return Err(QueryError::UnsupportedAggregation(a.op.to_string()));
            }
            if let Some(p) = &a.param {
                check(p)?;
            }
            check(&a.expr)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err(QueryError::UnsupportedFill);
                }
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(s) => check(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(v) => check_selector(v),
        Expr::MatrixSelector(m) => check_selector(&m.vs),
        Expr::Call(c) => {
            if functions::kind(c.func.name).is_none() {
                return Err(QueryError::UnsupportedFunction(c.func.name.to_string()));
            }
            for a in &c.args.args {
                check(a)?;
            }
            Ok(())
        }
        Expr::Extension(_) => Err(QueryError::UnsupportedExpression),
    }
}

fn check_selector(v: &VectorSelector) -> Result<(), QueryError> {
    if !v.matchers.or_matchers.is_empty() {
        return Err(QueryError::OrInMatchers);
    }
    Ok(())
}

fn selector_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut m = vs.matchers.matchers.clone();
    if let Some(n) = &vs.name {
        m.push(Matcher::new(MatchOp::Equal, METRIC_NAME, n));
    }
    m
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Evaluation times are kept within ±2^62 ms (about ±146 million years), far beyond any
/// time the API accepts, so that time arithmetic with offsets and ranges (each at most
/// 292 years) can never overflow an `i64`, whatever time a caller passes.
pub const MAX_EVAL_TIME_MS: i64 = 1 << 62;

fn clamp_time(t: i64) -> i64 {
    t.clamp(-MAX_EVAL_TIME_MS, MAX_EVAL_TIME_MS)
}

/// An `@` timestamp in milliseconds, clamped like evaluation times.
fn at_millis(t: &std::time::SystemTime) -> i64 {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    };
    clamp_time(ms)
}

/// The selections of one range query: each vector selector is selected once over the
/// widest window the query's steps need (decoding the history's chunks once), then every
/// step slices its own window out of it by binary search.
pub struct Preload {
    start: i64,
    end: i64,
    cache: parking_lot::Mutex<FxMap<PreloadKey, Option<Arc<Preloaded>>>>,
    /// Label sets derived from a source label set (name dropped, grouping key, match
    /// signature), built once per query instead of once per step: keyed by the source
    /// set's identity (its shared buffer, kept alive here, so an address is never
    /// reused while cached) and what was derived.
    derived: parking_lot::Mutex<FxMap<(usize, usize), Derived>>,
}

/// A cached derivation: the source (kept alive), the derived set and a number that
/// comes with it (a bucket's upper bound).
struct Derived {
    _source: Labels,
    labels: Labels,
    extra: Option<f64>,
}

impl Preload {
    /// For a range query whose steps lie in `[start, end]`.
    pub fn new(start: i64, end: i64) -> Self {
        Preload {
            start: clamp_time(start),
            end: clamp_time(end),
            cache: parking_lot::Mutex::new(FxMap::default()),
            derived: parking_lot::Mutex::new(FxMap::default()),
        }
    }

    /// How many selectors were selected over the whole range (not per step).
    pub fn selections(&self) -> usize {
        self.cache.lock().values().filter(|v| v.is_some()).count()
    }
}

#[derive(PartialEq, Eq, Hash)]
struct PreloadKey {
    selector: usize,
    range: i64,
}

/// One selector's series over the preloaded window, sorted by labels, samples by time
/// (stale markers kept: an instant selection ends at one).
struct Preloaded {
    series: Vec<crate::store::SelectedSeries>,
    /// Per series, what the steps reuse (same order as `series`).
    aux: Vec<SeriesAux>,
}

/// What the steps of a range query keep about one preloaded series.
struct SeriesAux {
    /// Where the last step's window began and ended: steps move forward, so the next
    /// window is searched from there instead of from scratch.
    lo: std::sync::atomic::AtomicUsize,
    hi: std::sync::atomic::AtomicUsize,
    /// Whether the series holds a stale marker (its windows are then filtered first).
    stale: bool,
    /// Counter resets, built on first use: every index `i` whose value is below the one
    /// before it, in order.
    resets: std::sync::OnceLock<Vec<u32>>,
}

impl SeriesAux {
    fn new(s: &[(i64, f64)]) -> Self {
        SeriesAux {
            lo: Default::default(),
            hi: Default::default(),
            stale: s.iter().any(|(_, v)| is_stale(*v)),
            resets: Default::default(),
        }
    }
}

/// One series' window at one step of a range query: a slice of its preloaded samples.
pub(crate) struct Window<'p> {
    pub labels: &'p Labels,
    /// The samples in the window, stale markers included.
    pub samples: &'p [(i64, f64)],
    /// Whether `samples` may hold a stale marker.
    pub stale: bool,
    all: &'p [(i64, f64)],
    lo: usize,
    aux: &'p SeriesAux,
}

impl<'p> Window<'p> {
    /// The values before each counter reset in the window (where a value is below the
    /// previous one, both inside the window), in order: what `rate` adds back. Only for
    /// windows without stale markers.
    pub fn reset_bases(&self) -> impl Iterator<Item = f64> + 'p {
        let all = self.all;
        let resets = self.aux.resets.get_or_init(|| {
            (1..all.len())
                .filter(|&i| all[i].1 < all[i - 1].1)
                .map(|i| i as u32)
                .collect()
        });
        let (lo, hi) = (self.lo as u32, (self.lo + self.samples.len()) as u32);
        let from = resets.partition_point(|&i| i <= lo);
        let to = resets.partition_point(|&i| i < hi);
        resets[from..to].iter().map(move |&i| all[i as usize - 1].1)
    }
}

/// `s.partition_point(|x| x.0 < t)` (`x.0 <= t` when `inclusive`), searched forward in
/// doubling strides from `from` when the answer lies at or after it, else by bisection.
fn seek(s: &[(i64, f64)], from: usize, t: i64, inclusive: bool) -> usize {
    let before = |x: &(i64, f64)| if inclusive { x.0 <= t } else { x.0 < t };
    let from = from.min(s.len());
    if from > 0 && !before(&s[from - 1]) {
        return s[..from].partition_point(before);
    }
    let (mut lo, mut stride) = (from, 1);
    while lo + stride <= s.len() && before(&s[lo + stride - 1]) {
        lo += stride;
        stride *= 2;
    }
    let hi = (lo + stride).min(s.len());
    lo + s[lo..hi].partition_point(before)
}

impl Preloaded {
    /// What `Store::select_last` over `[mint, maxt]` gives, stale samples dropped.
    fn last_in(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        for ((labels, s), aux) in self.series.iter().zip(&self.aux) {
            let i = seek(s, aux.hi.load(Relaxed), maxt, true);
            aux.hi.store(i, Relaxed);
            let Some(&(t, v)) = i.checked_sub(1).and_then(|i| s.get(i)) else {
                continue;
            };
            if t >= mint && !is_stale(v) {
                out.push(Sample {
                    labels: labels.clone(),
                    t,
                    v,
                });
            }
        }
        out
    }

    /// The window of each series in `[mint, maxt]` (stale markers included), series with
    /// none left out, as slices of the preloaded selection.
    fn windows(&self, mint: i64, maxt: i64) -> impl Iterator<Item = Window<'_>> + '_ {
        self.series
            .iter()
            .zip(&self.aux)
            .filter_map(move |((labels, s), aux)| {
                let lo = seek(s, aux.lo.load(Relaxed), mint, false);
                aux.lo.store(lo, Relaxed);
                let hi = seek(s, aux.hi.load(Relaxed).max(lo), maxt, true).max(lo);
                aux.hi.store(hi, Relaxed);
                (lo < hi).then(|| Window {
                    labels,
                    samples: &s[lo..hi],
                    stale: aux.stale,
                    all: s,
                    lo,
                    aux,
                })
            })
    }

    /// What `Store::select_bounded` over `[mint, maxt]` gives (series with no sample in
    /// the window left out), stale samples dropped; the samples a step touches are
    /// counted against `max_samples` as a selection of its own would be.
    fn window(
        &self,
        mint: i64,
        maxt: i64,
        max_samples: u64,
    ) -> Result<Vec<RangeSeries>, EvalError> {
        let mut used = 0u64;
        let mut out = Vec::new();
        for ((labels, s), aux) in self.series.iter().zip(&self.aux) {
            let lo = seek(s, aux.lo.load(Relaxed), mint, false);
            aux.lo.store(lo, Relaxed);
            let hi = seek(s, aux.hi.load(Relaxed).max(lo), maxt, true).max(lo);
            aux.hi.store(hi, Relaxed);
            if lo == hi {
                continue;
            }
            used = used.saturating_add((hi - lo) as u64 + 1);
            if used > max_samples {
                return Err(EvalError::TooManySamples);
            }
            out.push(RangeSeries {
                labels: labels.clone(),
                points: s[lo..hi]
                    .iter()
                    .copied()
                    .filter(|(_, v)| !is_stale(*v))
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// Evaluates expressions at one instant, within a [`Budget`].
pub struct Evaluator<'a> {
    pub store: &'a Store,
    pub ts: i64,
    /// Step of subqueries written without one (Prometheus: the global evaluation
    /// interval; promtool: the test file's `evaluation_interval`).
    pub subquery_step_ms: i64,
    budget: Arc<Budget>,
    /// Product of the step counts of the subqueries this evaluation runs inside.
    nested_steps: u64,
    /// Selections made once for a whole range query, sliced at each step.
    preload: Option<Arc<Preload>>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator under the default [`QueryLimits`], its deadline starting now.
    pub fn new(store: &'a Store, ts: i64) -> Self {
        Evaluator {
            store,
            ts: clamp_time(ts),
            subquery_step_ms: 60_000,
            budget: Arc::new(Budget::new(QueryLimits::default())),
            nested_steps: 1,
            preload: None,
        }
    }

    /// An evaluator of one range query's step: its budget and preload, no fresh budget.
    pub(crate) fn for_step(
        store: &'a Store,
        ts: i64,
        budget: Arc<Budget>,
        preload: Arc<Preload>,
    ) -> Self {
        Evaluator {
            store,
            ts: clamp_time(ts),
            subquery_step_ms: 60_000,
            budget,
            nested_steps: 1,
            preload: Some(preload),
        }
    }

    /// Serves selections from `preload` (one range query's) where the window asked lies
    /// inside what it holds.
    #[cfg(test)]
    pub(crate) fn with_preload(mut self, preload: Arc<Preload>) -> Self {
        self.preload = Some(preload);
        self
    }

    pub fn with_subquery_step(mut self, ms: i64) -> Self {
        if ms > 0 {
            self.subquery_step_ms = ms;
        }
        self
    }

    /// Evaluates under `budget` (its limits, deadline and cancellation flag).
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = budget;
        self
    }

    /// Evaluates under fresh `limits`, the deadline starting now.
    pub fn with_limits(self, limits: QueryLimits) -> Self {
        self.with_budget(Arc::new(Budget::new(limits)))
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// An instant subquery: the inner expression at every step aligned to the step
    /// within `[ts - offset - range, ts - offset]`, as `evaluator.eval` does.
    pub(crate) fn subquery(&self, sq: &SubqueryExpr) -> Result<Vec<RangeSeries>, EvalError> {
        let off = offset_ms(&sq.offset);
        let range = ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.subquery_step_ms);
        let end = match &sq.at {
            Some(AtModifier::At(t)) => at_millis(t),
            _ => self.ts,
        }
        .saturating_sub(off);
        let lower = end.saturating_sub(range);
        let mut start = step * (lower / step);
        if start < lower {
            start += step;
        }
        // Resolution, before any work: points per series of this subquery, times the
        // steps of the subqueries around it (each runs this one once per step).
        let steps = if end < start {
            0
        } else {
            u64::try_from((end as i128 - start as i128) / step as i128 + 1).unwrap_or(u64::MAX)
        };
        let max = self.budget.limits().max_points_per_series;
        let total = steps.saturating_mul(self.nested_steps);
        if steps > max {
            return Err(EvalError::TooManyPoints(format!(
                "exceeded maximum resolution of {} points per timeseries: subquery [{}:{}] has {} points. Try a larger subquery step or a shorter range",
                limits::thousands(max),
                promql_parser::util::display_duration(&sq.range),
                promql_parser::util::display_duration(&Duration::from_millis(step as u64)),
                limits::thousands(steps)
            )));
        }
        if total > max {
            return Err(EvalError::TooManyPoints(format!(
                "exceeded maximum resolution of {} points per timeseries: nested subqueries evaluate [{}:{}] {} times. Try larger subquery steps or fewer nested subqueries",
                limits::thousands(max),
                promql_parser::util::display_duration(&sq.range),
                promql_parser::util::display_duration(&Duration::from_millis(step as u64)),
                limits::thousands(total)
            )));
        }
        let mut fold = range::StepFold::default();
        let mut t = start;
        while t <= end {
            self.budget.check()?;
            let inner = Evaluator {
                store: self.store,
                ts: t,
                subquery_step_ms: self.subquery_step_ms,
                budget: self.budget.clone(),
                nested_steps: total.max(1),
                preload: self.preload.clone(),
            };
            // The step's own values are dropped once folded in: release them, then
            // charge the points (and new series) the subquery keeps.
            let mark = self.budget.mark();
            let v = match inner.eval(&sq.expr)? {
                Value::Vector(v) => v,
                Value::Scalar(x) => vec![Sample {
                    labels: Labels::empty(),
                    t,
                    v: x,
                }],
                _ => return err("subquery is only allowed on instant vector or scalar"),
            };
            self.budget.release_to(mark);
            fold.add(t, v, &self.budget)?;
            let Some(next) = t.checked_add(step) else {
                break;
            };
            t = next;
        }
        Ok(fold.into_series())
    }

    fn ref_time(&self, vs: &VectorSelector) -> i64 {
        let base = match &vs.at {
            None | Some(AtModifier::Start) | Some(AtModifier::End) => self.ts,
            Some(AtModifier::At(t)) => at_millis(t),
        };
        base.saturating_sub(offset_ms(&vs.offset))
    }

    /// Evaluates one node within the budget: stops when the deadline passed or the
    /// flag is set, releases what the node's children held and charges its output.
    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        self.budget.check()?;
        let mark = self.budget.mark();
        let v = self.eval_node(expr)?;
        self.budget.release_to(mark);
        self.charge(&v)?;
        Ok(v)
    }

    /// `f(src)`: in a range query computed once per source label set and `what`
    /// ([`DERIVE_WITHOUT_NAME`], [`DERIVE_BUCKET`] or a syntax node's address), with its
    /// bytes charged once for the whole query; otherwise computed now (and charged with
    /// the value that holds it).
    pub(crate) fn derive(
        &self,
        src: &Labels,
        what: usize,
        f: impl FnOnce(&Labels) -> (Labels, Option<f64>),
    ) -> (Labels, Option<f64>) {
        let Some(pre) = &self.preload else {
            return f(src);
        };
        // A label set held by nothing else was built by this step (label_replace, a
        // subquery's series): it will not come back at the next step, so caching it
        // would only grow the cache by one entry per step.
        if src.is_unshared() {
            return f(src);
        }
        let key = (src.pairs().as_ptr() as usize, what);
        let mut cache = pre.derived.lock();
        if let Some(d) = cache.get(&key) {
            return (d.labels.clone(), d.extra);
        }
        let (labels, extra) = f(src);
        if labels.is_unshared() {
            self.budget.pin_label_bytes(labels.heap_bytes() as u64);
        }
        cache.insert(
            key,
            Derived {
                _source: src.clone(),
                labels: labels.clone(),
                extra,
            },
        );
        (labels, extra)
    }

    /// `src` without `__name__`, derived once per range query.
    pub(crate) fn without_name(&self, src: &Labels) -> Labels {
        if !src.has(METRIC_NAME) {
            return src.clone();
        }
        self.derive(src, DERIVE_WITHOUT_NAME, |l| (l.without_name(), None))
            .0
    }

    /// Charges a value held from now on: its samples or points, and the label sets it
    /// owns alone (those the query built).
    fn charge(&self, v: &Value) -> Result<(), EvalError> {
        // Label sets built once for the whole query count too.
        self.budget.label_bytes_fit(0)?;
        match v {
            Value::Scalar(_) => Ok(()),
            Value::String(s) => self.budget.charge_label_bytes(s.len() as u64),
            Value::Vector(v) => {
                self.budget.charge_samples(v.len() as u64)?;
                for s in v {
                    self.budget.charge_labels_if_owned(&s.labels)?;
                }
                Ok(())
            }
            Value::Matrix(m) => {
                let points: u64 = m.iter().map(|s| s.points.len() as u64).sum();
                self.budget.charge_samples(points + m.len() as u64)?;
                for s in m {
                    self.budget.charge_labels_if_owned(&s.labels)?;
                }
                Ok(())
            }
        }
    }

    fn eval_node(&self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs))),
            Expr::MatrixSelector(m) => Ok(Value::Matrix(self.matrix_selector_limited(m)?)),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(vec) => {
                    let out: Vec<Sample> = vec
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.without_name(&s.labels),
                            t: self.ts,
                            v: -s.v,
                        })
                        .collect();
                    check_dupes(&out)?;
                    Ok(Value::Vector(out))
                }
                _ => err("unary minus on a non-numeric value"),
            },
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq)?)),
            Expr::Extension(_) => err("unsupported expression"),
        }
    }

    /// Evaluates to an instant vector (a scalar query answers one unlabelled sample),
    /// as `rules.EngineQueryFunc` and promtool do.
    pub fn eval_instant(&self, expr: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(v) => Ok(vec![Sample {
                labels: Labels::empty(),
                t: self.ts,
                v,
            }]),
            _ => err("rule result is not a vector or scalar"),
        }
    }

    /// The newest sample of each series within the lookback, stale markers dropped. A
    /// range query over a plain selector answers the same in one pass
    /// (`range::last_per_step`): a change to this rule changes both.
    pub fn vector_selector(&self, vs: &VectorSelector) -> Vec<Sample> {
        let rt = self.ref_time(vs);
        let mint = rt.saturating_sub(LOOKBACK_MS);
        if let Some(p) = self.preloaded(vs, LOOKBACK_MS, mint, rt) {
            return p.last_in(mint, rt);
        }
        let matchers = selector_matchers(vs);
        let mut out = Vec::new();
        for (labels, (t, v)) in
            self.store
                .select_last(&matchers, rt.saturating_sub(LOOKBACK_MS), rt)
        {
            if !is_stale(v) {
                out.push(Sample { labels, t, v });
            }
        }
        out
    }

    pub fn matrix_selector(&self, m: &MatrixSelector) -> Vec<RangeSeries> {
        let maxt = self.ref_time(&m.vs);
        let mint = maxt.saturating_sub(ms(&m.range));
        let matchers = selector_matchers(&m.vs);
        self.store
            .select(&matchers, mint, maxt)
            .into_iter()
            .map(|(labels, samples)| RangeSeries {
                labels,
                points: samples.into_iter().filter(|(_, v)| !is_stale(*v)).collect(),
            })
            .collect()
    }

    /// [`Self::matrix_selector`] that stops copying samples out of the store as soon as
    /// they would exceed the samples left in the budget.
    fn matrix_selector_limited(&self, m: &MatrixSelector) -> Result<Vec<RangeSeries>, EvalError> {
        let maxt = self.ref_time(&m.vs);
        let mint = maxt.saturating_sub(ms(&m.range));
        if let Some(p) = self.preloaded(&m.vs, ms(&m.range), mint, maxt) {
            return p.window(mint, maxt, self.budget.samples_left());
        }
        let matchers = selector_matchers(&m.vs);
        let selected = self
            .store
            .select_bounded(&matchers, mint, maxt, self.budget.samples_left())
            .ok_or(EvalError::TooManySamples)?;
        Ok(selected
            .into_iter()
            .map(|(labels, mut points)| {
                points.retain(|(_, v)| !is_stale(*v));
                RangeSeries { labels, points }
            })
            .collect())
    }

    /// The range query's preloaded selection of `vs` with `range` before each reference
    /// time, when it holds `[mint, maxt]`; filled on first use over the widest window
    /// the range query's steps need.
    fn preloaded(
        &self,
        vs: &VectorSelector,
        range: i64,
        mint: i64,
        maxt: i64,
    ) -> Option<Arc<Preloaded>> {
        let pre = self.preload.as_ref()?;
        let off = offset_ms(&vs.offset);
        let (lo, hi) = match &vs.at {
            Some(AtModifier::At(t)) => {
                let rt = at_millis(t).saturating_sub(off);
                (rt, rt)
            }
            _ => (pre.start.saturating_sub(off), pre.end.saturating_sub(off)),
        };
        let (pmint, pmaxt) = (lo.saturating_sub(range), hi);
        if mint < pmint || maxt > pmaxt {
            return None;
        }
        // The query's syntax tree outlives the range query and is not changed while it
        // runs: a selector node's address names it (its matchers, offset and @).
        let key = PreloadKey {
            selector: vs as *const VectorSelector as usize,
            range,
        };
        let mut cache = pre.cache.lock();
        if let Some(hit) = cache.get(&key) {
            return hit.clone();
        }
        // Capped at max_samples: a larger selection stays per step, as before.
        let cap = self.budget.limits().max_samples;
        let got = self
            .store
            .select_bounded(&selector_matchers(vs), pmint, pmaxt, cap)
            .map(|series| {
                self.budget
                    .note_preloaded(series.iter().map(|(_, s)| s.len() as u64).sum());
                let aux = series.iter().map(|(_, s)| SeriesAux::new(s)).collect();
                Arc::new(Preloaded { series, aux })
            });
        cache.insert(key, got.clone());
        got
    }

    fn scalar_of(&self, e: &Expr) -> Result<f64, EvalError> {
        match self.eval(e)? {
            Value::Scalar(v) => Ok(v),
            _ => err("expected a scalar"),
        }
    }

    fn vector_of(&self, e: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(e)? {
            Value::Vector(v) => Ok(v),
            _ => err("expected an instant vector"),
        }
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.id();
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(scalar_binop(op, l, r)?)),
            (Value::Vector(l), Value::Scalar(r)) => {
                let out = self.vector_scalar(op, l, r, false, return_bool)?;
                check_dupes(&out)?;
                Ok(Value::Vector(out))
            }
            (Value::Scalar(l), Value::Vector(r)) => {
                let out = self.vector_scalar(op, r, l, true, return_bool)?;
                check_dupes(&out)?;
                Ok(Value::Vector(out))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                    Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                    None => (false, Vec::new()),
                };
                let mut dropped = names.clone();
                dropped.push(METRIC_NAME.to_string());
                // The match signature, once per series and node in a range query.
                let node = b as *const BinaryExpr as usize;
                let sig = |lb: &Labels| -> Labels {
                    self.derive(lb, node, |lb| {
                        let l = if on {
                            lb.keep(&names)
                        } else {
                            lb.drop_names(&dropped)
                        };
                        (l, None)
                    })
                    .0
                };
                let out = match op {
                    token::T_LAND => {
                        if l.is_empty() || r.is_empty() {
                            Vec::new()
                        } else {
                            let rs: FxSet<Labels> = r.iter().map(|s| sig(&s.labels)).collect();
                            l.into_iter()
                                .filter(|s| rs.contains(&sig(&s.labels)))
                                .collect()
                        }
                    }
                    token::T_LOR => {
                        if l.is_empty() {
                            r
                        } else if r.is_empty() {
                            l
                        } else {
                            let ls: FxSet<Labels> = l.iter().map(|s| sig(&s.labels)).collect();
                            let mut out = l;
                            out.extend(r.into_iter().filter(|s| !ls.contains(&sig(&s.labels))));
                            out
                        }
                    }
                    token::T_LUNLESS => {
                        if l.is_empty() || r.is_empty() {
                            l
                        } else {
                            let rs: FxSet<Labels> = r.iter().map(|s| sig(&s.labels)).collect();
                            l.into_iter()
                                .filter(|s| !rs.contains(&sig(&s.labels)))
                                .collect()
                        }
                    }
                    _ => {
                        let card = b
                            .modifier
                            .as_ref()
                            .map(|m| m.card.clone())
                            .unwrap_or(VectorMatchCardinality::OneToOne);
                        self.vector_binop(op, l, r, &card, on, &names, return_bool, &sig, node)?
                    }
                };
                check_dupes(&out)?;
                Ok(Value::Vector(out))
            }
            _ => err("binary operation on a string"),
        }
    }

    fn vector_scalar(
        &self,
        op: u16,
        lhs: Vec<Sample>,
        scalar: f64,
        swap: bool,
        return_bool: bool,
    ) -> Result<Vec<Sample>, EvalError> {
        let comparison = TokenType::new(op).is_comparison_operator();
        let mut out = Vec::with_capacity(lhs.len());
        for s in lhs {
            let (lv, rv) = if swap { (scalar, s.v) } else { (s.v, scalar) };
            let (mut value, mut keep) = elem_binop(op, lv, rv)?;
            if comparison && swap {
                value = rv;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                let labels = if drops_name(op) || return_bool {
                    self.without_name(&s.labels)
                } else {
                    s.labels
                };
                out.push(Sample {
                    labels,
                    t: self.ts,
                    v: value,
                });
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn vector_binop(
        &self,
        op: u16,
        mut lhs: Vec<Sample>,
        mut rhs: Vec<Sample>,
        card: &VectorMatchCardinality,
        on: bool,
        matching: &[String],
        return_bool: bool,
        sig: &dyn Fn(&Labels) -> Labels,
        node: usize,
    ) -> Result<Vec<Sample>, EvalError> {
        if lhs.is_empty() || rhs.is_empty() {
            return Ok(Vec::new());
        }
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        if one_to_many {
            std::mem::swap(&mut lhs, &mut rhs);
        }
        let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
        let mut right: FxMap<Labels, &Sample> = FxMap::default();
        right.reserve(rhs.len());
        for rs in &rhs {
            let s = sig(&rs.labels);
            if let Some(dup) = right.get(&s) {
                let side = if one_to_many { "left" } else { "right" };
                let matched = if on {
                    rs.labels.keep(matching)
                } else {
                    let mut n = matching.to_vec();
                    n.push(METRIC_NAME.to_string());
                    rs.labels.drop_names(&n)
                };
                return err(format!(
                    "found duplicate series for the match group {matched} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    rs.labels, dup.labels
                ));
            }
            right.insert(s, rs);
        }
        let mut matched: FxMap<Labels, Option<FxSet<Labels>>> = FxMap::default();
        let mut out = Vec::new();
        for ls in &lhs {
            let s = sig(&ls.labels);
            let Some(rs) = right.get(&s) else { continue };
            let (mut vl, mut vr) = (ls.v, rs.v);
            if one_to_many {
                std::mem::swap(&mut vl, &mut vr);
            }
            let (mut value, keep) = elem_binop(op, vl, vr)?;
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            // The result's labels before group_x copies any: once per series and node
            // in a range query.
            let mut metric = self
                .derive(&ls.labels, node | 1, |l| {
                    let mut metric = l.clone();
                    if drops_name(op) {
                        metric.del(METRIC_NAME);
                    }
                    if matches!(card, VectorMatchCardinality::OneToOne) {
                        metric = if on {
                            metric.keep(matching)
                        } else {
                            metric.drop_names(matching)
                        };
                    }
                    (metric, None)
                })
                .0;
            for ln in &include {
                metric.set(ln.clone(), rs.labels.get(ln).to_string());
            }
            if return_bool {
                metric.del(METRIC_NAME);
            }
            if matches!(card, VectorMatchCardinality::OneToOne) {
                if matched.contains_key(&s) {
                    return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
                }
                matched.insert(s, None);
            } else {
                let set = matched
                    .entry(s)
                    .or_insert_with(|| Some(Default::default()))
                    .get_or_insert_with(Default::default);
                if !set.insert(metric.clone()) {
                    return err(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    );
                }
            }
            out.push(Sample {
                labels: metric,
                t: self.ts,
                v: value,
            });
        }
        Ok(out)
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let op = a.op.id();
        let mut k: i64 = 0;
        let mut q = 0.0;
        let mut value_label = String::new();
        if let Some(p) = &a.param {
            match self.eval(p)? {
                Value::Scalar(v) => {
                    if op == token::T_TOPK || op == token::T_BOTTOMK {
                        if !(v > -9.223_372_036_854_776e18 && v <= 9.223_372_036_854_775e18) {
                            return err(format!("Scalar value {v} overflows int64"));
                        }
                        k = v as i64;
                    } else {
                        q = v;
                    }
                }
                Value::String(s) => value_label = s,
                _ => return err("aggregation parameter must be a scalar or string"),
            }
        }
        let vec = self.vector_of(&a.expr)?;
        if (op == token::T_TOPK || op == token::T_BOTTOMK) && k < 1 {
            return Ok(Value::Vector(Vec::new()));
        }
        if op == token::T_COUNT_VALUES && !valid_label_name(&value_label) {
            return err(format!("invalid label name {value_label:?}"));
        }
        // Nothing to group (a range query's step before its series start): no grouping
        // labels to copy.
        if vec.is_empty() {
            return Ok(Value::Vector(Vec::new()));
        }
        let (without, mut grouping) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            None => (false, Vec::new()),
        };
        grouping.sort();
        if op == token::T_COUNT_VALUES && !without {
            grouping.push(value_label.clone());
            grouping.sort();
        }
        struct Group {
            labels: Labels,
            value: f64,
            mean: f64,
            count: usize,
            heap: Vec<Sample>,
        }
        let mut order: Vec<Labels> = Vec::new();
        let mut groups: FxMap<Labels, Group> = FxMap::default();
        let mut without_names = grouping.clone();
        without_names.push(METRIC_NAME.to_string());
        let group_key = |metric: &Labels| {
            if without {
                metric.drop_names(&without_names)
            } else {
                metric.keep(&grouping)
            }
        };
        let node = a as *const AggregateExpr as usize;
        for s in vec {
            let key = if op == token::T_COUNT_VALUES {
                let mut metric = s.labels.clone();
                metric.set(value_label.clone(), format_go_float(s.v));
                group_key(&metric)
            } else {
                // Once per series and node in a range query.
                self.derive(&s.labels, node, |l| (group_key(l), None)).0
            };
            let Some(g) = groups.get_mut(&key) else {
                let mut g = Group {
                    labels: key.clone(),
                    value: s.v,
                    mean: s.v,
                    count: 1,
                    heap: Vec::new(),
                };
                match op {
                    token::T_STDVAR | token::T_STDDEV => g.value = 0.0,
                    token::T_TOPK | token::T_BOTTOMK | token::T_QUANTILE => g.heap.push(Sample {
                        labels: s.labels.clone(),
                        t: self.ts,
                        v: s.v,
                    }),
                    token::T_GROUP => g.value = 1.0,
                    _ => {}
                }
                order.push(key.clone());
                groups.insert(key, g);
                continue;
            };
            match op {
                token::T_SUM => g.value += s.v,
                token::T_AVG => {
                    g.count += 1;
                    let skip = g.mean.is_infinite()
                        && ((s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0))
                            || (!s.v.is_infinite() && !s.v.is_nan()));
                    if !skip {
                        let n = g.count as f64;
                        g.mean += s.v / n - g.mean / n;
                    }
                }
                token::T_GROUP => {}
                token::T_MAX => {
                    if g.value < s.v || g.value.is_nan() {
                        g.value = s.v
                    }
                }
                token::T_MIN => {
                    if g.value > s.v || g.value.is_nan() {
                        g.value = s.v
                    }
                }
                token::T_COUNT | token::T_COUNT_VALUES => g.count += 1,
                token::T_STDVAR | token::T_STDDEV => {
                    g.count += 1;
                    let delta = s.v - g.mean;
                    g.mean += delta / g.count as f64;
                    g.value += delta * (s.v - g.mean);
                }
                token::T_TOPK | token::T_BOTTOMK => {
                    let top = op == token::T_TOPK;
                    let less = if top { less_value } else { less_reverse };
                    let head = g.heap[0].v;
                    let better = if top { head < s.v } else { head > s.v };
                    if (g.heap.len() as i64) < k || better || head.is_nan() {
                        let item = Sample {
                            labels: s.labels.clone(),
                            t: self.ts,
                            v: s.v,
                        };
                        if g.heap.len() as i64 == k {
                            if k == 1 {
                                g.heap[0] = item;
                                continue;
                            }
                            heap_pop(&mut g.heap, less);
                        }
                        heap_push(&mut g.heap, item, less);
                    }
                }
                token::T_QUANTILE => g.heap.push(s.clone()),
                _ => return err(format!("unsupported aggregation {}", a.op)),
            }
        }
        let mut out = Vec::new();
        for key in order {
            let g = groups.remove(&key).expect("every ordered key has a group");
            let value = match op {
                token::T_AVG => g.mean,
                token::T_COUNT | token::T_COUNT_VALUES => g.count as f64,
                token::T_STDVAR => g.value / g.count as f64,
                token::T_STDDEV => (g.value / g.count as f64).sqrt(),
                token::T_TOPK | token::T_BOTTOMK => {
                    let mut h = g.heap;
                    if op == token::T_TOPK {
                        h.sort_by(|a, b| cmp_by(less_value, b, a));
                    } else {
                        h.sort_by(|a, b| cmp_by(less_reverse, b, a));
                    }
                    out.extend(h);
                    continue;
                }
                token::T_QUANTILE => {
                    let vals: Vec<f64> = g.heap.iter().map(|s| s.v).collect();
                    functions::quantile(q, vals)
                }
                _ => g.value,
            };
            out.push(Sample {
                labels: g.labels,
                t: self.ts,
                v: value,
            });
        }
        Ok(Value::Vector(out))
    }

    fn call(&self, c: &Call) -> Result<Value, EvalError> {
        functions::call(self, c)
    }
}

fn cmp_by(less: fn(&Sample, &Sample) -> bool, a: &Sample, b: &Sample) -> std::cmp::Ordering {
    if less(a, b) {
        std::cmp::Ordering::Less
    } else if less(b, a) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

/// `vectorByValueHeap.Less`: NaN sorts first.
fn less_value(a: &Sample, b: &Sample) -> bool {
    if a.v.is_nan() {
        return true;
    }
    a.v < b.v
}

/// `vectorByReverseValueHeap.Less`.
fn less_reverse(a: &Sample, b: &Sample) -> bool {
    if a.v.is_nan() {
        return true;
    }
    a.v > b.v
}

/// Go's `container/heap`, transcribed so that ties pick the same series as Prometheus.
fn heap_up(h: &mut [Sample], mut j: usize, less: fn(&Sample, &Sample) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Sample], i0: usize, n: usize, less: fn(&Sample, &Sample) -> bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<Sample>, s: Sample, less: fn(&Sample, &Sample) -> bool) {
    h.push(s);
    let n = h.len() - 1;
    heap_up(h, n, less);
}

fn heap_pop(h: &mut Vec<Sample>, less: fn(&Sample, &Sample) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}

/// A PromQL number literal: decimal, `Inf`, `NaN`, hex (`0x1f`), with an optional sign.
pub fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        b if b.starts_with("0x") => i64::from_str_radix(&b[2..], 16).ok()? as f64,
        b if b
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
            && !b.is_empty() =>
        {
            b.parse().ok()?
        }
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`.
pub fn format_go_float(v: f64) -> String {
    sentinel_base::text::format_float(v, 'f', -1)
}

/// `shouldDropMetricName` (atan2 keeps the name in 2.42).
fn drops_name(op: u16) -> bool {
    matches!(
        op,
        token::T_ADD | token::T_SUB | token::T_DIV | token::T_MUL | token::T_POW | token::T_MOD
    )
}

fn scalar_binop(op: u16, l: f64, r: f64) -> Result<f64, EvalError> {
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    Ok(match op {
        token::T_ADD => l + r,
        token::T_SUB => l - r,
        token::T_MUL => l * r,
        token::T_DIV => l / r,
        token::T_POW => l.powf(r),
        token::T_MOD => l % r,
        token::T_EQLC => b(l == r),
        token::T_NEQ => b(l != r),
        token::T_GTR => b(l > r),
        token::T_LSS => b(l < r),
        token::T_GTE => b(l >= r),
        token::T_LTE => b(l <= r),
        _ => {
            return err(format!(
                "operator {} not allowed for Scalar operations",
                TokenType::new(op)
            ))
        }
    })
}

/// `vectorElemBinop`: the value and whether a comparison keeps the element.
fn elem_binop(op: u16, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_POW => (l.powf(r), true),
        token::T_MOD => (l % r, true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        token::T_ATAN2 => (l.atan2(r), true),
        _ => {
            return err(format!(
                "operator {} not allowed for operations between Vectors",
                TokenType::new(op)
            ))
        }
    })
}

pub(crate) fn check_dupes(v: &[Sample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = FxSet::default();
    seen.reserve(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
