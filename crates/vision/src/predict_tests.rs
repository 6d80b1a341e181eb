//! The prediction API on tiny seeded ResNet-18s (32-pixel inputs): a batch answers as one image at a time, a PEFT
//! adapter folder predicts as the adapted model in memory, and bad or oversized images are refused cleanly.

use std::io::Cursor;
use std::path::Path;

use suite_core::peft::{LoraConfig, PeftConfig, Targets};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::data::ClassList;
use crate::models::lookup;
use crate::task::{apply_vision_peft, load_pretrained, save_adapter_layout, save_timm_layout, VisionPeft};

const NAMES: [&str; 3] = ["cat", "dog", "fox"];

/// Largest difference allowed between a batched and a one-image probability (float32 sums in another order).
const TOL: f32 = 1e-5;

/// Gives the batch norms non-trivial statistics, so that evaluation mode differs from an identity.
fn randomize_batch_norms(vs: &VarStore) {
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            if name.ends_with("running_mean") {
                t.shallow_clone().copy_(&(t.randn_like() * 0.1));
            } else if name.ends_with("running_var") {
                t.shallow_clone().copy_(&(t.rand_like() + 0.5));
            }
        }
    });
}

/// A seeded, randomly initialised ResNet-18 classifier of [`NAMES`] on 32-pixel inputs.
fn tiny_task(vs: VarStore, model: Box<dyn crate::models::ImageClassifier>) -> ClassifierTask {
    let spec = lookup("resnet18").unwrap();
    let mut preprocess = spec.preprocess;
    preprocess.input_size = 32;
    ClassifierTask {
        vs,
        model,
        spec,
        classes: ClassList::new(NAMES.iter().map(|s| s.to_string()).collect()).unwrap(),
        label_smoothing: 0.0,
        mixup: 0.0,
        cutmix: 0.0,
        inputs: Inputs::Pixels,
        preprocess,
        last_report: None,
        peft: None,
    }
}

/// A PNG of `w`×`h` pixels whose content depends on `seed`.
fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 101) as u8;
        image::Rgb([v, v.wrapping_mul(3), (x * y + seed) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The probability of every label, by name.
fn probs_by_label(p: &ImagePrediction) -> Vec<(String, f32)> {
    let mut v: Vec<(String, f32)> = p.top.iter().map(|s| (s.label.clone(), s.prob)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn max_difference(a: &ImagePrediction, b: &ImagePrediction) -> f32 {
    let (a, b) = (probs_by_label(a), probs_by_label(b));
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    a.iter().zip(&b).map(|(x, y)| (x.1 - y.1).abs()).fold(0.0, f32::max)
}

fn saved_tiny_model(dir: &Path) {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let model = lookup("resnet18").unwrap().build(&vs.root(), NAMES.len() as i64).unwrap();
    randomize_batch_norms(&vs);
    save_timm_layout(&tiny_task(vs, model), dir).unwrap();
}

#[test]
fn a_batch_answers_as_one_image_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny_model(dir.path());
    let p = VisionPredictor::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(p.labels(), NAMES);
    assert_eq!(p.input_shape(), [3, 32, 32]);
    // Different sizes and aspect ratios: every image is resized and cropped to the same input.
    let images: Vec<Tensor> = [(40, 40, 0), (64, 33, 1), (17, 90, 2), (32, 32, 3)]
        .iter()
        .map(|&(w, h, s)| p.decode(&png(w, h, s)).unwrap())
        .collect();
    let batch = p.predict(&images, 3).unwrap();
    assert_eq!(batch.len(), images.len());
    let mut worst = 0.0f32;
    for (x, b) in images.iter().zip(&batch) {
        let one = p.predict(std::slice::from_ref(x), 3).unwrap();
        worst = worst.max(max_difference(b, &one[0]));
        let probs: Vec<f32> = b.top.iter().map(|s| s.prob).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probs:?}");
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax over all labels: {probs:?}");
    }
    eprintln!("vision: batched vs one at a time, largest probability difference {worst:e}");
    assert!(worst <= TOL, "batched vs one at a time: largest difference {worst:e}");
    // top_k is clamped to 1..=labels.
    assert_eq!(p.predict(&images[..1], 0).unwrap()[0].top.len(), 1);
    assert_eq!(p.predict(&images[..1], 10).unwrap()[0].top.len(), 3);
    assert!(p.predict(&[], 5).unwrap().is_empty());
}

#[test]
fn a_tensor_of_another_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny_model(dir.path());
    let p = VisionPredictor::load(dir.path(), Device::Cpu).unwrap();
    let wrong = Tensor::zeros([3, 16, 16], (Kind::Float, Device::Cpu));
    let err = format!("{:#}", p.predict(&[wrong], 1).unwrap_err());
    assert!(err.contains("image 0") && err.contains("[3, 32, 32]"), "{err}");
}

/// One PNG chunk: length, type, data, CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = kind.to_vec();
    body.extend(data);
    let mut crc = flate2::Crc::new();
    crc.update(&body);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(&body);
    out.extend(crc.sum().to_be_bytes());
    out
}

