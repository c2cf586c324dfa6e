//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod config_doc;
mod dashboards;
mod foundation;
mod gpu;
mod probes;
mod quality;
mod system;
