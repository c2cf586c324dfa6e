//! The Go `text/template` subset that alert labels and annotations use in practice:
//! `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`, `{{ $externalURL }}`,
//! `{{ .Labels.x }}`, `{{ .Value }}`, string/number literals, comments, `{{- -}}` trim
//! markers, `{{ if }} / {{ else if }} / {{ else }} / {{ end }}`, and function calls and
//! pipes into the functions of [`FUNCS`] (comparisons, `and`/`or`/`not`, `match`,
//! `reReplaceAll`, the `humanize*` family, `printf`, `title`, `toUpper`, `toLower`, ...).
//! Output formatting follows Go's `fmt` (`%v` of a float is `%g` shortest; the emulation
//! lives in [`sentinel_base::text`]), so expanded text matches what Prometheus produces.
//! Templates are parsed when rules load; anything outside the subset (`range`, `with`,
//! `define`, `query`, an unknown function or variable, ...) is a load error.

use sentinel_base::text::{go_g, sprintf, FmtArg};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Var(String, Vec<String>),
    Dot(Vec<String>),
    Str(String),
    Num(f64),
    Int(i64),
    Func(String, Vec<Operand>),
    Pipe(Box<Pipeline>),
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline(Vec<Operand>);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    /// `{{ if P }}…{{ else if Q }}…{{ else }}…{{ end }}` (else-if nests as an If).
    If(Pipeline, Vec<Node>, Vec<Node>),
}

/// A lexed item before the tree is built.
enum Item {
    Node(Node),
    If(Pipeline),
    ElseIf(Pipeline),
    Else,
    End,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// The data a template sees.
pub struct TemplateData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

/// Every function a template may call; any other name is a load error.
pub const FUNCS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "reReplaceAll",
    "match",
    "stripPort",
    "stripDomain",
    "toTime",
    "len",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "title",
    "toUpper",
    "toLower",
];

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
}

