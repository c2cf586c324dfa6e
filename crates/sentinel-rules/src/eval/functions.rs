//! PromQL functions, transcribed from Prometheus 2.42's `promql/functions.go` (including
//! its Kahan summation, extrapolation and NaN rules) so that results are bit-identical.

use super::{
    check_dupes, err, ms, unwrap_parens, EvalError, Evaluator, RangeSeries, Sample, Value,
};
use crate::labels::{valid_label_name, Labels, METRIC_NAME};
use crate::store::is_stale;
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

/// Go's `math.Max`: NaN wins, +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a > 0.0 || b.is_infinite() && b > 0.0 {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a < 0.0 || b.is_infinite() && b < 0.0 {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `quantile` of promql/quantile.go.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).expect("neither is NaN"),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = go_max(0.0, rank.floor());
    let upper = go_min(n - 1.0, lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `bucketQuantile` of promql/quantile.go.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if !(buckets[buckets.len() - 1].0.is_infinite() && buckets[buckets.len() - 1].0 > 0.0) {
        return f64::NAN;
    }
    // coalesceBuckets
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    let mut buckets = merged;
    // ensureMonotonic
    // Starts from the first count, NaN included, as ensureMonotonic does.
    let mut max = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    // sort.Search(n, count >= rank)
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let h = (lo + hi) / 2;
        // sort.Search's predicate `count >= rank`; NaN ranks never match.
        if buckets[h].1 >= rank {
            hi = h;
        } else {
            lo = h + 1;
        }
    }
    let b = lo;
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut start = 0.0;
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, (t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && *v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(*v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let sx = sx + cx;
    let sy = sy + cy;
    let sxy = sxy + cxy;
    let sx2 = sx2 + cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn extrapolated_rate(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    // The value before each reset, in order.
    let bases = points
        .windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| w[0].1);
    extrapolated_rate_with(
        points,
        bases,
        range_start,
        range_end,
        range_secs,
        is_counter,
        is_rate,
    )
}

/// `extrapolatedRate` with the counter resets given: `bases` are the values before
/// each reset, in order (added back to the difference one by one, as Prometheus does).
fn extrapolated_rate_with(
    points: &[(i64, f64)],
    bases: impl Iterator<Item = f64>,
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.1 - first.1;
    if is_counter {
        for prev in bases {
            result += prev;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (points.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range_secs;
    }
    Some(result * factor)
}

/// `funcHoltWinters` of Prometheus 2.42.
fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, (_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        // calcTrendValue(i-1, ...)
        b = if i == 1 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        };
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last = points[points.len() - 1];
    let prev = points[points.len() - 2];
    let mut result = if is_rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

fn string_arg(e: &Expr) -> Result<String, EvalError> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => err("expected a string literal"),
    }
}

/// `createLabelsForAbsentFunction`.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::empty(),
    };
    let mut l = Labels::empty();
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(&m.name) {
            l.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            l.del(&m.name);
        }
    }
    l
}

/// How the evaluator calls a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Over the samples of each series in a range (`rate(x[5m])`).
    Range,
    /// On instant values, scalars or strings.
    Instant,
}

use FunctionKind::{Instant, Range};

