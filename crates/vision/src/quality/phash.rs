//! The perceptual hash of the `imagehash` package (4.3.2): `phash(image, hash_size=8, highfreq_factor=4)` is
//! `image.convert("L").resize((32, 32), LANCZOS)`, a type-II DCT (`scipy.fftpack.dct`) down the columns then along
//! the rows, the top-left 8 x 8 coefficients, each compared with their median. Near-duplicate images (rescaled,
//! recompressed, slightly edited) have hashes a few bits apart.
//!
//! The hash is only comparable with Python's if the 32 x 32 greyscale pixels are the same, so Pillow's arithmetic is
//! reproduced rather than approximated: `convert("L")` is the fixed-point ITU-R 601-2 luma of Pillow's Convert.c
//! (`(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`), and the resize is Pillow's Resample.c: Lanczos-3 weights
//! widened by the scale factor, normalised per output pixel, turned into 22-bit fixed point, and applied
//! horizontally then vertically with rounding to 8 bits after each pass.
//!
//! The DCT is summed directly in f64; scipy's FFT-based one differs in the last bits, which only matters for a
//! coefficient that is exactly at the median, i.e. for images with exactly symmetric or flat content (where
//! imagehash's own bits are decided by its rounding noise).

use std::f64::consts::PI;
use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{DynamicImage, GrayImage, ImageReader};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Side of the greyscale thumbnail the DCT runs on: hash_size 8 x highfreq_factor 4.
const IMG_SIZE: usize = 32;
/// Side of the low-frequency block that becomes the hash.
const HASH_SIZE: usize = 8;
/// Pillow's `PRECISION_BITS` (32 - 8 - 2): fixed-point bits of the resampling weights.
const PRECISION_BITS: u32 = 22;
/// Support of Pillow's Lanczos filter (3 lobes).
const LANCZOS_SUPPORT: f64 = 3.0;

/// A 64-bit perceptual hash: bit 63 is the top-left coefficient, then row by row, as imagehash's hex string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PHash(pub u64);

impl PHash {
    /// Number of differing bits: imagehash's `hash1 - hash2`.
    pub fn distance(self, other: PHash) -> u32 {
        hamming(self.0, other.0)
    }

    /// Parses imagehash's 16-digit hex form (`str(imagehash.phash(img))`).
    pub fn from_hex(hex: &str) -> Result<PHash> {
        if hex.len() != 16 {
            bail!("a 64-bit perceptual hash has 16 hex digits, not {:?}", hex);
        }
        Ok(PHash(u64::from_str_radix(hex, 16).with_context(|| format!("not a hex hash: {hex:?}"))?))
    }
}

impl fmt::Display for PHash {
    /// imagehash's `str(hash)`: 16 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for PHash {
    /// As the hex string, the form people paste and compare with imagehash's.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Number of differing bits between two 64-bit hashes.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// imagehash's `phash` of a decoded image.
pub fn phash(img: &DynamicImage) -> PHash {
    phash_gray(&pil_grayscale(img))
}

/// imagehash's `phash` of an image file (any format the `image` crate decodes; the format is guessed from the
/// content).
pub fn phash_file(path: &Path) -> Result<PHash> {
    let img = ImageReader::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("reading {}", path.display()))?
        .decode()
        .with_context(|| format!("decoding {}", path.display()))?;
    Ok(phash(&img))
}

/// imagehash's `phash` of an image that is already greyscale (Pillow mode "L").
pub fn phash_gray(gray: &GrayImage) -> PHash {
    let small = pil_resize_lanczos(gray, IMG_SIZE as u32, IMG_SIZE as u32);
    let px: Vec<f64> = small.as_raw().iter().map(|&v| f64::from(v)).collect();
    // cos(pi k (2n + 1) / 2N) for the 8 frequencies kept; scipy's unnormalised DCT-II is 2 * sum x[n] * that.
    let mut cos = [[0f64; IMG_SIZE]; HASH_SIZE];
    for (k, row) in cos.iter_mut().enumerate() {
        for (n, c) in row.iter_mut().enumerate() {
            *c = (PI * (k * (2 * n + 1)) as f64 / (2 * IMG_SIZE) as f64).cos();
        }
    }
    // Down the columns (axis 0) first, then along the rows, as imagehash; only the low frequencies are needed.
    let mut cols = [[0f64; IMG_SIZE]; HASH_SIZE];
    for k in 0..HASH_SIZE {
        for x in 0..IMG_SIZE {
            cols[k][x] = 2.0 * (0..IMG_SIZE).map(|y| px[y * IMG_SIZE + x] * cos[k][y]).sum::<f64>();
        }
    }
    let mut low = [0f64; HASH_SIZE * HASH_SIZE];
    for k in 0..HASH_SIZE {
        for l in 0..HASH_SIZE {
            low[k * HASH_SIZE + l] = 2.0 * (0..IMG_SIZE).map(|x| cols[k][x] * cos[l][x]).sum::<f64>();
        }
    }
    let mut sorted = low;
    sorted.sort_by(f64::total_cmp);
    // numpy's median of an even count: the mean of the two middle values.
    let median = (sorted[31] + sorted[32]) / 2.0;
    PHash(low.iter().fold(0u64, |h, &v| (h << 1) | u64::from(v > median)))
}

