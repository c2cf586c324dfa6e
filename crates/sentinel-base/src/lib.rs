//! Shared foundations of comfy-sentinel: the metric data model and its encoders, the
//! registry of the sidecar's own metrics, and config value types (durations, secrets,
//! YAML source locations). Every other crate of the workspace builds on this one.

// No unsafe code in the library. Unit tests may create FIFOs through `libc` (the
// secret-file checks), so the ban is lifted for `cfg(test)` builds only.
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod alert;
pub mod config;
pub mod metrics;
pub mod text;
