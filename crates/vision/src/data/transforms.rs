//! Image transforms, as torchvision applies them to PIL images: `RandomResizedCrop`, `RandomHorizontalFlip`,
//! `ColorJitter`, `TrivialAugmentWide`, `ToTensor`, `Normalize`, `RandomErasing` for training; `Resize` (shorter
//! side) and `CenterCrop` for evaluation.
//!
//! Resizing reimplements Pillow's two-pass convolution resampler (`Resample.c`) step for step, fixed-point
//! coefficients and the 8-bit rounding between the passes included, so evaluation inputs equal torchvision's
//! `Resize(256) + CenterCrop(224) + ToTensor + Normalize` on the same RGB pixels. All randomness comes from the
//! per-sample [`SampleRng`], so a run is reproducible; the draws follow torchvision's algorithms but not its
//! (torch) random stream.

use anyhow::{bail, Result};
use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};
use suite_core::data::SampleRng;

use super::augment::{self, ColorJitter};

/// The resampling filter of resizes; both antialias when downscaling (the filter widens with the scale factor), as
/// PIL and torchvision's `antialias=True` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Triangle filter (PIL `BILINEAR`): torchvision's default.
    #[default]
    Bilinear,
    /// Cubic convolution with a = -0.5 (PIL `BICUBIC`): timm's default for most models.
    Bicubic,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// How images become model inputs. The defaults are torchvision's ImageNet recipe at 224 pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformConfig {
    /// Side of the square model input, in pixels.
    pub input_size: u32,
    /// Per-channel mean subtracted after scaling to [0, 1] (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by (RGB).
    pub std: [f32; 3],
    /// Resampling filter of every resize.
    pub interpolation: Interpolation,
    /// Evaluation: the shorter side is resized to `floor(input_size / crop_pct)`, then the centre
    /// `input_size` square is cropped (0.875: 256 then 224).
    pub crop_pct: f64,
    /// Training: `RandomResizedCrop` area range, as fractions of the image.
    pub scale: [f64; 2],
    /// Training: `RandomResizedCrop` aspect-ratio range (width / height).
    pub ratio: [f64; 2],
    /// Training: probability of a horizontal flip (0 disables it).
    pub hflip: f64,
    /// Training: `ColorJitter` strengths, or `None` for no jitter.
    pub color_jitter: Option<ColorJitter>,
    /// Training: `TrivialAugmentWide` (one random op of 14 at a random strength per image).
    pub trivial_augment: bool,
    /// Training: probability of `RandomErasing` of a rectangle of the normalised tensor (0 disables it).
    pub random_erasing: f64,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            input_size: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            interpolation: Interpolation::Bilinear,
            crop_pct: 0.875,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip: 0.5,
            color_jitter: None,
            trivial_augment: false,
            random_erasing: 0.0,
        }
    }
}

impl TransformConfig {
    /// Checks every field's range; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 || self.input_size > 8192 {
            bail!("transform input_size = {}: expected 1..=8192 pixels", self.input_size);
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            bail!("transform mean/std = {:?}/{:?}: std must be positive and both finite", self.mean, self.std);
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 4.0) {
            bail!("transform crop_pct = {}: expected a fraction in (0, 1] (at most 4)", self.crop_pct);
        }
        let [s0, s1] = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            bail!("transform scale = {:?}: expected 0 < min <= max <= 1", self.scale);
        }
        let [r0, r1] = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            bail!("transform ratio = {:?}: expected 0 < min <= max", self.ratio);
        }
        for (name, p) in [("hflip", self.hflip), ("random_erasing", self.random_erasing)] {
            if !(0.0..=1.0).contains(&p) {
                bail!("transform {name} = {p}: expected a probability in [0, 1]");
            }
        }
        if let Some(j) = &self.color_jitter {
            j.validate()?;
        }
        Ok(())
    }

    /// The evaluation resize target of the shorter side: `floor(input_size / crop_pct)` as timm computes it (the
    /// epsilon keeps e.g. 224 / 0.875 at 256 despite binary rounding of `crop_pct`).
    pub fn eval_resize(&self) -> u32 {
        ((self.input_size as f64 / self.crop_pct) + 1e-6).floor().max(1.0) as u32
    }
}

/// A training or evaluation pipeline from an RGB8 image to a normalised `[3, H, W]` tensor (as a flat `Vec<f32>`).
#[derive(Debug, Clone)]
pub struct Transform {
    config: TransformConfig,
    train: bool,
}

