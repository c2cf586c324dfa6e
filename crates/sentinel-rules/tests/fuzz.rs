//! Fuzz targets on the stable toolchain (property tests): rule files, PromQL evaluation
//! and the Go-template renderer must never panic, whatever they are given.
//!
//! Each target runs `PROPTEST_CASES` cases (default 256: a few seconds each in a debug
//! build), so CI runs them for a short fixed budget with the normal `cargo test`. Hunt
//! for crashes with a larger budget, e.g.
//! `PROPTEST_CASES=5000 cargo test -p sentinel-rules --test fuzz`.
//! Every crash found is kept below as a named regression test with its minimal input.

use proptest::prelude::*;
use sentinel_rules::eval::{self, Evaluator};
use sentinel_rules::labels::Labels;
use sentinel_rules::rulefile::{parse_rule_file, LoadError};
use sentinel_rules::store::{stale_nan, Origin, Store};
use sentinel_rules::template::{expand, Template, TemplateData};
use std::collections::BTreeMap;
use std::path::Path;

#[path = "../../../tests/support/fuzz_kit.rs"]
mod fuzz_kit;
use fuzz_kit::{config, mutate, mutation};

// ---------------------------------------------------------------------------------
// Byte mutations of seed files (`fuzz_kit`), with YAML's special tokens
// ---------------------------------------------------------------------------------

/// Tokens that YAML parsers and our loaders treat specially.
const YAML_TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    - ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "!!float ",
    "<<: *a\n",
    "~",
    "null",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "-",
    "  ",
    "\t",
    "#",
    "|\n",
    ">-\n",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\u{feff}",
    "\r\n",
    "\u{0}",
    "\u{85}",
    "?",
    "? ",
    "!",
    "@",
    "`",
    "\\",
    "\\u",
    "0x",
    "0o",
    "99999999999999999999",
    "expr: ",
    "for: ",
    "labels: ",
    "annotations: ",
    "groups: ",
    "rules: ",
    "alert: ",
    "record: ",
    "warning: ",
    "critical: ",
    "interval: ",
    "limit: ",
    "name: ",
    "keep_firing_for: ",
    "{{",
    "}}",
    "{{ $value }}",
    "{{ printf \"%.2f\" $value }}",
    "[5m]",
    "[1h:1m]",
    "rate(",
    ")",
    "by (a)",
    "offset 5m",
    "@ 0",
    "1y",
    "0s",
    "-1s",
    "9999999999999d",
    "é",
    "\u{10FFFF}",
];

// ---------------------------------------------------------------------------------
// Rule files
// ---------------------------------------------------------------------------------

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn files_in(dir: &Path, exts: &[&str]) -> Vec<String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Rule files of the repository: the default rules and the conformance rule files.
fn rule_seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut s: Vec<String> = sentinel_rules::DEFAULT_RULES
            .iter()
            .map(|(_, t)| t.to_string())
            .collect();
        s.extend(files_in(
            &repo().join("rules/conformance/rules"),
            &["yaml", "yml"],
        ));
        s.extend(files_in(&repo().join("tests/fixtures/rules"), &["yaml"]));
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        for d in ["conformance", "differential"] {
            s.extend(
                files_in(&here.join(d), &["yml"])
                    .into_iter()
                    .filter(|t| t.trim_start().starts_with("groups") || t.contains("\ngroups:")),
            );
        }
        assert!(s.len() >= 6, "rule file seeds found: {}", s.len());
        s
    })
}

/// Loads a rule file; an error must name the file.
fn check_rule_file(text: &str) {
    match parse_rule_file(text, "fuzz.yaml") {
        Ok((groups, _links)) => {
            for g in &groups {
                for r in &g.rules {
                    // What the engine does with a loaded rule's text: parse it again.
                    assert!(eval::parse(&r.expr_text).is_ok(), "{}", r.expr_text);
                }
            }
        }
        Err(LoadError::Invalid(m)) => {
            assert!(m.contains("fuzz.yaml"), "error does not name the file: {m}")
        }
        Err(e @ LoadError::Io { .. }) => panic!("parse_rule_file returned an I/O error: {e}"),
    }
}

