//! `rules export --format prometheus-operator`: the plain export's rule groups wrapped in
//! Prometheus Operator objects, so a Prometheus managed by the operator loads them through
//! its `ruleSelector` and an operator-managed Alertmanager its inhibit rules.
//!
//! - One `PrometheusRule` (`monitoring.coreos.com/v1`) per rule file, named
//!   `<name>-<file stem>`. Its `spec.groups` is the plain export of the same file
//!   (`cli::render_rule_file`) parsed back, so both exports always carry the same rules.
//! - One `AlertmanagerConfig` (`monitoring.coreos.com/v1alpha1`), `<name>-inhibit-rules`,
//!   whose `spec.inhibitRules` are the plain `inhibit_rules` snippet
//!   (`cli::render_inhibit_rules`) with each matcher string turned into the operator's
//!   matcher object. The operator adds a `namespace` matcher to each of them, so the object
//!   belongs in the namespace of the pods whose alerts it inhibits.
//!
//! Names, the namespace and extra labels are configurable, so that a Prometheus
//! `ruleSelector` (and an Alertmanager `alertmanagerConfigSelector`) picks the objects up.

use crate::cli::{render_inhibit_rules, render_rule_file};
use crate::rulefile::{GroupDef, LevelLink};
use anyhow::{anyhow, bail, Context};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Labels every generated object carries, before the user's `--label`s (which win).
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "comfy-sentinel");

/// What the generated objects are called and where they go.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorOptions {
    /// Prefix of every object's name (a DNS-1123 subdomain).
    pub name: String,
    /// `metadata.namespace`; left out when unset (kubectl's or kustomize's namespace applies).
    pub namespace: Option<String>,
    /// Extra `metadata.labels`, e.g. the label a `ruleSelector` matches.
    pub labels: BTreeMap<String, String>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            name: "comfy-sentinel".into(),
            namespace: None,
            labels: BTreeMap::new(),
        }
    }
}

impl OperatorOptions {
    /// Builds the options from the command line's values, checking each against the
    /// API server's rules so that a bad flag fails here, not at `kubectl apply`.
    pub fn new(name: &str, namespace: Option<&str>, labels: &[String]) -> anyhow::Result<Self> {
        check_subdomain(name).with_context(|| format!("--name {name:?}"))?;
        if name.len() > 200 {
            bail!("--name {name:?}: longer than 200 characters leaves no room for the suffixes");
        }
        if let Some(ns) = namespace {
            check_dns_label(ns).with_context(|| format!("--namespace {ns:?}"))?;
        }
        let mut map = BTreeMap::new();
        for l in labels {
            let (k, v) = parse_label(l).with_context(|| format!("--label {l:?}"))?;
            map.insert(k, v);
        }
        Ok(OperatorOptions {
            name: name.to_string(),
            namespace: namespace.map(String::from),
            labels: map,
        })
    }
}

/// `key=value` with a Kubernetes label key (optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters) and a label value (at most 63 characters, may be empty).
pub fn parse_label(s: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key=value"))?;
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            check_subdomain(prefix).context("label key prefix")?;
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        bail!("label key name {name:?} must be 1-63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric");
    }
    if value.len() > 63 || (!value.is_empty() && !is_label_token(value)) {
        bail!("label value {value:?} must be at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric");
    }
    Ok((key.to_string(), value.to_string()))
}

fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn check_dns_label(s: &str) -> anyhow::Result<()> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        bail!("must be a DNS-1123 label: at most 63 characters of [a-z0-9-], starting and ending alphanumeric")
    }
}

fn check_subdomain(s: &str) -> anyhow::Result<()> {
    if s.is_empty() || s.len() > 253 {
        bail!("must be a DNS-1123 subdomain of 1-253 characters");
    }
    for part in s.split('.') {
        check_dns_label(part).map_err(|_| {
            anyhow!("must be a DNS-1123 subdomain: lowercase [a-z0-9-] parts separated by dots")
        })?;
    }
    Ok(())
}