impl Transform {
    /// The training pipeline: RandomResizedCrop, horizontal flip, TrivialAugmentWide, ColorJitter (each if enabled,
    /// in that order), ToTensor, Normalize, RandomErasing.
    pub fn train(config: TransformConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config, train: true })
    }

    /// The evaluation pipeline: Resize of the shorter side, CenterCrop, ToTensor, Normalize; no randomness.
    pub fn eval(config: TransformConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config, train: false })
    }

    /// The settings.
    pub fn config(&self) -> &TransformConfig {
        &self.config
    }

    /// Whether this is the (random) training pipeline.
    pub fn is_train(&self) -> bool {
        self.train
    }

    /// `[3, H, W]` of every output.
    pub fn output_shape(&self) -> [usize; 3] {
        let s = self.config.input_size as usize;
        [3, s, s]
    }

    /// The geometric and colour steps, before conversion to a tensor (for previews and tests).
    pub fn apply_rgb(&self, img: &RgbImage, rng: &mut SampleRng) -> RgbImage {
        let c = &self.config;
        let size = c.input_size;
        if !self.train {
            let resized = resize_shorter(img, c.eval_resize(), c.interpolation);
            return center_crop(&resized, size, size);
        }
        let (top, left, h, w) = random_resized_crop_params(img.width(), img.height(), c.scale, c.ratio, rng);
        let cropped = image::imageops::crop_imm(img, left, top, w, h).to_image();
        let mut out = resize(&cropped, size, size, c.interpolation);
        if c.hflip > 0.0 && rng.random::<f64>() < c.hflip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        if c.trivial_augment {
            out = augment::trivial_augment_wide(&out, rng);
        }
        if let Some(j) = &c.color_jitter {
            out = j.apply(&out, rng);
        }
        out
    }

    /// The whole pipeline: a normalised `[3, H, W]` tensor, channel-major, as a flat vector.
    pub fn apply(&self, img: &RgbImage, rng: &mut SampleRng) -> Vec<f32> {
        let rgb = self.apply_rgb(img, rng);
        let mut t = to_normalized_chw(&rgb, self.config.mean, self.config.std);
        if self.train && self.config.random_erasing > 0.0 {
            random_erasing(&mut t, rgb.height() as usize, rgb.width() as usize, self.config.random_erasing, rng);
        }
        t
    }
}

/// Python's `int(round(x))`: ties go to the even integer.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 draws of an area fraction in `scale` and a log-uniform
/// aspect ratio in `ratio`, the first that fits giving a uniformly placed crop; otherwise the centre crop closest
/// to the ratio range. Returns `(top, left, height, width)`, always inside the image and at least 1×1.
pub fn random_resized_crop_params(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut SampleRng,
) -> (u32, u32, u32, u32) {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target_area = area * (scale[0] + (scale[1] - scale[0]) * rng.random::<f64>());
        let aspect = (lr0 + (lr1 - lr0) * rng.random::<f64>()).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let top = rng.random_range(0..=(height as i64 - h)) as u32;
            let left = rng.random_range(0..=(width as i64 - w)) as u32;
            return (top, left, h as u32, w as u32);
        }
    }
    let in_ratio = wf / hf;
    let (w, h) = if in_ratio < ratio[0] {
        (width as i64, py_round(wf / ratio[0]))
    } else if in_ratio > ratio[1] {
        (py_round(hf * ratio[1]), height as i64)
    } else {
        (width as i64, height as i64)
    };
    // A 1-pixel-wide sliver can round to 0; keep at least one pixel so the resize has input.
    let (w, h) = (w.clamp(1, width as i64) as u32, h.clamp(1, height as i64) as u32);
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer `int(size * long /
/// short)`; an image already that size is returned unchanged.
pub fn resize_shorter(img: &RgbImage, size: u32, interpolation: Interpolation) -> RgbImage {
    let (w, h) = img.dimensions();
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size as f64 * long as f64 / short as f64) as u32).max(1);
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    resize(img, nw, nh, interpolation)
}

/// torchvision's `CenterCrop`: zero-pads an image smaller than the crop, then takes the centred window, the
/// offset rounded as Python's `round` does.
pub fn center_crop(img: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let padded;
    let img = if width > w || height > h {
        let pad_l = if width > w { (width - w) / 2 } else { 0 };
        let pad_t = if height > h { (height - h) / 2 } else { 0 };
        let mut p = RgbImage::new(w.max(width), h.max(height));
        image::imageops::replace(&mut p, img, pad_l as i64, pad_t as i64);
        padded = p;
        &padded
    } else {
        img
    };
    let (w, h) = img.dimensions();
    let top = py_round((h - height) as f64 / 2.0) as u32;
    let left = py_round((w - width) as f64 / 2.0) as u32;
    image::imageops::crop_imm(img, left, top, width, height).to_image()
}

