//! Prometheus's HTTP API on the sidecar, with the real clients as clients (`promtool
//! query instant|range|series|labels`) and side by side with a real Prometheus 2.42
//! (`/usr/bin/prometheus` on 127.0.0.1 with a temp storage dir): the same requests must
//! get the same status codes, envelopes and shapes; constant PromQL (no stored data) and
//! every error case must get byte-equal answers.

use crate::support::prometheus::Prometheus;
use crate::util::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The rule file loaded by both: one firing alert, one pending, one recording rule.
const RULES: &str = r#"groups:
  - name: api
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        labels: {severity: page}
        annotations: {summary: "value {{ $value }}"}
      - alert: AlwaysPending
        expr: vector(2)
        for: 1h
      - record: api:one
        expr: vector(1)
"#;

/// A real Prometheus that loads `rules` and evaluates them every second; `None` when it
/// is not installed and not CI.
fn start_prometheus(dir: &Path, rules: &Path) -> Option<Prometheus> {
    let bin = peer("prometheus")?;
    let config = format!(
        "global: {{evaluation_interval: 1s}}\nrule_files: [{:?}]\n",
        rules.display()
    );
    Some(Prometheus::start(&bin, dir, &config))
}

fn sidecar(dir: &Path, rules: &Path, extra: &str) -> Sentinel {
    let cfg = temp_file(
        dir,
        "sentinel.yaml",
        &format!(
            "data_dir: {:?}\nrules:\n  files: [{:?}]\n  evaluation_interval: 1s\n{extra}",
            dir.join("data").display(),
            rules.display()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    s
}

/// Waits until both have evaluated the rule group (the firing alert is listed).
fn wait_for_firing(base: &str) {
    wait_json(
        &format!("{base}/api/v1/alerts"),
        Duration::from_secs(30),
        "the firing AlwaysFiring",
        |v| {
            v["data"]["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"))
                .then_some(())
        },
    )
}

#[test]
fn prometheus_api_answers_like_prometheus_2_42() {
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(dir.path(), "rules.yml", RULES);
    let Some(prom) = start_prometheus(dir.path(), &rules) else {
        return;
    };
    let s = sidecar(dir.path(), &rules, "");
    let ours = s.url("");
    let theirs = prom.url.clone();
    // Constant PromQL and every error: the very same bytes and status.
    let t = "1700000000.123";
    let exact = [
        format!("/api/v1/query?query=1%2B1&time={t}"),
        format!("/api/v1/query?query=%22text%22&time={t}"),
        "/api/v1/query?query=vector(3)&time=2023-11-14T22:13:20Z".to_string(),
        format!(
            "/api/v1/query?query={}&time=1700000000",
            percent_encode(r#"label_replace(vector(1), "a", "b", "", "")"#)
        ),
        "/api/v1/query_range?query=vector(1)&start=1700000000&end=1700000010&step=5".into(),
        "/api/v1/query_range?query=time()&start=1700000000&end=1700000002.5&step=500ms".into(),
        "/api/v1/query_range?query=1&start=2023-11-14T22:13:20Z&end=2023-11-14T22:14:20Z&step=1m"
            .into(),
        format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000300&step=60",
            percent_encode("count_over_time(vector(1)[2m:30s] @ end())")
        ),
        "/api/v1/query?query=up&time=soon".into(),
        "/api/v1/query_range?query=up".into(),
        "/api/v1/query_range?query=up&start=10&end=1&step=1".into(),
        "/api/v1/query_range?query=up&start=1&end=10&step=0".into(),
        "/api/v1/query_range?query=up&start=1&end=10&step=x".into(),
        "/api/v1/query_range?query=up&start=1&end=100000&step=1".into(),
        "/api/v1/query_range?query=up%5B5m%5D&start=1&end=10&step=1".into(),
        "/api/v1/query_range?query=%22s%22&start=1&end=10&step=1".into(),
        "/api/v1/series".into(),
        "/api/v1/series?match[]=up&start=x".into(),
        "/api/v1/series?match[]=%7B%7D".into(),
        "/api/v1/label/1bad/values".into(),
        "/api/v1/query?query=absent_nonexistent_metric&time=1".into(),
        "/api/v1/series?match[]=absent_nonexistent_metric".into(),
        "/api/v1/label/absent_nonexistent_label/values".into(),
        "/api/v1/rules?type=nonsense".into(),
        "/api/v1/query_exemplars?query=up&start=1&end=10".into(),
        "/api/v1/query_exemplars?query=up&start=x".into(),
    ];
    for path in &exact {
        let [(st_o, _, body_o), (st_t, _, body_t)] = get_pair(&ours, &theirs, path);
        assert_eq!(
            (st_o, &body_o),
            (st_t, &body_t),
            "{path}: sidecar vs Prometheus"
        );
    }
    // Errors whose text comes from the PromQL parser: same status and errorType.
    for path in [
        "/api/v1/query",
        "/api/v1/query?query=sum(",
        "/api/v1/query_range?query=sum(&start=1&end=2&step=1",
        "/api/v1/query_range?query=timestamp(vector(1)%20@%20start())&start=1&end=2&step=1",
    ] {
        let [(st_o, v_o, _), (st_t, v_t, _)] = get_pair(&ours, &theirs, path);
        assert_eq!(st_o, st_t, "{path}");
        assert_eq!(v_o["errorType"], v_t["errorType"], "{path}");
        assert_eq!(json_shape(&v_o), json_shape(&v_t), "{path}");
    }
    // POST (form) answers as GET does.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for base in [&ours, &theirs] {
        let (st, _, body) = http_request(
            "POST",
            &format!("{base}/api/v1/query"),
            &form,
            format!("query=1%2B1&time={t}").as_bytes(),
        )
        .unwrap();
        assert_eq!(st, 200);
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"2"]}}"#
        );
    }
    for base in [&ours, &theirs] {
        let (st, _, body) = http_request(
            "POST",
            &format!("{base}/api/v1/query_range?step=1"),
            &form,
            b"query=vector(2)&start=1700000000&end=1700000001&step=0.5",
        )
        .unwrap();
        assert_eq!(st, 200);
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"2"],[1700000000.500,"2"],[1700000001,"2"]]}]}}"#,
            "{base}: the form's step comes before the URL's"
        );
    }
    // Rules and alerts: the same shapes and the same rule definitions and states.
    wait_for_firing(&ours);
    wait_for_firing(&theirs);
    let [(_, o, _), (_, p, _)] = get_pair(&ours, &theirs, "/api/v1/rules");
    let og = &o["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "api")
        .unwrap_or_else(|| panic!("{o}"))
        .clone();
    let pg = &p["data"]["groups"][0];
    assert_eq!(json_shape(og), json_shape(pg), "group shape:\n{og}\n{pg}");
    // zip stops at the shorter list: the counts must agree first, and be non-zero.
    let rule_count = |g: &serde_json::Value| g["rules"].as_array().map_or(0, Vec::len);
    assert_eq!(rule_count(og), rule_count(pg), "rules:\n{og}\n{pg}");
    assert!(rule_count(og) > 0, "no rules compared:\n{og}");
    let mut alerts_compared = 0;
    for (ro, rp) in og["rules"]
        .as_array()
        .unwrap()
        .iter()
        .zip(pg["rules"].as_array().unwrap())
    {
        let mut keys_o: Vec<&String> = ro.as_object().unwrap().keys().collect();
        let mut keys_p: Vec<&String> = rp.as_object().unwrap().keys().collect();
        keys_o.sort();
        keys_p.sort();
        assert_eq!(keys_o, keys_p, "rule keys:\n{ro}\n{rp}");
        for k in [
            "name",
            "query",
            "duration",
            "keepFiringFor",
            "labels",
            "annotations",
            "state",
            "health",
            "type",
        ] {
            assert_eq!(ro.get(k), rp.get(k), "{k} of\n{ro}\n{rp}");
        }
        let alert_count = |r: &serde_json::Value| r["alerts"].as_array().map_or(0, Vec::len);
        assert_eq!(alert_count(ro), alert_count(rp), "alerts of\n{ro}\n{rp}");
        for (ao, ap) in ro["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(rp["alerts"].as_array().into_iter().flatten())
        {
            alerts_compared += 1;
            assert_eq!(json_shape(ao), json_shape(ap));
            for k in ["labels", "annotations", "state", "value"] {
                assert_eq!(ao[k], ap[k], "{k} of\n{ao}\n{ap}");
            }
        }
    }
    assert!(
        alerts_compared > 0,
        "no alert compared: the test rule must be firing on both"
    );
    let [(_, o, _), (_, p, _)] = get_pair(&ours, &theirs, "/api/v1/alerts");
    assert_eq!(json_shape(&o), json_shape(&p), "{o}\n{p}");
    let find = |v: &Value, name: &str| {
        v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {v}"))
    };
    for name in ["AlwaysFiring", "AlwaysPending"] {
        let (ao, ap) = (find(&o, name), find(&p, name));
        for k in ["labels", "annotations", "state", "value"] {
            assert_eq!(ao[k], ap[k], "{k} of {name}:\n{ao}\n{ap}");
        }
    }
    // Recorded series: series, labels and label values in the same shapes and values.
    for path in [
        "/api/v1/series?match[]=api:one",
        "/api/v1/labels?match[]=api:one",
        "/api/v1/label/__name__/values?match[]=api:one",
        "/api/v1/query?query=api:one",
    ] {
        let [o, p] = get_pair_same_shape(&ours, &theirs, path);
        if !path.contains("query?") {
            assert_eq!(o, p, "{path}");
        }
    }
    // Build info and metadata: the same keys.
    for path in ["/api/v1/status/buildinfo", "/api/v1/metadata?metric=up"] {
        let [(_, o, _), (_, p, _)] = get_pair(&ours, &theirs, path);
        let keys = |v: &Value| -> Vec<String> {
            v["data"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(&o), keys(&p), "{path}:\n{o}\n{p}");
    }
}

#[test]
fn promtool_queries_the_sidecar_as_a_prometheus_server() {
    let Some(promtool) = peer("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(dir.path(), "rules.yml", RULES);
    let s = sidecar(dir.path(), &rules, "");
    wait_for_firing(&s.url(""));
    let run = |args: &[&str]| -> String {
        let out = run_ok(Command::new(&promtool).arg("query").args(args));
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let url = s.url("");
    let out = run(&["instant", &url, "api:one"]);
    assert!(out.contains("api:one => 1 @["), "{out}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 2).to_string(), now.to_string());
    let out = run(&[
        "range",
        &format!("--start={start}"),
        &format!("--end={end}"),
        "--step=1s",
        &url,
        "vector(7)",
    ]);
    assert!(out.contains("{} =>"), "{out}");
    assert!(out.contains("7 @["), "{out}");
    let out = run(&["series", "--match=api:one", &url]);
    assert!(out.contains("__name__=\"api:one\""), "{out}");
    let out = run(&["labels", &url, "__name__"]);
    assert!(out.contains("api:one") && out.contains("ALERTS"), "{out}");
    let out = run(&["labels", "--match=ALERTS", &url, "alertname"]);
    assert!(
        out.contains("AlwaysFiring") && !out.contains("api:one"),
        "{out}"
    );
}

#[test]
fn query_limits_hold_for_range_series_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(dir.path(), "rules.yml", RULES);
    let s = sidecar(
        dir.path(),
        &rules,
        "query:\n  max_samples: 5\n  max_points_per_series: 100\n",
    );
    wait_for_firing(&s.url(""));
    // Resolution: the configured cap, in Prometheus's words.
    let (st, v, _) =
        get_json(&s.url("/api/v1/query_range?query=vector(1)&start=0&end=1000&step=1"));
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["error"],
        "exceeded maximum resolution of 100 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    // Samples held by a range query.
    let (st, v, _) = get_json(&s.url("/api/v1/query_range?query=vector(1)&start=0&end=99&step=1"));
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    // Series listed by series, labels and label values count against max_samples.
    for path in [
        "/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
    ] {
        let (st, v, _) = get_json(&s.url(path));
        assert_eq!(st, 422, "{path}: {v}");
        assert_eq!(v["errorType"], "execution", "{path}");
        assert_eq!(
            v["error"],
            "query processing would load too many samples into memory in query execution"
        );
    }
    // Within the caps, the same calls answer.
    let (st, v, _) = get_json(&s.url("/api/v1/series?match[]=api:one"));
    assert_eq!(st, 200, "{v}");
    let (st, v, _) = get_json(&s.url("/api/v1/query_range?query=vector(1)&start=0&end=2&step=1"));
    assert_eq!(st, 200, "{v}");
}
