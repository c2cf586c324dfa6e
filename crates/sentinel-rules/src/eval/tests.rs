use super::*;
use crate::store::Origin;

type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn store_with(series: &[SeriesSpec]) -> Store {
    let s = Store::unbounded();
    for (labels, samples) in series {
        let l = Labels::from_pairs(labels.iter().copied());
        for (t, v) in *samples {
            s.append(&l, *t, *v, Origin::Rules);
        }
    }
    s
}

fn eval(store: &Store, ts: i64, q: &str) -> Vec<Sample> {
    let e = crate::eval::parse(q).unwrap();
    check(&e).unwrap();
    let mut v = Evaluator::new(store, ts).eval_instant(&e).unwrap();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

#[test]
fn rate_extrapolates_like_prometheus() {
    // 0,10,20,...,100 every 15s: rate over 1m at 150s.
    let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 15_000, i as f64 * 10.0)).collect();
    let s = store_with(&[(&[("__name__", "c_total")], &pts)]);
    let v = eval(&s, 150_000, "rate(c_total[1m])");
    assert_eq!(v.len(), 1);
    assert!((v[0].v - 10.0 / 15.0).abs() < 1e-12);
    assert!(v[0].labels.is_empty(), "rate drops the metric name");
}

#[test]
fn comparison_keeps_name_and_arithmetic_drops_it() {
    let s = store_with(&[(&[("__name__", "m"), ("a", "x")], &[(0, 5.0)])]);
    assert_eq!(eval(&s, 0, "m > 1")[0].labels.get("__name__"), "m");
    assert_eq!(eval(&s, 0, "m + 1")[0].labels.get("__name__"), "");
    assert!(eval(&s, 0, "m > 10").is_empty());
    assert_eq!(eval(&s, 0, "m > bool 10")[0].v, 0.0);
}

#[test]
fn lookback_is_five_minutes_and_stale_marker_hides() {
    let s = store_with(&[(&[("__name__", "m")], &[(0, 1.0)])]);
    assert_eq!(eval(&s, 300_000, "m").len(), 1);
    assert!(eval(&s, 300_001, "m").is_empty());
    s.append(
        &Labels::from_pairs([("__name__", "m")]),
        1000,
        crate::store::stale_nan(),
        Origin::Rules,
    );
    assert!(eval(&s, 2000, "m").is_empty());
}
