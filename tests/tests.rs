//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod am_api;
/// Shared test kit (tests/support/README.md): HTTP, waits and events, the exposition
/// reader, the peer lookup, the kill-on-drop process wrapper, the dashboards, headless
/// Chromium, a real Prometheus and a real Alertmanager.
mod support {
    pub mod alertmanager;
    pub mod chromium;
    pub mod dashboards;
    pub mod exposition;
    pub mod http;
    pub mod peer;
    pub mod process;
    pub mod prometheus;
}

mod collector_timeouts;
mod comfyui;
mod config_doc;
mod config_rejected;
mod dashboards;
mod delivery_latency;
mod deploy;
mod fake_comfyui;
mod first_event;
mod footprint_release;
mod foundation;
mod fuzz;
mod gate;
mod gpu;
mod grafana_sidecar;
mod hardening_api_bounds;
mod hardening_config;
mod hardening_history;
mod hardening_http;
mod hardening_ingest;
mod hardening_query;
mod history_differential;
mod history_store;
mod ingest;
mod metric_contract;
mod metrics_doc;
mod notify;
mod probes;
mod prom_api;
mod quality;
mod rules;
mod standalone_alerts;
mod status_page;
mod status_trends;
mod system;