/// A rule as YAML, built from pieces that are each sometimes wrong.
fn rule_yaml() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "A",
        "HighLoad",
        "",
        "job:up:sum",
        "1bad",
        "a b",
        "\"quoted\"",
        "'x'",
        "é",
    ]);
    let expr = prop::sample::select(vec![
        "up",
        "up == 0",
        "rate(x_total[5m]) > 1",
        "sum by (a) (m)",
        "",
        "rate(x[5m]",
        "sort_by_label(x, \"a\")",
        "x[5m]",
        "\"str\"",
        "1",
        "vector(1)",
        "m offset -5m",
        "max_over_time(m[1m:10s])",
        "{__name__=~\"m|n\"}",
        "m @ start()",
        "absent(nope)",
        "99999999999999999999999",
        "label_replace(m, \"a\", \"$1\", \"b\", \"(.*)\")",
        "histogram_quantile(0.9, rate(h_bucket[5m]))",
        "m{a=~\"(\"}",
        "x[99999999999y]",
    ]);
    let dur = prop::sample::select(vec![
        "5m",
        "0s",
        "1h30m",
        "-1s",
        "1y",
        "99999999999999999999s",
        "abc",
        "",
        "1.5m",
        "1e3s",
    ]);
    let label = prop::sample::select(vec![
        "severity: page",
        "severity: \"{{ $labels.a }}\"",
        "bad-name: x",
        "__name__: y",
        "team: \"{{ if }}\"",
        "v: \"{{ $value | humanize }}\"",
        "n: 1",
        "l: [1, 2]",
        "m: {a: b}",
        "s: \"{{ printf \\\"%d\\\" 3 }}\"",
    ]);
    let level = prop::sample::select(vec![
        "> 0.07", ">= 1", "~ 3", "", "< nan", "== +Inf", "> x", "!=1e309",
    ]);
    (
        prop::sample::select(vec!["alert", "record", "both", "none"]),
        name,
        prop::option::of(expr),
        prop::option::of(dur.clone()),
        prop::option::of(dur),
        prop::collection::vec(label.clone(), 0..3),
        prop::collection::vec(label, 0..3),
        prop::option::of(level.clone()),
        prop::option::of(level),
    )
        .prop_map(
            |(kind, name, expr, for_, keep, labels, annos, warn, crit)| {
                let mut s = String::new();
                match kind {
                    "alert" => s.push_str(&format!("      - alert: {name}\n")),
                    "record" => s.push_str(&format!("      - record: {name}\n")),
                    "both" => {
                        s.push_str(&format!("      - alert: {name}\n        record: {name}\n"))
                    }
                    _ => s.push_str("      - {}\n"),
                }
                if kind == "none" {
                    return s;
                }
                if let Some(e) = expr {
                    s.push_str(&format!("        expr: '{}'\n", e.replace('\'', "''")));
                }
                if let Some(d) = for_ {
                    s.push_str(&format!("        for: '{d}'\n"));
                }
                if let Some(d) = keep {
                    s.push_str(&format!("        keep_firing_for: '{d}'\n"));
                }
                if !labels.is_empty() {
                    s.push_str("        labels:\n");
                    for l in labels {
                        s.push_str(&format!("          {l}\n"));
                    }
                }
                if !annos.is_empty() {
                    s.push_str("        annotations:\n");
                    for l in annos {
                        s.push_str(&format!("          {l}\n"));
                    }
                }
                if let Some(w) = warn {
                    s.push_str(&format!("        warning: '{w}'\n"));
                }
                if let Some(c) = crit {
                    s.push_str(&format!("        critical: '{c}'\n"));
                }
                s
            },
        )
}

