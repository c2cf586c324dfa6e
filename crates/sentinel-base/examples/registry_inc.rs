//! Cost of one increment of a labelled counter and one histogram observation in the
//! sidecar's own registry: `cargo run --release -p sentinel-base --example registry_inc`.
//! Prints nanoseconds per operation, single-threaded and with four threads.

#![forbid(unsafe_code)]

use sentinel_base::metrics::registry::Registry;
use std::time::Instant;

fn main() {
    let r = Registry::new();
    let c = r.counter_vec("x_total", "x", &["kind", "code"]);
    let h = r.histogram_vec("d_seconds", "d", &["kind"], &[0.1, 0.5, 1.0, 5.0]);
    for k in 0..50 {
        c.inc(&[&format!("k{k}"), "200"]);
    }
    let n = 2_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        c.inc(&["k7", "200"]);
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("counter inc, 1 thread: {per:.1} ns");
    let t = Instant::now();
    for i in 0..n {
        h.observe(&["k7"], (i % 10) as f64 / 10.0);
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("histogram observe, 1 thread: {per:.1} ns");
    let hot = c.series(&["k7", "200"]);
    let t = Instant::now();
    for _ in 0..n {
        hot.inc();
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("counter inc through a Series handle, 1 thread: {per:.1} ns");
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..n / 4 {
                    c.inc(&["k7", "200"]);
                }
            });
        }
    });
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("counter inc, 4 threads: {per:.1} ns per increment (wall / total)");
    assert!(c.get(&["k7", "200"]).unwrap() >= 3.0 * n as f64);
}