impl Val {
    /// Go template truth: false, 0, "" and empty maps are false.
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Num(n) => *n != 0.0,
            Val::Int(i) => *i != 0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
        }
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut nodes: Vec<Item> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let mut before = &rest[..start];
            let mut inner_start = start + 2;
            if rest[inner_start..].starts_with("- ")
                || rest[inner_start..].starts_with("-\t")
                || rest[inner_start..].starts_with("-\n")
            {
                before = before.trim_end();
                inner_start += 1;
            }
            let Some(end_rel) = rest[inner_start..].find("}}") else {
                return Err(TemplateError("unclosed action".into()));
            };
            let mut inner = &rest[inner_start..inner_start + end_rel];
            let mut after = &rest[inner_start + end_rel + 2..];
            if inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-") {
                inner = &inner[..inner.len() - 1];
                after = after.trim_start();
            }
            if !before.is_empty() {
                nodes.push(Item::Node(Node::Text(before.to_string())));
            }
            let inner = inner.trim();
            if inner.starts_with("/*") {
                // a comment
            } else {
                let toks = tokenize(inner)?;
                let pipeline = |toks: &[Tok]| -> Result<Pipeline, TemplateError> {
                    let mut pos = 0;
                    let p = parse_pipeline(toks, &mut pos)?;
                    if pos != toks.len() {
                        return Err(TemplateError(format!(
                            "unexpected {:?} in action",
                            toks[pos]
                        )));
                    }
                    Ok(p)
                };
                let kw = |i: usize, w: &str| matches!(toks.get(i), Some(Tok::Ident(x)) if x == w);
                let item = if kw(0, "if") {
                    Item::If(pipeline(&toks[1..])?)
                } else if kw(0, "else") && kw(1, "if") {
                    Item::ElseIf(pipeline(&toks[2..])?)
                } else if kw(0, "else") && toks.len() == 1 {
                    Item::Else
                } else if kw(0, "end") && toks.len() == 1 {
                    Item::End
                } else {
                    Item::Node(Node::Action(pipeline(&toks)?))
                };
                nodes.push(item);
            }
            rest = after;
        }
        if !rest.is_empty() {
            nodes.push(Item::Node(Node::Text(rest.to_string())));
        }
        let mut items = nodes.into_iter().peekable();
        let (tree, stop) = build(&mut items)?;
        if stop.is_some() {
            return Err(TemplateError("unexpected {{end}} or {{else}}".into()));
        }
        Ok(Template { nodes: tree })
    }

    pub fn execute(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let mut out = String::new();
        exec_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

fn exec_nodes(nodes: &[Node], data: &TemplateData, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, data)?;
                out.push_str(&print_val(&v));
            }
            Node::If(cond, then, otherwise) => {
                if eval_pipeline(cond, data)?.truthy() {
                    exec_nodes(then, data, out)?;
                } else {
                    exec_nodes(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

enum Stop {
    Else,
    ElseIf(Pipeline),
    End,
}

/// Builds the node tree up to the next `else`/`end` (returned as the stop).
fn build(
    items: &mut std::iter::Peekable<std::vec::IntoIter<Item>>,
) -> Result<(Vec<Node>, Option<Stop>), TemplateError> {
    let mut out = Vec::new();
    while let Some(item) = items.next() {
        match item {
            Item::Node(n) => out.push(n),
            Item::If(cond) => out.push(build_if(cond, items)?),
            Item::Else => return Ok((out, Some(Stop::Else))),
            Item::ElseIf(p) => return Ok((out, Some(Stop::ElseIf(p)))),
            Item::End => return Ok((out, Some(Stop::End))),
        }
    }
    Ok((out, None))
}

fn build_if(
    cond: Pipeline,
    items: &mut std::iter::Peekable<std::vec::IntoIter<Item>>,
) -> Result<Node, TemplateError> {
    let (then, stop) = build(items)?;
    let otherwise = match stop {
        Some(Stop::End) => Vec::new(),
        Some(Stop::Else) => {
            let (e, stop) = build(items)?;
            if !matches!(stop, Some(Stop::End)) {
                return Err(TemplateError("missing {{end}} after {{else}}".into()));
            }
            e
        }
        Some(Stop::ElseIf(p)) => vec![build_if(p, items)?],
        None => return Err(TemplateError("unexpected EOF: missing {{end}}".into())),
    };
    Ok(Node::If(cond, then, otherwise))
}

/// Expands a template string; errors become Prometheus's inline error text.
pub fn expand(text: &str, data: &TemplateData, name: &str) -> String {
    match Template::parse(text).and_then(|t| t.execute(data)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: error executing template {name}: {e}>"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Ident(String),
    Var(String, Vec<String>),
    Dot(Vec<String>),
    Str(String),
    Num(f64),
    Pipe,
    LParen,
    RParen,
}

fn fields(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn tokenize(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let word = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && (b[*i].is_alphanumeric() || b[*i] == '_' || b[*i] == '.') {
            *i += 1;
        }
        b[st..*i].iter().collect::<String>()
    };
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push(Tok::Pipe);
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == '$' {
            i += 1;
            let w = word(&mut i);
            let mut parts = w.splitn(2, '.');
            let name = parts.next().unwrap_or("").to_string();
            let f = parts.next().map(fields).unwrap_or_default();
            out.push(Tok::Var(name, f));
        } else if c == '.' {
            let w = word(&mut i);
            out.push(Tok::Dot(fields(&w)));
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                if i >= b.len() {
                    return Err(TemplateError("unterminated quoted string".into()));
                }
                match b[i] {
                    '"' => break,
                    '\\' if i + 1 < b.len() => {
                        i += 1;
                        s.push(match b[i] {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            o => o,
                        });
                    }
                    o => s.push(o),
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '`' {
            i += 1;
            let st = i;
            while i < b.len() && b[i] != '`' {
                i += 1;
            }
            if i >= b.len() {
                return Err(TemplateError("unterminated raw quoted string".into()));
            }
            out.push(Tok::Str(b[st..i].iter().collect()));
            i += 1;
        } else if c.is_ascii_digit() || c == '-' || c == '+' {
            let st = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == '.'
                    || ((b[i] == '-' || b[i] == '+') && matches!(b[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let t: String = b[st..i].iter().collect();
            if t.trim_start_matches(['-', '+'])
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                let n: i64 = t
                    .parse()
                    .map_err(|_| TemplateError(format!("bad number syntax: {t:?}")))?;
                out.push(Tok::Int(n));
            } else {
                let n: f64 = t
                    .parse()
                    .map_err(|_| TemplateError(format!("bad number syntax: {t:?}")))?;
                out.push(Tok::Num(n));
            }
        } else if c.is_alphabetic() || c == '_' {
            let w = word(&mut i);
            out.push(Tok::Ident(w));
        } else {
            return Err(TemplateError(format!("unexpected {c:?} in command")));
        }
    }
    Ok(out)
}

fn parse_pipeline(t: &[Tok], pos: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut cmds = Vec::new();
    loop {
        let mut args = Vec::new();
        while *pos < t.len() && t[*pos] != Tok::Pipe && t[*pos] != Tok::RParen {
            args.push(parse_operand(t, pos)?);
        }
        if args.is_empty() {
            return Err(TemplateError("missing value for command".into()));
        }
        let cmd = match args.remove(0) {
            Operand::Func(name, mut a) if a.is_empty() => {
                a.extend(args);
                Operand::Func(name, a)
            }
            other if args.is_empty() => other,
            _ => return Err(TemplateError("can't give argument to non-function".into())),
        };
        cmds.push(cmd);
        if *pos < t.len() && t[*pos] == Tok::Pipe {
            *pos += 1;
            continue;
        }
        break;
    }
    Ok(Pipeline(cmds))
}

fn parse_operand(t: &[Tok], pos: &mut usize) -> Result<Operand, TemplateError> {
    let tok = t[*pos].clone();
    *pos += 1;
    Ok(match tok {
        Tok::Var(n, f) => {
            if !["labels", "value", "externalLabels", "externalURL"].contains(&n.as_str()) {
                return Err(TemplateError(format!("undefined variable \"${n}\"")));
            }
            Operand::Var(n, f)
        }
        Tok::Dot(f) => Operand::Dot(f),
        Tok::Str(s) => Operand::Str(s),
        Tok::Num(n) => Operand::Num(n),
        Tok::Int(n) => Operand::Int(n),
        Tok::Ident(name) => {
            if !FUNCS.contains(&name.as_str()) {
                return Err(TemplateError(format!("function \"{name}\" not defined")));
            }
            Operand::Func(name, Vec::new())
        }
        Tok::LParen => {
            let p = parse_pipeline(t, pos)?;
            if *pos >= t.len() || t[*pos] != Tok::RParen {
                return Err(TemplateError("unclosed left paren".into()));
            }
            *pos += 1;
            Operand::Pipe(Box::new(p))
        }
        other => return Err(TemplateError(format!("unexpected {other:?} in operand"))),
    })
}

fn field_of(v: Val, f: &[String]) -> Result<Val, TemplateError> {
    let mut v = v;
    for name in f {
        v = match v {
            Val::Map(m) => Val::Str(m.get(name).cloned().unwrap_or_default()),
            _ => return Err(TemplateError(format!("can't evaluate field {name}"))),
        };
    }
    Ok(v)
}

fn eval_operand(o: &Operand, d: &TemplateData, piped: Option<Val>) -> Result<Val, TemplateError> {
    match o {
        Operand::Var(n, f) => {
            let base = match n.as_str() {
                "labels" => Val::Map(d.labels.clone()),
                "externalLabels" => Val::Map(d.external_labels.clone()),
                "externalURL" => Val::Str(d.external_url.to_string()),
                _ => Val::Num(d.value),
            };
            field_of(base, f)
        }
        Operand::Dot(f) => {
            let Some((first, rest)) = f.split_first() else {
                return Err(TemplateError("cannot print the whole data".into()));
            };
            let base = match first.as_str() {
                "Labels" => Val::Map(d.labels.clone()),
                "ExternalLabels" => Val::Map(d.external_labels.clone()),
                "ExternalURL" => Val::Str(d.external_url.to_string()),
                "Value" => Val::Num(d.value),
                other => return Err(TemplateError(format!("can't evaluate field {other}"))),
            };
            field_of(base, rest)
        }
        Operand::Str(s) => Ok(Val::Str(s.clone())),
        Operand::Num(n) => Ok(Val::Num(*n)),
        Operand::Int(n) => Ok(Val::Int(*n)),
        Operand::Pipe(p) => eval_pipeline(p, d),
        Operand::Func(name, args) => {
            let mut vals = Vec::new();
            for a in args {
                vals.push(eval_operand(a, d, None)?);
            }
            if let Some(p) = piped {
                vals.push(p);
            }
            call(name, vals)
        }
    }
}

fn eval_pipeline(p: &Pipeline, d: &TemplateData) -> Result<Val, TemplateError> {
    let mut cur: Option<Val> = None;
    for (i, cmd) in p.0.iter().enumerate() {
        if i > 0 && !matches!(cmd, Operand::Func(..)) {
            return Err(TemplateError("non-function in pipeline".into()));
        }
        cur = Some(eval_operand(cmd, d, cur.take())?);
    }
    cur.ok_or_else(|| TemplateError("empty pipeline".into()))
}

fn to_float(v: &Val) -> Result<f64, TemplateError> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => s.trim().parse().map_err(|_| {
            TemplateError(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
        }),
        Val::Int(i) => Ok(*i as f64),
        Val::Bool(_) | Val::Map(_) => {
            Err(TemplateError(format!("can't convert {} to float", kind(v))))
        }
    }
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Str(_) => "string",
        Val::Num(_) => "float64",
        Val::Int(_) => "int",
        Val::Bool(_) => "bool",
        Val::Map(_) => "map[string]string",
    }
}

/// text/template's eq/lt/...: operands of different basic kinds are an error.
fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, TemplateError> {
    use std::cmp::Ordering;
    let bad = || TemplateError("incompatible types for comparison".into());
    Ok(match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Less),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Str(x), Val::Str(y)) => x.cmp(y),
        (Val::Bool(x), Val::Bool(y)) if x == y => Ordering::Equal,
        (Val::Bool(_), Val::Bool(_)) => Ordering::Less,
        _ => return Err(bad()),
    })
}

fn to_str(v: &Val) -> String {
    print_val(v)
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
    let two = |args: &[Val]| -> Result<(Val, Val), TemplateError> {
        if args.len() != 2 {
            return Err(TemplateError(format!(
                "wrong number of args for {name}: want 2 got {}",
                args.len()
            )));
        }
        Ok((args[0].clone(), args[1].clone()))
    };
    use std::cmp::Ordering::*;
    match name {
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err(TemplateError("missing argument for comparison".into()));
            };
            for r in rest {
                if compare(first, r)? == Equal {
                    return Ok(Val::Bool(true));
                }
            }
            return Ok(Val::Bool(false));
        }
        "ne" => {
            let (a, b) = two(&args)?;
            return Ok(Val::Bool(compare(&a, &b)? != Equal));
        }
        "lt" | "le" | "gt" | "ge" => {
            let (a, b) = two(&args)?;
            if matches!(a, Val::Bool(_)) {
                return Err(TemplateError("invalid type for comparison".into()));
            }
            let o = compare(&a, &b)?;
            let nan = matches!((&a, &b), (Val::Num(x), Val::Num(y)) if x.is_nan() || y.is_nan());
            return Ok(Val::Bool(
                !nan && match name {
                    "lt" => o == Less,
                    "le" => o != Greater,
                    "gt" => o == Greater,
                    _ => o != Less,
                },
            ));
        }
        "and" => {
            for a in &args {
                if !a.truthy() {
                    return Ok(a.clone());
                }
            }
            return args
                .last()
                .cloned()
                .ok_or_else(|| TemplateError("wrong number of args for and".into()));
        }
        "or" => {
            for a in &args {
                if a.truthy() {
                    return Ok(a.clone());
                }
            }
            return args
                .last()
                .cloned()
                .ok_or_else(|| TemplateError("wrong number of args for or".into()));
        }
        "not" => {
            if args.len() != 1 {
                return Err(TemplateError("wrong number of args for not: want 1".into()));
            }
            return Ok(Val::Bool(!args[0].truthy()));
        }
        "len" => {
            return match args.first() {
                Some(Val::Str(s)) => Ok(Val::Int(s.len() as i64)),
                Some(Val::Map(m)) => Ok(Val::Int(m.len() as i64)),
                _ => Err(TemplateError("len of unsupported type".into())),
            };
        }
        "match" => {
            let (re, text) = two(&args)?;
            let re = regex::Regex::new(&to_str(&re)).map_err(|e| TemplateError(e.to_string()))?;
            return Ok(Val::Bool(re.is_match(&to_str(&text))));
        }
        "reReplaceAll" => {
            if args.len() != 3 {
                return Err(TemplateError(
                    "wrong number of args for reReplaceAll: want 3".into(),
                ));
            }
            let re =
                regex::Regex::new(&to_str(&args[0])).map_err(|e| TemplateError(e.to_string()))?;
            return Ok(Val::Str(
                re.replace_all(&to_str(&args[2]), to_str(&args[1]).as_str())
                    .into_owned(),
            ));
        }
        _ => {}
    }
    let one = |args: &[Val]| -> Result<Val, TemplateError> {
        if args.len() != 1 {
            return Err(TemplateError(format!(
                "wrong number of args for {name}: want 1 got {}",
                args.len()
            )));
        }
        Ok(args[0].clone())
    };
    Ok(Val::Str(match name {
        "humanize" => humanize(to_float(&one(&args)?)?),
        "humanize1024" => humanize1024(to_float(&one(&args)?)?),
        "humanizeDuration" => humanize_duration(to_float(&one(&args)?)?),
        "humanizePercentage" => format!("{}%", go_g(to_float(&one(&args)?)? * 100.0, 4)),
        "humanizeTimestamp" => humanize_timestamp(to_float(&one(&args)?)?),
        "title" => title(&to_str(&one(&args)?)),
        "stripPort" => {
            let hp = to_str(&one(&args)?);
            split_host_port(&hp).map(|(h, _)| h).unwrap_or(hp)
        }
        "stripDomain" => {
            let hp = to_str(&one(&args)?);
            let (host, port) = split_host_port(&hp).unwrap_or((hp.clone(), String::new()));
            if host.parse::<std::net::IpAddr>().is_ok() {
                hp
            } else {
                let h = host.split('.').next().unwrap_or("").to_string();
                if port.is_empty() {
                    h
                } else if h.contains(':') {
                    format!("[{h}]:{port}")
                } else {
                    format!("{h}:{port}")
                }
            }
        }
        "toTime" => humanize_timestamp(to_float(&one(&args)?)?),
        "toUpper" => to_str(&one(&args)?).to_uppercase(),
        "toLower" => to_str(&one(&args)?).to_lowercase(),
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return Err(TemplateError("wrong number of args for printf".into()));
            };
            printf(&to_str(fmt), rest)
        }
        other => return Err(TemplateError(format!("function \"{other}\" not defined"))),
    }))
}

