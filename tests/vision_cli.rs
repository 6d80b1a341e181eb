//! End-to-end tests of the `suite` binary on vision jobs: tiny generated image sets, ResNet-18 from random weights
//! (or from weights files these tests write), CPU only. Each test works in its own temporary folder.
//!
//! Every training run uses one libtorch thread and one loader worker: the test harness runs two tests at a time on
//! CI's two cores. Images are resized to the model input whatever their size, so what costs time is that input
//! (`--input-size 64` unless a test keeps the models' 224) and the number of images: a handful per class.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

mod common;
use common::*;

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// Flags of every training run (besides the defaults of [`finetune_args`], which a test may change).
const COMMON: &[&str] = &["--threads", "1", "--workers", "1", "--seed", "0"];

/// The arguments of `suite finetune vision`: [`COMMON`], `--device cpu`, `--epochs 1` and `--input-size 64` unless
/// `flags` set them, the whitespace-separated `flags`, then `more` (paths, mostly).
fn finetune_args(flags: &str, more: &[&str]) -> Vec<String> {
    let given: Vec<&str> = flags.split_whitespace().chain(more.iter().copied()).collect();
    let mut a: Vec<String> = ["finetune", "vision"].iter().chain(COMMON).map(|s| s.to_string()).collect();
    for (flag, default) in [("--device", "cpu"), ("--epochs", "1"), ("--input-size", "64")] {
        if !given.contains(&flag) {
            a.extend([flag.to_string(), default.to_string()]);
        }
    }
    a.extend(given.iter().map(|s| s.to_string()));
    a
}

/// Runs `suite finetune vision` (see [`finetune_args`]) in `cwd`.
fn finetune(cwd: &Path, flags: &str, more: &[&str]) -> Out {
    let args = finetune_args(flags, more);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    suite(cwd, &refs)
}

/// ResNet-18 from random weights, the model of most tests.
const R18: &str = "--model resnet18 --init random";

// ---------------------------------------------------------------------------------------------------------------
// Data

/// A `size`×`size` PNG of class `class` with 5 bits of seeded noise.
fn write_image(path: &Path, class: usize, seed: usize, size: u32) {
    striped_image(path, class, seed, size, 5);
}

/// `root/<class>/<prefix><i>.png`, `n` images per class.
fn class_folders(root: &Path, n: usize, prefix: &str, seed: usize) {
    for (c, name) in CLASSES.iter().enumerate() {
        for i in 0..n {
            write_image(&root.join(name).join(format!("{prefix}{i}.png")), c, seed + 100 * c + i, 40);
        }
    }
}

/// An image-folder root with `train/` (`n_train` per class) and `val/` (`n_val` per class).
fn split_data(root: &Path, n_train: usize, n_val: usize) -> PathBuf {
    class_folders(&root.join("train"), n_train, "t", 0);
    class_folders(&root.join("val"), n_val, "v", 10_000);
    root.to_path_buf()
}

// ---------------------------------------------------------------------------------------------------------------
// Tensors

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).into_iter().collect()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.kind() == b.kind() && a.equal(b)
}

fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked")
}

/// Writes a ResNet-18 state dict with torchvision's names and a 1000-class `fc` (like ImageNet weights), from a
/// random initialisation with non-trivial batch-norm statistics, built by suite's own model code.
fn write_resnet18_weights(path: &Path) {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _model = suite_vision::models::lookup("resnet18").unwrap().build(&vs.root(), 1000).unwrap();
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            if name.ends_with("running_mean") {
                t.shallow_clone().copy_(&(t.randn_like() * 0.1));
            } else if name.ends_with("running_var") {
                t.shallow_clone().copy_(&(t.rand_like() + 0.5));
            }
        }
    });
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&vars, path).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// 1. A run end to end: the run folder, predict, eval; other data layouts

