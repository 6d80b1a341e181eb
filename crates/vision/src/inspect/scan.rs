//! One pass over every file, on all cores: the bytes' content hash, then the training decoder's verdict
//! ([`decode_bytes`], so a file is "unreadable" exactly when `suite finetune` would refuse it), and for the
//! decodable ones their size, their stored colour mode and their perceptual hash. Decoded pixels are dropped as soon
//! as these are taken, so memory does not grow with the data set.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};
use indicatif::{ProgressBar, ProgressStyle};

use super::splits::Example;
use crate::data::decode_bytes;
use crate::quality::phash::{content_hash, phash_gray, pil_grayscale, pil_resize_lanczos};

/// Side of the greyscale thumbnail perceptual hashes are computed on (imagehash's 32).
pub const THUMB: u32 = 32;

/// How an image stores its colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stored as greyscale (one channel, with or without alpha).
    Grey,
    /// Stored as colour, but every pixel has R = G = B: greyscale in disguise.
    RgbGrey,
    /// Colour.
    Colour,
}

/// What was learnt from a decodable image.
#[derive(Clone, Debug)]
pub struct ImageFacts {
    /// Width in pixels, after the EXIF orientation (as training sees it).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Grey or colour.
    pub mode: Mode,
    /// Whether the stored image has an alpha channel (which training drops).
    pub alpha: bool,
    /// imagehash's `phash` of the image as training decodes it.
    pub phash: u64,
    /// The 32 x 32 greyscale thumbnail the hash is taken from (Pillow's luma and Lanczos resize), kept to confirm
    /// near duplicates pixel by pixel.
    pub thumb: Vec<u8>,
}

/// What was learnt from one file.
#[derive(Clone, Debug)]
pub struct FileFacts {
    /// SHA-256 of the bytes (None when the file cannot be read at all).
    pub hash: Option<String>,
    /// The image's facts, or why it cannot be decoded.
    pub image: Result<ImageFacts, String>,
}

/// Scans every example's file on `workers` threads (0: one per core), with a progress bar; results in example
/// order.
pub fn scan(examples: &[Example], workers: usize) -> Vec<FileFacts> {
    let workers = if workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { workers };
    let bar = ProgressBar::new(examples.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30.green/blue}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix("checking files");
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<FileFacts>>> = Mutex::new(vec![None; examples.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers.min(examples.len()).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = examples.get(i) else { break };
                let facts = match std::fs::read(&e.path) {
                    Err(err) => FileFacts { hash: None, image: Err(format!("cannot read the file: {err}")) },
                    Ok(bytes) => FileFacts { hash: Some(content_hash(&bytes)), image: image_facts(&bytes) },
                };
                out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(facts);
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|f| f.expect("every index was scanned"))
        .collect()
}

/// Decodes `bytes` as training does and takes the facts of the image; the error is the decoder's reason.
pub fn image_facts(bytes: &[u8]) -> Result<ImageFacts, String> {
    let rgb = decode_bytes(bytes).map_err(|e| format!("{e:#}"))?;
    // The stored colour type comes from the header alone (the decoded pixels are always RGB8).
    let stored = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .map(|d| d.color_type());
    let grey = stored.is_some_and(|c| matches!(c, ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16));
    let mode = if grey {
        Mode::Grey
    } else if rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]) {
        Mode::RgbGrey
    } else {
        Mode::Colour
    };
    let (width, height) = rgb.dimensions();
    // A grey image replicated to RGB has the same luma as the grey original, so the hash is imagehash's of the file
    // (phash_gray of a thumbnail already THUMB x THUMB resizes nothing).
    let thumb = pil_resize_lanczos(&pil_grayscale(&DynamicImage::ImageRgb8(rgb)), THUMB, THUMB);
    let phash = phash_gray(&thumb).0;
    Ok(ImageFacts { width, height, mode, alpha: stored.is_some_and(|c| c.has_alpha()), phash, thumb: thumb.into_raw() })
}
