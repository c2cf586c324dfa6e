//! The status page at `GET /`: what an operator wants at a glance, server-rendered with no
//! script and no external resource (the `common_headers` CSP forbids both; the inline
//! `<style>` is the one thing it allows).
//!
//! It shows build info, each collector's last run (from `Runner::statuses()`), the active
//! alerts and the recent notifications, the outbox depth and the endpoints. The HTTP layer
//! stands after the rule engine and the dispatcher in the data flow, so [`StatusSnapshot::gather`]
//! reads them directly: alerts with their silenced/inhibited marks, delivery attempts,
//! queued and dead notifications and the outbox depth from the notifier
//! (`sentinel_notify::Notifier`), and each alert's value at its last evaluation from the
//! rule engine. Rendering ([`render`]) is pure over that snapshot.
//!
//! Every value that came from outside (label values, annotations, collector errors, config
//! paths) goes through [`escape`], which is safe in text and in double-quoted attributes;
//! class names are picked from fixed lists, never copied from data. Lists are capped so a
//! storm of alerts cannot make the page unbounded.

use crate::app::App;
use crate::collect::CollectorStatus;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// One alert as the page shows it (read from the notifier, valued by the rule engine).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertView {
    /// The `alertname`.
    pub name: String,
    /// `warning`, `critical`, or whatever the rule's `severity` label says.
    pub severity: String,
    /// `pending` or `firing` (anything else is shown as it is).
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The sample value that made the alert active; None when unknown.
    pub value: Option<f64>,
    /// When the alert became active (pending or firing).
    pub active_since: Option<SystemTime>,
    pub silenced: bool,
    pub inhibited: bool,
}

/// The alerts the page shows: the first [`MAX_ALERTS`] in the page's order (firing
/// before pending, critical before warning, then by name, oldest first), and how many
/// there are in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertList {
    pub shown: Vec<AlertView>,
    pub total: usize,
    pub firing: usize,
}

impl AlertList {
    /// The list of the page for every alert in `all` (what the picking must equal).
    #[cfg(test)]
    pub fn of(all: Vec<AlertView>) -> AlertList {
        let keys: Vec<OrderKey<'_>> = all.iter().map(AlertView::order_key).collect();
        let first = first_in_page_order(&keys);
        let firing = all.iter().filter(|a| a.state == "firing").count();
        let total = all.len();
        let mut all: Vec<Option<AlertView>> = all.into_iter().map(Some).collect();
        AlertList {
            shown: first.into_iter().filter_map(|i| all[i].take()).collect(),
            total,
            firing,
        }
    }
}

/// Where an alert stands on the page: firing first, then by severity rank, name and
/// the time it became active.
type OrderKey<'a> = (bool, u8, &'a str, Option<SystemTime>);

fn order_key<'a>(
    state: &str,
    severity: &str,
    name: &'a str,
    since: Option<SystemTime>,
) -> OrderKey<'a> {
    (state != "firing", severity_rank(severity), name, since)
}

#[cfg(test)]
impl AlertView {
    fn order_key(&self) -> OrderKey<'_> {
        order_key(&self.state, &self.severity, &self.name, self.active_since)
    }
}

/// The indices of the first [`MAX_ALERTS`] of `keys` in order (equal keys keep their
/// given order), found without sorting what is not shown.
fn first_in_page_order(keys: &[OrderKey<'_>]) -> Vec<usize> {
    let cmp = |a: &usize, b: &usize| keys[*a].cmp(&keys[*b]).then(a.cmp(b));
    let mut first: Vec<usize> = (0..keys.len()).collect();
    if first.len() > MAX_ALERTS {
        first.select_nth_unstable_by(MAX_ALERTS - 1, cmp);
        first.truncate(MAX_ALERTS);
    }
    first.sort_unstable_by(cmp);
    first
}

/// One notification attempt series as the page shows it (read from the notifier).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationView {
    /// When the notification was last attempted (or queued).
    pub at: Option<SystemTime>,
    pub receiver: String,
    /// The group key or a readable form of the grouping labels.
    pub group: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `delivered`, `retrying`, `failed`, `dead`, `queued`...
    pub result: String,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Most alert rows shown; the rest are counted.
const MAX_ALERTS: usize = 500;
/// Most notification rows shown (newest first).
const MAX_NOTIFICATIONS: usize = 50;
/// Longest string shown in a cell; longer ones are cut, with the whole in `title`.
const MAX_CELL_CHARS: usize = 300;
/// Longest `title` attribute.
const MAX_TITLE_CHARS: usize = 4000;
/// Seconds between automatic reloads of the page.
pub const REFRESH_SECONDS: u32 = 15;

/// Endpoints listed on the page: (methods, path, what), read from the router's own
/// list ([`crate::http::routes`]). GET ones without a path parameter become links.
fn endpoints() -> &'static [(&'static str, &'static str, &'static str)] {
    static LIST: std::sync::OnceLock<Vec<(&'static str, &'static str, &'static str)>> =
        std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        crate::http::routes()
            .into_iter()
            .map(|r| (r.methods, r.path, r.about))
            .collect()
    })
}

