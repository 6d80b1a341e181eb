use std::path::Path;

use anyhow::{Context, Result};
use suite_core::peft::{apply_peft, load_adapter, read_adapter, PeftConfig, PeftReport, PeftTargets};
use tch::nn::VarStore;

use crate::models::{Architecture, ImageClassifier, ModelSpec};

/// File name of a PEFT run's saved model: only the trained tensors (adapter + head).
pub const ADAPTER_FILE: &str = "adapter.safetensors";

/// The PEFT state of a vision job: the method, the base weights it adapts and their checksum.
#[derive(Debug, Clone)]
pub struct VisionPeft {
    /// Method and settings.
    pub config: PeftConfig,
    /// The pretrained weights the adapter belongs to (file, folder or hub id, as `--weights` takes).
    pub base_weights: String,
    /// Checksum of those weights (frozen tensors outside the head).
    pub base_checksum: String,
}

/// Where PEFT methods attach in an image classifier: LoRA on every dense convolution of the backbone (not the
/// depthwise ones, whose LoRA PEFT cannot merge), the head always trained.
pub fn vision_targets(spec: &ModelSpec, model: &dyn ImageClassifier) -> PeftTargets {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let head = vec![format!("{}.", model.head_prefix())];
    let convs = match spec.architecture {
        Architecture::EfficientNetLite(_) => s(&["_conv_stem", "_expand_conv", "_project_conv", "_conv_head"]),
        // Basic blocks (ResNet-18/34) have two convolutions, bottlenecks (ResNet-50 and up) three.
        Architecture::ResNet(c) if c.block == crate::models::BlockKind::Basic => s(&["conv1", "conv2"]),
        Architecture::ResNet(_) => s(&["conv1", "conv2", "conv3"]),
    };
    PeftTargets {
        default_lora: convs.clone(),
        ia3: convs.clone(),
        ia3_feedforward: Vec::new(),
        adapter_after_attention: Vec::new(),
        adapter_after_ffn: Vec::new(),
        exclude: head.clone(),
        head_prefixes: head,
    }
}

/// Applies `cfg` to a classifier whose pretrained weights are loaded and prints the trainable-parameter line.
pub fn apply_vision_peft(
    vs: &mut VarStore,
    spec: &ModelSpec,
    model: &mut dyn ImageClassifier,
    cfg: &PeftConfig,
) -> Result<PeftReport> {
    let targets = vision_targets(spec, model);
    let report = apply_peft(vs, model, cfg, &targets)?;
    eprintln!("{}", report.summary_line());
    Ok(report)
}

/// Loads the adapter saved in `dir` into a model set up with the same method.
pub fn load_vision_adapter(vs: &mut VarStore, dir: &Path, base_checksum: &str) -> Result<()> {
    let path = dir.join(ADAPTER_FILE);
    let file = read_adapter(&path)?;
    load_adapter(vs, &file, None, base_checksum).with_context(|| format!("loading {}", path.display()))
}
