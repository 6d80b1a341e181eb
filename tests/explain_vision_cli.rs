//! End-to-end tests of `suite explain vision`: a tiny ResNet-18 run (64-pixel input, one epoch on a dozen
//! generated images, one libtorch thread, as tests/vision_cli.rs makes them), with and without a LoRA adapter,
//! explained with each method; the files, their shapes, where the map peaks, and the refusals of bad input.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

mod common;
use common::*;

/// Which quadrant of an image is bright decides its class; the rest is black.
const QUADRANTS: [&str; 2] = ["top_right", "bottom_left"];

/// A 48×48 PNG, black but for a bright, slightly noisy `quadrant` (0: top right, 1: bottom left).
fn write_quadrant_image(path: &Path, quadrant: usize, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(48, 48, |x, y| {
        let inside = if quadrant == 0 { x >= 24 && y < 24 } else { x < 24 && y >= 24 };
        let v = if inside { 200 + ((x * 7 + y * 13 + seed * 31) % 50) as u8 } else { 0 };
        image::Rgb([v, v, v])
    });
    img.save(path).unwrap();
}

/// `root/{train,val}/<quadrant>/N.png`.
fn quadrant_data(root: &Path) -> PathBuf {
    for (split, n) in [("train", 6), ("val", 2)] {
        for (q, name) in QUADRANTS.iter().enumerate() {
            for i in 0..n {
                write_quadrant_image(
                    &root.join(split).join(name).join(format!("{i}.png")),
                    q,
                    i as u32 + 100 * q as u32,
                );
            }
        }
    }
    root.to_path_buf()
}

/// A ResNet-18 state dict written by suite's own model code (random weights): the base of the LoRA run.
fn write_resnet18_weights(path: &Path) {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _model = suite_vision::models::lookup("resnet18").unwrap().build(&vs.root(), 1000).unwrap();
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&vars, path).unwrap();
}

/// Trains a one-epoch run in `dir/run-<tag>` with the extra `flags`.
fn train(dir: &Path, data: &Path, tag: &str, flags: &[&str]) -> PathBuf {
    let run = dir.join(format!("run-{tag}"));
    let mut args = vec!["finetune", "vision", "--threads", "1", "--workers", "1", "--seed", "0", "--device", "cpu"];
    args.extend(["--epochs", "1", "--input-size", "64", "--augment", "none", "--batch-size", "4"]);
    args.extend(flags);
    args.extend(["--data", s(data), "--out", s(&run)]);
    suite(dir, &args).assert_ok();
    run
}

/// `suite explain vision` on `run` with `more` arguments, on the CPU.
fn explain(dir: &Path, run: &Path, more: &[&str]) -> Out {
    let mut args = vec!["explain", "vision", "--run", s(run), "--device", "cpu"];
    args.extend(more);
    suite(dir, &args)
}

/// The shape and values of a little-endian float32 `.npy` file (the format's version 1 header, as written).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not an .npy file", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let values = bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (shape, values)
}

/// Sum of |map| over each quadrant (top left, top right, bottom left, bottom right) of an `h`×`w` map.
fn quadrant_mass(shape: &[usize], values: &[f32]) -> [f64; 4] {
    let (h, w) = (shape[0], shape[1]);
    let mut mass = [0.0; 4];
    for (i, v) in values.iter().enumerate() {
        let (y, x) = (i / w, i % w);
        mass[2 * usize::from(y >= h / 2) + usize::from(x >= w / 2)] += v.abs() as f64;
    }
    mass
}