fn linkable(methods: &str, path: &str) -> bool {
    methods.split(", ").any(|m| m == "GET") && !path.contains('{')
}

/// Build and process facts for the top of the page.
#[derive(Debug, Clone, Default)]
pub struct BuildView {
    pub version: String,
    pub revision: String,
    pub started: Option<SystemTime>,
    pub config_source: String,
    /// None: not reloaded since start.
    pub last_reload: Option<(SystemTime, Result<(), String>)>,
}

/// Everything the page shows, gathered once per request so rendering is pure.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    pub build: BuildView,
    pub collectors: Vec<(String, CollectorStatus)>,
    /// None: not known (a snapshot built without a notifier, as in tests).
    pub alerts: Option<AlertList>,
    /// None: not known.
    pub notifications: Option<Vec<NotificationView>>,
    pub outbox_depth: Option<u64>,
}

impl StatusSnapshot {
    /// Reads the running sidecar's state.
    pub fn gather(app: &App) -> StatusSnapshot {
        StatusSnapshot {
            build: BuildView {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: option_env!("SENTINEL_REVISION")
                    .unwrap_or("unknown")
                    .to_string(),
                started: Some(app.started),
                config_source: app.config_source().display_name(),
                last_reload: app
                    .last_reload()
                    .map(|(at, r)| (at, r.map_err(|e| e.to_string()))),
            },
            collectors: app
                .runner
                .statuses()
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
            alerts: Some(alert_views(&app.notifier, &app.rules)),
            notifications: Some(notification_views(&app.notifier)),
            outbox_depth: Some(app.notifier.outbox().depth() as u64),
        }
    }
}

/// Active alerts as the dispatcher sees them (silenced and inhibited marks), with the
/// value each had at the rule engine's last evaluation: the first [`MAX_ALERTS`] in the
/// page's order, picked while the notifier lends them, so only those are copied.
fn alert_views(
    notifier: &sentinel_notify::Notifier,
    rules: &sentinel_rules::engine::RuleEngine,
) -> AlertList {
    let values = rules.alert_values();
    let (mut total, mut firing) = (0, 0);
    let shown = notifier.alerts_picked(&mut |all| {
        total = all.len();
        firing = all.iter().filter(|(_, status)| *status == "firing").count();
        let keys: Vec<OrderKey<'_>> = all
            .iter()
            .map(|(a, status)| {
                let severity = a.labels.get("severity").map_or("", String::as_str);
                order_key(status, severity, a.name(), Some(a.starts_at.into()))
            })
            .collect();
        first_in_page_order(&keys)
    });
    AlertList {
        shown: shown.into_iter().map(|a| alert_view(a, &values)).collect(),
        total,
        firing,
    }
}

/// One alert of the notifier as the page shows it.
fn alert_view(
    a: sentinel_notify::dispatch::AlertView,
    values: &std::collections::HashMap<u64, f64>,
) -> AlertView {
    AlertView {
        name: a.alert.name().to_string(),
        severity: a.alert.labels.get("severity").cloned().unwrap_or_default(),
        state: a.status.to_string(),
        value: values.get(&a.alert.fingerprint()).copied(),
        active_since: Some(a.alert.starts_at.into()),
        silenced: !a.silenced_by.is_empty(),
        inhibited: a.inhibited,
        labels: a.alert.labels,
        annotations: a.alert.annotations,
    }
}

