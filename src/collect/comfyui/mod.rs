//! ComfyUI workflow collector: polls a ComfyUI server's HTTP API (`/system_stats`,
//! `/queue`, `/history?max_items=N`) and exports queue depth, prompts by outcome and
//! duration, node counts and errors, RAM/VRAM and version info. Shapes follow ComfyUI
//! 0.3.64; `api.rs` parses them, `history.rs` decides what is new and keeps the counters
//! in `data_dir` across restarts. New output images go to the quality collector through
//! [`OutputQueue`] (`output.rs`).
//!
//! ComfyUI being down is a state, not a collector failure: the run succeeds with
//! `comfyui_up 0`, the counters keep their values and unread gauges are left out.
//! Queue item bodies carry unstripped API keys: they are counted, never kept or logged.

pub mod api;
pub mod history;
pub mod output;

use super::{BuildContext, CollectError, Collector};
use crate::metrics::{labels, HistogramSnapshot, MetricFamily, DEFAULT_BUCKETS};
use history::{Tracker, FAILURE_CLASSES};
use output::OutputQueue;
use sentinel_base::config::FieldError;
use sentinel_base::config::{Dur, SecretFile, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `collectors.comfyui`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ComfyuiConfig {
    /// Poll the ComfyUI server.
    pub enabled: bool,
    /// Base URL of ComfyUI; may carry a path prefix when it sits behind a proxy
    /// (`https://gpu-01.example.com/comfy`).
    pub url: String,
    /// Request the `/api/...` form of every route (both forms exist in ComfyUI).
    pub api_prefix: bool,
    /// How often to poll.
    pub interval: Dur,
    /// Limit for each HTTP request, body included. Unset: `min(2s, interval)`.
    pub timeout: Option<Dur>,
    /// `max_items` of the regular `/history` poll: the newest N entries.
    pub history_page_size: usize,
    /// Upper bound when paging up through a history whose newest page is all new.
    pub history_max_items: usize,
    /// Largest response body read; a larger one is dropped and counted.
    pub max_body_bytes: usize,
    /// Distinct (node_type, exception_type) pairs kept in `comfyui_node_errors_total`;
    /// the rest fold into `other`.
    pub max_node_error_series: usize,
    /// Bearer token sent as `Authorization: Bearer ...` (ComfyUI behind an auth proxy).
    pub bearer_token: Option<SecretString>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<SecretFile>,
    /// Extra request headers (values may be `${ENV}` references; never logged).
    pub headers: BTreeMap<String, SecretString>,
    /// Upper bounds (seconds) of the `comfyui_prompt_duration_seconds` buckets: finite,
    /// above 0, strictly increasing, at most [`MAX_DURATION_BUCKETS`].
    pub duration_buckets: Vec<f64>,
}

/// Most bucket bounds `duration_buckets` may list (each is a series per outcome).
pub const MAX_DURATION_BUCKETS: usize = 64;

impl Default for ComfyuiConfig {
    fn default() -> Self {
        ComfyuiConfig {
            enabled: true,
            url: "http://127.0.0.1:8188".into(),
            api_prefix: false,
            interval: Dur::secs(5),
            timeout: None,
            history_page_size: 64,
            history_max_items: 10_001,
            max_body_bytes: 32 << 20,
            max_node_error_series: 100,
            bearer_token: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
            duration_buckets: history::DURATION_BUCKETS.to_vec(),
        }
    }
}

impl ComfyuiConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The run's timeout: the explicit one, or `min(2s, interval)`.
    pub fn timeout(&self) -> Duration {
        super::resolve_timeout(self.timeout, Self::DEFAULT_TIMEOUT, self.interval.get())
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        super::validate_schedule(self.interval.get(), self.timeout, Self::DEFAULT_TIMEOUT)?;
        match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => return Err(FieldError::new("url", "must be an http:// or https:// URL")),
            Err(e) => return Err(FieldError::new("url", format!("invalid URL: {e}"))),
        }
        if self.history_page_size == 0 {
            return Err(FieldError::new("history_page_size", "must be at least 1"));
        }
        if self.history_max_items < self.history_page_size {
            return Err(FieldError::new(
                "history_max_items",
                "must be at least history_page_size",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(FieldError::new("max_body_bytes", "must be at least 1024"));
        }
        if self.max_node_error_series == 0 {
            return Err(FieldError::new(
                "max_node_error_series",
                "must be at least 1",
            ));
        }
        crate::metrics::validate_buckets(&self.duration_buckets)
            .map_err(|m| FieldError::new("duration_buckets", m.to_string()))?;
        if self.duration_buckets.len() > MAX_DURATION_BUCKETS {
            return Err(FieldError::new(
                "duration_buckets",
                format!("must list at most {MAX_DURATION_BUCKETS} bounds"),
            ));
        }
        sentinel_base::config::either_secret_at(
            &self.bearer_token,
            &self.bearer_token_file,
            "bearer_token",
        )?;
        for (name, value) in &self.headers {
            let path = format!("headers.{name}");
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FieldError::new(path.clone(), "invalid header name"))?;
            if n == reqwest::header::ORIGIN {
                // ComfyUI refuses a request whose Origin differs from its Host (403).
                return Err(FieldError::new(path, "Origin must not be sent to ComfyUI"));
            }
            reqwest::header::HeaderValue::from_str(value.0.expose())
                .map_err(|_| FieldError::new(path, "invalid header value"))?;
        }
        Ok(())
    }
}