/// A PNG whose header declares `w`×`h` 8-bit RGB pixels, followed by a few bytes of image data: what a
/// decompression bomb looks like to a decoder before it allocates.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    // zlib: a stored block of 8 zero bytes (rows of a bomb compress to almost nothing).
    out.extend(png_chunk(b"IDAT", &[0x78, 0x01, 0x01, 0x08, 0x00, 0xf7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

#[test]
fn bad_and_oversized_images_are_refused_with_a_message_for_the_client() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny_model(dir.path());
    let p = VisionPredictor::load(dir.path(), Device::Cpu).unwrap();
    for (bytes, reason) in [
        (Vec::new(), "empty"),
        (b"hello, not an image".to_vec(), "supported format"),
        (png(20, 20, 0)[..60].to_vec(), "Png"),
        // A decompression bomb's header: 100 000 × 100 000 pixels (30 GB of RGB) in 33 bytes.
        (png_header_only(100_000, 100_000), "larger than allowed"),
        // Within the side limit but over the pixel limit (PIL's decompression-bomb bound): 256 million pixels,
        // refused from the header before any allocation.
        (png_header_only(16_000, 16_000), "more than the 178 million allowed"),
    ] {
        let err = format!("{:#}", p.decode(&bytes).unwrap_err());
        assert!(err.starts_with("not a decodable image (") && err.contains(reason), "{reason}: {err}");
    }
}

#[test]
fn an_adapter_folder_predicts_as_the_adapted_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = lookup("resnet18").unwrap();
    tch::manual_seed(1);
    // Base weights with an ImageNet-sized head, as a pretrained file would be.
    let base = dir.path().join("base.safetensors");
    {
        let vs = VarStore::new(Device::Cpu);
        let _model = spec.build(&vs.root(), 1000).unwrap();
        randomize_batch_norms(&vs);
        let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        Tensor::write_safetensors(&vars, &base).unwrap();
    }
    let mut vs = VarStore::new(Device::Cpu);
    let mut model = spec.build(&vs.root(), NAMES.len() as i64).unwrap();
    let base_name = base.to_str().unwrap().to_string();
    load_pretrained(&vs, spec, Some(&base_name), model.head_prefix()).unwrap();
    // ResNet-18's basic blocks have no conv3, which the default vision targets also name.
    let targets = Some(Targets::Names(vec!["conv1".into(), "conv2".into()]));
    let config = PeftConfig::Lora(LoraConfig { targets, ..LoraConfig::default() });
    let report = apply_vision_peft(&mut vs, spec, model.as_mut(), &config).unwrap();
    // LoRA starts as a no-op (B = 0); a trained adapter is not, so give B values.
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            if name.contains("lora_B") {
                t.shallow_clone().copy_(&(t.randn_like() * 0.05));
            }
        }
    });
    let peft = VisionPeft { config, base_weights: base_name, base_checksum: report.base_checksum };
    let mut task = tiny_task(vs, model);
    task.peft = Some(peft.clone());
    let saved = dir.path().join("best");
    std::fs::create_dir_all(&saved).unwrap();
    save_adapter_layout(&task, &peft, &saved).unwrap();
    assert!(saved.join(crate::task::ADAPTER_FILE).is_file() && !saved.join("model.safetensors").exists());

    let p = VisionPredictor::load(&saved, Device::Cpu).unwrap();
    let images: Vec<Tensor> = (0..3).map(|s| p.decode(&png(48, 40, s)).unwrap()).collect();
    let got = p.predict(&images, 3).unwrap();
    let expected = tch::no_grad(|| task.logits(&Tensor::stack(&images, 0), false)).softmax(-1, Kind::Float);
    let mut worst = 0.0f32;
    for (i, g) in got.iter().enumerate() {
        for s in &g.top {
            let c = NAMES.iter().position(|n| *n == s.label).unwrap();
            worst = worst.max((s.prob - expected.double_value(&[i as i64, c as i64]) as f32).abs());
        }
    }
    eprintln!("vision LoRA: adapter folder vs the adapted model in memory, largest difference {worst:e}");
    assert!(worst <= TOL, "adapter folder vs the adapted model in memory: largest difference {worst:e}");
}

#[test]
fn features_are_the_input_of_the_head() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny_model(dir.path());
    let p = VisionPredictor::load(dir.path(), Device::Cpu).unwrap();
    let images: Vec<Tensor> = (0..3).map(|s| p.decode(&png(36, 30, s)).unwrap()).collect();
    let f = p.features(&images).unwrap();
    assert_eq!(f.size(), [3, p.task.model.num_features()]);
    // The head on these features gives the model's logits; one image at a time gives the same features.
    let from_features = tch::no_grad(|| p.task.model.forward_head(&f, false));
    let logits = tch::no_grad(|| p.task.logits(&Tensor::stack(&images, 0), false));
    let worst = (from_features - logits).abs().max().double_value(&[]);
    assert!(worst <= 1e-5, "head(features) vs logits: largest difference {worst:e}");
    let one = p.features(&images[1..2]).unwrap();
    let worst = (one - f.narrow(0, 1, 1)).abs().max().double_value(&[]);
    assert!(worst <= 1e-5, "batched vs one image: largest difference {worst:e}");
    assert_eq!(p.features(&[]).unwrap().size(), [0, p.task.model.num_features()]);
    let wrong = Tensor::zeros([3, 16, 16], (Kind::Float, Device::Cpu));
    assert!(p.features(&[wrong]).is_err());
}