fn rule_file_yaml() -> impl Strategy<Value = String> {
    let group = (
        prop::sample::select(vec!["g", "", "g", "other", "g g"]),
        prop::option::of(prop::sample::select(vec!["1m", "0s", "bad", "-1m", "1ms"])),
        prop::option::of(prop::sample::select(vec!["0", "3", "-1", "x", "1e3"])),
        prop::collection::vec(rule_yaml(), 0..4),
    )
        .prop_map(|(name, interval, limit, rules)| {
            let mut s = format!("  - name: '{name}'\n");
            if let Some(i) = interval {
                s.push_str(&format!("    interval: '{i}'\n"));
            }
            if let Some(l) = limit {
                s.push_str(&format!("    limit: {l}\n"));
            }
            s.push_str("    rules:\n");
            for r in rules {
                s.push_str(&r);
            }
            s
        });
    prop::collection::vec(group, 0..3).prop_map(|gs| {
        let mut s = String::from("groups:\n");
        for g in gs {
            s.push_str(&g);
        }
        s
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn rule_file_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_rule_file(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn rule_file_mutated_seeds_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(YAML_TOKENS), 1..8),
    ) {
        let seeds = rule_seeds();
        let seed = &seeds[seed.index(seeds.len())];
        check_rule_file(&String::from_utf8_lossy(&mutate(seed.as_bytes(), &muts)));
    }

    #[test]
    fn rule_file_generated_never_panics(text in rule_file_yaml()) {
        check_rule_file(&text);
    }
}

// ---------------------------------------------------------------------------------
// PromQL evaluation
// ---------------------------------------------------------------------------------

/// A small store: gauges, a counter with a reset, a histogram, odd values (NaN, ±Inf,
/// a stale marker), ten minutes of samples every 15 s.
fn small_store() -> &'static Store {
    static STORE: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let s = Store::unbounded();
        let series: Vec<Labels> = vec![
            Labels::from_pairs([("__name__", "m"), ("a", "x"), ("b", "1")]),
            Labels::from_pairs([("__name__", "m"), ("a", "y")]),
            Labels::from_pairs([("__name__", "m"), ("a", "z"), ("b", "2")]),
            Labels::from_pairs([("__name__", "c_total"), ("a", "x")]),
            Labels::from_pairs([("__name__", "c_total"), ("a", "y")]),
            Labels::from_pairs([("__name__", "h_bucket"), ("le", "0.1")]),
            Labels::from_pairs([("__name__", "h_bucket"), ("le", "0.5")]),
            Labels::from_pairs([("__name__", "h_bucket"), ("le", "+Inf")]),
            Labels::from_pairs([("__name__", "odd"), ("a", "x")]),
        ];
        for i in 0..=40i64 {
            let t = i * 15_000;
            let f = i as f64;
            s.append(&series[0], t, (f * 0.7).sin() * 10.0, Origin::Rules);
            s.append(&series[1], t, f, Origin::Rules);
            if i % 3 != 0 {
                s.append(&series[2], t, -f, Origin::Rules);
            }
            s.append(
                &series[3],
                t,
                if i < 20 { f * 5.0 } else { (f - 20.0) * 3.0 },
                Origin::Rules,
            );
            s.append(&series[4], t, f * f, Origin::Rules);
            s.append(&series[5], t, f, Origin::Rules);
            s.append(&series[6], t, f * 2.0, Origin::Rules);
            s.append(&series[7], t, f * 3.0, Origin::Rules);
            let v = match i % 5 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 if i > 30 => stale_nan(),
                3 => 1e308,
                _ => -0.0,
            };
            s.append(&series[8], t, v, Origin::Rules);
        }
        s
    })
}

fn selector() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["m", "c_total", "h_bucket", "odd", "nope", ""]);
    let matcher = prop::sample::select(vec![
        "a=\"x\"",
        "a!=\"x\"",
        "a=~\"x|y\"",
        "a!~\"y\"",
        "b=\"\"",
        "b!=\"\"",
        "a=~\".*\"",
        "__name__=~\"m|c_total\"",
        "le=\"+Inf\"",
        "a=~\"(x\"",
    ]);
    (name, prop::collection::vec(matcher, 0..3)).prop_map(|(n, ms)| {
        let body = ms.join(",");
        match (n.is_empty(), ms.is_empty()) {
            (true, true) => "{a=~\".+\"}".to_string(),
            (true, false) => format!("{{{body}}}"),
            (false, true) => n.to_string(),
            (false, false) => format!("{n}{{{body}}}"),
        }
    })
}

/// Small ranges and coarse steps, so that nested subqueries stay cheap.
fn range() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["15s", "30s", "1m", "2m", "5m"])
}