/// Every function the evaluator implements (the documented subset), with its kind: the
/// one list that both the load-time check and the dispatch read.
pub const FUNCTIONS: &[(&str, FunctionKind)] = &[
    ("holt_winters", Range),
    ("rate", Range),
    ("irate", Range),
    ("increase", Range),
    ("delta", Range),
    ("idelta", Range),
    ("deriv", Range),
    ("predict_linear", Range),
    ("avg_over_time", Range),
    ("min_over_time", Range),
    ("max_over_time", Range),
    ("sum_over_time", Range),
    ("count_over_time", Range),
    ("quantile_over_time", Range),
    ("last_over_time", Range),
    ("present_over_time", Range),
    ("stddev_over_time", Range),
    ("stdvar_over_time", Range),
    ("changes", Range),
    ("resets", Range),
    ("absent_over_time", Range),
    ("absent", Instant),
    ("histogram_quantile", Instant),
    ("abs", Instant),
    ("ceil", Instant),
    ("floor", Instant),
    ("round", Instant),
    ("clamp", Instant),
    ("clamp_min", Instant),
    ("clamp_max", Instant),
    ("exp", Instant),
    ("ln", Instant),
    ("log2", Instant),
    ("log10", Instant),
    ("sqrt", Instant),
    ("sgn", Instant),
    ("time", Instant),
    ("timestamp", Instant),
    ("vector", Instant),
    ("scalar", Instant),
    ("label_replace", Instant),
    ("label_join", Instant),
    ("sort", Instant),
    ("sort_desc", Instant),
    ("acos", Instant),
    ("acosh", Instant),
    ("asin", Instant),
    ("asinh", Instant),
    ("atan", Instant),
    ("atanh", Instant),
    ("cos", Instant),
    ("cosh", Instant),
    ("sin", Instant),
    ("sinh", Instant),
    ("tan", Instant),
    ("tanh", Instant),
    ("deg", Instant),
    ("rad", Instant),
    ("pi", Instant),
    ("day_of_month", Instant),
    ("day_of_week", Instant),
    ("day_of_year", Instant),
    ("days_in_month", Instant),
    ("hour", Instant),
    ("minute", Instant),
    ("month", Instant),
    ("year", Instant),
];

/// Functions of [`FUNCTIONS`] that, called with one argument that selects nothing,
/// answer nothing and cannot fail: a range query over such a call of empty selections
/// is answered without stepping (`eval::range`). Anything with a parameter, or that
/// makes up series (`absent`, `vector`, `label_replace`), is not here.
pub(super) const EMPTY_IN_EMPTY_OUT: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "abs",
    "ceil",
    "floor",
    "exp",
    "sqrt",
    "ln",
    "log2",
    "log10",
    "sgn",
    "timestamp",
    "sort",
    "sort_desc",
];

#[cfg(test)]
#[test]
fn every_empty_in_empty_out_function_is_one_the_evaluator_implements() {
    for name in EMPTY_IN_EMPTY_OUT {
        assert!(kind(name).is_some(), "{name} is not in FUNCTIONS");
    }
}

/// The kind of a function, or `None` when the evaluator does not implement it.
pub fn kind(name: &str) -> Option<FunctionKind> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

