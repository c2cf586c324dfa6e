//! A real Alertmanager (Debian's `prometheus-alertmanager`) started for one test, killed
//! on drop: the sidecar's Alertmanager API v2 is compared with it.

use super::process::{free_port, poll, KillOnDrop};
use std::path::Path;
use std::process::{Command, Stdio};

pub struct Alertmanager {
    _child: KillOnDrop,
    pub url: String,
}

impl Alertmanager {
    /// Starts `bin` with `config` (the text of an alertmanager.yml), its data in `dir`
    /// and clustering off, and waits until it is ready.
    pub fn start(bin: &Path, dir: &Path, config: &str) -> Alertmanager {
        let cfg = crate::util::temp_file(dir, "alertmanager.yml", config);
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager {
            _child: KillOnDrop(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        assert!(
            poll(&format!("{}/-/ready", am.url), |s, _| s == 200),
            "alertmanager never became ready"
        );
        am
    }
}
