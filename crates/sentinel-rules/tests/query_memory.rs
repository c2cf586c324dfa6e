//! Measures what a held sample costs in heap bytes, to size `query.max_samples` and
//! `query.max_label_bytes` against the 256 MB per-query budget: a counting allocator
//! records the peak heap of an evaluation, and the budget records the most samples and
//! label bytes it held at once. Run with `--nocapture` to see the figures.

use sentinel_rules::eval::{parse, Budget, Evaluator, QueryLimits};
use sentinel_rules::labels::Labels;
use sentinel_rules::store::{Origin, Store};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (the allocator is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                let now = CURRENT.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static A: Counting = Counting;

/// (peak heap bytes above the start, peak samples held, peak label bytes held).
fn measure(store: &Store, ts: i64, q: &str) -> (usize, u64, u64) {
    let e = parse(q).unwrap();
    let budget = Arc::new(Budget::new(QueryLimits::default()));
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let v = Evaluator::new(store, ts)
        .with_budget(budget.clone())
        .eval(&e)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(v);
    (peak, budget.peak_samples(), budget.peak_label_bytes())
}

fn store(series: usize, points: i64, labels: usize) -> Store {
    let s = Store::unbounded();
    for i in 0..series {
        let mut pairs = vec![
            ("__name__".to_string(), "m".to_string()),
            ("i".to_string(), i.to_string()),
        ];
        for k in 0..labels {
            pairs.push((format!("label_{k}"), format!("value_{k}_{i}")));
        }
        let l = Labels::from_pairs(pairs);
        for t in 0..points {
            s.append(&l, t * 1000, t as f64, Origin::Rules);
        }
    }
    s
}

#[test]
fn heap_per_held_sample_fits_the_256_mb_budget() {
    let _g = SERIAL.lock().unwrap();
    // Heap the defaults allow per held sample and per held label byte: 2 M samples at
    // 48 B = 96 MB, 16 MiB of labels at 2 B per byte = 34 MB; the JSON answer of the
    // largest result adds about 30 B per sample plus its label bytes (77 MB): 207 MB in
    // all, under the 256 MB budget.
    const PER_SAMPLE: f64 = 48.0;
    const PER_LABEL_BYTE: f64 = 2.0;
    let cases: Vec<(&str, Store, i64, &str)> = vec![
        (
            "subquery points",
            Store::unbounded(),
            1_000_000_000,
            "sum_over_time(vector(1)[10000s:1s])",
        ),
        (
            "matrix from the store",
            store(200, 3_600, 2),
            3_600_000,
            "count_over_time(m[1h])",
        ),
        ("vector, fresh label sets", store(20_000, 1, 6), 0, "m * 2"),
        (
            "subquery over fresh label sets",
            store(2_000, 1, 6),
            60_000,
            "max_over_time((m * 2)[5m:1s])",
        ),
        (
            "aggregation",
            store(20_000, 1, 6),
            0,
            "sum by (label_0) (m)",
        ),
    ];
    for (name, s, ts, q) in cases {
        let (peak, samples, labels) = measure(&s, ts, q);
        let allowed = PER_SAMPLE * samples as f64 + PER_LABEL_BYTE * labels as f64;
        eprintln!(
            "{name:32} {q:40} peak heap {:>10} B, held {samples:>8} samples + {labels:>9} label B: {:.1} B/sample, bound {:.0} B",
            peak,
            peak as f64 / samples.max(1) as f64,
            allowed
        );
        assert!(
            (peak as f64) <= allowed.max(64.0 * 1024.0),
            "{name}: peak heap {peak} B above the accounted bound {allowed:.0} B"
        );
    }
}
