//! Colour and geometric augmentations on RGB8 images, following the PIL code paths torchvision uses for PIL
//! inputs: `ColorJitter` (ImageEnhance brightness/contrast/colour, HSV hue shift) and `TrivialAugmentWide` (one of
//! 14 ops at one of 31 strengths).

use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use suite_core::data::SampleRng;

/// `ColorJitter` strengths: brightness, contrast and saturation factors are drawn from `[max(0, 1 - s), 1 + s]`,
/// the hue shift from `[-hue, hue]` (at most 0.5); a zero strength disables that op. The four ops run in a random
/// order, as in torchvision.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
    /// Hue shift bound, a fraction of the hue circle in [0, 0.5].
    pub hue: f32,
}

impl ColorJitter {
    /// Checks the ranges; errors name the field.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)]
        {
            if !(v.is_finite() && v >= 0.0) {
                bail!("color_jitter.{name} = {v}: expected a non-negative strength");
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            bail!("color_jitter.hue = {}: expected a value in [0, 0.5]", self.hue);
        }
        Ok(())
    }

    /// Applies the enabled ops in a random order with random factors.
    pub fn apply(&self, img: &RgbImage, rng: &mut SampleRng) -> RgbImage {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let mut factor = |s: f32| (s > 0.0).then(|| rng.random_range((1.0 - s).max(0.0)..=1.0 + s));
        let (b, c, s) = (factor(self.brightness), factor(self.contrast), factor(self.saturation));
        let h = (self.hue > 0.0).then(|| rng.random_range(-self.hue..=self.hue));
        let mut out = img.clone();
        for op in order {
            out = match (op, b, c, s, h) {
                (0, Some(f), ..) => adjust_brightness(&out, f),
                (1, _, Some(f), ..) => adjust_contrast(&out, f),
                (2, _, _, Some(f), _) => adjust_saturation(&out, f),
                (3, .., Some(f)) => adjust_hue(&out, f),
                _ => out,
            };
        }
        out
    }
}

/// PIL's ITU-R 601 luma in fixed point (`L24(rgb) >> 16`).
fn luma(p: &Rgb<u8>) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// PIL's `Image.blend(a, b, alpha)` per byte: `a + alpha * (b - a)` in f32, truncated, clipped when extrapolating.
fn blend_byte(a: u8, b: u8, alpha: f32) -> u8 {
    let v = a as f32 + alpha * (b as f32 - a as f32);
    if (0.0..=1.0).contains(&alpha) {
        v as u8
    } else if v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v as u8
    }
}

fn blend_with(img: &RgbImage, alpha: f32, degenerate: impl Fn(&Rgb<u8>) -> [u8; 3]) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let d = degenerate(p);
        for c in 0..3 {
            p[c] = blend_byte(d[c], p[c], alpha);
        }
    }
    out
}

/// `ImageEnhance.Brightness`: blend with black.
pub fn adjust_brightness(img: &RgbImage, factor: f32) -> RgbImage {
    blend_with(img, factor, |_| [0, 0, 0])
}

/// `ImageEnhance.Contrast`: blend with the mean luma (rounded) of the whole image.
pub fn adjust_contrast(img: &RgbImage, factor: f32) -> RgbImage {
    let n = (img.width() as u64 * img.height() as u64).max(1);
    let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    blend_with(img, factor, |_| [mean; 3])
}

/// `ImageEnhance.Color`: blend with the pixel's own grey.
pub fn adjust_saturation(img: &RgbImage, factor: f32) -> RgbImage {
    blend_with(img, factor, |p| [luma(p); 3])
}

/// torchvision's PIL `adjust_hue`: to PIL's 8-bit HSV, add `int(hue * 255)` to H modulo 256, back to RGB.
pub fn adjust_hue(img: &RgbImage, hue: f32) -> RgbImage {
    let shift = ((hue * 255.0) as i32).rem_euclid(256) as u8;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(p.0);
        p.0 = hsv_to_rgb([h.wrapping_add(shift), s, v]);
    }
    out
}

/// Pillow's `rgb2hsv_row`, with its mix of float and double arithmetic.
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h: f32 = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + rc as f64 - bc as f64) as f32
    } else {
        (4.0 + gc as f64 - rc as f64) as f32
    };
    let h = ((h as f64 / 6.0 + 1.0) % 1.0) as f32;
    let uh = ((h as f64 * 255.0) as i32).clamp(0, 255) as u8;
    let us = ((s as f64 * 255.0) as i32).clamp(0, 255) as u8;
    [uh, us, maxc]
}

