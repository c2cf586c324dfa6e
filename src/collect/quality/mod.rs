//! Quality collector: built-in no-reference checks on ComfyUI's new output images.
//! The workflow collector pushes each new output image into the [`OutputQueue`]; every
//! run here takes a bounded number of them, reads each (`fetch.rs`: the mounted output
//! folder or ComfyUI's `/view`), decodes and measures it off the async threads
//! (`analyze.rs`), and counts the failed checks. Scores that the application pushes
//! are the ingest API's, not this module's.
//!
//! Metrics (counters and histograms are cumulative over the collector's life):
//! - `quality_images_checked_total`: images taken for checking (including those that
//!   then failed to fetch or decode), so `failures / checked` is a ratio.
//! - `quality_image_failures_total{check}`, check ∈ blank, blurry, too_small,
//!   decode_error, fetch_error (a fixed set, every series exported from the start).
//! - `quality_image_blank_total{tone}`, tone ∈ black, white, other: the blank ones by
//!   tone, since black is the half-precision VAE failure.
//! - `quality_images_skipped_total{reason}`: not checked, by design (reason ∈ type: an
//!   image type not configured; format: not PNG or JPEG by its name, such as the WEBP of
//!   the animated-save nodes; too_large: over the byte or pixel limits).
//! - `quality_images_dropped_total`: dropped from the hand-off queue when it was full.
//! - histograms `quality_image_sharpness` (variance of the Laplacian on 8-bit grey),
//!   `quality_image_pixel_stddev`, `quality_image_width_pixels`,
//!   `quality_image_height_pixels`. Sizes are histograms rather than last values: a run
//!   checks several images and a scrape would see only the last one, while a histogram
//!   counts every image and answers "what share was below 512 px".

pub mod analyze;
pub mod fetch;

use super::comfyui::output::{OutputImage, OutputQueue};
use super::{BuildContext, CollectError, Collector};
use crate::metrics::{HistogramSnapshot, MetricFamily};
use analyze::{Check, DecodeError, Thresholds, Tone};
use fetch::{FetchError, ViewClient};
use parking_lot::Mutex;
use sentinel_base::config::Dur;
use sentinel_base::config::FieldError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where ComfyUI listens when neither this section nor the workflow collector says.
pub const DEFAULT_COMFYUI_URL: &str = "http://127.0.0.1:8188";

/// `collectors.quality`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Run the built-in checks on new ComfyUI output images.
    pub image_checks: bool,
    /// How often to look for new images.
    pub interval: Dur,
    /// Limit of one run; images not reached stay queued for the next run. Unset:
    /// `min(9s, interval)`.
    pub timeout: Option<Dur>,
    /// ComfyUI's output folder as mounted into the sidecar. When set, `output` images
    /// are read from it; otherwise (and for other image types) through ComfyUI's `/view`.
    pub output_dir: Option<PathBuf>,
    /// ComfyUI's base URL for `/view`; unset means the workflow collector's URL, or
    /// http://127.0.0.1:8188.
    pub comfyui_url: Option<String>,
    /// Limit of one `/view` request. A run starts a new image only while this plus 1s
    /// of its `timeout` is left. Unset: `min(3s, timeout)`.
    pub fetch_timeout: Option<Dur>,
    /// Image types (ComfyUI's `type`: `output`, `temp`) to check; previews are `temp`.
    pub image_types: Vec<String>,
    /// Most images checked per run.
    pub max_images_per_run: usize,
    /// Larger files are skipped (`quality_images_skipped_total{reason="too_large"}`).
    pub max_bytes_per_image: u64,
    /// Most bytes read per run; the image that would pass it waits for the next run.
    pub max_bytes_per_run: u64,
    /// Images with more pixels are skipped before decoding. Bounds memory: decoding
    /// holds the image (4 bytes a pixel for 8-bit RGBA) plus a grey copy; the default
    /// 4096x4096 costs about 80 MiB at most.
    pub max_pixels: u64,
    /// An image whose grey standard deviation (0–255 scale) is below this is blank. A
    /// failed half-precision VAE gives all-black images (deviation 0); real images
    /// rarely stay below 5.
    pub blank_max_stddev: f64,
    /// An image whose Laplacian variance (0–255 grey) is below this is blurry. Sharp
    /// photos score in the hundreds or more; 20 flags only heavily smoothed images.
    /// Tune per workflow; 0 disables the check.
    pub min_sharpness: f64,
    /// Narrower images fail `too_small`.
    pub min_width: u32,
    /// Shorter images fail `too_small`.
    pub min_height: u32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            image_checks: true,
            interval: Dur::secs(10),
            timeout: None,
            output_dir: None,
            comfyui_url: None,
            fetch_timeout: None,
            image_types: vec!["output".to_string()],
            max_images_per_run: 8,
            max_bytes_per_image: 32 << 20,
            max_bytes_per_run: 128 << 20,
            max_pixels: 4096 * 4096,
            blank_max_stddev: 2.0,
            min_sharpness: 20.0,
            min_width: 64,
            min_height: 64,
        }
    }
}

