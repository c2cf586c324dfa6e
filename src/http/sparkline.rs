//! Pure SVG rendering for the status page's trends ([`super::trends`]): sparklines of
//! evenly spaced points with gaps where there is no data, and the bar track of the alert
//! timeline. No script, no `style` attribute (the page's CSP and stylesheet carry the
//! looks through fixed class names); every text that came from outside is escaped.
//!
//! A sparkline never invents data: a missing, NaN or infinite point breaks the line, a
//! point with no neighbour is drawn as a dot, and a line whose values are all equal is
//! drawn flat through the middle.

use super::status::escape;
use sentinel_base::text::format_trimmed;
use std::fmt::Write as _;

/// Width of a sparkline's drawing, in SVG user units (and CSS pixels).
pub const WIDTH: f64 = 240.0;
/// Height of a sparkline's drawing.
pub const HEIGHT: f64 = 40.0;
/// Room kept free above and below the extremes so the stroke is not clipped.
const PAD: f64 = 3.0;
/// Most lines one sparkline draws (each has a colour class `l0`..`l7`).
pub const MAX_LINES: usize = 8;

/// How values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    Count,
    /// A fraction written as a percentage.
    Ratio,
    /// Seconds, written as ms, s or minutes.
    Seconds,
    /// Degrees Celsius.
    Celsius,
    /// Events per minute.
    PerMinute,
}

impl Unit {
    /// `v` written for people.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "—".to_string();
        }
        match self {
            Unit::Count => short(v),
            Unit::Ratio => format!("{} %", short(v * 100.0)),
            Unit::Seconds if v.abs() < 1.0 => format!("{} ms", short(v * 1000.0)),
            Unit::Seconds if v.abs() < 120.0 => format!("{} s", short(v)),
            Unit::Seconds => format!("{} min", short(v / 60.0)),
            Unit::Celsius => format!("{} °C", short(v)),
            Unit::PerMinute => format!("{} /min", short(v)),
        }
    }
}

/// A number with at most three significant decimals and no trailing zeros.
fn short(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format_trimmed(v, decimals);
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// One line of a sparkline: evenly spaced points, `None` (or a non-finite value) where
/// there is no data.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The legend (escaped when rendered); empty for a single unnamed line.
    pub name: String,
    pub points: Vec<Option<f64>>,
}

impl Line {
    fn finite(&self) -> impl Iterator<Item = f64> + '_ {
        self.points
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
    }

    /// The last finite value.
    pub fn last(&self) -> Option<f64> {
        self.points
            .iter()
            .rev()
            .flatten()
            .copied()
            .find(|v| v.is_finite())
    }

    pub fn min(&self) -> Option<f64> {
        self.finite().reduce(f64::min)
    }

    pub fn max(&self) -> Option<f64> {
        self.finite().reduce(f64::max)
    }
}

/// The runs of consecutive finite points: `(first index, values)`.
pub fn segments(points: &[Option<f64>]) -> Vec<(usize, Vec<f64>)> {
    let mut out: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut open = false;
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) if v.is_finite() => {
                if open {
                    if let Some((_, run)) = out.last_mut() {
                        run.push(*v);
                    }
                } else {
                    out.push((i, vec![*v]));
                    open = true;
                }
            }
            _ => open = false,
        }
    }
    out
}

/// A coordinate: one decimal at most, none when it is zero.
fn num(v: f64) -> String {
    format_trimmed(v, 1)
}

