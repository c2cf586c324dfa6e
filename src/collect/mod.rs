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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cfg: &CollectorsConfig) -> Vec<&'static str> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = BuildContext {
            registry: crate::metrics::registry::Registry::new(),
            data_dir: dir.path().to_path_buf(),
            outputs: OutputQueue::default(),
        };
        build(cfg, &ctx)
            .iter()
            .map(|s| s.collector.name())
            .collect()
    }

    #[test]
    fn process_collector_is_built_from_the_one_list() {
        // It used to be pushed by `App` outside the list.
        let mut cfg = CollectorsConfig::default();
        cfg.system.enabled = false;
        cfg.comfyui.enabled = false;
        cfg.gpu.enabled = Toggle::Off;
        cfg.quality.image_checks = false;
        assert_eq!(names(&cfg), ["process"]);
    }

    #[test]
    fn the_list_builds_each_enabled_collector_once_under_its_own_name() {
        let cfg: CollectorsConfig = serde_yaml_ng::from_str(
            "gpu: { enabled: false }\nprobes: { targets: [{ name: a, tcp: '127.0.0.1:1' }] }",
        )
        .expect("parses");
        cfg.validate().expect("valid");
        let mut got = names(&cfg);
        for want in ["system", "comfyui", "probes", "process"] {
            assert!(got.contains(&want), "{want} missing from {got:?}");
        }
        let n = got.len();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), n, "a collector name appears twice");
    }
}
