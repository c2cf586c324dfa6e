//! Collectors. Each is one module behind the [`Collector`] trait (`collector.rs`) with a
//! `spec` function that builds it from its config section; [`COLLECTORS`] below is the
//! only place that names them all. The runner (`runner.rs`) times every run and records
//! its outcome; `config.rs` holds the `collectors:` section. Adding a collector is its
//! module plus one line in [`COLLECTORS`] (and its section in `CollectorsConfig`).

mod collector;
pub mod comfyui;
mod config;
pub mod gpu;
pub mod probes;
pub mod process;
pub mod quality;
mod runner;
pub mod system;

pub use collector::{BuildContext, CollectError, Collector, CollectorSpec, TargetState};
pub use comfyui::output::{OutputImage, OutputQueue};
pub use config::{resolve_timeout, validate_schedule, CollectorsConfig, Toggle};
pub use runner::{CollectorStatus, Runner};

/// Builds one collector from the `collectors:` section: None when it is off (or, for
/// collectors that probe for their source, when the source is absent).
pub type SpecFn = fn(&CollectorsConfig, &BuildContext) -> Option<CollectorSpec>;

/// The one list of collectors.
pub const COLLECTORS: &[SpecFn] = &[
    system::spec,
    gpu::spec,
    comfyui::spec,
    quality::spec,
    probes::spec,
    process::spec,
];

/// Builds every enabled collector.
pub fn build(cfg: &CollectorsConfig, ctx: &BuildContext) -> Vec<CollectorSpec> {
    COLLECTORS
        .iter()
        .filter_map(|spec| spec(cfg, ctx))
        .collect()
}
