//! Cost of reading ComfyUI's `/history` (run with `cargo bench --bench comfyui_poll`):
//! the first poll of a sidecar that meets a full 10k-entry history, against a steady
//! poll that reads the newest page and finds nothing new. The second must cost a small
//! fraction of the first: polling is incremental. A third case reads a 23 MB page whose
//! 10 entries list 300 000 images (issue 10, item 9): the images are walked and counted,
//! only the newest 1024 are kept.

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

/// 10 successful entries listing 30 000 images each (about 23 MB).
fn image_heavy_body() -> String {
    let mut out = String::from("{");
    for e in 0..10 {
        if e > 0 {
            out.push_str(", ");
        }
        let images: Vec<String> = (0..30_000)
            .map(|i| {
                format!(
                    r#"{{"filename": "ComfyUI_{e:05}_{i:05}_.png", "subfolder": "", "type": "output"}}"#
                )
            })
            .collect();
        out.push_str(&format!(
            r#""p{e}": {{"outputs": {{"2": {{"images": [{}]}}}}, "status": {{"messages": [["execution_start", {{"timestamp": {e}}}], ["execution_success", {{"timestamp": {}}}]]}}}}"#,
            images.join(", "),
            e + 5
        ));
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

fn bench_images(c: &mut Criterion) {
    let body = image_heavy_body();
    let mut g = c.benchmark_group("image-heavy history");
    g.sample_size(10);
    g.bench_function("first poll: 23 MB, 300k images", |b| {
        b.iter(|| {
            let mut t = history::Tracker::default();
            let p = api::parse_history_page(body.as_bytes()).expect("parses");
            let a = t.apply(&p, 100);
            (a.images.len(), t.counts.output_images)
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_images);
criterion_main!(benches);
