//! The perceptual hash against imagehash 4.3.2 (Pillow 13.0.0, scipy 1.17.1) on generated PNGs of every pixel
//! layout, MNIST-5k digits and a real photo: the same 32 x 32 greyscale thumbnail, pixel for pixel, and the same
//! 64 bits.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use suite_core::python::run_python;

use super::*;

/// Prints, for each image path in argv[1:], imagehash's phash and the thumbnail it was computed from.
const REFERENCE: &str = r#"
import sys, json
from PIL import Image
import imagehash
out = []
for p in sys.argv[1:]:
    im = Image.open(p)
    thumb = im.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    out.append({"hash": str(imagehash.phash(im)), "pixels": list(thumb.getdata())})
print(json.dumps(out))
"#;

#[derive(Deserialize)]
struct Reference {
    hash: String,
    pixels: Vec<u8>,
}

/// Images that reach every code path: down- and up-scaling, an unchanged 32 x 32, odd and extreme aspect ratios,
/// RGB, RGBA, grey, grey + alpha and 16-bit grey; gradients, shapes and noise (noise also keeps DCT coefficients off
/// exact ties with the median).
fn generated(dir: &Path) -> Vec<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(4242);
    let mut paths = Vec::new();
    let mut save = |name: &str, img: DynamicImage| {
        let p = dir.join(format!("{name}.png"));
        img.save(&p).unwrap();
        paths.push(p);
    };
    let mut noise = |amp: i32| -> i32 { rng.random_range(-amp..=amp) };
    let c = |v: i32| v.clamp(0, 255) as u8;

    let grad = ImageBuffer::from_fn(640, 480, |x, y| {
        Rgb([c((x * 255 / 639) as i32 + noise(12)), c((y * 255 / 479) as i32 + noise(12)), c(128 + noise(40))])
    });
    save("gradient_640x480", DynamicImage::ImageRgb8(grad));

    let shapes = ImageBuffer::from_fn(300, 200, |x, y| {
        let (fx, fy) = (x as f64, y as f64);
        let circle = (fx - 90.0).powi(2) + (fy - 110.0).powi(2) < 55.0f64.powi(2);
        let rect = (170..270).contains(&x) && (30..120).contains(&y);
        let base = if circle {
            [220, 40, 40]
        } else if rect {
            [30, 60, 200]
        } else {
            [235, 230, 200]
        };
        Rgb([c(base[0] + noise(6)), c(base[1] + noise(6)), c(base[2] + noise(6))])
    });
    save("shapes_300x200", DynamicImage::ImageRgb8(shapes));

    let rnd = ImageBuffer::from_fn(97, 61, |_, _| Rgb([c(noise(255).abs()), c(noise(255).abs()), c(noise(255).abs())]));
    save("noise_97x61", DynamicImage::ImageRgb8(rnd));

    let tiny = ImageBuffer::from_fn(20, 15, |x, y| Luma([c((x * 12 + y * 5) as i32 + noise(20))]));
    save("upscale_20x15", DynamicImage::ImageLuma8(tiny));

    let same = ImageBuffer::from_fn(32, 32, |x, y| Luma([c(((x ^ y) * 8) as i32 + noise(10))]));
    save("unchanged_32x32", DynamicImage::ImageLuma8(same));

    let rgba = ImageBuffer::from_fn(257, 129, |x, y| {
        Rgba([
            c((x % 64 * 4) as i32 + noise(5)),
            c((y * 2) as i32),
            c(200 - (x / 2) as i32 + noise(5)),
            c(noise(255).abs()),
        ])
    });
    save("rgba_257x129", DynamicImage::ImageRgba8(rgba));

    let grey = ImageBuffer::from_fn(500, 333, |x, y| {
        let r = ((x as f64 - 250.0).hypot(y as f64 - 140.0) / 3.0) as i32;
        Luma([c(255 - r + noise(15))])
    });
    save("grey_500x333", DynamicImage::ImageLuma8(grey));

    let wide = ImageBuffer::from_fn(1000, 40, |x, y| {
        Rgb([c((x / 4) as i32 + noise(8)), c((y * 6) as i32), c(noise(30) + 90)])
    });
    save("wide_1000x40", DynamicImage::ImageRgb8(wide));

    let la = ImageBuffer::from_fn(120, 90, |x, y| LumaA([c((x + y) as i32 + noise(20)), c(noise(255).abs())]));
    save("grey_alpha_120x90", DynamicImage::ImageLumaA8(la));

    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(64, 48, |x, y| Luma([(x * 5 + y * 2 + noise(30).unsigned_abs()) as u16]));
    save("grey16_64x48", DynamicImage::ImageLuma16(g16));

    // Random sizes, to exercise many filter widths and window bounds of the resize.
    for i in 0..12 {
        let (w, h) = (rng.random_range(1..900u32), rng.random_range(1..700u32));
        let (a, b) = (rng.random_range(1..40u32), rng.random_range(1..40u32));
        let img = ImageBuffer::from_fn(w, h, |x, y| {
            let v = ((x / a + y / b) % 2 * 140 + x * 60 / w + y * 50 / h) as i32;
            Rgb([c(v + rng.random_range(-20..=20)), c(v / 2 + rng.random_range(-20..=20)), c(255 - v)])
        });
        save(&format!("random_{i}_{w}x{h}"), DynamicImage::ImageRgb8(img));
    }
    paths
}

