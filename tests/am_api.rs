//! Alertmanager's API v2 on the sidecar: `amtool` as the client (`alert query`,
//! `silence add|query|expire`), the shapes of Alertmanager 0.25's recorded answers
//! (`tests/fixtures/alertmanager_v2/`), and side by side with a real Alertmanager 0.25
//! (`prometheus-alertmanager` on 127.0.0.1) for the same alert and silence.

use crate::support::alertmanager::Alertmanager;
use crate::util::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ALERT: &str = r#"[{"labels":{"alertname":"DiskFull","severity":"page"},"annotations":{"summary":"disk"},"generatorURL":"http://g/"}]"#;

fn silence_body(name: &str) -> String {
    format!(
        r#"{{"matchers":[{{"name":"alertname","value":"{name}","isRegex":false,"isEqual":true}}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"ops","comment":"maintenance"}}"#
    )
}

fn post(url: &str, body: &str) -> (u16, String) {
    let (st, _, b) = http_request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    (st, String::from_utf8_lossy(&b).to_string())
}

/// A sidecar with one webhook receiver (`hook`, nowhere; groups by alertname, as the
/// recording's Alertmanager) and no rules.
fn sidecar(dir: &Path) -> Sentinel {
    let rules = temp_file(dir, "rules.yml", "groups: []\n");
    let cfg = temp_file(
        dir,
        "sentinel.yaml",
        &format!(
            r#"data_dir: {:?}
rules: {{ files: [{:?}] }}
notify:
  route: {{ receiver: hook, group_by: [alertname] }}
  receivers:
    - name: hook
      webhooks: [{{ url: "http://127.0.0.1:9/hook" }}]
"#,
            dir.join("data").display(),
            rules.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    s
}

/// Posts `ALERT` and waits until `GET /api/v2/alerts` lists it.
fn post_alert(base: &str) -> Value {
    let (st, body) = post(&format!("{base}/api/v2/alerts"), ALERT);
    assert_eq!(st, 200, "{body}");
    wait_json(
        &format!("{base}/api/v2/alerts"),
        Duration::from_secs(20),
        "the posted alert",
        |v| {
            v.as_array()
                .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == "DiskFull"))
                .cloned()
        },
    )
}