fn modifiers() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(vec![
            "1m", "-1m", "5m", "10m", "100y", "-100y",
        ])),
        prop::option::of(prop::sample::select(vec![
            "0",
            "300",
            "start()",
            "end()",
            "-60",
            "9999999999",
            "-9999999999",
            "1e15",
        ])),
    )
        .prop_map(|(off, at)| {
            let mut s = String::new();
            if let Some(a) = at {
                s.push_str(&format!(" @ {a}"));
            }
            if let Some(o) = off {
                s.push_str(&format!(" offset {o}"));
            }
            s
        })
}

fn number() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "0", "1", "-1", "0.5", "2", "3", "10", "NaN", "Inf", "-Inf", "1e308", "-0", "0.99", "1.5",
    ])
}

/// An expression of the evaluator's subset, from a small grammar (depth-bounded).
fn promql() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => (selector(), modifiers()).prop_map(|(s, m)| format!("{s}{m}")),
        2 => number().prop_map(str::to_string),
        1 => prop::sample::select(vec!["time()", "pi()", "vector(1)", "vector(time())"])
            .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 48, 3, |inner| {
        let range_arg = prop_oneof![
            (selector(), range(), modifiers()).prop_map(|(s, r, m)| format!("{s}[{r}]{m}")),
            (
                inner.clone(),
                range(),
                prop::sample::select(vec!["", "15s", "30s", "1m"])
            )
                .prop_map(|(e, r, st)| format!("({e})[{r}:{st}]")),
        ];
        prop_oneof![
            // instant functions
            (
                prop::sample::select(vec![
                    "abs",
                    "ceil",
                    "floor",
                    "round",
                    "exp",
                    "ln",
                    "log2",
                    "log10",
                    "sqrt",
                    "sgn",
                    "timestamp",
                    "absent",
                    "scalar",
                    "sort",
                    "sort_desc",
                    "acos",
                    "acosh",
                    "asin",
                    "atanh",
                    "cos",
                    "tan",
                    "deg",
                    "rad",
                    "day_of_month",
                    "day_of_week",
                    "day_of_year",
                    "days_in_month",
                    "hour",
                    "minute",
                    "month",
                    "year",
                    "vector",
                ]),
                inner.clone()
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            // range functions that take one range argument, from the evaluator's table
            (
                prop::sample::select(
                    sentinel_rules::eval::FUNCTIONS
                        .iter()
                        .filter(|(n, k)| {
                            *k == sentinel_rules::eval::FunctionKind::Range
                                && !["predict_linear", "quantile_over_time", "holt_winters"]
                                    .contains(n)
                        })
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                ),
                range_arg.clone()
            )
                .prop_map(|(f, r)| format!("{f}({r})")),
            (number(), range_arg.clone())
                .prop_map(|(q, r)| format!("quantile_over_time({q}, {r})")),
            (range_arg.clone(), number()).prop_map(|(r, s)| format!("predict_linear({r}, {s})")),
            (range_arg, number(), number())
                .prop_map(|(r, a, b)| format!("holt_winters({r}, {a}, {b})")),
            (number(), inner.clone()).prop_map(|(q, e)| format!("histogram_quantile({q}, {e})")),
            (inner.clone(), number(), number())
                .prop_map(|(e, a, b)| format!("clamp({e}, {a}, {b})")),
            (
                prop::sample::select(vec!["clamp_min", "clamp_max"]),
                inner.clone(),
                number()
            )
                .prop_map(|(f, e, a)| format!("{f}({e}, {a})")),
            (
                inner.clone(),
                prop::sample::select(vec!["a", "dst", "__name__", "le", "1bad"]),
                prop::sample::select(vec!["$1", "$1$1", "${1}-x", "", "$2"]),
                prop::sample::select(vec!["a", "b", "__name__", "nope"]),
                prop::sample::select(vec!["(.*)", "(.+)", "x", "(", "(?P<n>.)"]),
            )
                .prop_map(|(e, d, r, s, re)| {
                    format!("label_replace({e}, \"{d}\", \"{r}\", \"{s}\", \"{re}\")")
                }),
            (inner.clone(), prop::sample::select(vec!["j", "a", "1bad"]))
                .prop_map(|(e, d)| format!("label_join({e}, \"{d}\", \"-\", \"a\", \"b\")")),
            // binary operators with matching
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or",
                    "unless", "atan2", "== bool", "> bool",
                ]),
                prop::sample::select(vec![
                    "",
                    "on(a)",
                    "ignoring(b)",
                    "on(a) group_left",
                    "on(a) group_right",
                    "ignoring(a, b) group_left(b)",
                    "on()",
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, m, b)| format!("({a}) {op} {m} ({b})")),
            // aggregations
            (
                prop::sample::select(vec![
                    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
                ]),
                prop::sample::select(vec![
                    "",
                    " by (a)",
                    " without (b)",
                    " by ()",
                    " by (__name__)"
                ]),
                inner.clone()
            )
                .prop_map(|(op, g, e)| format!("{op}{g} ({e})")),
            (
                prop::sample::select(vec!["topk", "bottomk", "quantile"]),
                number(),
                prop::sample::select(vec!["", " by (a)"]),
                inner.clone()
            )
                .prop_map(|(op, k, g, e)| format!("{op}{g} ({k}, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.prop_map(|e| format!("({e})")),
        ]
    })
}

