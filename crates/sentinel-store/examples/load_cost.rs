//! How long loading a history directory takes (what a restart waits for).
//! `cargo run --release -p sentinel-store --example load_cost DATA_DIR/history`

use sentinel_store::history::History;
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("a history directory");
    let h = History::new(i64::MAX / 4, u64::MAX);
    let start = Instant::now();
    let (report, _) =
        sentinel_store::persist::read_dir_into(std::path::Path::new(&dir), &h).expect("load");
    println!(
        "{} samples of {} series from {} files in {:.2} s ({} bytes, {} of them in memory)",
        report.samples,
        report.series,
        report.files,
        start.elapsed().as_secs_f64(),
        h.bytes(),
        h.memory_bytes()
    );
}
