//! Tests of the data pipeline; parity tests run torchvision/PIL in the reference Python environment and exchange
//! arrays through safetensors files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use rand::SeedableRng;
use suite_core::data::{DataLoader, Dataset, LoaderConfig, SampleRng};
use suite_core::python::run_python;
use tch::Tensor;

use super::augment::{self, TrivialOp};
use super::transforms::{random_resized_crop_params, resize};
use super::*;

/// Python helpers shared by the parity tests: a synthetic "photo" (smooth gradients, sharp edges, sensor-like
/// noise) so that resampling differences would show, and a safetensors writer.
const PY_PRELUDE: &str = r#"
import sys, os, numpy as np, torch
from PIL import Image
from safetensors.torch import save_file
D = sys.argv[1]
def photo(w, h, seed):
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = 128 + 90 * np.sin((x + y) / 51.0)
    b = 255 * (x / max(w - 1, 1)) * (1 - y / max(h - 1, 1))
    img = np.stack([r, g, b], -1) + rs.normal(0, 12, (h, w, 3))
    img[h // 4: h // 2, w // 3: w // 2] = [250, 20, 30]
    img[(h * 3) // 5: (h * 3) // 5 + 2, :] = 255
    return np.clip(img, 0, 255).astype(np.uint8)
"#;

fn py(dir: &Path, body: &str) -> String {
    let code = format!("{PY_PRELUDE}\n{body}");
    run_python(&code, &[dir.to_str().unwrap()]).expect("reference Python")
}

fn read_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).expect("read safetensors").into_iter().collect()
}

fn to_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap()
}

fn to_u8(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(&t.to_kind(tch::Kind::Uint8).flatten(0, -1)).unwrap()
}

fn diffs(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let mean = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / a.len() as f64;
    (max, mean as f32)
}

fn rng(seed: u64) -> SampleRng {
    SampleRng::seed_from_u64(seed)
}

fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 13) as u8 ^ seed, (y * 7) as u8, seed])).save(path).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation transform parity with torchvision.

/// The resampler replays Pillow's integer arithmetic, so the RGB8 result is identical and the only float work,
/// `(v / 255 - mean) / std`, is done in f32 in torchvision's order: the expected difference is exactly zero. The
/// assertion allows 1e-6 (float noise, far below one 8-bit level = 1 / 255 / std ≈ 0.017).
#[test]
fn eval_transform_matches_torchvision_resize_centercrop() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: [(u32, u32); 6] = [(500, 375), (333, 517), (64, 48), (256, 300), (1, 1), (1200, 250)];
    let mut body = String::from(
        "import torchvision.transforms as T\nfrom torchvision.transforms import InterpolationMode as IM\nout = {}\n",
    );
    body += "norm = [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]\n";
    for (i, (w, h)) in sizes.iter().enumerate() {
        body += &format!(
            "Image.fromarray(photo({w}, {h}, {i})).save(os.path.join(D, 'img{i}.png'))\n\
             im = Image.open(os.path.join(D, 'img{i}.png')).convert('RGB')\n\
             out['bilinear{i}'] = T.Compose([T.Resize(256), T.CenterCrop(224)] + norm)(im)\n\
             out['bicubic{i}'] = T.Compose([T.Resize(256, IM.BICUBIC), T.CenterCrop(224)] + norm)(im)\n\
             out['small{i}'] = T.Compose([T.Resize(36), T.CenterCrop(32)] + norm)(im)\n"
        );
    }
    body += "save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(D, 'ref.safetensors'))\n";
    py(dir.path(), &body);
    let refs = read_tensors(&dir.path().join("ref.safetensors"));
    let bilinear = Transform::eval(TransformConfig::default()).unwrap();
    let bicubic =
        Transform::eval(TransformConfig { interpolation: Interpolation::Bicubic, ..Default::default() }).unwrap();
    let small =
        Transform::eval(TransformConfig { input_size: 32, crop_pct: 32.0 / 36.0, ..Default::default() }).unwrap();
    for (i, (w, h)) in sizes.iter().enumerate() {
        let img = decode_image(&dir.path().join(format!("img{i}.png"))).unwrap();
        assert_eq!(img.dimensions(), (*w, *h));
        for (name, t) in [("bilinear", &bilinear), ("bicubic", &bicubic), ("small", &small)] {
            let ours = t.apply(&img, &mut rng(0));
            let (max, mean) = diffs(&ours, &to_f32(&refs[&format!("{name}{i}")]));
            println!("eval parity {name} {w}x{h}: max abs diff {max:e}, mean {mean:e}");
            assert!(max <= 1e-6, "{name} {w}x{h}: max abs diff {max} vs torchvision");
        }
    }
}

