//! `node_memory_*` from every line of `/proc/meminfo`, with node_exporter's name
//! mangling: `Active(anon)` → `Active_anon`; a line with a unit (always `kB`, meaning
//! KiB) is multiplied by 1024 and suffixed `_bytes`; a unitless line (`HugePages_Total`)
//! keeps its number and name. Gauges, except a key ending in `_total` (counter), which
//! is node_exporter's rule too. Parsed by hand because `procfs::Meminfo` has a fixed
//! set of fields and we want every line the kernel prints.

use super::ParseError;
use crate::metrics::MetricFamily;

/// Most lines we accept (the kernel prints about 60).
const MAX_LINES: usize = 1024;

/// (mangled key, value in base units) in file order. A malformed line is skipped;
/// a file with no usable line is an error.
pub fn parse_meminfo(text: &str) -> Result<Vec<(String, f64)>, ParseError> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in text.lines().take(MAX_LINES) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (key, value, unit) = match parts.as_slice() {
            [] => continue,
            [k, v] => (*k, *v, None),
            [k, v, u] => (*k, *v, Some(*u)),
            _ => continue,
        };
        let Some(key) = key.strip_suffix(':') else {
            continue;
        };
        let Ok(mut v) = value.parse::<f64>() else {
            continue;
        };
        let mut name = mangle(key);
        if unit.is_some() {
            v *= 1024.0;
            name.push_str("_bytes");
        }
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, v));
        }
    }
    if out.is_empty() {
        return Err(ParseError::Missing("meminfo lines"));
    }
    Ok(out)
}

/// `Active(anon)` → `Active_anon` (node_exporter's greedy `\((.*)\)` → `_$1`), and any
/// byte that cannot appear in a metric name becomes `_`.
fn mangle(key: &str) -> String {
    let key = match (key.find('('), key.rfind(')')) {
        (Some(open), Some(close)) if close > open => {
            format!(
                "{}_{}{}",
                &key[..open],
                &key[open + 1..close],
                &key[close + 1..]
            )
        }
        _ => key.to_string(),
    };
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn families(fields: &[(String, f64)]) -> Vec<MetricFamily> {
    fields
        .iter()
        .map(|(key, v)| {
            let name = format!("node_memory_{key}");
            let help = format!("Memory information field {key}.");
            let f = if key.ends_with("_total") {
                MetricFamily::counter(name, help)
            } else {
                MetricFamily::gauge(name, help)
            };
            f.with::<&str, &str>(&[], *v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangles_names_and_units_like_node_exporter() {
        let text = "MemTotal:       24684092 kB\n\
MemAvailable:   24151624 kB\n\
Active(anon):       1576 kB\n\
HugePages_Total:       0\n\
Hugepagesize:       2048 kB\n\
\n\
garbage line here now\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(
            m,
            vec![
                ("MemTotal_bytes".to_string(), 24_684_092.0 * 1024.0),
                ("MemAvailable_bytes".to_string(), 24_151_624.0 * 1024.0),
                ("Active_anon_bytes".to_string(), 1576.0 * 1024.0),
                ("HugePages_Total".to_string(), 0.0),
                ("Hugepagesize_bytes".to_string(), 2048.0 * 1024.0),
            ]
        );
        let f = families(&m);
        assert_eq!(f[0].name, "node_memory_MemTotal_bytes");
        assert_eq!(f[3].name, "node_memory_HugePages_Total");
        assert_eq!(f[3].kind, crate::metrics::MetricType::Gauge);
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(parse_meminfo("").is_err());
        assert_eq!(mangle("Weird(key)x"), "Weird_keyx");
        assert_eq!(mangle("a.b"), "a_b");
    }
}
