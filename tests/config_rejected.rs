//! One rejected config per section (`tests/fixtures/config/rejected/<section>.yaml`), as
//! Alertmanager keeps one fixture per rejected config. Each file's first line says the
//! error it must get: `# expect: <line>:<column>: <field path>: <message>`; the loader
//! prefixes the file name. A section without a fixture fails the test too.

use std::path::Path;

/// Every section of the config that can be refused, by fixture name.
const SECTIONS: &[&str] = &[
    "top_level",
    "log",
    "web",
    "limits",
    "collectors_system",
    "collectors_gpu",
    "collectors_quality",
    "collectors_probes",
    "collectors_comfyui",
    "ingest",
    "rules",
    "query",
    "notify",
];

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/rejected");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture readable");
            (p.display().to_string(), text)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_rejected_config_fixture_fails_with_its_expected_located_message() {
    let mut failures = Vec::new();
    let all = fixtures();
    for (path, text) in &all {
        let Some(expect) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
        else {
            failures.push(format!(
                "{path}: first line must be `# expect: <line>:<col>: ...`"
            ));
            continue;
        };
        match comfy_sentinel::config::parse(path, text) {
            Ok(_) => failures.push(format!("{path}: accepted")),
            Err(e) => {
                let want = format!("{path}:{expect}");
                if e.to_string() != want {
                    failures.push(format!("{path}:\n  want {want}\n  got  {e}"));
                }
            }
        }
    }
    for section in SECTIONS {
        if !all
            .iter()
            .any(|(p, _)| p.ends_with(&format!("/{section}.yaml")))
        {
            failures.push(format!("no rejected fixture for section {section}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_secret_file_is_located_at_its_own_key_not_the_sections_first() {
    let (path, text) = fixtures()
        .into_iter()
        .find(|(p, _)| p.ends_with("/ingest_secret_file.yaml"))
        .expect("fixture");
    let e = comfy_sentinel::config::parse(&path, &text).expect_err("a FIFO/device is refused");
    assert_eq!((e.line, e.column), (4, 15), "{e}");
    assert_eq!(e.path, "ingest.token_file");
}