/// JPEG decoding is not bit-exact across decoders (IDCT and chroma upsampling differ between the image crate's
/// zune-jpeg and PIL's libjpeg-turbo), so this measures the difference on a 4:2:0 JPEG photo and bounds it.
#[test]
fn jpeg_decoding_is_close_to_pil() {
    let dir = tempfile::tempdir().unwrap();
    py(
        dir.path(),
        "p = os.path.join(D, 'photo.jpg')\n\
         Image.fromarray(photo(480, 320, 3)).save(p, quality=90)\n\
         a = np.array(Image.open(p).convert('RGB'))\n\
         save_file({'rgb': torch.from_numpy(a)}, os.path.join(D, 'ref.safetensors'))\n",
    );
    let ours = decode_image(&dir.path().join("photo.jpg")).unwrap();
    let refs = read_tensors(&dir.path().join("ref.safetensors"));
    let theirs = to_u8(&refs["rgb"]);
    let a: Vec<f32> = ours.as_raw().iter().map(|&v| v as f32).collect();
    let b: Vec<f32> = theirs.iter().map(|&v| v as f32).collect();
    let (max, mean) = diffs(&a, &b);
    println!("JPEG decode vs PIL: max abs diff {max} levels, mean {mean:.4} levels");
    assert!(mean < 0.75 && max <= 8.0, "JPEG decode differs from PIL by max {max}, mean {mean} levels");
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding.

/// Grey, grey+alpha, RGBA, palette (with and without transparency), 16-bit RGB, BMP, PPM, TIFF and WebP files
/// written by PIL decode to exactly PIL's `convert("RGB")`. 16-bit grey is the documented exception: PIL clips it
/// (`I;16` → 255 above 255), we keep the high byte as PIL does for 16-bit RGB.
#[test]
fn colour_conversions_match_pil_convert_rgb() {
    let dir = tempfile::tempdir().unwrap();
    py(
        dir.path(),
        r#"
import zlib, struct
rgb = photo(37, 23, 1)
rs = np.random.RandomState(5)
alpha = rs.randint(0, 256, (23, 37)).astype(np.uint8)
files = {}
def put(name, im):
    p = os.path.join(D, name); im.save(p); files[name] = p
put('gray.png', Image.fromarray(rgb[..., 0], 'L'))
put('gray_alpha.png', Image.fromarray(np.stack([rgb[..., 1], alpha], -1), 'LA'))
put('rgba.png', Image.fromarray(np.dstack([rgb, alpha]), 'RGBA'))
pal = Image.fromarray(rgb).quantize(16)
put('palette.png', pal)
pt = pal.copy(); pt.info['transparency'] = 3
put('palette_trns.png', pt)
put('rgb.bmp', Image.fromarray(rgb))
put('rgb.ppm', Image.fromarray(rgb))
put('gray.pgm', Image.fromarray(rgb[..., 2], 'L'))
put('rgb.tif', Image.fromarray(rgb))
put('rgba_lossless.webp', Image.fromarray(np.dstack([rgb, alpha]), 'RGBA'))
def png16(path, arr, color_type):
    h, w = arr.shape[:2]
    raw = b''.join(b'\x00' + arr[y].astype('>u2').tobytes() for y in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, color_type, 0, 0, 0))
        + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
    files[os.path.basename(path)] = path
v16 = rs.randint(0, 65536, (23, 37, 3)).astype(np.uint16)
png16(os.path.join(D, 'rgb16.png'), v16, 2)
g16 = rs.randint(0, 65536, (23, 37)).astype(np.uint16)
png16(os.path.join(D, 'gray16.png'), g16, 0)
out = {k: torch.from_numpy(np.ascontiguousarray(np.array(Image.open(p).convert('RGB')))) for k, p in files.items()}
out['gray16.png.highbyte'] = torch.from_numpy(np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1))
print(Image.open(files['gray16.png']).mode, Image.open(files['rgb16.png']).mode)
save_file(out, os.path.join(D, 'ref.safetensors'))
"#,
    );
    let refs = read_tensors(&dir.path().join("ref.safetensors"));
    for name in [
        "gray.png",
        "gray_alpha.png",
        "rgba.png",
        "palette.png",
        "palette_trns.png",
        "rgb.bmp",
        "rgb.ppm",
        "gray.pgm",
        "rgb.tif",
        "rgba_lossless.webp",
        "rgb16.png",
    ] {
        let ours = decode_image(&dir.path().join(name)).unwrap();
        assert_eq!(ours.dimensions(), (37, 23), "{name}");
        assert_eq!(ours.as_raw(), &to_u8(&refs[name]), "{name}: RGB8 differs from PIL's convert('RGB')");
    }
    let g16 = decode_image(&dir.path().join("gray16.png")).unwrap();
    assert_eq!(g16.as_raw(), &to_u8(&refs["gray16.png.highbyte"]), "16-bit grey keeps the high byte");
    assert_ne!(g16.as_raw(), &to_u8(&refs["gray16.png"]), "PIL clips 16-bit grey; we deliberately do not");
}

