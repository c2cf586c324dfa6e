//! The status page's "Trends" section: server-rendered SVG sparklines over the last hour
//! and the last 24 hours, and the alert timeline over the notifier's history retention.
//!
//! Every sparkline is a PromQL range query through the same evaluation as
//! `/api/v1/query_range` (`sentinel_rules::eval::eval_range`), under one budget of the `query:`
//! limits for the whole section (samples, label bytes, one deadline), at a fixed
//! [`POINTS`] points per line: the work depends on the windows, not on how much
//! history the store holds. Per-device panels show at most
//! [`MAX_DEVICES`] lines. The section is cached for [`CACHE_FOR`] so a page left open
//! in several tabs (it reloads itself) does not multiply the work.
//!
//! The alert timeline reads the notifier's alert history (the source of
//! `/api/v1/alerts/history`): one row per alert (newest activity first, at most
//! [`MAX_TIMELINE_ROWS`]), with a bar per firing interval. Label values and names are
//! escaped; class names come from fixed lists only.

use super::sparkline::{self, Bar, Line, Unit};
use super::status::escape;
use crate::app::App;
use sentinel_notify::dispatch::{EventKind, HistoryEvent};
use sentinel_rules::eval::{Budget, QueryLimits, RangeSeries};
use sentinel_rules::store::Store;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Points per sparkline line.
pub const POINTS: usize = 120;
/// Most devices (lines) a per-device panel shows; the rest are counted.
pub const MAX_DEVICES: usize = 8;
/// Most alerts the timeline shows (newest activity first); the rest are counted.
pub const MAX_TIMELINE_ROWS: usize = 40;
/// Most bars one timeline row draws (the newest ones).
pub const MAX_BARS_PER_ROW: usize = 200;
/// How long a rendered section is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// Shortest span the alert timeline covers.
const MIN_TIMELINE_SPAN: Duration = Duration::from_secs(3600);

/// One sparkline: a title, a unit and its queries. In a query `{w}` stands for the
/// range of `rate()` and friends, chosen per window so no step falls between samples.
struct Panel {
    title: &'static str,
    unit: Unit,
    /// `(legend, query)`; an empty legend takes the `by` label's value (or none).
    queries: &'static [(&'static str, &'static str)],
    /// The label that tells lines apart (`gpu`, `outcome`), capped at [`MAX_DEVICES`].
    by: Option<&'static str>,
}

/// The panels, in page order. Names as in docs/metrics.md and the default rules.
const PANELS: &[Panel] = &[
    Panel {
        title: "ComfyUI queue depth",
        unit: Unit::Count,
        queries: &[
            ("pending", "sum(comfyui_queue_pending)"),
            ("running", "sum(comfyui_queue_running)"),
        ],
        by: None,
    },
    Panel {
        title: "Prompt outcomes per minute",
        unit: Unit::PerMinute,
        queries: &[(
            "",
            "sum by (outcome) (rate(comfyui_prompts_total[{w}])) * 60",
        )],
        by: Some("outcome"),
    },
    Panel {
        title: "Prompt duration p95",
        unit: Unit::Seconds,
        queries: &[(
            "",
            "histogram_quantile(0.95, sum by (le) (rate(comfyui_prompt_duration_seconds_bucket[{w}])))",
        )],
        by: None,
    },
    Panel {
        title: "GPU utilization",
        unit: Unit::Ratio,
        queries: &[("", "max by (gpu) (gpu_utilization_ratio)")],
        by: Some("gpu"),
    },
    Panel {
        title: "GPU memory used",
        unit: Unit::Ratio,
        queries: &[(
            "",
            "max by (gpu) (gpu_memory_used_bytes / gpu_memory_total_bytes)",
        )],
        by: Some("gpu"),
    },
    Panel {
        title: "GPU temperature",
        unit: Unit::Celsius,
        queries: &[("", "max by (gpu) (gpu_temperature_celsius)")],
        by: Some("gpu"),
    },
    Panel {
        title: "CPU busy",
        unit: Unit::Ratio,
        queries: &[(
            "",
            "1 - avg(rate(node_cpu_seconds_total{mode=\"idle\"}[{w}]))",
        )],
        by: None,
    },
    Panel {
        title: "Memory used",
        unit: Unit::Ratio,
        queries: &[(
            "",
            "1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes)",
        )],
        by: None,
    },
    Panel {
        title: "Recovery overhead ratio",
        unit: Unit::Ratio,
        queries: &[(
            "",
            "sum(rate(recovery_overhead_seconds_total[{w}])) / sum(rate(recovery_operation_seconds_total[{w}]))",
        )],
        by: None,
    },
    Panel {
        title: "Recovery success ratio",
        unit: Unit::Ratio,
        queries: &[(
            "",
            "sum(rate(recovery_operations_total{outcome=\"recovered\"}[{w}])) / sum(rate(recovery_operations_total{outcome=~\"recovered|failed\"}[{w}]))",
        )],
        by: None,
    },
];

