//! Cost of reading ComfyUI's `/history` (run with `cargo bench --bench comfyui_poll`):
//! the first poll of a sidecar that meets a full 10k-entry history, against a steady
//! poll that reads the newest page and finds nothing new. The second must cost a small
//! fraction of the first: polling is incremental.

use comfy_sentinel::collect::comfyui::{api, history};
use criterion::{criterion_group, criterion_main, Criterion};

/// A history body of `n` entries shaped like ComfyUI 0.3.64's (a success entry from the
/// recorded fixture, ids made unique).
fn history_body(n: usize) -> String {
    let one = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui/get_history_id_success.json"
    ))
    .expect("fixture");
    let id = "3222a08b-ccde-40ad-b2f6-93ee0ceba517";
    let inner = &one[one.find(": ").expect("object") + 2..one.len() - 1];
    let mut out = String::with_capacity(n * (inner.len() + 50));
    out.push('{');
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        let pid = format!("{i:08}-0000-4000-8000-000000000000");
        out.push_str(&format!("\"{pid}\": {}", inner.replace(id, &pid)));
    }
    out.push('}');
    out
}

fn bench(c: &mut Criterion) {
    let full = history_body(10_000);
    let mut seen = history::Tracker::default();
    seen.apply(
        &api::parse_history_page(full.as_bytes()).expect("parses"),
        100,
    );
    // The newest 64 entries, as `max_items=64` returns them.
    let page = {
        let all = api::parse_history_page(full.as_bytes()).expect("parses");
        let ids: Vec<String> = all.entries[all.entries.len() - 64..]
            .iter()
            .map(|e| e.prompt_id.clone())
            .collect();
        drop(all);
        let tail = history_body(10_000);
        let start = tail.find(&format!("\"{}\"", ids[0])).expect("id present");
        format!("{{{}", &tail[start..])
    };

    c.bench_function("first poll: parse and count 10k entries", |b| {
        b.iter(|| {
            let mut t = history::Tracker::default();
            let p = api::parse_history_page(full.as_bytes()).expect("parses");
            t.apply(&p, 100).new_entries
        })
    });
    c.bench_function("steady poll: newest 64, none new", |b| {
        b.iter(|| {
            let p = api::parse_history_page(page.as_bytes()).expect("parses");
            let fresh = seen.count_new(&p);
            seen.apply(&p, 100);
            fresh
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