/// EXIF orientation 6 (stored landscape, displayed rotated 90° clockwise) and 8 (90° counter-clockwise) are applied,
/// matching PIL's `ImageOps.exif_transpose` up to JPEG decoder differences.
#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    py(
        dir.path(),
        r#"
from PIL import ImageOps
a = np.zeros((20, 40, 3), np.uint8)
a[:, :20] = [230, 30, 30]      # left half red
a[:10, 20:] = [30, 30, 230]    # top right blue, bottom right black
out = {}
for o in (1, 6, 8):
    exif = Image.Exif(); exif[0x0112] = o
    p = os.path.join(D, f'o{o}.jpg')
    Image.fromarray(a).save(p, exif=exif, quality=95)
    out[f'o{o}'] = torch.from_numpy(np.ascontiguousarray(np.array(ImageOps.exif_transpose(Image.open(p)).convert('RGB'))))
save_file(out, os.path.join(D, 'ref.safetensors'))
"#,
    );
    let refs = read_tensors(&dir.path().join("ref.safetensors"));
    for (o, dims) in [(1, (40, 20)), (6, (20, 40)), (8, (20, 40))] {
        let ours = decode_image(&dir.path().join(format!("o{o}.jpg"))).unwrap();
        assert_eq!(ours.dimensions(), dims, "orientation {o}");
        let a: Vec<f32> = ours.as_raw().iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = to_u8(&refs[&format!("o{o}")]).iter().map(|&v| v as f32).collect();
        let (_, mean) = diffs(&a, &b);
        assert!(mean < 3.0, "orientation {o}: mean abs diff {mean} levels vs exif_transpose");
    }
    // Orientation 6: the stored left (red) half ends up on top.
    let o6 = decode_image(&dir.path().join("o6.jpg")).unwrap();
    let top = o6.get_pixel(10, 5);
    let bottom = o6.get_pixel(10, 35);
    assert!(top[0] > 180 && top[2] < 80, "top should be red, got {top:?}");
    assert!(bottom[0] < 80, "bottom should not be red, got {bottom:?}");
}

#[test]
fn tiny_and_degenerate_images_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("one.png");
    RgbImage::from_pixel(1, 1, image::Rgb([10, 200, 30])).save(&p).unwrap();
    let img = decode_image(&p).unwrap();
    let all_on = TransformConfig {
        color_jitter: Some(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
        trivial_augment: true,
        random_erasing: 1.0,
        ..Default::default()
    };
    for seed in 0..50 {
        let out = Transform::train(all_on.clone()).unwrap().apply(&img, &mut rng(seed));
        assert_eq!(out.len(), 3 * 224 * 224);
        assert!(out.iter().all(|v| v.is_finite()));
    }
    let out = Transform::eval(TransformConfig::default()).unwrap().apply(&img, &mut rng(0));
    assert_eq!(out.len(), 3 * 224 * 224);
    // A header that claims 0×0 pixels, empty files and garbage give errors, not panics.
    let err = decode_bytes(&[]).unwrap_err().to_string();
    assert!(err.contains("empty file"), "{err}");
    let err = decode_bytes(b"GIF89a").unwrap_err().to_string();
    assert!(err.contains("Gif"), "{err}");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png[16..24].copy_from_slice(&[0; 8]); // IHDR width and height
    assert!(decode_bytes(&png).is_err());
}

