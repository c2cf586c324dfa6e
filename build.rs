//! Release builds on x86-64 Linux order the binary's code so that what runs at steady
//! state (scrapes, collections, rule evaluations, ingest) sits together at the start of
//! `.text`: `link/steady-state.order` lists those functions (written by
//! `bench/code-order.sh` from a profile of an idle, scraped sidecar). With the code a
//! running sidecar needs in a few hundred KiB instead of spread over all of `.text`, the
//! pages start-up touched can be released after start (`alloc::release_startup_pages`)
//! and stay out: the kernel maps code back 64 KiB around each fault, which otherwise
//! brings nearly all of `.text` back. See docs/benchmarks.md, "Footprint".
//!
//! Only with LLD (the default linker of Rust 1.90 and later on this target), which reads
//! `--symbol-ordering-file`; names that no longer exist are ignored, so a stale list
//! only makes the order less good. Skipped when `RUSTFLAGS` choose a linker, or with
//! `COMFY_SENTINEL_NO_CODE_ORDER=1`.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/steady-state.order");
    println!("cargo:rerun-if-env-changed=COMFY_SENTINEL_NO_CODE_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let wanted = var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("COMFY_SENTINEL_NO_CODE_ORDER").is_empty()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && rustc_links_with_lld();
    if !wanted {
        return;
    }
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/steady-state.order");
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=comfy-sentinel=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=comfy-sentinel=-Wl,--no-warn-symbol-ordering");
}

/// Rust 1.90 and later link x86_64-unknown-linux-gnu with its bundled LLD by default,
/// when the toolchain ships it (distribution builds of rustc may not, and then link
/// with the system linker, which does not know the option).
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(sysroot) = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let bundled = std::path::Path::new(&sysroot)
        .join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld");
    if !bundled.is_file() {
        return false;
    }
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let v = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut parts = v
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
