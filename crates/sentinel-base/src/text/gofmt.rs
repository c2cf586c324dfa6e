//! The subset of Go's `fmt.Sprintf` that alert templates call through `printf`:
//! `%s %v %d %f %F %g %e %q %%` with width, precision and `-` for left alignment. An
//! argument that does not fit its verb prints the way Go prints it (`%!d(string=x)`).

use super::float::{format_float, go_g, MAX_FMT_WIDTH};
use super::go_quote;

/// One `printf` argument, by its Go type.
#[derive(Debug, Clone, PartialEq)]
pub enum FmtArg<'a> {
    /// A Go `string`.
    Str(&'a str),
    /// A Go `float64`.
    Float(f64),
    /// A Go `int`.
    Int(i64),
    /// Any other type: its Go type name (`bool`, `map[string]string`) and its `%v` text.
    Other {
        type_name: &'static str,
        text: String,
    },
}

impl FmtArg<'_> {
    /// What `%v` prints.
    pub fn to_go_string(&self) -> String {
        match self {
            FmtArg::Str(s) => s.to_string(),
            FmtArg::Float(f) => go_g(*f, -1),
            FmtArg::Int(i) => i.to_string(),
            FmtArg::Other { text, .. } => text.clone(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            FmtArg::Str(_) => "string",
            FmtArg::Float(_) => "float64",
            FmtArg::Int(_) => "int",
            FmtArg::Other { type_name, .. } => type_name,
        }
    }
}

/// `fmt.Sprintf(format, args...)` for the verbs listed in the module doc. Widths and
/// precisions are clamped to [`MAX_FMT_WIDTH`].
pub fn sprintf(format: &str, args: &[FmtArg<'_>]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
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
        let prec: Option<usize> = spec
            .split_once('.')
            .and_then(|(_, p)| p.parse::<usize>().ok())
            .map(|p| p.min(MAX_FMT_WIDTH));
        let width: usize = spec
            .split('.')
            .next()
            .map(|w| w.trim_start_matches(['+', '-', '#', ' ', '0']))
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_FMT_WIDTH);
        let s = match (verb, arg) {
            ('v', _) => arg.to_go_string(),
            ('s', FmtArg::Str(s)) => s.to_string(),
            ('q', FmtArg::Str(s)) => go_quote(s),
            ('d', FmtArg::Int(i)) => i.to_string(),
            ('f' | 'F', FmtArg::Float(f)) => format_float(*f, 'f', prec.unwrap_or(6) as i32),
            ('g', FmtArg::Float(f)) => go_g(*f, prec.map(|p| p as i32).unwrap_or(-1)),
            // Go prints NaN, +Inf, -Inf for %e too.
            ('e', FmtArg::Float(f)) => format_float(*f, 'e', prec.unwrap_or(6) as i32),
            // Go prints a verb that does not fit the argument's type as %!verb(type=value).
            (verb, arg) => format!("%!{verb}({}={})", arg.type_name(), arg.to_go_string()),
        };
        let len = s.chars().count();
        if len < width {
            let pad = " ".repeat(width - len);
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

    #[test]
    fn verbs_match_go() {
        let f = FmtArg::Float;
        assert_eq!(sprintf("%.2f", &[f(0.12345)]), "0.12");
        assert_eq!(sprintf("%f", &[f(1.5)]), "1.500000");
        assert_eq!(sprintf("%e", &[f(1234.5)]), "1.234500e+03");
        assert_eq!(sprintf("%.1e", &[f(f64::INFINITY)]), "+Inf");
        assert_eq!(sprintf("%g|%v", &[f(1e6), f(0.5)]), "1e+06|0.5");
        assert_eq!(
            sprintf("%5s|%-4d|", &[FmtArg::Str("ab"), FmtArg::Int(7)]),
            "   ab|7   |"
        );
        assert_eq!(sprintf("%q", &[FmtArg::Str("a\"b")]), r#""a\"b""#);
        assert_eq!(sprintf("100%%", &[]), "100%");
    }

    #[test]
    fn misfits_print_like_go() {
        assert_eq!(sprintf("%d", &[FmtArg::Str("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%d", &[FmtArg::Float(0.5)]), "%!d(float64=0.5)");
        assert_eq!(sprintf("%s", &[FmtArg::Int(3)]), "%!s(int=3)");
        let b = FmtArg::Other {
            type_name: "bool",
            text: "true".into(),
        };
        assert_eq!(sprintf("%v %f", &[b.clone(), b]), "true %!f(bool=true)");
        assert_eq!(sprintf("%d", &[]), "%!d(MISSING)");
        assert_eq!(sprintf("%", &[]), "%!(NOVERB)");
    }

    #[test]
    fn huge_widths_and_precisions_are_clamped() {
        let s = sprintf("%999999999.999999999f", &[FmtArg::Float(1.0)]);
        assert!(s.len() <= 2 * MAX_FMT_WIDTH + 2, "{}", s.len());
    }
}