pub(super) fn call(ev: &Evaluator, c: &Call) -> Result<Value, EvalError> {
    let name = c.func.name;
    let args = &c.args.args;
    if kind(name) == Some(Range) {
        return range_call(ev, c);
    }
    let scalar_arg = |i: usize| -> Result<f64, EvalError> { ev.scalar_of(&args[i]) };
    let simple = |f: fn(f64) -> f64| -> Result<Value, EvalError> {
        let v = ev.vector_of(&args[0])?;
        let out: Vec<Sample> = v
            .into_iter()
            .map(|s| Sample {
                labels: ev.without_name(&s.labels),
                t: ev.ts,
                v: f(s.v),
            })
            .collect();
        check_dupes(&out)?;
        Ok(Value::Vector(out))
    };
    match name {
        "abs" => simple(f64::abs),
        "ceil" => simple(f64::ceil),
        "floor" => simple(f64::floor),
        "exp" => simple(f64::exp),
        "sqrt" => simple(f64::sqrt),
        "ln" => simple(f64::ln),
        "log2" => simple(f64::log2),
        "log10" => simple(f64::log10),
        "acos" => simple(f64::acos),
        "acosh" => simple(f64::acosh),
        "asin" => simple(f64::asin),
        "asinh" => simple(f64::asinh),
        "atan" => simple(f64::atan),
        "atanh" => simple(f64::atanh),
        "cos" => simple(f64::cos),
        "cosh" => simple(f64::cosh),
        "sin" => simple(f64::sin),
        "sinh" => simple(f64::sinh),
        "tan" => simple(f64::tan),
        "tanh" => simple(f64::tanh),
        "deg" => simple(|v| v * 180.0 / std::f64::consts::PI),
        "rad" => simple(|v| v * std::f64::consts::PI / 180.0),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "sgn" => simple(|v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "round" => {
            let to_nearest = if args.len() >= 2 { scalar_arg(1)? } else { 1.0 };
            let inv = 1.0 / to_nearest;
            let v = ev.vector_of(&args[0])?;
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| Sample {
                    labels: ev.without_name(&s.labels),
                    t: ev.ts,
                    v: (s.v * inv + 0.5).floor() / inv,
                })
                .collect();
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.vector_of(&args[0])?;
            let (lo, hi) = match name {
                "clamp" => (Some(scalar_arg(1)?), Some(scalar_arg(2)?)),
                "clamp_min" => (Some(scalar_arg(1)?), None),
                _ => (None, Some(scalar_arg(1)?)),
            };
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if hi < lo {
                    return Ok(Value::Vector(Vec::new()));
                }
            }
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| {
                    let v = match (lo, hi) {
                        (Some(lo), Some(hi)) => go_max(lo, go_min(hi, s.v)),
                        (Some(lo), None) => go_max(lo, s.v),
                        (None, Some(hi)) => go_min(hi, s.v),
                        (None, None) => s.v,
                    };
                    Sample {
                        labels: ev.without_name(&s.labels),
                        t: ev.ts,
                        v,
                    }
                })
                .collect();
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "time" => Ok(Value::Scalar(ev.ts as f64 / 1000.0)),
        "timestamp" => {
            let is_selector = matches!(unwrap_parens(&args[0]), Expr::VectorSelector(_));
            let v = ev.vector_of(&args[0])?;
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| {
                    let t = if is_selector { s.t } else { ev.ts };
                    Sample {
                        labels: ev.without_name(&s.labels),
                        t: ev.ts,
                        v: t as f64 / 1000.0,
                    }
                })
                .collect();
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Labels::empty(),
            t: ev.ts,
            v: scalar_arg(0)?,
        }])),
        "scalar" => {
            let v = ev.vector_of(&args[0])?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "absent" => {
            let v = ev.vector_of(&args[0])?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![Sample {
                labels: absent_labels(&args[0]),
                t: ev.ts,
                v: 1.0,
            }]))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector_of(&args[0])?;
            // sort: ascending, NaN last; sort_desc: descending, NaN last.
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => {
                    let o = a.v.partial_cmp(&b.v).expect("neither is NaN");
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            });
            Ok(Value::Vector(v))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let v = ev.vector_of(&args[1])?;
            let mut order: Vec<Labels> = Vec::new();
            let mut groups: super::FxMap<Labels, Vec<(f64, f64)>> = Default::default();
            for s in v {
                // The group and the bound, once per series in a range query.
                let (key, ub) = ev.derive(&s.labels, super::DERIVE_BUCKET, |l| {
                    let ub = parse_go_float(l.get("le"));
                    let mut key = l.clone();
                    key.del("le");
                    key.del(METRIC_NAME);
                    (key, ub)
                });
                let Some(ub) = ub else {
                    continue;
                };
                groups
                    .entry(key.clone())
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push((ub, s.v));
            }
            let out: Vec<Sample> = order
                .into_iter()
                .map(|k| {
                    let b = groups.remove(&k).expect("ordered keys have buckets");
                    Sample {
                        labels: k,
                        t: ev.ts,
                        v: bucket_quantile(q, b),
                    }
                })
                .collect();
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "label_replace" => {
            let v = ev.vector_of(&args[0])?;
            let dst = string_arg(&args[1])?;
            let repl = string_arg(&args[2])?;
            let src = string_arg(&args[3])?;
            let re_str = string_arg(&args[4])?;
            let re = regex::Regex::new(&format!("^(?:{re_str})$")).map_err(|_| {
                EvalError::Msg(format!(
                    "invalid regular expression in label_replace(): {re_str}"
                ))
            })?;
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            // Each `$` of the replacement expands to at most the whole source value:
            // check that bound against the label budget before building anything.
            let refs = repl.matches('$').count() as u64;
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let src_val = s.labels.get(&src).to_string();
                let labels = match re.captures(&src_val) {
                    None => s.labels,
                    Some(caps) => {
                        let bound = (s.labels.heap_bytes() as u64)
                            .saturating_add(repl.len() as u64)
                            .saturating_add(refs.saturating_mul(src_val.len() as u64));
                        ev.budget().label_bytes_fit(bound)?;
                        ev.budget().check()?;
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        let mut l = s.labels;
                        l.del(&dst);
                        l.set(dst.clone(), res);
                        ev.budget().charge_labels_if_owned(&l)?;
                        l
                    }
                };
                out.push(Sample {
                    labels,
                    t: ev.ts,
                    v: s.v,
                });
            }
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = ev.vector_of(&args[0])?;
            let dst = string_arg(&args[1])?;
            let sep = string_arg(&args[2])?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                let s = string_arg(a)?;
                if !valid_label_name(&s) {
                    return err(format!("invalid source label name in label_join(): {s}"));
                }
                srcs.push(s);
            }
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n)).collect();
                let len = joined.iter().map(|j| j.len() as u64).sum::<u64>()
                    + (sep.len() as u64).saturating_mul(joined.len().saturating_sub(1) as u64);
                ev.budget()
                    .label_bytes_fit((s.labels.heap_bytes() as u64).saturating_add(len))?;
                ev.budget().check()?;
                let joined = joined.join(&sep);
                let mut l = s.labels.clone();
                l.set(dst.clone(), joined);
                ev.budget().charge_labels_if_owned(&l)?;
                out.push(Sample {
                    labels: l,
                    t: ev.ts,
                    v: s.v,
                });
            }
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let f = |secs: i64| -> f64 {
                use chrono::{Datelike, Timelike};
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
                match name {
                    "day_of_month" => t.day() as f64,
                    "day_of_week" => t.weekday().num_days_from_sunday() as f64,
                    "day_of_year" => t.ordinal() as f64,
                    "days_in_month" => {
                        let (y, m) = (t.year(), t.month());
                        let next = if m == 12 {
                            chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
                        } else {
                            chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
                        };
                        next.and_then(|n| n.pred_opt())
                            .map(|d| d.day() as f64)
                            .unwrap_or(f64::NAN)
                    }
                    "hour" => t.hour() as f64,
                    "minute" => t.minute() as f64,
                    "month" => t.month() as f64,
                    _ => t.year() as f64,
                }
            };
            if args.is_empty() {
                return Ok(Value::Vector(vec![Sample {
                    labels: Labels::empty(),
                    t: ev.ts,
                    v: f(ev.ts.div_euclid(1000)),
                }]));
            }
            let v = ev.vector_of(&args[0])?;
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| Sample {
                    labels: ev.without_name(&s.labels),
                    t: ev.ts,
                    v: f(go_f64_to_i64(s.v)),
                })
                .collect();
            check_dupes(&out)?;
            Ok(Value::Vector(out))
        }
        other => err(format!("unsupported function {other}()")),
    }
}

