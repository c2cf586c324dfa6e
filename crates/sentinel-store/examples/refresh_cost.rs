//! What one `/metrics` refresh costs while events stream in: three histogram families of
//! 40 series x 12 buckets (about 2,000 series, as `bench/ingest-load.sh` makes) change
//! before every refresh; split into collecting, encoding and the store write.
//! `cargo run --release -p sentinel-store --example refresh_cost`

use sentinel_base::metrics::encode::{encode_openmetrics_family, encode_text_family};
use sentinel_base::metrics::registry::Registry;
use sentinel_base::metrics::MetricFamily;
use sentinel_store::exposition::Exposition;
use sentinel_store::history::History;
use sentinel_store::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let registry = Registry::new();
    let buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let vecs: Vec<_> = (0..3)
        .map(|k| {
            registry.histogram_vec(
                &format!("recovery_h{k}_seconds"),
                "h",
                &["operation", "outcome"],
                &buckets,
            )
        })
        .collect();
    let ops: Vec<String> = (0..40).map(|i| format!("op_{i}")).collect();
    let store = Arc::new(Store::default());
    store.attach_history(Arc::new(History::new(24 * 3_600_000, u64::MAX)));
    let e = Exposition::new(registry.clone(), 10_000, store.clone());
    let rounds = 400i64;
    let t0 = 1_700_000_000_000i64;
    let step = |k: i64| {
        for v in &vecs {
            for (i, op) in ops.iter().enumerate() {
                v.observe(&[op, "success"], (k as f64 + i as f64) / 100.0);
            }
        }
    };
    step(0);
    e.refresh_at(t0);
    let start = Instant::now();
    for k in 1..=rounds {
        step(k);
        e.refresh_at(t0 + k * 50);
    }
    let refresh = start.elapsed().as_secs_f64() * 1e3 / rounds as f64;

    let series = store.series_count();
    // The same work step by step, into a store of its own.
    let split = Store::default();
    split.attach_history(Arc::new(History::new(24 * 3_600_000, u64::MAX)));
    let (mut collect, mut encode, mut write) = (0.0, 0.0, 0.0);
    for k in 1..=rounds {
        step(rounds + k);
        let s = Instant::now();
        let mut families: Vec<MetricFamily> = Vec::new();
        for src in registry.sources() {
            src.collect(&mut families);
        }
        collect += s.elapsed().as_secs_f64();
        let s = Instant::now();
        let (mut text, mut om) = (String::new(), String::new());
        for f in &families {
            encode_text_family(f, &mut text);
            encode_openmetrics_family(f, &mut om);
        }
        encode += s.elapsed().as_secs_f64();
        let s = Instant::now();
        split.write("registry", &families[..], t0 + (rounds + k) * 50);
        write += s.elapsed().as_secs_f64();
    }
    let per = |x: f64| x * 1e3 / rounds as f64;
    println!(
        "{} series: refresh {refresh:.2} ms; of which about collect {:.2} ms, encode both formats {:.2} ms, store write {:.2} ms",
        series,
        per(collect),
        per(encode),
        per(write)
    );
}
