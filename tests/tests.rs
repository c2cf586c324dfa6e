//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod dashboards;
mod foundation;
mod gpu;
mod metrics_doc;
mod probes;
mod quality;
mod status_page;
mod system;