/// A truncated JPEG, text named `.jpg`, an empty `.png` and a PNG with a broken body are all reported, each with
/// its file name; good files are not.
#[test]
fn validation_reports_every_bad_file_by_name() {
    let dir = tempfile::tempdir().unwrap();
    py(
        dir.path(),
        "Image.fromarray(photo(120, 80, 2)).save(os.path.join(D, 'good.jpg'), quality=90)\n\
         b = open(os.path.join(D, 'good.jpg'), 'rb').read()\n\
         open(os.path.join(D, 'truncated.jpg'), 'wb').write(b[: len(b) // 2])\n",
    );
    let d = dir.path();
    std::fs::write(d.join("notes.jpg"), "this is a text file, not a picture\n").unwrap();
    std::fs::write(d.join("empty.png"), b"").unwrap();
    write_png(&d.join("good.png"), 9, 7, 1);
    let mut png = std::fs::read(d.join("good.png")).unwrap();
    let n = png.len();
    png[n - 20..n - 12].copy_from_slice(&[0xAB; 8]); // corrupt the IDAT payload/CRC
    std::fs::write(d.join("broken.png"), &png).unwrap();
    let names = ["good.jpg", "truncated.jpg", "notes.jpg", "empty.png", "good.png", "broken.png", "missing.png"];
    let samples: Vec<Sample> = names.iter().map(|n| (d.join(n), 0)).collect();
    let bad = validate(&samples, 3);
    let bad_names: Vec<String> =
        bad.iter().map(|b| b.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for b in &bad {
        println!("bad: {b}");
    }
    assert_eq!(bad_names, ["truncated.jpg", "notes.jpg", "empty.png", "broken.png", "missing.png"]);
    assert!(bad[0].reason.contains("truncated"), "{}", bad[0].reason);
    let err = check_decodable(samples.clone(), 2, false).unwrap_err().to_string();
    for n in &bad_names {
        assert!(err.contains(n.as_str()), "error should list {n}: {err}");
    }
    let (kept, dropped) = check_decodable(samples, 2, true).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(dropped.len(), 5);
    // The dataset names the file when a bad image is reached during training.
    let ds = ImageDataset::new(vec![(d.join("notes.jpg"), 0)], Transform::eval(TransformConfig::default()).unwrap());
    let err = ds.get(0, &mut rng(0)).unwrap_err().to_string();
    assert!(err.contains("notes.jpg"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Training transforms.

#[test]
fn random_resized_crop_is_seeded_and_in_bounds() {
    let img = RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, (x + y) as u8]));
    let t = Transform::train(TransformConfig::default()).unwrap();
    let a = t.apply(&img, &mut rng(7));
    assert_eq!(a.len(), 3 * 224 * 224);
    assert_eq!(a, t.apply(&img, &mut rng(7)), "same seed, same sample");
    assert_ne!(a, t.apply(&img, &mut rng(8)), "another seed, another crop");
    let mut areas = Vec::new();
    for (w, h) in [(300u32, 200u32), (1, 1), (1000, 10), (10, 1000), (2, 3)] {
        for seed in 0..500 {
            let (top, left, ch, cw) = random_resized_crop_params(w, h, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng(seed));
            assert!(ch >= 1 && cw >= 1 && top + ch <= h && left + cw <= w, "{w}x{h}: {top} {left} {ch} {cw}");
            if (w, h) == (300, 200) {
                areas.push((ch * cw) as f64 / 60000.0);
                let r = cw as f64 / ch as f64;
                assert!((0.7..=1.4).contains(&r), "aspect {r}");
            }
        }
    }
    // Areas spread over the 0.08..1 range (uniform draws; rounding and the fallback aside).
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    assert!(areas.iter().cloned().fold(1.0, f64::min) < 0.12 && (0.4..0.65).contains(&mean), "mean area {mean}");
    // Extreme aspect ratios fall back to the centre crop nearest the allowed ratios.
    assert_eq!(random_resized_crop_params(1000, 10, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng(1)), (0, 493, 10, 13));
}

#[test]
fn all_augmentations_are_deterministic_per_seed() {
    let img = RgbImage::from_fn(120, 90, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x * y) % 255) as u8]));
    let cfg = TransformConfig {
        input_size: 64,
        color_jitter: Some(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
        trivial_augment: true,
        random_erasing: 0.5,
        ..Default::default()
    };
    let t = Transform::train(cfg).unwrap();
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..20 {
        let a = t.apply(&img, &mut rng(seed));
        assert_eq!(a.len(), 3 * 64 * 64);
        assert_eq!(a, t.apply(&img, &mut rng(seed)));
        distinct.insert(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    assert_eq!(distinct.len(), 20);
    // Invalid settings are refused, naming the field.
    let bad = TransformConfig { hflip: 1.5, ..Default::default() };
    assert!(Transform::train(bad).unwrap_err().to_string().contains("hflip"));
    let bad =
        TransformConfig { color_jitter: Some(ColorJitter { hue: 0.7, ..Default::default() }), ..Default::default() };
    assert!(Transform::train(bad).unwrap_err().to_string().contains("hue"));
    // The config round-trips through JSON, and omitted fields take the defaults.
    let json = serde_json::to_string(t.config()).unwrap();
    assert_eq!(&serde_json::from_str::<TransformConfig>(&json).unwrap(), t.config());
    let partial: TransformConfig = serde_json::from_str(r#"{"input_size": 160, "interpolation": "bicubic"}"#).unwrap();
    assert_eq!(partial.interpolation, Interpolation::Bicubic);
    assert_eq!(partial.crop_pct, 0.875);
    assert_eq!(TransformConfig::default().eval_resize(), 256);
}

#[test]
fn random_erasing_zeroes_one_rectangle() {
    let (h, w) = (40, 50);
    let mut t = vec![1f32; 3 * h * w];
    super::transforms::random_erasing(&mut t, h, w, 1.0, &mut rng(3));
    let zeros = t.iter().filter(|v| **v == 0.0).count();
    assert!(zeros > 0 && zeros % 3 == 0, "{zeros}");
    let per = zeros / 3;
    assert!(per as f64 >= 0.015 * (h * w) as f64 && per as f64 <= 0.34 * (h * w) as f64, "{per}");
    let mut untouched = vec![1f32; 3 * h * w];
    super::transforms::random_erasing(&mut untouched, h, w, 0.0, &mut rng(3));
    assert!(untouched.iter().all(|v| *v == 1.0));
}

/// The colour ops replay PIL's ImageEnhance/ImageOps integer paths and torchvision's hue shift, so they match
/// torchvision's functional ops on PIL images; the resampling-free geometric ops are compared by the share of
/// differing pixels (nearest-neighbour rounding at pixel boundaries may pick the neighbour).
#[test]
fn colour_and_trivial_augment_ops_match_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    py(
        dir.path(),
        r#"
import torchvision.transforms.functional as F
Image.fromarray(photo(61, 47, 4)).save(os.path.join(D, 'in.png'))
im = Image.open(os.path.join(D, 'in.png')).convert('RGB')
ops = {
  'brightness_0.6': lambda i: F.adjust_brightness(i, 0.6), 'brightness_1.5': lambda i: F.adjust_brightness(i, 1.5),
  'contrast_0.5': lambda i: F.adjust_contrast(i, 0.5), 'contrast_1.7': lambda i: F.adjust_contrast(i, 1.7),
  'saturation_0.3': lambda i: F.adjust_saturation(i, 0.3), 'saturation_1.8': lambda i: F.adjust_saturation(i, 1.8),
  'hue_0.1': lambda i: F.adjust_hue(i, 0.1), 'hue_-0.37': lambda i: F.adjust_hue(i, -0.37),
  'sharpness_0.2': lambda i: F.adjust_sharpness(i, 0.2), 'sharpness_1.9': lambda i: F.adjust_sharpness(i, 1.9),
  'posterize_3': lambda i: F.posterize(i, 3), 'solarize_110.5': lambda i: F.solarize(i, 110.5),
  'autocontrast': F.autocontrast, 'equalize': F.equalize,
  'rotate_30': lambda i: F.rotate(i, 30.0),
  'shearx_0.4': lambda i: F.affine(i, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(0.4)), 0.0], center=[0, 0]),
  'sheary_-0.3': lambda i: F.affine(i, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(-0.3))], center=[0, 0]),
  'translatex_-9': lambda i: F.affine(i, angle=0.0, translate=[-9, 0], scale=1.0, shear=[0.0, 0.0]),
  'translatey_12': lambda i: F.affine(i, angle=0.0, translate=[0, 12], scale=1.0, shear=[0.0, 0.0]),
}
save_file({k: torch.from_numpy(np.ascontiguousarray(np.array(f(im)))) for k, f in ops.items()}, os.path.join(D, 'ref.safetensors'))
"#
        .replace("import torchvision", "import math\nimport torchvision")
        .as_str(),
    );
    let refs = read_tensors(&dir.path().join("ref.safetensors"));
    let img = decode_image(&dir.path().join("in.png")).unwrap();
    let cases: Vec<(&str, RgbImage, usize)> = vec![
        ("brightness_0.6", augment::adjust_brightness(&img, 0.6), 0),
        ("brightness_1.5", augment::adjust_brightness(&img, 1.5), 0),
        ("contrast_0.5", augment::adjust_contrast(&img, 0.5), 0),
        ("contrast_1.7", augment::adjust_contrast(&img, 1.7), 0),
        ("saturation_0.3", augment::adjust_saturation(&img, 0.3), 0),
        ("saturation_1.8", augment::adjust_saturation(&img, 1.8), 0),
        ("hue_0.1", augment::adjust_hue(&img, 0.1), 0),
        ("hue_-0.37", augment::adjust_hue(&img, -0.37), 0),
        ("sharpness_0.2", augment::adjust_sharpness(&img, 0.2), 1),
        ("sharpness_1.9", augment::adjust_sharpness(&img, 1.9), 1),
        ("posterize_3", augment::apply_op(&img, TrivialOp::Posterize, 3.0), 0),
        ("solarize_110.5", augment::apply_op(&img, TrivialOp::Solarize, 110.5), 0),
        ("autocontrast", augment::apply_op(&img, TrivialOp::AutoContrast, 0.0), 0),
        ("equalize", augment::apply_op(&img, TrivialOp::Equalize, 0.0), 0),
        ("rotate_30", augment::apply_op(&img, TrivialOp::Rotate, 30.0), 255),
        ("shearx_0.4", augment::apply_op(&img, TrivialOp::ShearX, 0.4), 255),
        ("sheary_-0.3", augment::apply_op(&img, TrivialOp::ShearY, -0.3), 255),
        ("translatex_-9", augment::apply_op(&img, TrivialOp::TranslateX, -9.0), 255),
        ("translatey_12", augment::apply_op(&img, TrivialOp::TranslateY, 12.0), 255),
    ];
    for (name, ours, tol) in cases {
        let theirs = to_u8(&refs[name]);
        let max = ours.as_raw().iter().zip(&theirs).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let differing = ours.as_raw().iter().zip(&theirs).filter(|(a, b)| a != b).count();
        let share = differing as f64 / theirs.len() as f64;
        println!("{name}: max abs diff {max} levels, {:.2}% values differ", share * 100.0);
        if tol == 255 {
            assert!(share < 0.02, "{name}: {:.2}% of values differ from torchvision", share * 100.0);
        } else {
            assert!(max as usize <= tol, "{name}: max abs diff {max} > {tol}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sources.

fn folder(root: &Path, counts: &[(&str, usize)]) {
    for (class, n) in counts {
        for i in 0..*n {
            write_png(&root.join(class).join(format!("{i:03}.png")), 4, 3, i as u8);
        }
    }
}

#[test]
fn image_folder_split_is_stratified_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    folder(root, &[("dog", 10), ("cat", 6), ("bird", 3)]);
    std::fs::write(root.join("cat/notes.txt"), "ignored").unwrap();
    std::fs::write(root.join("cat/._000.png"), "macOS resource fork").unwrap();
    write_png(&root.join("dog/nested/x.PNG"), 4, 3, 0);
    let s = load_image_folder(root, 0.2, 42).unwrap();
    assert_eq!(s.classes.names(), ["bird", "cat", "dog"]);
    assert!(s.val_is_split && s.test.is_empty());
    let count = |v: &[Sample], c: usize| v.iter().filter(|x| x.1 == c).count();
    // round(3 * .2) = 1, round(6 * .2) = 1, round(11 * .2) = 2.
    assert_eq!([count(&s.val, 0), count(&s.val, 1), count(&s.val, 2)], [1, 1, 2]);
    assert_eq!([count(&s.train, 0), count(&s.train, 1), count(&s.train, 2)], [2, 5, 9]);
    let mut all: Vec<_> = s.train.iter().chain(&s.val).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "train and val are disjoint and cover everything");
    assert!(all.iter().any(|(p, _)| p.ends_with("dog/nested/x.PNG")), "nested folders and upper-case extensions");
    assert_eq!(load_image_folder(root, 0.2, 42).unwrap().val, s.val, "same seed, same split");
    let other: Vec<_> = (0..10).map(|seed| load_image_folder(root, 0.2, seed).unwrap().val).collect();
    assert!(other.iter().any(|v| v != &s.val), "the seed changes the split");
}

#[test]
fn image_folder_with_train_val_test() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    folder(&root.join("train"), &[("a", 3), ("b", 2)]);
    folder(&root.join("val"), &[("b", 1)]);
    folder(&root.join("test"), &[("a", 1), ("b", 1)]);
    let s = load_image_folder(root, 0.0, 0).unwrap();
    assert_eq!(s.classes.names(), ["a", "b"]);
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (5, 1, 2));
    assert_eq!(s.val[0].1, 1, "val labels use the training class list");
    assert!(!s.val_is_split);
    folder(&root.join("val"), &[("zebra", 1)]);
    let err = load_image_folder(root, 0.0, 0).unwrap_err().to_string();
    assert!(err.contains("zebra") && err.contains("not one of the 2 training classes"), "{err}");
    // Without val/, train/ is split; with val_split 0 that is an error.
    let dir2 = tempfile::tempdir().unwrap();
    folder(&dir2.path().join("train"), &[("a", 3), ("b", 3)]);
    let err = load_image_folder(dir2.path(), 0.0, 0).unwrap_err().to_string();
    assert!(err.contains("val_split"), "{err}");
    assert_eq!(load_image_folder(dir2.path(), 0.34, 0).unwrap().val.len(), 2);
}

