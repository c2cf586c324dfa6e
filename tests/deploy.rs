//! The compose stack in `deploy/` and its configs: `docker-compose config`,
//! `promtool check config` and `amtool check-config` on the shipped files, the sidecar's
//! hardening and mounts, and its config accepted by the binary.

use crate::util::{self, run_ok};
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn compose_file_is_valid() {
    let Some(compose) = util::peer("docker-compose") else {
        return;
    };
    run_ok(Command::new(compose).current_dir(util::repo()).args([
        "-f",
        "deploy/docker-compose.yml",
        "config",
        "-q",
    ]));
}

#[test]
fn prometheus_config_and_its_rules_are_valid() {
    let Some(promtool) = util::peer("promtool") else {
        return;
    };
    run_ok(Command::new(promtool).current_dir(util::repo()).args([
        "check",
        "config",
        "deploy/prometheus/prometheus.yml",
    ]));
}

#[test]
fn alertmanager_config_is_valid_and_inhibits_warnings_under_criticals() {
    let text = std::fs::read_to_string(util::repo().join("deploy/alertmanager/alertmanager.yml"))
        .expect("read");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let inhibits = doc["inhibit_rules"].as_sequence().expect("inhibit_rules");
    assert!(
        inhibits.iter().any(|r| r["source_matchers"]
            .as_sequence()
            .is_some_and(|m| m.iter().any(|x| x == "severity=\"critical\""))
            && r["target_matchers"]
                .as_sequence()
                .is_some_and(|m| m.iter().any(|x| x == "severity=\"warning\""))
            && r["equal"]
                .as_sequence()
                .is_some_and(|e| e.iter().any(|l| l == "alertname"))),
        "no critical→warning inhibit rule"
    );
    let Some(amtool) = util::peer("amtool") else {
        return;
    };
    run_ok(
        Command::new(amtool)
            .current_dir(util::repo())
            .args(["check-config", "deploy/alertmanager/alertmanager.yml"]),
    );
}

/// The sidecar in the compose file: hardened, healthy by its own subcommand, reading the
/// host's /proc and / where its config says.
#[test]
fn compose_sidecar_is_hardened_and_sees_the_host() {
    let repo = util::repo();
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo.join("deploy/docker-compose.yml")).expect("read"),
    )
    .expect("YAML");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo.join("deploy/comfy-sentinel.yaml")).expect("read"),
    )
    .expect("YAML");
    let s = &compose["services"]["comfy-sentinel"];
    assert_eq!(s["read_only"], true);
    assert_eq!(s["cap_drop"][0], "ALL");
    assert!(s["security_opt"].as_sequence().unwrap().iter().any(|o| o
        .as_str()
        .is_some_and(|o| o.starts_with("no-new-privileges"))));
    let user = s["user"].as_str().expect("user");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "runs as {user}"
    );
    assert!(s["mem_limit"].is_string() && s["cpus"].is_number() && s["pids_limit"].is_number());
    let health: Vec<&str> = s["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(health, ["CMD", "comfy-sentinel", "healthcheck"]);
    assert!(compose["services"]["comfyui"]["image"]
        .as_str()
        .unwrap()
        .starts_with("${COMFYUI_IMAGE"));

    let mounts: BTreeMap<String, (String, String)> = s["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .map(|v| {
            let mut parts = v.splitn(3, ':');
            let src = parts.next().unwrap_or("").to_string();
            let dst = parts.next().unwrap_or("").to_string();
            (src, (dst, parts.next().unwrap_or("").to_string()))
        })
        .collect();
    let system = &config["collectors"]["system"];
    for (host, key) in [
        ("/proc", "procfs_path"),
        ("/sys", "sysfs_path"),
        ("/", "rootfs_path"),
    ] {
        let (dst, opts) = mounts
            .get(host)
            .unwrap_or_else(|| panic!("host {host} not mounted"));
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "host {host} mounted writable"
        );
        assert_eq!(
            system[key].as_str(),
            Some(dst.as_str()),
            "collectors.system.{key}"
        );
    }
    let (data_dst, _) = mounts
        .get("sentinel-data")
        .expect("named volume for data_dir");
    assert_eq!(config["data_dir"].as_str(), Some(data_dst.as_str()));
    // Declared as a top-level named volume (its value may be empty or a mapping).
    let declared = compose["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .contains_key("sentinel-data");
    assert!(declared, "named volume sentinel-data not declared");
    assert!(
        compose["volumes"]["sentinel-data"].is_null()
            || compose["volumes"]["sentinel-data"].is_mapping()
    );

    // Grafana's dashboard provider reads the folder compose mounts the dashboards into.
    let provider: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            repo.join("dashboards/provisioning/dashboards/comfy-sentinel.yaml"),
        )
        .expect("read"),
    )
    .expect("YAML");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let grafana = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(
        grafana.iter().any(|v| v
            .as_str()
            .is_some_and(|v| v.starts_with("../dashboards:") && v.contains(&format!(":{path}")))),
        "grafana does not mount dashboards/ at {path}"
    );
}

/// The sidecar config the compose stack mounts is one the binary accepts.
#[test]
fn compose_sidecar_config_is_valid() {
    let config = util::repo().join("deploy/comfy-sentinel.yaml");
    run_ok(Command::new(util::bin()).args([
        "check",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]));
}
