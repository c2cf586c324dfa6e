//! `docs/configuration.md` documents every configuration field with its default: this
//! checks it against the real config structs, through the effective default config that
//! `comfy-sentinel check --print` prints (every field, defaults filled in).

use crate::util::*;
use std::collections::BTreeMap;

/// Flattens YAML into `a.b.c` → rendered default. Lists and maps that are empty by
/// default are leaves (their element fields are documented as `a.b[].c`).
fn flatten(prefix: &str, v: &serde_yaml_ng::Value, out: &mut BTreeMap<String, String>) {
    use serde_yaml_ng::Value;
    match v {
        Value::Mapping(m) if !m.is_empty() && !prefix.ends_with("external_labels") => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys").to_string();
                let p = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        other => {
            let rendered = match other {
                Value::Null => "none".to_string(),
                Value::String(s) => s.clone(),
                Value::Sequence(s) => format!(
                    "[{}]",
                    s.iter()
                        .map(|i| serde_yaml_ng::to_string(i).unwrap().trim().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Value::Mapping(m) if m.is_empty() => "{}".to_string(),
                v => serde_yaml_ng::to_string(v).unwrap().trim().to_string(),
            };
            out.insert(prefix.to_string(), rendered);
        }
    }
}

fn effective_defaults() -> BTreeMap<String, String> {
    // An empty config file: every field at its built-in default.
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_file(dir.path(), "empty.yaml", "# defaults\n");
    let out = run_ok(std::process::Command::new(bin()).args([
        "check",
        "--print",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(&out.stdout).expect("printed config is YAML");
    let mut flat = BTreeMap::new();
    flatten("", &v, &mut flat);
    flat
}

/// Rows of the reference tables: `| `key` | `default` | meaning |`.
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(repo().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        // `\|` is a pipe inside a cell (regex defaults).
        let line = line.replace("\\|", "\u{1}");
        let cells: Vec<String> = line
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "|"))
            .collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_string();
        let default = cells[2].trim_matches('`').to_string();
        rows.insert(key, default);
    }
    rows
}

#[test]
fn every_field_is_documented_with_its_default() {
    let actual = effective_defaults();
    let doc = documented();
    let missing: Vec<_> = actual.keys().filter(|k| !doc.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "fields missing from docs/configuration.md: {missing:#?}"
    );
    let wrong: Vec<_> = actual
        .iter()
        .filter(|(k, v)| doc.get(*k).is_some_and(|d| d != *v))
        .map(|(k, v)| format!("{k}: documented {:?}, actual {v:?}", doc[k]))
        .collect();
    assert!(
        wrong.is_empty(),
        "defaults that differ:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_documented_field_is_unknown() {
    let actual = effective_defaults();
    // Fields inside list elements (`a[].b`) and optional sections are documented with
    // their parent present in the effective config.
    let unknown: Vec<_> = documented()
        .into_keys()
        .filter(|k| {
            let top = k.split("[]").next().unwrap().trim_end_matches('.');
            !actual.keys().any(|a| {
                a == top || a.starts_with(&format!("{top}.")) || top.starts_with(&format!("{a}."))
            })
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "documented fields the config does not have: {unknown:#?}"
    );
}