/// A `/history` body above this size has its memory handed back to the OS after the
/// poll (see [`release_freed_memory`]).
const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Hands memory freed after a large `/history` page back to the OS. glibc keeps freed
/// heap memory for reuse (and raises its mmap threshold after freeing a big block, so
/// the next big body lands on the heap too): without this a single 25 MB page left the
/// process about 200 MB larger for good. `malloc_trim` walks every arena and returns
/// whole free pages; it costs a few milliseconds and runs only after such a page.
fn release_freed_memory() {
    sentinel_store::release_freed_memory();
}

/// The endpoints polled, as used in the `endpoint` label.
const ENDPOINTS: [&str; 3] = ["system_stats", "queue", "history"];

/// Why a request gave nothing usable (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
enum RequestError {
    #[error("connect")]
    Connect,
    #[error("timeout")]
    Timeout,
    #[error("http_status")]
    Status,
    #[error("too_large")]
    TooLarge,
    #[error("body")]
    Body,
    #[error("invalid_json")]
    InvalidJson,
}

impl RequestError {
    fn as_str(self) -> &'static str {
        match self {
            RequestError::Connect => "connect",
            RequestError::Timeout => "timeout",
            RequestError::Status => "http_status",
            RequestError::TooLarge => "too_large",
            RequestError::Body => "body",
            RequestError::InvalidJson => "invalid_json",
        }
    }
}

/// Process-lifetime state besides the persisted [`Tracker`].
struct State {
    tracker: Tracker,
    request_seconds: BTreeMap<&'static str, HistogramSnapshot>,
    request_errors: BTreeMap<(&'static str, &'static str), u64>,
    state_write_errors: u64,
    /// Entries left uncounted because paging stopped at `history_max_items` or a page
    /// could not be read.
    history_skipped: u64,
    /// Whether the last poll found ComfyUI up, to log changes once rather than every poll.
    was_up: Option<bool>,
}

pub struct ComfyuiCollector {
    cfg: ComfyuiConfig,
    base: String,
    /// `base` without user info, for logs.
    shown_url: String,
    client: reqwest::Client,
    state_path: PathBuf,
    outputs: OutputQueue,
    state: tokio::sync::Mutex<State>,
    /// ComfyUI's own state after the last poll, for the status page.
    target: parking_lot::Mutex<Option<crate::collect::TargetState>>,
}

