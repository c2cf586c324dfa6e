//! Range queries (`query_range`): the expression at every step from `start` to `end`,
//! each step's vector folded into one series per label set, sorted by labels as
//! Prometheus returns them. Selections are made once for the whole range ([`Preload`])
//! and sliced per step.

use super::{Budget, EvalError, Evaluator, FxMap, Preload, RangeSeries};
use crate::labels::Labels;
use crate::store::Store;
use promql_parser::parser::Expr;
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
    // Each label set's series: its index in `series`.
    let mut index: FxMap<Labels, usize> = FxMap::default();
    let mut series: Vec<RangeSeries> = Vec::new();
    // Each selector is selected once over the whole range, then sliced per step.
    let preload = Arc::new(Preload::new(start, end));
    let mut t = start;
    while t <= end {
        budget.check()?;
        let mark = budget.mark();
        let v =
            Evaluator::for_step(store, t, budget.clone(), preload.clone()).eval_instant(expr)?;
        budget.release_to(mark);
        budget.charge_samples(v.len() as u64)?;
        for s in v {
            match index.get(&s.labels) {
                Some(&i) => series[i].points.push((t, s.v)),
                None => {
                    budget.charge_label_bytes(s.labels.heap_bytes() as u64)?;
                    index.insert(s.labels.clone(), series.len());
                    series.push(RangeSeries {
                        labels: s.labels,
                        points: vec![(t, s.v)],
                    });
                }
            }
        }
        let Some(next) = t.checked_add(step) else {
            break;
        };
        t = next;
    }
    drop(index);
    series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}
