//! What recording into the history adds to a snapshot ingest: 500 series, 2,000
//! snapshots 5 s apart, into a store without and with a history attached.
//! `cargo run --release -p sentinel-store --example ingest_cost`

use sentinel_base::metrics::MetricFamily;
use sentinel_store::history::History;
use sentinel_store::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let families: Vec<MetricFamily> = (0..50)
        .map(|f| {
            let mut fam = MetricFamily::gauge(format!("node_metric_{f}"), "h");
            for i in 0..10 {
                fam = fam.with(&[("device", format!("dev{i}").as_str())], (f * i) as f64);
            }
            fam
        })
        .collect();
    for with_history in [false, true] {
        let store = Store::new(600_000, 100_000);
        if with_history {
            store.attach_history(Arc::new(History::new(24 * 3_600_000, u64::MAX)));
        }
        let start = Instant::now();
        let rounds = 2000i64;
        for k in 0..rounds {
            store.ingest(&families, 1_700_000_000_000 + k * 5000);
        }
        let per = start.elapsed().as_nanos() as f64 / (rounds as f64 * 500.0);
        println!(
            "history {with_history:5}: {per:.0} ns per sample ingested ({} bytes of history)",
            store.history().map_or(0, |h| h.bytes())
        );
    }
}