fn eval_all(text: &str, ts: i64, step: i64) {
    let Ok(expr) = eval::parse(text) else {
        return;
    };
    if eval::check(&expr).is_err() {
        return;
    }
    let ev = Evaluator::new(small_store(), ts).with_subquery_step(step);
    let _ = ev.eval(&expr);
    let _ = ev.eval_instant(&expr);
}

/// PromQL-ish tokens: what a hostile query is made of (parse and check only: an
/// evaluation of arbitrary ranges could legitimately take very long until the query
/// limits land).
const PROMQL_TOKENS: &[&str] = &[
    "m",
    "c_total",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    "=",
    "!=",
    "=~",
    "!~",
    "\"x\"",
    "\"(\"",
    "a",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "@",
    "start()",
    "end()",
    "5m",
    "0s",
    "1y",
    "99999999999y",
    "-1m",
    "1e308",
    "NaN",
    "Inf",
    "-",
    "+",
    "*",
    "/",
    "%",
    "^",
    "==",
    ">",
    "and",
    "or",
    "unless",
    "atan2",
    "sum",
    "topk",
    "count_values",
    "rate",
    "label_replace",
    "histogram_quantile",
    "holt_winters",
    "vector",
    "scalar",
    "time",
    "absent",
    "quantile_over_time",
    "1",
    "0.5",
    "'",
    "`",
    "\\",
    "#",
    " ",
    "\n",
    "é",
    "__name__",
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn promql_generated_eval_never_panics(
        text in promql(),
        ts in prop::sample::select(vec![
            0i64, 15_000, 299_999, 300_000, 600_000, 900_000, -60_000, 1 << 53, -1 << 53,
        ]),
        step in prop::sample::select(vec![15_000i64, 30_000, 60_000]),
    ) {
        eval_all(&text, ts, step);
    }

    /// Evaluation times at the ends of `i64` (the query API turns `time=-1e300` into
    /// `i64::MIN`): see `eval_at_extreme_timestamp_does_not_overflow`.
    #[test]

    fn promql_extreme_eval_times_never_panic(
        text in promql(),
        ts in prop::sample::select(vec![i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1]),
    ) {
        eval_all(&text, ts, 15_000);
    }

    #[test]
    fn promql_token_soup_parse_and_check_never_panic(
        toks in prop::collection::vec(prop::sample::select(PROMQL_TOKENS), 0..24),
    ) {
        let text = toks.concat();
        if let Ok(e) = eval::parse(&text) {
            let _ = eval::check(&e);
        }
    }

    #[test]
    fn promql_arbitrary_text_parse_never_panics(text in "\\PC{0,64}") {
        if let Ok(e) = eval::parse(&text) {
            let _ = eval::check(&e);
        }
    }
}

// ---------------------------------------------------------------------------------
// Go templates
// ---------------------------------------------------------------------------------