/// Go's `int64(f)` on amd64: out-of-range and NaN become the minimum int64.
fn go_f64_to_i64(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Go's `strconv.ParseFloat` for bucket bounds (`+Inf`, `Inf`, `1e3`, `0x1p-2` aside).
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if s.is_empty() || s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    s.replace('_', "x").parse().ok()
}

fn range_call(ev: &Evaluator, c: &Call) -> Result<Value, EvalError> {
    let name = c.func.name;
    let args = &c.args.args;
    let idx = args
        .iter()
        .position(|a| {
            matches!(
                unwrap_parens(a),
                Expr::MatrixSelector(_) | Expr::Subquery(_)
            )
        })
        .ok_or_else(|| EvalError::Msg(format!("{name}() expects a range vector")))?;
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != idx {
            scalars.push(ev.scalar_of(a)?);
        }
    }
    let mut out = Vec::new();
    let mut emit = |labels: &Labels, v: Option<f64>| {
        if let Some(v) = v {
            let labels = if name == "last_over_time" {
                labels.clone()
            } else {
                ev.without_name(labels)
            };
            out.push(Sample {
                labels,
                t: ev.ts,
                v,
            });
        }
    };
    let (offset, range, range_dur, mat) = match unwrap_parens(&args[idx]) {
        Expr::MatrixSelector(sel) => {
            let maxt = ev.ref_time(&sel.vs);
            let range = ms(&sel.range);
            let mint = maxt.saturating_sub(range);
            if let Some(pre) = ev.preloaded(&sel.vs, range, mint, maxt) {
                // A range query's step: the function over each series' window of the
                // selection made once for the whole range, no copy of the window.
                let at = RangeAt {
                    start: maxt - range,
                    end: maxt,
                    secs: sel.range.as_secs_f64(),
                    ts: ev.ts,
                };
                ev.budget().check()?;
                let left = ev.budget().samples_left();
                let (mut used, mut held) = (0u64, 0u64);
                let mut failed = None;
                let mut fresh: Vec<(i64, f64)> = Vec::new();
                let counter = matches!(name, "rate" | "increase");
                for win in pre.windows(mint, maxt) {
                    let w = win.samples;
                    // Counted as a selection of this step's own would be.
                    used = used.saturating_add(w.len() as u64 + 1);
                    if used > left {
                        return Err(EvalError::TooManySamples);
                    }
                    let stale = win.stale && w.iter().any(|(_, v)| is_stale(*v));
                    let p = if stale {
                        fresh.clear();
                        fresh.extend(w.iter().filter(|(_, v)| !is_stale(*v)));
                        &fresh[..]
                    } else {
                        w
                    };
                    held += p.len() as u64 + 1;
                    if p.is_empty() || failed.is_some() {
                        continue;
                    }
                    let v = if counter && !stale {
                        // The resets of the window from the series' index, not a walk
                        // over every sample of a long window: the same additions in
                        // the same order.
                        Ok(extrapolated_rate_with(
                            p,
                            win.reset_bases(),
                            at.start,
                            at.end,
                            at.secs,
                            true,
                            name == "rate",
                        ))
                    } else {
                        range_value(name, p, &at, &scalars)
                    };
                    match v {
                        Ok(v) => emit(win.labels, v),
                        Err(e) => failed = Some(e),
                    }
                }
                // What the selection's matrix would have held while the function ran.
                ev.budget().charge_samples(held)?;
                if let Some(e) = failed {
                    return Err(e);
                }
                return finish_range(ev, name, args, out);
            }
            let Value::Matrix(mat) = ev.eval(&args[idx])? else {
                return err("expected a range vector");
            };
            (ev.ts - maxt, range, sel.range, mat)
        }
        Expr::Subquery(sq) => {
            let off = super::offset_ms(&sq.offset);
            (off, ms(&sq.range), sq.range, ev.subquery(sq)?)
        }
        _ => return err("expected a range vector"),
    };
    let range_end = ev.ts - offset;
    let at = RangeAt {
        start: range_end - range,
        end: range_end,
        secs: range_dur.as_secs_f64(),
        ts: ev.ts,
    };
    for RangeSeries { labels, points } in &mat {
        if points.is_empty() {
            continue;
        }
        let v = range_value(name, points, &at, &scalars)?;
        emit(labels, v);
    }
    finish_range(ev, name, args, out)
}

