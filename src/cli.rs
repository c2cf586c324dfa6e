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
    /// Rule tools: run promtool test files, export plain Prometheus rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The history in data_dir (docs/history.md): import OpenMetrics text, export it.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// Probe a running sidecar's /healthz (for container health checks; no shell needed).
    Healthcheck {
        /// URL to probe; defaults to /healthz on the configured listen port on loopback.
        #[arg(long)]
        url: Option<String>,
    },
    /// Verify a Standard Webhooks signature of a received notification (for receiver
    /// authors): prints valid/invalid with the reason; exit 0 valid, 1 invalid.
    Verify {
        /// The receiver's secret, `whsec_<base64>` (or the raw secret string); several
        /// separated by spaces during a rotation.
        #[arg(long, env = "COMFY_SENTINEL_WEBHOOK_SECRET")]
        secret: String,
        /// Accepted clock difference between the message timestamp and now.
        #[arg(long, default_value = "5m")]
        tolerance: String,
        /// File with the received headers (`Name: value` lines, or a JSON object).
        /// Without it, the input is a whole raw HTTP request.
        #[arg(long, value_name = "FILE")]
        headers: Option<PathBuf>,
        /// File with the raw body; read from stdin when not given.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
        /// Also print the `whsec_` form of the secret (for a raw secret from the config).
        #[arg(long)]
        show_whsec: bool,
    },
}

fn parse_dur(s: &str) -> Result<std::time::Duration, crate::config::DurationError> {
    crate::config::parse_duration(s)
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
    /// inhibit_rules snippet, or the same as Prometheus Operator objects; prints them
    /// without --out.
    Export {
        /// Output directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `prometheus`: rule files and an inhibit_rules snippet; `prometheus-operator`:
        /// PrometheusRule objects and an AlertmanagerConfig.
        #[arg(long, value_enum, default_value_t = ExportFormat::Prometheus)]
        format: ExportFormat,
        /// prometheus-operator: prefix of the object names.
        #[arg(long, default_value = "comfy-sentinel")]
        name: String,
        /// prometheus-operator: metadata.namespace of the objects (unset: left out).
        #[arg(long)]
        namespace: Option<String>,
        /// prometheus-operator: a label for the objects, e.g. the one a Prometheus
        /// ruleSelector matches (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Read OpenMetrics text with timestamps (what `promtool tsdb create-blocks-from
    /// openmetrics` reads) into the history in data_dir. Durable when it returns; a
    /// malformed file imports nothing. Refused while a sidecar runs on the same data_dir.
    Import {
        /// The OpenMetrics file (ends with `# EOF`).
        file: PathBuf,
    },
    /// Write the history in data_dir as OpenMetrics text, for `promtool tsdb
    /// create-blocks-from openmetrics`; to stdout without --out.
    Export {
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Output format of `rules export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Plain Prometheus rule files plus an Alertmanager inhibit_rules snippet.
    Prometheus,
    /// PrometheusRule (monitoring.coreos.com/v1) and AlertmanagerConfig (v1alpha1) objects.
    PrometheusOperator,
}

/// Process exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const INVALID_CONFIG: i32 = 2;
}