#[test]
fn amtool_manages_silences_and_reads_alerts_on_the_sidecar() {
    let Some(amtool) = peer("amtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = sidecar(dir.path());
    post_alert(&s.url(""));
    let url = format!("--alertmanager.url={}", s.url(""));
    let run = |args: &[&str]| -> String {
        let out = run_ok(Command::new(&amtool).arg(&url).args(args));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = run(&["alert", "query", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v[0]["labels"]["alertname"], "DiskFull", "{v}");
    assert_eq!(v[0]["receivers"][0]["name"], "hook", "{v}");
    let out = run(&["alert", "query", "alertname=DiskFull"]);
    assert!(out.contains("DiskFull") && out.contains("disk"), "{out}");
    let out = run(&["alert", "query", "alertname=Other"]);
    assert!(!out.contains("DiskFull"), "{out}");
    // Silence it: amtool prints the new id.
    let id = run(&[
        "silence",
        "add",
        "alertname=DiskFull",
        "--comment=maintenance",
        "--author=ops",
        "--duration=1h",
    ])
    .trim()
    .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
    let out = run(&["silence", "query", "-q"]);
    assert_eq!(out.trim(), id);
    let out = run(&["silence", "query", "alertname=DiskFull"]);
    assert!(out.contains(&id) && out.contains("maintenance"), "{out}");
    let out = run(&["silence", "query", "-q", "alertname=Other"]);
    assert_eq!(out.trim(), "");
    // Silenced alerts are hidden unless asked for.
    let out = run(&["alert", "query"]);
    assert!(!out.contains("DiskFull"), "{out}");
    let out = run(&["alert", "query", "--silenced", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"]["state"], "suppressed", "{v}");
    assert_eq!(v[0]["status"]["silencedBy"][0], id.as_str(), "{v}");
    // Expire it.
    run(&["silence", "expire", &id]);
    let out = run(&["silence", "query", "-q"]);
    assert_eq!(out.trim(), "");
    let out = run(&["silence", "query", "--expired", "-q"]);
    assert_eq!(out.trim(), id);
    let (st, v, _) = get_json(&s.url(&format!("/api/v2/silence/{id}")));
    assert_eq!(st, 200);
    assert_eq!(v["status"]["state"], "expired", "{v}");
    let out = run(&["alert", "query"]);
    assert!(out.contains("DiskFull"), "{out}");
}

#[test]
fn v2_answers_have_the_shapes_alertmanager_0_25_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = sidecar(dir.path());
    post_alert(&s.url(""));
    let recorded = |name: &str| -> Value {
        let text =
            std::fs::read_to_string(fixture(&format!("alertmanager_v2/{name}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    // Before the silence: the recorded groups hold an active alert.
    let (st, v, _) = get_json(&s.url("/api/v2/alerts/groups"));
    assert_eq!(st, 200);
    assert_eq!(
        json_shape(&v),
        json_shape(&recorded("groups")),
        "groups:\n{v}"
    );
    assert_eq!(v[0]["receiver"]["name"], "hook", "{v}");
    let (_, v, _) = get_json(&s.url("/api/v2/alerts/groups?receiver=nomatch"));
    assert_eq!(v, serde_json::json!([]));
    let (st, body) = post(&s.url("/api/v2/silences"), &silence_body("DiskFull"));
    assert_eq!(st, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, name) in [
        ("/api/v2/alerts".to_string(), "alerts"),
        ("/api/v2/silences".to_string(), "silences"),
        (format!("/api/v2/silence/{id}"), "silence"),
        ("/api/v2/receivers".to_string(), "receivers"),
        ("/api/v2/status".to_string(), "status"),
    ] {
        let (st, v, _) = get_json(&s.url(&path));
        assert_eq!(st, 200, "{path}");
        assert_eq!(json_shape(&v), json_shape(&recorded(name)), "{path}:\n{v}");
    }
    let (_, v, _) = get_json(&s.url("/api/v2/alerts"));
    assert_eq!(v[0]["status"]["state"], "suppressed");
    let (_, v, _) = get_json(&s.url("/api/v2/alerts?silenced=false"));
    assert_eq!(v, serde_json::json!([]));
}

/// A real Alertmanager 0.25 on 127.0.0.1 with one webhook receiver (`hook`, nowhere;
/// groups by alertname, as the sidecar); `None` when it is not installed and not CI.
fn start_alertmanager(dir: &Path) -> Option<Alertmanager> {
    let bin = peer("prometheus-alertmanager").or_else(|| peer("alertmanager"))?;
    Some(Alertmanager::start(
        &bin,
        dir,
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1h\nreceivers:\n  - name: hook\n    webhook_configs: [{url: 'http://127.0.0.1:9/hook'}]\n",
    ))
}

#[test]
fn v2_answers_match_a_real_alertmanager_for_the_same_alert_and_silence() {
    let dir = tempfile::tempdir().unwrap();
    let Some(am) = start_alertmanager(dir.path()) else {
        return;
    };
    let s = sidecar(dir.path());
    let ours = s.url("");
    let theirs = am.url.clone();
    let (ao, ap) = (post_alert(&ours), post_alert(&theirs));
    for k in [
        "labels",
        "annotations",
        "fingerprint",
        "generatorURL",
        "status",
    ] {
        assert_eq!(ao[k], ap[k], "{k}:\n{ao}\n{ap}");
    }
    assert_eq!(json_shape(&ao), json_shape(&ap));
    let mut ids = Vec::new();
    for base in [&ours, &theirs] {
        let (st, body) = post(
            &format!("{base}/api/v2/silences"),
            &silence_body("DiskFull"),
        );
        assert_eq!(st, 200, "{base}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        ids.push(v["silenceID"].as_str().unwrap().to_string());
    }
    for path in [
        "/api/v2/silences",
        "/api/v2/receivers",
        "/api/v2/status",
        "/api/v2/alerts/groups",
    ] {
        get_pair_same_shape(&ours, &theirs, path);
    }
    let (_, so, _) = get_json(&format!("{ours}/api/v2/silence/{}", ids[0]));
    let (_, sp, _) = get_json(&format!("{theirs}/api/v2/silence/{}", ids[1]));
    for k in ["matchers", "comment", "createdBy", "status", "endsAt"] {
        assert_eq!(so[k], sp[k], "{k}:\n{so}\n{sp}");
    }
    // Muted on both; hidden on both when silenced ones are not asked for.
    wait_until(Duration::from_secs(10), || {
        let [(_, o, _), (_, p, _)] = get_pair(&ours, &theirs, "/api/v2/alerts?silenced=false");
        let hidden = |v: &serde_json::Value| v.as_array().is_some_and(|a| a.is_empty());
        if o == p && hidden(&o) {
            Ok(())
        } else {
            Err(format!(
                "the silenced alert is not hidden on both sides:\n{o}\n{p}"
            ))
        }
    });
    // Errors: the same status and, where Alertmanager's text is ours too, the same body.
    let zero = "00000000-0000-0000-0000-000000000000";
    for path in [
        "/api/v2/silence/xyz".to_string(),
        format!("/api/v2/silence/{zero}"),
    ] {
        let [(so, _, o), (sp, _, p)] = get_pair(&ours, &theirs, &path);
        assert_eq!((so, o), (sp, p), "{path}");
    }
    for body in [
        r#"[{"labels":{}}]"#,
        r#"[{"labels":{"a":"b"},"startsAt":"2030-01-01T00:00:00Z","endsAt":"2020-01-01T00:00:00Z"}]"#,
    ] {
        let o = post(&format!("{ours}/api/v2/alerts"), body);
        let p = post(&format!("{theirs}/api/v2/alerts"), body);
        assert_eq!(o, p, "{body}");
    }
    let [(so, _, _), (sp, _, _)] = get_pair(&ours, &theirs, "/api/v2/alerts?filter=foo");
    assert_eq!(so, sp);
    // Expiring: both 200, and the silence reads as expired.
    for (base, id) in [(&ours, &ids[0]), (&theirs, &ids[1])] {
        let (st, _, _) =
            http_request("DELETE", &format!("{base}/api/v2/silence/{id}"), &[], b"").unwrap();
        assert_eq!(st, 200, "{base}");
        let (_, v, _) = get_json(&format!("{base}/api/v2/silence/{id}"));
        assert_eq!(v["status"]["state"], "expired", "{base}");
    }
}