/// The two windows: (heading, length).
const WINDOWS: [(&str, Duration); 2] = [
    ("last 1 h", Duration::from_secs(3600)),
    ("last 24 h", Duration::from_secs(24 * 3600)),
];

/// A window's sampling: `POINTS` steps ending at `now` (not aligned to the step: data
/// of a sidecar started a minute ago shows at once in the 24 h window too), and the
/// `rate()` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    range_s: i64,
}

impl Grid {
    fn new(window: Duration, now_ms: i64) -> Grid {
        let step_ms = (window.as_millis() as i64 / (POINTS as i64 - 1)).max(1);
        let end_ms = now_ms;
        let start_ms = end_ms - step_ms * (POINTS as i64 - 1);
        // Two steps' worth, at least five minutes: every step sees two or more samples.
        let range_s = (2 * step_ms / 1000).max(300);
        Grid {
            start_ms,
            end_ms,
            step_ms,
            range_s,
        }
    }

    fn query(&self, template: &str) -> String {
        template.replace("{w}", &format!("{}s", self.range_s))
    }

    /// Spreads a range result over the grid's `POINTS` slots.
    fn slots(&self, points: &[(i64, f64)]) -> Vec<Option<f64>> {
        let mut out = vec![None; POINTS];
        for &(t, v) in points {
            let i = (t - self.start_ms) / self.step_ms;
            if (0..POINTS as i64).contains(&i) && (t - self.start_ms) % self.step_ms == 0 {
                out[i as usize] = Some(v);
            }
        }
        out
    }
}

fn ms(t: SystemTime) -> i64 {
    sentinel_store::store::system_time_ms(t)
}

/// Runs one range query under `budget` (the section's share of the `query:` limits).
fn range(
    store: &Store,
    text: &str,
    g: &Grid,
    budget: &Arc<Budget>,
) -> Result<Vec<RangeSeries>, String> {
    let expr = sentinel_rules::eval::parse(text)?;
    sentinel_rules::eval::check(&expr)?;
    sentinel_rules::eval::eval_range(store, &expr, g.start_ms, g.end_ms, g.step_ms, budget)
        .map_err(|e| e.to_string())
}

/// A panel's lines over one window, and how many lines were left out; or why the query
/// failed.
fn panel_lines(
    store: &Store,
    p: &Panel,
    g: &Grid,
    budget: &Arc<Budget>,
) -> Result<(Vec<Line>, usize), String> {
    let mut lines = Vec::new();
    let mut dropped = 0;
    for (legend, template) in p.queries {
        let before = lines.len();
        let mut series = range(store, &g.query(template), g, budget)?;
        if let Some(by) = p.by {
            // Numeric label values (GPU indexes) in numeric order.
            series.sort_by(|a, b| {
                let (a, b) = (a.labels.get(by), b.labels.get(by));
                match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.cmp(b),
                }
            });
        }
        let keep = if p.by.is_some() {
            MAX_DEVICES
        } else {
            series.len().min(1)
        };
        dropped += series.len().saturating_sub(keep);
        for s in series.into_iter().take(keep) {
            let name = match (legend.is_empty(), p.by) {
                (false, _) => legend.to_string(),
                (true, Some("gpu")) => format!("gpu {}", s.labels.get("gpu")),
                (true, Some(by)) => s.labels.get(by).to_string(),
                (true, None) => String::new(),
            };
            lines.push(Line {
                name,
                points: g.slots(&s.points),
            });
        }
        if lines.len() == before && !legend.is_empty() {
            // Keep the legend of a named query with no data.
            lines.push(Line {
                name: legend.to_string(),
                points: vec![None; POINTS],
            });
        }
    }
    Ok((lines, dropped))
}

