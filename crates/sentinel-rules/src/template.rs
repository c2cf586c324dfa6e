//! The Go `text/template` subset that alert labels and annotations use in practice:
//! `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`, `{{ $externalURL }}`,
//! `{{ .Labels.x }}`, `{{ .Value }}`, string/number literals, function calls and pipes
//! into `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `humanizeTimestamp`, `printf`, `title`, `toUpper`, `toLower`. Output formatting
//! follows Go's `fmt` (`%v` of a float is `%g` shortest), so expanded text matches
//! what Prometheus produces. Templates are parsed when rules load; anything outside the
//! subset (`if`, `range`, `query`, ...) is a load error.

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
    Func(String, Vec<Operand>),
    Pipe(Box<Pipeline>),
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline(Vec<Operand>);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
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

const FUNCS: &[&str] = &[
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
    Map(BTreeMap<String, String>),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut nodes = Vec::new();
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
                nodes.push(Node::Text(before.to_string()));
            }
            let inner = inner.trim();
            if inner.starts_with("/*") {
                // a comment
            } else {
                let toks = tokenize(inner)?;
                let mut pos = 0;
                let p = parse_pipeline(&toks, &mut pos)?;
                if pos != toks.len() {
                    return Err(TemplateError(format!(
                        "unexpected {:?} in action",
                        toks[pos]
                    )));
                }
                nodes.push(Node::Action(p));
            }
            rest = after;
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template { nodes })
    }

    pub fn execute(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = eval_pipeline(p, data)?;
                    out.push_str(&print_val(&v));
                }
            }
        }
        Ok(out)
    }
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
            let n: f64 = t
                .parse()
                .map_err(|_| TemplateError(format!("bad number syntax: {t:?}")))?;
            out.push(Tok::Num(n));
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
        Val::Map(_) => Err(TemplateError("can't convert map to float".into())),
    }
}

fn to_str(v: &Val) -> String {
    print_val(v)
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
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

fn print_val(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Num(n) => go_g(*n, -1),
        Val::Map(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// Go's `%g` with a precision (`-1`: shortest representation, as `%v` prints floats).
pub fn go_g(v: f64, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Digits and decimal exponent, rounded to the precision (or shortest).
    let sci = if prec < 0 {
        format!("{v:e}")
    } else {
        format!("{:.*e}", (prec.max(1) - 1) as usize, v)
    };
    let (mant, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let nd = digits.len() as i32;
    // strconv's %g: shortest uses an exponent from 1e+06 on; a precision p from 10^p.
    let eprec = if prec < 0 {
        6
    } else {
        let p = prec.max(1);
        if p > nd && nd > exp {
            nd
        } else {
            p
        }
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in 0..(int_len - digits.len()) {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
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

/// A `fmt.Sprintf` subset: `%s %v %d %f %g %e %q %%` with width/precision.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let mut ai = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = String::new();
        while i < chars.len() && "+-# 0123456789.".contains(chars[i]) {
            spec.push(chars[i]);
            i += 1;
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        ai += 1;
        let prec: Option<usize> = spec.split_once('.').and_then(|(_, p)| p.parse().ok());
        let width: usize = spec
            .split('.')
            .next()
            .map(|w| w.trim_start_matches(['+', '-', '#', ' ', '0']))
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        // Go prints a verb that does not fit the argument's type as %!verb(type=value).
        let wrong = |verb: char| match arg {
            Val::Num(f) => format!("%!{verb}(float64={})", go_g(*f, -1)),
            other => format!("%!{verb}(string={})", to_str(other)),
        };
        let s = match (verb, arg) {
            ('v', _) => to_str(arg),
            ('s', Val::Str(s)) => s.clone(),
            ('q', Val::Str(s)) => crate::labels::go_quote(s),
            ('f' | 'F', Val::Num(f)) => format!("{:.*}", prec.unwrap_or(6), f),
            ('g', Val::Num(f)) => go_g(*f, prec.map(|p| p as i32).unwrap_or(-1)),
            ('e', Val::Num(f)) => {
                let s = format!("{:.*e}", prec.unwrap_or(6), f);
                let (m, e) = s.split_once('e').expect("exponent present");
                let e: i32 = e.parse().expect("integer exponent");
                format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            }
            (v, _) => wrong(v),
        };
        if s.chars().count() < width {
            let pad = " ".repeat(width - s.chars().count());
            if spec.starts_with('-') {
                out.push_str(&s);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(&s);
            }
        } else {
            out.push_str(&s);
        }
    }
    out
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
    fn go_formatting_matches_fmt() {
        // Go: fmt.Sprint(0.1) "0.1", 1e6 "1e+06", 123456 "123456", 1e-5 "1e-05", 1e20 "1e+20"
        assert_eq!(go_g(0.1, -1), "0.1");
        assert_eq!(go_g(1e6, -1), "1e+06");
        assert_eq!(go_g(123456.0, -1), "123456");
        assert_eq!(go_g(1234567.0, -1), "1.234567e+06");
        assert_eq!(go_g(1e-5, -1), "1e-05");
        assert_eq!(go_g(0.0001, -1), "0.0001");
        assert_eq!(go_g(1234.5678, 4), "1235");
        assert_eq!(go_g(12345.0, 4), "1.234e+04");
        assert_eq!(go_g(0.5, 4), "0.5");
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
    fn unsupported_actions_fail_at_parse() {
        assert!(Template::parse("{{ if $value }}x{{ end }}").is_err());
        assert!(Template::parse("{{ query \"up\" }}").is_err());
        assert!(Template::parse("{{ $nope }}").is_err());
    }
}
