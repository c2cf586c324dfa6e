//! The one float formatter of the workspace. Every place that prints an `f64` the way a
//! Go program would (the exposition encoders, PromQL's `label_replace` of a value, the
//! query API, alert templates, `promtool test rules` output, the status page) calls
//! into this file, so a rounding or special-value rule is fixed once.

/// Precisions and widths are clamped to this: Rust's formatter panics on precisions
/// past `u16`, and a huge width would allocate without bound.
pub const MAX_FMT_WIDTH: usize = 4096;

/// Go's spelling of the values that have no digits: `NaN`, `+Inf`, `-Inf`.
fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(v, verb, prec, 64)` for the verbs `e`, `E`, `f`, `g`, `G`;
/// a negative `prec` means the shortest representation that reads back as `v`.
/// Any other verb is treated as `g`.
pub fn format_float(v: f64, verb: char, prec: i32) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let prec = prec.min(MAX_FMT_WIDTH as i32);
    match verb {
        'f' | 'F' => {
            if prec < 0 {
                format!("{v}")
            } else {
                format!("{:.*}", prec as usize, v)
            }
        }
        'e' | 'E' => {
            let s = if prec < 0 {
                format!("{v:e}")
            } else {
                format!("{:.*e}", prec as usize, v)
            };
            let (mant, exp) = s.split_once('e').expect("{:e} always has an exponent");
            let exp: i32 = exp.parse().expect("exponent is an integer");
            go_exponent(mant, if verb == 'E' { 'E' } else { 'e' }, exp)
        }
        'G' => shortest_or_precise(v, prec, 'E'),
        _ => shortest_or_precise(v, prec, 'e'),
    }
}

/// Mantissa, the exponent letter, a sign and at least two exponent digits (`1e+06`).
fn go_exponent(mant: &str, letter: char, exp: i32) -> String {
    format!(
        "{mant}{letter}{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// Go's `%g` (`letter` `e`) and `%G` (`E`).
fn shortest_or_precise(v: f64, prec: i32, letter: char) -> String {
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
        let mut mant = digits[..1].to_string();
        if nd > 1 {
            mant.push('.');
            mant.push_str(&digits[1..]);
        }
        out.push_str(&go_exponent(&mant, letter, exp));
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

/// Go's `%g` with a precision (`-1`: shortest, as `%v` and `fmt.Sprint` print floats).
pub fn go_g(v: f64, prec: i32) -> String {
    format_float(v, 'g', prec)
}

/// A sample value in the exposition formats: integral values below 1e15 without a
/// fraction or exponent (`1234567`, not Go's `1.234567e+06`), very large and very small
/// magnitudes with an exponent in the short spelling every Prometheus parser reads
/// (`1.5e20`, `2e-9`), everything else in shortest fixed notation, and `NaN`, `+Inf`,
/// `-Inf` as Go prints them. Negative zero prints as `0`.
pub fn format_exposition(v: f64) -> String {
    if let Some(s) = special(v) {
        s.to_string()
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Adding +0 turns -0 into 0.
        format_float(v + 0.0, 'f', -1)
    } else if v.abs() >= 1e15 || (v != 0.0 && v.abs() < 1e-6) {
        format!("{v:e}")
    } else {
        format_float(v, 'f', -1)
    }
}

/// A value for people to read: at most `decimals` digits after the point, trailing
/// zeros (and a bare point) dropped, `NaN`, `+Inf`, `-Inf` as Go prints them.
pub fn format_trimmed(v: f64, decimals: usize) -> String {
    let s = format_float(v, 'f', decimals.min(MAX_FMT_WIDTH) as i32);
    if special(v).is_some() || !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_matches_go_fmt() {
        // Go: fmt.Sprint(0.1) "0.1", 1e6 "1e+06", 123456 "123456", 1e-5 "1e-05", 1e20 "1e+20"
        assert_eq!(go_g(0.1, -1), "0.1");
        assert_eq!(go_g(1e6, -1), "1e+06");
        assert_eq!(go_g(123456.0, -1), "123456");
        assert_eq!(go_g(1234567.0, -1), "1.234567e+06");
        assert_eq!(go_g(1e-5, -1), "1e-05");
        assert_eq!(go_g(0.0001, -1), "0.0001");
        assert_eq!(go_g(1e20, -1), "1e+20");
        assert_eq!(go_g(1234.5678, 4), "1235");
        assert_eq!(go_g(12345.0, 4), "1.234e+04");
        assert_eq!(go_g(0.5, 4), "0.5");
        assert_eq!(go_g(-0.0, -1), "-0");
        assert_eq!(format_float(1234567.0, 'G', -1), "1.234567E+06");
    }

    #[test]
    fn e_and_f_match_strconv() {
        assert_eq!(format_float(1.0, 'E', -1), "1E+00");
        assert_eq!(format_float(0.25, 'E', -1), "2.5E-01");
        assert_eq!(format_float(0.25, 'e', 3), "2.500e-01");
        assert_eq!(format_float(1e300, 'e', -1), "1e+300");
        assert_eq!(format_float(0.1, 'f', -1), "0.1");
        assert_eq!(format_float(1e20, 'f', -1), "100000000000000000000");
        assert_eq!(format_float(0.125, 'f', 2), "0.12");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for verb in ['e', 'E', 'f', 'g', 'G'] {
                assert_eq!(format_float(v, verb, 3), special(v).unwrap());
            }
        }
    }

    #[test]
    fn huge_precisions_are_clamped_not_a_panic() {
        assert_eq!(
            format_float(0.5, 'f', i32::MAX).len(),
            2 + MAX_FMT_WIDTH,
            "0. and the clamped digits"
        );
        assert!(format_float(0.5, 'e', i32::MAX).ends_with("e-01"));
        assert!(go_g(0.5, i32::MAX).starts_with("0.5"));
    }

    #[test]
    fn exposition_values_keep_their_spelling() {
        assert_eq!(format_exposition(1.0), "1");
        assert_eq!(format_exposition(-0.0), "0");
        assert_eq!(format_exposition(1234567.0), "1234567");
        assert_eq!(format_exposition(0.25), "0.25");
        assert_eq!(format_exposition(1.5e20), "1.5e20");
        assert_eq!(format_exposition(2e-9), "2e-9");
        assert_eq!(format_exposition(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn trimmed_values_read_well() {
        assert_eq!(format_trimmed(1.0, 6), "1");
        assert_eq!(format_trimmed(0.125, 6), "0.125");
        assert_eq!(format_trimmed(0.1234567, 6), "0.123457");
        assert_eq!(format_trimmed(1e20, 6), "100000000000000000000");
        assert_eq!(format_trimmed(f64::NAN, 6), "NaN");
        assert_eq!(format_trimmed(f64::INFINITY, 6), "+Inf");
        assert_eq!(format_trimmed(-2.5, 0), "-2");
    }
}
