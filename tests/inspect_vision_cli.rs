//! End-to-end tests of `suite inspect vision` on small generated PNG sets with planted problems: an exact copy and a
//! resized copy across train/val, a corrupt file, a greyscale image among colour ones, imbalanced classes, a class
//! only a manifest's split has, user errors, and a tiny run ranking a planted label error.

use std::path::Path;

use serde_json::Value;

mod common;
use common::*;

/// A 40×40 PNG of class `class` (a strong class tint) with a seed-specific wave pattern, so that two seeds give
/// different pictures (distant perceptual hashes) while a class stays easy to tell apart.
fn picture(class: usize, seed: usize) -> image::RgbImage {
    let (fx, fy, phase) = (0.15 + (seed % 7) as f32 * 0.11, 0.1 + (seed % 5) as f32 * 0.13, seed as f32 * 0.7);
    image::RgbImage::from_fn(40, 40, |x, y| {
        let wave = ((fx * x as f32 + phase).sin() * (fy * y as f32 - phase).cos() * 90.0) as i32;
        let mut px = [60i32, 60, 60];
        px[class % 3] = 190;
        image::Rgb(px.map(|v| (v + wave).clamp(0, 255) as u8))
    })
}

fn write_picture(path: &Path, class: usize, seed: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    picture(class, seed).save(path).unwrap();
}

const NAMES: [&str; 3] = ["circle", "square", "stripes"];

/// train: 16 / 8 / 4 images (imbalance 4), val: 3 per class; plus the planted problems. Returns the data root.
fn planted_set(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("data");
    for (c, n) in [(0, 16), (1, 8), (2, 4)] {
        for i in 0..n {
            write_picture(&root.join("train").join(NAMES[c]).join(format!("{i}.png")), c, 1000 * c + i);
        }
        for i in 0..3 {
            write_picture(&root.join("val").join(NAMES[c]).join(format!("v{i}.png")), c, 1000 * c + 500 + i);
        }
    }
    // An exact copy of a training image in val, under another name.
    std::fs::copy(root.join("train/circle/0.png"), root.join("val/circle/copy_of_0.png")).unwrap();
    // A near copy: the training image resized.
    let src = image::open(root.join("train/square/1.png")).unwrap();
    src.resize_exact(48, 48, image::imageops::FilterType::CatmullRom)
        .save(root.join("val/square/resized_1.png"))
        .unwrap();
    // A corrupt file (a PNG cut short) and a greyscale image.
    let bytes = std::fs::read(root.join("train/stripes/0.png")).unwrap();
    std::fs::write(root.join("train/stripes/broken.png"), &bytes[..bytes.len() / 3]).unwrap();
    image::DynamicImage::ImageRgb8(picture(0, 77)).to_luma8().save(root.join("train/circle/grey.png")).unwrap();
    root
}

fn section<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sections"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no {id} section"))
}

fn has_finding(s: &Value, severity: &str, needle: &str) -> bool {
    s["findings"].as_array().unwrap().iter().any(|f| {
        f["severity"] == severity
            && (f["message"].as_str().unwrap().contains(needle)
                || f["advice"].as_str().is_some_and(|a| a.contains(needle)))
    })
}

fn table_rows<'a>(s: &'a Value, title_start: &str) -> &'a Vec<Value> {
    let t = s["tables"].as_array().unwrap().iter().find(|t| t["title"].as_str().unwrap().starts_with(title_start));
    t.unwrap_or_else(|| panic!("no table {title_start:?} in {s}"))["rows"].as_array().unwrap()
}

#[test]
fn planted_problems_show_in_the_report() {
    let dir = tmp();
    let root = planted_set(dir.path());
    let out = dir.path().join("report");
    let run = suite(dir.path(), &["inspect", "vision", "--data", s(&root), "--out", s(&out)]);
    run.assert_ok();
    assert!(run.stdout.contains("FIX") && run.stdout.contains("report.html"), "{}", run.show());
    let r = read_json(&out.join("report.json"));
    assert_eq!(r["domain"], "vision");
    let inputs: Vec<(&str, u64)> = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["split"].as_str().unwrap(), i["examples"].as_u64().unwrap()))
        .collect();
    assert_eq!(inputs, [("train", 16 + 8 + 4 + 2), ("val", 9 + 2)]);

    let classes = section(&r, "classes");
    assert_eq!(
        classes["stats"]["imbalance_ratio"],
        17.0 / 5.0,
        "circle 17 (with grey.png), stripes 5 (with broken.png)"
    );
    assert!(has_finding(classes, "warning", "macro F1"), "{classes}");
    assert_eq!(classes["stats"]["per_class"]["val"]["circle"], 4);

    let files = section(&r, "files");
    assert_eq!(files["stats"]["unreadable"], 1);
    assert!(files["stats"]["unreadable_files"][0].as_str().unwrap().ends_with("broken.png"));
    assert!(has_finding(files, "problem", "cannot be decoded"), "{files}");
    let rows = table_rows(files, "Unreadable");
    assert!(rows[0][2].as_str().unwrap().contains("Png"), "the reason names the format: {rows:?}");

    let colour = section(&r, "colour");
    assert_eq!(colour["stats"]["grey_stored"], 1);
    assert_eq!(colour["stats"]["mixed"], true);
    assert!(has_finding(colour, "warning", "mixed modes"), "{colour}");

    let sizes = section(&r, "sizes");
    assert_eq!(sizes["stats"]["distinct_sizes"], 2, "40x40 and the resized 48x48");
    assert_eq!(sizes["stats"]["width"]["max"], 48.0);

    let dups = section(&r, "duplicates");
    assert_eq!(dups["stats"]["exact_pairs_across_splits"], 1, "{dups}");
    let exact = table_rows(dups, "exact");
    assert!(exact[0][2].as_str().unwrap().ends_with("train/circle/0.png"), "{exact:?}");
    assert!(exact[0][4].as_str().unwrap().ends_with("val/circle/copy_of_0.png"), "{exact:?}");
    assert_eq!(dups["stats"]["near_pairs_across_splits"], 1, "only the resized copy: {dups}");
    let near = table_rows(dups, "near");
    assert!(
        near[0][4].as_str().unwrap().ends_with("resized_1.png")
            && near[0][2].as_str().unwrap().ends_with("square/1.png")
    );
    assert!(has_finding(dups, "problem", "span splits"));

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("copy_of_0.png") && !html.contains("<script"));
}

