//! comfy-sentinel: a Prometheus exporter and alerting sidecar for GPU generative-workflow
//! servers such as ComfyUI. Data flows one way: collect → store → rules → notify; the
//! HTTP layer only reads snapshots and state.

pub mod app;
pub mod cli;
pub mod collect;
pub mod config;
pub mod gate;
pub mod history;
pub mod http;
pub mod ingest;
pub use sentinel_base::metrics;