impl QualityConfig {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(9);

    /// The run's timeout: the explicit one, or `min(9s, interval)`.
    pub fn timeout(&self) -> std::time::Duration {
        super::resolve_timeout(self.timeout, Self::DEFAULT_TIMEOUT, self.interval.get())
    }

    pub const DEFAULT_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

    /// One `/view` request's limit: the explicit one, or `min(3s, timeout)`.
    pub fn fetch_timeout(&self) -> std::time::Duration {
        self.fetch_timeout
            .map(Dur::get)
            .unwrap_or_else(|| Self::DEFAULT_FETCH_TIMEOUT.min(self.timeout()))
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        super::validate_schedule(self.interval.get(), self.timeout, Self::DEFAULT_TIMEOUT)?;
        let fetch = self.fetch_timeout();
        if fetch.is_zero() || fetch > self.timeout() {
            return Err(FieldError::new(
                "fetch_timeout",
                format!(
                    "must be more than 0s and at most timeout ({})",
                    sentinel_base::config::format_duration(self.timeout())
                ),
            ));
        }
        if let Some(u) = &self.comfyui_url {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                _ => {
                    return Err(FieldError::new(
                        "comfyui_url",
                        format!("{u:?} is not an http(s) URL"),
                    ))
                }
            }
        }
        if self.max_images_per_run == 0 || self.max_images_per_run > OutputQueue::CAPACITY {
            return Err(FieldError::new(
                "max_images_per_run",
                format!("must be between 1 and {}", OutputQueue::CAPACITY),
            ));
        }
        if self.max_bytes_per_image == 0 {
            return Err(FieldError::new(
                "max_bytes_per_image",
                "must be more than 0",
            ));
        }
        if self.max_bytes_per_run < self.max_bytes_per_image {
            return Err(FieldError::new(
                "max_bytes_per_run",
                "must be at least max_bytes_per_image",
            ));
        }
        if self.max_pixels == 0 {
            return Err(FieldError::new("max_pixels", "must be more than 0"));
        }
        for (field, v) in [
            ("blank_max_stddev", self.blank_max_stddev),
            ("min_sharpness", self.min_sharpness),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(FieldError::new(field, "must be a number ≥ 0"));
            }
        }
        Ok(())
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            blank_max_stddev: self.blank_max_stddev,
            min_sharpness: self.min_sharpness,
            min_width: self.min_width,
            min_height: self.min_height,
        }
    }
}

/// Time kept for decoding and measuring one image when deciding whether to start it.
const DECODE_RESERVE: Duration = Duration::from_secs(1);

const SHARPNESS_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
const STDDEV_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0];
const SIZE_BUCKETS: &[f64] = &[
    64.0, 128.0, 256.0, 512.0, 768.0, 1024.0, 1536.0, 2048.0, 3072.0, 4096.0, 8192.0,
];