/// Pillow's `hsv2rgb`.
fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let hf = (h as f32) as f64 * 6.0 / 255.0;
    let i = hf.floor() as i32;
    let f = (hf - i as f32 as f64) as f32;
    let fs = (s as f64 / 255.0) as f32;
    let vf = v as f32 as f64;
    let p = (vf * (1.0 - fs as f64)).round().clamp(0.0, 255.0) as u8;
    let q = (vf * (1.0 - (fs * f) as f64)).round().clamp(0.0, 255.0) as u8;
    let t = (vf * (1.0 - (fs * (1.0 - f)) as f64)).round().clamp(0.0, 255.0) as u8;
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// `ImageEnhance.Sharpness`: blend with PIL's SMOOTH filter (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13,
/// border pixels unfiltered).
pub fn adjust_sharpness(img: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut smooth = img.clone();
    if w > 2 && h > 2 {
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut acc = [0f32; 3];
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dx == 1 && dy == 1 { 5.0 } else { 1.0 };
                        let p = img.get_pixel(x + dx - 1, y + dy - 1);
                        for c in 0..3 {
                            acc[c] += k * p[c] as f32;
                        }
                    }
                }
                let q = smooth.get_pixel_mut(x, y);
                for c in 0..3 {
                    q[c] = (acc[c] / 13.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    let mut out = img.clone();
    for (o, s) in out.pixels_mut().zip(smooth.pixels()) {
        for c in 0..3 {
            o[c] = blend_byte(s[c], o[c], factor);
        }
    }
    out
}

fn map_lut(img: &RgbImage, luts: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = luts[c][p[c] as usize];
        }
    }
    out
}

/// `ImageOps.posterize`: keep the top `bits` bits of every channel.
pub fn posterize(img: &RgbImage, bits: u32) -> RgbImage {
    let mask = !((1u32 << (8 - bits.min(8))) - 1) as u8;
    let lut: [u8; 256] = std::array::from_fn(|i| i as u8 & mask);
    map_lut(img, &[lut; 3])
}

/// `ImageOps.solarize`: invert every value at or above `threshold`.
pub fn solarize(img: &RgbImage, threshold: f64) -> RgbImage {
    let lut: [u8; 256] = std::array::from_fn(|i| if (i as f64) < threshold { i as u8 } else { 255 - i as u8 });
    map_lut(img, &[lut; 3])
}

fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            h[c][p[c] as usize] += 1;
        }
    }
    h
}

/// `ImageOps.autocontrast` (no cutoff): stretch every channel's range to 0..255.
pub fn autocontrast(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let luts = std::array::from_fn(|c| {
        let h = &hist[c];
        let lo = (0..256).find(|&i| h[i] > 0).unwrap_or(0);
        let hi = (0..256).rev().find(|&i| h[i] > 0).unwrap_or(0);
        if hi <= lo {
            return std::array::from_fn(|i| i as u8);
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        std::array::from_fn(|i| ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8)
    });
    map_lut(img, &luts)
}

/// `ImageOps.equalize`: per-channel histogram equalisation.
pub fn equalize(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let luts = std::array::from_fn(|c| {
        let h = &hist[c];
        let used: Vec<u64> = h.iter().copied().filter(|&v| v > 0).collect();
        let identity = std::array::from_fn(|i| i as u8);
        if used.len() <= 1 {
            return identity;
        }
        let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
        if step == 0 {
            return identity;
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[i];
            v
        })
    });
    map_lut(img, &luts)
}

/// Nearest-neighbour affine warp, black outside: `m` maps an output pixel centre `(x + 0.5, y + 0.5)` to input
/// coordinates (PIL's `Image.transform(AFFINE)` convention).
fn affine_nearest(img: &RgbImage, m: [f64; 6]) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
        let xi = m[0] * xo + m[1] * yo + m[2];
        let yi = m[3] * xo + m[4] * yo + m[5];
        if xi < 0.0 || yi < 0.0 || xi >= w as f64 || yi >= h as f64 {
            Rgb([0, 0, 0])
        } else {
            *img.get_pixel(xi as u32, yi as u32)
        }
    })
}

/// torchvision's `_get_inverse_affine_matrix` (angle clockwise in degrees, shear in degrees), output → input.
fn inverse_affine(center: [f64; 2], angle: f64, translate: [f64; 2], shear: [f64; 2]) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear[0].to_radians(), shear[1].to_radians());
    let [cx, cy] = center;
    let [tx, ty] = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0];
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// The 14 ops of `TrivialAugmentWide`, in torchvision's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrivialOp {
    /// No change.
    Identity,
    /// Horizontal shear.
    ShearX,
    /// Vertical shear.
    ShearY,
    /// Horizontal shift.
    TranslateX,
    /// Vertical shift.
    TranslateY,
    /// Rotation about the centre.
    Rotate,
    /// Brightness factor `1 + m`.
    Brightness,
    /// Saturation factor `1 + m`.
    Color,
    /// Contrast factor `1 + m`.
    Contrast,
    /// Sharpness factor `1 + m`.
    Sharpness,
    /// Keep `m` bits.
    Posterize,
    /// Invert values at or above `m`.
    Solarize,
    /// Stretch each channel.
    AutoContrast,
    /// Equalise each channel.
    Equalize,
}

