//! Range queries (`query_range`): the expression at every step from `start` to `end`,
//! each step's vector folded into one series per label set, sorted by labels as
//! Prometheus returns them. Selections are made once for the whole range ([`Preload`])
//! and sliced per step.

use super::functions::EMPTY_IN_EMPTY_OUT;
use super::{
    clamp_time, ms, unwrap_parens, Budget, EvalError, Evaluator, FxMap, Preload, RangeSeries,
    Sample,
};
use crate::labels::Labels;
use crate::store::{is_stale, Store, LOOKBACK_MS};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, VectorSelector};
use std::sync::Arc;

/// Evaluates `expr` at every step from `start` to `end`. Each step's own values are
/// released once folded in; the kept points are charged.
pub fn eval_range(
    store: &Store,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    budget: &Arc<Budget>,
) -> Result<Vec<RangeSeries>, EvalError> {
    // Each selector is selected once over the whole range, then sliced per step.
    let preload = Arc::new(Preload::new(start, end));
    let mut ev = Evaluator::for_step(store, start, budget.clone(), preload);
    if let Some(series) = plain_selector(&mut ev, expr, start, end, step)? {
        return Ok(series);
    }
    ev.ts = clamp_time(start);
    if selects_nothing(&ev, expr) {
        return Ok(Vec::new());
    }
    let mut fold = StepFold::default();
    let mut t = start;
    while t <= end {
        budget.check()?;
        let mark = budget.mark();
        ev.ts = clamp_time(t);
        let v = ev.eval_instant(expr)?;
        budget.release_to(mark);
        fold.add(t, v, budget)?;
        let Some(next) = t.checked_add(step) else {
            break;
        };
        t = next;
    }
    let mut series = fold.into_series();
    series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

/// Steps' vectors folded into one series per label set (a range query's, a
/// subquery's), in the order the label sets first came. Charges the points kept and
/// each new label set once.
#[derive(Default)]
pub(super) struct StepFold {
    /// Each label set's index in `series`.
    index: FxMap<Labels, usize>,
    /// The same by the address of a label set's pairs, looked up first: most steps
    /// hand back the very label sets of the step before (the preloaded series' own,
    /// those derived once per query). An address is recorded only for a label set
    /// that `series` holds, so it cannot be freed and reused while recorded.
    by_address: FxMap<usize, usize>,
    series: Vec<RangeSeries>,
}

impl StepFold {
    /// Adds step `t`'s samples.
    pub(super) fn add(&mut self, t: i64, v: Vec<Sample>, budget: &Budget) -> Result<(), EvalError> {
        budget.charge_samples(v.len() as u64)?;
        for s in v {
            let address = address_of(&s.labels);
            if let Some(&i) = self.by_address.get(&address) {
                self.series[i].points.push((t, s.v));
                continue;
            }
            let i = match self.index.get(&s.labels) {
                Some(&i) => {
                    self.series[i].points.push((t, s.v));
                    i
                }
                None => {
                    budget.charge_label_bytes(s.labels.heap_bytes() as u64)?;
                    self.index.insert(s.labels.clone(), self.series.len());
                    self.series.push(RangeSeries {
                        labels: s.labels,
                        points: vec![(t, s.v)],
                    });
                    self.series.len() - 1
                }
            };
            if address_of(&self.series[i].labels) == address {
                self.by_address.insert(address, i);
            }
        }
        Ok(())
    }

    pub(super) fn into_series(self) -> Vec<RangeSeries> {
        self.series
    }
}

fn address_of(l: &Labels) -> usize {
    l.pairs().as_ptr() as usize
}

/// A query that is one instant selector (in parentheses or not), answered series by
/// series from its preloaded selection in one pass over each series' samples instead
/// of one evaluation per step: what most dashboard panels ask. None when the
/// expression is anything else or its selection could not be preloaded; the answer is
/// then the general one, which gives the same values.
fn plain_selector(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Option<Vec<RangeSeries>>, EvalError> {
    let mut e = expr;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    let Expr::VectorSelector(vs) = e else {
        return Ok(None);
    };
    // Clamped times would make the steps' reference times differ from the plain ones.
    if clamp_time(start) != start || clamp_time(end) != end || step <= 0 {
        return Ok(None);
    }
    ev.ts = start;
    let rt = ev.ref_time(vs);
    let Some(pre) = ev.preloaded(vs, LOOKBACK_MS, rt.saturating_sub(LOOKBACK_MS), rt) else {
        return Ok(None);
    };
    // Every later step's window lies in the preloaded range too: with `@` the reference
    // time is the same at every step; without, it grows up to `end` minus the offset,
    // the end of the preloaded range.
    let budget = ev.budget.clone();
    let mut out = Vec::new();
    for (labels, samples) in &pre.series {
        let points = last_per_step(ev, vs, samples, (start, end, step), &budget)?;
        if points.is_empty() {
            continue;
        }
        budget.charge_samples(points.len() as u64)?;
        budget.charge_label_bytes(labels.heap_bytes() as u64)?;
        out.push(RangeSeries {
            labels: labels.clone(),
            points,
        });
    }
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Some(out))
}

/// At each step, the newest sample at or before the step's reference time and within
/// the lookback, unless it is a stale marker: what [`Evaluator::vector_selector`] gives
/// for one series, for all steps in one forward pass. A change to that rule changes both
/// (`plain_selector_range_answers_as_per_step_evaluation` compares them). Checks the deadline and the
/// samples left every 4,096 steps, so one long series cannot outrun either.
fn last_per_step(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    samples: &[(i64, f64)],
    (start, end, step): (i64, i64, i64),
    budget: &Budget,
) -> Result<Vec<(i64, f64)>, EvalError> {
    let mut points = Vec::new();
    let mut i = 0;
    let mut t = start;
    let mut steps = 0u32;
    while t <= end {
        if steps.is_multiple_of(4096) {
            budget.check()?;
            if points.len() as u64 > budget.samples_left() {
                return Err(EvalError::TooManySamples);
            }
        }
        steps = steps.wrapping_add(1);
        ev.ts = t;
        let rt = ev.ref_time(vs);
        while i < samples.len() && samples[i].0 <= rt {
            i += 1;
        }
        if let Some(&(st, v)) = i.checked_sub(1).map(|j| &samples[j]) {
            if st >= rt.saturating_sub(LOOKBACK_MS) && !is_stale(v) {
                points.push((t, v));
            }
        }
        let Some(next) = t.checked_add(step) else {
            break;
        };
        t = next;
    }
    Ok(points)
}

/// Whether `expr` answers nothing at every step because the selections it is built on
/// select no series over the whole range (checked against the preloaded selections)
/// and nothing in it makes up series, scalars or errors of its own: a panel of a
/// metric this host does not have is answered without stepping through the range.
/// False whenever in doubt; the general loop then gives the (same) empty answer.
fn selects_nothing(ev: &Evaluator<'_>, expr: &Expr) -> bool {
    let nothing = |vs: &VectorSelector, range: i64| {
        let maxt = ev.ref_time(vs);
        ev.preloaded(vs, range, maxt.saturating_sub(range), maxt)
            .is_some_and(|p| p.series.is_empty())
    };
    // A scalar side that cannot fail or depend on data.
    let plain_scalar = |e: &Expr| match unwrap_parens(e) {
        Expr::NumberLiteral(_) => true,
        Expr::Call(c) => c.args.args.is_empty() && matches!(c.func.name, "time" | "pi"),
        _ => false,
    };
    match expr {
        Expr::Paren(p) => selects_nothing(ev, &p.expr),
        Expr::VectorSelector(vs) => nothing(vs, LOOKBACK_MS),
        Expr::MatrixSelector(m) => nothing(&m.vs, ms(&m.range)),
        Expr::Unary(u) => selects_nothing(ev, &u.expr),
        // Aggregations with a parameter check it even over nothing.
        Expr::Aggregate(a) => a.param.is_none() && selects_nothing(ev, &a.expr),
        Expr::Call(c) => {
            let args = &c.args.args;
            match (c.func.name, args.len()) {
                (name, 1) if EMPTY_IN_EMPTY_OUT.contains(&name) => selects_nothing(ev, &args[0]),
                ("histogram_quantile", 2) => {
                    matches!(unwrap_parens(&args[0]), Expr::NumberLiteral(_))
                        && selects_nothing(ev, &args[1])
                }
                _ => false,
            }
        }
        Expr::Binary(b) => {
            let vector = |e: &Expr| e.value_type() == ValueType::Vector;
            let (l, r) = (&*b.lhs, &*b.rhs);
            // Both sides, even where one empty side empties the answer (`and`, `unless`,
            // arithmetic): the other side is evaluated at every step too, and its
            // errors (a matching error, duplicate label sets, too many samples) must
            // still come back.
            match (vector(l), vector(r)) {
                (true, true) => selects_nothing(ev, l) && selects_nothing(ev, r),
                (true, false) => plain_scalar(r) && selects_nothing(ev, l),
                (false, true) => plain_scalar(l) && selects_nothing(ev, r),
                (false, false) => false,
            }
        }
        _ => false,
    }
}