impl ComfyuiCollector {
    /// The collector when enabled; a client that cannot be built is logged and leaves
    /// the collector off (validation has already checked the inputs).
    pub fn from_config(cfg: &ComfyuiConfig, ctx: &BuildContext) -> Option<Self> {
        if !cfg.enabled {
            return None;
        }
        match Self::try_build(cfg, ctx) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the ComfyUI collector");
                None
            }
        }
    }

    fn try_build(cfg: &ComfyuiConfig, ctx: &BuildContext) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        let token = sentinel_base::config::either_secret(&cfg.bearer_token, &cfg.bearer_token_file)
            .map_err(|m| anyhow::anyhow!(m))?;
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose()))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        for (name, value) in &cfg.headers {
            let mut v = reqwest::header::HeaderValue::from_str(value.0.expose())?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::HeaderName::from_bytes(name.as_bytes())?, v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            // A proxy's redirect (to a login page, another host) is not ComfyUI.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout())
            .build()?;
        let base = format!(
            "{}{}",
            cfg.url.trim_end_matches('/'),
            if cfg.api_prefix { "/api" } else { "" }
        );
        let state_path = ctx.data_dir.join("comfyui-history.json");
        let mut tracker = match Tracker::load(&state_path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %state_path.display(), error = %e,
                    "cannot read the ComfyUI history state; starting afresh");
                Tracker::default()
            }
        };
        tracker.set_duration_buckets(&cfg.duration_buckets);
        let shown_url = match url::Url::parse(&base) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            Err(_) => "<invalid url>".into(),
        };
        Ok(ComfyuiCollector {
            cfg: cfg.clone(),
            base,
            shown_url,
            client,
            state_path,
            outputs: ctx.outputs.clone(),
            target: parking_lot::Mutex::new(None),
            state: tokio::sync::Mutex::new(State {
                tracker,
                request_seconds: ENDPOINTS
                    .iter()
                    .map(|e| (*e, HistogramSnapshot::new(DEFAULT_BUCKETS)))
                    .collect(),
                request_errors: BTreeMap::new(),
                state_write_errors: 0,
                history_skipped: 0,
                was_up: None,
            }),
        })
    }

    /// One GET, timed and counted, with the body read up to `max_body_bytes`.
    async fn get(
        &self,
        st: &mut State,
        endpoint: &'static str,
        path_and_query: &str,
    ) -> Result<bytes::Bytes, RequestError> {
        let (took, result) = self.timed_fetch(path_and_query).await;
        record(st, endpoint, took, &result);
        result
    }

    async fn timed_fetch(
        &self,
        path_and_query: &str,
    ) -> (Duration, Result<bytes::Bytes, RequestError>) {
        let started = Instant::now();
        let result = self.fetch(path_and_query).await;
        (started.elapsed(), result)
    }

    async fn fetch(&self, path_and_query: &str) -> Result<bytes::Bytes, RequestError> {
        let url = format!("{}/{}", self.base, path_and_query);
        let fut = async {
            let mut resp = self.client.get(&url).send().await.map_err(|e| {
                if e.is_timeout() {
                    RequestError::Timeout
                } else {
                    RequestError::Connect
                }
            })?;
            if !resp.status().is_success() {
                return Err(RequestError::Status);
            }
            let limit = self.cfg.max_body_bytes;
            let announced = resp.content_length();
            if announced.is_some_and(|n| n > limit as u64) {
                return Err(RequestError::TooLarge);
            }
            // Memory: the body is held once. With a Content-Length (ComfyUI always
            // sends one) it is read into a buffer of exactly that size; without, the
            // chunks are kept as they came and joined once at the end, never through
            // a doubling buffer that would briefly hold two or three copies.
            let mut chunks: Vec<bytes::Bytes> = Vec::new();
            let mut exact = announced.map(|n| bytes::BytesMut::with_capacity(n as usize));
            let mut len = 0usize;
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        len += c.len();
                        if len > limit {
                            return Err(RequestError::TooLarge);
                        }
                        match &mut exact {
                            Some(buf) => buf.extend_from_slice(&c),
                            None => chunks.push(c),
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => return Err(RequestError::Timeout),
                    Err(_) => return Err(RequestError::Body),
                }
            }
            Ok(match exact {
                Some(buf) => buf.freeze(),
                None if chunks.len() == 1 => chunks.pop().unwrap_or_default(),
                None => {
                    let mut buf = bytes::BytesMut::with_capacity(len);
                    for c in chunks.drain(..) {
                        buf.extend_from_slice(&c);
                    }
                    buf.freeze()
                }
            })
        };
        tokio::time::timeout(self.cfg.timeout(), fut)
            .await
            .unwrap_or(Err(RequestError::Timeout))
    }

    /// Reads new history entries: the newest page, paged up (doubling `max_items`,
    /// bounded in size and time) while every entry on it is new. Only one page is
    /// applied per poll, so nothing is counted twice.
    async fn poll_history(&self, st: &mut State, deadline: Instant) {
        let largest = self.read_history(st, deadline).await;
        if largest > TRIM_AFTER_BYTES {
            release_freed_memory();
        }
    }

    /// [`poll_history`](Self::poll_history)'s work; returns the largest body read, so
    /// that memory freed after a big page can be handed back to the OS.
    async fn read_history(&self, st: &mut State, deadline: Instant) -> usize {
        let mut largest = 0;
        let mut n = self.cfg.history_page_size;
        // The last page read whose entries were all new, kept in case a larger one fails.
        let mut smaller: Option<bytes::Bytes> = None;
        loop {
            let body = match self
                .get(st, "history", &format!("history?max_items={n}"))
                .await
            {
                Ok(b) => {
                    largest = largest.max(b.len());
                    b
                }
                // Too big or too slow to serve: it will not get better, so count the
                // newest entries now and leave the older ones uncounted.
                Err(RequestError::TooLarge | RequestError::Timeout) => break,
                // Anything else may be transient: try the whole page again next poll.
                Err(_) => {
                    smaller = None;
                    break;
                }
            };
            let page = match api::parse_history_page(&body) {
                Ok(p) => p,
                Err(_) => {
                    *st.request_errors
                        .entry(("history", RequestError::InvalidJson.as_str()))
                        .or_default() += 1;
                    st.tracker.counts.parse_errors += 1;
                    break;
                }
            };
            let total = page.entries.len();
            let fresh = st.tracker.count_new(&page);
            let bounded =
                n >= self.cfg.history_max_items || Instant::now() + self.cfg.timeout() > deadline;
            if fresh < total || total < n || bounded {
                if fresh == total && total == n {
                    st.history_skipped += 1;
                }
                self.apply(st, &page).await;
                return largest;
            }
            drop(page);
            smaller = Some(body);
            n = (n * 2).min(self.cfg.history_max_items);
        }
        if let Some(body) = smaller {
            st.history_skipped += 1;
            if let Ok(page) = api::parse_history_page(&body) {
                self.apply(st, &page).await;
            }
        }
        largest
    }

    async fn apply(&self, st: &mut State, page: &api::HistoryPage<'_>) {
        let applied = st.tracker.apply(page, self.cfg.max_node_error_series);
        self.outputs.count_dropped(applied.images_dropped);
        for img in applied.images {
            self.outputs.push(img);
        }
        if applied.new_entries > 0 {
            if let Err(e) = history::save_atomic(&self.state_path, st.tracker.to_bytes()).await {
                st.state_write_errors += 1;
                tracing::warn!(path = %self.state_path.display(), error = %e,
                    "cannot save the ComfyUI history state");
            }
        }
    }
}