/// Recent delivery attempts, then the notifications waiting in the outbox, then the dead
/// letters (the page sorts them newest first).
fn notification_views(notifier: &sentinel_notify::Notifier) -> Vec<NotificationView> {
    let (attempts, pending, dead) = notifier.notifications();
    let status = |n: &sentinel_notify::notification::Notification| {
        if n.firing().next().is_some() {
            "firing"
        } else {
            "resolved"
        }
        .to_string()
    };
    let mut out: Vec<NotificationView> = attempts
        .into_iter()
        .map(|a| NotificationView {
            at: Some(a.at.into()),
            receiver: format!("{} ({})", a.receiver, a.integration),
            group: a.group_key,
            status: String::new(),
            result: a.result.to_string(),
            attempts: a.attempt,
            error: a.error,
        })
        .collect();
    out.extend(pending.into_iter().map(|e| NotificationView {
        at: Some(e.next_at.into()),
        receiver: format!("{} ({})", e.receiver, e.integration),
        group: e.notification.group_key.clone(),
        status: status(&e.notification),
        result: "queued".into(),
        attempts: e.attempts,
        error: e.last_error,
    }));
    out.extend(dead.into_iter().map(|d| NotificationView {
        at: Some(d.at.into()),
        receiver: format!("{} ({})", d.entry.receiver, d.entry.integration),
        group: d.entry.notification.group_key.clone(),
        status: status(&d.entry.notification),
        result: "dead".into(),
        attempts: d.entry.attempts,
        error: Some(d.reason),
    }));
    out
}

/// The page for the running sidecar.
pub fn page(app: &App) -> String {
    let now = SystemTime::now();
    crate::http::trends::with_section(render(&StatusSnapshot::gather(app), now), app, now)
}

/// Escapes for HTML text and for double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than whitespace have no business on the page.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// A cell's text, escaped and cut to [`MAX_CELL_CHARS`]; a cut value keeps its whole
/// (up to [`MAX_TITLE_CHARS`]) in a `title` so hovering shows it.
fn cell(s: &str) -> String {
    // URL passwords and token parameters (in a delivery error, a collector error, a
    // label) are secrets wherever they came from.
    let s = &*sentinel_base::text::redact_secrets_in(s);
    let (shown, cut) = truncate(s, MAX_CELL_CHARS);
    if cut {
        let (title, _) = truncate(s, MAX_TITLE_CHARS);
        format!(
            "<span title=\"{}\">{}…</span>",
            escape(title),
            escape(shown)
        )
    } else {
        escape(shown)
    }
}

fn utc(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// "3m 20s" and the like.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// A time as "… ago", with the absolute time in `title`.
fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        None => "never".to_string(),
        Some(t) => {
            let rel = match now.duration_since(t) {
                Ok(d) => format!("{} ago", human(d)),
                Err(e) => format!("in {}", human(e.duration())),
            };
            format!("<time title=\"{}\">{}</time>", utc(t), rel)
        }
    }
}

fn value(v: Option<f64>) -> String {
    match v {
        None => "—".to_string(),
        Some(v) => sentinel_base::text::format_trimmed(v, 6),
    }
}

