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
    /// Rule tools: run promtool test files, export plain Prometheus rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Probe a running sidecar's /healthz (for container health checks; no shell needed).
    Healthcheck {
        /// URL to probe; defaults to /healthz on the configured listen port on loopback.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run `promtool test rules` files against the built-in engine.
    Test {
        /// Test files (promtool format).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write plain Prometheus rule files (levels expanded) and an Alertmanager
    /// inhibit_rules snippet; prints them without --out.
    Export {
        /// Output directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Process exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const INVALID_CONFIG: i32 = 2;
}
