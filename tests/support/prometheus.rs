//! A real Prometheus (Debian's `prometheus`) started for one test, killed on drop: the
//! dashboards' queries and the OpenMetrics scrape are checked against it.

#![allow(dead_code)]

use super::process::{free_port, poll, KillOnDrop};
use crate::util::{http_get, percent_encode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Prometheus {
    _child: KillOnDrop,
    pub url: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `bin` with `config` (the text of a prometheus.yml) and its TSDB in `dir`,
    /// and waits until it is ready.
    pub fn start(bin: &Path, dir: &Path, config: &str) -> Prometheus {
        let config = crate::util::temp_file(dir, "prometheus.yml", config);
        let port = free_port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            _child: KillOnDrop(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        p.wait_for("/-/ready", |s, _| s == 200);
        p
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `path` for 60 s until `ok(status, body)`; panics with the log otherwise.
    pub fn wait_for(&self, path: &str, ok: impl Fn(u16, &str) -> bool) {
        if poll(&format!("{}{path}", self.url), ok) {
            return;
        }
        panic!(
            "prometheus: {path} never became ready; log:\n{}",
            self.logs()
        );
    }

    /// An instant query: the parsed `/api/v1/query` answer.
    pub fn query(&self, expr: &str) -> Value {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(expr));
        let (_, _, body) = http_get(&url, &[]).expect("query prometheus");
        serde_json::from_slice(&body).expect("prometheus answers JSON")
    }
}

/// `promtool check metrics` on an exposition: its exit code (1: it does not parse; 3:
/// lint findings) and its report. None where promtool is not installed, after saying so
/// (under CI that fails the test, see `support::peer`).
pub fn promtool_check_metrics(text: &str) -> Option<(Option<i32>, String)> {
    let promtool = crate::util::peer("promtool")?;
    Some(super::process::run_with_input(
        Command::new(promtool).args(["check", "metrics"]),
        text.as_bytes(),
    ))
}