/// The sparkline of `lines` (at most [`MAX_LINES`] are drawn) as an inline `<svg>` with
/// a `<title>` for assistive technology, followed by its min / max / last values as
/// text. All lines share one vertical scale, from the smallest to the largest value.
pub fn sparkline(title: &str, unit: Unit, lines: &[Line]) -> String {
    let lines = &lines[..lines.len().min(MAX_LINES)];
    let min = lines.iter().filter_map(Line::min).reduce(f64::min);
    let max = lines.iter().filter_map(Line::max).reduce(f64::max);
    let mut summary = String::new();
    let mut text = String::new();
    match (min, max) {
        (Some(lo), Some(hi)) => {
            let _ = write!(summary, "min {}, max {}", unit.format(lo), unit.format(hi));
            for (i, l) in lines.iter().enumerate() {
                let last = l.last().map_or("—".to_string(), |v| unit.format(v));
                if l.name.is_empty() {
                    let _ = write!(summary, ", last {last}");
                    let _ = write!(
                        text,
                        "<span class=\"sv\">min <b>{}</b> max <b>{}</b> last <b>{}</b></span>",
                        escape(&unit.format(lo)),
                        escape(&unit.format(hi)),
                        escape(&last)
                    );
                } else {
                    let _ = write!(summary, "; {} last {last}", l.name);
                    let _ = write!(
                        text,
                        "<span class=\"sv k{i}\">{} last <b>{}</b> (min {}, max {})</span>",
                        escape(&l.name),
                        escape(&last),
                        escape(&l.min().map_or("—".to_string(), |v| unit.format(v))),
                        escape(&l.max().map_or("—".to_string(), |v| unit.format(v))),
                    );
                }
            }
        }
        _ => {
            summary.push_str("no data");
            text.push_str("<span class=\"none\">no data</span>");
        }
    }
    let mut h = String::with_capacity(1024);
    let _ = write!(
        h,
        "<svg class=\"spark\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\"><title>{}: {}</title>\
<rect class=\"bg\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\"/>",
        escape(title),
        escape(&summary),
        w = num(WIDTH),
        ht = num(HEIGHT),
    );
    if let (Some(lo), Some(hi)) = (min, max) {
        for (i, l) in lines.iter().enumerate() {
            let n = l.points.len();
            let x = |j: usize| {
                if n <= 1 {
                    WIDTH / 2.0
                } else {
                    j as f64 * WIDTH / (n - 1) as f64
                }
            };
            let y = |v: f64| {
                if hi > lo {
                    PAD + (1.0 - (v - lo) / (hi - lo)) * (HEIGHT - 2.0 * PAD)
                } else {
                    HEIGHT / 2.0
                }
            };
            let mut d = String::new();
            for (start, run) in segments(&l.points) {
                if run.len() == 1 {
                    let _ = write!(
                        h,
                        "<circle class=\"d{i}\" cx=\"{}\" cy=\"{}\" r=\"1.5\"/>",
                        num(x(start)),
                        num(y(run[0]))
                    );
                    continue;
                }
                for (k, v) in run.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{} {}",
                        if k == 0 { 'M' } else { 'L' },
                        num(x(start + k)),
                        num(y(*v))
                    );
                }
            }
            if !d.is_empty() {
                let _ = write!(h, "<path class=\"l{i}\" d=\"{d}\"/>");
            }
        }
    }
    h.push_str("</svg>");
    let _ = write!(h, "<div class=\"svals\">{text}</div>");
    h
}

/// One bar of the alert timeline, as fractions of the track's width (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub from: f64,
    pub to: f64,
    /// Still firing at the right edge.
    pub open: bool,
}

/// Width of the alert timeline's track.
pub const TRACK_WIDTH: f64 = 600.0;
/// Height of the alert timeline's track.
pub const TRACK_HEIGHT: f64 = 14.0;

