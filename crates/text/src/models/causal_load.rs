//! One entry point for every decoder-only architecture: `config.json`'s `model_type` picks the model, as
//! transformers' `AutoModelForCausalLM` does.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use suite_core::peft::PeftTargets;
use suite_core::weights::LoadReport;
use tch::{nn, Device};

use super::causal::CausalLm;
use super::gpt2::{gpt2_peft_targets, Gpt2Config, Gpt2LmHeadModel, GPT2_MODEL_TYPES};
use super::llama::{llama_peft_targets, LlamaConfig, LlamaForCausalLm, LLAMA_MODEL_TYPES};

/// Every `model_type` a causal language model may have.
pub fn causal_model_types() -> Vec<&'static str> {
    [LLAMA_MODEL_TYPES, GPT2_MODEL_TYPES].concat()
}

/// The `model_type` of a hub `config.json`.
pub fn causal_model_type(config: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config).with_context(|| format!("{}: cannot read", config.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", config.display()))?;
    let Some(t) = v.get("model_type").and_then(Value::as_str) else {
        bail!("{}: field `model_type` is missing (expected one of {:?})", config.display(), causal_model_types());
    };
    if !causal_model_types().contains(&t) {
        bail!(
            "{}: field `model_type` = {t:?}: not a supported causal LM (supported: {:?})",
            config.display(),
            causal_model_types()
        );
    }
    Ok(t.to_string())
}

/// A causal LM built from `dir/config.json` with freshly initialised weights in `vs` (pretraining from scratch).
pub fn new_causal_lm(vs: &nn::VarStore, dir: &Path) -> Result<Box<dyn CausalLm>> {
    let config = dir.join("config.json");
    if GPT2_MODEL_TYPES.contains(&causal_model_type(&config)?.as_str()) {
        return Ok(Box::new(Gpt2LmHeadModel::new(vs.root(), &Gpt2Config::from_file(&config)?)));
    }
    let c = LlamaConfig::from_file(&config)?;
    Ok(Box::new(LlamaForCausalLm::new(vs.root(), &c)))
}

/// Loads the hub-layout folder `dir` (config.json, model.safetensors or its shards, generation_config.json)
/// strictly, in float32 on `device`.
pub fn load_causal_lm(dir: &Path, device: Device) -> Result<(nn::VarStore, Box<dyn CausalLm>, LoadReport)> {
    if GPT2_MODEL_TYPES.contains(&causal_model_type(&dir.join("config.json"))?.as_str()) {
        let (vs, model, report) = Gpt2LmHeadModel::load_dir(dir, device)?;
        return Ok((vs, Box::new(model), report));
    }
    let (vs, model, report) = LlamaForCausalLm::load_dir(dir, device)?;
    Ok((vs, Box::new(model), report))
}

/// Where each PEFT method attaches in a model of `model_type` (peft's defaults for the architecture).
pub fn causal_peft_targets(model_type: &str) -> PeftTargets {
    match model_type {
        "gpt2" => gpt2_peft_targets(),
        _ => llama_peft_targets(),
    }
}
