//! Shared foundations of comfy-sentinel: the metric data model and its encoders, the
//! registry of the sidecar's own metrics, and config value types (durations, secrets,
//! YAML source locations). Every other crate of the workspace builds on this one.

pub mod alert;
pub mod config;
pub mod metrics;
pub mod text;
