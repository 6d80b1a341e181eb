use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use suite_core::data::{DataLoader, LoaderConfig};
use suite_core::optim::GroupRule;
use suite_core::train::TrainConfig;
use suite_core::weights::{load_safetensors, load_torch_pickle, resolve_model, LoadOptions, LoadReport};
use tch::{nn::VarStore, Device};

use super::classifier::{ClassifierTask, Inputs};
use super::config::{Augment, Init, Tune, VisionConfig};
use super::features::FeatureDataset;
use super::peft::{apply_vision_peft, VisionPeft};
use super::tune::apply_tune;
use crate::data::{
    check_decodable_sets, load_image_folder, load_manifest, scan_class_folders, stratified_split, BadFile, ClassList,
    ImageDataset, Interpolation as DataInterp, Transform, TransformConfig,
};
use crate::models::{lookup, ImageClassifier, Interpolation, ModelSpec, Preprocess, WeightsSource};
use suite_core::peft::PeftConfig;

/// Training and validation loaders, over images or over cached features.
pub enum JobData {
    /// Decoded and augmented images.
    Pixels {
        /// Training batches.
        train: DataLoader<ImageDataset>,
        /// Validation batches.
        val: DataLoader<ImageDataset>,
    },
    /// Backbone features computed once.
    Features {
        /// Training batches.
        train: DataLoader<FeatureDataset>,
        /// Validation batches.
        val: DataLoader<FeatureDataset>,
    },
}

/// Everything a vision fine-tuning run needs, ready for the trainer.
pub struct VisionJob {
    /// Model, loss and metrics.
    pub task: ClassifierTask,
    /// Data loaders.
    pub data: JobData,
    /// Learning-rate rules (head vs backbone).
    pub rules: Vec<GroupRule>,
    /// Unreadable images skipped with `skip_bad`.
    pub skipped: Vec<BadFile>,
    /// How the pretrained weights loaded (None for random init or a resumed run).
    pub load_report: Option<LoadReport>,
    /// Validation images, for reports.
    pub val_samples: Vec<crate::data::Sample>,
    /// Where the weights came from, for the run log.
    pub weights_from: String,
}

/// The image transform settings of a model's preprocessing with the job's augmentation level.
pub fn transform_config(p: &Preprocess, augment: Augment) -> TransformConfig {
    let mut t = TransformConfig {
        input_size: p.input_size as u32,
        mean: p.mean.map(|v| v as f32),
        std: p.std.map(|v| v as f32),
        interpolation: match p.interpolation {
            Interpolation::Bilinear => DataInterp::Bilinear,
            Interpolation::Bicubic => DataInterp::Bicubic,
        },
        crop_pct: p.crop_pct,
        ..TransformConfig::default()
    };
    match augment {
        Augment::None => {}
        Augment::Light => {}
        Augment::Strong => {
            t.trivial_augment = true;
            t.random_erasing = 0.25;
        }
    }
    t
}

fn is_manifest(p: &Path) -> bool {
    p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "jsonl" | "tsv"))
}

