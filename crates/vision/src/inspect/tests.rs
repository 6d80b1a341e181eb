//! The inspection on small generated image sets: splits as training reads them, per-file facts, duplicate groups and
//! the findings they lead to.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};
use suite_core::quality::report::{Section, Severity};

use super::scan::{image_facts, Mode};
use super::*;

fn encode(img: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A textured colour picture that depends on `seed` (distinct seeds give distant perceptual hashes).
fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * (3 + seed % 5) + y * (7 + seed % 3)) ^ (seed * 37)) as u8;
        image::Rgb([v, v.wrapping_add((seed * 50) as u8), (x * y / 4 + seed * 11) as u8])
    })
}

fn write(path: &Path, img: &DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encode(img)).unwrap();
}

fn worst(s: &Section) -> Severity {
    s.worst()
}

#[test]
fn stored_grey_rgb_grey_colour_alpha_and_bad_bytes() {
    let grey = GrayImage::from_fn(20, 10, |x, y| image::Luma([(x * 10 + y) as u8]));
    let f = image_facts(&encode(&DynamicImage::ImageLuma8(grey.clone()))).unwrap();
    assert_eq!((f.width, f.height, f.mode, f.alpha), (20, 10, Mode::Grey, false));
    let as_rgb = DynamicImage::ImageLuma8(grey).to_rgb8();
    let g = image_facts(&encode(&DynamicImage::ImageRgb8(as_rgb))).unwrap();
    assert_eq!(g.mode, Mode::RgbGrey);
    assert_eq!(g.phash, f.phash, "grey stored either way hashes the same");
    let c = image_facts(&encode(&DynamicImage::ImageRgb8(picture(16, 16, 1)))).unwrap();
    assert_eq!(c.mode, Mode::Colour);
    let rgba = RgbaImage::from_fn(8, 8, |x, _| image::Rgba([x as u8 * 30, 0, 0, 128]));
    let a = image_facts(&encode(&DynamicImage::ImageRgba8(rgba))).unwrap();
    assert!(a.alpha && a.mode == Mode::Colour);
    let err = image_facts(b"not an image at all").unwrap_err();
    assert!(err.contains("not an image"), "{err}");
}

#[test]
fn the_split_layout_of_finetune_is_followed_and_explicit_splits_win() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    for split in ["train", "valid", "test"] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            write(&root.join(split).join(class).join("0.png"), &DynamicImage::ImageRgb8(picture(8, 8, c as u32)));
        }
    }
    let r = splits::resolve(&[("train".into(), root.clone())]);
    let names: Vec<&str> = r.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["train", "val", "test"]);
    assert_eq!(r[1].1, root.join("valid"));
    let other = d.path().join("other");
    let r = splits::resolve(&[("train".into(), root.clone()), ("val".into(), other.clone())]);
    assert_eq!(r[1], ("val".to_string(), other));
    assert_eq!(r[0].1, root.join("train"));
    // A plain class folder is one split, whose validation part finetune carves out.
    let data = splits::read(&[("train".into(), root.join("train"))]).unwrap();
    assert_eq!(data.splits, ["train"]);
    assert!(data.val_is_carved);
    let err = splits::read(&[("train".into(), d.path().join("nope"))]).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("no such file"), "{err}");
}

#[test]
fn a_class_only_validation_has_and_imbalance_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut seed = 0;
    for (class, n) in [("a", 12), ("b", 3)] {
        for i in 0..n {
            seed += 1;
            write(
                &root.join("train").join(class).join(format!("{i}.png")),
                &DynamicImage::ImageRgb8(picture(8, 8, seed)),
            );
        }
    }
    for class in ["a", "c"] {
        seed += 1;
        write(&root.join("val").join(class).join("0.png"), &DynamicImage::ImageRgb8(picture(8, 8, seed)));
    }
    let data = splits::read(&[("train".into(), root.to_path_buf())]).unwrap();
    assert_eq!(data.classes, ["a", "b", "c"]);
    assert_eq!(data.train_classes, 2);
    assert_eq!(data.counts(), vec![vec![12, 3, 0], vec![1, 0, 1]]);
    let s = classes::section(&data);
    assert_eq!(s.stats["imbalance_ratio"], serde_json::json!(4.0));
    assert_eq!(s.stats["smallest_class"], "b");
    let missing = s.stats["missing_classes"].as_array().unwrap();
    assert_eq!(missing.len(), 2, "b is missing from val, c from train: {missing:?}");
    assert!(s.findings.iter().any(|f| f.severity == Severity::Problem && f.message.contains("\"c\"")));
    assert!(s
        .findings
        .iter()
        .any(|f| f.severity == Severity::Warning && f.advice.as_deref().is_some_and(|a| a.contains("macro F1"))));
    assert_eq!(worst(&s), Severity::Problem);
}

