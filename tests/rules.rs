//! The rule engine through the real binary: `rules test`, `rules export` (checked by
//! promtool), `check` on a broken rule file, and ALERTS on /metrics.

use crate::util::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rules_test_passes_level_rules_and_fails_a_wrong_expectation() {
    let ok = fixture("rules/levels_test.yml");
    let (code, stdout, stderr) = run(&["rules", "test", ok.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    let bad = fixture("rules/failing_test.yml");
    let (code, _, stderr) = run(&["rules", "test", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("FAILED:") && stderr.contains("got: {__name__=\"up\", job=\"x\"} 1E+00"),
        "{stderr}"
    );
}

#[test]
fn rules_export_is_accepted_by_promtool() {
    let Some(promtool) = peer("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!(
            "rules:\n  files: [{:?}]\n",
            fixture("rules/levels.yaml").display().to_string()
        ),
    );
    let out = dir.path().join("out");
    rules_export(&cfg, &out);
    let exported = out.join("levels.yaml");
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.contains("severity: \"critical\""), "{text}");
    run_ok(
        Command::new(promtool)
            .args(["check", "rules"])
            .arg(&exported),
    );
    let inhibit = std::fs::read_to_string(out.join("alertmanager-inhibit-rules.yml")).unwrap();
    assert!(
        inhibit.contains(
            "target_matchers: ['alertname=\"RecoveryOverheadHigh\"', 'severity=\"warning\"']"
        ),
        "{inhibit}"
    );
}

#[test]
fn check_reports_a_broken_rule_file_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fixture("rules/bad.yaml");
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!("rules:\n  files: [{:?}]\n", bad.display().to_string()),
    );
    let (code, _, stderr) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("bad.yaml:5:15: group \"broken\", rule \"Broken\""),
        "{stderr}"
    );
}

#[test]
fn running_binary_exports_firing_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(
        dir.path(),
        "r.yaml",
        "groups:\n  - name: w\n    interval: 1s\n    rules:\n      - alert: Watchdog\n        expr: vector(1)\n",
    );
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        &format!(
            "data_dir: {:?}\nrules:\n  files: [{:?}]\n  evaluation_interval: 1s\n",
            dir.path().display().to_string(),
            rules.display().to_string()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    scrape_until(&s, "ALERTS{alertname=\"Watchdog\",alertstate=\"firing\"} 1");
}

#[test]
fn rule_globs_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    temp_file(
        &dir.path().join("rules"),
        "ok.yaml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n",
    );
    let cfg = temp_file(
        dir.path(),
        "c.yaml",
        "rules:\n  files: [\"rules/*.yaml\"]\n",
    );
    let (code, _, stderr) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
}

/// The plain Prometheus rules under `deploy/prometheus/rules/` and the inhibit rules in
/// `deploy/alertmanager/` are exactly what `comfy-sentinel rules export` writes for the
/// default rules: regenerate with
/// `comfy-sentinel rules export --out DIR` and copy, never edit by hand.
#[test]
fn deployed_rules_match_the_export() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(std::process::Command::new(bin()).args([
        "rules",
        "export",
        "--out",
        dir.path().to_str().unwrap(),
    ]));
    let deployed = repo().join("deploy/prometheus/rules");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut committed: Vec<String> = std::fs::read_dir(&deployed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    committed.sort();
    assert_eq!(
        names, committed,
        "exported and committed rule files differ in names"
    );
    for n in &names {
        let fresh = std::fs::read_to_string(dir.path().join(n)).unwrap();
        let old = std::fs::read_to_string(deployed.join(n)).unwrap();
        assert!(
            fresh == old,
            "deploy/prometheus/rules/{n} is out of date: re-export it"
        );
    }
    let inhibit =
        std::fs::read_to_string(dir.path().join("alertmanager-inhibit-rules.yml")).unwrap();
    let committed =
        std::fs::read_to_string(repo().join("deploy/alertmanager/inhibit-rules.yml")).unwrap();
    assert!(
        inhibit == committed,
        "deploy/alertmanager/inhibit-rules.yml is out of date"
    );
    // Every generated inhibit rule is in the compose stack's alertmanager.yml.
    let am: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/alertmanager/alertmanager.yml")).unwrap(),
    )
    .unwrap();
    let gen: serde_yaml_ng::Value = serde_yaml_ng::from_str(&inhibit).unwrap();
    let have = am["inhibit_rules"].as_sequence().unwrap();
    for rule in gen["inhibit_rules"].as_sequence().unwrap() {
        assert!(have.contains(rule), "alertmanager.yml lacks {rule:?}");
    }
}

