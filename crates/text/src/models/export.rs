//! Writing a [`TextModel`] as a hub folder that `transformers.AutoModelFor…` and `AutoTokenizer` load as they are.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use suite_core::weights::{save_hub_layout, write_atomic};
use tch::nn;

use super::heads::Head;
use super::text_model::TextModel;

/// Tokenizer files of the BERT family (WordPiece `vocab.txt`, byte-level BPE `vocab.json` + `merges.txt`,
/// sentencepiece models) and the configs that go with them; whichever exist are copied.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "spm.model",
];

/// The config.json of the export: the model's raw config with the task's architecture and labels.
pub(crate) fn export_config(model: &TextModel, labels: &[String], multi_label: bool) -> Result<Value> {
    let mut config: Map<String, Value> = match &model.config.raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    config.insert("model_type".into(), json!(model.config.model_type.as_str()));
    config.insert("architectures".into(), json!([model.architecture()]));
    let names: Vec<String> = match model.head {
        Head::Span if labels.is_empty() => vec!["LABEL_0".into(), "LABEL_1".into()],
        _ => labels.to_vec(),
    };
    let id2label: Map<String, Value> = names.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
    let label2id: Map<String, Value> = names.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
    config.insert("id2label".into(), Value::Object(id2label));
    config.insert("label2id".into(), Value::Object(label2id));
    config.insert("num_labels".into(), json!(names.len()));
    match (model.head, multi_label) {
        (Head::Classify { .. }, true) => {
            config.insert("problem_type".into(), json!("multi_label_classification"));
        }
        (Head::Classify { .. }, false) => {
            config.insert("problem_type".into(), json!("single_label_classification"));
        }
        _ => {
            config.remove("problem_type");
        }
    }
    Ok(Value::Object(config))
}

fn check_labels(head: Head, labels: &[String], multi_label: bool) -> Result<()> {
    let expected = head.num_labels();
    let ok = match head {
        Head::Span => labels.is_empty() || labels.len() == 2,
        _ => labels.len() as i64 == expected,
    };
    if !ok {
        bail!("export: the {head:?} head has {expected} outputs, but {} label name(s) were given", labels.len());
    }
    let mut seen = HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        bail!("export: label {dup:?} appears twice (label2id needs distinct names)");
    }
    if multi_label && !matches!(head, Head::Classify { .. }) {
        bail!("export: multi_label applies to sequence classification only, not to a {head:?} head");
    }
    Ok(())
}

pub(crate) fn export(
    model: &TextModel,
    vs: &nn::VarStore,
    dir: &Path,
    labels: &[String],
    multi_label: bool,
    tokenizer_dir: &Path,
) -> Result<()> {
    check_labels(model.head, labels, multi_label)?;
    if !tokenizer_dir.join("tokenizer.json").is_file() {
        bail!(
            "export: {} holds no tokenizer.json; the exported model needs the tokenizer it was trained with",
            tokenizer_dir.display()
        );
    }
    let vars = vs.variables();
    let tensors = model
        .named_tensors()
        .into_iter()
        .map(|(name, _)| {
            let full = format!("{}{name}", model.root_prefix());
            let t = vars.get(&full).ok_or_else(|| anyhow!("export: variable {full} is not in the VarStore"))?;
            Ok((name, t.detach()))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = export_config(model, labels, multi_label)?;
    save_hub_layout(dir, &config, &tensors)?;
    copy_tokenizer_files(tokenizer_dir, dir)
}

/// Copies whichever tokenizer files ([`TOKENIZER_FILES`]) exist in `from` into `to`, each written atomically.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
            write_atomic(&to.join(name), &bytes)?;
        }
    }
    Ok(())
}
