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

// --- Query limits (issue: hostile queries exhausted memory and kept running) ---

use std::time::{Duration, Instant};

fn run_with(q: &str, limits: QueryLimits) -> Result<Value, EvalError> {
    let store = Store::unbounded();
    let e = parse(q).unwrap();
    check(&e).unwrap();
    Evaluator::new(&store, 1_700_000_000_000)
        .with_limits(limits)
        .eval(&e)
}

/// `label_replace` nested 27 deep, each level doubling the value of label `a`.
fn doubling_label_replace(depth: usize) -> String {
    let mut q = format!(
        "label_replace(vector(1), \"a\", \"{}\", \"\", \"\")",
        "x".repeat(64)
    );
    for _ in 0..depth {
        q = format!("label_replace({q}, \"a\", \"$1$1\", \"a\", \"(.*)\")");
    }
    q
}

#[test]
fn nested_label_replace_is_stopped_by_label_byte_cap() {
    let q = doubling_label_replace(27);
    assert!(q.len() < 1300, "the attack is about 1.2 KB of query");
    let t0 = Instant::now();
    let r = run_with(&q, QueryLimits::default());
    assert!(
        matches!(r, Err(EvalError::TooManyLabelBytes(_))),
        "{:?}",
        r.map(|_| ())
    );
    // Unbounded before: it grew by about 1 GB/s until the allocator failed. Now the
    // biggest value built is under the 16 MiB cap (seconds in a debug build).
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    eprintln!("nested label_replace stopped after {:?}", t0.elapsed());
    // A few levels stay well inside the cap and still answer.
    let v = run_with(&doubling_label_replace(3), QueryLimits::default()).unwrap();
    let Value::Vector(v) = v else { panic!() };
    assert_eq!(v[0].labels.get("a").len(), 64 * 8);
}