#[test]
fn finetune_writes_a_complete_run_that_predict_and_eval_use() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 2, 1);
    let run = dir.path().join("run");
    // The models' own preprocessing (224 pixels), as a user gets it.
    finetune(dir.path(), &format!("{R18} --input-size 224"), &["--data", s(&data), "--out", s(&run)]).assert_ok();
    for f in [
        "config.toml",
        "metrics.jsonl",
        "curves.png",
        "classes.json",
        "best/config.json",
        "best/model.safetensors",
        "final/config.json",
        "final/model.safetensors",
        "eval/confusion.csv",
        "eval/confusion.png",
        "eval/per_class.csv",
        "eval/metrics.json",
    ] {
        let p = run.join(f);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 0, "{f} missing or empty");
    }
    let ckpts: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .collect();
    assert!(!ckpts.is_empty(), "no checkpoints/step-*");
    for c in &ckpts {
        assert!(c.join("model.safetensors").is_file() && c.join("trainer_state.json").is_file(), "{}", c.display());
    }
    let png = std::fs::read(run.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "curves.png is not a PNG");

    // metrics.jsonl: training and evaluation records.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "train").collect();
    let eval: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "eval").collect();
    assert!(!train.is_empty() && train.iter().all(|r| r["loss"].as_f64().is_some_and(f64::is_finite)), "{records:?}");
    assert!(!eval.is_empty(), "no eval record: {records:?}");
    let acc = eval.last().unwrap()["metrics"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    // The class list, the report of the best model and its confusion matrix over the 3 validation images.
    let classes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("classes.json")).unwrap()).unwrap();
    assert_eq!(classes["classes"], serde_json::json!(CLASSES));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/metrics.json")).unwrap()).unwrap();
    let best_acc = metrics["accuracy"].as_f64().expect("eval/metrics.json has accuracy");
    let confusion = std::fs::read_to_string(run.join("eval/confusion.csv")).unwrap();
    let total: u64 =
        confusion.lines().skip(1).flat_map(|l| l.split(',').skip(1)).map(|v| v.parse::<u64>().unwrap()).sum();
    assert_eq!(total, 3, "confusion matrix over the 3 validation images:\n{confusion}");
    let per_class = std::fs::read_to_string(run.join("eval/per_class.csv")).unwrap();
    assert_eq!(per_class.lines().count(), 1 + CLASSES.len(), "{per_class}");

    // predict --json: one line per image, top labels with sorted probabilities.
    let imgs = [data.join("val/cat/v0.png"), data.join("val/fox/v0.png"), data.join("train/dog/t1.png")];
    let mut args = vec!["predict", "vision", "--run", s(&run), "--json", "--device", "cpu"];
    args.extend(imgs.iter().map(|p| s(p)));
    let out = suite(dir.path(), &args);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), imgs.len(), "{}", out.show());
    for (line, img) in lines.iter().zip(&imgs) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["path"], s(img));
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), 3, "top-5 is clamped to the 3 classes: {line}");
        let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        let labels: Vec<&str> = top.iter().map(|t| t["label"].as_str().unwrap()).collect();
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{line}");
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {line}");
        assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-5, "{line}");
        let mut sorted = labels.clone();
        sorted.sort();
        assert_eq!(sorted, CLASSES, "{line}");
    }
    let args = ["predict", "vision", "--run", s(&run), "--json", "--top-k", "2", "--device", "cpu", s(&imgs[0])];
    let out = suite(dir.path(), &args);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let p: Vec<f64> = v["top"].as_array().unwrap().iter().map(|t| t["prob"].as_f64().unwrap()).collect();
    assert!(p.len() == 2 && p[0] >= p[1] && p.iter().sum::<f64>() <= 1.0 + 1e-5, "{}", out.stdout);

    // eval --run: the best model on the run's validation data, as in eval/metrics.json.
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_ok();
    let line = out.stdout.lines().find(|l| l.trim_start().starts_with("accuracy")).expect("accuracy printed");
    let printed: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((printed - best_acc).abs() < 1e-4, "eval prints {printed}, eval/metrics.json has {best_acc}");
}

#[test]
fn val_split_of_flat_class_folders() {
    let dir = tmp();
    let data = dir.path().join("flat");
    class_folders(&data, 3, "i", 0);
    let run = dir.path().join("run");
    let flags = format!("{R18} --val-split 0.34 --augment none");
    finetune(dir.path(), &flags, &["--data", s(&data), "--out", s(&run)]).assert_ok();
    // One of the three images of each class is held out.
    let confusion = std::fs::read_to_string(run.join("eval/confusion.csv")).unwrap();
    let support: Vec<u64> =
        confusion.lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse::<u64>().unwrap()).sum()).collect();
    assert_eq!(support, [1, 1, 1], "{confusion}");
    // `suite eval` recomputes the same held-out split from the recorded data path and seed.
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_ok();
    assert!(out.stdout.contains("accuracy"), "{}", out.show());
}