#[test]
fn exact_and_near_copies_are_grouped_once_each() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let base = DynamicImage::ImageRgb8(picture(64, 64, 3));
    write(&root.join("train/a/orig.png"), &base);
    write(&root.join("train/a/other.png"), &DynamicImage::ImageRgb8(picture(64, 64, 4)));
    write(&root.join("train/b/x.png"), &DynamicImage::ImageRgb8(picture(64, 64, 9)));
    std::fs::create_dir_all(root.join("val/a")).unwrap();
    std::fs::copy(root.join("train/a/orig.png"), root.join("val/a/copy.png")).unwrap();
    let resized = base.resize_exact(60, 60, image::imageops::FilterType::Triangle);
    write(&root.join("val/a/resized.png"), &resized);
    write(&root.join("val/b/y.png"), &DynamicImage::ImageRgb8(picture(64, 64, 12)));
    let data = splits::read(&[("train".into(), root.to_path_buf())]).unwrap();
    let facts = scan::scan(&data.examples, 2);
    let (s, found) = duplicates::section(&data, &facts, 4);
    let name = |i: usize| data.examples[i].path.file_name().unwrap().to_string_lossy().to_string();
    let groups =
        |g: &[Vec<usize>]| -> Vec<Vec<String>> { g.iter().map(|g| g.iter().map(|&i| name(i)).collect()).collect() };
    assert_eq!(groups(&found.exact), [["orig.png", "copy.png"]]);
    // The resized copy is near both the original and its exact copy; those two are not a near pair themselves.
    assert_eq!(found.near.len(), 1, "{:?}", groups(&found.near));
    assert!(found.near[0].iter().any(|&i| name(i) == "resized.png"));
    assert_eq!(s.stats["exact_pairs_across_splits"], 1);
    assert!(s.stats["near_pairs_across_splits"].as_u64().unwrap() >= 1);
    assert_eq!(s.worst(), Severity::Problem);
}

#[test]
fn histogram_edges_cover_the_sizes() {
    assert_eq!(images_edges(28.0, 28.0), [16.0, 32.0]);
    assert_eq!(images_edges(40.0, 300.0), [32.0, 64.0, 128.0, 256.0, 512.0]);
}

fn images_edges(lo: f64, hi: f64) -> Vec<f64> {
    images::pow2_edges(lo, hi)
}

#[test]
fn thumbnail_correlation_ignores_brightness_and_handles_flat_images() {
    let x: Vec<u8> = (0..64).map(|i| (i * 3) as u8).collect();
    let brighter: Vec<u8> = x.iter().map(|&v| v / 2 + 60).collect();
    assert!((duplicates::thumb_correlation(&x, &brighter) - 1.0).abs() < 1e-3);
    let reversed: Vec<u8> = x.iter().rev().copied().collect();
    assert!(duplicates::thumb_correlation(&x, &reversed) < 0.0);
    let (flat, flat2, other) = (vec![10u8; 64], vec![11u8; 64], vec![200u8; 64]);
    assert_eq!(duplicates::thumb_correlation(&flat, &flat2), 1.0);
    assert_eq!(duplicates::thumb_correlation(&flat, &other), 0.0);
    assert_eq!(duplicates::thumb_correlation(&flat, &x), 0.0);
}
