//! Embeds the repository's default rule files (`rules/*.yaml`, not the tests) so the
//! binary alerts out of the box when `rules.files` is unset. Generated as a list of
//! `include_str!` so a changed rule file rebuilds the crate.

#![forbid(unsafe_code)]

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| {
        p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
    });
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = format!(
            "rules/{}",
            f.file_name().expect("a file has a name").to_string_lossy()
        );
        let abs = f.canonicalize().expect("listed files exist");
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push(']');
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("default_rules.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
