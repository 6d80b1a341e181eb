//! Pictures of a heatmap: the jet colormap blended half and half with the image, as pytorch-grad-cam's
//! `show_cam_on_image(img, mask, use_rgb=True)` draws them.

use anyhow::{ensure, Result};
use image::{Rgb, RgbImage};
use ndarray::Array2;
use tch::{Kind, Tensor};

/// The image a normalised input `[3, H, W]` shows: `x · std + mean`, clipped to [0, 1], in 8 bits. This is the
/// model's view (resized and centre-cropped), on which the maps lie pixel for pixel.
pub fn denormalize(x: &Tensor, mean: [f64; 3], std: [f64; 3]) -> Result<RgbImage> {
    let size = x.size();
    ensure!(size.len() == 3 && size[0] == 3, "an image tensor [3, H, W], got {size:?}");
    let (h, w) = (size[1] as u32, size[2] as u32);
    let m = Tensor::from_slice(&mean).to_kind(Kind::Float).view([3, 1, 1]);
    let s = Tensor::from_slice(&std).to_kind(Kind::Float).view([3, 1, 1]);
    let rgb = (x.to_device(tch::Device::Cpu).to_kind(Kind::Float) * s + m).clamp(0.0, 1.0);
    let bytes = Vec::<f32>::try_from(rgb.permute([1, 2, 0]).contiguous().view([-1]))?;
    let bytes: Vec<u8> = bytes.iter().map(|v| (v * 255.0).round() as u8).collect();
    RgbImage::from_raw(w, h, bytes).ok_or_else(|| anyhow::anyhow!("image buffer of the wrong size"))
}

/// OpenCV's `COLORMAP_JET` of `t` in [0, 1]: dark blue → blue → cyan → yellow → red → dark red, in 8 bits.
pub fn jet(t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}

/// `image` with `heatmap` (same size, values in [0, 1]) drawn over it: `0.5 · jet(map) + 0.5 · image`, divided by
/// its maximum, as `show_cam_on_image` with `image_weight = 0.5` does.
pub fn overlay(image: &RgbImage, heatmap: &Array2<f32>) -> Result<RgbImage> {
    let (h, w) = heatmap.dim();
    ensure!(
        (w as u32, h as u32) == image.dimensions(),
        "heatmap {w}x{h} does not fit the image {}x{}",
        image.width(),
        image.height()
    );
    // The map is quantised to 8 bits before the colormap, as `np.uint8(255 * mask)` does.
    let blended: Vec<[f32; 3]> = image
        .enumerate_pixels()
        .map(|(x, y, p)| {
            let level = (255.0 * heatmap[[y as usize, x as usize]].clamp(0.0, 1.0)) as u8;
            let c = jet(level as f32 / 255.0).0;
            [0, 1, 2].map(|i| 0.5 * c[i] as f32 / 255.0 + 0.5 * p.0[i] as f32 / 255.0)
        })
        .collect();
    let max = blended.iter().flatten().fold(0.0f32, |m, &v| m.max(v)).max(1e-7);
    let bytes = blended.iter().flatten().map(|v| (255.0 * v / max) as u8).collect();
    RgbImage::from_raw(w as u32, h as u32, bytes).ok_or_else(|| anyhow::anyhow!("image buffer of the wrong size"))
}

/// A signed attribution map scaled for display: `|a|` divided by its 99th percentile and clipped to [0, 1], so a
/// few extreme pixels do not wash out the rest (Captum's `visualize_image_attr` clips at a percentile likewise).
pub fn attribution_heatmap(map: &Array2<f32>) -> Array2<f32> {
    let mut values: Vec<f32> = map.iter().map(|v| v.abs()).collect();
    values.sort_by(f32::total_cmp);
    let cut = values.get(values.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(0.0);
    if cut <= 0.0 {
        return map.mapv(|_| 0.0);
    }
    map.mapv(|v| (v.abs() / cut).min(1.0))
}
