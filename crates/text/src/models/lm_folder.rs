//! A causal LM folder as generation, evaluation and the exporters read it: a hub-layout model (pretrained or fully
//! fine-tuned), or a PEFT folder saved by SFT (`adapter.safetensors` + `suite_adapter.json` naming the base) put
//! back onto its base model. The one place that resolves an adapter's base and loads it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use suite_core::peft::{apply_peft, load_adapter, merged_weights, read_adapter, PeftConfig};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{
    causal_model_type, causal_peft_targets, gpt2_checkpoint_tensors, load_causal_lm, CausalLm, GPT2_MODEL_TYPES,
};
use crate::task::{AdapterMeta, ADAPTER_FILE, ADAPTER_META};

/// A causal LM loaded in float32, with its PEFT method (if any) applied and its adapter loaded.
pub struct LmCheckpoint {
    /// The folder given: the model, or the adapter folder.
    pub dir: PathBuf,
    /// The hub-layout folder of the base model (`dir` itself for a full model).
    pub base_dir: PathBuf,
    /// `config.json`'s `model_type` (`llama`, `qwen2`, …).
    pub model_type: String,
    /// The base model's `config.json`, as written.
    pub config: Value,
    /// Every variable: the base model's, under transformers' names, and the method's, under peft's.
    pub vs: VarStore,
    /// The model, adapter applied.
    pub model: Box<dyn CausalLm>,
    /// The PEFT method and its settings; [`PeftConfig::None`] for a full model.
    pub peft: PeftConfig,
    /// The base model as `suite_adapter.json` names it (a folder or a hub id); `None` for a full model.
    pub base_model: Option<String>,
    /// Checksum of the base weights the adapter was loaded onto (`None` for a full model).
    pub base_checksum: Option<String>,
}

impl LmCheckpoint {
    /// Loads a hub-layout folder (`config.json` + `model.safetensors`) or an adapter folder of the agreed layout:
    /// `adapter.safetensors` (suite's adapter file, whose metadata holds the PEFT config) and `suite_adapter.json`
    /// whose `base_model` is a local folder (absolute, relative to the working directory or to `dir`) or a hub
    /// id in the local cache. Errors name the file and field at fault.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, Device::Cpu)
    }

    /// [`LmCheckpoint::load`] onto `device`.
    pub fn load_on(dir: &Path, device: Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: not a model folder", dir.display());
        }
        let adapter = dir.join(ADAPTER_FILE);
        if !adapter.is_file() {
            let config_path = dir.join("config.json");
            if !config_path.is_file() {
                bail!(
                    "{}: no config.json: expected a model folder in hub layout (config.json, model.safetensors, \
                     tokenizer.json) or a PEFT folder saved by suite (adapter.safetensors, suite_adapter.json)",
                    dir.display()
                );
            }
            let model_type = causal_model_type(&config_path)?;
            let config = read_json(&config_path)?;
            let (vs, model, _) = load_causal_lm(dir, device)?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                base_dir: dir.to_path_buf(),
                model_type,
                config,
                vs,
                model,
                peft: PeftConfig::None,
                base_model: None,
                base_checksum: None,
            });
        }
        let meta_path = dir.join(ADAPTER_META);
        let meta: AdapterMeta = serde_json::from_value(read_json(&meta_path)?).map_err(|e| {
            anyhow!("{}: expected {{\"base_model\": \"<folder or hub id>\", \"method\": …}} ({e})", meta_path.display())
        })?;
        let base_dir = resolve_base(&meta.base_model, dir)
            .with_context(|| format!("{}: field `base_model`", meta_path.display()))?;
        let config_path = base_dir.join("config.json");
        let model_type = causal_model_type(&config_path)?;
        let config = read_json(&config_path)?;
        let file = read_adapter(&adapter)?;
        let (mut vs, mut model, _) = load_causal_lm(&base_dir, device)?;
        let report = apply_peft(&mut vs, model.as_mut(), &file.config, &causal_peft_targets(&model_type))
            .with_context(|| format!("{}: applying its PEFT config to {}", adapter.display(), base_dir.display()))?;
        load_adapter(&mut vs, &file, Some(&file.config), &report.base_checksum)
            .with_context(|| format!("loading {}", adapter.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            base_dir,
            model_type,
            config,
            vs,
            model,
            peft: file.config,
            base_model: Some(meta.base_model),
            base_checksum: Some(report.base_checksum),
        })
    }

    /// Whether this is an adapter on a base model rather than a full model.
    pub fn is_peft(&self) -> bool {
        !matches!(self.peft, PeftConfig::None)
    }

    /// The folder whose tokenizer files go with the model: the given folder when it has a `tokenizer.json`
    /// (SFT saves the tokenizer it trained with), else the base model's.
    pub fn tokenizer_dir(&self) -> &Path {
        if self.dir.join("tokenizer.json").is_file() {
            &self.dir
        } else {
            &self.base_dir
        }
    }

    /// The base model's tensors (transformers' names, sorted) with LoRA/DoRA/(IA)³ folded in, as peft's
    /// `merge_and_unload` leaves them; methods that cannot be folded are refused.
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        merged_weights(&self.vs, &self.peft, &causal_peft_targets(&self.model_type))
    }

    /// [`LmCheckpoint::merged_weights`] laid out as the architecture's hub checkpoint stores them (GPT-2's
    /// `Conv1D` weights transposed back to `[in, out]`).
    pub fn checkpoint_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let weights = self.merged_weights()?;
        Ok(if GPT2_MODEL_TYPES.contains(&self.model_type.as_str()) {
            gpt2_checkpoint_tensors(weights)
        } else {
            weights
        })
    }
}

/// The base model folder of an adapter: a folder as given, or relative to the adapter folder, or a hub id whose
/// snapshot is in the local cache.
fn resolve_base(spec: &str, adapter_dir: &Path) -> Result<PathBuf> {
    let given = PathBuf::from(spec);
    for candidate in [given.clone(), adapter_dir.join(&given)] {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
    }
    let files = suite_core::weights::resolve_model(
        spec,
        &["config.json"],
        &["model.safetensors", "model.safetensors.index.json", "generation_config.json"],
    )
    .with_context(|| {
        format!("base model {spec:?} is neither a model folder nor in the hub cache (download it and write its folder)")
    })?;
    let config = files.require("config.json")?;
    Ok(config.parent().ok_or_else(|| anyhow!("{}: no parent folder", config.display()))?.to_path_buf())
}

/// A JSON file, parsed; errors name it.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))
}