/// Loads data, builds and initialises the model, applies the tuning strategy and, for head-only tuning without
/// augmentation, caches the backbone features. `resume` skips the pretrained weights (the checkpoint has them).
pub fn prepare(
    cfg: &VisionConfig,
    peft: &PeftConfig,
    train: &TrainConfig,
    device: Device,
    resume: bool,
) -> Result<VisionJob> {
    cfg.validate()?;
    let spec = lookup(&cfg.model)?;
    let data = cfg.data.as_ref().expect("validated");
    let (classes, train_s, val_s) = load_splits(cfg, train.seed)?;
    let workers = train.workers.max(1);
    // Both sets are checked before anything fails, so one error lists every unreadable file.
    let (mut sets, skipped) = check_decodable_sets(vec![train_s, val_s], workers, cfg.skip_bad)?;
    let (val_s, train_s) = (sets.pop().unwrap_or_default(), sets.pop().unwrap_or_default());
    if train_s.is_empty() || val_s.is_empty() {
        bail!("{}: after skipping unreadable images, no training or no validation image is left", data.display());
    }

    let mut vs = VarStore::new(device);
    let mut model = spec.build(&vs.root(), classes.len() as i64)?;
    let with_peft = !matches!(peft, PeftConfig::None);
    if with_peft && cfg.init == Init::Random {
        bail!("--peft adapts pretrained weights: it cannot be combined with --init random");
    }
    // PEFT needs its base weights on resume too (the checksum and DoRA's magnitudes come from them).
    let (load_report, weights_from) = match (cfg.init, resume && !with_peft) {
        (_, true) => (None, "checkpoint".to_string()),
        (Init::Random, false) => (None, "random initialisation".to_string()),
        (Init::Pretrained, false) => {
            let (report, from) = load_pretrained(&vs, spec, cfg.weights.as_deref(), model.head_prefix())?;
            (Some(report), from)
        }
    };
    let (rules, peft_state) = if with_peft {
        // The backbone is frozen (batch norms included) and the method decides what else trains.
        let rules = apply_tune(&vs, model.as_mut(), Tune::Head, cfg.backbone_lr_mult, true)?;
        let report = apply_vision_peft(&mut vs, spec, model.as_mut(), peft)?;
        let base_weights = cfg.weights.clone().unwrap_or_else(|| weights_from.clone());
        (rules, Some(VisionPeft { config: peft.clone(), base_weights, base_checksum: report.base_checksum }))
    } else {
        (apply_tune(&vs, model.as_mut(), cfg.tune, cfg.backbone_lr_mult, cfg.freeze_bn)?, None)
    };

    let mut preprocess = spec.preprocess;
    if let Some(size) = cfg.input_size {
        preprocess.input_size = size as i64;
    }
    let tcfg = transform_config(&preprocess, cfg.augment);
    let train_tf =
        if cfg.augment == Augment::None { Transform::eval(tcfg.clone())? } else { Transform::train(tcfg.clone())? };
    let eval_tf = Transform::eval(tcfg)?;
    let loader =
        LoaderConfig { batch_size: train.batch_size, drop_last: false, workers, prefetch: 2, seed: train.seed };
    let train_ds = Arc::new(ImageDataset::new(train_s, train_tf));
    let val_ds = Arc::new(ImageDataset::new(val_s.clone(), eval_tf));
    let mut inputs = Inputs::Pixels;
    // Adapters inside the backbone change its features every step: nothing to cache.
    let cache = if cfg.uses_feature_cache() && peft_state.is_none() {
        cache_plan(cfg, model.as_ref(), &preprocess, train_ds.samples().len() + val_ds.samples().len(), device)
    } else {
        None
    };
    let data = match cache {
        Some(upto) => {
            inputs = match upto {
                None => Inputs::Features,
                Some(from) => Inputs::Activations { from },
            };
            let ftrain = FeatureDataset::compute(model.as_ref(), train_ds, &loader, device, upto, "train")?;
            let fval = FeatureDataset::compute(model.as_ref(), val_ds, &loader, device, upto, "val")?;
            JobData::Features {
                train: DataLoader::shuffled(Arc::new(ftrain), LoaderConfig { workers: 0, ..loader.clone() }),
                val: DataLoader::sequential(Arc::new(fval), LoaderConfig { workers: 0, ..loader }),
            }
        }
        None => JobData::Pixels {
            train: DataLoader::shuffled(train_ds, loader.clone()),
            val: DataLoader::sequential(val_ds, loader),
        },
    };
    let task = ClassifierTask {
        vs,
        model,
        spec,
        classes,
        label_smoothing: cfg.label_smoothing,
        mixup: cfg.mixup,
        cutmix: cfg.cutmix,
        inputs,
        preprocess,
        last_report: None,
        peft: peft_state,
    };
    Ok(VisionJob { task, data, rules, skipped, load_report, val_samples: val_s, weights_from })
}

/// The registry's `.pth` assets are read once by the restricted unpickler and kept beside it as safetensors, which
/// later runs memory-map.
fn pickle_as_safetensors(pth: &Path) -> Result<PathBuf> {
    let out = pth.with_extension("safetensors");
    let fresh = |o: &Path| -> Option<bool> {
        Some(std::fs::metadata(o).ok()?.modified().ok()? >= std::fs::metadata(pth).ok()?.modified().ok()?)
    };
    if fresh(&out) != Some(true) {
        let tensors = suite_core::weights::read_torch_pickle(pth)?;
        suite_core::weights::save_safetensors(&out, &tensors, None)
            .with_context(|| format!("keeping {} as {}", pth.display(), out.display()))?;
    }
    Ok(out)
}

/// Memory the cached activations of the frozen stages may take before suite falls back to running the whole
/// backbone every epoch.
const CACHE_BUDGET_BYTES: i64 = 4 << 30;

/// What to cache: `Some(None)` pooled features (head only), `Some(Some(k))` the activation maps after stages
/// `0..k` (last:N), `None` nothing (over the memory budget).
fn cache_plan(
    cfg: &VisionConfig,
    model: &dyn ImageClassifier,
    pre: &Preprocess,
    images: usize,
    device: Device,
) -> Option<Option<usize>> {
    let n = model.stages().len();
    let upto = match cfg.tune {
        Tune::Head => return Some(None),
        Tune::LastN(k) => n.saturating_sub(k),
        Tune::Full => return None,
    };
    let size = pre.input_size;
    let probe = tch::Tensor::zeros([1, 3, size, size], (tch::Kind::Float, device));
    let per_image: i64 = tch::no_grad(|| model.forward_stages(&probe, 0..upto, false)).size().iter().product();
    let bytes = per_image * 4 * images as i64;
    if bytes > CACHE_BUDGET_BYTES {
        eprintln!(
            "feature cache: the frozen stages' output would take {:.1} GiB (> {} GiB): running the whole backbone every epoch",
            bytes as f64 / (1u64 << 30) as f64,
            CACHE_BUDGET_BYTES >> 30
        );
        return None;
    }
    Some(Some(upto))
}