#[async_trait::async_trait]
impl Collector for ComfyuiCollector {
    fn name(&self) -> &'static str {
        "comfyui"
    }

    fn target(&self) -> Option<crate::collect::TargetState> {
        self.target.lock().clone()
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let started = Instant::now();
        let mut st = self.state.lock().await;
        let ((t1, stats), (t2, queue)) =
            tokio::join!(self.timed_fetch("system_stats"), self.timed_fetch("queue"));
        record(&mut st, "system_stats", t1, &stats);
        record(&mut st, "queue", t2, &queue);
        let (stats_err, queue_err) = (stats.as_ref().err().copied(), queue.as_ref().err().copied());
        let stats = stats
            .ok()
            .and_then(|b| parse_or_count(&mut st, "system_stats", api::parse_system_stats(&b)));
        let queue = queue
            .ok()
            .and_then(|b| parse_or_count(&mut st, "queue", api::parse_queue(&b)));
        let up = stats.is_some() && queue.is_some();
        let why: Vec<String> = [
            ("system_stats", stats_err, stats.is_some()),
            ("queue", queue_err, queue.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, parsed)| !parsed)
        .map(|(endpoint, err, _)| {
            let reason = err.map_or("invalid_json", |e| e.as_str());
            format!("/{endpoint}: {reason}")
        })
        .collect();
        *self.target.lock() = Some(crate::collect::TargetState {
            target: self.shown_url.clone(),
            up,
            last_error: (!up).then(|| why.join(", ")),
        });
        if st.was_up != Some(up) {
            if up {
                tracing::info!(url = %self.shown_url, "ComfyUI is up");
            } else {
                let reason = [&stats_err, &queue_err]
                    .into_iter()
                    .flatten()
                    .next()
                    .map_or("invalid_json", |e| e.as_str());
                tracing::warn!(url = %self.shown_url, reason, "ComfyUI is down");
            }
            st.was_up = Some(up);
        }
        if up {
            self.poll_history(&mut st, started + self.cfg.interval.get() * 2)
                .await;
        }
        Ok(families(&st, up, stats.as_ref(), queue))
    }
}

