//! `node_load1`, `node_load5`, `node_load15` from `/proc/loadavg`, as node_exporter's
//! loadavg collector reports them. Parsed by hand because `procfs::LoadAverage` keeps
//! the values as `f32`, which would print 0.32 as 0.3199999928474426.

use super::ParseError;
use crate::metrics::MetricFamily;

/// The 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], ParseError> {
    let mut it = text.split_whitespace();
    let mut out = [0.0; 3];
    for slot in &mut out {
        let f = it.next().ok_or(ParseError::FewerThanThreeFields)?;
        *slot = f.parse().map_err(|_| ParseError::bad("load value", f))?;
    }
    Ok(out)
}

pub fn families(load: [f64; 3]) -> Vec<MetricFamily> {
    [
        ("node_load1", "1m"),
        ("node_load5", "5m"),
        ("node_load15", "15m"),
    ]
    .iter()
    .zip(load)
    .map(|((name, span), v)| {
        MetricFamily::gauge(*name, format!("{span} load average.")).with::<&str, &str>(&[], v)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_averages() {
        assert_eq!(
            parse_loadavg("0.32 0.74 0.45 3/411 123456\n").unwrap(),
            [0.32, 0.74, 0.45]
        );
        assert!(parse_loadavg("0.32 0.74").is_err());
        assert!(parse_loadavg("a b c").is_err());
        let f = families([0.32, 0.74, 0.45]);
        assert_eq!(f[2].name, "node_load15");
        assert_eq!(f[2].samples[0].value, 0.45);
    }
}
