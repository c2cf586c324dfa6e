//! The quality collector's image checks on images generated here: from a mounted output
//! folder and through a stand-in for ComfyUI's `/view`, path-traversal attempts on
//! both, and the byte budgets.

use comfy_sentinel::collect::quality::{analyze, QualityCollector, QualityConfig};
use comfy_sentinel::collect::{BuildContext, Collector, OutputImage, OutputQueue};
use comfy_sentinel::metrics::registry::Registry;
use comfy_sentinel::metrics::{MetricFamily, Suffix};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn png(img: impl Into<image::DynamicImage>) -> Vec<u8> {
    let mut out = Vec::new();
    img.into()
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn black() -> RgbImage {
    ImageBuffer::from_pixel(128, 128, Rgb([0, 0, 0]))
}

/// Deterministic noise (a small LCG), so the test never depends on a random seed.
fn noise() -> RgbImage {
    noise_of(128)
}

fn noise_of(side: u32) -> RgbImage {
    let mut s: u32 = 12345;
    ImageBuffer::from_fn(side, side, |_, _| {
        let mut px = [0u8; 3];
        for c in &mut px {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *c = (s >> 16) as u8;
        }
        Rgb(px)
    })
}

fn checkerboard() -> GrayImage {
    ImageBuffer::from_fn(128, 128, |x, y| {
        Luma([if (x / 8 + y / 8) % 2 == 0 { 0 } else { 255 }])
    })
}

fn blurred() -> GrayImage {
    image::imageops::blur(&checkerboard(), 4.0)
}

fn jpeg_of(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::from(img.clone())
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out
}

fn sharpness(img: &GrayImage) -> f64 {
    analyze::measure(img).sharpness.expect("larger than 3x3")
}

/// A threshold between the blurred and the sharp checkerboard; asserts they differ.
fn blur_threshold() -> f64 {
    let (sharp, soft) = (sharpness(&checkerboard()), sharpness(&blurred()));
    assert!(
        soft < sharp / 4.0,
        "blur must lower sharpness: {soft} vs {sharp}"
    );
    (sharp * soft).sqrt()
}

fn out(subfolder: &str, filename: &str) -> OutputImage {
    OutputImage {
        prompt_id: "prompt-1".into(),
        filename: filename.into(),
        subfolder: subfolder.into(),
        kind: "output".into(),
    }
}

fn ctx(queue: &OutputQueue) -> BuildContext {
    BuildContext {
        registry: Registry::new(),
        data_dir: std::env::temp_dir(),
        outputs: queue.clone(),
    }
}

fn config() -> QualityConfig {
    QualityConfig {
        min_sharpness: blur_threshold(),
        min_width: 64,
        min_height: 64,
        max_images_per_run: 100,
        ..QualityConfig::default()
    }
}

fn value(fams: &[MetricFamily], name: &str, label: Option<(&str, &str)>) -> f64 {
    let f = fams
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"));
    f.samples
        .iter()
        .find(|s| {
            matches!(s.suffix, Suffix::None | Suffix::Count)
                && label.is_none_or(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
        .value
}

fn failures(fams: &[MetricFamily], check: &str) -> f64 {
    value(fams, "quality_image_failures_total", Some(("check", check)))
}

/// Writes the standard set of images into `dir` and returns what ComfyUI would list.
fn write_set(dir: &Path) -> Vec<OutputImage> {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let full = png(checkerboard());
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("black.png", png(black())),
        ("noise.png", png(noise())),
        ("noise.jpg", jpeg_of(&noise())),
        ("board.png", full.clone()),
        ("blurred.png", png(blurred())),
        ("truncated.png", full[..full.len() / 2].to_vec()),
        // Sharp and varied, only too small.
        (
            "small.png",
            png(ImageBuffer::from_fn(16, 16, |x, y| {
                Luma([if (x + y) % 2 == 0 { 0u8 } else { 255 }])
            })),
        ),
    ];
    let mut listed = Vec::new();
    for (name, bytes) in files {
        let sub = if name == "board.png" { "sub" } else { "" };
        std::fs::write(dir.join(sub).join(name), bytes).unwrap();
        listed.push(out(sub, name));
    }
    listed
}

/// Checks the verdicts on `write_set`'s images.
fn assert_set_verdicts(fams: &[MetricFamily], extra_fetch_errors: f64) {
    assert_eq!(
        value(fams, "quality_images_checked_total", None),
        7.0 + extra_fetch_errors
    );
    assert_eq!(failures(fams, "blank"), 1.0, "black");
    assert_eq!(
        value(fams, "quality_image_blank_total", Some(("tone", "black"))),
        1.0
    );
    assert_eq!(failures(fams, "blurry"), 1.0, "the blurred board only");
    assert_eq!(failures(fams, "decode_error"), 1.0, "truncated");
    assert_eq!(failures(fams, "too_small"), 1.0, "16x16");
    assert_eq!(failures(fams, "fetch_error"), extra_fetch_errors);
    // Six decoded images, each measured once.
    assert_eq!(value(fams, "quality_image_width_pixels", None), 6.0);
    assert_eq!(value(fams, "quality_image_pixel_stddev", None), 6.0);
}

#[tokio::test]
async fn output_dir_images_are_checked_and_traversal_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("output");
    let mut listed = write_set(&root);
    // Targets outside the output folder: a sibling file and a symlink to it.
    std::fs::write(tmp.path().join("secret.png"), png(noise())).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.png"), root.join("link.png")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
    let escapes = [
        out("", "../secret.png"),
        out("..", "secret.png"),
        out(tmp.path().to_str().unwrap(), "secret.png"),
        out("", "link.png"),
        out("up", "secret.png"),
        out("", "missing.png"),
    ];
    listed.extend(escapes.iter().cloned());

    let queue = OutputQueue::default();
    for img in listed {
        queue.push(img);
    }
    let cfg = QualityConfig {
        output_dir: Some(root.clone()),
        // Nothing listens here: an image read through /view would be a fetch error too,
        // but an output image must never be fetched that way when output_dir is set.
        comfyui_url: Some("http://127.0.0.1:9".into()),
        ..config()
    };
    let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://unused").unwrap();
    let fams = c.collect().await.unwrap();
    assert_set_verdicts(&fams, escapes.len() as f64);
    // The queue is drained; a second run checks nothing new.
    let again = c.collect().await.unwrap();
    assert_eq!(
        value(&again, "quality_images_checked_total", None),
        value(&fams, "quality_images_checked_total", None)
    );
}

/// A stand-in for ComfyUI's `/view`: serves files by (subfolder, filename, type) and
/// records every request target it receives.
async fn view_server(
    files: HashMap<(String, String, String), Vec<u8>>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (files, seen) = (files.clone(), seen2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(target.clone());
                let u = url::Url::parse(&format!("http://x{target}")).unwrap();
                let q: HashMap<String, String> = u.query_pairs().into_owned().collect();
                let key = (
                    q.get("subfolder").cloned().unwrap_or_default(),
                    q.get("filename").cloned().unwrap_or_default(),
                    q.get("type").cloned().unwrap_or_default(),
                );
                let (status, body) = match (u.path(), files.get(&key)) {
                    ("/view", Some(b)) => ("200 OK", b.clone()),
                    _ => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn view_images_are_checked_and_traversal_never_requested() {
    let tmp = tempfile::tempdir().unwrap();
    let listed = write_set(tmp.path());
    let mut files = HashMap::new();
    for img in &listed {
        let bytes = std::fs::read(tmp.path().join(&img.subfolder).join(&img.filename)).unwrap();
        files.insert(
            (
                img.subfolder.clone(),
                img.filename.clone(),
                "output".to_string(),
            ),
            bytes,
        );
    }
    let (base, seen) = view_server(files).await;
    let queue = OutputQueue::default();
    for img in &listed {
        queue.push(img.clone());
    }
    let escapes = [
        out("", "../secret.png"),
        out("../..", "secret.png"),
        out("/etc", "passwd"),
        out("", "a/b.png"),
    ];
    for img in &escapes {
        queue.push(img.clone());
    }
    // Not on the server: a 404 is a fetch error.
    queue.push(out("", "gone.png"));
    // A preview: not checked unless configured.
    queue.push(OutputImage {
        kind: "temp".into(),
        ..out("", "noise.png")
    });
    // An animated WEBP from SaveAnimatedWEBP: a format the checks do not decode.
    queue.push(out("", "ComfyUI_00001_.webp"));
    let cfg = QualityConfig {
        comfyui_url: Some(base),
        ..config()
    };
    let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://unused").unwrap();
    let fams = c.collect().await.unwrap();
    assert_set_verdicts(&fams, escapes.len() as f64 + 1.0);
    assert_eq!(
        value(
            &fams,
            "quality_images_skipped_total",
            Some(("reason", "type"))
        ),
        1.0
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), listed.len() + 1, "{seen:?}");
    for t in &seen {
        assert!(t.starts_with("/view?filename="), "{t}");
        assert!(
            !t.contains("..") && !t.contains("%2F..") && !t.contains("etc"),
            "{t}"
        );
    }
}

#[tokio::test]
async fn byte_and_count_budgets_bound_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let noise = png(noise());
    let n = noise.len() as u64;
    for i in 0..5 {
        std::fs::write(tmp.path().join(format!("{i}.png")), &noise).unwrap();
    }
    std::fs::write(tmp.path().join("big.png"), png(noise_of(256))).unwrap();
    let queue = OutputQueue::default();
    queue.push(out("", "big.png"));
    for i in 0..5 {
        queue.push(out("", &format!("{i}.png")));
    }
    let cfg = QualityConfig {
        output_dir: Some(tmp.path().to_path_buf()),
        // Room for two and a half noise images per run; the 256x256 noise (four times
        // the bytes) is over the per-image cap.
        max_bytes_per_image: n,
        max_bytes_per_run: 2 * n + n / 2,
        max_images_per_run: 10,
        ..config()
    };
    let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://unused").unwrap();
    let fams = c.collect().await.unwrap();
    assert_eq!(
        value(
            &fams,
            "quality_images_skipped_total",
            Some(("reason", "too_large"))
        ),
        1.0
    );
    assert_eq!(value(&fams, "quality_images_checked_total", None), 2.0);
    // The third image waited, untouched, and later runs finish the queue.
    let mut runs = 0;
    let mut checked = 2.0;
    while checked < 5.0 && runs < 10 {
        checked = value(
            &c.collect().await.unwrap(),
            "quality_images_checked_total",
            None,
        );
        runs += 1;
    }
    assert_eq!((checked, runs), (5.0, 2), "two per run, then the last one");

    // The count cap: one per run.
    let queue = OutputQueue::default();
    for i in 0..3 {
        queue.push(out("", &format!("{i}.png")));
    }
    let cfg = QualityConfig {
        max_images_per_run: 1,
        ..cfg
    };
    let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://unused").unwrap();
    let fams = c.collect().await.unwrap();
    assert_eq!(value(&fams, "quality_images_checked_total", None), 1.0);
}

#[tokio::test]
async fn queue_overflow_is_reported_as_dropped() {
    let queue = OutputQueue::default();
    for i in 0..OutputQueue::CAPACITY + 3 {
        queue.push(out("", &format!("{i}.png")));
    }
    let cfg = QualityConfig {
        image_types: vec!["none".into()],
        ..config()
    };
    let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://127.0.0.1:9").unwrap();
    let fams = c.collect().await.unwrap();
    assert_eq!(value(&fams, "quality_images_dropped_total", None), 3.0);
    // Every failure series exists from the first run, at zero.
    for check in [
        "blank",
        "blurry",
        "too_small",
        "decode_error",
        "fetch_error",
    ] {
        assert_eq!(failures(&fams, check), 0.0);
    }
}

#[test]
fn quality_config_rejections_name_the_field() {
    let cases = [
        (
            "collectors: {quality: {max_bytes_per_run: 10}}",
            "collectors.quality.max_bytes_per_run",
        ),
        (
            "collectors: {quality: {max_images_per_run: 0}}",
            "collectors.quality.max_images_per_run",
        ),
        (
            "collectors: {quality: {comfyui_url: 'ftp://x'}}",
            "collectors.quality.comfyui_url",
        ),
        (
            "collectors: {quality: {fetch_timeout: 20s}}",
            "collectors.quality.fetch_timeout",
        ),
        (
            "collectors: {quality: {min_sharpness: -1}}",
            "collectors.quality.min_sharpness",
        ),
        ("collectors: {quality: {no_such: 1}}", "collectors.quality"),
    ];
    for (yaml, path) in cases {
        let e = comfy_sentinel::config::parse("c.yaml", yaml).expect_err(yaml);
        assert!(e.path.starts_with(path), "{yaml}: {e}");
    }
}

/// Against a real ComfyUI (its base URL in `SENTINEL_TEST_COMFYUI_URL`, e.g. one started
/// with a real-ComfyUI script on CPU): submit a graph of core nodes that saves a black
/// and a small white image, then check both through the real `/view`. ComfyUI is not a
/// package CI can install, so this runs on request only:
/// `SENTINEL_TEST_COMFYUI_URL=http://127.0.0.1:8188 cargo test --test tests real_comfyui -- --ignored`.
#[tokio::test]
#[ignore = "needs a real ComfyUI at SENTINEL_TEST_COMFYUI_URL"]
async fn real_comfyui_view_serves_the_checked_images() {
    let Ok(base) = std::env::var("SENTINEL_TEST_COMFYUI_URL") else {
        panic!("set SENTINEL_TEST_COMFYUI_URL to a real ComfyUI's base URL");
    };
    let base = base.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let graph = serde_json::json!({"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 128, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "sentinel_quality/black"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 16777215}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "sentinel_quality/small"}}
    }});
    let resp: serde_json::Value = http
        .post(format!("{base}/prompt"))
        .json(&graph)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = resp["prompt_id"]
        .as_str()
        .expect("prompt accepted")
        .to_string();
    let mut entry = serde_json::Value::Null;
    for _ in 0..240 {
        let h: serde_json::Value = http
            .get(format!("{base}/history/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !h[&id].is_null() {
            entry = h[&id].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let outputs = entry["outputs"]
        .as_object()
        .expect("history entry with outputs");
    let queue = OutputQueue::default();
    let mut listed = 0;
    for node in outputs.values() {
        for img in node["images"].as_array().unwrap() {
            queue.push(OutputImage {
                prompt_id: id.clone(),
                filename: img["filename"].as_str().unwrap().into(),
                subfolder: img["subfolder"].as_str().unwrap().into(),
                kind: img["type"].as_str().unwrap().into(),
            });
            listed += 1;
        }
    }
    assert_eq!(listed, 2, "{entry}");
    // ComfyUI answers 403 to this; the collector must not even ask.
    queue.push(out("..", "sentinel_quality/black_00001_.png"));
    let pushed = queue.take(OutputQueue::CAPACITY);
    // Through /view, and, when ComfyUI's output folder is given too, from the folder.
    let mut configs = vec![QualityConfig {
        comfyui_url: Some(base),
        ..config()
    }];
    if let Ok(dir) = std::env::var("SENTINEL_TEST_COMFYUI_OUTPUT_DIR") {
        configs.push(QualityConfig {
            output_dir: Some(dir.into()),
            comfyui_url: Some("http://127.0.0.1:9".into()),
            ..config()
        });
    }
    for cfg in configs {
        for img in &pushed {
            queue.push(img.clone());
        }
        let c = QualityCollector::from_config(&cfg, &ctx(&queue), "http://unused").unwrap();
        let fams = c.collect().await.unwrap();
        let how = format!("output_dir {:?}", cfg.output_dir);
        assert_eq!(
            value(&fams, "quality_images_checked_total", None),
            3.0,
            "{how}"
        );
        assert_eq!(failures(&fams, "blank"), 2.0, "{how}");
        assert_eq!(
            value(&fams, "quality_image_blank_total", Some(("tone", "black"))),
            1.0
        );
        assert_eq!(
            value(&fams, "quality_image_blank_total", Some(("tone", "white"))),
            1.0
        );
        assert_eq!(failures(&fams, "too_small"), 1.0, "{how}");
        assert_eq!(failures(&fams, "fetch_error"), 1.0, "{how}");
        assert_eq!(failures(&fams, "decode_error"), 0.0, "{how}");
    }
}
