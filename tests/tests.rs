//! The integration test binary: one module per area, all sharing `util`.

mod util;

mod comfyui;
mod fake_comfyui;
mod foundation;