#[test]
fn image_folder_errors_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    folder(root, &[("a", 2)]);
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::write(root.join("b/readme.txt"), "no pictures here").unwrap();
    let err = load_image_folder(root, 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("class folder \"b\" has no images") && err.contains(".jpeg"), "{err}");
    std::fs::remove_dir_all(root.join("b")).unwrap();
    let err = load_image_folder(root, 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("only one class folder (\"a\")"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = load_image_folder(empty.path(), 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("no images and no class folders"), "{err}");
    let loose = tempfile::tempdir().unwrap();
    write_png(&loose.path().join("x.png"), 2, 2, 0);
    let err = load_image_folder(loose.path(), 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("1 images but no class folders"), "{err}");
    let err = load_image_folder(&root.join("nope"), 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("no such data folder"), "{err}");
}

#[test]
fn manifests_load_and_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_png(&d.join("img/x.png"), 3, 3, 0);
    write_png(&d.join("img/y, z.png"), 3, 3, 1);
    write_png(&d.join("img/w.png"), 3, 3, 2);
    std::fs::write(d.join("m.csv"), "path,label\nimg/x.png,dog\n\n\"img/y, z.png\",cat\nimg/w.png, dog\n").unwrap();
    let (classes, samples) = load_manifest(&d.join("m.csv"), None).unwrap();
    assert_eq!(classes.names(), ["cat", "dog"]);
    assert_eq!(samples, [(d.join("img/x.png"), 1), (d.join("img/y, z.png"), 0), (d.join("img/w.png"), 1)]);
    std::fs::write(
        d.join("m.jsonl"),
        "{\"path\": \"img/x.png\", \"label\": 3}\n{\"path\": \"img/w.png\", \"label\": 10}\n",
    )
    .unwrap();
    let (classes, samples) = load_manifest(&d.join("m.jsonl"), None).unwrap();
    assert_eq!(classes.names(), ["10", "3"], "string order, as ImageFolder sorts folder names");
    assert_eq!(samples[0].1, 1);

    std::fs::write(d.join("bad.csv"), "img/x.png,dog\nimg/missing.png,dog\nimg/w.png,cat,extra\nimg/w.png\n").unwrap();
    let err = load_manifest(&d.join("bad.csv"), None).unwrap_err().to_string();
    println!("{err}");
    let f = d.join("bad.csv").display().to_string();
    assert!(err.contains(&format!("{f}:3: expected 2 columns")), "{err}");
    assert!(err.contains(&format!("{f}:4: expected 2 columns (path,label), found 1")), "{err}");
    std::fs::write(d.join("bad2.csv"), "img/x.png,dog\nimg/missing.png,dog\nimg/w.png,cow\n").unwrap();
    let err = load_manifest(&d.join("bad2.csv"), Some(&classes_cat_dog())).unwrap_err().to_string();
    let f = d.join("bad2.csv").display().to_string();
    assert!(err.contains(&format!("{f}:2: image \"img/missing.png\" not found")), "{err}");
    assert!(err.contains(&format!("{f}:3: label \"cow\" is not one of the 2 classes (cat, dog)")), "{err}");
    std::fs::write(d.join("bad.jsonl"), "{\"path\": \"img/x.png\", \"label\": \"a\"}\n{\"file\": \"img/w.png\"}\n")
        .unwrap();
    let err = load_manifest(&d.join("bad.jsonl"), None).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:2: expected an object", d.join("bad.jsonl").display())), "{err}");
    std::fs::write(d.join("one.csv"), "img/x.png,dog\nimg/w.png,dog\n").unwrap();
    let err = load_manifest(&d.join("one.csv"), None).unwrap_err().to_string();
    assert!(err.contains("at least two classes"), "{err}");
    let err = load_manifest(&d.join("m.txt"), None).unwrap_err().to_string();
    assert!(err.contains("m.txt"), "{err}");
}

