//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod dashboards;
mod foundation;
mod gpu;
mod system;
mod probes;
mod quality;
mod metrics_doc;
mod status_page;