/// A rule file's stem as a name suffix: lowercase, anything outside `[a-z0-9-]` becomes `-`.
fn name_suffix(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "rules".into());
    let mut out: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_matches('-').to_string();
    out.truncate(50);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "rules".into()
    } else {
        out
    }
}

fn metadata(name: &str, opts: &OperatorOptions) -> Value {
    let mut labels = Mapping::new();
    labels.insert(PART_OF.0.into(), PART_OF.1.into());
    for (k, v) in &opts.labels {
        labels.insert(k.as_str().into(), v.as_str().into());
    }
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    if let Some(ns) = &opts.namespace {
        m.insert("namespace".into(), ns.as_str().into());
    }
    m.insert("labels".into(), Value::Mapping(labels));
    Value::Mapping(m)
}

fn object(api_version: &str, kind: &str, name: &str, opts: &OperatorOptions, spec: Value) -> Value {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), api_version.into());
    m.insert("kind".into(), kind.into());
    m.insert("metadata".into(), metadata(name, opts));
    m.insert("spec".into(), spec);
    Value::Mapping(m)
}

/// The `PrometheusRule` for one rule file's groups: `spec.groups` is the plain export.
pub fn prometheus_rule(file: &str, groups: &[GroupDef], opts: &OperatorOptions) -> Value {
    let plain: Value =
        serde_yaml_ng::from_str(&render_rule_file(groups)).expect("the plain export is YAML");
    let groups = plain
        .get("groups")
        .cloned()
        .unwrap_or(Value::Sequence(Vec::new()));
    let mut spec = Mapping::new();
    spec.insert("groups".into(), groups);
    object(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        &format!("{}-{}", opts.name, name_suffix(file)),
        opts,
        Value::Mapping(spec),
    )
}

/// One matcher string of the plain snippet (`name="value"`, `=`, `!=`, `=~` or `!~`) as the
/// operator's `{name, value, matchType}`.
fn matcher_object(m: &str) -> anyhow::Result<Value> {
    let i = m
        .find(['=', '!'])
        .ok_or_else(|| anyhow!("matcher {m:?} has no operator"))?;
    let name = m[..i].trim();
    let rest = &m[i..];
    let op = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| anyhow!("matcher {m:?} has no operator"))?;
    let raw = rest[op.len()..].trim();
    let value: String = if raw.starts_with('"') {
        serde_json::from_str(raw).with_context(|| format!("matcher {m:?}: bad quoted value"))?
    } else {
        raw.to_string()
    };
    let mut o = Mapping::new();
    o.insert("name".into(), name.into());
    o.insert("value".into(), value.into());
    o.insert("matchType".into(), op.into());
    Ok(Value::Mapping(o))
}

/// The `AlertmanagerConfig` carrying the inhibit rules of the plain export.
pub fn alertmanager_config(
    groups: &[GroupDef],
    links: &[LevelLink],
    opts: &OperatorOptions,
) -> anyhow::Result<Value> {
    let plain: Value = serde_yaml_ng::from_str(&render_inhibit_rules(groups, links))
        .context("the plain inhibit rules are YAML")?;
    let mut rules = Vec::new();
    for rule in plain
        .get("inhibit_rules")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let mut out = Mapping::new();
        for (from, to) in [
            ("source_matchers", "sourceMatch"),
            ("target_matchers", "targetMatch"),
        ] {
            let ms = rule
                .get(from)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .map(|m| matcher_object(m.as_str().unwrap_or_default()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            out.insert(to.into(), Value::Sequence(ms));
        }
        if let Some(eq) = rule.get("equal") {
            out.insert("equal".into(), eq.clone());
        }
        rules.push(Value::Mapping(out));
    }
    let mut spec = Mapping::new();
    spec.insert("inhibitRules".into(), Value::Sequence(rules));
    Ok(object(
        "monitoring.coreos.com/v1alpha1",
        "AlertmanagerConfig",
        &format!("{}-inhibit-rules", opts.name),
        opts,
        Value::Mapping(spec),
    ))
}

const HEADER: &str =
    "# Generated by comfy-sentinel rules export --format prometheus-operator; do not edit.\n";

/// Every object of the export as `(file name, YAML text)`, in source order, the
/// `AlertmanagerConfig` last.
pub fn render(
    sources: &[(String, String)],
    opts: &OperatorOptions,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut all_groups = Vec::new();
    let mut all_links = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, text) in sources {
        let (groups, links) = crate::rulefile::parse_rule_file(text, name)?;
        let obj = prometheus_rule(name, &groups, opts);
        let obj_name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !seen.insert(obj_name.clone()) {
            bail!("two rule files map to the PrometheusRule name {obj_name:?}; rename one");
        }
        files.push((
            format!("{obj_name}.yaml"),
            format!("{HEADER}{}", serde_yaml_ng::to_string(&obj)?),
        ));
        all_groups.extend(groups);
        all_links.extend(links);
    }
    let am = alertmanager_config(&all_groups, &all_links, opts)?;
    // A bare `=` is YAML 1.1's "value" tag, which PyYAML-based tools refuse: quote it.
    let am_text = serde_yaml_ng::to_string(&am)?.replace("matchType: =\n", "matchType: '='\n");
    files.push((
        format!("{}-inhibit-rules.alertmanagerconfig.yml", opts.name),
        format!("{HEADER}{am_text}"),
    ));
    Ok(files)
}