/// `net.SplitHostPort`, for the shapes instance labels take.
fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        return Some((h.to_string(), p.to_string()));
    }
    let (h, p) = s.rsplit_once(':')?;
    if h.contains(':') {
        return None;
    }
    Some((h.to_string(), p.to_string()))
}

fn print_val(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Num(n) => go_g(*n, -1),
        Val::Int(i) => i.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Map(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", go_g(v, 4));
    }
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    // floatToTime goes through model.Time: nanoseconds truncated to milliseconds.
    let ns = v * 1e9;
    if !(-9.2e18..=9.2e18).contains(&ns) {
        return go_g(v, 4);
    }
    let ms = (ns as i64) / 1_000_000;
    match chrono::DateTime::from_timestamp_millis(ms) {
        // Go's time.Time String(): "2006-01-02 15:04:05.999999999 -0700 MST".
        Some(t) => {
            let millis = ms.rem_euclid(1000);
            let frac = if millis == 0 {
                String::new()
            } else {
                format!(".{millis:03}").trim_end_matches('0').to_string()
            };
            format!("{}{} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"), frac)
        }
        None => go_g(v, 4),
    }
}

/// `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// Go's `fmt.Sprintf` on template values (see [`sentinel_base::text::sprintf`]).
fn printf(fmt: &str, args: &[Val]) -> String {
    let args: Vec<FmtArg<'_>> = args
        .iter()
        .map(|a| match a {
            Val::Str(s) => FmtArg::Str(s),
            Val::Num(f) => FmtArg::Float(*f),
            Val::Int(i) => FmtArg::Int(*i),
            other => FmtArg::Other {
                type_name: kind(other),
                text: to_str(other),
            },
        })
        .collect();
    sprintf(fmt, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &str, value: f64) -> String {
        let mut labels = BTreeMap::new();
        labels.insert("instance".to_string(), "gpu-01:9100".to_string());
        let ext = BTreeMap::new();
        let d = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://x",
            value,
        };
        Template::parse(t).unwrap().execute(&d).unwrap()
    }

    #[test]
    fn labels_value_and_pipes() {
        assert_eq!(
            run("{{ $labels.instance }} at {{ $value }}", 0.25),
            "gpu-01:9100 at 0.25"
        );
        assert_eq!(
            run("{{ .Labels.instance }} {{ .Value }}", 3.0),
            "gpu-01:9100 3"
        );
        assert_eq!(run("{{ $value | humanizePercentage }}", 0.0712), "7.12%");
        assert_eq!(run("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(run("{{ humanize1024 $value }}", 2048.0), "2ki");
        assert_eq!(run("{{ $value | humanizeDuration }}", 3725.0), "1h 2m 5s");
        assert_eq!(run(r#"{{ printf "%.2f" $value }}"#, 0.12345), "0.12");
        assert_eq!(run("{{ $labels.missing }}x", 0.0), "x");
        assert_eq!(run("{{ \"gpu\" | toUpper }}", 0.0), "GPU");
    }

    #[test]
    fn if_else_and_comparisons() {
        let t = "{{ if gt $value 0.5 }}high{{ else if gt $value 0.1 }}mid{{ else }}low{{ end }}";
        assert_eq!(run(t, 0.7), "high");
        assert_eq!(run(t, 0.2), "mid");
        assert_eq!(run(t, 0.0), "low");
        assert_eq!(run("{{ $labels.instance | stripPort }}", 0.0), "gpu-01");
        assert_eq!(
            run("{{ reReplaceAll \"-0.*\" \"\" $labels.instance }}", 0.0),
            "gpu"
        );
        // Go refuses to compare a float64 with an int.
        let d = BTreeMap::new();
        let data = TemplateData {
            labels: &d,
            external_labels: &d,
            external_url: "",
            value: 1.0,
        };
        assert!(Template::parse("{{ if gt $value 1 }}x{{ end }}")
            .unwrap()
            .execute(&data)
            .is_err());
    }

    #[test]
    fn unsupported_actions_fail_at_parse() {
        assert!(Template::parse("{{ range $labels }}x{{ end }}").is_err());
        assert!(Template::parse("{{ query \"up\" }}").is_err());
        assert!(Template::parse("{{ $nope }}").is_err());
    }
}
