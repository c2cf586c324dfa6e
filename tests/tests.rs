//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod foundation;
mod rules;