/// The rendered trends section of one [`App`] (a field of it), reused for
/// [`CACHE_FOR`]. One render at a time: requests arriving while the cache is stale wait
/// for the render under way and then read the cache, instead of each running the same
/// 20 range queries.
#[derive(Default)]
pub struct TrendsCache {
    /// (rendered at, html).
    cached: Mutex<Option<(Instant, String)>>,
    rendering: Mutex<()>,
}

impl TrendsCache {
    fn fresh(&self) -> Option<String> {
        match &*self.cached.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, html)) if at.elapsed() < CACHE_FOR => Some(html.clone()),
            _ => None,
        }
    }

    /// The cached html while fresh, else what `render` makes (once for all the callers
    /// that find the cache stale together).
    fn get_or_render(&self, render: impl FnOnce() -> String) -> String {
        if let Some(html) = self.fresh() {
            return html;
        }
        let _one = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(html) = self.fresh() {
            return html;
        }
        let html = render();
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), html.clone()));
        html
    }
}

/// The HTML of the trends section for the running sidecar (cached for [`CACHE_FOR`] in
/// the app's [`TrendsCache`]).
pub fn section(app: &App, now: SystemTime) -> String {
    // CPU work bounded by `query.timeout`; the page handler calls this on a blocking
    // thread (`spawn_blocking` in `src/http/mod.rs`).
    app.trends.get_or_render(|| render_section(app, now))
}

/// The page with the trends section placed before the endpoint list (or at the end of
/// the body): the one call the status page makes.
pub fn with_section(page: String, app: &App, now: SystemTime) -> String {
    let section = section(app, now);
    let at = page
        .find("<h2 id=\"endpoints\">")
        .or_else(|| page.rfind("</body>"))
        .unwrap_or(page.len());
    let mut out = String::with_capacity(page.len() + section.len());
    out.push_str(&page[..at]);
    out.push_str(&section);
    out.push_str(&page[at..]);
    out
}

/// Looks of the section (the page's CSP allows inline `<style>`, and only that).
const STYLE: &str = "<style>\
table.trends td{vertical-align:middle}svg.spark,svg.track{display:block}\
svg .bg{fill:#fafafa;stroke:#e4e4e4;stroke-width:1}\
svg.spark path{fill:none;stroke-width:1.5;stroke-linejoin:round;stroke-linecap:round}\
.l0{stroke:#1f5fa8}.l1{stroke:#c0392b}.l2{stroke:#2e8b57}.l3{stroke:#8e44ad}\
.l4{stroke:#d35400}.l5{stroke:#16a085}.l6{stroke:#7f8c8d}.l7{stroke:#b7950b}\
.d0{fill:#1f5fa8}.d1{fill:#c0392b}.d2{fill:#2e8b57}.d3{fill:#8e44ad}\
.d4{fill:#d35400}.d5{fill:#16a085}.d6{fill:#7f8c8d}.d7{fill:#b7950b}\
.svals{font-size:.8em;color:#444;max-width:240px}.svals .sv{display:block;white-space:nowrap}\
.k0{border-bottom:2px solid #1f5fa8}.k1{border-bottom:2px solid #c0392b}.k2{border-bottom:2px solid #2e8b57}\
.k3{border-bottom:2px solid #8e44ad}.k4{border-bottom:2px solid #d35400}.k5{border-bottom:2px solid #16a085}\
.k6{border-bottom:2px solid #7f8c8d}.k7{border-bottom:2px solid #b7950b}\
svg.track .fired{fill:#d98880}svg.track .firing{fill:#b00020}\
</style>\n";

fn render_section(app: &App, now: SystemTime) -> String {
    let mut h = String::with_capacity(64 * 1024);
    render_sparklines(&mut h, app.rules.store(), app.queries.limits(), now);
    let retention = app.config().notify.history_retention.get();
    render_timeline(&mut h, &app.notifier.history(), retention, now);
    h
}

