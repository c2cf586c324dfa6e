//! Command-line interface: every flag and subcommand is declared here, in one place.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "comfy-sentinel",
    version,
    about = "Prometheus exporter and alerting sidecar for GPU generative-workflow servers (ComfyUI)",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (YAML). Without it the embedded default config is used.
    #[arg(long, short = 'c', global = true, env = "COMFY_SENTINEL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on, overriding `listen` in the config (run only).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (the default).
    Run,
    /// Validate the configuration and exit: 0 valid, 2 invalid.
    Check {
        /// Print the effective configuration, secrets redacted.
        #[arg(long)]
        print: bool,
    },
    /// Print the version and exit.
    Version,
    /// Go/no-go gate: evaluate PromQL criteria against a running sidecar (or Prometheus);
    /// exit 0 go, 1 no-go, 2 unusable criteria file.
    Gate {
        /// Base URL of the sidecar (its /api/v1/query) or of a Prometheus server.
        #[arg(long)]
        url: String,
        /// Criteria file (YAML), e.g. deploy/gate.yaml.
        #[arg(long)]
        criteria: PathBuf,
        /// Value of the Authorization header to send (e.g. "Bearer TOKEN").
        #[arg(long, env = "COMFY_SENTINEL_GATE_AUTH")]
        auth: Option<String>,
        /// Timeout per query.
        #[arg(long, default_value = "10s", value_parser = parse_dur)]
        timeout: std::time::Duration,
    },
    /// Probe a running sidecar's /healthz (for container health checks; no shell needed).
    Healthcheck {
        /// URL to probe; defaults to /healthz on the configured listen port on loopback.
        #[arg(long)]
        url: Option<String>,
    },
}

fn parse_dur(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

/// Process exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const INVALID_CONFIG: i32 = 2;
}