#[test]
fn explain_writes_maps_that_find_the_planted_quadrant_and_refuses_bad_input() {
    let dir = tmp();
    let data = quadrant_data(&dir.path().join("data"));
    let run = train(dir.path(), &data, "full", &["--model", "resnet18", "--init", "random"]);
    let image = data.join("val/top_right/0.png");
    let out_dir = dir.path().join("out");

    // Grad-CAM of the default layer (layer4: 2×2 at a 64-pixel input), for the predicted class.
    let out = explain(dir.path(), &run, &[s(&image), s(&data.join("val/bottom_left/1.png")), "--out", s(&out_dir)]);
    out.assert_ok();
    assert_eq!(out.stdout.lines().filter(|l| l.contains("predicted")).count(), 2, "{}", out.show());
    let png = image::open(out_dir.join("0.gradcam.png")).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
    let (shape, values) = read_npy(&out_dir.join("0.gradcam.npy"));
    assert_eq!(shape, [2, 2]);
    assert!(values.iter().all(|v| v.is_finite() && *v >= 0.0), "{values:?}");
    assert!(out_dir.join("1.gradcam.png").is_file() && out_dir.join("1.gradcam.npy").is_file());
    let index = read_json(&out_dir.join("explain.json"));
    let images = index["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(index["method"], "gradcam");
    assert_eq!(images[0]["layer"], "layer4");
    assert!(QUADRANTS.contains(&images[0]["predicted_label"].as_str().unwrap()), "{index}");

    // Grad-CAM++ of a named block, for a named class: a 4×4 map at layer3.1.
    let out = explain(
        dir.path(),
        &run,
        &[s(&image), "--method", "gradcam++", "--layer", "layer3.1", "--target", "bottom_left", "--out", s(&out_dir)],
    );
    out.assert_ok();
    assert!(out.stdout.contains("target bottom_left"), "{}", out.show());
    assert_eq!(read_npy(&out_dir.join("0.gradcampp.npy")).0, [4, 4]);

    // Integrated gradients from a black image: the attributions live where the bright quadrant is (top right),
    // at the input's resolution, and add up to the logit difference (completeness).
    let out = explain(
        dir.path(),
        &run,
        &[s(&image), "--method", "integrated-gradients", "--steps", "16", "--out", s(&out_dir)],
    );
    out.assert_ok();
    let (shape, values) = read_npy(&out_dir.join("0.ig.npy"));
    assert_eq!(shape, [64, 64]);
    let mass = quadrant_mass(&shape, &values);
    assert!(mass[1] > 0.0 && mass[1] > 10.0 * (mass[0] + mass[2] + mass[3]), "attribution per quadrant {mass:?}");
    let index = read_json(&out_dir.join("explain.json"));
    let c = &index["images"][0]["completeness"];
    let (err, diff) = (c["error"].as_f64().unwrap(), c["logit_difference"].as_f64().unwrap());
    assert!(err.abs() <= 0.05 * diff.abs().max(0.1), "completeness error {err} for a logit change of {diff}");

    // Bad input: one error line, exit code 2, naming what is wrong; nothing panics.
    let err = explain(dir.path(), &run, &[s(&image), "--layer", "layer9"]).assert_user_error(&["layer9", "layer4"]);
    assert!(err.contains("layer3.1"), "the valid layers are listed: {err}");
    explain(dir.path(), &run, &[s(&image), "--target", "sideways"]).assert_user_error(&["sideways", "top_right"]);
    explain(dir.path(), &run, &[s(&image), "--target", "7"]).assert_user_error(&["\"7\"", "bottom_left"]);
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"not a picture").unwrap();
    explain(dir.path(), &run, &[s(&image), s(&broken)]).assert_user_error(&["broken.png"]);
    explain(dir.path(), &run, &[s(&dir.path().join("missing.png"))]).assert_user_error(&["missing.png"]);
    explain(dir.path(), &run, &[s(&image), "--method", "integrated-gradients", "--steps", "0"])
        .assert_user_error(&["--steps"]);
    explain(dir.path(), &run, &[s(&image), "--which", "latest"]).assert_user_error(&["latest"]);

    // A LoRA run loads through the predictor (base weights + adapter) and explains the same way.
    let weights = dir.path().join("r18.safetensors");
    write_resnet18_weights(&weights);
    let lora = train(dir.path(), &data, "lora", &["--model", "resnet18", "--weights", s(&weights), "--peft", "lora"]);
    assert!(lora.join("best/adapter.safetensors").is_file(), "the LoRA run saved an adapter");
    let lora_out = dir.path().join("out-lora");
    explain(dir.path(), &lora, &[s(&image), "--out", s(&lora_out)]).assert_ok();
    assert_eq!(read_npy(&lora_out.join("0.gradcam.npy")).0, [2, 2]);
}