/// The window a range function's step covers, and the step's time.
struct RangeAt {
    start: i64,
    end: i64,
    secs: f64,
    ts: i64,
}

/// `absent_over_time`'s answer, or the vector checked for duplicate label sets.
fn finish_range(
    ev: &Evaluator,
    name: &str,
    args: &[Box<Expr>],
    out: Vec<Sample>,
) -> Result<Value, EvalError> {
    if name == "absent_over_time" {
        if out.is_empty() {
            return Ok(Value::Vector(vec![Sample {
                labels: absent_labels(&args[0]),
                t: ev.ts,
                v: 1.0,
            }]));
        }
        return Ok(Value::Vector(Vec::new()));
    }
    check_dupes(&out)?;
    Ok(Value::Vector(out))
}

/// A range function's value over one series' points in one window (None: no value).
fn range_value(
    name: &str,
    p: &[(i64, f64)],
    at: &RangeAt,
    scalars: &[f64],
) -> Result<Option<f64>, EvalError> {
    Ok(match name {
        "rate" => extrapolated_rate(p, at.start, at.end, at.secs, true, true),
        "increase" => extrapolated_rate(p, at.start, at.end, at.secs, true, false),
        "delta" => extrapolated_rate(p, at.start, at.end, at.secs, false, false),
        "holt_winters" => {
            let (sf, tf) = (scalars[0], scalars[1]);
            if sf <= 0.0 || sf >= 1.0 {
                return err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                ));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                ));
            }
            holt_winters(p, sf, tf)
        }
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "deriv" => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => (p.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(p, at.ts);
            slope * scalars[0] + intercept
        }),
        "avg_over_time" => {
            let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
            for (_, v) in p {
                count += 1.0;
                if mean.is_infinite() {
                    if v.is_infinite() && (mean > 0.0) == (*v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                (mean, c) = kahan_inc(v / count - mean / count, mean, c);
            }
            Some(if mean.is_infinite() { mean } else { mean + c })
        }
        "count_over_time" => Some(p.len() as f64),
        "last_over_time" => Some(p[p.len() - 1].1),
        "present_over_time" | "absent_over_time" => Some(1.0),
        "max_over_time" => {
            let mut m = p[0].1;
            for (_, v) in p {
                if *v > m || m.is_nan() {
                    m = *v;
                }
            }
            Some(m)
        }
        "min_over_time" => {
            let mut m = p[0].1;
            for (_, v) in p {
                if *v < m || m.is_nan() {
                    m = *v;
                }
            }
            Some(m)
        }
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for (_, v) in p {
                (s, c) = kahan_inc(*v, s, c);
            }
            Some(if f64::is_infinite(s) { s } else { s + c })
        }
        "quantile_over_time" => Some(quantile(scalars[0], p.iter().map(|x| x.1).collect())),
        "stddev_over_time" | "stdvar_over_time" => {
            let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (_, v) in p {
                count += 1.0;
                let delta = v - (mean + cm);
                (mean, cm) = kahan_inc(delta / count, mean, cm);
                (aux, ca) = kahan_inc(delta * (v - (mean + cm)), aux, ca);
            }
            let var = (aux + ca) / count;
            Some(if name == "stddev_over_time" {
                var.sqrt()
            } else {
                var
            })
        }
        "changes" => {
            let mut n = 0;
            let mut prev = p[0].1;
            for (_, cur) in &p[1..] {
                if *cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1;
                }
                prev = *cur;
            }
            Some(n as f64)
        }
        "resets" => {
            let mut n = 0;
            let mut prev = p[0].1;
            for (_, cur) in &p[1..] {
                if *cur < prev {
                    n += 1;
                }
                prev = *cur;
            }
            Some(n as f64)
        }
        other => return err(format!("unsupported function {other}()")),
    })
}
