//! comfy-sentinel: a Prometheus exporter and alerting sidecar for GPU generative-workflow
//! servers such as ComfyUI. Data flows one way: collect → store → rules → notify; the
//! HTTP layer only reads snapshots and state.

// `deny`, not `forbid` (which an inner `allow` cannot lift): the FFI calls are allowed
// item by item, each with a SAFETY comment. The documented exceptions are the NVML
// boundary (`collect::gpu::nvml::mig_instance_ids`, symbols the wrapper does not cover)
// and glibc's `malloc_trim`/`mallopt` in `collect::comfyui`. `gethostname` in
// `app::host_name` and `getrlimit` in `http::conns::effective_max` are allowed too until
// they move to nix's safe wrappers (its `hostname` and `resource` features).
// Nothing else may use `unsafe`.
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod collect;
pub mod config;
pub mod gate;
pub mod history;
pub mod http;
pub mod ingest;
pub use sentinel_base::metrics;