/// An alert's timeline track: one bar per firing interval (at least one unit wide so a
/// short one stays visible), `title` as its accessible name.
pub fn track(title: &str, bars: &[Bar]) -> String {
    let mut h = String::with_capacity(256 + bars.len() * 64);
    let _ = write!(
        h,
        "<svg class=\"track\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\"><title>{}</title>\
<rect class=\"bg\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\"/>",
        escape(title),
        w = num(TRACK_WIDTH),
        ht = num(TRACK_HEIGHT),
    );
    for b in bars {
        if !(b.from.is_finite() && b.to.is_finite()) {
            continue;
        }
        let from = b.from.clamp(0.0, 1.0) * TRACK_WIDTH;
        let to = b.to.clamp(0.0, 1.0) * TRACK_WIDTH;
        let width = (to - from).max(1.0);
        let from = from.min(TRACK_WIDTH - width);
        let _ = write!(
            h,
            "<rect class=\"{}\" x=\"{}\" y=\"2\" width=\"{}\" height=\"{}\"/>",
            if b.open { "firing" } else { "fired" },
            num(from),
            num(width),
            num(TRACK_HEIGHT - 4.0)
        );
    }
    h.push_str("</svg>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: &[Option<f64>]) -> Line {
        Line {
            name: String::new(),
            points: points.to_vec(),
        }
    }

    fn path_of(svg: &str) -> Vec<&str> {
        svg.split("<path class=\"l0\" d=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect()
    }

    #[test]
    fn gaps_break_the_line_instead_of_bridging_them() {
        let svg = sparkline(
            "q",
            Unit::Count,
            &[line(&[
                Some(1.0),
                Some(2.0),
                None,
                None,
                Some(3.0),
                Some(4.0),
            ])],
        );
        let d = path_of(&svg);
        assert_eq!(d.len(), 1, "{svg}");
        // Two runs: two moves, one line segment each, nothing drawn across the gap.
        assert_eq!(d[0].matches('M').count(), 2, "{svg}");
        assert_eq!(d[0].matches('L').count(), 2, "{svg}");
        assert!(d[0].starts_with("M0 37L48 "), "{svg}");
        assert!(d[0].contains("M192 "), "{svg}");
    }

    #[test]
    fn nan_and_infinite_points_are_gaps_and_lone_points_are_dots() {
        let svg = sparkline(
            "q",
            Unit::Count,
            &[line(&[
                Some(f64::NAN),
                Some(5.0),
                Some(f64::INFINITY),
                Some(7.0),
                Some(f64::NEG_INFINITY),
            ])],
        );
        assert!(path_of(&svg).is_empty(), "no two neighbours: {svg}");
        assert_eq!(svg.matches("<circle class=\"d0\"").count(), 2, "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(
            svg.contains("min <b>5</b> max <b>7</b> last <b>7</b>"),
            "{svg}"
        );
        assert_eq!(segments(&line(&[Some(f64::NAN), None]).points), vec![]);
    }

    #[test]
    fn flat_line_is_drawn_through_the_middle() {
        let svg = sparkline("q", Unit::Count, &[line(&[Some(3.0); 4])]);
        let d = path_of(&svg);
        assert_eq!(d, ["M0 20L80 20L160 20L240 20"], "{svg}");
        assert!(
            svg.contains("min <b>3</b> max <b>3</b> last <b>3</b>"),
            "{svg}"
        );
    }

    #[test]
    fn no_data_draws_nothing_and_says_so() {
        let svg = sparkline("GPU temperature", Unit::Celsius, &[line(&[None; 120])]);
        assert!(!svg.contains("<path") && !svg.contains("<circle"), "{svg}");
        assert!(
            svg.contains("<title>GPU temperature: no data</title>"),
            "{svg}"
        );
        assert!(svg.contains("<span class=\"none\">no data</span>"), "{svg}");
        let svg = sparkline("x", Unit::Count, &[]);
        assert!(svg.contains("no data"), "{svg}");
    }

    #[test]
    fn sparkline_is_an_accessible_image_with_its_values_as_text() {
        let svg = sparkline("CPU busy", Unit::Ratio, &[line(&[Some(0.25), Some(0.5)])]);
        assert!(svg.starts_with("<svg class=\"spark\""), "{svg}");
        assert!(svg.contains("role=\"img\"><title>CPU busy: min 25 %, max 50 %, last 50 %</title>"));
        assert!(!svg.contains("style="), "{svg}");
    }

    #[test]
    fn hostile_titles_and_line_names_are_escaped() {
        let evil = "\"><script>alert(1)</script><svg onload=alert(2)>";
        let svg = sparkline(
            evil,
            Unit::Count,
            &[Line {
                name: evil.into(),
                points: vec![Some(1.0), Some(2.0)],
            }],
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<svg onload"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1, "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{svg}"
        );
        let t = track(evil, &[]);
        assert!(
            !t.contains("<script") && t.matches("<svg").count() == 1,
            "{t}"
        );
    }

    #[test]
    fn lines_are_capped_and_share_one_scale() {
        let lines: Vec<Line> = (0..12)
            .map(|i| Line {
                name: format!("gpu {i}"),
                points: vec![Some(i as f64), Some(i as f64 + 1.0)],
            })
            .collect();
        let svg = sparkline("u", Unit::Count, &lines);
        assert_eq!(svg.matches("<path ").count(), MAX_LINES, "{svg}");
        assert!(svg.contains("class=\"l7\"") && !svg.contains("class=\"l8\""));
        // Line 0 starts at the bottom of the common scale, line 7 ends at its top.
        assert!(svg.contains("<path class=\"l0\" d=\"M0 37L"), "{svg}");
        assert!(svg.contains("L240 3\"/>"), "{svg}");
    }

    /// Both number spellings are `format_trimmed`'s: coordinates with one decimal at
    /// most, values with three significant decimals, never a negative zero.
    #[test]
    fn numbers_keep_their_spelling() {
        let coordinates = [
            (240.0, "240"),
            (229.91596638655463, "229.9"),
            (37.0, "37"),
            (3.04, "3"),
            (-0.04, "-0"),
        ];
        for (v, want) in coordinates {
            assert_eq!(num(v), want, "coordinate {v}");
        }
        let values = [
            (99.996, "100"),
            (12.34, "12.3"),
            (1.2, "1.2"),
            (0.125, "0.12"),
            (1234.5, "1234"),
            (-0.001, "0"),
            (-5.0, "-5"),
        ];
        for (v, want) in values {
            assert_eq!(short(v), want, "value {v}");
        }
    }

    #[test]
    fn units_read_well() {
        assert_eq!(Unit::Ratio.format(0.4567), "45.7 %");
        assert_eq!(Unit::Seconds.format(0.0123), "12.3 ms");
        assert_eq!(Unit::Seconds.format(42.0), "42 s");
        assert_eq!(Unit::Seconds.format(900.0), "15 min");
        assert_eq!(Unit::Celsius.format(71.26), "71.3 °C");
        assert_eq!(Unit::PerMinute.format(3.0), "3 /min");
        assert_eq!(Unit::Count.format(1234.0), "1234");
        assert_eq!(Unit::Count.format(-0.001), "0");
        assert_eq!(Unit::Count.format(f64::NAN), "—");
    }

    #[test]
    fn timeline_bars_stay_inside_the_track_and_short_ones_stay_visible() {
        let t = track(
            "a",
            &[
                Bar {
                    from: 0.5,
                    to: 0.5,
                    open: false,
                },
                Bar {
                    from: -1.0,
                    to: 0.1,
                    open: false,
                },
                Bar {
                    from: 0.9,
                    to: 2.0,
                    open: true,
                },
                Bar {
                    from: f64::NAN,
                    to: 1.0,
                    open: true,
                },
            ],
        );
        assert!(
            t.contains("<rect class=\"fired\" x=\"300\" y=\"2\" width=\"1\""),
            "{t}"
        );
        assert!(
            t.contains("<rect class=\"fired\" x=\"0\" y=\"2\" width=\"60\""),
            "{t}"
        );
        assert!(
            t.contains("<rect class=\"firing\" x=\"540\" y=\"2\" width=\"60\""),
            "{t}"
        );
        assert_eq!(t.matches("<rect class=\"fir").count(), 3, "{t}");
    }
}
