//! A fine-tuned causal LM's adapter as a Hugging Face PEFT folder: `adapter_config.json` and
//! `adapter_model.safetensors` under peft's names, which `PeftModel.from_pretrained(base, folder)` loads.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use suite_core::nn::{AttentionSlots, LayerVisitor, Linear};
use suite_core::peft::{pattern_matches, PeftConfig};
use suite_core::weights::{save_safetensors, write_atomic};
use tch::Tensor;

use crate::models::LmCheckpoint;
use crate::models::{causal_peft_targets, copy_tokenizer_files, GPT2_MODEL_TYPES};

/// The prefix peft puts before the base model's tensor names in an adapter file.
const PEFT_PREFIX: &str = "base_model.model.";

/// The names of the model's dense layers and attention blocks, in model order.
#[derive(Default)]
struct Layers {
    linear: Vec<String>,
    /// Name, key/value heads and head width of each attention block.
    attention: Vec<(String, i64, i64)>,
}

impl LayerVisitor for Layers {
    fn linear(&mut self, l: &mut Linear) {
        self.linear.push(l.name.clone());
    }
    fn attention(&mut self, s: &mut AttentionSlots) {
        self.attention.push((s.name.clone(), s.heads, s.head_dim));
    }
}

/// Writes the adapter of `ckpt` to `out` as peft saves it: `adapter_config.json` (task `CAUSAL_LM`,
/// `base_model_name_or_path` = `base`, else the base as the adapter names it) and `adapter_model.safetensors`
/// (`base_model.model.<layer>.lora_A.weight` …), plus the tokenizer files.
///
/// LoRA and DoRA become peft's `LORA` (with `use_dora`), (IA)³ `IA3`, prefix tuning and P-tuning v2 (deep prompts)
/// `PREFIX_TUNING` with the per-layer key/value table peft stores at inference (`prompt_embeddings`, the
/// reparameterisation MLP evaluated). Bottleneck adapters and BitFit have no peft equivalent and are refused, as is
/// a full model.
pub fn export_peft(ckpt: &mut LmCheckpoint, out: &Path, base: Option<&str>) -> Result<()> {
    let base_name = base.map(str::to_string).or_else(|| ckpt.base_model.clone());
    let mut layers = Layers::default();
    ckpt.model.visit_layers(&mut layers);
    let vars = ckpt.vs.variables();
    let method = ckpt.peft.method_name();
    // GPT-2's projections are transformers `Conv1D`s ([in, out] weights), which peft marks so; the adapter tensors
    // keep a Linear's shapes either way.
    let fan_in_fan_out = GPT2_MODEL_TYPES.contains(&ckpt.model_type.as_str());
    let (mut config, tensors) = match &ckpt.peft {
        PeftConfig::None => {
            bail!("--format peft: {} is a full model, not an adapter (export it with --format hub)", ckpt.dir.display())
        }
        PeftConfig::Lora(_) | PeftConfig::Dora(_) => {
            let c = ckpt.peft.lora().expect("a LoRA config");
            let adapted = layers_with(&vars, ".lora_A.weight");
            let config = json!({
                "peft_type": "LORA",
                "r": c.r,
                "lora_alpha": number(c.alpha),
                "lora_dropout": c.dropout,
                "use_rslora": c.rslora,
                "use_dora": c.use_dora,
                "target_modules": target_modules(&adapted, &layers.linear),
                "bias": "none",
                "fan_in_fan_out": fan_in_fan_out,
                "init_lora_weights": true,
                "modules_to_save": null,
            });
            (config, method_tensors(&vars, &[".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector"]))
        }
        PeftConfig::Ia3(c) => {
            let adapted = layers_with(&vars, ".ia3_l");
            let patterns =
                c.feedforward.clone().unwrap_or_else(|| causal_peft_targets(&ckpt.model_type).ia3_feedforward);
            let feedforward: Vec<String> =
                adapted.iter().filter(|l| patterns.iter().any(|p| pattern_matches(p, l))).cloned().collect();
            let targets = target_modules(&adapted, &layers.linear);
            // peft wants the feed-forward list a subset of the target list, so both are written in the same form.
            let feedforward = if targets == adapted { feedforward } else { target_modules(&feedforward, &adapted) };
            let config = json!({
                "peft_type": "IA3",
                "target_modules": targets,
                "feedforward_modules": feedforward,
                "fan_in_fan_out": fan_in_fan_out,
                "init_ia3_weights": true,
                "modules_to_save": null,
            });
            (config, method_tensors(&vars, &[".ia3_l"]))
        }
        PeftConfig::Prefix(c) | PeftConfig::Ptuning2(c) => {
            let blocks: Vec<String> = layers.attention.iter().map(|(n, _, _)| n.clone()).collect();
            let table = prefix_table(&vars, &blocks, c.projection.is_some())?;
            // peft sizes the prefix by the key/value heads, as the model's attention slots are.
            let &(_, heads, head_dim) =
                layers.attention.first().with_context(|| format!("{method}: the model has no attention block"))?;
            let config = json!({
                "peft_type": "PREFIX_TUNING",
                "num_virtual_tokens": c.num_virtual_tokens,
                "token_dim": heads * head_dim,
                "num_transformer_submodules": 1,
                "num_attention_heads": heads,
                "num_layers": blocks.len(),
                "encoder_hidden_size": heads * head_dim,
                // The table is stored evaluated, so peft needs no reparameterisation MLP to read it.
                "prefix_projection": false,
                "modules_to_save": null,
            });
            (config, vec![("prompt_embeddings".to_string(), table)])
        }
        PeftConfig::Adapter(_) | PeftConfig::Bitfit => bail!(
            "--format peft: peft has no {method} method for causal LMs; export with --format hub{}",
            if matches!(ckpt.peft, PeftConfig::Bitfit) { " (BitFit's biases are ordinary weights)" } else { "" }
        ),
    };
    if let Value::Object(map) = &mut config {
        map.insert("task_type".into(), json!("CAUSAL_LM"));
        map.insert("base_model_name_or_path".into(), json!(base_name));
        map.insert("inference_mode".into(), json!(true));
        map.insert("revision".into(), Value::Null);
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create folder", out.display()))?;
    let mut text = serde_json::to_string_pretty(&config)?;
    text.push('\n');
    write_atomic(&out.join("adapter_config.json"), text.as_bytes())?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&out.join("adapter_model.safetensors"), &tensors, Some(&meta))?;
    copy_tokenizer_files(ckpt.tokenizer_dir(), out)
}

