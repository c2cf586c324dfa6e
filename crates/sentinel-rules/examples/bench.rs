//! Rule evaluation benchmark: loads a Prometheus text exposition (the series) and a rule
//! file, fills the store with `--minutes` of samples every 5 s (values as scraped), then
//! evaluates every group at the last step several times and prints per-group and total
//! durations. Compare with Prometheus's `prometheus_rule_group_last_duration_seconds`
//! on the same files (see bench/README in the report of the rules work).
//!
//! `cargo run --release -p sentinel-rules --example bench -- metrics.prom rules.yml`

#![forbid(unsafe_code)]

use sentinel_rules::group::{EvalContext, Group};
use sentinel_rules::store::{Origin, Store};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (metrics, rules) = (&args[1], &args[2]);
    let minutes: i64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let text = std::fs::read_to_string(metrics)?;
    let mut series = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (m, v) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("bad line {line}"))?;
        series.push((
            sentinel_rules::unittest::parse_metric(m).map_err(anyhow::Error::msg)?,
            v.parse::<f64>()?,
        ));
    }
    let store = Store::new((minutes * 60_000) as u64 + 600_000, 1_000_000);
    let step = 5_000;
    let end = minutes * 60_000;
    let t0 = Instant::now();
    let mut t = 0;
    while t <= end {
        for (l, v) in &series {
            store.append(l, t, *v, Origin::Snapshot);
        }
        t += step;
    }
    println!(
        "loaded {} series x {} samples in {:?}; store heap ~{} bytes/series",
        series.len(),
        end / step + 1,
        t0.elapsed(),
        store.heap_bytes() / series.len().max(1)
    );
    let (defs, _) = sentinel_rules::rulefile::load_files(&[rules])?;
    let mut groups: Vec<Group> = defs
        .into_iter()
        .map(|d| Group::new(d, Duration::from_secs(5)))
        .collect();
    let labels = BTreeMap::new();
    let ctx = EvalContext {
        store: &store,
        external_labels: &labels,
        external_url: "",
        restored: true,
        subquery_step_ms: 5_000,
        limits: sentinel_rules::eval::QueryLimits::default(),
    };
    let rounds = 5;
    let mut totals = vec![Duration::ZERO; groups.len()];
    for r in 0..rounds {
        let ts = end - (rounds - 1 - r) * step;
        for (i, g) in groups.iter_mut().enumerate() {
            g.eval(ts, &ctx);
            totals[i] += g.last_duration;
        }
    }
    let mut sum = Duration::ZERO;
    for (g, d) in groups.iter().zip(&totals) {
        let avg = *d / rounds as u32;
        sum += avg;
        let errors = g
            .rules
            .iter()
            .filter(|r| r.health.last_error.is_some())
            .count();
        println!(
            "group {:8} rules {:4} avg {:>10.3?} errors {errors}",
            g.name,
            g.rules.len(),
            avg
        );
    }
    println!(
        "all groups: avg {sum:.3?} per evaluation round ({} rules)",
        groups.iter().map(|g| g.rules.len()).sum::<usize>()
    );
    Ok(())
}