#[test]
fn label_byte_cap_is_checked_before_a_huge_expansion() {
    // One level that would multiply a 1 MiB value by 200: refused on the bound alone.
    let q = format!(
        "label_replace(label_replace(vector(1), \"a\", \"{}\", \"\", \"\"), \"a\", \"{}\", \"a\", \"(.*)\")",
        "x".repeat(1024),
        "$1".repeat(200)
    );
    let limits = QueryLimits {
        max_label_bytes: 100_000,
        ..QueryLimits::default()
    };
    let t0 = Instant::now();
    assert_eq!(
        run_with(&q, limits).err(),
        Some(EvalError::TooManyLabelBytes(100_000))
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn million_point_subquery_is_refused_by_resolution_cap_in_parallel() {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                run_with(
                    "sum_over_time(vector(1)[100000d:1ms])",
                    QueryLimits::default(),
                )
            })
        })
        .collect();
    for h in handles {
        let e = h.join().unwrap().unwrap_err();
        assert!(matches!(e, EvalError::TooManyPoints(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("exceeded maximum resolution of 11,000 points per timeseries"),
            "{e}"
        );
        assert_eq!(e.error_type(), "bad_data");
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

fn nested_max_over_time(depth: usize) -> String {
    let mut q = "vector(1)".to_string();
    for _ in 0..depth {
        q = format!("max_over_time({q}[1m:1m])");
    }
    q
}

#[test]
fn nested_subqueries_150_deep_are_refused_by_cumulative_points() {
    // 150 deep is refused by the nesting limit before parsing.
    let t0 = Instant::now();
    let e = parse(&nested_max_over_time(150)).unwrap_err().to_string();
    assert!(e.contains("nested more than 64 deep"), "{e}");
    // Within the nesting limit, 2^20 inner evaluations: refused by the cumulative
    // resolution before any work.
    let e = run_with(&nested_max_over_time(20), QueryLimits::default()).unwrap_err();
    assert!(matches!(e, EvalError::TooManyPoints(_)), "{e:?}");
    assert!(e.to_string().contains("nested subqueries"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // A few levels are fine.
    run_with(&nested_max_over_time(5), QueryLimits::default()).unwrap();
}

#[test]
fn deadline_stops_an_exponential_subquery_nest() {
    // Without the resolution cap, 2^30 inner evaluations: only the deadline stops it.
    let limits = QueryLimits {
        timeout: Some(Duration::from_millis(200)),
        ..QueryLimits::unlimited()
    };
    let t0 = Instant::now();
    let e = run_with(&nested_max_over_time(30), limits).unwrap_err();
    assert_eq!(e, EvalError::Timeout);
    assert_eq!(e.to_string(), "query timed out in expression evaluation");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn cancel_flag_stops_a_running_evaluation() {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = flag.clone();
    let h = std::thread::spawn(move || {
        let store = Store::unbounded();
        let e = parse(&nested_max_over_time(30)).unwrap();
        let budget = Budget::new(QueryLimits::unlimited()).with_cancel(f2);
        Evaluator::new(&store, 0)
            .with_budget(std::sync::Arc::new(budget))
            .eval(&e)
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(h.join().unwrap(), Err(EvalError::Canceled));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn samples_cap_counts_subquery_points_and_selected_samples() {
    let limits = QueryLimits {
        max_samples: 5_000,
        ..QueryLimits::default()
    };
    let e = run_with("sum_over_time(vector(1)[10000s:1s])", limits).unwrap_err();
    assert_eq!(e, EvalError::TooManySamples);
    assert_eq!(
        e.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    assert_eq!(e.error_type(), "execution");
    // Within the cap it answers.
    let v = run_with("sum_over_time(vector(1)[4000s:1s])", limits).unwrap();
    let Value::Vector(v) = v else { panic!() };
    assert_eq!(v[0].v, 4001.0);
    // Samples copied out of the store count before they are copied.
    let pts: Vec<(i64, f64)> = (0..10_000).map(|i| (i * 1000, i as f64)).collect();
    let s = store_with(&[(&[("__name__", "m")], &pts)]);
    let e = crate::eval::parse("count_over_time(m[3h])").unwrap();
    let r = Evaluator::new(&s, 10_000_000)
        .with_limits(limits)
        .eval(&e)
        .map(|_| ());
    assert_eq!(r, Err(EvalError::TooManySamples));
    let ok = Evaluator::new(&s, 10_000_000)
        .with_limits(limits)
        .eval(&crate::eval::parse("count_over_time(m[1h])").unwrap());
    assert!(ok.is_ok());
}

#[test]
fn live_accounting_releases_each_subquery_step() {
    // 3,601 steps over 1,000 series would be 3.6 M samples if every step's vector were
    // kept; live accounting holds only the points kept plus one step.
    let mut series = Vec::new();
    for i in 0..50 {
        series.push((
            vec![
                ("__name__".to_string(), "g".to_string()),
                ("i".to_string(), i.to_string()),
            ],
            vec![(0i64, 1.0f64)],
        ));
    }
    let s = Store::unbounded();
    for (l, pts) in &series {
        let l = Labels::from_pairs(l.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        for (t, v) in pts {
            s.append(&l, *t, *v, crate::store::Origin::Rules);
        }
    }
    let budget = std::sync::Arc::new(Budget::new(QueryLimits::default()));
    let e = parse("sum(max_over_time((g * 2)[1h:1s]))").unwrap();
    Evaluator::new(&s, 3_600_000)
        .with_budget(budget.clone())
        .eval(&e)
        .unwrap();
    // Points kept: at most 50 series × 301 steps inside the 5 m lookback, plus one
    // step's intermediates.
    assert!(
        budget.peak_samples() < 50 * 302 + 200,
        "{}",
        budget.peak_samples()
    );
}

#[test]
fn out_of_range_duration_is_reported_as_such_and_located() {
    let e = parse("rate(x[99999999999y])").unwrap_err().to_string();
    assert!(e.starts_with("1:8: "), "{e}");
    assert!(e.contains("duration out of range: 99999999999y"), "{e}");
    // Fits 32 bits but not Go's int64 nanoseconds.
    let e = parse("rate(x[4294967295y])").unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = parse("sum_over_time(x[1m:1m] offset 1h\n offset2 [1000y])")
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
    // Ordinary durations, names with digits and strings are left alone.
    parse("rate(x[5m]) + rate(x5y[1h30m] offset 292y)").unwrap();
    parse("label_replace(x, \"a\", \"99999999999y\", \"b\", \"(.*)\")").unwrap();
    parse("max_over_time(x[1d:1m])").unwrap();
}

#[test]
fn float_durations_too_large_are_refused_not_a_parser_panic() {
    for q in [
        "rate(x[1e300])",
        "x offset 1e300",
        "x offset -1e300",
        "rate(x[5m:1e300])",
        "rate(x[18446744073709551616])",
        "rate(x[Inf])",
        "x offset -Inf",
    ] {
        let r = std::panic::catch_unwind(|| parse(q));
        let e = r
            .unwrap_or_else(|_| panic!("{q}: the parser panicked"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("duration out of range"), "{q}: {e}");
    }
    // Float durations in range still parse.
    parse("rate(x[300]) + rate(x[1.5e2] offset 60)").unwrap();
    // The position is that of the duration, on its line.
    let e = parse("sum(\n  rate(x[1e300]))").unwrap_err().to_string();
    assert!(e.starts_with("2:10: "), "{e}");
}

#[test]
fn deeply_nested_query_is_refused_instead_of_overflowing_the_stack() {
    // 300 nested calls (1.5 KB) overflowed a 2 MiB evaluation thread and aborted the
    // process; a 1,000-term sum has no brackets but is as deep.
    let cases = [
        format!("{}vector(1){}", "abs(".repeat(300), ")".repeat(300)),
        format!("{}1{}", "(".repeat(2000), ")".repeat(2000)),
        format!("vector(1){}", "+vector(1)".repeat(1000)),
        format!("1{}", "+1".repeat(20_000)),
    ];
    for q in cases {
        let h = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse(&q).map(|_| ()))
            .unwrap();
        let e = h
            .join()
            .expect("no stack overflow")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nested more than 64 deep")
                || e.contains("levels deep")
                || e.contains("operators"),
            "{e}"
        );
    }
    let e = parse(&format!("{}1{}", "(".repeat(70), ")".repeat(70)))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("1:65: "), "{e}");
    // The deepest accepted query evaluates on a 2 MiB stack (a debug build's frames).
    let q = format!("{}vector(1){}", "abs(".repeat(62), ")".repeat(62));
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let e = parse(&q).unwrap();
            let store = Store::unbounded();
            Evaluator::new(&store, 0).eval(&e).unwrap();
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

#[test]
fn refusals_are_typed_and_keep_their_messages() {
    use super::QueryError;
    let e = parse("rate(x[99999999999y])").unwrap_err();
    assert!(
        matches!(&e, QueryError::DurationOutOfRange { line: 1, column: 8, token } if token == "99999999999y"),
        "{e:?}"
    );
    let e = parse(&format!("{}1{}", "(".repeat(70), ")".repeat(70))).unwrap_err();
    assert_eq!(
        e,
        QueryError::BracketsTooDeep {
            line: 1,
            column: 65
        }
    );
    assert!(matches!(parse("sum(").unwrap_err(), QueryError::Parse(_)));
    let unsupported = |q: &str| check(&parse(q).unwrap()).unwrap_err();
    assert_eq!(
        unsupported("info(up)").to_string(),
        "unsupported function info()"
    );
    assert_eq!(
        String::from(unsupported("info(up)")),
        "unsupported function info()",
        "callers that report text get the same message"
    );
}

#[test]
fn function_table_lists_each_function_once_and_check_accepts_exactly_it() {
    use super::{FunctionKind, FUNCTIONS};
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "a function is listed twice");
    // A range function is dispatched over a range, so `check` must accept it with one.
    for (n, k) in FUNCTIONS {
        if *k == FunctionKind::Range
            && !matches!(*n, "predict_linear" | "quantile_over_time" | "holt_winters")
        {
            check(&parse(&format!("{n}(x[5m])")).unwrap()).unwrap();
        }
    }
    assert!(check(&parse("info(up)").unwrap()).is_err());
}

// --- Range queries select once (issue: each step decoded the history again) ---

/// Every step of `q` over `[start, end]`, with one preload for the range or without.
fn range_steps(
    s: &Store,
    q: &str,
    (start, end, step): (i64, i64, i64),
    preload: Option<&Arc<Preload>>,
) -> Vec<String> {
    let e = parse(q).unwrap();
    check(&e).unwrap();
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        let mut ev = Evaluator::new(s, t);
        if let Some(p) = preload {
            ev = ev.with_preload(p.clone());
        }
        let mut v = ev.eval_instant(&e).unwrap();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        out.push(format!("{t}: {v:?}"));
        t += step;
    }
    out
}

/// A store whose first hours lie in the history (chunks decoded on selection).
fn store_with_history() -> Store {
    use sentinel_base::metrics::MetricFamily;
    let s = Store::new(600_000, 1000);
    s.attach_history(Arc::new(sentinel_store::history::History::new(
        4 * 3_600_000,
        u64::MAX,
    )));
    for k in 0..(3 * 720i64) {
        let t = k * 5000;
        let mut fams = vec![
            MetricFamily::gauge("g", "g").with(&[("i", "a")], (k % 17) as f64),
            MetricFamily::counter("c_total", "c").with(&[("i", "a")], (k * 3) as f64),
        ];
        // A series that goes away for a while (stale markers) and comes back.
        if !(800..1200).contains(&k) {
            fams.push(MetricFamily::gauge("g", "g").with(&[("i", "b")], k as f64));
        }
        s.ingest(&fams, t);
    }
    s
}

#[test]
fn range_query_selects_each_selector_once_not_once_per_step() {
    let s = store_with_history();
    let p = Arc::new(Preload::new(0, 3 * 3_600_000));
    let steps = range_steps(
        &s,
        "sum(increase(c_total[1h])) + sum(g)",
        (0, 3 * 3_600_000, 60_000),
        Some(&p),
    );
    assert_eq!(steps.len(), 181);
    // Two selectors, two selections for the 181 steps.
    assert_eq!(p.selections(), 2);
}

#[test]
fn preloaded_range_steps_answer_as_per_step_selection_does() {
    let s = store_with_history();
    let range = (0, 3 * 3_600_000, 60_000);
    assert_preload_equals_per_step(
        &s,
        range,
        &[
            "g",
            "g offset 10m",
            "g @ 5000",
            "timestamp(g)",
            "rate(c_total[75s])",
            "sum(increase(c_total[1h]))",
            "count_over_time(g[10m])",
            "last_over_time(g[2m] offset 1h)",
            "max_over_time(g[30m] @ 7200)",
            "max_over_time(g[5m:1m])",
            "absent_over_time(g{i=\"b\"}[1m])",
            "g - g offset 1m",
        ],
    );
}

#[test]
fn preloaded_range_steps_still_count_each_steps_samples() {
    let s = store_with_history();
    let limits = QueryLimits {
        max_samples: 200,
        ..QueryLimits::default()
    };
    let e = parse("count_over_time(c_total[30m])").unwrap();
    // 361 samples in one step's window: over the cap with or without the preload.
    for preload in [false, true] {
        let mut ev = Evaluator::new(&s, 3 * 3_600_000).with_limits(limits);
        if preload {
            ev = ev.with_preload(Arc::new(Preload::new(0, 3 * 3_600_000)));
        }
        assert_eq!(ev.eval(&e).map(|_| ()), Err(EvalError::TooManySamples));
    }
    // 10 m windows fit; the preload of the whole range (over the cap) is not kept, the
    // steps select for themselves.
    let p = Arc::new(Preload::new(0, 3 * 3_600_000));
    let e = parse("count_over_time(c_total[10m])").unwrap();
    let ev = Evaluator::new(&s, 3 * 3_600_000)
        .with_limits(limits)
        .with_preload(p.clone());
    let Value::Vector(v) = ev.eval(&e).unwrap() else {
        panic!()
    };
    assert_eq!(v[0].v, 120.0);
    assert_eq!(p.selections(), 0);
}

// --- Range queries: windows sliced from the preload, label sets derived once ---

/// Three hours of random data, the first ones in the history: counters that reset,
/// histogram buckets, gauges with NaNs, and series that go away for a while (stale
/// markers) and come back; deterministic for `seed`.
fn store_with_random_history(seed: u64) -> Store {
    use sentinel_base::metrics::MetricFamily;
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let s = Store::new(600_000, 1000);
    s.attach_history(Arc::new(sentinel_store::history::History::new(
        4 * 3_600_000,
        u64::MAX,
    )));
    let mut counters = [0.0f64; 4];
    let mut buckets = [0.0f64; 4];
    let les = ["0.1", "1", "10", "+Inf"];
    for k in 0..(3 * 720i64) {
        let t = k * 5000 + rnd(3) as i64;
        let mut c = MetricFamily::counter("c_total", "c");
        for (i, v) in counters.iter_mut().enumerate() {
            *v = if rnd(200) == 0 {
                0.0
            } else {
                *v + rnd(5) as f64
            };
            // Series 3 is away for a while: stale, then back.
            if i == 3 && (700..900).contains(&k) {
                continue;
            }
            c = c.with(&[("i", ["a", "b", "c", "d"][i]), ("job", "j")], *v);
        }
        let mut h = MetricFamily::gauge("h_bucket", "h");
        let mut acc = 0.0;
        for (i, v) in buckets.iter_mut().enumerate() {
            *v += rnd(3) as f64;
            acc += *v;
            h = h.with(&[("le", les[i]), ("job", "j")], acc);
        }
        let g = rnd(50) as f64 - 10.0;
        let mut gf = MetricFamily::gauge("g", "g").with(&[("i", "a")], g);
        if rnd(100) == 0 {
            gf = gf.with(&[("i", "n")], f64::NAN);
        } else if !(1200..1300).contains(&k) {
            gf = gf.with(&[("i", "n")], g * 2.5);
        }
        s.ingest(&[c, h, gf], t);
    }
    s
}

#[test]
fn range_functions_over_preloaded_windows_equal_per_step_slices_on_random_data() {
    let range = (0, 3 * 3_600_000, 60_000);
    for seed in 0..3 {
        let s = store_with_random_history(seed);
        for q in [
            "rate(c_total[75s])",
            "increase(c_total[10m])",
            "irate(c_total[1m])",
            "resets(c_total[30m])",
            "changes(g[15m])",
            "delta(g[5m])",
            "idelta(g[5m])",
            "deriv(g[10m])",
            "predict_linear(g[10m], 600)",
            "avg_over_time(g[7m])",
            "min_over_time(g[7m])",
            "max_over_time(g[7m])",
            "sum_over_time(g[7m])",
            "count_over_time(c_total[2m])",
            "quantile_over_time(0.9, g[20m])",
            "stddev_over_time(g[20m])",
            "stdvar_over_time(g[20m])",
            "last_over_time(c_total[1m])",
            "present_over_time(c_total{i=\"d\"}[1m])",
            "absent_over_time(c_total{i=\"d\"}[1m])",
            "holt_winters(g[10m], 0.5, 0.5)",
            "rate(c_total[5m] offset 30m)",
            "increase(c_total[1h] @ 7200)",
            "rate((c_total[5m]))",
        ] {
            let p = Arc::new(Preload::new(range.0, range.1));
            assert_eq!(
                range_steps(&s, q, range, Some(&p)),
                range_steps(&s, q, range, None),
                "seed {seed}: {q}"
            );
            assert!(p.selections() >= 1, "{q} was not preloaded");
        }
    }
}

#[test]
fn derived_label_sets_are_built_once_per_query_and_equal_per_step_ones() {
    let range = (0, 3 * 3_600_000, 60_000);
    let s = store_with_random_history(7);
    assert_preload_equals_per_step(
        &s,
        range,
        &[
            "sum by (job) (rate(c_total[5m]))",
            "sum without (i) (rate(c_total[5m]))",
            "avg by (i) (c_total)",
            "count_values(\"v\", round(g / 10))",
            "topk(2, rate(c_total[5m]))",
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
            "histogram_quantile(0.5, rate(h_bucket[10m]))",
            "rate(c_total[5m]) / on (i) group_left () c_total",
            "c_total / ignoring (job) c_total",
            "sum by (job) (rate(c_total[5m])) / on (job) sum by (job) (c_total)",
            "c_total > bool 10",
            "-c_total",
            "abs(g) and on (i) c_total",
            "g or c_total",
            "c_total unless on (i) g",
            "sort_desc(sum by (i) (increase(c_total[1h])) > 0)",
            "max_over_time(rate(c_total[2m])[10m:1m])",
        ],
    );
}

#[test]
fn range_query_charges_derived_label_sets_against_the_label_cap() {
    let s = store_with_random_history(1);
    let e = parse("rate(c_total[5m])").unwrap();
    // Four result label sets without their name, built once for the query: a cap below
    // their size stops the range query as it stops each step of an instant one.
    let limits = QueryLimits {
        max_label_bytes: 64,
        ..QueryLimits::default()
    };
    let budget = Arc::new(Budget::new(limits));
    let got = eval_range(&s, &e, 0, 3_600_000, 60_000, &budget);
    assert!(
        matches!(got, Err(EvalError::TooManyLabelBytes(64))),
        "{got:?}"
    );
    let instant = Evaluator::new(&s, 3_600_000).with_limits(limits).eval(&e);
    assert!(matches!(instant, Err(EvalError::TooManyLabelBytes(64))));
}

#[test]
fn seek_finds_what_partition_point_finds_from_any_hint() {
    let s: Vec<(i64, f64)> = [1, 3, 3, 3, 7, 8, 8, 20, 21, 22, 40]
        .iter()
        .map(|t| (*t as i64, 0.0))
        .collect();
    for t in -1..45 {
        for from in 0..=s.len() + 2 {
            for inclusive in [false, true] {
                let want = if inclusive {
                    s.partition_point(|x| x.0 <= t)
                } else {
                    s.partition_point(|x| x.0 < t)
                };
                assert_eq!(seek(&s, from, t, inclusive), want, "{t} {from} {inclusive}");
            }
        }
    }
}

#[test]
fn range_query_notes_its_preloaded_samples_for_the_memory_release() {
    // The API hands memory back after a query that held many samples; a range query's
    // selections (made once, not charged per step) must count there too.
    let s = store_with_random_history(2);
    let e = parse("sum(rate(c_total[5m]))").unwrap();
    let budget = Arc::new(Budget::new(QueryLimits::default()));
    eval_range(&s, &e, 0, 3 * 3_600_000, 60_000, &budget).unwrap();
    // Four series over three hours at 5 s (one away for 200 samples).
    assert!(
        budget.preloaded_samples() >= 3 * 2160 + 1900,
        "{}",
        budget.preloaded_samples()
    );
    assert!(budget.peak_samples() < budget.preloaded_samples());
}

#[test]
fn label_sets_built_at_each_step_are_not_cached_for_the_whole_range() {
    // label_replace builds new label sets at every step; caching what is derived from
    // them (the group key of `sum by`) would keep one entry per step and series and
    // charge them all to the label cap for the whole query.
    let s = store_with_random_history(3);
    let e = parse(r#"sum by (x) (label_replace(c_total, "x", "$1", "i", "(.*)"))"#).unwrap();
    let limits = QueryLimits {
        max_label_bytes: 64 << 10,
        ..QueryLimits::default()
    };
    let budget = Arc::new(Budget::new(limits));
    let m = eval_range(&s, &e, 0, 3 * 3_600_000, 5_000, &budget).unwrap();
    assert_eq!(m.len(), 4);
    assert!(
        budget.peak_label_bytes() < 64 << 10,
        "{}",
        budget.peak_label_bytes()
    );
}

#[test]
fn a_text_parsed_again_gives_the_same_tree_and_errors_stay_errors() {
    let q = r#"sum by (x) (rate(parse_cache_test_total{a=~"b|c"}[5m])) > 1"#;
    let first = parse(q).unwrap();
    let again = parse(q).unwrap();
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    assert_eq!(first.to_string(), again.to_string());
    for _ in 0..2 {
        assert!(parse("rate(parse_cache_test_total[5m]").is_err());
        assert!(matches!(
            parse("x[300y]"),
            Err(QueryError::DurationOutOfRange { .. })
        ));
    }
}

#[test]
fn texts_whose_regexes_could_be_large_are_not_kept_parsed() {
    use super::worth_keeping_parsed as keep;
    // What dashboards send again and again is kept.
    assert!(keep(
        r#"sum by (le) (rate(comfyui_prompt_duration_seconds_bucket{instance=~".*"}[75s]))"#
    ));
    assert!(keep(r#"up{instance=~"host:9100|host2:9100", job!~'x'}"#));
    // A counted repetition, an escape or a long literal compiles to a large automaton:
    // such a text is parsed again each time instead of being pinned in memory.
    assert!(!keep(r#"up{instance=~"a{1000}"}"#));
    assert!(!keep(r#"up{instance=~"\\w\\w\\w"}"#));
    assert!(!keep(&format!(r#"up{{instance=~"{}"}}"#, "a".repeat(129))));
    assert!(!keep(&format!("{} + 1", "x".repeat(1100))));
}

/// Each query over `range`, stepped with a preload and without, and through
/// `eval_range` (what `query_range` runs): the same answers.
fn assert_preload_equals_per_step(s: &Store, range: (i64, i64, i64), queries: &[&str]) {
    for q in queries {
        let p = Arc::new(Preload::new(range.0, range.1));
        assert_eq!(
            range_steps(s, q, range, Some(&p)),
            range_steps(s, q, range, None),
            "{q}"
        );
        // Every point as (labels, time, value bits), in one order.
        let e = parse(q).unwrap();
        let mut stepped = Vec::new();
        let mut t = range.0;
        while t <= range.1 {
            for x in Evaluator::new(s, t).eval_instant(&e).unwrap() {
                stepped.push((x.labels, t, x.v.to_bits()));
            }
            t += range.2;
        }
        let budget = Arc::new(Budget::new(QueryLimits::unlimited()));
        let mut ranged: Vec<_> = eval_range(s, &e, range.0, range.1, range.2, &budget)
            .unwrap()
            .into_iter()
            .flat_map(|r| {
                let labels = r.labels;
                r.points
                    .into_iter()
                    .map(move |(t, v)| (labels.clone(), t, v.to_bits()))
            })
            .collect();
        stepped.sort();
        ranged.sort();
        assert_eq!(ranged, stepped, "eval_range: {q}");
    }
}

/// The one-pass answer of a plain selector over a range (no evaluation per step) equals
/// stepping: lookback edges, gaps longer than the lookback with no stale marker, stale
/// markers, a series that starts late, offsets, `@`, parentheses, and steps that do not
/// divide the sample interval.
#[test]
fn plain_selector_range_answers_as_per_step_evaluation() {
    use crate::store::stale_nan;
    let history = Arc::new(sentinel_store::history::History::new(
        i64::MAX / 4,
        u64::MAX,
    ));
    let g = |i: &str| Labels::from_pairs([("__name__", "g"), ("i", i)]);
    let mut a = Vec::new();
    for k in 0..2000i64 {
        // 7 s apart, with a 20-minute hole and a stale marker followed by a return.
        let t = 1_000 + k * 7_000;
        if (300..470).contains(&k) {
            continue;
        }
        a.push((
            t,
            if k == 900 {
                stale_nan()
            } else {
                (k % 13) as f64
            },
        ));
    }
    history.insert(&g("a"), &a);
    let late: Vec<(i64, f64)> = (0..300i64)
        .map(|k| (6_000_000 + k * 15_000, k as f64))
        .collect();
    history.insert(&g("b"), &late);
    let s = Store::new(600_000, 1000);
    s.attach_history(history);
    for range in [
        (0, 14_000_000, 60_000),
        (299_000, 9_000_000, 7_000),
        (1_000, 13_000_000, 61_001),
    ] {
        assert_preload_equals_per_step(
            &s,
            range,
            &[
                "g",
                "(g)",
                "g{i=\"b\"}",
                "g offset 10m",
                "g @ 6300",
                "g @ 100000 offset 1m",
                "nothing",
            ],
        );
    }
}

/// Panels of metrics a host lacks: the range answer over selections of nothing is
/// empty without stepping, and equals stepping; anything that makes up values of its
/// own (vector(), absent, or, a parameter) still steps.
#[test]
fn range_over_selections_of_nothing_is_empty_without_stepping() {
    let s = store_with_history();
    let range = (0, 3 * 3_600_000, 60_000);
    let empty = [
        "nothing",
        "sum by (i) (rate(nothing[5m]))",
        "sum(rate(nothing{a=\"b\"}[10m])) / sum(rate(also_nothing[10m]))",
        "time() - nothing and on (i) also_nothing == 2",
        "nothing and also_nothing",
        "nothing unless also_nothing",
        "nothing or also_nothing",
        "histogram_quantile(0.9, sum by (le) (rate(nothing_bucket[5m])))",
        "-abs(nothing offset 1h) * 2",
    ];
    let stepped = [
        "count(nothing) or vector(0)",
        "absent(nothing)",
        "absent_over_time(nothing[5m])",
        "topk(2, nothing)",
        "nothing or g",
        "g unless nothing",
        // One empty side empties the answer, but the other side's errors still count.
        "g and nothing",
        "nothing unless g",
        "sum(rate(nothing[10m])) / sum(rate(g[10m]))",
        "time() - nothing and on (i) g == 2",
        "scalar(nothing) + 1",
        "label_replace(nothing, \"a\", \"$1\", \"b\", \"(.*)\")",
    ];
    assert_preload_equals_per_step(&s, range, &empty);
    assert_preload_equals_per_step(&s, range, &stepped);
    // The other side fails (two series match one on the right): so does the range.
    let failing = parse("nothing and (g * on () vector(1))").unwrap();
    assert!(Evaluator::new(&s, 3_600_000)
        .eval_instant(&failing)
        .is_err());
    let budget = Arc::new(Budget::new(QueryLimits::unlimited()));
    let got = eval_range(&s, &failing, range.0, range.1, range.2, &budget);
    assert!(got.is_err(), "{got:?}");
    // A canceled budget fails at the first step: only an answer made without stepping
    // comes back.
    let on_canceled = |q: &str| {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let budget = Arc::new(Budget::new(QueryLimits::unlimited()).with_cancel(flag));
        eval_range(&s, &parse(q).unwrap(), range.0, range.1, range.2, &budget)
    };
    for q in empty {
        assert!(on_canceled(q).is_ok_and(|m| m.is_empty()), "{q}");
    }
    for q in stepped {
        let got = on_canceled(q);
        assert!(matches!(got, Err(EvalError::Canceled)), "{q}: {got:?}");
    }
}