/// Up to `per_class` digits of each MNIST-5k class, when the demo data set is there.
fn mnist(per_class: usize) -> Vec<PathBuf> {
    let home = std::env::var("SUITE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/suite"));
    let root = home.join("data/mnist5k/train");
    let mut out = Vec::new();
    for class in 0..10 {
        let Ok(dir) = std::fs::read_dir(root.join(class.to_string())) else { continue };
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        out.extend(files.into_iter().take(per_class));
    }
    out
}

/// The real pictures among the set-up's assets (espeak-ng's documentation images), when they are there.
fn real_images() -> Vec<PathBuf> {
    let home = std::env::var("SUITE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/suite"));
    let docs = home.join("assets/espeak-ng/usr/share/doc/espeak-ng/docs/images");
    ["lips.png", "sand-light.jpg"].iter().map(|f| docs.join(f)).filter(|p| p.exists()).collect()
}

/// Per image: how many thumbnail pixels differ from Pillow's, by at most how much, and how many hash bits differ.
fn compare(paths: &[PathBuf]) -> Vec<(usize, u8, u32)> {
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let out = run_python(REFERENCE, &args).unwrap();
    let refs: Vec<Reference> = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(refs.len(), paths.len());
    paths
        .iter()
        .zip(&refs)
        .map(|(p, want)| {
            let img = image::open(p).unwrap();
            let thumb = pil_resize_lanczos(&pil_grayscale(&img), 32, 32);
            let diffs: Vec<u8> = thumb.as_raw().iter().zip(&want.pixels).map(|(a, b)| a.abs_diff(*b)).collect();
            let bits = phash_file(p).unwrap().distance(PHash::from_hex(&want.hash).unwrap());
            (diffs.iter().filter(|&&d| d > 0).count(), diffs.iter().copied().max().unwrap_or(0), bits)
        })
        .collect()
}

#[test]
fn phash_matches_imagehash() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = generated(dir.path());
    let digits = mnist(20);
    paths.extend(digits.iter().cloned());
    paths.extend(real_images());
    let results = compare(&paths);
    let mut report = Vec::new();
    for (p, &(pixels, max, bits)) in paths.iter().zip(&results) {
        let jpeg = p.extension().is_some_and(|e| e == "jpg" || e == "jpeg");
        if pixels > 0 || bits > 0 {
            report.push(format!("{}: {pixels} thumbnail pixels differ (max {max}), {bits} hash bits", p.display()));
        }
        if jpeg {
            // JPEG decoders (the image crate's zune-jpeg, Pillow's libjpeg-turbo) differ by a level here and there
            // before any of our arithmetic; the hash survives that.
            assert!(max <= 2 && bits == 0, "{}", report.join("\n"));
        } else {
            assert!(pixels == 0 && bits == 0, "{}", report.join("\n"));
        }
    }
    eprintln!(
        "imagehash parity: {} images ({} MNIST digits), hashes identical; differences: {report:?}",
        paths.len(),
        digits.len()
    );
}

#[test]
fn near_duplicates_are_close_and_others_far() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Soft blobs and a bar: a picture whose low frequencies carry structure (a separable pattern would leave most of
    // the 64 coefficients at rounding noise, and any hash of noise flips under rescaling).
    let blobs = [
        (80.0, 70.0, 40.0, 150.0),
        (300.0, 90.0, 60.0, -90.0),
        (200.0, 220.0, 50.0, 110.0),
        (60.0, 250.0, 30.0, -70.0),
    ];
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(400, 300, |x, y| {
        let (fx, fy) = (x as f64, y as f64);
        let mut v = 110.0 + if (150..190).contains(&x) { 40.0 } else { 0.0 };
        for (cx, cy, r, a) in blobs {
            v += a * (-((fx - cx).powi(2) + (fy - cy).powi(2)) / (r * r)).exp();
        }
        let v = v as i32 + rng.random_range(-5..=5);
        Rgb([v.clamp(0, 255) as u8, (v / 2 + 60).clamp(0, 255) as u8, 90])
    }));
    let other = DynamicImage::ImageRgb8(ImageBuffer::from_fn(400, 300, |x, y| {
        Rgb([((x * y) % 251) as u8, (x % 200) as u8, (y % 180) as u8])
    }));
    let h = phash(&img);
    let smaller = phash(&img.resize_exact(200, 150, image::imageops::FilterType::Triangle));
    assert!(h.distance(smaller) <= 6, "rescaled copy is {} bits away", h.distance(smaller));
    assert!(h.distance(phash(&other)) > 16, "unrelated image only {} bits away", h.distance(phash(&other)));
    assert_eq!(PHash::from_hex(&h.to_string()).unwrap(), h);
    assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{h}\""));
}

#[test]
fn content_hash_is_sha256() {
    assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(content_hash_file(&p).unwrap(), content_hash(b"abc"));
}