/// Pillow's `image.convert("L")`: the integer ITU-R 601-2 luma of Convert.c for colour images, the grey channel for
/// grey ones (alpha ignored, as Pillow's RGBA -> L and LA -> L). 16-bit images are first cut to their high byte, as
/// Pillow reads 16-bit RGB PNGs; 16-bit grey is clipped at 255, as Pillow's I;16 -> L. Float images go through the
/// `image` crate's 8-bit conversion (Pillow has no direct equivalent).
pub fn pil_grayscale(img: &DynamicImage) -> GrayImage {
    let luma = |r: u8, g: u8, b: u8| -> u8 {
        ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
    };
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageLuma8(g) => g.clone(),
        DynamicImage::ImageLumaA8(g) => GrayImage::from_fn(w, h, |x, y| image::Luma([g.get_pixel(x, y)[0]])),
        DynamicImage::ImageLuma16(g) => {
            GrayImage::from_fn(w, h, |x, y| image::Luma([g.get_pixel(x, y)[0].min(255) as u8]))
        }
        DynamicImage::ImageLumaA16(g) => {
            GrayImage::from_fn(w, h, |x, y| image::Luma([g.get_pixel(x, y)[0].min(255) as u8]))
        }
        DynamicImage::ImageRgb16(c) => GrayImage::from_fn(w, h, |x, y| {
            let p = c.get_pixel(x, y);
            image::Luma([luma((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)])
        }),
        DynamicImage::ImageRgba16(c) => GrayImage::from_fn(w, h, |x, y| {
            let p = c.get_pixel(x, y);
            image::Luma([luma((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)])
        }),
        DynamicImage::ImageRgba8(c) => GrayImage::from_fn(w, h, |x, y| {
            let p = c.get_pixel(x, y);
            image::Luma([luma(p[0], p[1], p[2])])
        }),
        other => {
            let c = other.to_rgb8();
            GrayImage::from_fn(w, h, |x, y| {
                let p = c.get_pixel(x, y);
                image::Luma([luma(p[0], p[1], p[2])])
            })
        }
    }
}

/// Pillow's `resize((width, height), Image.LANCZOS)` of a greyscale image (Resample.c, 8 bits per channel): a
/// horizontal pass, then a vertical one, each rounded and clipped to 8 bits. An unchanged size is a copy.
pub fn pil_resize_lanczos(gray: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (in_w, in_h) = (gray.width() as usize, gray.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let mut data = gray.as_raw().clone();
    let mut cur_w = in_w;
    if out_w != in_w {
        let (bounds, ksize, kk) = precompute_coeffs(in_w, out_w);
        let mut out = vec![0u8; out_w * in_h];
        for y in 0..in_h {
            let row = &data[y * in_w..(y + 1) * in_w];
            for (xx, o) in out[y * out_w..(y + 1) * out_w].iter_mut().enumerate() {
                let (xmin, n) = bounds[xx];
                let k = &kk[xx * ksize..xx * ksize + n];
                *o = clip8(
                    k.iter()
                        .zip(&row[xmin..xmin + n])
                        .fold(1i64 << (PRECISION_BITS - 1), |s, (&w, &p)| s + i64::from(p) * i64::from(w)),
                );
            }
        }
        data = out;
        cur_w = out_w;
    }
    if out_h != in_h {
        let (bounds, ksize, kk) = precompute_coeffs(in_h, out_h);
        let mut out = vec![0u8; cur_w * out_h];
        for (yy, &(ymin, n)) in bounds.iter().enumerate() {
            let k = &kk[yy * ksize..yy * ksize + n];
            for x in 0..cur_w {
                let s = k.iter().enumerate().fold(1i64 << (PRECISION_BITS - 1), |s, (i, &w)| {
                    s + i64::from(data[(ymin + i) * cur_w + x]) * i64::from(w)
                });
                out[yy * cur_w + x] = clip8(s);
            }
        }
        data = out;
    }
    GrayImage::from_raw(out_w as u32, out_h as u32, data).expect("buffer of the resized size")
}

/// Pillow's `clip8`: drop the fixed-point fraction (an arithmetic shift, so negatives floor) and clamp to 0..=255.
fn clip8(s: i64) -> u8 {
    (s >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `sinc_filter`.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

/// Pillow's `lanczos_filter`: sinc windowed by sinc(x / 3) on [-3, 3).
fn lanczos(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for a whole-image box: per output pixel the first input
/// pixel and the count used, the row stride `ksize`, and the 22-bit fixed-point weights.
fn precompute_coeffs(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, usize, Vec<i32>) {
    // The box edges are C floats in Pillow; whole numbers below 2^24 are exact either way.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = LANCZOS_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero, as Rust's `as`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let weights: Vec<f64> = (0..xmax.max(0)).map(|x| lanczos(((x + xmin) as f64 - center + 0.5) * ss)).collect();
        let ww: f64 = weights.iter().fold(0.0, |a, w| a + w);
        for (x, &w) in weights.iter().enumerate() {
            let w = if ww != 0.0 { w / ww } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            kk[xx * ksize + x] = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((xmin as usize, xmax.max(0) as usize));
    }
    (bounds, ksize, kk)
}

/// SHA-256 of the bytes as 64 hex digits: equal files, whatever their names.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes (see [`content_hash`]), read in chunks.
pub fn content_hash_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
#[path = "phash_tests.rs"]
mod tests;