fn record(
    st: &mut State,
    endpoint: &'static str,
    took: Duration,
    result: &Result<bytes::Bytes, RequestError>,
) {
    if let Some(h) = st.request_seconds.get_mut(endpoint) {
        h.observe(took.as_secs_f64());
    }
    if let Err(e) = result {
        *st.request_errors.entry((endpoint, e.as_str())).or_default() += 1;
    }
}

fn parse_or_count<T>(
    st: &mut State,
    endpoint: &'static str,
    parsed: Result<T, api::ParseError>,
) -> Option<T> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) => {
            *st.request_errors
                .entry((endpoint, RequestError::InvalidJson.as_str()))
                .or_default() += 1;
            None
        }
    }
}

fn families(
    st: &State,
    up: bool,
    stats: Option<&api::SystemStats>,
    queue: Option<api::QueueCounts>,
) -> Vec<MetricFamily> {
    let c = &st.tracker.counts;
    let mut out = Vec::new();
    out.push(
        MetricFamily::gauge(
            "comfyui_up",
            "Whether ComfyUI answered the last poll (1) or not (0).",
        )
        .with::<&str, &str>(&[], if up { 1.0 } else { 0.0 }),
    );
    if let Some(q) = queue {
        out.push(
            MetricFamily::gauge("comfyui_queue_running", "Prompts ComfyUI is executing.")
                .with::<&str, &str>(&[], q.running as f64),
        );
        out.push(
            MetricFamily::gauge(
                "comfyui_queue_pending",
                "Prompts waiting in ComfyUI's queue.",
            )
            .with::<&str, &str>(&[], q.pending as f64),
        );
    }
    if let Some(s) = stats {
        let sys = &s.system;
        let mut info = MetricFamily::gauge(
            "comfyui_info",
            "ComfyUI version information from /system_stats.",
        );
        info.push(
            &[
                ("version", label_value(sys.comfyui_version.as_deref())),
                (
                    "python_version",
                    label_value(
                        sys.python_version
                            .as_deref()
                            .and_then(|v| v.split_whitespace().next()),
                    ),
                ),
                (
                    "pytorch_version",
                    label_value(sys.pytorch_version.as_deref()),
                ),
            ],
            1.0,
        );
        out.push(info);
        if let Some(v) = sys.ram_total {
            out.push(
                MetricFamily::gauge("comfyui_ram_total_bytes", "Host RAM ComfyUI reports.")
                    .with::<&str, &str>(&[], v),
            );
        }
        if let Some(v) = sys.ram_free {
            out.push(
                MetricFamily::gauge("comfyui_ram_free_bytes", "Free host RAM ComfyUI reports.")
                    .with::<&str, &str>(&[], v),
            );
        }
        type Pick = fn(&api::Device) -> Option<f64>;
        let per_device: [(&str, &str, Pick); 4] = [
            (
                "comfyui_vram_total_bytes",
                "Total memory of the torch device.",
                |d| d.vram_total,
            ),
            (
                "comfyui_vram_free_bytes",
                "Free memory of the torch device.",
                |d| d.vram_free,
            ),
            (
                "comfyui_torch_vram_total_bytes",
                "Memory torch has reserved on the device.",
                |d| d.torch_vram_total,
            ),
            (
                "comfyui_torch_vram_free_bytes",
                "Reserved but unused torch memory on the device.",
                |d| d.torch_vram_free,
            ),
        ];
        for (name, help, pick) in per_device {
            let mut f = MetricFamily::gauge(name, help);
            for d in s.devices.iter().take(16) {
                if let Some(v) = pick(d) {
                    f.push(
                        &[
                            ("device", label_value(Some(&d.name))),
                            ("type", label_value(Some(&d.kind))),
                        ],
                        v,
                    );
                }
            }
            if !f.samples.is_empty() {
                out.push(f);
            }
        }
    }

    let mut prompts = MetricFamily::counter(
        "comfyui_prompts_total",
        "Prompts finished, by outcome (terminal message in /history).",
    );
    let mut durations = MetricFamily::histogram(
        "comfyui_prompt_duration_seconds",
        "Prompt execution time (terminal minus execution_start message), by outcome.",
    );
    for o in api::Outcome::ALL {
        let o = o.as_str();
        prompts.push(
            &[("outcome", o)],
            c.prompts.get(o).copied().unwrap_or(0) as f64,
        );
        let h = c.durations.get(o).cloned().unwrap_or_default();
        durations.push_histogram(
            labels(&[("outcome", o)]),
            &h.snapshot(st.tracker.duration_buckets()),
        );
    }
    out.push(prompts);
    out.push(durations);
    out.push(
        MetricFamily::counter("comfyui_nodes_executed_total", "Nodes ComfyUI executed.")
            .with::<&str, &str>(&[], c.nodes_executed as f64),
    );
    out.push(
        MetricFamily::counter(
            "comfyui_nodes_cached_total",
            "Nodes whose cached output ComfyUI reused.",
        )
        .with::<&str, &str>(&[], c.nodes_cached as f64),
    );
    let mut node_errors = MetricFamily::counter(
        "comfyui_node_errors_total",
        "Prompt failures by failing node type and exception type (capped; overflow in \"other\").",
    );
    for (nt, by) in &c.node_errors {
        for (et, n) in by {
            // Born from an event: its creation time makes its first error count.
            let created = st
                .tracker
                .node_error_created
                .get(&(nt.clone(), et.clone()))
                .copied();
            node_errors.push_created(
                labels(&[("node_type", nt.as_str()), ("exception_type", et.as_str())]),
                *n as f64,
                created,
            );
        }
    }
    out.push(node_errors);
    out.push(
        MetricFamily::counter(
            "comfyui_node_error_labels_folded_total",
            "Node errors counted under node_type=\"other\" because the series cap was reached.",
        )
        .with::<&str, &str>(&[], c.node_error_labels_folded as f64),
    );
    let mut failures = MetricFamily::counter(
        "comfyui_prompt_failures_total",
        "Failed or interrupted prompts by class (oom, cuda, model_load, interrupted, other).",
    );
    for class in FAILURE_CLASSES {
        failures.push(
            &[("class", class)],
            c.failures.get(class).copied().unwrap_or(0) as f64,
        );
    }
    out.push(failures);
    out.push(
        MetricFamily::counter(
            "comfyui_output_images_total",
            "New output images listed by successful prompts.",
        )
        .with::<&str, &str>(&[], c.output_images as f64),
    );
    out.push(
        MetricFamily::counter(
            "comfyui_history_parse_errors_total",
            "History pages or entries that could not be read.",
        )
        .with::<&str, &str>(&[], c.parse_errors as f64),
    );
    out.push(
        MetricFamily::counter(
            "comfyui_history_truncated_total",
            "Polls that stopped paging (history_max_items, time or body size) with every entry still new; older entries were left uncounted.",
        )
        .with::<&str, &str>(&[], st.history_skipped as f64),
    );
    out.push(
        MetricFamily::counter(
            "comfyui_state_write_errors_total",
            "Failed writes of the history state to data_dir.",
        )
        .with::<&str, &str>(&[], st.state_write_errors as f64),
    );
    let mut seconds = MetricFamily::histogram(
        "comfyui_api_request_duration_seconds",
        "Duration of requests to the ComfyUI API, body included.",
    );
    for (ep, h) in &st.request_seconds {
        seconds.push_histogram(labels(&[("endpoint", *ep)]), h);
    }
    out.push(seconds);
    let mut errors = MetricFamily::counter(
        "comfyui_api_request_errors_total",
        "Requests to the ComfyUI API that gave nothing usable, by endpoint and reason.",
    );
    for ((ep, reason), n) in &st.request_errors {
        errors.push(&[("endpoint", *ep), ("reason", *reason)], *n as f64);
    }
    out.push(errors);
    out
}