fn template_operand() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "$value",
        "$labels",
        "$labels.a",
        "$labels.nope",
        "$labels.a.b",
        "$externalLabels.env",
        "$externalURL",
        ".Value",
        ".Labels.a",
        ".Labels",
        ".ExternalLabels",
        ".ExternalURL",
        ".",
        ".Nope",
        "$nope",
        "\"s\"",
        "\"\"",
        "`raw`",
        "\"a\\\"b\"",
        "1",
        "-1",
        "0",
        "1.5",
        "1e308",
        "-1e-308",
        "9223372036854775807",
        "NaN",
        "\"NaN\"",
        "\"1e3\"",
        "\" 2 \"",
        "true",
    ])
    .prop_map(str::to_string)
}

/// The renderer's own function list, plus names it does not know (Prometheus's `query`,
/// `first`, `index`), which must be load errors, not panics.
fn template_funcs() -> Vec<&'static str> {
    let mut f = sentinel_rules::template::FUNCS.to_vec();
    f.extend(["query", "first", "index"]);
    f
}

/// `printf` formats with small widths and precisions.
fn printf_format() -> impl Strategy<Value = String> {
    let spec = (
        prop::sample::select(vec!["", "-", "+", "0", " ", "#"]),
        prop::option::of(prop_oneof![
            8 => 0u64..40,
            1 => prop::sample::select(vec![65536u64, 1_000_000_000]),
        ]),
        // Mostly small precisions, sometimes past what Rust's formatter accepts (u16).
        prop::option::of(prop_oneof![
            8 => 0u64..30,
            1 => prop::sample::select(vec![1000u64, 65534, 65535, 65536, 100_000, 1 << 32]),
        ]),
        prop::sample::select(vec!['s', 'v', 'd', 'f', 'F', 'g', 'e', 'q', '%', 'x', 'T']),
    )
        .prop_map(|(flag, w, p, verb)| {
            let mut s = format!("%{flag}");
            if let Some(w) = w {
                s.push_str(&w.to_string());
            }
            if let Some(p) = p {
                s.push_str(&format!(".{p}"));
            }
            s.push(verb);
            s
        });
    prop::collection::vec(
        prop_oneof![
            spec,
            prop::sample::select(vec!["x", " ", "%", "é"]).prop_map(str::to_string)
        ],
        0..4,
    )
    .prop_map(|v| format!("\"{}\"", v.concat()))
}

fn template_number() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "$value", ".Value", "1.5", "-0.0", "1e308", "NaN", "7", "-3",
    ])
}

fn template_pipeline() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![template_operand(), printf_format()];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                prop::sample::select(template_funcs()),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(f, args)| format!("{f} {}", args.join(" "))),
            (printf_format(), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(f, args)| format!("printf {f} {}", args.join(" "))),
            (printf_format(), template_number()).prop_map(|(f, n)| format!("printf {f} {n}")),
            (inner.clone(), prop::sample::select(template_funcs()))
                .prop_map(|(a, f)| format!("{a} | {f}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => template_pipeline().prop_map(|p| format!("{{{{ {p} }}}}")),
        1 => template_pipeline().prop_map(|p| format!("{{{{- {p} -}}}}")),
        1 => template_pipeline().prop_map(|p| format!("{{{{ if {p} }}}}")),
        1 => Just("{{ else }}".to_string()),
        1 => template_pipeline().prop_map(|p| format!("{{{{ else if {p} }}}}")),
        1 => Just("{{ end }}".to_string()),
        1 => Just("{{/* c */}}".to_string()),
        2 => prop::sample::select(vec!["text ", "{{", "}}", "{", "}", " ", "\n", "é", "{{-", "-}}"])
            .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

fn template_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e-320,
            9.2e9,
            -9.3e9,
            1.7e9,
            0.5,
        ]),
    ]
}

fn template_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a", "b", "instance", "job", "le"]).prop_map(str::to_string),
        prop::sample::select(vec![
            "x",
            "",
            "host:9100",
            "[::1]:80",
            "a.b.c:1",
            "10.0.0.1",
            "1e3",
            "é",
            "{{ $value }}",
            "%d",
        ])
        .prop_map(str::to_string),
        0..4,
    )
}

