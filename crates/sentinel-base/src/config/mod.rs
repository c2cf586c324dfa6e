//! Config value types shared by every crate: durations, secrets, and source locations.

pub mod depth;
mod error;
pub mod locate;
mod secret;
mod types;

pub use error::FieldError;
pub use secret::{
    either as either_secret, either_at as either_secret_at, read_secret_file,
    with_base_dir as with_secret_base_dir, EitherError, Secret, SecretError, SecretFile,
    SecretString, MAX_SECRET_FILE_BYTES, SECRET_ERROR_PREFIXES,
};
pub use types::{format_duration, parse_duration, Dur, DurationError};
