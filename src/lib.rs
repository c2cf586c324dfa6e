//! comfy-sentinel: a Prometheus exporter and alerting sidecar for GPU generative-workflow
//! servers such as ComfyUI. Data flows one way: collect → store → rules → notify; the
//! HTTP layer only reads snapshots and state.
//!
//! Modules import downward only: `config` ← `collect`, `ingest` ← `app` ← `http` ←
//! `main` (see `docs/architecture.md` for the map and the one named exception).

// `deny`, not `forbid` (which an inner `allow` cannot lift): the FFI calls are allowed
// item by item, each with a SAFETY comment. The documented exceptions are the NVML
// boundary (`collect::gpu::nvml::mig_instance_ids`, symbols the wrapper does not cover),
// glibc's `mallopt` in `alloc::tune` and `madvise` in `alloc::release_startup_pages`
// (`malloc_trim` is called through `sentinel_store::release_freed_memory`).
// Nothing else may use `unsafe`.
#![deny(unsafe_code)]

pub mod alloc;
pub mod app;
pub mod cli;
pub mod collect;
pub mod config;
pub mod gate;
pub mod history;
pub mod http;
pub mod ingest;
pub use sentinel_base::metrics;