fn run_template(text: &str, labels: &BTreeMap<String, String>, value: f64) {
    let ext: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
    let data = TemplateData {
        labels,
        external_labels: &ext,
        external_url: "http://sentinel:9188",
        value,
    };
    if let Ok(t) = Template::parse(text) {
        let _ = t.execute(&data);
    }
    let _ = expand(text, &data, "fuzz");
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn template_generated_never_panics(
        text in template_text(),
        labels in template_labels(),
        value in template_value(),
    ) {
        run_template(&text, &labels, value);
    }

    #[test]
    fn template_arbitrary_text_never_panics(
        text in "(\\PC|\\{\\{|\\}\\}|\\$|\\||[ .\"`()-])*",
        labels in template_labels(),
        value in template_value(),
    ) {
        run_template(&text, &labels, value);
    }
}

// ---------------------------------------------------------------------------------
// Crashes found, as named regression tests
// ---------------------------------------------------------------------------------

fn render(text: &str, value: f64) -> String {
    let labels = BTreeMap::new();
    let ext = BTreeMap::new();
    let data = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "",
        value,
    };
    Template::parse(text)
        .expect("template parses")
        .execute(&data)
        .expect("template executes")
}

/// Found by `template_generated_never_panics`: Rust's float formatter asserts
/// `ndigits > 0` for `{:.65535e}` and refuses precisions past `u16` ("Formatting
/// argument out of range"); `printf` passed the template's precision straight through.
#[test]
fn printf_precision_past_u16_does_not_panic() {
    for (t, v) in [
        ("{{- printf \"%.65535e\" $value -}}", 0.0),
        ("{{ printf \"%.70000f\" 1.5 }}", 0.0),
        ("{{ printf \"%.65536g\" $value }}", 2.5),
        ("{{ $value | printf \"%.4294967296e\" }}", -1.0),
    ] {
        let out = render(t, v);
        assert!(out.len() <= 4200, "{t}: {} bytes", out.len());
    }
    assert_eq!(sentinel_base::text::go_g(1.5, 70_000).len(), 3);
}

/// A width is allocated as padding: `%1000000000s` must not try to allocate a gigabyte.
#[test]
fn printf_huge_width_is_clamped() {
    let out = render("{{ printf \"%1000000000s\" \"x\" }}", 0.0);
    assert!(out.len() <= 4096, "{} bytes", out.len());
    assert!(out.ends_with('x'));
    assert_eq!(
        render("{{ printf \"%5s|%-3d|\" \"ab\" 7 }}", 0.0),
        "   ab|7  |"
    );
}

/// Found by `promql_generated_eval_never_panics` with an evaluation time of `i64::MIN`
/// (what `GET /api/v1/query?time=-1e300` evaluates at): `maxt - range` overflows in
/// `Evaluator::matrix_selector` (a panic in debug builds, a wrapped window in release).
#[test]

fn eval_at_extreme_timestamp_does_not_overflow() {
    for (q, ts) in [
        ("-(rate(m[15s]))", i64::MIN),
        ("m", i64::MIN),
        ("max_over_time(m[1m:15s])", i64::MIN),
        ("m offset -5m", i64::MAX),
        ("rate(m[5m] offset -1m)", i64::MAX),
    ] {
        let e = eval::parse(q).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = Evaluator::new(small_store(), ts).eval(&e);
        }));
        assert!(r.is_ok(), "{q} at {ts} panicked");
    }
}

/// Found by `template_generated_never_panics` (20 000 cases): `printf "%e"` of NaN or an
/// infinity panicked on `expect("exponent present")`; Go prints `NaN`, `+Inf`, `-Inf`.
#[test]
fn printf_e_of_nan_and_inf_does_not_panic() {
    assert_eq!(render("{{- printf \"%e\" $value -}}", f64::NAN), "NaN");
    assert_eq!(
        render("{{ printf \"%.2e\" $value }}", f64::INFINITY),
        "+Inf"
    );
    assert_eq!(
        render("{{ $value | printf \"%e\" }}", f64::NEG_INFINITY),
        "-Inf"
    );
    assert_eq!(render("{{ printf \"%e\" 1234.5 }}", 0.0), "1.234500e+03");
}