const OPS: [TrivialOp; 14] = [
    TrivialOp::Identity,
    TrivialOp::ShearX,
    TrivialOp::ShearY,
    TrivialOp::TranslateX,
    TrivialOp::TranslateY,
    TrivialOp::Rotate,
    TrivialOp::Brightness,
    TrivialOp::Color,
    TrivialOp::Contrast,
    TrivialOp::Sharpness,
    TrivialOp::Posterize,
    TrivialOp::Solarize,
    TrivialOp::AutoContrast,
    TrivialOp::Equalize,
];

/// Magnitude of bin `k` of 31 and whether the op takes a random sign (torchvision's `_augmentation_space`).
fn magnitude(op: TrivialOp, k: usize) -> (f64, bool) {
    // torch.linspace(lo, hi, 31) in float32.
    let lin = |lo: f32, hi: f32| (lo + (hi - lo) * (k as f32 / 30.0)) as f64;
    match op {
        TrivialOp::Identity | TrivialOp::AutoContrast | TrivialOp::Equalize => (0.0, false),
        TrivialOp::ShearX | TrivialOp::ShearY => (lin(0.0, 0.99), true),
        TrivialOp::TranslateX | TrivialOp::TranslateY => (lin(0.0, 32.0), true),
        TrivialOp::Rotate => (lin(0.0, 135.0), true),
        TrivialOp::Brightness | TrivialOp::Color | TrivialOp::Contrast | TrivialOp::Sharpness => (lin(0.0, 0.99), true),
        TrivialOp::Posterize => (8.0 - (k as f64 / 5.0).round_ties_even(), false),
        TrivialOp::Solarize => (lin(255.0, 0.0), false),
    }
}

/// Applies one op at a signed magnitude, as torchvision's `_apply_op` with nearest interpolation and black fill.
pub fn apply_op(img: &RgbImage, op: TrivialOp, m: f64) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    match op {
        TrivialOp::Identity => img.clone(),
        TrivialOp::ShearX => {
            affine_nearest(img, inverse_affine([0.0, 0.0], 0.0, [0.0, 0.0], [m.atan().to_degrees(), 0.0]))
        }
        TrivialOp::ShearY => {
            affine_nearest(img, inverse_affine([0.0, 0.0], 0.0, [0.0, 0.0], [0.0, m.atan().to_degrees()]))
        }
        TrivialOp::TranslateX => {
            affine_nearest(img, inverse_affine([w * 0.5, h * 0.5], 0.0, [m.trunc(), 0.0], [0.0; 2]))
        }
        TrivialOp::TranslateY => {
            affine_nearest(img, inverse_affine([w * 0.5, h * 0.5], 0.0, [0.0, m.trunc()], [0.0; 2]))
        }
        // rotate() is counter-clockwise; the affine angle is clockwise.
        TrivialOp::Rotate => affine_nearest(img, inverse_affine([w * 0.5, h * 0.5], -m, [0.0, 0.0], [0.0; 2])),
        TrivialOp::Brightness => adjust_brightness(img, (1.0 + m) as f32),
        TrivialOp::Color => adjust_saturation(img, (1.0 + m) as f32),
        TrivialOp::Contrast => adjust_contrast(img, (1.0 + m) as f32),
        TrivialOp::Sharpness => adjust_sharpness(img, (1.0 + m) as f32),
        TrivialOp::Posterize => posterize(img, m as u32),
        TrivialOp::Solarize => solarize(img, m),
        TrivialOp::AutoContrast => autocontrast(img),
        TrivialOp::Equalize => equalize(img),
    }
}

/// `TrivialAugmentWide`: a uniformly chosen op at a uniformly chosen strength of 31, with a random sign for the
/// signed ops.
pub fn trivial_augment_wide(img: &RgbImage, rng: &mut SampleRng) -> RgbImage {
    let op = OPS[rng.random_range(0..OPS.len())];
    let has_bins = !matches!(op, TrivialOp::Identity | TrivialOp::AutoContrast | TrivialOp::Equalize);
    let k = if has_bins { rng.random_range(0..31) } else { 0 };
    let (mut m, signed) = magnitude(op, k);
    if signed && rng.random_bool(0.5) {
        m = -m;
    }
    apply_op(img, op, m)
}