fn classes_cat_dog() -> ClassList {
    ClassList::new(vec!["cat".into(), "dog".into()]).unwrap()
}

#[test]
fn class_list_round_trips_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("classes.json");
    let c = ClassList::new(vec!["zebra".into(), "ant".into(), "cat".into()]).unwrap();
    c.save(&p).unwrap();
    let back = ClassList::load(&p).unwrap();
    assert_eq!(back, c, "order is kept, not re-sorted");
    assert_eq!((back.index("ant"), back.name(2)), (Some(1), Some("cat")));
    std::fs::write(&p, r#"{"classes": ["a", "a"]}"#).unwrap();
    let err = format!("{:#}", ClassList::load(&p).unwrap_err());
    assert!(err.contains("classes.json") && err.contains("twice"), "{err}");
    std::fs::write(&p, "[1, 2]").unwrap();
    assert!(ClassList::load(&p).unwrap_err().to_string().contains("classes.json"));
}

// ---------------------------------------------------------------------------------------------------------------
// Dataset and loader.

#[test]
fn dataset_batches_through_the_core_loader() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path(), &[("a", 4), ("b", 3)]);
    let (classes, samples) = scan_class_folders(dir.path(), None).unwrap();
    assert_eq!(classes.len(), 2);
    let cfg = TransformConfig { input_size: 16, ..Default::default() };
    let eval = Transform::eval(cfg.clone()).unwrap();
    let ds = Arc::new(ImageDataset::new(samples.clone(), eval.clone()));
    let loader = DataLoader::sequential(ds, LoaderConfig { batch_size: 3, workers: 2, ..Default::default() });
    let batches: Vec<ImageBatch> = loader.iter_epoch(0, 0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].images.size(), [3, 3, 16, 16]);
    assert_eq!(batches[0].images.kind(), tch::Kind::Float);
    assert_eq!(batches[2].images.size(), [1, 3, 16, 16]);
    let labels: Vec<i64> = batches.iter().flat_map(|b| Vec::<i64>::try_from(&b.labels).unwrap()).collect();
    assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1]);
    let direct = eval.apply(&decode_image(&samples[4].0).unwrap(), &mut rng(0));
    assert_eq!(to_f32(&batches[1].images.get(1)), direct);
    // Training batches are reproducible from (seed, epoch, index) on any number of workers.
    let train = Arc::new(ImageDataset::new(samples, Transform::train(cfg).unwrap()));
    let run = |workers| {
        let l =
            DataLoader::shuffled(train.clone(), LoaderConfig { batch_size: 2, workers, seed: 5, ..Default::default() });
        l.iter_epoch(1, 0).map(|b| to_f32(&b.unwrap().images)).collect::<Vec<_>>()
    };
    assert_eq!(run(0), run(3));
}

