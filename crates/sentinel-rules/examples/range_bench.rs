//! Range-query benchmark of the engine alone: loads OpenMetrics text with timestamps
//! (what `bench/history-query-vs-prometheus.sh` generates; `KEEP=dir` keeps it) into a
//! history under an empty store, then runs every query of a file (one a line) as
//! `query_range` over `[start, end]` at `step` seconds, RUNS times, and prints per query
//! the median milliseconds of the evaluation and of formatting its values, and the
//! series it answered.
//!
//! `cargo run --release -p sentinel-rules --example range_bench -- day.om queries.txt START END [STEP] [RUNS]`

#![forbid(unsafe_code)]

use sentinel_rules::eval::{eval_range, Budget, QueryLimits};
use sentinel_rules::store::Store;
use sentinel_store::history::History;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: range_bench DAY.om QUERIES START END [STEP] [RUNS]");
    }
    let text = std::fs::read(&args[1])?;
    let queries = std::fs::read_to_string(&args[2])?;
    let start: i64 = args[3].parse::<i64>()? * 1000;
    let end: i64 = args[4].parse::<i64>()? * 1000;
    let step: i64 = args.get(5).map_or(Ok(60), |s| s.parse::<i64>())? * 1000;
    let runs: usize = args.get(6).map_or(Ok(3), |s| s.parse())?;
    let filter = std::env::var("FILTER").unwrap_or_default();
    let t0 = Instant::now();
    let parsed = sentinel_store::openmetrics::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(text);
    let history = Arc::new(History::new(i64::MAX / 4, u64::MAX));
    for (labels, samples) in parsed {
        history.insert(&labels, &samples);
    }
    let store = Store::unbounded();
    store.attach_history(history.clone());
    eprintln!(
        "loaded {} series, {} samples in {:?}",
        history.series_count(),
        history.sample_count(),
        t0.elapsed()
    );
    let limits = QueryLimits {
        timeout: Some(Duration::from_secs(600)),
        ..QueryLimits::default()
    };
    let (mut total_eval, mut total_fmt) = (0.0, 0.0);
    println!("{:<9} {:<9} {:<6} query", "eval_ms", "fmt_ms", "series");
    for q in queries.lines().filter(|l| !l.trim().is_empty()) {
        if !filter.is_empty() && !q.contains(&filter) {
            continue;
        }
        let t = Instant::now();
        let expr = sentinel_rules::eval::parse(q).map_err(|e| anyhow::anyhow!("{q}: {e}"))?;
        let parse_ms = t.elapsed().as_secs_f64() * 1e3;
        let (mut te, mut tf) = (Vec::new(), Vec::new());
        let mut n = 0;
        for _ in 0..runs {
            let budget = Arc::new(Budget::new(limits));
            let t = Instant::now();
            let m = eval_range(&store, &expr, start, end, step, &budget);
            te.push(t.elapsed().as_secs_f64() * 1e3);
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    println!("error {e}: {q}");
                    break;
                }
            };
            n = m.len();
            let t = Instant::now();
            let mut bytes = 0usize;
            for s in &m {
                for (_, v) in &s.points {
                    bytes += sentinel_rules::eval::format_go_float(*v).len();
                }
            }
            std::hint::black_box(bytes);
            tf.push(t.elapsed().as_secs_f64() * 1e3);
        }
        if te.is_empty() || tf.is_empty() {
            continue;
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (e, f) = (med(&mut te), med(&mut tf));
        total_eval += e;
        total_fmt += f;
        println!("{e:<9.2} {f:<9.2} {n:<6} {q}");
        if std::env::var_os("PARSE_MS").is_some() {
            println!("  parse {parse_ms:.3} ms");
        }
    }
    println!("total eval {total_eval:.1} ms, format {total_fmt:.1} ms");
    Ok(())
}
