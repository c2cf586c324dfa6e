//! `comfy-sentinel gate`: a go/no-go verdict for deploy scripts and canary rollouts.
//! Evaluates a list of PromQL criteria against a running sidecar's query API
//! (`GET /api/v1/query`, Prometheus's response shape, so a Prometheus URL works too)
//! and prints a table of each criterion, its value and verdict.

use sentinel_base::text::{format_trimmed, go_g};
use serde::Deserialize;
use std::time::Duration;

/// The criteria file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriteriaFile {
    /// The checks; the gate says go only when every one passes.
    pub criteria: Vec<Criterion>,
}

/// One criterion: a query and the bounds every returned value must meet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// Shown in the report.
    pub name: String,
    /// PromQL expression evaluated at the current time.
    pub query: String,
    /// Every value must be at least this.
    #[serde(default)]
    pub min: Option<f64>,
    /// Every value must be at most this.
    #[serde(default)]
    pub max: Option<f64>,
    /// `empty`: the query must return nothing (e.g. no firing critical alert).
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Verdict when the query returns nothing and `expect` is not `empty`: `fail`
    /// (default: no data is no evidence) or `pass`.
    #[serde(default)]
    pub on_empty: OnEmpty,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Empty,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnEmpty {
    #[default]
    Fail,
    Pass,
}

/// The verdict on one criterion.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub name: String,
    pub value: String,
    pub pass: bool,
    pub reason: String,
}

/// Why a criteria file is unusable (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CriteriaError {
    /// Not the criteria shape; located when the parser knows where.
    #[error("{file}:{line}:{column}: {source}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{file}: {source}")]
    Unlocated {
        file: String,
        source: serde_yaml_ng::Error,
    },
    /// A criterion that could never fail.
    #[error("{file}: criteria[{index}] ({name}): set min, max, or expect: empty")]
    NoBound {
        file: String,
        index: usize,
        name: String,
    },
}

/// Why one criterion's query gave no values to judge (the criterion fails).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{url}: invalid response: {source}")]
    Response { url: String, source: reqwest::Error },
    /// The server answered with Prometheus's error shape.
    #[error("query failed ({status}{}): {error}", kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default())]
    Failed {
        status: reqwest::StatusCode,
        kind: Option<String>,
        error: String,
    },
    #[error("unsupported result type {0:?}")]
    ResultType(Option<String>),
}

/// Parses the criteria file, with file:line:column on errors.
pub fn parse_criteria(file: &str, text: &str) -> Result<CriteriaFile, CriteriaError> {
    let c: CriteriaFile = serde_yaml_ng::from_str(text).map_err(|source| {
        let file = file.to_string();
        match source.location() {
            Some(l) => CriteriaError::Syntax {
                file,
                line: l.line(),
                column: l.column(),
                source,
            },
            None => CriteriaError::Unlocated { file, source },
        }
    })?;
    for (index, cr) in c.criteria.iter().enumerate() {
        if cr.min.is_none() && cr.max.is_none() && cr.expect.is_none() {
            return Err(CriteriaError::NoBound {
                file: file.to_string(),
                index,
                name: cr.name.clone(),
            });
        }
    }
    Ok(c)
}

/// Judges one criterion on the values its query returned (label text, value).
pub fn judge(c: &Criterion, values: &[(String, f64)]) -> Verdict {
    let shown = if values.is_empty() {
        "(no data)".to_string()
    } else {
        values
            .iter()
            .map(|(l, v)| {
                if l.is_empty() {
                    fmt(*v)
                } else {
                    format!("{l} {}", fmt(*v))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verdict = |pass: bool, reason: String| Verdict {
        name: c.name.clone(),
        value: shown.clone(),
        pass,
        reason,
    };
    if c.expect == Some(Expect::Empty) {
        return if values.is_empty() {
            verdict(true, "empty as expected".into())
        } else {
            verdict(false, format!("{} result(s), expected none", values.len()))
        };
    }
    if values.is_empty() {
        return verdict(c.on_empty == OnEmpty::Pass, "query returned no data".into());
    }
    for (l, v) in values {
        if v.is_nan() {
            return verdict(false, format!("{l} is NaN"));
        }
        if let Some(min) = c.min {
            if *v < min {
                return verdict(false, format!("{} < min {}", fmt(*v), fmt(min)));
            }
        }
        if let Some(max) = c.max {
            if *v > max {
                return verdict(false, format!("{} > max {}", fmt(*v), fmt(max)));
            }
        }
    }
    verdict(true, "within bounds".into())
}

/// A value in the verdict table: up to four decimals for everyday magnitudes, Go's
/// shortest `%g` (`1e+06`, `2e-05`, `NaN`, `+Inf`) outside them. Both spellings come
/// from the workspace's one float formatter.
fn fmt(v: f64) -> String {
    if v.abs() >= 1e-3 && v.abs() < 1e6 || v == 0.0 {
        format_trimmed(v, 4)
    } else {
        go_g(v, -1)
    }
}

/// Runs one instant query against `base` (a sidecar or Prometheus URL).
async fn query(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
    auth: Option<&str>,
) -> Result<Vec<(String, f64)>, QueryError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let mut req = client.get(&url).query(&[("query", expr)]);
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    let resp = req.send().await.map_err(|source| QueryError::Transport {
        url: url.clone(),
        source,
    })?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|source| QueryError::Response {
        url: url.clone(),
        source,
    })?;
    if !status.is_success() || body["status"] != "success" {
        // Prometheus's error shape; a query limit says which (`execution`, `timeout`...).
        return Err(QueryError::Failed {
            status,
            kind: body["errorType"].as_str().map(str::to_string),
            error: body["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        });
    }
    let data = &body["data"];
    let parse_value = |v: &serde_json::Value| -> f64 {
        v.get(1)
            .and_then(|s| s.as_str())
            .and_then(|s| match s {
                "NaN" => Some(f64::NAN),
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                s => s.parse().ok(),
            })
            .unwrap_or(f64::NAN)
    };
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                let inner: Vec<String> = m
                                    .iter()
                                    .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                                    .collect();
                                if inner.is_empty() {
                                    String::new()
                                } else {
                                    format!("{{{}}}", inner.join(","))
                                }
                            })
                            .unwrap_or_default();
                        (labels, parse_value(&s["value"]))
                    })
                    .collect()
            })
            .unwrap_or_default()),
        Some("scalar") => Ok(vec![(String::new(), parse_value(&data["result"]))]),
        other => Err(QueryError::ResultType(other.map(str::to_string))),
    }
}