// ---------------------------------------------------------------------------------------------------------------
// MNIST-5k.

#[test]
fn mnist5k_prepares_a_stratified_idempotent_image_folder() {
    let source = mnist::source_path();
    if !source.exists() {
        eprintln!("skipping: {} not present (scripts/setup.sh fetches it)", source.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist5k");
    let m = prepare_mnist5k(&source, &out, 0.2, 0).unwrap();
    assert!(m.written);
    assert_eq!((m.train, m.val), (4000, 1000));
    let s = load_image_folder(&out, 0.2, 0).unwrap();
    assert!(!s.val_is_split);
    assert_eq!(s.classes.names(), (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    for c in 0..10 {
        assert_eq!(s.val.iter().filter(|x| x.1 == c).count(), 100);
        assert_eq!(s.train.iter().filter(|x| x.1 == c).count(), 400);
    }
    // A written PNG holds the source row's pixels; the file name is the row number.
    let rows = mnist::read_source(&source).unwrap();
    let (path, label) = &s.val[17];
    let row: usize = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(rows[row].1, *label);
    let grey = image::open(path).unwrap();
    assert_eq!(grey.color(), image::ColorType::L8);
    assert_eq!(grey.as_bytes(), rows[row].0.as_slice());
    // Same parameters: reused. Other seed: rebuilt, with another split.
    assert!(!prepare_mnist5k(&source, &out, 0.2, 0).unwrap().written);
    assert!(prepare_mnist5k(&source, &out, 0.2, 1).unwrap().written);
    assert_ne!(load_image_folder(&out, 0.2, 0).unwrap().val, s.val);
    // A folder suite did not write is never overwritten.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
    let err = prepare_mnist5k(&source, &foreign, 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("not an MNIST-5k folder written by suite"), "{err}");
    assert!(foreign.join("keep.txt").exists());
}

#[test]
fn resize_is_identity_at_the_same_size_and_handles_upscaling() {
    let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
    assert_eq!(resize(&img, 5, 4, Interpolation::Bilinear), img);
    let up = resize(&img, 50, 40, Interpolation::Bicubic);
    assert_eq!(up.dimensions(), (50, 40));
    let one = RgbImage::from_pixel(1, 1, image::Rgb([9, 8, 7]));
    let big = resize(&one, 7, 3, Interpolation::Bilinear);
    assert!(big.pixels().all(|p| p.0 == [9, 8, 7]));
}