#[test]
fn csv_manifest_trains() {
    let dir = tmp();
    let imgs = dir.path().join("images");
    class_folders(&imgs, 3, "i", 0);
    let mut csv = String::from("path,label\n");
    for c in CLASSES {
        for i in 0..3 {
            // Labels in the manifest, not in folder names: the first class is called "kitten" here.
            let label = if c == "cat" { "kitten" } else { c };
            csv.push_str(&format!("images/{c}/i{i}.png,{label}\n"));
        }
    }
    let manifest = dir.path().join("train.csv");
    std::fs::write(&manifest, csv).unwrap();
    let run = dir.path().join("run");
    let flags = format!("{R18} --val-split 0.34 --augment none");
    finetune(dir.path(), &flags, &["--data", s(&manifest), "--out", s(&run)]).assert_ok();
    let classes = std::fs::read_to_string(run.join("classes.json")).unwrap();
    let classes: serde_json::Value = serde_json::from_str(&classes).unwrap();
    assert_eq!(classes["classes"], serde_json::json!(["dog", "fox", "kitten"]));
    assert!(run.join("best/model.safetensors").is_file());
}

/// A run started with a relative `--data` can be evaluated (and resumed) from another working folder.
#[test]
fn a_run_with_relative_data_paths_evaluates_from_another_folder() {
    let dir = tmp();
    split_data(&dir.path().join("data"), 1, 1);
    let run = dir.path().join("run");
    finetune(dir.path(), &format!("{R18} --augment none"), &["--data", "data", "--out", s(&run)]).assert_ok();
    let out = suite(&run, &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_ok();
    assert!(out.stdout.contains("accuracy"), "{}", out.show());
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Tuning strategies: what trains and what stays as loaded

/// The tensors of a tuning run.
struct TuneRun {
    /// The weights file it started from.
    file: HashMap<String, Tensor>,
    /// Its `best/` model.
    best: HashMap<String, Tensor>,
    /// Its checkpoint after step 1 (of 2).
    step1: HashMap<String, Tensor>,
    stderr: String,
}

/// Runs one epoch of `tune` from a ResNet-18 weights file: 2 steps of 3 images, a checkpoint after each.
fn tune_run(tune: &str, augment: &str) -> TuneRun {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 2, 1);
    let weights = dir.path().join("r18.safetensors");
    write_resnet18_weights(&weights);
    let run = dir.path().join("run");
    let flags = format!("--model resnet18 --tune {tune} --augment {augment} --batch-size 3 --save-steps 1 --lr 0.01");
    let out = finetune(dir.path(), &flags, &["--weights", s(&weights), "--data", s(&data), "--out", s(&run)]);
    out.assert_ok();
    let step1 = run.join("checkpoints/step-00000001/model.safetensors");
    assert!(step1.is_file(), "no step-1 checkpoint: {}", out.show());
    TuneRun {
        file: tensors(&weights),
        best: tensors(&run.join("best/model.safetensors")),
        step1: tensors(&step1),
        stderr: out.stderr,
    }
}

/// Trainable parameters of `file` under the name prefixes `trained` (all for `""`), without buffers and the old
/// 1000-class head, plus the new 3-class head.
fn trainable_count(file: &HashMap<String, Tensor>, trained: &[&str]) -> i64 {
    let backbone: i64 = file
        .iter()
        .filter(|(n, _)| !is_buffer(n) && !n.starts_with("fc.") && trained.iter().any(|p| n.starts_with(p)))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    backbone + 512 * 3 + 3
}

#[track_caller]
fn assert_trainable(stderr: &str, expected: i64) {
    assert!(
        stderr.contains(&format!("trainable parameters: {expected} of ")),
        "expected {expected} trainable:\n{stderr}"
    );
}

/// Which tensors of `best` differ from `file`, by name (the head excluded, the file's being the old one).
fn changed(file: &HashMap<String, Tensor>, best: &HashMap<String, Tensor>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (n, t) in best {
        if n.starts_with("fc.") {
            continue;
        }
        let f = file.get(n).unwrap_or_else(|| panic!("{n} is not in the weights file"));
        if !same(f, t) {
            names.push(n.clone());
        }
    }
    names.sort();
    names
}

#[track_caller]
fn assert_head_trained(step1: &HashMap<String, Tensor>, best: &HashMap<String, Tensor>) {
    assert_eq!(best["fc.weight"].size(), [3, 512]);
    assert!(!same(&step1["fc.weight"], &best["fc.weight"]), "fc did not change in step 2");
}

#[test]
fn tune_head_without_augmentation_trains_only_the_head() {
    let TuneRun { file, best, step1, stderr } = tune_run("head", "none");
    assert_trainable(&stderr, 512 * 3 + 3);
    // The whole backbone, batch-norm statistics included, is bitwise what was loaded: the cached features came
    // from the frozen backbone in evaluation mode.
    let changed = changed(&file, &best);
    assert!(changed.is_empty(), "backbone tensors changed under --tune head: {changed:?}");
    assert_head_trained(&step1, &best);
}

#[test]
fn tune_last_stage_trains_layer4_and_keeps_earlier_stages() {
    let TuneRun { file, best, step1, stderr } = tune_run("last:1", "light");
    assert_trainable(&stderr, trainable_count(&file, &["layer4."]));
    let changed = changed(&file, &best);
    assert!(changed.iter().all(|n| n.starts_with("layer4.")), "outside layer4: {changed:?}");
    for n in ["layer4.0.conv1.weight", "layer4.1.bn2.weight", "layer4.0.bn1.running_mean", "layer4.1.bn2.running_var"] {
        assert!(changed.iter().any(|c| c == n), "{n} did not change: {changed:?}");
    }
    // Frozen stages: weights and batch-norm statistics as loaded.
    for n in ["conv1.weight", "bn1.running_mean", "layer1.0.bn1.running_var", "layer3.1.bn2.running_mean"] {
        assert!(same(&file[n], &best[n]), "{n} changed");
    }
    assert_head_trained(&step1, &best);
}

#[test]
fn tune_full_trains_everything() {
    let TuneRun { file, best, step1, stderr } = tune_run("full", "light");
    assert_trainable(&stderr, trainable_count(&file, &[""]));
    let changed = changed(&file, &best);
    for n in [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.running_var",
        "layer4.1.conv2.weight",
    ] {
        assert!(changed.iter().any(|c| c == n), "{n} did not change: {changed:?}");
    }
    assert_head_trained(&step1, &best);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. ResNet-50 from a torchvision state dict, exported back to torchvision

/// A torchvision `resnet50()` (1000 classes) with random weights and batch-norm statistics calibrated on one
/// random batch, so that every statistic is non-trivial and the network's outputs stay in a sane range.
const WRITE_RESNET50: &str = r#"
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
m = torchvision.models.resnet50()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.momentum = None
        with torch.no_grad():
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
m.train()
with torch.no_grad():
    m(torch.randn(4, 3, 64, 64))
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[1])
"#;

/// Loads an export into `torchvision.models.resnet50(num_classes=3)` strictly and writes its logits on `x`.
const TORCHVISION_LOGITS: &str = r#"
import sys, torch, torchvision
from safetensors.torch import load_file, save_file
model_dir, x_path, out_path = sys.argv[1:4]
m = torchvision.models.resnet50(num_classes=3)
m.load_state_dict(load_file(model_dir + "/model.safetensors"), strict=True)
m.eval()
with torch.no_grad():
    logits = m(load_file(x_path)["x"])
save_file({"logits": logits.contiguous()}, out_path)
"#;

#[test]
fn resnet50_from_torchvision_weights_exports_back_to_torchvision() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    let weights = dir.path().join("resnet50_tv.safetensors");
    python(WRITE_RESNET50, &[s(&weights)]);
    let run = dir.path().join("run");
    // One step of 3 images at full learning rate (no warmup), so that layer4 and the head change.
    let flags = "--model resnet50 --tune last:1 --augment none --batch-size 3 --warmup-steps 0";
    let out = finetune(dir.path(), flags, &["--weights", s(&weights), "--data", s(&data), "--out", s(&run)]);
    out.assert_ok();
    assert!(out.stderr.contains("weights from"), "no weight-load report: {}", out.show());
    assert!(run.join("eval/metrics.json").is_file());

    let export = dir.path().join("export");
    let out = suite(dir.path(), &["export", "--run", s(&run), "--out", s(&export)]);
    out.assert_ok();
    for f in ["model.safetensors", "config.json", "classes.json"] {
        assert!(export.join(f).is_file(), "export lacks {f}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_classes"], 3);
    assert_eq!(config["label_names"], serde_json::json!(CLASSES));
    // layer4 trained, so the export is not just the input file with a new head.
    let (file, exported) = (tensors(&weights), tensors(&export.join("model.safetensors")));
    assert!(same(&file["layer1.0.conv1.weight"], &exported["layer1.0.conv1.weight"]));
    assert!(!same(&file["layer4.2.conv3.weight"], &exported["layer4.2.conv3.weight"]));

    // The same fixed input through torchvision and through suite's loader of the export.
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let x_path = dir.path().join("x.safetensors");
    Tensor::write_safetensors(&[("x", &x)], &x_path).unwrap();
    let ref_path = dir.path().join("torchvision_logits.safetensors");
    python(TORCHVISION_LOGITS, &[s(&export), s(&x_path), s(&ref_path)]);
    let theirs = tensors(&ref_path).remove("logits").unwrap();
    let task = suite_vision::task::load_timm_layout(&export, Device::Cpu).unwrap();
    let ours = tch::no_grad(|| task.logits(&x, false));
    assert_eq!(ours.size(), [2, 3]);
    let diff = (&ours - &theirs).abs().max().double_value(&[]);
    let scale = theirs.abs().max().double_value(&[]);
    assert!(scale > 1e-3, "degenerate logits {theirs}");
    assert!(diff <= 1e-4, "suite vs torchvision logits differ by {diff} (scale {scale}):\n{ours}\n{theirs}");

    // --precision fp16: half the bytes, and every float tensor is exactly the fp32 export's rounded to fp16
    // (integers such as num_batches_tracked unchanged); torchvision loads it strictly.
    let half = dir.path().join("export-fp16");
    let out = suite(dir.path(), &["export", "--run", s(&run), "--out", s(&half), "--precision", "fp16"]);
    out.assert_ok();
    assert!(out.stdout.contains("weights in fp16: "), "{}", out.show());
    let (full_size, half_size) = (
        std::fs::metadata(export.join("model.safetensors")).unwrap().len(),
        std::fs::metadata(half.join("model.safetensors")).unwrap().len(),
    );
    assert!(half_size * 2 < full_size + 100_000 && half_size * 2 > full_size - 100_000, "{half_size} vs {full_size}");
    let half_tensors = tensors(&half.join("model.safetensors"));
    assert_eq!(half_tensors.len(), exported.len());
    for (name, t) in &half_tensors {
        let full = &exported[name];
        if full.is_floating_point() {
            assert_eq!(t.kind(), Kind::Half, "{name}");
            assert!(same(t, &full.to_kind(Kind::Half)), "{name} is not the fp32 export rounded to fp16");
        } else {
            assert!(same(t, full), "{name}");
        }
    }
    python(
        &TORCHVISION_LOGITS
            .replace("m.load_state_dict(", "m.half().load_state_dict(")
            .replace("m.eval()", "m.float().eval()"),
        &[s(&half), s(&x_path), s(&dir.path().join("unused.safetensors"))],
    );
    // int8 is a load-time choice for non-language models: refused with the reason.
    let out =
        suite(dir.path(), &["export", "--run", s(&run), "--out", s(&dir.path().join("x")), "--precision", "int8"]);
    out.assert_error(&["--precision int8", "not a language model", "predict"]);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Kill and resume

/// Flags of the resumable job: 6 training images in batches of 2, 3 epochs (9 steps), a checkpoint every 2 steps.
fn resumable_job(data: &Path, out: &Path) -> Vec<String> {
    // 128 pixels: slow enough that the run is still going when the test sees its first checkpoint.
    let flags = format!("{R18} --tune last:1 --epochs 3 --batch-size 2 --save-steps 2 --input-size 128");
    finetune_args(&flags, &["--data", s(data), "--out", s(out)])
}

/// The first complete checkpoint folder under `run/checkpoints`.
fn complete_checkpoint(run: &Path) -> Option<PathBuf> {
    std::fs::read_dir(run.join("checkpoints")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
        p.file_name().unwrap().to_string_lossy().starts_with("step-") && p.join("trainer_state.json").is_file()
    })
}

