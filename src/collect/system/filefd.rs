//! `node_filefd_allocated` and `node_filefd_maximum` from `/proc/sys/fs/file-nr`
//! (`allocated  unused  maximum`), gauges as in node_exporter's filefd collector.

use super::ParseError;
use crate::metrics::MetricFamily;

/// (allocated, maximum).
pub fn parse_file_nr(text: &str) -> Result<(f64, f64), ParseError> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 3 {
        return Err(ParseError::FieldCount {
            want: 3,
            got: f.len(),
        });
    }
    let num = |s: &str| {
        s.parse::<u64>()
            .map(|v| v as f64)
            .map_err(|_| ParseError::bad("value", s))
    };
    Ok((num(f[0])?, num(f[2])?))
}

pub fn families((allocated, maximum): (f64, f64)) -> Vec<MetricFamily> {
    vec![
        MetricFamily::gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
        )
        .with::<&str, &str>(&[], allocated),
        MetricFamily::gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
        )
        .with::<&str, &str>(&[], maximum),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_and_maximum() {
        assert_eq!(
            parse_file_nr("662\t0\t2466177\n").unwrap(),
            (662.0, 2_466_177.0)
        );
        // Kernels print LONG_MAX-ish maxima on some systems; they still parse.
        assert_eq!(
            parse_file_nr("1 0 9223372036854775807").unwrap().1,
            9_223_372_036_854_775_807u64 as f64
        );
        assert!(parse_file_nr("1 0").is_err());
        assert!(parse_file_nr("1 0 lots").is_err());
    }
}
