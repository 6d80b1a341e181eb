use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use suite_core::peft::{apply_peft, load_adapter, read_adapter, save_adapter, PeftConfig, PeftReport, PeftTargets};
use tch::nn::VarStore;

use super::sequence::ModelSaver;
use crate::models::{copy_tokenizer_files, ModelType, TextModel};

/// File name of a PEFT run's saved model: only the trained tensors (adapter + head).
pub const ADAPTER_FILE: &str = "adapter.safetensors";
/// The base model an adapter folder belongs to.
pub const ADAPTER_META: &str = "suite_adapter.json";

/// What `suite_adapter.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterMeta {
    /// The base model as the job named it (registry name, hub id or folder).
    pub base_model: String,
    /// The PEFT method.
    pub method: String,
}

/// Where each PEFT method attaches in a BERT-family encoder (the conventions of Hugging Face PEFT for these
/// architectures), and which tensors form the always-trained head.
pub fn text_targets(model: &TextModel) -> PeftTargets {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let head = model.head_prefixes();
    match model.config.model_type {
        ModelType::DistilBert => PeftTargets {
            default_lora: s(&["q_lin", "v_lin"]),
            ia3: s(&["k_lin", "v_lin", "ffn.lin2"]),
            ia3_feedforward: s(&["ffn.lin2"]),
            adapter_after_attention: s(&["attention.out_lin"]),
            adapter_after_ffn: s(&["ffn.lin2"]),
            exclude: head.clone(),
            head_prefixes: head,
        },
        _ => PeftTargets {
            default_lora: s(&["query", "value"]),
            ia3: s(&["key", "value", "output.dense"]),
            ia3_feedforward: s(&["layer.*.output.dense"]),
            adapter_after_attention: s(&["attention.output.dense"]),
            adapter_after_ffn: s(&["layer.*.output.dense"]),
            exclude: head.clone(),
            head_prefixes: head,
        },
    }
}

/// Applies `cfg` to a model whose base weights are loaded; prints the trainable-parameter line.
pub fn apply_text_peft(vs: &mut VarStore, model: &mut TextModel, cfg: &PeftConfig) -> Result<Option<PeftReport>> {
    if matches!(cfg, PeftConfig::None) {
        return Ok(None);
    }
    let targets = text_targets(model);
    let report = apply_peft(vs, model, cfg, &targets)?;
    eprintln!("{}", report.summary_line());
    Ok(Some(report))
}

/// Saves a PEFT model: the adapter and head tensors with the base model's id and checksum, the task's
/// `config.json` (labels) and the tokenizer files — not the frozen base weights.
pub struct AdapterSaver {
    /// The method and its settings.
    pub config: PeftConfig,
    /// The base model as the job named it.
    pub base_model: String,
    /// Checksum of the base weights the adapter was trained on.
    pub base_checksum: String,
}

impl ModelSaver for AdapterSaver {
    fn save(
        &self,
        model: &TextModel,
        vs: &VarStore,
        dir: &Path,
        labels: &[String],
        multi_label: bool,
        tokenizer_dir: &Path,
    ) -> Result<()> {
        save_adapter(&dir.join(ADAPTER_FILE), vs, &self.config, &self.base_model, &self.base_checksum)?;
        let config = model.hub_config(labels, multi_label)?;
        suite_core::runs::atomic_write(&dir.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
        let meta = AdapterMeta { base_model: self.base_model.clone(), method: self.config.method_name().into() };
        suite_core::runs::atomic_write(&dir.join(ADAPTER_META), serde_json::to_string_pretty(&meta)?.as_bytes())?;
        copy_tokenizer_files(tokenizer_dir, dir)
    }
}

/// Loads a saved adapter into a model set up with the same method (`apply_text_peft` done): refuses an adapter
/// trained on other base weights or with another method.
pub fn load_text_adapter(vs: &mut VarStore, dir: &Path, cfg: Option<&PeftConfig>, base_checksum: &str) -> Result<()> {
    let path = dir.join(ADAPTER_FILE);
    if !path.is_file() {
        bail!("{}: no adapter file", path.display());
    }
    let file = read_adapter(&path)?;
    load_adapter(vs, &file, cfg, base_checksum).with_context(|| format!("loading {}", path.display()))
}
