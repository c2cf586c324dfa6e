//! The no-reference image checks, apart from any I/O: decode bytes (with limits, so a
//! small compressed file cannot expand into gigabytes), reduce the image to grey, and
//! measure what the checks need. `quality/mod.rs` feeds it bytes that `fetch.rs` read
//! and turns the verdicts into metrics. Everything here is pure and unit-tested on
//! images generated in the tests.

use image::{GrayImage, ImageError, ImageReader};
use std::io::Cursor;

/// Why an image could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// More pixels than configured; never decoded (it would cost too much memory).
    #[error("image is {width}x{height}, over the limit of {max_pixels} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Not a PNG or JPEG, truncated, or corrupt.
    #[error("cannot decode image: {0}")]
    Invalid(#[from] ImageError),
    #[error("cannot read image header: {0}")]
    Header(#[from] std::io::Error),
}

/// What the checks measured on one image. All values are on the 8-bit grey scale (0–255).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures {
    pub width: u32,
    pub height: u32,
    pub mean: f64,
    /// Population standard deviation of the grey pixels: near 0 for a uniform image.
    pub stddev: f64,
    /// Variance of the 4-neighbour Laplacian over the interior pixels; `None` when the
    /// image is smaller than 3x3 and has no interior.
    pub sharpness: Option<f64>,
}

/// Decodes PNG or JPEG bytes into a grey image, refusing images over `max_pixels`
/// before any pixel buffer is allocated.
pub fn decode_grey(bytes: &[u8], max_pixels: u64) -> Result<GrayImage, DecodeError> {
    let (width, height) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()?
        .into_dimensions()?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Room for the decoded image at up to 16 bits x 4 channels, plus the grey copy.
    limits.max_alloc = Some(max_pixels.saturating_mul(10));
    reader.limits(limits);
    Ok(reader.decode()?.into_luma8())
}

/// Measures a grey image. Integer sums keep it exact: a 16384² image of Laplacian
/// values up to ±1020 sums its squares to below 2^45.
pub fn measure(img: &GrayImage) -> Measures {
    let (w, h) = img.dimensions();
    let px = img.as_raw();
    let n = px.len() as f64;
    let (mut sum, mut sumsq) = (0u64, 0u64);
    for &p in px {
        sum += u64::from(p);
        sumsq += u64::from(p) * u64::from(p);
    }
    let (mean, stddev) = if px.is_empty() {
        (0.0, 0.0)
    } else {
        let mean = sum as f64 / n;
        (mean, (sumsq as f64 / n - mean * mean).max(0.0).sqrt())
    };
    Measures {
        width: w,
        height: h,
        mean,
        stddev,
        sharpness: laplacian_variance(px, w as usize, h as usize),
    }
}

fn laplacian_variance(px: &[u8], w: usize, h: usize) -> Option<f64> {
    if w < 3 || h < 3 {
        return None;
    }
    let (mut sum, mut sumsq) = (0i64, 0i64);
    for y in 1..h - 1 {
        let (up, row, down) = (
            &px[(y - 1) * w..y * w],
            &px[y * w..(y + 1) * w],
            &px[(y + 1) * w..(y + 2) * w],
        );
        for x in 1..w - 1 {
            let l = i64::from(up[x]) + i64::from(down[x]) + i64::from(row[x - 1])
                - 4 * i64::from(row[x])
                + i64::from(row[x + 1]);
            sum += l;
            sumsq += l * l;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    Some((sumsq as f64 / n - mean * mean).max(0.0))
}

/// Thresholds of the checks (see `QualityConfig` for their meaning and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub blank_max_stddev: f64,
    pub min_sharpness: f64,
    pub min_width: u32,
    pub min_height: u32,
}

/// A failed check, as the `check` label of `quality_image_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    Blank,
    Blurry,
    TooSmall,
    DecodeError,
    FetchError,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Blank,
        Check::Blurry,
        Check::TooSmall,
        Check::DecodeError,
        Check::FetchError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Blank => "blank",
            Check::Blurry => "blurry",
            Check::TooSmall => "too_small",
            Check::DecodeError => "decode_error",
            Check::FetchError => "fetch_error",
        }
    }
}

