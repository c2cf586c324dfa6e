//! Config value types shared by every crate: durations, secrets, and source locations.

pub mod locate;
mod secret;
mod types;

pub use secret::{either as either_secret, Secret, SecretFile, SecretString};
pub use types::{format_duration, parse_duration, Dur};
