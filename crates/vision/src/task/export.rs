use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use suite_core::weights::{load_safetensors, save_hub_layout, varstore_tensors, LoadOptions};
use tch::{nn::VarStore, Device};

use super::classifier::{ClassifierTask, Inputs};
use super::peft::{apply_vision_peft, load_vision_adapter, VisionPeft, ADAPTER_FILE};
use crate::data::ClassList;
use crate::models::{lookup, Interpolation};

/// Writes `task`'s model in timm's hub layout: `model.safetensors` with torchvision/timm names (loadable by
/// `torchvision.models.resnet50(num_classes=N).load_state_dict`) and a `config.json` holding `architecture`,
/// `num_classes`, `label_names` and the `pretrained_cfg` preprocessing, plus suite's own `model` key.
pub fn save_timm_layout(task: &ClassifierTask, dir: &Path) -> Result<()> {
    save_hub_layout(dir, &timm_config(task, None), &varstore_tensors(&task.vs, |_| true))
}

/// Writes a PEFT job's model: `adapter.safetensors` (adapter + head, with the base weights' checksum) and the
/// timm `config.json`, which also names the base weights the adapter needs.
pub fn save_adapter_layout(task: &ClassifierTask, peft: &VisionPeft, dir: &Path) -> Result<()> {
    suite_core::peft::save_adapter(
        &dir.join(ADAPTER_FILE),
        &task.vs,
        &peft.config,
        &peft.base_weights,
        &peft.base_checksum,
    )?;
    let config = timm_config(task, Some(peft));
    suite_core::runs::atomic_write(&dir.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())
}

fn timm_config(task: &ClassifierTask, peft: Option<&VisionPeft>) -> serde_json::Value {
    let spec = task.spec;
    let p = &task.preprocess;
    json!({
        "architecture": spec.arch,
        "num_classes": task.classes.len(),
        "num_features": task.model.num_features(),
        "label_names": task.classes.names(),
        "pretrained_cfg": {
            "tag": spec.tag,
            "input_size": [3, p.input_size, p.input_size],
            "interpolation": match p.interpolation { Interpolation::Bilinear => "bilinear", Interpolation::Bicubic => "bicubic" },
            "crop_pct": p.crop_pct,
            "mean": p.mean,
            "std": p.std,
            "classifier": task.model.head_prefix(),
        },
        "suite": match peft {
            None => json!({ "model": spec.name(), "format": "timm" }),
            Some(p) => json!({ "model": spec.name(), "format": "adapter", "base_weights": p.base_weights }),
        },
    })
}

/// Loads a model saved by [`save_timm_layout`] (a run's `best/` or `final/`, or an export) for evaluation or
/// prediction.
pub fn load_timm_layout(dir: &Path, device: Device) -> Result<ClassifierTask> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: no model here (expected config.json and model.safetensors)", dir.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let name = config["suite"]["model"].as_str().or(config["architecture"].as_str());
    let Some(name) = name else {
        bail!("{}: missing `architecture`", config_path.display());
    };
    let spec = lookup(name)?;
    let labels: Vec<String> = match config["label_names"].as_array() {
        Some(a) => a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
        None => bail!("{}: missing `label_names`", config_path.display()),
    };
    let classes = ClassList::new(labels).with_context(|| format!("{}: label_names", config_path.display()))?;
    let mut preprocess = spec.preprocess;
    let pc = &config["pretrained_cfg"];
    if let Some(size) = pc["input_size"].get(2).and_then(|v| v.as_i64()) {
        preprocess.input_size = size;
    }
    if let Some(c) = pc["crop_pct"].as_f64() {
        preprocess.crop_pct = c;
    }
    let mut vs = VarStore::new(device);
    let mut model = spec.build(&vs.root(), classes.len() as i64)?;
    let mut peft = None;
    if dir.join(ADAPTER_FILE).is_file() {
        // The base weights, the method and the adapter: refused if the base is not the one trained on.
        let base = config["suite"]["base_weights"].as_str().map(String::from);
        let weights = base.as_deref().filter(|b| Path::new(b).exists() || b.contains('/'));
        super::job::load_pretrained(&vs, spec, weights, model.head_prefix())
            .with_context(|| format!("{}: the adapter's base weights", dir.display()))?;
        let file = suite_core::peft::read_adapter(&dir.join(ADAPTER_FILE))?;
        let report = apply_vision_peft(&mut vs, spec, model.as_mut(), &file.config)?;
        load_vision_adapter(&mut vs, dir, &report.base_checksum)?;
        peft = Some(VisionPeft {
            config: file.config,
            base_weights: base.unwrap_or_default(),
            base_checksum: report.base_checksum,
        });
    } else {
        load_safetensors(&vs, &[dir.join("model.safetensors")], &LoadOptions::strict())?;
    }
    Ok(ClassifierTask {
        vs,
        model,
        spec,
        classes,
        label_smoothing: 0.0,
        mixup: 0.0,
        cutmix: 0.0,
        inputs: Inputs::Pixels,
        preprocess,
        last_report: None,
        peft,
    })
}