/// Why an image was not checked.
#[derive(Debug, Clone, Copy)]
enum Skip {
    Type,
    Format,
    TooLarge,
}

impl Skip {
    const ALL: [Skip; 3] = [Skip::Type, Skip::Format, Skip::TooLarge];

    fn as_str(self) -> &'static str {
        match self {
            Skip::Type => "type",
            Skip::Format => "format",
            Skip::TooLarge => "too_large",
        }
    }
}

/// Whether the file name says PNG or JPEG, the formats the checks decode. ComfyUI's
/// `images` outputs also list WEBP, GIF and video files (the animated-save nodes);
/// those are skipped rather than counted as decode errors.
fn decodable_name(filename: &str) -> bool {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// Cumulative counts since the collector started.
struct Stats {
    checked: u64,
    failures: [u64; Check::ALL.len()],
    tones: [u64; Tone::ALL.len()],
    skipped: [u64; Skip::ALL.len()],
    sharpness: HistogramSnapshot,
    stddev: HistogramSnapshot,
    width: HistogramSnapshot,
    height: HistogramSnapshot,
}

impl Stats {
    fn new() -> Self {
        Stats {
            checked: 0,
            failures: [0; Check::ALL.len()],
            tones: [0; Tone::ALL.len()],
            skipped: [0; Skip::ALL.len()],
            sharpness: HistogramSnapshot::new(SHARPNESS_BUCKETS),
            stddev: HistogramSnapshot::new(STDDEV_BUCKETS),
            width: HistogramSnapshot::new(SIZE_BUCKETS),
            height: HistogramSnapshot::new(SIZE_BUCKETS),
        }
    }

    fn fail(&mut self, c: Check) {
        self.failures[c as usize] += 1;
    }

    fn families(&self, dropped: u64) -> Vec<MetricFamily> {
        let mut out = vec![
            MetricFamily::counter(
                "quality_images_checked_total",
                "Output images taken for checking, including those that failed to fetch or decode.",
            )
            .with::<&str, &str>(&[], self.checked as f64),
            MetricFamily::counter(
                "quality_images_dropped_total",
                "Output images dropped from the hand-off queue because it was full.",
            )
            .with::<&str, &str>(&[], dropped as f64),
        ];
        let mut f = MetricFamily::counter(
            "quality_image_failures_total",
            "Output images that failed a check, by check.",
        );
        for c in Check::ALL {
            f.push(&[("check", c.as_str())], self.failures[c as usize] as f64);
        }
        out.push(f);
        let mut f = MetricFamily::counter(
            "quality_image_blank_total",
            "Blank output images by tone (black is the half-precision VAE failure).",
        );
        for t in Tone::ALL {
            f.push(&[("tone", t.as_str())], self.tones[t as usize] as f64);
        }
        out.push(f);
        let mut f = MetricFamily::counter(
            "quality_images_skipped_total",
            "Output images not checked: a type not configured, a format not checked, or over the size limits.",
        );
        for s in Skip::ALL {
            f.push(&[("reason", s.as_str())], self.skipped[s as usize] as f64);
        }
        out.push(f);
        for (name, help, h) in [
            (
                "quality_image_sharpness",
                "Variance of the Laplacian of the grey output image (0-255 scale); low is blurry.",
                &self.sharpness,
            ),
            (
                "quality_image_pixel_stddev",
                "Standard deviation of the grey pixels of the output image (0-255 scale); near 0 is blank.",
                &self.stddev,
            ),
            (
                "quality_image_width_pixels",
                "Width of the checked output images.",
                &self.width,
            ),
            (
                "quality_image_height_pixels",
                "Height of the checked output images.",
                &self.height,
            ),
        ] {
            let mut f = MetricFamily::histogram(name, help);
            f.push_histogram(Vec::new(), h);
            out.push(f);
        }
        out
    }
}

/// What happened to one image taken from the queue.
enum Outcome {
    Measured(analyze::Measures),
    Failed(Check, String),
    Skipped(Skip),
    /// Fits the per-image cap but not what is left of this run's byte budget.
    Later,
}

pub struct QualityCollector {
    cfg: QualityConfig,
    outputs: OutputQueue,
    view: Result<ViewClient, String>,
    stats: Mutex<Stats>,
    /// An image taken but left for the next run (it did not fit the byte budget).
    held: Mutex<Option<OutputImage>>,
}

impl QualityCollector {
    /// `fallback_url` is the workflow collector's ComfyUI URL, used when this section
    /// names none.
    pub fn from_config(
        cfg: &QualityConfig,
        ctx: &BuildContext,
        fallback_url: &str,
    ) -> Option<Self> {
        if !cfg.image_checks {
            return None;
        }
        let base = cfg.comfyui_url.as_deref().unwrap_or(fallback_url);
        let view = url::Url::parse(base)
            .map_err(|e| format!("comfyui_url {base:?}: {e}"))
            .and_then(|u| ViewClient::new(&u, cfg.fetch_timeout()));
        Some(QualityCollector {
            cfg: cfg.clone(),
            outputs: ctx.outputs.clone(),
            view,
            stats: Mutex::new(Stats::new()),
            held: Mutex::new(None),
        })
    }

    async fn read(&self, img: &OutputImage, cap: u64) -> Result<Vec<u8>, FetchError> {
        match (&self.cfg.output_dir, img.kind.as_str()) {
            (Some(dir), "output") => {
                let (dir, img) = (dir.clone(), img.clone());
                tokio::task::spawn_blocking(move || fetch::read_from_dir(&dir, &img, cap))
                    .await
                    .map_err(|e| FetchError::Io {
                        path: "<output_dir>".to_string(),
                        source: std::io::Error::other(e.to_string()),
                    })?
            }
            _ => match &self.view {
                Ok(v) => v.fetch(img, cap).await,
                Err(e) => Err(FetchError::NoClient(e.clone())),
            },
        }
    }

    async fn check_one(&self, img: &OutputImage, budget_left: u64) -> (Outcome, u64) {
        if !self.cfg.image_types.contains(&img.kind) {
            return (Outcome::Skipped(Skip::Type), 0);
        }
        // A name that tries to leave the folder is a fetch error whatever its extension.
        if let Err(e) = fetch::check_names(img) {
            return (Outcome::Failed(Check::FetchError, e.to_string()), 0);
        }
        if !decodable_name(&img.filename) {
            return (Outcome::Skipped(Skip::Format), 0);
        }
        let cap = self.cfg.max_bytes_per_image.min(budget_left);
        let bytes = match self.read(img, cap).await {
            Ok(b) => b,
            Err(FetchError::TooLarge { size, .. }) => {
                let fits_one = size.is_some_and(|s| s <= self.cfg.max_bytes_per_image);
                let budget_bound = cap < self.cfg.max_bytes_per_image;
                // Over the run's budget only: it may fit next run with a fresh budget.
                return if budget_bound && (fits_one || size.is_none()) {
                    (Outcome::Later, 0)
                } else {
                    (Outcome::Skipped(Skip::TooLarge), 0)
                };
            }
            Err(e) => return (Outcome::Failed(Check::FetchError, e.to_string()), 0),
        };
        let n = bytes.len() as u64;
        let max_pixels = self.cfg.max_pixels;
        let decoded = tokio::task::spawn_blocking(move || {
            analyze::decode_grey(&bytes, max_pixels).map(|g| analyze::measure(&g))
        })
        .await;
        let outcome = match decoded {
            Ok(Ok(m)) => Outcome::Measured(m),
            Ok(Err(DecodeError::TooManyPixels { .. })) => Outcome::Skipped(Skip::TooLarge),
            Ok(Err(e)) => Outcome::Failed(Check::DecodeError, e.to_string()),
            Err(e) => Outcome::Failed(Check::DecodeError, format!("decoder panicked: {e}")),
        };
        (outcome, n)
    }

    /// Counts one outcome. `warned` is whether this run already logged a failure at
    /// warn level: one per run is enough to notice a misconfigured source.
    fn record(&self, img: &OutputImage, outcome: &Outcome, warned: &mut bool) {
        let mut s = self.stats.lock();
        match outcome {
            Outcome::Later => {}
            Outcome::Skipped(k) => s.skipped[*k as usize] += 1,
            Outcome::Failed(c, why) => {
                s.checked += 1;
                s.fail(*c);
                if *warned {
                    tracing::debug!(file = %img.filename, check = c.as_str(), error = %why, "cannot check output image");
                } else {
                    tracing::warn!(file = %img.filename, check = c.as_str(), error = %why, "cannot check output image");
                    *warned = true;
                }
            }
            Outcome::Measured(m) => {
                s.checked += 1;
                s.width.observe(f64::from(m.width));
                s.height.observe(f64::from(m.height));
                s.stddev.observe(m.stddev);
                if let Some(sh) = m.sharpness {
                    s.sharpness.observe(sh);
                }
                let (failed, tone) = analyze::verdict(m, &self.cfg.thresholds());
                for c in &failed {
                    s.fail(*c);
                }
                if let Some(t) = tone {
                    s.tones[t as usize] += 1;
                }
                if !failed.is_empty() {
                    tracing::info!(
                        prompt_id = %img.prompt_id,
                        file = %img.filename,
                        failed = ?failed.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        stddev = m.stddev,
                        sharpness = ?m.sharpness,
                        "output image failed quality checks"
                    );
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Collector for QualityCollector {
    fn name(&self) -> &'static str {
        "quality"
    }

    async fn collect(&self) -> Result<Vec<MetricFamily>, CollectError> {
        let mut checked = 0;
        let mut warned = false;
        let mut budget = self.cfg.max_bytes_per_run;
        // The runner drops a run that outlives `timeout`, losing the image in flight;
        // start another only while a slow fetch and its decode still fit.
        let last_start = Instant::now()
            + self
                .cfg
                .timeout()
                .saturating_sub(self.cfg.fetch_timeout() + DECODE_RESERVE);
        // Skipped images cost nothing, but bound the loop anyway by what the queue holds.
        for _ in 0..=OutputQueue::CAPACITY {
            if checked >= self.cfg.max_images_per_run
                || (checked > 0 && Instant::now() > last_start)
            {
                break;
            }
            let next = self
                .held
                .lock()
                .take()
                .or_else(|| self.outputs.take(1).pop());
            let Some(img) = next else { break };
            let (outcome, used) = self.check_one(&img, budget).await;
            if matches!(outcome, Outcome::Later) {
                *self.held.lock() = Some(img);
                break;
            }
            if !matches!(outcome, Outcome::Skipped(_)) {
                checked += 1;
            }
            budget = budget.saturating_sub(used);
            self.record(&img, &outcome, &mut warned);
        }
        Ok(self.stats.lock().families(self.outputs.dropped()))
    }
}

/// What a reload compares: the section and the ComfyUI URL it falls back to (it holds
/// no secrets).
pub fn fingerprint<'a>(cfg: &'a QualityConfig, comfyui_url: &'a str) -> impl Serialize + 'a {
    (cfg, comfyui_url)
}

/// The list's entry for this collector (see `collect::COLLECTORS`). The image checks
/// fetch from the workflow collector's ComfyUI unless told otherwise.
pub fn spec(c: &super::CollectorsConfig, ctx: &BuildContext) -> Option<super::CollectorSpec> {
    let cfg = &c.quality;
    let comfyui_url = c.comfyui.url.as_str();
    QualityCollector::from_config(cfg, ctx, comfyui_url).map(|q| {
        super::CollectorSpec::new(
            q,
            &fingerprint(cfg, comfyui_url),
            cfg.interval.get(),
            cfg.timeout(),
        )
    })
}