/// The classes and the training and validation images of a job: `val_data` if given, else the `val/` folder, else
/// the seeded stratified `val_split` of the training data. `suite eval` recomputes a run's validation set with it.
pub fn load_splits(
    cfg: &VisionConfig,
    seed: u64,
) -> Result<(ClassList, Vec<crate::data::Sample>, Vec<crate::data::Sample>)> {
    let Some(data) = cfg.data.as_deref() else {
        bail!("vision.data is not set: pass --data DIR (an image folder or a CSV/JSONL manifest)");
    };
    let (classes, train, val) = if is_manifest(data) {
        let (classes, all) = load_manifest(data, None)?;
        match &cfg.val_data {
            Some(v) => {
                let (_, val) = load_val(v, &classes)?;
                (classes, all, val)
            }
            None => {
                if cfg.val_split <= 0.0 {
                    bail!("{}: no validation data: pass --val-data or --val-split", data.display());
                }
                let (t, v) = stratified_split(&all, cfg.val_split, seed);
                (classes, t, v)
            }
        }
    } else {
        match &cfg.val_data {
            Some(v) => {
                let root = if data.join("train").is_dir() { data.join("train") } else { data.to_path_buf() };
                let (classes, train) = scan_class_folders(&root, None)?;
                let (_, val) = load_val(v, &classes)?;
                (classes, train, val)
            }
            None => {
                let s = load_image_folder(data, cfg.val_split, seed)?;
                (s.classes, s.train, s.val)
            }
        }
    };
    Ok((classes, train, val))
}

fn load_val(v: &Path, classes: &ClassList) -> Result<(ClassList, Vec<crate::data::Sample>)> {
    if is_manifest(v) {
        load_manifest(v, Some(classes))
    } else {
        scan_class_folders(v, Some(classes))
    }
}

/// Loads pretrained weights into `vs`, all but the new head: `weights` (a file, a folder or a hub id) or the
/// registry's default.
pub fn load_pretrained(
    vs: &VarStore,
    spec: &ModelSpec,
    weights: Option<&str>,
    head: &str,
) -> Result<(LoadReport, String)> {
    // Lenient on names so that the checks below can allow BatchNorm's `num_batches_tracked` counters, which timm
    // checkpoints leave out; shape mismatches outside the new head still fail inside the loader.
    let opts = LoadOptions {
        strip_prefixes: vec!["backbone.".into(), "module.".into(), "model.".into()],
        lenient: true,
        ..LoadOptions::new_head([format!("{head}.")])
    };
    let (file, from): (PathBuf, String) = match weights {
        Some(w) => {
            let p = PathBuf::from(w);
            if p.is_file() {
                (p, w.to_string())
            } else if p.is_dir() {
                let f = resolve_model(w, &["model.safetensors"], &[])?;
                (f.require("model.safetensors")?.to_path_buf(), w.to_string())
            } else if w.contains('/') && !w.starts_with('.') && !w.starts_with('/') {
                let f = resolve_model(w, &["model.safetensors"], &[])?;
                (f.require("model.safetensors")?.to_path_buf(), format!("hub {w}"))
            } else {
                bail!("--weights {w:?}: no such file or folder, and not a hub id (org/name)");
            }
        }
        None => match spec.weights.source {
            WeightsSource::Asset { .. } => {
                let p = spec.asset_path().expect("asset source");
                if !p.exists() {
                    bail!("{}: pretrained weights of {} not found; run scripts/setup.sh (it fetches them) or pass --weights", p.display(), spec.name());
                }
                (pickle_as_safetensors(&p)?, p.display().to_string())
            }
            WeightsSource::Hub { repo, file } => {
                let f = resolve_model(repo, &[file], &[]).with_context(|| {
                    format!(
                        "pretrained weights of {} (pass --weights FILE to use a local copy, or --init random)",
                        spec.name()
                    )
                })?;
                (f.require(file)?.to_path_buf(), format!("hub {repo}"))
            }
        },
    };
    let is_pickle = matches!(file.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin" | "ckpt"));
    let report = if is_pickle {
        load_torch_pickle(vs, &file, &opts)
    } else {
        load_safetensors(vs, std::slice::from_ref(&file), &opts)
    }
    .with_context(|| format!("loading {} weights from {}", spec.name(), file.display()))?;
    let tolerated = |n: &String| n.ends_with("num_batches_tracked") || n.starts_with(&format!("{head}."));
    let missing: Vec<&String> = report.missing.iter().filter(|n| !tolerated(n)).collect();
    let unexpected: Vec<&String> = report.unexpected.iter().filter(|n| !tolerated(n)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        bail!(
            "{}: these weights do not fit {} ({} of its tensors missing, e.g. {:?}; {} unexpected, e.g. {:?}): \
             are they for another architecture?",
            file.display(),
            spec.name(),
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok((report, from))
}