/// A label value from ComfyUI: bounded in length, `unknown` when missing.
fn label_value(v: Option<&str>) -> String {
    let v = v.unwrap_or("unknown");
    v.chars().take(64).collect()
}

/// What a reload compares to decide whether to restart the collector: the config as
/// serialized (secrets redacted) plus a digest of the secrets, so a rotated token
/// takes effect.
#[derive(Serialize)]
pub struct Fingerprint<'a> {
    config: &'a ComfyuiConfig,
    secrets_sha256: String,
}

pub fn fingerprint(cfg: &ComfyuiConfig) -> Fingerprint<'_> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // The file's content, not its path: a rotated token file changes the fingerprint.
    // The config was validated, so the file was readable a moment ago.
    let from_file = cfg.bearer_token_file.as_ref().and_then(|f| f.read().ok());
    for s in [
        cfg.bearer_token.as_ref().map(|t| t.0.expose()),
        from_file.as_ref().map(|s| s.expose()),
    ]
    .into_iter()
    .flatten()
    .chain(cfg.headers.values().map(|v| v.0.expose()))
    {
        h.update(s.as_bytes());
        h.update([0]);
    }
    Fingerprint {
        config: cfg,
        secrets_sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The runner's limit for one poll. The poll bounds itself (each request by `timeout`,
/// paging stops before twice the interval); this only catches the unexpected.
pub fn run_timeout(cfg: &ComfyuiConfig) -> Duration {
    cfg.interval.get() * 2 + cfg.timeout()
}

/// The list's entry for this collector (see `collect::COLLECTORS`).
pub fn spec(c: &super::CollectorsConfig, ctx: &BuildContext) -> Option<super::CollectorSpec> {
    let cfg = &c.comfyui;
    ComfyuiCollector::from_config(cfg, ctx).map(|comfyui| {
        super::CollectorSpec::new(
            comfyui,
            &fingerprint(cfg),
            cfg.interval.get(),
            run_timeout(cfg),
        )
    })
}