/// `rules export --format prometheus-operator [--out DIR]`: one file per object in `DIR`
/// (`<name>-<stem>.yaml` per PrometheusRule; the AlertmanagerConfig gets a `.yml` name so
/// that a `*.yaml` glob takes only the rules), or a `---`-separated stream on stdout for
/// `kubectl apply -f -`.
pub fn export(
    sources: &[(String, String)],
    out: Option<&Path>,
    opts: &OperatorOptions,
) -> anyhow::Result<()> {
    let files = render(sources, opts)?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, text) in files {
                std::fs::write(dir.join(&name), text)
                    .with_context(|| format!("writing {}", dir.join(&name).display()))?;
            }
        }
        None => {
            for (_, text) in files {
                print!("---\n{text}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<(String, String)> {
        crate::DEFAULT_RULES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn prometheus_rule_groups_equal_the_plain_export() {
        let opts = OperatorOptions::new(
            "comfy-sentinel",
            Some("comfyui"),
            &["release=kube-prometheus-stack".into()],
        )
        .unwrap();
        let files = render(&defaults(), &opts).unwrap();
        assert_eq!(files.len(), crate::DEFAULT_RULES.len() + 1);
        for ((name, text), (file, _)) in files.iter().zip(crate::DEFAULT_RULES) {
            let obj: Value = serde_yaml_ng::from_str(text).unwrap();
            assert_eq!(obj["apiVersion"], "monitoring.coreos.com/v1", "{name}");
            assert_eq!(obj["kind"], "PrometheusRule");
            assert_eq!(obj["metadata"]["namespace"], "comfyui");
            assert_eq!(
                obj["metadata"]["labels"]["release"],
                "kube-prometheus-stack"
            );
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/part-of"],
                "comfy-sentinel"
            );
            let (groups, _) = crate::rulefile::parse_rule_file(
                crate::DEFAULT_RULES
                    .iter()
                    .find(|(f, _)| f == file)
                    .unwrap()
                    .1,
                file,
            )
            .unwrap();
            let plain: Value = serde_yaml_ng::from_str(&render_rule_file(&groups)).unwrap();
            assert!(!plain["groups"].as_sequence().unwrap().is_empty());
            assert_eq!(obj["spec"]["groups"], plain["groups"], "{file}");
        }
    }

    #[test]
    fn alertmanager_config_carries_every_plain_inhibit_rule() {
        let opts = OperatorOptions::default();
        let mut groups = Vec::new();
        let mut links = Vec::new();
        for (name, text) in defaults() {
            let (g, l) = crate::rulefile::parse_rule_file(&text, &name).unwrap();
            groups.extend(g);
            links.extend(l);
        }
        let plain: Value = serde_yaml_ng::from_str(&render_inhibit_rules(&groups, &links)).unwrap();
        let plain = plain["inhibit_rules"].as_sequence().unwrap();
        let am = alertmanager_config(&groups, &links, &opts).unwrap();
        assert_eq!(am["kind"], "AlertmanagerConfig");
        assert_eq!(am["apiVersion"], "monitoring.coreos.com/v1alpha1");
        let rules = am["spec"]["inhibitRules"].as_sequence().unwrap();
        assert!(!rules.is_empty());
        assert_eq!(rules.len(), plain.len());
        for (r, p) in rules.iter().zip(plain) {
            assert_eq!(r["equal"], p["equal"]);
            let alertname = &r["sourceMatch"][0];
            assert_eq!(alertname["name"], "alertname");
            assert_eq!(alertname["matchType"], "=");
            assert_eq!(r["sourceMatch"][1]["value"], "critical");
            assert_eq!(r["targetMatch"][1]["value"], "warning");
            assert_eq!(r["targetMatch"][0]["value"], alertname["value"]);
        }
    }

    #[test]
    fn equality_match_type_is_quoted_for_yaml_1_1_parsers() {
        let files = render(&defaults(), &OperatorOptions::default()).unwrap();
        let (_, am) = files.last().unwrap();
        assert!(am.contains("matchType: '='\n"));
        assert!(!am.contains("matchType: =\n"));
        let back: Value = serde_yaml_ng::from_str(am).unwrap();
        assert_eq!(
            back["spec"]["inhibitRules"][0]["sourceMatch"][0]["matchType"],
            "="
        );
    }

    #[test]
    fn matcher_strings_become_operator_matchers() {
        let m = matcher_object(r#"alertname="Gpu \"hot\"""#).unwrap();
        assert_eq!(m["name"], "alertname");
        assert_eq!(m["value"], "Gpu \"hot\"");
        assert_eq!(m["matchType"], "=");
        assert_eq!(matcher_object("job!~\"a|b\"").unwrap()["matchType"], "!~");
        assert_eq!(matcher_object("job=~x").unwrap()["value"], "x");
        assert!(matcher_object("nothing").is_err());
    }

    #[test]
    fn invalid_names_namespaces_and_labels_are_refused() {
        assert!(OperatorOptions::new("Comfy", None, &[]).is_err());
        assert!(OperatorOptions::new("comfy_sentinel", None, &[]).is_err());
        assert!(OperatorOptions::new("ok", Some("a.b"), &[]).is_err());
        assert!(OperatorOptions::new("ok", None, &["novalue".into()]).is_err());
        assert!(OperatorOptions::new("ok", None, &["-bad=x".into()]).is_err());
        assert!(OperatorOptions::new("ok", None, &["k=v v".into()]).is_err());
        assert!(OperatorOptions::new("ok", None, &[format!("k={}", "v".repeat(64))]).is_err());
        let o = OperatorOptions::new(
            "team.comfy-sentinel",
            Some("gpu-1"),
            &["example.com/role=alert-rules".into(), "empty=".into()],
        )
        .unwrap();
        assert_eq!(o.labels["example.com/role"], "alert-rules");
        assert_eq!(o.labels["empty"], "");
    }

    #[test]
    fn object_names_come_from_file_stems() {
        assert_eq!(name_suffix("rules/GPU_rules.yaml"), "gpu-rules");
        assert_eq!(name_suffix("/x/__.yaml"), "rules");
    }

    #[test]
    fn committed_kubernetes_rules_match_the_export() {
        // deploy/kubernetes/base/rules/ is this export of the default rules; regenerate
        // with scripts/validate-kubernetes.sh --regenerate (or the command it prints).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/base/rules");
        let files = render(&defaults(), &OperatorOptions::default()).unwrap();
        for (name, text) in files {
            let committed = std::fs::read_to_string(dir.join(&name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(&name).display()));
            assert_eq!(
                committed, text,
                "{name} is stale: run `comfy-sentinel rules export --format prometheus-operator --out deploy/kubernetes/base/rules`"
            );
        }
    }
}