/// Fixed-point bits of Pillow's 8-bit resampling coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, tap count, and `ksize` fixed-point weights (Pillow's `precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn precompute_coeffs(in_size: usize, out_size: usize, filter: Interpolation) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `as i64` truncates toward zero like C's (int) cast, which Pillow relies on for rounding.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.weight(((x + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..n {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = w * (1u32 << PRECISION_BITS) as f64;
            row[x] = if w < 0.0 { (-0.5 + f) as i32 } else { (0.5 + f) as i32 };
        }
        bounds.push((xmin, n));
    }
    Coeffs { bounds, ksize, weights }
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and saturate.
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `width × height` exactly as Pillow's `Image.resize` does for RGB images with the BILINEAR or
/// BICUBIC filter: a horizontal pass into an 8-bit intermediate (rows the vertical pass needs only), then a vertical
/// pass, each skipped when that dimension does not change.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Interpolation) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width.max(1) as usize, height.max(1) as usize);
    if (in_w, in_h) == (out_w, out_h) || in_w == 0 || in_h == 0 {
        return img.clone();
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let half = 1i64 << (PRECISION_BITS - 1);
    let src = img.as_raw();
    let vert = precompute_coeffs(in_h, out_h, filter);
    let y_first = vert.bounds[0].0;
    let y_last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;

    // Horizontal pass over the rows [y_first, y_last) the vertical pass reads.
    let (mut cur, mut cur_w, mut row0) = (std::borrow::Cow::Borrowed(src.as_slice()), in_w, 0usize);
    if need_h {
        let hc = precompute_coeffs(in_w, out_w, filter);
        let rows = y_last - y_first;
        let mut tmp = vec![0u8; rows * out_w * 3];
        for r in 0..rows {
            let line = &src[(r + y_first) * in_w * 3..(r + y_first + 1) * in_w * 3];
            let out = &mut tmp[r * out_w * 3..(r + 1) * out_w * 3];
            for xx in 0..out_w {
                let (xmin, n) = hc.bounds[xx];
                let k = &hc.weights[xx * hc.ksize..xx * hc.ksize + n];
                let (mut s0, mut s1, mut s2) = (half, half, half);
                for (x, &kx) in k.iter().enumerate() {
                    let p = (xmin + x) * 3;
                    let kx = kx as i64;
                    s0 += line[p] as i64 * kx;
                    s1 += line[p + 1] as i64 * kx;
                    s2 += line[p + 2] as i64 * kx;
                }
                out[xx * 3] = clip8(s0);
                out[xx * 3 + 1] = clip8(s1);
                out[xx * 3 + 2] = clip8(s2);
            }
        }
        cur = std::borrow::Cow::Owned(tmp);
        cur_w = out_w;
        // The intermediate starts at source row y_first, so the vertical bounds shift by it.
        row0 = y_first;
    }
    if !need_v {
        return RgbImage::from_raw(cur_w as u32, in_h as u32, cur.into_owned()).expect("buffer size matches");
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    for yy in 0..out_h {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - row0;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        let dst = &mut out[yy * cur_w * 3..(yy + 1) * cur_w * 3];
        for (xx, d) in dst.chunks_exact_mut(3).enumerate() {
            let (mut s0, mut s1, mut s2) = (half, half, half);
            for (y, &ky) in k.iter().enumerate() {
                let p = ((ymin + y) * cur_w + xx) * 3;
                let ky = ky as i64;
                s0 += cur[p] as i64 * ky;
                s1 += cur[p + 1] as i64 * ky;
                s2 += cur[p + 2] as i64 * ky;
            }
            d[0] = clip8(s0);
            d[1] = clip8(s1);
            d[2] = clip8(s2);
        }
    }
    RgbImage::from_raw(cur_w as u32, out_h as u32, out).expect("buffer size matches")
}

/// `ToTensor` then `Normalize`: `(v / 255 - mean) / std` in f32, channel-major `[3, H, W]`, with torchvision's
/// operation order so results match bit for bit.
pub fn to_normalized_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// torchvision's `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)` on a normalised `[3, H, W]`
/// tensor: with probability `p`, up to 10 draws of a rectangle; the first that fits is set to 0 (the mean colour).
pub fn random_erasing(t: &mut [f32], height: usize, width: usize, p: f64, rng: &mut SampleRng) {
    if rng.random::<f64>() >= p {
        return;
    }
    let area = (height * width) as f64;
    let (lr0, lr1) = (0.3f64.ln(), 3.3f64.ln());
    for _ in 0..10 {
        let erase_area = area * (0.02 + (0.33 - 0.02) * rng.random::<f64>());
        let aspect = (lr0 + (lr1 - lr0) * rng.random::<f64>()).exp();
        let h = py_round((erase_area * aspect).sqrt());
        let w = py_round((erase_area / aspect).sqrt());
        if !(h < height as i64 && w < width as i64) {
            continue;
        }
        let (h, w) = (h.max(0) as usize, w.max(0) as usize);
        let top = rng.random_range(0..=height - h);
        let left = rng.random_range(0..=width - w);
        for c in 0..3 {
            for y in top..top + h {
                let row = c * height * width + y * width;
                t[row + left..row + left + w].fill(0.0);
            }
        }
        return;
    }
}