/// An integer when the value is one (peft's `lora_alpha` is an int in its configs), else the float.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The layers that own a variable ending in `suffix`, sorted.
fn layers_with(vars: &HashMap<String, Tensor>, suffix: &str) -> Vec<String> {
    let set: BTreeSet<String> = vars.keys().filter_map(|n| n.strip_suffix(suffix)).map(str::to_string).collect();
    set.into_iter().collect()
}

/// peft's `target_modules` for exactly the layers `adapted` among `all`: their last name components when those
/// select no other layer (`["q_proj", "v_proj"]`), else the full names.
fn target_modules(adapted: &[String], all: &[String]) -> Vec<String> {
    let last = |n: &String| n.rsplit('.').next().unwrap_or(n).to_string();
    let short: BTreeSet<String> = adapted.iter().map(last).collect();
    let selected = all.iter().filter(|n| short.contains(&last(n))).count();
    if selected == adapted.len() {
        short.into_iter().collect()
    } else {
        adapted.to_vec()
    }
}

/// The method's tensors under peft's names, sorted.
fn method_tensors(vars: &HashMap<String, Tensor>, suffixes: &[&str]) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = vars
        .iter()
        .filter(|(n, _)| suffixes.iter().any(|s| n.ends_with(s)))
        .map(|(n, t)| (format!("{PEFT_PREFIX}{n}"), t.detach()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// peft's `[virtual tokens, layers · 2 · kv_heads · head_dim]` prompt table: the blocks' own tables side by side in
/// layer order, or the output of the shared reparameterisation MLP (`Embedding → Linear → tanh → Linear`).
fn prefix_table(vars: &HashMap<String, Tensor>, blocks: &[String], projection: bool) -> Result<Tensor> {
    let get = |name: &str| {
        vars.get(name).map(Tensor::detach).with_context(|| format!("prefix: the adapter has no tensor {name}"))
    };
    tch::no_grad(|| {
        if projection {
            let e = get("prefix_encoder.embedding.weight")?;
            let (w1, b1) = (get("prefix_encoder.transform.0.weight")?, get("prefix_encoder.transform.0.bias")?);
            let (w2, b2) = (get("prefix_encoder.transform.2.weight")?, get("prefix_encoder.transform.2.bias")?);
            Ok(e.linear(&w1, Some(&b1)).tanh().linear(&w2, Some(&b2)))
        } else {
            let tables = blocks.iter().map(|b| get(&format!("{b}.prefix_kv"))).collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(&tables, 1))
        }
    })
}