/// Runs `promtool test rules FILE`; `None` when promtool is not installed (outside CI).
fn promtool_test(file: &std::path::Path) -> Option<(bool, String)> {
    let promtool = peer("promtool")?;
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(file)
        .output()
        .unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Exports `rules` (a rule file's text, saved as `hysteresis.yaml`) into `dir/out/` and
/// copies the shared test file next to it; returns the copy's path.
fn export_with_test(dir: &std::path::Path, rules: &str) -> std::path::PathBuf {
    let src = temp_file(dir, "hysteresis.yaml", rules);
    let cfg = temp_file(
        dir,
        "c.yaml",
        &format!("rules:\n  files: [{:?}]\n", src.display().to_string()),
    );
    let out = dir.join("out");
    rules_export(&cfg, &out);
    let test = out.join("hysteresis_test.yml");
    std::fs::copy(fixture("rules/hysteresis_test.yml"), &test).unwrap();
    test
}

/// Section 1 of issue 13: one promtool test file (a value above `fire`, dipping between
/// `resolve` and `fire`, then below `resolve`) passes in our engine against the rule file
/// with `{fire, resolve}` levels, and in promtool (and our engine) against its export.
#[test]
fn resolve_thresholds_agree_between_our_engine_and_promtool_on_the_export() {
    let source = fixture("rules/hysteresis_test.yml");
    let (code, stdout, stderr) = run(&["rules", "test", source.to_str().unwrap()]);
    assert_eq!(code, 0, "our engine, source file: {stdout}{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(fixture("rules/hysteresis.yaml")).unwrap();
    let test = export_with_test(dir.path(), &rules);
    let exported = std::fs::read_to_string(dir.path().join("out/hysteresis.yaml")).unwrap();
    assert!(
        exported.contains(
            r#"expr: "(overhead_ratio) > 0.10 or ((overhead_ratio) >= 0.08 and ignoring(alertname, alertstate, component, severity) ALERTS{alertname=\"OverheadHigh\", alertstate=\"firing\", severity=\"critical\"})""#
        ),
        "{exported}"
    );
    let (code, stdout, stderr) = run(&["rules", "test", test.to_str().unwrap()]);
    assert_eq!(code, 0, "our engine, exported file: {stdout}{stderr}");
    if let Some((ok, out)) = promtool_test(&test) {
        assert!(ok, "promtool, exported file: {out}");
    }
}

/// The control: with the resolve thresholds taken out (string levels), the same test file
/// fails in both engines at the first dip between resolve and fire, so the test above
/// really checks the hysteresis and not only the firing.
#[test]
fn without_resolve_thresholds_the_hover_test_fails_in_both_engines() {
    let rules = std::fs::read_to_string(fixture("rules/hysteresis.yaml"))
        .unwrap()
        .replace(r#"{ fire: "> 0.07", resolve: "< 0.05" }"#, r#""> 0.07""#)
        .replace(r#"{ fire: "> 0.10", resolve: "< 0.08" }"#, r#""> 0.10""#)
        .replace(r#"{ fire: "< 0.9", resolve: ">= 0.95" }"#, r#""< 0.9""#);
    assert!(!rules.contains("resolve:"), "{rules}");
    let dir = tempfile::tempdir().unwrap();
    let test = export_with_test(dir.path(), &rules);
    let (code, _, stderr) = run(&["rules", "test", test.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("alertname: OverheadHigh, time: 2m,"),
        "{stderr}"
    );
    if let Some((ok, out)) = promtool_test(&test) {
        assert!(!ok, "{out}");
        assert!(out.contains("alertname: OverheadHigh, time: 2m,"), "{out}");
    }
}

/// The default rules' promtool tests (`rules/tests/`, written against the exported files
/// and run through promtool and our engine by `promtool_conformance`) also pass in our
/// engine against the source files, where resolve thresholds are evaluated natively
/// rather than through the exported `ALERTS` expression.
#[test]
fn default_rule_tests_pass_natively_against_the_source_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(repo().join("rules/tests")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let rewritten = text.replace(
            "../../deploy/prometheus/rules/",
            &format!("{}/", repo().join("rules").display()),
        );
        assert_ne!(text, rewritten, "{}: no exported rule file", p.display());
        files.push(temp_file(
            dir.path(),
            &p.file_name().unwrap().to_string_lossy(),
            &rewritten,
        ));
    }
    assert!(files.len() >= 6);
    let mut args = vec!["rules", "test"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// `comfy-sentinel rules export --config CFG --out OUT`, which must succeed.
fn rules_export(cfg: &std::path::Path, out: &std::path::Path) {
    let (code, _, stderr) = run(&[
        "rules",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
}