#[test]
fn a_manifest_split_with_an_unknown_class_is_read_and_reported() {
    let dir = tmp();
    let root = planted_set(dir.path());
    write_picture(&dir.path().join("extra/fox.png"), 1, 4242);
    let manifest = dir.path().join("val.csv");
    std::fs::write(
        &manifest,
        "path,label\ndata/val/circle/v0.png,circle\ndata/val/square/v0.png,square\nextra/fox.png,fox\n",
    )
    .unwrap();
    let out = dir.path().join("report");
    let train = root.join("train");
    let args = ["inspect", "vision", "--data", s(&train), "--val-data", s(&manifest), "--json", "--out", s(&out)];
    let run = suite(dir.path(), &args);
    run.assert_ok();
    let r: Value = serde_json::from_str(&run.stdout).expect("--json prints report.json");
    let classes = section(&r, "classes");
    assert_eq!(classes["stats"]["class_names"], serde_json::json!(["circle", "square", "stripes", "fox"]));
    assert!(has_finding(classes, "problem", "\"fox\" is in val"), "{classes}");
    assert!(has_finding(classes, "warning", "\"stripes\" has no examples in val"), "{classes}");
}

#[test]
fn bad_paths_manifests_and_flags_are_user_errors() {
    let dir = tmp();
    let nope = dir.path().join("nope");
    suite(dir.path(), &["inspect", "vision", "--data", s(&nope)]).assert_user_error(&["nope", "no such file"]);
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a.png,cat,extra\n").unwrap();
    suite(dir.path(), &["inspect", "vision", "--data", s(&bad)]).assert_user_error(&["bad.csv:1", "2 columns"]);
    let root = planted_set(dir.path());
    suite(dir.path(), &["inspect", "vision", "--data", s(&root), "--text-column", "x"])
        .assert_user_error(&["--text-column"]);
    suite(dir.path(), &["inspect", "vision", "--data", s(&root), "--run", s(&nope)]).assert_user_error(&["nope"]);
}

#[test]
fn a_run_ranks_a_planted_label_error_first() {
    let dir = tmp();
    let run = common::serve::vision_run(dir.path());
    // 10 images per class, one circle filed under stripes.
    let root = dir.path().join("labelled");
    for (c, name) in NAMES.iter().enumerate() {
        for i in 0..10 {
            write_picture(&root.join(name).join(format!("{i}.png")), c, 100 * c + i);
        }
    }
    write_picture(&root.join("stripes/mislabelled.png"), 0, 99);
    let out = dir.path().join("report");
    let args = ["inspect", "vision", "--data", s(&root), "--run", s(&run), "--folds", "3", "--out", s(&out)];
    suite(dir.path(), &args).assert_ok();
    let r = read_json(&out.join("report.json"));
    assert_eq!(r["run"], s(&run));
    let li = section(&r, "label_issues");
    assert_eq!(li["stats"]["examples_scored"], 31);
    assert_eq!(li["stats"]["folds"], 3);
    let flagged = li["stats"]["flagged_paths"].as_array().unwrap();
    assert!(flagged[0].as_str().unwrap().ends_with("mislabelled.png"), "{li}");
    assert_eq!(li["stats"]["label_issue_count"].as_u64().unwrap() as usize, flagged.len());
    let first = &table_rows(li, "Label-issue candidates")[0];
    assert_eq!((first[3].as_str().unwrap(), first[4].as_str().unwrap()), ("stripes", "circle"), "{first:?}");
    let per_class = table_rows(li, "Label issues per given class");
    assert_eq!(per_class.len(), 3);
    assert_eq!(per_class[2][1], "11", "stripes holds 11 examples: {per_class:?}");
}