fn eval_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "eval")
        .collect()
}

#[test]
fn killed_run_resumes_to_the_weights_of_an_uninterrupted_run() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 2, 1);
    let killed = dir.path().join("killed");

    let args = resumable_job(&data, &killed);
    let log = std::fs::File::create(dir.path().join("killed.log")).unwrap();
    let mut child = Command::new(SUITE)
        .args(&args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting suite");
    let start = Instant::now();
    let ckpt = loop {
        if let Some(c) = complete_checkpoint(&killed) {
            break c;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before its first checkpoint: {}",
                std::fs::read_to_string(dir.path().join("killed.log")).unwrap()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("final/model.safetensors").exists(),
        "the run finished before it was killed (first checkpoint {}), so nothing was resumed",
        ckpt.display()
    );

    let out = suite(dir.path(), &["finetune", "vision", "--resume", s(&killed)]);
    out.assert_ok();
    assert!(out.stderr.contains("resumed from"), "{}", out.show());

    let straight = dir.path().join("straight");
    let args = resumable_job(&data, &straight);
    suite(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>()).assert_ok();

    for which in ["final", "best"] {
        let a = tensors(&killed.join(which).join("model.safetensors"));
        let b = tensors(&straight.join(which).join("model.safetensors"));
        assert_eq!(a.len(), b.len());
        let differ: Vec<&String> =
            b.iter().filter(|(n, t)| !a.get(*n).is_some_and(|u| same(u, t))).map(|(n, _)| n).collect();
        assert!(differ.is_empty(), "{which}/: resumed and uninterrupted runs differ in {differ:?}");
    }
    // The resumed log holds each evaluation once, with the uninterrupted run's values.
    assert_eq!(eval_records(&killed), eval_records(&straight));

    // Resuming a finished run changes nothing.
    let read = |p: &str| std::fs::read(killed.join(p)).unwrap();
    let before = (read("final/model.safetensors"), read("best/model.safetensors"), read("metrics.jsonl"));
    let ckpts_before = std::fs::read_dir(killed.join("checkpoints")).unwrap().count();
    let out = suite(dir.path(), &["finetune", "vision", "--resume", s(&killed)]);
    out.assert_ok();
    assert!(out.stderr.contains("already finished"), "{}", out.show());
    let after = (read("final/model.safetensors"), read("best/model.safetensors"), read("metrics.jsonl"));
    assert!(before == after, "resuming a finished run changed its model or log");
    assert_eq!(std::fs::read_dir(killed.join("checkpoints")).unwrap().count(), ckpts_before);

    // A folder that is not a run.
    let out = suite(dir.path(), &["finetune", "vision", "--resume", s(&data)]);
    out.assert_error(&[s(&data), "not a run folder"]);
    let nowhere = dir.path().join("no-such-run");
    suite(dir.path(), &["finetune", "vision", "--resume", s(&nowhere)]).assert_error(&[s(&nowhere)]);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Bad input

/// A truncated copy of a valid JPEG.
fn write_truncated_jpeg(path: &Path, keep: f64) {
    let full = path.with_extension("full.jpg");
    write_image(&full, 0, 7, 40);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::remove_file(&full).unwrap();
    std::fs::write(path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

/// A data root with 2 images per class for training and 1 for validation, plus truncated JPEGs: two among the
/// training images, one among the validation images (returned in that order).
fn data_with_corrupt_jpegs(root: &Path) -> (PathBuf, [PathBuf; 3]) {
    let data = split_data(root, 2, 1);
    let bad = [data.join("train/cat/broken.jpg"), data.join("train/fox/half.jpeg"), data.join("val/dog/cut.jpg")];
    for (b, keep) in bad.iter().zip([0.5, 0.3, 0.7]) {
        write_truncated_jpeg(b, keep);
    }
    (data, bad)
}

#[test]
fn corrupt_jpegs_are_listed_and_skip_bad_reports_them() {
    let dir = tmp();
    let (data, bad) = data_with_corrupt_jpegs(&dir.path().join("data"));
    let flags = format!("{R18} --augment none");
    let err = finetune(dir.path(), &flags, &["--data", s(&data), "--out", "run"])
        .assert_error(&["cannot be decoded", "--skip-bad"]);
    for b in &bad[..2] {
        assert!(err.contains(s(b)), "{} not listed:\n{err}", b.display());
    }

    let skipped = dir.path().join("skipped");
    let out = finetune(dir.path(), &format!("{flags} --skip-bad"), &["--data", s(&data), "--out", s(&skipped)]);
    out.assert_ok();
    assert!(out.stderr.contains("skipped 3 unreadable image(s)"), "{}", out.show());
    let report = std::fs::read_to_string(skipped.join("report.txt")).unwrap();
    for b in &bad {
        assert!(report.contains(s(b)), "{} not in report.txt:\n{report}", b.display());
    }
    assert!(skipped.join("final/model.safetensors").is_file());
}

/// The decode check should report the bad images of the validation set along with those of the training set, so
/// one run shows everything to fix.
#[test]
fn corrupt_jpegs_of_train_and_val_are_listed_together() {
    let dir = tmp();
    let (data, bad) = data_with_corrupt_jpegs(&dir.path().join("data"));
    let out = finetune(dir.path(), R18, &["--data", s(&data), "--out", "run"]);
    let err = out.assert_error(&["cannot be decoded"]);
    for b in &bad {
        assert!(err.contains(s(b)), "{} not listed:\n{err}", b.display());
    }
}

#[test]
fn empty_class_folder_is_named() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    std::fs::create_dir_all(data.join("train/zebra")).unwrap();
    std::fs::write(data.join("train/zebra/notes.txt"), "not an image").unwrap();
    let out = finetune(dir.path(), R18, &["--data", s(&data), "--out", "run"]);
    out.assert_error(&["zebra", "no images"]);
}

#[test]
fn a_single_class_is_refused() {
    let dir = tmp();
    let data = dir.path().join("one");
    write_image(&data.join("cat/a.png"), 0, 0, 32);
    write_image(&data.join("cat/b.png"), 0, 1, 32);
    write_image(&data.join("cat/c.png"), 0, 2, 32);
    let out = finetune(dir.path(), &format!("{R18} --val-split 0.34"), &["--data", s(&data), "--out", "run"]);
    out.assert_error(&[s(&data), "only one class", "cat"]);
}

#[test]
fn manifest_rows_with_a_missing_file_or_an_unknown_label_are_named_by_line() {
    let dir = tmp();
    class_folders(&dir.path().join("images"), 2, "i", 0);
    let mut rows = String::from("path,label\n");
    for c in CLASSES {
        rows.push_str(&format!("images/{c}/i0.png,{c}\nimages/{c}/i1.png,{c}\n"));
    }
    let good = dir.path().join("train.csv");
    std::fs::write(&good, &rows).unwrap();
    let missing = dir.path().join("missing.csv");
    std::fs::write(&missing, format!("{rows}images/dog/gone.png,dog\n")).unwrap(); // line 8
    let out = finetune(dir.path(), &format!("{R18} --val-split 0.34"), &["--data", s(&missing), "--out", "r1"]);
    out.assert_error(&["missing.csv:8", "gone.png"]);

    let val = dir.path().join("val.csv");
    std::fs::write(&val, "path,label\nimages/cat/i0.png,cat\nimages/dog/i0.png,zebra\n").unwrap(); // line 3
    let out = finetune(dir.path(), R18, &["--data", s(&good), "--val-data", s(&val), "--out", "r2"]);
    out.assert_error(&["val.csv:3", "zebra"]);
}

/// A 1×1 image is a valid image: it is upscaled like any other and the run trains.
#[test]
fn a_one_pixel_image_trains() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    image::RgbImage::from_pixel(1, 1, image::Rgb([90, 120, 30])).save(data.join("train/dog/dot.png")).unwrap();
    let run = dir.path().join("run");
    finetune(dir.path(), R18, &["--data", s(&data), "--out", s(&run)]).assert_ok();
    assert!(run.join("final/model.safetensors").is_file());
}

#[test]
fn weights_of_another_architecture_are_refused() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    let weights = dir.path().join("r18.safetensors");
    write_resnet18_weights(&weights);
    let out = finetune(
        dir.path(),
        "--model resnet50 --augment none",
        &["--weights", s(&weights), "--data", s(&data), "--out", "run"],
    );
    out.assert_error(&["r18.safetensors", "resnet50"]);
}

#[test]
fn bad_flags_and_configs_give_clear_errors() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    let nowhere = dir.path().join("nowhere");
    let cfg = dir.path().join("recipe.toml");
    let with_data = |flags: &str, out: &str| finetune(dir.path(), flags, &["--data", s(&data), "--out", out]);
    with_data("--model resnet18 --init random --tune foo", "r1")
        .assert_error(&["--tune", "foo", "head", "last:N", "full"]);
    let known = ["resnet999", "known models", "resnet18", "resnet50", "efficientnet_lite0"];
    with_data("--model resnet999 --init random", "r2").assert_error(&known);
    with_data(&format!("{R18} --device cuda:3"), "r3").assert_error(&["cuda:3"]);
    with_data(&format!("{R18} --lr=-1"), "r4").assert_error(&["lr", "-1"]);
    finetune(dir.path(), R18, &["--data", s(&nowhere), "--out", "r5"]).assert_error(&[s(&nowhere)]);

    std::fs::write(&cfg, "[vision]\nmodel = \"resnet18\"\n\n[train]\nepochs = 1\nlearning_rate = 0.1\n").unwrap();
    let err = finetune(dir.path(), "--init random", &["--config", s(&cfg), "--data", s(&data), "--out", "r6"]);
    err.assert_error(&["recipe.toml", "line 6", "learning_rate"]);
    std::fs::write(&cfg, "[vision]\nmodel = \"resnet18\"\ntune = [\n").unwrap();
    let err = finetune(dir.path(), "--init random", &["--config", s(&cfg), "--data", s(&data), "--out", "r7"]);
    err.assert_error(&["recipe.toml", "line 3"]);
}