/// Evaluates every criterion and prints the table. Returns the process exit code:
/// 0 go, 1 no-go, 2 unusable criteria file.
pub fn run(
    url: &str,
    criteria_path: &std::path::Path,
    auth: Option<String>,
    timeout: Duration,
) -> i32 {
    let name = criteria_path.display().to_string();
    let text = match std::fs::read_to_string(criteria_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return 2;
        }
    };
    let criteria = match parse_criteria(&name, &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let verdicts = rt.block_on(async {
        let client = match reqwest::Client::builder().timeout(timeout).build() {
            Ok(c) => c,
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for c in &criteria.criteria {
            let v = match query(&client, url, &c.query, auth.as_deref()).await {
                Ok(values) => judge(c, &values),
                Err(e) => Verdict {
                    name: c.name.clone(),
                    value: "(error)".into(),
                    pass: false,
                    reason: e.to_string(),
                },
            };
            out.push(v);
        }
        Ok(out)
    });
    let verdicts = match verdicts {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    print!("{}", table(&verdicts));
    let go = verdicts.iter().all(|v| v.pass);
    println!("{}", if go { "GO" } else { "NO-GO" });
    if go {
        0
    } else {
        1
    }
}

fn table(vs: &[Verdict]) -> String {
    let w_name = vs.iter().map(|v| v.name.len()).max().unwrap_or(9).max(9);
    let w_val = vs
        .iter()
        .map(|v| v.value.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut s = format!(
        "{:<w_name$}  {:<w_val$}  VERDICT  REASON\n",
        "CRITERION", "VALUE"
    );
    for v in vs {
        let mut value = v.value.clone();
        if value.len() > w_val {
            value.truncate(w_val - 1);
            value.push('…');
        }
        s.push_str(&format!(
            "{:<w_name$}  {:<w_val$}  {:<7}  {}\n",
            v.name,
            value,
            if v.pass { "pass" } else { "FAIL" },
            v.reason
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(min: Option<f64>, max: Option<f64>, expect: Option<Expect>) -> Criterion {
        Criterion {
            name: "c".into(),
            query: "q".into(),
            min,
            max,
            expect,
            on_empty: OnEmpty::Fail,
        }
    }

    #[test]
    fn bounds_and_emptiness_decide() {
        let v = |x: f64| vec![(String::new(), x)];
        assert!(judge(&crit(None, Some(0.05), None), &v(0.04)).pass);
        assert!(!judge(&crit(None, Some(0.05), None), &v(0.06)).pass);
        assert!(judge(&crit(Some(0.9), None, None), &v(0.9)).pass);
        assert!(!judge(&crit(Some(0.9), None, None), &v(0.7)).pass);
        assert!(!judge(&crit(Some(0.9), None, None), &v(f64::NAN)).pass);
        assert!(
            !judge(&crit(Some(0.9), None, None), &[]).pass,
            "no data is no evidence"
        );
        assert!(judge(&crit(None, None, Some(Expect::Empty)), &[]).pass);
        assert!(!judge(&crit(None, None, Some(Expect::Empty)), &v(1.0)).pass);
    }

    #[test]
    fn criteria_files_are_validated() {
        assert!(parse_criteria("f", "criteria:\n  - name: x\n    query: up\n").is_err());
        let e = parse_criteria("f", "criteria:\n  - name: x\n    qurey: up\n").unwrap_err();
        assert!(e.to_string().starts_with("f:3:"), "{e}");
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/gate.yaml"))
                .unwrap();
        assert!(parse_criteria("deploy/gate.yaml", &shipped).is_ok());
    }

    #[test]
    fn verdict_values_use_the_shared_float_formatter() {
        assert_eq!(fmt(0.5), "0.5");
        assert_eq!(fmt(12.345678), "12.3457");
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(2e6), "2e+06");
        assert_eq!(fmt(1e-5), "1e-05");
        assert_eq!(fmt(f64::NAN), "NaN");
        assert_eq!(fmt(f64::INFINITY), "+Inf");
    }
}
