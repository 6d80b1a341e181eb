//! Loading pretrained weights into a [`TextModel`]: base-model checkpoints (names without the encoder prefix) and
//! task-model checkpoints (with it) both map onto transformers' task-model names, then go through the core's
//! by-name loader with the head allowed to stay new.

use std::path::PathBuf;

use anyhow::{bail, Result};
use suite_core::weights::{load_named_from, read_safetensors, LoadOptions, LoadReport};
use tch::nn;

use super::config::ModelType;
use super::text_model::TextModel;

/// Top-level modules of a base model, which a task model keeps under its encoder prefix.
fn encoder_modules(model_type: ModelType) -> &'static [&'static str] {
    match model_type {
        ModelType::DistilBert => &["embeddings.", "transformer."],
        _ => &["embeddings.", "encoder.", "pooler."],
    }
}

/// Heads of other tasks and of pretraining that a checkpoint may carry and a fine-tuning run does not use.
const OTHER_HEADS: &[&str] = &[
    "classifier.",
    "pre_classifier.",
    "qa_outputs.",
    "cls.",
    "lm_head.",
    "vocab_transform.",
    "vocab_layer_norm.",
    "vocab_projector.",
];

/// The architecture a set of names most likely comes from, to name it in an error.
fn guess_family(names: &[String]) -> Option<&'static str> {
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    if has("distilbert.") || has("transformer.layer.") {
        Some("DistilBERT")
    } else if has("roberta.") {
        Some("RoBERTa/XLM-RoBERTa")
    } else if has("bert.") || has("encoder.layer.") {
        Some("BERT")
    } else if has("model.encoder.") || has("encoder.block.") || has("decoder.") {
        Some("an encoder-decoder model")
    } else {
        None
    }
}

fn describe(files: &[PathBuf]) -> String {
    match files {
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} (+{} more shard(s))", first.display(), rest.len()),
        [] => "no files".into(),
    }
}

pub(crate) fn load_pretrained(model: &TextModel, vs: &mut nn::VarStore, weights: &[PathBuf]) -> Result<LoadReport> {
    if weights.is_empty() {
        bail!("load_pretrained: no weight files given");
    }
    let source = describe(weights);
    let enc = model.encoder_prefix();
    let root = model.root_prefix().to_string();
    let enc_dot = format!("{enc}.");
    let modules = encoder_modules(model.config.model_type);

    let mut tensors = Vec::new();
    for f in weights {
        tensors.extend(read_safetensors(f)?);
    }
    let original: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    let renamed: Vec<(String, tch::Tensor)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let full = if !name.starts_with(&enc_dot) && modules.iter().any(|m| name.starts_with(m)) {
                format!("{enc_dot}{name}")
            } else {
                name
            };
            (format!("{root}{full}"), t)
        })
        .collect();

    // Refuse a checkpoint of another architecture up front, with a message that says so, rather than a list of
    // a hundred unmatched names.
    let vars = vs.variables();
    let encoder_hits =
        renamed.iter().filter(|(n, _)| n.starts_with(&format!("{root}{enc_dot}")) && vars.contains_key(n)).count();
    if encoder_hits == 0 {
        let sample: Vec<&str> = original.iter().take(3).map(String::as_str).collect();
        let family = guess_family(&original).map(|f| format!(" (they look like {f} names)")).unwrap_or_default();
        bail!(
            "{source}: none of its {} tensors is a weight of the {} encoder the config describes: found names such as \
             {}{family}; expected `{enc}.embeddings.word_embeddings.weight` or `embeddings.word_embeddings.weight`. \
             Is this checkpoint of another architecture than config.json's model_type {:?}?",
            original.len(),
            model.config.model_type.as_str(),
            sample.join(", "),
            model.config.model_type.as_str(),
        );
    }

    let mut unused: Vec<String> = OTHER_HEADS.iter().map(|h| format!("{root}{h}")).collect();
    unused.push(format!("{root}{enc_dot}pooler."));
    let opts = LoadOptions::default()
        .allow_missing(model.head_prefixes())
        .allow_unexpected(unused)
        .skip([format!("{root}{enc_dot}embeddings.position_ids"), format!("{root}{enc_dot}embeddings.token_type_ids")]);
    load_named_from(vs, renamed, &opts, &source)
}