/// The style and the table of sparklines, over `store` under `limits`.
fn render_sparklines(h: &mut String, store: &Store, limits: QueryLimits, now: SystemTime) {
    h.push_str(STYLE);
    h.push_str("<h2 id=\"trends\">Trends</h2>\n");
    let now_ms = ms(now);
    let grids: Vec<Grid> = WINDOWS.iter().map(|(_, w)| Grid::new(*w, now_ms)).collect();
    // One budget for the whole section: its deadline (`query.timeout`) bounds the page,
    // and the panels left when it runs out say so instead of drawing.
    let budget = Arc::new(Budget::new(limits));
    h.push_str("<table class=\"trends\"><tr><th>series</th>");
    for ((name, _), g) in WINDOWS.iter().zip(&grids) {
        let _ = write!(
            h,
            "<th>{name} <span class=\"muted\">({} points, step {})</span></th>",
            POINTS,
            super::sparkline::Unit::Seconds.format(g.step_ms as f64 / 1000.0)
        );
    }
    h.push_str("</tr>\n");
    for p in PANELS {
        let _ = write!(h, "<tr><td>{}</td>", escape(p.title));
        for ((wname, _), g) in WINDOWS.iter().zip(&grids) {
            h.push_str("<td>");
            match panel_lines(store, p, g, &budget) {
                Ok((lines, dropped)) => {
                    let title = format!("{}, {wname}", p.title);
                    h.push_str(&sparkline::sparkline(&title, p.unit, &lines));
                    if dropped > 0 {
                        let _ = write!(h, "<div class=\"muted\">{dropped} more not shown</div>");
                    }
                }
                Err(e) => {
                    let _ = write!(h, "<span class=\"err\">unavailable: {}</span>", escape(&e));
                }
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// One alert's firing intervals (unix ms; `None` end: still firing).
#[derive(Debug, Default)]
struct AlertRow {
    name: String,
    labels: BTreeMap<String, String>,
    intervals: Vec<(i64, Option<i64>)>,
    last_activity: i64,
}

/// Folds history events (any order) into one row per fingerprint. A resolution without
/// a firing inside the retention starts at the left edge (`since`).
fn rows(events: &[HistoryEvent], since: i64) -> Vec<AlertRow> {
    let mut ev: Vec<&HistoryEvent> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Fired | EventKind::Resolved))
        .collect();
    ev.sort_by_key(|e| e.at);
    let mut by: BTreeMap<&str, AlertRow> = BTreeMap::new();
    for e in ev {
        let at = e.at.timestamp_millis();
        let row = by
            .entry(e.fingerprint.as_str())
            .or_insert_with(|| AlertRow {
                name: e.alertname.clone(),
                labels: e.labels.clone(),
                ..Default::default()
            });
        row.last_activity = at;
        match e.kind {
            EventKind::Fired => {
                if !matches!(row.intervals.last(), Some((_, None))) {
                    row.intervals.push((at, None));
                }
            }
            EventKind::Resolved => match row.intervals.last_mut() {
                Some((_, end @ None)) => *end = Some(at),
                _ => row.intervals.push((since, Some(at))),
            },
            EventKind::Notified => {}
        }
    }
    let mut out: Vec<AlertRow> = by.into_values().collect();
    out.sort_by(|a, b| {
        b.last_activity
            .cmp(&a.last_activity)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

fn utc_ms(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "?".to_string())
}

/// A cell's text: secrets redacted, cut to 200 characters, escaped.
fn text(s: &str) -> String {
    let s = sentinel_base::text::redact_secrets_in(s);
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", escape(&s[..i])),
        None => escape(&s),
    }
}

fn render_timeline(h: &mut String, events: &[HistoryEvent], retention: Duration, now: SystemTime) {
    h.push_str("<h2 id=\"alert-timeline\">Alert timeline</h2>\n");
    let now_ms = ms(now);
    let floor = now_ms - retention.as_millis().min(i64::MAX as u128) as i64;
    let oldest = events
        .iter()
        .map(|e| e.at.timestamp_millis())
        .filter(|t| *t >= floor)
        .min()
        .unwrap_or(now_ms);
    let span = (now_ms - oldest).max(MIN_TIMELINE_SPAN.as_millis() as i64);
    let since = (now_ms - span).max(floor);
    let span = (now_ms - since).max(1);
    let all = rows(events, since);
    let _ = writeln!(
        h,
        "<p class=\"muted\">Fired and resolved alerts from {} to {} (history retention {}).</p>",
        utc_ms(since),
        utc_ms(now_ms),
        escape(&humantime::format_duration(retention).to_string())
    );
    let visible: Vec<&AlertRow> = all
        .iter()
        .filter(|r| {
            r.intervals
                .iter()
                .any(|(_, end)| end.is_none_or(|e| e >= since))
        })
        .collect();
    if visible.is_empty() {
        h.push_str("<p class=\"none\">none</p>\n");
        return;
    }
    h.push_str("<table class=\"trends\"><tr><th>alert</th><th>labels</th><th>timeline</th><th>state</th></tr>\n");
    for r in visible.iter().take(MAX_TIMELINE_ROWS) {
        let start = r.intervals.len().saturating_sub(MAX_BARS_PER_ROW);
        let frac = |t: i64| (t - since) as f64 / span as f64;
        let bars: Vec<Bar> = r.intervals[start..]
            .iter()
            .map(|(from, to)| Bar {
                from: frac(*from),
                to: frac(to.unwrap_or(now_ms)),
                open: to.is_none(),
            })
            .collect();
        let n = r.intervals.len();
        let mut title = format!(
            "{}: fired {n} time{}",
            r.name,
            if n == 1 { "" } else { "s" }
        );
        if let Some((from, to)) = r.intervals.last() {
            let _ = write!(title, ", last from {}", utc_ms(*from));
            match to {
                Some(to) => {
                    let _ = write!(title, " to {}", utc_ms(*to));
                }
                None => title.push_str(", still firing"),
            }
        }
        let labels: String = r
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("<code>{}=&quot;{}&quot;</code> ", text(k), text(v)))
            .collect();
        let firing = matches!(r.intervals.last(), Some((_, None)));
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{labels}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            text(&r.name),
            sparkline::track(&title, &bars),
            if firing { "bad" } else { "ok" },
            if firing { "firing" } else { "resolved" },
        );
    }
    h.push_str("</table>\n");
    if visible.len() > MAX_TIMELINE_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"muted\">and {} more (see <a href=\"/api/v1/alerts/history\">/api/v1/alerts/history</a>)</p>",
            visible.len() - MAX_TIMELINE_ROWS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::status::test_app;
    use chrono::TimeZone;

    /// Appends `n` samples of series `l` to the app's store at the last `n` steps of
    /// `g`, the i-th (oldest first) valued `v(i)`.
    fn append_last_steps(app: &App, g: &Grid, l: &[(&str, &str)], n: i64, v: impl Fn(i64) -> f64) {
        let l = sentinel_rules::labels::Labels::from_pairs(l.iter().copied());
        for i in 0..n {
            let ts = g.end_ms - (n - 1 - i) * g.step_ms;
            app.rules
                .store()
                .append(&l, ts, v(i), sentinel_rules::store::Origin::Snapshot);
        }
    }

    fn ev(at_s: i64, kind: EventKind, fp: &str, name: &str) -> HistoryEvent {
        HistoryEvent {
            at: chrono::Utc.timestamp_opt(at_s, 0).unwrap(),
            kind,
            alertname: name.into(),
            fingerprint: fp.into(),
            labels: [
                ("alertname".to_string(), name.to_string()),
                ("job".to_string(), "<b onclick=x>".to_string()),
            ]
            .into(),
            receiver: None,
        }
    }

    fn t(s: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn grid_is_aligned_and_has_the_fixed_point_count() {
        let g = Grid::new(Duration::from_secs(3600), 1_000_012_345);
        assert_eq!(g.step_ms, 30_252);
        assert_eq!(g.end_ms, 1_000_012_345);
        assert_eq!((g.end_ms - g.start_ms) / g.step_ms + 1, POINTS as i64);
        assert_eq!(g.range_s, 300);
        let day = Grid::new(Duration::from_secs(86_400), 1_000_012_345);
        assert_eq!(day.range_s, 1452);
        assert_eq!(day.query("rate(x[{w}])"), "rate(x[1452s])");
        // Points land in their slot; off-grid and out-of-window points are dropped.
        let s = g.slots(&[
            (g.start_ms, 1.0),
            (g.end_ms, 2.0),
            (g.end_ms + g.step_ms, 3.0),
            (g.start_ms + 1, 4.0),
        ]);
        assert_eq!(s.len(), POINTS);
        assert_eq!((s[0], s[POINTS - 1]), (Some(1.0), Some(2.0)));
        assert_eq!(s.iter().flatten().count(), 2);
    }

    #[test]
    fn every_panel_query_parses_and_passes_the_engine_checks() {
        let g = Grid::new(Duration::from_secs(86_400), 1_000_000_000);
        for p in PANELS {
            for (_, q) in p.queries {
                let e = sentinel_rules::eval::parse(&g.query(q))
                    .unwrap_or_else(|e| panic!("{}: {q}: {e}", p.title));
                sentinel_rules::eval::check(&e).unwrap_or_else(|e| panic!("{q}: {e}"));
            }
        }
    }

    #[test]
    fn timeline_folds_fired_and_resolved_into_intervals() {
        let events = vec![
            ev(1_000, EventKind::Fired, "a", "GpuHot"),
            ev(1_100, EventKind::Notified, "a", "GpuHot"),
            ev(1_500, EventKind::Resolved, "a", "GpuHot"),
            ev(2_000, EventKind::Fired, "a", "GpuHot"),
            ev(2_050, EventKind::Fired, "a", "GpuHot"),
            ev(500, EventKind::Resolved, "b", "Old"),
        ];
        let r = rows(&events, 0);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "GpuHot");
        assert_eq!(
            r[0].intervals,
            vec![(1_000_000, Some(1_500_000)), (2_000_000, None)]
        );
        // A resolution whose firing is older than the retention starts at the edge.
        assert_eq!(r[1].intervals, vec![(0, Some(500_000))]);
    }

    #[test]
    fn timeline_renders_bars_and_keeps_hostile_labels_inert() {
        let evil = "\"><script>alert(1)</script>";
        let events = vec![
            ev(10_000, EventKind::Fired, "a", evil),
            ev(11_800, EventKind::Resolved, "a", evil),
            ev(12_000, EventKind::Fired, "b", "GpuHot"),
        ];
        let mut h = String::new();
        render_timeline(&mut h, &events, Duration::from_secs(86_400), t(13_600));
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<b onclick"), "{h}");
        assert!(h.contains("&lt;b onclick=x&gt;"), "{h}");
        assert!(h.contains("&quot;&gt;&lt;script&gt;"), "{h}");
        // One hour shown (the minimum span), 10_000 s to 13_600 s.
        assert!(
            h.contains("<rect class=\"fired\" x=\"0\" y=\"2\" width=\"300\""),
            "{h}"
        );
        assert!(
            h.contains("<rect class=\"firing\" x=\"333.3\" y=\"2\" width=\"266.7\""),
            "{h}"
        );
        let gpu = h.find("GpuHot").unwrap();
        assert!(
            gpu < h.find("&quot;&gt;&lt;script").unwrap(),
            "newest first"
        );
        assert!(h.contains("<td class=\"bad\">firing</td>"), "{h}");
        assert!(h.contains("<td class=\"ok\">resolved</td>"), "{h}");
    }

    #[test]
    fn timeline_is_capped_and_events_past_retention_are_left_out() {
        let mut events: Vec<HistoryEvent> = (0..(MAX_TIMELINE_ROWS as i64 + 5))
            .map(|i| ev(100_000 + i, EventKind::Fired, &format!("f{i}"), "A"))
            .collect();
        events.push(ev(1_000, EventKind::Fired, "ancient", "Ancient"));
        events.push(ev(1_100, EventKind::Resolved, "ancient", "Ancient"));
        let mut h = String::new();
        render_timeline(&mut h, &events, Duration::from_secs(3_600), t(100_100));
        assert_eq!(h.matches("<svg class=\"track\"").count(), MAX_TIMELINE_ROWS);
        assert!(h.contains("and 5 more"), "{h}");
        assert!(!h.contains("Ancient"), "{h}");
        let mut h = String::new();
        render_timeline(&mut h, &[], Duration::from_secs(3_600), t(100_100));
        assert!(h.contains("<p class=\"none\">none</p>"), "{h}");
    }

    #[tokio::test]
    async fn section_draws_every_panel_and_its_gaps_on_a_fresh_sidecar() {
        let (_dir, app) = test_app(|_| {});
        let now = SystemTime::now();
        let g = Grid::new(Duration::from_secs(3600), ms(now));
        // Nothing, then the last six steps: a gap from the left edge, then a line.
        let l = [("__name__", "gpu_temperature_celsius"), ("gpu", "0")];
        append_last_steps(&app, &g, &l, 6, |i| 60.0 + i as f64);
        let page = with_section(
            "<html><body><h2 id=\"endpoints\">E</h2></body></html>".into(),
            &app,
            now,
        );
        app.runner.stop_all();
        let trends = page.find("<h2 id=\"trends\">").expect("section");
        assert!(trends < page.find("<h2 id=\"endpoints\">").unwrap());
        for p in PANELS {
            assert!(
                page.contains(&format!("<title>{}, last 1 h: ", escape(p.title))),
                "{}",
                p.title
            );
            assert!(
                page.contains(&format!("<title>{}, last 24 h: ", escape(p.title))),
                "{}",
                p.title
            );
        }
        assert!(!page.contains("unavailable"), "{page}");
        assert!(
            page.contains(
                "<title>GPU temperature, last 1 h: min 60 °C, max 65 °C; gpu 0 last 65 °C</title>"
            ),
            "{page}"
        );
        // The line starts at slot 114 of 120 (x = 114 * 240 / 119), not at the left edge.
        assert!(page.contains("<path class=\"l0\" d=\"M229.9 37L"), "{page}");
        assert!(page.contains("<h2 id=\"alert-timeline\">"), "{page}");
        assert!(
            !page.contains("style=\""),
            "no style attributes under the CSP"
        );
    }

    /// Requests that find the cache stale together run one render; the others wait for
    /// it and read the cache.
    #[test]
    fn concurrent_requests_run_one_render_and_the_others_read_the_cache() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = TrendsCache::default();
        let renders = AtomicUsize::new(0);
        let started = std::sync::Barrier::new(8);
        let got: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        started.wait();
                        cache.get_or_render(|| {
                            renders.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(200));
                            "<h2>trends</h2>".to_string()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|h| h == "<h2>trends</h2>"), "{got:?}");
        // A later request within CACHE_FOR reads the cache too.
        let again = cache.get_or_render(|| unreachable!("the cache is fresh"));
        assert_eq!(again, "<h2>trends</h2>");
    }

    /// Each app has its own cache: a second sidecar in the same process (tests, a
    /// restart in place) never shows the first one's section.
    #[tokio::test]
    async fn each_app_renders_its_own_section() {
        let (_d1, a) = test_app(|_| {});
        let (_d2, b) = test_app(|_| {});
        let now = SystemTime::now();
        a.trends.get_or_render(|| "from a".to_string());
        assert_eq!(section(&a, now), "from a");
        assert_ne!(section(&b, now), "from a");
        a.runner.stop_all();
        b.runner.stop_all();
    }

    /// A figure, not a check: the sparklines over a full day of a 16-CPU, 4-GPU box at a
    /// 5 s interval, in a store that holds the day (as the 24 h history store will).
    /// `cargo test --release --lib trends_render_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn trends_render_time_over_a_full_day() {
        use sentinel_rules::labels::Labels;
        use sentinel_rules::store::Origin;
        let store = Store::unbounded();
        let now = ms(SystemTime::now());
        let start = now - 24 * 3600 * 1000;
        let mut series: Vec<(Labels, f64)> = Vec::new();
        for cpu in 0..16 {
            for mode in [
                "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
            ] {
                series.push((
                    Labels::from_pairs([
                        ("__name__", "node_cpu_seconds_total".to_string()),
                        ("cpu", cpu.to_string()),
                        ("mode", mode.to_string()),
                    ]),
                    0.6,
                ));
            }
        }
        for gpu in 0..4 {
            for m in [
                "gpu_utilization_ratio",
                "gpu_memory_used_bytes",
                "gpu_memory_total_bytes",
                "gpu_temperature_celsius",
            ] {
                series.push((
                    Labels::from_pairs([("__name__", m.to_string()), ("gpu", gpu.to_string())]),
                    0.0,
                ));
            }
        }
        for m in [
            "node_memory_MemAvailable_bytes",
            "node_memory_MemTotal_bytes",
            "comfyui_queue_pending",
            "comfyui_queue_running",
        ] {
            series.push((Labels::from_pairs([("__name__", m)]), 0.0));
        }
        for outcome in ["success", "error", "interrupted"] {
            series.push((
                Labels::from_pairs([("__name__", "comfyui_prompts_total"), ("outcome", outcome)]),
                0.01,
            ));
            for le in ["1", "5", "10", "30", "60", "120", "300", "600", "+Inf"] {
                series.push((
                    Labels::from_pairs([
                        ("__name__", "comfyui_prompt_duration_seconds_bucket"),
                        ("outcome", outcome),
                        ("le", le),
                    ]),
                    0.01,
                ));
            }
        }
        let mut samples = 0u64;
        let mut t = start;
        let mut k = 0.0;
        while t <= now {
            for (l, slope) in &series {
                let v = if *slope > 0.0 {
                    k * slope
                } else {
                    50.0 + (k % 30.0)
                };
                store.append(l, t, v, Origin::Snapshot);
                samples += 1;
            }
            t += 5_000;
            k += 5.0;
        }
        let mut html = String::new();
        let t0 = Instant::now();
        let limits = sentinel_rules::eval::QueryConfig::default().limits();
        render_sparklines(&mut html, &store, limits, SystemTime::now());
        let took = t0.elapsed();
        assert!(!html.contains("unavailable"), "{html}");
        let cpu = html
            .lines()
            .find(|l| l.starts_with("<tr><td>CPU busy</td>"))
            .expect("CPU row");
        // The store held the whole day: both windows drawn from their left edge (24 h:
        // or its second point, when the first one's rate window starts before the data).
        let starts = cpu.matches("<path class=\"l0\" d=\"M0 ").count()
            + cpu.matches("<path class=\"l0\" d=\"M2 ").count();
        assert_eq!(starts, 2, "{cpu}");
        eprintln!(
            "trends sparklines over {} series, {samples} samples (24 h at 5 s): {took:?}, {} bytes of HTML",
            series.len(),
            html.len()
        );
    }

    #[tokio::test]
    async fn named_query_without_data_keeps_its_legend_next_to_one_with_data() {
        let (_dir, app) = test_app(|_| {});
        let now = SystemTime::now();
        let g = Grid::new(Duration::from_secs(3600), ms(now));
        append_last_steps(
            &app,
            &g,
            &[("__name__", "comfyui_queue_pending")],
            3,
            |_| 1.0,
        );
        let budget = Arc::new(Budget::new(app.queries.limits()));
        let queue = PANELS
            .iter()
            .find(|p| p.title == "ComfyUI queue depth")
            .unwrap();
        let (lines, dropped) =
            panel_lines(app.rules.store(), queue, &g, &budget).expect("queue panel");
        app.runner.stop_all();
        assert_eq!(dropped, 0);
        let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["pending", "running"]);
        assert_eq!(lines[0].last(), Some(1.0));
        assert_eq!(lines[0].points.len(), POINTS);
        assert!(lines[1].points.iter().all(Option::is_none));
        assert_eq!(lines[1].points.len(), POINTS);
    }

    #[tokio::test]
    async fn panel_over_the_query_sample_limit_says_unavailable_instead_of_drawing() {
        let (_dir, app) = test_app(|c| c.query.max_samples = 3);
        let now = SystemTime::now();
        let g = Grid::new(Duration::from_secs(3600), ms(now));
        let l = [("__name__", "gpu_temperature_celsius"), ("gpu", "0")];
        append_last_steps(&app, &g, &l, 6, |_| 60.0);
        let html = render_section(&app, now);
        app.runner.stop_all();
        let row = html
            .lines()
            .find(|l| l.starts_with("<tr><td>GPU temperature</td>"))
            .expect("GPU temperature row");
        assert!(row.contains("<span class=\"err\">unavailable: "), "{row}");
        assert!(!row.contains("<path"), "{row}");
    }
}
