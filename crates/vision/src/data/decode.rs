//! Image decoding to RGB8 the way torchvision's loader sees images (`PIL.Image.open(p).convert("RGB")`), with the
//! EXIF orientation applied on top, and a parallel validation pass over a whole dataset.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::Sample;

/// File extensions read as images, lower case: torchvision's `IMG_EXTENSIONS`, matched case-insensitively.
pub const IMG_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Whether `path` has one of [`IMG_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMG_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The most pixels an image may have: PIL's decompression-bomb error threshold (`2 * MAX_IMAGE_PIXELS`, about 179
/// million pixels, 537 MB as RGB8).
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// Reads and decodes the image at `path` to RGB8 (see [`decode_bytes`]); errors name the file.
pub fn decode_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read the file", path.display()))?;
    decode_bytes(&bytes).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Decodes an encoded image to RGB8.
///
/// The format is sniffed from the bytes, not the file name, as PIL does. Colour conversion follows PIL's
/// `convert("RGB")`: grey is replicated, alpha is dropped (not composited), palettes are looked up. 16-bit
/// samples keep their high byte (`v >> 8`), which is what PIL does for 16-bit RGB; for 16-bit *grey* PIL instead
/// clips every value above 255 to white, which would erase 16-bit medical scans, so that one case deliberately
/// differs. The EXIF orientation, if any, is then applied (PIL leaves it to `ImageOps.exif_transpose`).
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage> {
    decode_with(bytes, Limits::default(), false)
}

/// Some decoder errors carry line breaks (the JPEG decoder's "I/O errors …\n"); a reason is shown on one line.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`decode_bytes`] under `limits` (largest width and height, most memory the decoded pixels may take), so that an
/// image whose header promises more (a decompression bomb sent to a server) is refused before its pixels are
/// allocated.
pub fn decode_bytes_limited(bytes: &[u8], limits: Limits) -> Result<RgbImage> {
    decode_with(bytes, limits, true)
}

/// Decodes under `limits`; `reserve_pixels` also counts the decoded pixels against `limits.max_alloc` (which
/// `DynamicImage::from_decoder` does not do, unlike `ImageReader::decode`).
fn decode_with(bytes: &[u8], limits: Limits, reserve_pixels: bool) -> Result<RgbImage> {
    if bytes.is_empty() {
        bail!("empty file");
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().context("reading the header")?;
    reader.limits(limits.clone());
    let Some(format) = reader.format() else {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        bail!("not an image in a supported format ({} bytes, starting {head})", bytes.len());
    };
    // image's errors repeat their cause in both Display and source(), so they are flattened to one message.
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(e) => anyhow!("the {format:?} image is larger than allowed: {}", one_line(e)),
        e => anyhow!("not a valid {format:?} file: {}", one_line(e)),
    })?;
    // A broken EXIF block should not make an otherwise fine picture unusable: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        bail!("the {format:?} header says the image is {w}x{h} pixels");
    }
    // A decompression bomb: a few bytes whose header promises billions of pixels. `from_decoder` allocates the
    // whole buffer up front without consulting `limits`, and a failed allocation aborts the process (a 100000x100000
    // PNG asked for 30 GB and killed `suite` with SIGABRT). Refuse it from the header, as PIL does above
    // `MAX_IMAGE_PIXELS`.
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        bail!(
            "the {format:?} header says the image is {w}x{h} pixels, more than the {} million allowed (a \
             decompression bomb or a corrupt header)",
            MAX_PIXELS / 1_000_000
        );
    }
    if reserve_pixels {
        let need = decoder.total_bytes();
        limits.clone().reserve(need).map_err(|e| {
            anyhow!("the {w}x{h} {format:?} image is larger than allowed: {e} ({} MB of pixels)", need >> 20)
        })?;
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(e) => anyhow!("the {w}x{h} {format:?} image is larger than allowed: {}", one_line(e)),
        e => anyhow!("corrupt or truncated {format:?} data: {}", one_line(e)),
    })?;
    if format == image::ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        // The JPEG decoder pads a truncated scan with grey instead of failing; PIL (without
        // LOAD_TRUNCATED_IMAGES) refuses such files, and training on half-grey pictures is never wanted.
        bail!("truncated JPEG data (no end-of-image marker)");
    }
    let mut rgb = DynamicImage::ImageRgb8(to_rgb8(img));
    rgb.apply_orientation(orientation);
    Ok(rgb.into_rgb8())
}

/// A JPEG ends with the EOI marker `FF D9`; some writers append padding or a trailer, so look near the end.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Converts any decoded image to RGB8 as PIL's `convert("RGB")` does (see [`decode_bytes`] for 16-bit grey).
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    fn hi(v: u16) -> u8 {
        (v >> 8) as u8
    }
    fn unit(v: f32) -> u8 {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageLuma16(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = hi(i.get_pixel(x, y)[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(i) => RgbImage::from_fn(w, h, |x, y| {
            let v = hi(i.get_pixel(x, y)[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y);
            image::Rgb([hi(p[0]), hi(p[1]), hi(p[2])])
        }),
        DynamicImage::ImageRgba16(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y);
            image::Rgb([hi(p[0]), hi(p[1]), hi(p[2])])
        }),
        DynamicImage::ImageRgb32F(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y);
            image::Rgb([unit(p[0]), unit(p[1]), unit(p[2])])
        }),
        DynamicImage::ImageRgba32F(i) => RgbImage::from_fn(w, h, |x, y| {
            let p = i.get_pixel(x, y);
            image::Rgb([unit(p[0]), unit(p[1]), unit(p[2])])
        }),
        // 8-bit grey, grey+alpha and RGBA: the image crate replicates grey and drops alpha, as PIL does.
        other => other.to_rgb8(),
    }
}

/// A file that failed to decode, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    /// The file.
    pub path: PathBuf,
    /// The decoder's reason.
    pub reason: String,
}

impl std::fmt::Display for BadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Decodes every sample on `workers` threads (0 = one per available core) and returns every file that fails, in
/// sample order. Catches unreadable, corrupt, truncated and mislabelled (e.g. text named `.jpg`) files before a
/// long training run reaches them.
pub fn validate(samples: &[Sample], workers: usize) -> Vec<BadFile> {
    let workers = if workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { workers };
    let next = AtomicUsize::new(0);
    let bad: Mutex<Vec<(usize, BadFile)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.min(samples.len()).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, _)) = samples.get(i) else { break };
                let reason = match std::fs::read(path) {
                    Err(e) => Some(format!("cannot read the file: {e}")),
                    Ok(bytes) => decode_bytes(&bytes).err().map(|e| format!("{e:#}")),
                };
                if let Some(reason) = reason {
                    bad.lock().unwrap_or_else(|p| p.into_inner()).push((i, BadFile { path: path.clone(), reason }));
                }
            });
        }
    });
    let mut bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    bad.sort_by_key(|(i, _)| *i);
    bad.into_iter().map(|(_, b)| b).collect()
}

/// Runs [`validate`]; with bad files present, fails listing every one of them, or with `skip_bad` drops them and
/// returns them alongside the kept samples so the caller can report them.
pub fn check_decodable(samples: Vec<Sample>, workers: usize, skip_bad: bool) -> Result<(Vec<Sample>, Vec<BadFile>)> {
    let (mut kept, bad) = check_decodable_sets(vec![samples], workers, skip_bad)?;
    Ok((kept.pop().unwrap_or_default(), bad))
}

/// [`check_decodable`] over several sets (training and validation) at once, so that one error lists every bad
/// file of all of them; returns each set's decodable images, in order.
pub fn check_decodable_sets(
    sets: Vec<Vec<Sample>>,
    workers: usize,
    skip_bad: bool,
) -> Result<(Vec<Vec<Sample>>, Vec<BadFile>)> {
    let bad: Vec<BadFile> = sets.iter().flat_map(|s| validate(s, workers)).collect();
    if bad.is_empty() {
        return Ok((sets, bad));
    }
    if !skip_bad {
        // One bad file: one line that names it and the reason; several: a count, then one line per file.
        if let [b] = bad.as_slice() {
            bail!(
                "{} cannot be decoded: {} (fix or remove it, or pass --skip-bad to drop it)",
                b.path.display(),
                b.reason
            );
        }
        let list: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
        bail!(
            "{} of {} images cannot be decoded (fix or remove them, or pass --skip-bad to drop them):\n{}",
            bad.len(),
            sets.iter().map(Vec::len).sum::<usize>(),
            list.join("\n")
        );
    }
    let dropped: std::collections::HashSet<&PathBuf> = bad.iter().map(|b| &b.path).collect();
    let kept = sets.iter().map(|s| s.iter().filter(|(p, _)| !dropped.contains(p)).cloned().collect()).collect();
    Ok((kept, bad))
}