/// A class for a state word, from a fixed list (data never becomes a class name).
fn state_class(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "ok" | "delivered" | "resolved" | "sent" | "success" => "ok",
        "failing" | "down" | "firing" | "failed" | "dead" | "critical" | "error" => "bad",
        "pending" | "retry" | "retrying" | "queued" | "warning" => "warn",
        _ => "plain",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#1b1b1b;background:#fff;line-height:1.4}\
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc;padding-bottom:.15em}\
nav a{margin-right:1em}table{border-collapse:collapse;font-size:.92em}\
td,th{padding:.25em .7em;text-align:left;vertical-align:top;border-bottom:1px solid #eee}\
th{background:#f4f4f4}dl{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:0}\
dt{font-weight:600}dd{margin:0}code{font-size:.9em;background:#f4f4f4;padding:0 .25em;border-radius:3px;overflow-wrap:anywhere}\
.ok{color:#0a6b0a;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#9a5b00;font-weight:600}\
.plain{font-weight:600}.muted{color:#777}.tag{display:inline-block;font-size:.8em;border:1px solid #999;border-radius:3px;padding:0 .3em;margin-left:.3em;color:#555}\
.none{color:#777;font-style:italic}.err{color:#b00020}";

/// Renders the page. Pure: `now` is passed in so tests can pin it.
pub fn render(s: &StatusSnapshot, now: SystemTime) -> String {
    let mut h = String::with_capacity(8192);
    let b = &s.build;
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>comfy-sentinel status</title><style>{STYLE}</style></head><body>\n\
<h1>comfy-sentinel <span class=\"muted\">{}</span></h1>\n<nav>",
        escape(&b.version)
    );
    for (methods, path, _) in endpoints() {
        if linkable(methods, path) && *path != "/" {
            let _ = write!(h, "<a href=\"{path}\">{path}</a>");
        }
    }
    h.push_str("</nav>\n");
    render_build(&mut h, b, now);
    render_collectors(&mut h, &s.collectors, now);
    render_alerts(&mut h, s.alerts.as_ref(), now);
    render_notifications(&mut h, s.notifications.as_deref(), s.outbox_depth, now);
    render_endpoints(&mut h);
    let _ = write!(
        h,
        "<p class=\"muted\">Rendered {}; reloads every {REFRESH_SECONDS} s.</p>\n</body></html>\n",
        utc(now)
    );
    h
}

fn render_build(h: &mut String, b: &BuildView, now: SystemTime) {
    h.push_str("<h2 id=\"build\">Build</h2>\n<dl>");
    let _ = write!(
        h,
        "<dt>version</dt><dd>{}</dd><dt>revision</dt><dd><code>{}</code></dd>",
        escape(&b.version),
        escape(&b.revision)
    );
    match b.started {
        Some(t) => {
            let up = now.duration_since(t).unwrap_or_default();
            let _ = write!(
                h,
                "<dt>started</dt><dd>{}</dd><dt>uptime</dt><dd>{}</dd>",
                utc(t),
                human(up)
            );
        }
        None => h.push_str("<dt>uptime</dt><dd>—</dd>"),
    }
    let _ = write!(
        h,
        "<dt>config</dt><dd><code>{}</code></dd><dt>last reload</dt><dd>",
        cell(&b.config_source)
    );
    match &b.last_reload {
        None => h.push_str("<span class=\"muted\">none since start</span>"),
        Some((t, Ok(()))) => {
            let _ = write!(
                h,
                "<span class=\"ok\">succeeded</span> {}",
                ago(Some(*t), now)
            );
        }
        Some((t, Err(e))) => {
            let _ = write!(
                h,
                "<span class=\"bad\">failed</span> {} — the previous config keeps running: <span class=\"err\">{}</span>",
                ago(Some(*t), now),
                cell(e)
            );
        }
    }
    h.push_str("</dd></dl>\n");
}

fn render_collectors(h: &mut String, collectors: &[(String, CollectorStatus)], now: SystemTime) {
    h.push_str("<h2 id=\"collectors\">Collectors</h2>\n");
    if collectors.is_empty() {
        h.push_str("<p class=\"none\">none</p>\n");
        return;
    }
    h.push_str("<table><tr><th>collector</th><th>state</th><th>last run</th><th>duration</th><th>interval</th><th>runs</th><th>last error</th></tr>\n");
    for (name, st) in collectors {
        // A run that succeeded while its target (ComfyUI) did not answer is no "ok".
        let target_down = st.target.as_ref().filter(|t| !t.up);
        let state = if st.runs == 0 {
            "pending"
        } else if !st.success {
            "failing"
        } else if target_down.is_some() {
            "down"
        } else {
            "ok"
        };
        let error = match (&st.last_error, target_down) {
            (Some(e), _) => e.clone(),
            (None, Some(t)) => format!(
                "{} is down: {}",
                t.target,
                t.last_error.as_deref().unwrap_or("no answer")
            ),
            (None, None) => String::new(),
        };
        let duration = if st.runs == 0 {
            "—".to_string()
        } else {
            format!("{:.3} s", st.last_duration_seconds)
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{state}</td><td>{}</td><td>{duration}</td><td>{} s</td><td>{}</td><td class=\"err\">{}</td></tr>",
            escape(name),
            state_class(state),
            ago(st.last_run, now),
            value(Some(st.interval_seconds)),
            st.runs,
            cell(&error),
        );
    }
    h.push_str("</table>\n");
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

fn render_alerts(h: &mut String, alerts: Option<&AlertList>, now: SystemTime) {
    h.push_str("<h2 id=\"alerts\">Active alerts</h2>\n");
    let Some(alerts) = alerts else {
        h.push_str("<p class=\"none\">none (no rule engine is running)</p>\n");
        return;
    };
    if alerts.total == 0 {
        h.push_str("<p class=\"none\">none</p>\n");
        return;
    }
    let firing = alerts.firing;
    let _ = writeln!(
        h,
        "<p>{firing} firing, {} pending or other.</p>",
        alerts.total - firing
    );
    h.push_str("<table><tr><th>alert</th><th>severity</th><th>state</th><th>labels</th><th>value</th><th>active since</th><th>annotations</th></tr>\n");
    for a in &alerts.shown {
        let mut marks = String::new();
        if a.silenced {
            marks.push_str("<span class=\"tag\">silenced</span>");
        }
        if a.inhibited {
            marks.push_str("<span class=\"tag\">inhibited</span>");
        }
        let row_class = if a.silenced || a.inhibited {
            " class=\"muted\""
        } else {
            ""
        };
        let labels: String = a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity")
            .map(|(k, v)| format!("<code>{}=&quot;{}&quot;</code> ", escape(k), cell(v)))
            .collect();
        let annotations: String = a
            .annotations
            .iter()
            .map(|(k, v)| format!("<div><b>{}</b>: {}</div>", escape(k), cell(v)))
            .collect();
        let _ = writeln!(
            h,
            "<tr{row_class}><td>{}{marks}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{labels}</td><td>{}</td><td>{}</td><td>{annotations}</td></tr>",
            cell(&a.name),
            state_class(&a.severity),
            cell(&a.severity),
            state_class(&a.state),
            cell(&a.state),
            value(a.value),
            ago(a.active_since, now),
        );
    }
    h.push_str("</table>\n");
    if alerts.total > alerts.shown.len() {
        let _ = writeln!(
            h,
            "<p class=\"muted\">and {} more (see <a href=\"/api/v2/alerts\">/api/v2/alerts</a>)</p>",
            alerts.total - alerts.shown.len()
        );
    }
}

fn render_notifications(
    h: &mut String,
    notes: Option<&[NotificationView]>,
    outbox: Option<u64>,
    now: SystemTime,
) {
    h.push_str("<h2 id=\"notifications\">Notifications</h2>\n");
    match outbox {
        Some(d) => {
            let _ = writeln!(h, "<p>Outbox depth: <b>{d}</b></p>");
        }
        None => h.push_str("<p>Outbox depth: <span class=\"none\">none (no outbox)</span></p>\n"),
    }
    let Some(notes) = notes else {
        h.push_str("<p class=\"none\">none (no notification dispatcher is running)</p>\n");
        return;
    };
    if notes.is_empty() {
        h.push_str("<p class=\"none\">none</p>\n");
        return;
    }
    let mut sorted: Vec<&NotificationView> = notes.iter().collect();
    sorted.sort_by_key(|n| std::cmp::Reverse(n.at));
    h.push_str("<table><tr><th>when</th><th>receiver</th><th>group</th><th>status</th><th>result</th><th>attempts</th><th>error</th></tr>\n");
    for n in sorted.iter().take(MAX_NOTIFICATIONS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            ago(n.at, now),
            cell(&n.receiver),
            cell(&n.group),
            state_class(&n.status),
            cell(&n.status),
            state_class(&n.result),
            cell(&n.result),
            n.attempts,
            cell(n.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>\n");
    if sorted.len() > MAX_NOTIFICATIONS {
        let _ = writeln!(
            h,
            "<p class=\"muted\">{} older not shown.</p>",
            sorted.len() - MAX_NOTIFICATIONS
        );
    }
}

fn render_endpoints(h: &mut String) {
    h.push_str("<h2 id=\"endpoints\">Endpoints</h2>\n<table><tr><th>method</th><th>path</th><th>what</th></tr>\n");
    for (method, path, what) in endpoints() {
        let target = if linkable(method, path) {
            format!("<a href=\"{path}\">{path}</a>")
        } else {
            format!("<code>{path}</code>")
        };
        let _ = writeln!(
            h,
            "<tr><td>{method}</td><td>{target}</td><td>{what}</td></tr>"
        );
    }
    h.push_str("</table>\n");
}

/// A started app with its data in a fresh temp dir (kept as long as the handle lives),
/// its config the default one changed by `edit`; for the tests of the page's sections.
#[cfg(test)]
pub(crate) fn test_app(
    edit: impl FnOnce(&mut crate::config::Config),
) -> (tempfile::TempDir, std::sync::Arc<App>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    edit(&mut config);
    let app = App::start(config, crate::config::ConfigSource::Embedded);
    (dir, app)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "\"><script>alert(1)</script>";
    const EVIL_SQ: &str = "' onmouseover=alert(1) x='";

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn snapshot() -> StatusSnapshot {
        StatusSnapshot {
            build: BuildView {
                version: "0.1.0".into(),
                revision: "abc".into(),
                started: Some(t(1_000_000)),
                config_source: "/etc/sentinel.yaml".into(),
                last_reload: None,
            },
            ..Default::default()
        }
    }

    /// Every `<tag` in the page, to check no injected element appears.
    fn tags(html: &str) -> Vec<String> {
        html.split('<')
            .skip(1)
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                    .collect()
            })
            .collect()
    }

    #[test]
    fn escape_covers_text_and_both_attribute_quotes() {
        assert_eq!(
            escape(EVIL),
            "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape(EVIL_SQ), "&#39; onmouseover=alert(1) x=&#39;");
        assert_eq!(escape("a&b\u{0}"), "a&amp;b\u{FFFD}");
    }

    #[test]
    fn malicious_labels_annotations_and_errors_stay_text() {
        let mut s = snapshot();
        s.collectors = vec![(
            "system".into(),
            CollectorStatus {
                runs: 3,
                last_run: Some(t(1_000_090)),
                last_duration_seconds: 0.012,
                success: false,
                last_error: Some(EVIL.into()),
                interval_seconds: 5.0,
                target: None,
            },
        )];
        s.alerts = Some(AlertList::of(vec![AlertView {
            name: EVIL.into(),
            severity: EVIL_SQ.into(),
            state: "firing".into(),
            labels: [
                ("name".to_string(), EVIL.to_string()),
                (EVIL_SQ.to_string(), EVIL_SQ.to_string()),
            ]
            .into(),
            annotations: [("summary".to_string(), EVIL.repeat(50))].into(),
            value: Some(1.0),
            active_since: Some(t(1_000_030)),
            silenced: false,
            inhibited: false,
        }]));
        s.notifications = Some(vec![NotificationView {
            at: Some(t(1_000_095)),
            receiver: EVIL_SQ.into(),
            group: EVIL.into(),
            status: "firing".into(),
            result: EVIL.into(),
            attempts: 2,
            error: Some(EVIL.into()),
        }]);
        let html = render(&s, t(1_000_100));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("' onmouseover"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The long annotation is cut in the cell and kept (escaped) in a title.
        assert!(html.contains("<span title=\"&quot;&gt;&lt;script&gt;"));
        let allowed = [
            "!doctype", "html", "head", "meta", "title", "/title", "style", "/style", "/head",
            "body", "h1", "/h1", "span", "/span", "nav", "a", "/a", "/nav", "h2", "/h2", "dl",
            "/dl", "dt", "/dt", "dd", "/dd", "code", "/code", "table", "/table", "tr", "/tr", "th",
            "/th", "td", "/td", "time", "/time", "p", "/p", "div", "/div", "b", "/b", "/body",
            "/html",
        ];
        for tag in tags(&html) {
            assert!(
                allowed.contains(&tag.as_str()),
                "unexpected <{tag}> in {html}"
            );
        }
        // Data never picks a class.
        assert!(html.contains("<td class=\"plain\">&#39; onmouseover"));
    }

    #[test]
    fn url_passwords_and_tokens_never_reach_the_status_page() {
        let mut s = snapshot();
        s.collectors = vec![(
            "comfyui".into(),
            CollectorStatus {
                runs: 1,
                last_run: Some(t(1_000_090)),
                last_duration_seconds: 0.01,
                success: false,
                last_error: Some("GET http://u:SECRET@h:8188/queue?token=SECRET2: refused".into()),
                interval_seconds: 5.0,
                target: None,
            },
        )];
        s.notifications = Some(vec![NotificationView {
            at: Some(t(1_000_095)),
            receiver: "am (alertmanager)".into(),
            group: "{}".into(),
            status: "firing".into(),
            result: "dead".into(),
            attempts: 1,
            error: Some("http://user:SECRET@127.0.0.1:9/api/v2/alerts: connect refused".into()),
        }]);
        let html = render(&s, t(1_000_100));
        assert!(!html.contains("SECRET"), "{html}");
        assert!(
            html.contains("http://user:&lt;redacted&gt;@127.0.0.1:9"),
            "{html}"
        );
    }

    #[test]
    fn empty_states_say_none() {
        let html = render(&snapshot(), t(1_000_100));
        assert!(html.contains("<h2 id=\"collectors\">Collectors</h2>\n<p class=\"none\">none</p>"));
        assert!(html.contains("none (no rule engine is running)"));
        assert!(html.contains("none (no notification dispatcher is running)"));
        assert!(html.contains("none (no outbox)"));
        assert!(html.contains("<dt>uptime</dt><dd>1m 40s</dd>"));
        assert!(html.contains("none since start"));
        // Registered providers with nothing to say: plain "none", and a real depth.
        let mut s = snapshot();
        s.alerts = Some(AlertList::of(vec![]));
        s.notifications = Some(vec![]);
        s.outbox_depth = Some(0);
        let html = render(&s, t(1_000_100));
        assert!(html.contains("<h2 id=\"alerts\">Active alerts</h2>\n<p class=\"none\">none</p>"));
        assert!(html.contains("Outbox depth: <b>0</b>"));
    }

    #[test]
    fn alerts_show_marks_value_and_since() {
        let mut s = snapshot();
        let base = AlertView {
            name: "GpuHot".into(),
            severity: "warning".into(),
            state: "pending".into(),
            labels: [("gpu".to_string(), "0".to_string())].into(),
            value: Some(87.5),
            active_since: Some(t(1_000_040)),
            ..Default::default()
        };
        s.alerts = Some(AlertList::of(vec![
            base.clone(),
            AlertView {
                name: "ComfyUIDown".into(),
                severity: "critical".into(),
                state: "firing".into(),
                silenced: true,
                inhibited: true,
                value: Some(0.0),
                ..base
            },
        ]));
        let html = render(&s, t(1_000_100));
        let down = html.find("ComfyUIDown").expect("firing alert shown");
        let hot = html.find("GpuHot").expect("pending alert shown");
        assert!(down < hot, "firing first");
        assert!(html
            .contains("<span class=\"tag\">silenced</span><span class=\"tag\">inhibited</span>"));
        assert!(html.contains("<code>gpu=&quot;0&quot;</code>"));
        assert!(html.contains("<td>87.5</td>"));
        assert!(html.contains("1m 0s ago"));
        assert!(html.contains("1 firing, 1 pending or other."));
    }

    #[test]
    fn failed_reload_is_shown_with_its_reason() {
        let mut s = snapshot();
        s.build.last_reload = Some((t(1_000_050), Err("c.yaml:3:5: listen: bad <addr>".into())));
        let html = render(&s, t(1_000_100));
        assert!(html.contains("failed</span>"));
        assert!(html.contains("bad &lt;addr&gt;"));
    }

    #[tokio::test]
    async fn status_page_reads_alerts_and_outbox_from_the_notifier() {
        let (_dir, app) = test_app(|_| {});
        let s = StatusSnapshot::gather(&app);
        // Read, never "unknown" (the default rules may already have fired the Watchdog).
        assert!(s.alerts.is_some() && s.notifications.is_some());
        assert_eq!(s.outbox_depth, Some(0), "no receivers, nothing queued");
        assert_eq!(s.build.config_source, "<embedded default config>");
        assert!(s.build.last_reload.is_none());

        // An alert handed to the notifier (as the rule engine does) shows on the page
        // with nothing registered in between: there is no provider to forget.
        use sentinel_base::alert::AlertSink;
        let now = chrono::Utc::now();
        app.notifier.send(vec![sentinel_base::alert::Alert {
            labels: [
                ("alertname".to_string(), "GpuHot".to_string()),
                ("severity".to_string(), "critical".to_string()),
            ]
            .into(),
            annotations: Default::default(),
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            generator_url: String::new(),
        }]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let hot = loop {
            let a = StatusSnapshot::gather(&app)
                .alerts
                .unwrap_or_default()
                .shown;
            let hot = a.into_iter().find(|a| a.name == "GpuHot");
            if hot.is_some() || std::time::Instant::now() > deadline {
                break hot;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let hot = hot.expect("the notifier's alert reaches the page within 5 s");
        assert_eq!(
            (hot.severity.as_str(), hot.state.as_str()),
            ("critical", "firing")
        );
        app.runner.stop_all();
    }

    /// The page takes the first MAX_ALERTS without sorting the rest: the same alerts in
    /// the same order as a full (stable) sort would show, ties in their given order.
    #[test]
    fn alert_list_shows_what_a_full_sort_shows_first() {
        let all: Vec<AlertView> = (0..1234u64)
            .map(|i| {
                let r = i.wrapping_mul(2654435761) % 1000;
                AlertView {
                    name: ["A", "B", "C"][(r % 3) as usize].into(),
                    severity: ["critical", "warning", "info"][(r / 3 % 3) as usize].into(),
                    state: ["firing", "pending"][(r / 9 % 2) as usize].into(),
                    active_since: Some(t(1_000 + r / 18 % 4)),
                    labels: [("i".to_string(), i.to_string())].into(),
                    ..Default::default()
                }
            })
            .collect();
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let list = AlertList::of(all.clone());
        assert_eq!(list.shown, sorted[..MAX_ALERTS]);
        assert_eq!(list.total, all.len());
        assert_eq!(
            list.firing,
            all.iter().filter(|a| a.state == "firing").count()
        );
        let few = AlertList::of(all[..7].to_vec());
        assert_eq!(few.shown.len(), 7);
        let mut s = snapshot();
        s.alerts = Some(list);
        let html = render(&s, t(2_000));
        assert!(html.contains(&format!("and {} more", all.len() - MAX_ALERTS)));
    }

    /// Picked while the notifier lends its alerts, the page's list is what copying
    /// every alert and then sorting would give.
    #[tokio::test]
    async fn status_page_copies_only_the_alerts_it_shows() {
        use sentinel_base::alert::AlertSink;
        let (_dir, app) = test_app(|_| {});
        let now = chrono::Utc::now();
        let n = MAX_ALERTS + 100;
        app.notifier.send(
            (0..n)
                .map(|i| sentinel_base::alert::Alert {
                    labels: [
                        ("alertname".to_string(), format!("Hot{}", i % 7)),
                        (
                            "severity".to_string(),
                            ["critical", "warning"][i % 2].into(),
                        ),
                        ("i".to_string(), i.to_string()),
                    ]
                    .into(),
                    annotations: Default::default(),
                    starts_at: now - chrono::Duration::seconds((i % 5) as i64),
                    ends_at: now + chrono::Duration::hours(1),
                    generator_url: String::new(),
                })
                .collect(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (picked, full) = loop {
            let picked = StatusSnapshot::gather(&app).alerts.unwrap();
            let values = app.rules.alert_values();
            let full = AlertList::of(
                app.notifier
                    .alerts()
                    .into_iter()
                    .map(|a| alert_view(a, &values))
                    .collect(),
            );
            let done = picked.total >= n && picked.total == full.total;
            if done || std::time::Instant::now() > deadline {
                break (picked, full);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        app.runner.stop_all();
        assert!(picked.total >= n, "{} alerts", picked.total);
        assert_eq!(picked.shown.len(), MAX_ALERTS);
        assert_eq!(picked, full);
    }

    #[test]
    fn values_read_well() {
        assert_eq!(value(Some(1.0)), "1");
        assert_eq!(value(Some(0.125)), "0.125");
        assert_eq!(value(Some(f64::NAN)), "NaN");
        assert_eq!(value(Some(f64::INFINITY)), "+Inf");
        assert_eq!(value(None), "—");
        assert_eq!(human(Duration::from_secs(90_061)), "1d 1h");
    }

    #[test]
    fn comfyui_row_says_down_with_the_reason_when_comfyui_does_not_answer() {
        let row = |target: Option<crate::collect::TargetState>| {
            let mut s = snapshot();
            s.collectors = vec![(
                "comfyui".into(),
                CollectorStatus {
                    runs: 4,
                    last_run: Some(t(1_000_090)),
                    last_duration_seconds: 0.003,
                    success: true,
                    last_error: None,
                    interval_seconds: 5.0,
                    target,
                },
            )];
            let html = render(&s, t(1_000_100));
            html.lines()
                .find(|l| l.starts_with("<tr><td>comfyui</td>"))
                .expect("comfyui row")
                .to_string()
        };
        let down = row(Some(crate::collect::TargetState {
            target: "http://127.0.0.1:8188/".into(),
            up: false,
            last_error: Some("/system_stats: connect, /queue: connect".into()),
        }));
        assert!(down.contains("<td class=\"bad\">down</td>"), "{down}");
        assert!(!down.contains(">ok<"), "{down}");
        assert!(
            down.contains("http://127.0.0.1:8188/ is down: /system_stats: connect"),
            "{down}"
        );
        let up = row(Some(crate::collect::TargetState {
            target: "http://127.0.0.1:8188/".into(),
            up: true,
            last_error: None,
        }));
        assert!(up.contains("<td class=\"ok\">ok</td>"), "{up}");
    }

    #[test]
    fn endpoint_list_is_the_routers_list_and_includes_the_query_api() {
        let html = render(&snapshot(), t(1_000_100));
        let routes = crate::http::routes();
        assert!(routes.iter().any(|r| r.path == "/api/v1/query"));
        for r in &routes {
            assert!(
                html.contains(&format!("<tr><td>{}</td>", r.methods))
                    && html.contains(&format!(">{}<", r.path)),
                "{} {} missing from the page",
                r.methods,
                r.path
            );
        }
        let rows = html
            .split("<h2 id=\"endpoints\">")
            .nth(1)
            .unwrap()
            .matches("<tr><td>")
            .count();
        assert_eq!(
            rows,
            routes.len(),
            "one row per route, no hand-written extras"
        );
        assert!(html.contains("<a href=\"/api/v1/query\">/api/v1/query</a>"));
    }
}