/// The tone of a blank image: black is the typical half-precision VAE failure (NaN
/// latents decode to zeros), white the inverted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Black,
    White,
    Other,
}

impl Tone {
    pub const ALL: [Tone; 3] = [Tone::Black, Tone::White, Tone::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Black => "black",
            Tone::White => "white",
            Tone::Other => "other",
        }
    }
}

/// Mean grey levels at or beyond which a blank image counts as black or white.
const BLACK_MAX_MEAN: f64 = 8.0;
const WHITE_MIN_MEAN: f64 = 247.0;

/// The checks an image failed, and the tone when it is blank. A blank image is not
/// also called blurry: it has no edges to be sharp, and one cause is enough.
pub fn verdict(m: &Measures, t: &Thresholds) -> (Vec<Check>, Option<Tone>) {
    let mut failed = Vec::new();
    let mut tone = None;
    if m.stddev < t.blank_max_stddev {
        failed.push(Check::Blank);
        tone = Some(if m.mean <= BLACK_MAX_MEAN {
            Tone::Black
        } else if m.mean >= WHITE_MIN_MEAN {
            Tone::White
        } else {
            Tone::Other
        });
    } else if m.sharpness.is_some_and(|s| s < t.min_sharpness) {
        failed.push(Check::Blurry);
    }
    if m.width < t.min_width || m.height < t.min_height {
        failed.push(Check::TooSmall);
    }
    (failed, tone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma};

    fn thresholds() -> Thresholds {
        Thresholds {
            blank_max_stddev: 2.0,
            min_sharpness: 20.0,
            min_width: 64,
            min_height: 64,
        }
    }

    #[test]
    fn uniform_black_is_blank_and_black() {
        let img = ImageBuffer::from_pixel(64, 64, Luma([0u8]));
        let m = measure(&img);
        assert_eq!((m.mean, m.stddev, m.sharpness), (0.0, 0.0, Some(0.0)));
        assert_eq!(
            verdict(&m, &thresholds()),
            (vec![Check::Blank], Some(Tone::Black))
        );
    }

    #[test]
    fn uniform_white_and_grey_tones() {
        let white = measure(&ImageBuffer::from_pixel(64, 64, Luma([255u8])));
        assert_eq!(verdict(&white, &thresholds()).1, Some(Tone::White));
        let grey = measure(&ImageBuffer::from_pixel(64, 64, Luma([128u8])));
        assert_eq!(verdict(&grey, &thresholds()).1, Some(Tone::Other));
    }

    #[test]
    fn checkerboard_is_sharp_and_blurred_copy_is_softer() {
        let board = ImageBuffer::from_fn(64, 64, |x, y| {
            Luma([if (x / 4 + y / 4) % 2 == 0 { 0u8 } else { 255 }])
        });
        let sharp = measure(&board);
        let soft = measure(&image::imageops::blur(&board, 3.0));
        assert!(sharp.stddev > 100.0, "{sharp:?}");
        assert!(
            soft.sharpness.unwrap() < sharp.sharpness.unwrap() / 10.0,
            "{sharp:?} {soft:?}"
        );
        assert_eq!(verdict(&sharp, &thresholds()).0, vec![]);
    }

    #[test]
    fn tiny_images_have_no_sharpness_and_are_too_small() {
        let m = measure(&ImageBuffer::from_fn(2, 2, |x, _| Luma([x as u8 * 200])));
        assert_eq!(m.sharpness, None);
        assert_eq!(verdict(&m, &thresholds()).0, vec![Check::TooSmall]);
    }

    #[test]
    fn decode_refuses_too_many_pixels_before_decoding() {
        let mut png = Vec::new();
        ImageBuffer::from_pixel(100, 100, Luma([7u8]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(matches!(
            decode_grey(&png, 9_999),
            Err(DecodeError::TooManyPixels { .. })
        ));
        assert_eq!(decode_grey(&png, 10_000).unwrap().dimensions(), (100, 100));
        assert!(matches!(
            decode_grey(&png[..png.len() / 2], 10_000),
            Err(DecodeError::Invalid(_))
        ));
        assert!(decode_grey(b"not an image", 10_000).is_err());
    }
}