/// `--lr -1` (with a space, as people type it) should reach suite's own check, which names the field; clap takes
/// `-1` for a flag instead.
#[test]
fn negative_lr_with_a_space_is_named() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    let out = finetune(dir.path(), &format!("{R18} --lr -1"), &["--data", s(&data), "--out", "run"]);
    out.assert_error(&["lr", "-1", "positive"]);
}

/// A job refused for its settings or data leaves no run folder behind, so the corrected command can reuse `--out`.
#[test]
fn a_refused_job_leaves_no_run_folder() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 1, 1);
    let run = dir.path().join("run");
    let out = finetune(dir.path(), "--model resnet999 --init random", &["--data", s(&data), "--out", s(&run)]);
    out.assert_error(&["resnet999"]);
    assert!(out.stderr.starts_with("error:"), "{}", out.show());
    assert!(!run.exists(), "a refused job left {} behind", run.display());
}

// ---------------------------------------------------------------------------------------------------------------
// 6. The NaN guard

#[test]
fn a_diverging_run_stops_naming_the_step_and_the_last_good_checkpoint() {
    let dir = tmp();
    let data = split_data(&dir.path().join("data"), 4, 1);
    let run = dir.path().join("run");
    let flags =
        format!("{R18} --augment none --optimizer sgd --lr 1e30 --clip-grad-norm 0 --batch-size 2 --save-steps 1");
    let out = finetune(dir.path(), &flags, &["--data", s(&data), "--out", s(&run)]);
    let err = out.assert_error_after_progress(&["training stopped", "at step", "last good checkpoint"]);
    let step: usize =
        err.split("at step ").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    let ckpt = err.split("kept at ").nth(1).unwrap().split(". ").next().unwrap();
    let ckpt = Path::new(ckpt);
    let ckpt = if ckpt.is_absolute() { ckpt.to_path_buf() } else { dir.path().join(ckpt) };
    assert!(ckpt.join("trainer_state.json").is_file() && ckpt.join("model.safetensors").is_file(), "{err}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["step"].as_u64(), Some(step as u64 - 1), "{err}");
    assert!(!run.join("final").exists(), "a diverged run has no final model");
}
