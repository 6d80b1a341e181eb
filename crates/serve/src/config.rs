//! What `suite serve` is asked to serve, and how.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::worker::BatchConfig;

/// The domain of a served model, which decides its routes and request shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Vision,
    Text,
    Speech,
}

/// Where a served model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A run folder of `suite finetune` (its `best/` or `final/` model, with or without a PEFT adapter).
    Run { dir: PathBuf, which: String },
    /// A base model by registry name (`whisper-base`) or folder, for domains that need no fine-tuned head.
    Base(String),
    /// A decoder-only language model folder, served by the chat and completion routes: a hub layout
    /// (`config.json` with a causal-LM `model_type`, weights, tokenizer) or what an SFT run saves (the same, or a
    /// PEFT adapter over its base).
    LanguageModel(PathBuf),
}

/// One served model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The id clients name it by.
    pub id: String,
    pub domain: Domain,
    pub source: ModelSource,
}

impl ModelSpec {
    /// `--run DIR` or `--run DIR=ALIAS`: the domain comes from the run's `config.toml`, the id from the alias or
    /// else the folder's name. A run whose models are decoder-only language models (an SFT run), or such a model
    /// folder itself, is served by the chat routes.
    pub fn from_run_arg(arg: &str, which: &str) -> Result<Self> {
        let (dir, alias) = match arg.rsplit_once('=') {
            Some((dir, alias)) if valid_id(alias) && !dir.is_empty() => (PathBuf::from(dir), Some(alias.to_string())),
            _ => (PathBuf::from(arg), None),
        };
        // A language model is recognised by its saved folders, whatever the run's recipe calls its table.
        let lm = if is_language_model_dir(&dir) {
            Some(dir.clone())
        } else if ["best", "final"].iter().any(|w| is_language_model_dir(&dir.join(w))) {
            Some(dir.join(which))
        } else {
            None
        };
        let (domain, source) = match lm {
            Some(model) => (Domain::Text, ModelSource::LanguageModel(model)),
            None => (run_domain(&dir)?, ModelSource::Run { dir: dir.clone(), which: which.to_string() }),
        };
        let id = match alias {
            Some(a) => a,
            None => {
                let name = dir
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                if !valid_id(&name) {
                    bail!("--run {arg}: the folder name {name:?} is not usable as a model id; name it: --run {arg}=ID");
                }
                name
            }
        };
        Ok(Self { id, domain, source })
    }

    /// `--model NAME[=ALIAS]`: a decoder-only language model folder (hub layout, or an SFT output with or without
    /// a PEFT adapter), or a base Whisper model by registry name (`whisper-base`), hub id or folder. Vision and
    /// text classifiers need a fine-tuned head, so they are served from runs.
    pub fn from_model_arg(arg: &str) -> Result<Self> {
        let (name, alias) = match arg.rsplit_once('=') {
            Some((name, alias)) if valid_id(alias) && !name.is_empty() => (name, Some(alias.to_string())),
            _ => (arg, None),
        };
        let (domain, source) = if is_language_model_dir(Path::new(name)) {
            (Domain::Text, ModelSource::LanguageModel(PathBuf::from(name)))
        } else {
            // Any other folder (hub layout or CTranslate2) is taken as a Whisper, and its loader says so if it is
            // not.
            let is_whisper = name.to_ascii_lowercase().contains("whisper") || Path::new(name).is_dir();
            if !is_whisper {
                bail!(
                    "--model {name}: only language model folders and Whisper models are served without a run \
                     (vision and text classifiers need their fine-tuned head: serve the run with --run runs/NAME)"
                );
            }
            (Domain::Speech, ModelSource::Base(name.to_string()))
        };
        let id = alias.unwrap_or_else(|| {
            let path = Path::new(name);
            // `runs/x/best` is better named by its run than by `best`.
            let named = match path.file_name().and_then(|n| n.to_str()) {
                Some("best" | "final") => path.parent().and_then(Path::file_name).or(path.file_name()),
                _ => path.file_name(),
            };
            named.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| name.into())
        });
        if !valid_id(&id) {
            bail!("--model {arg}: {id:?} is not usable as a model id; name it: --model {name}=ID");
        }
        Ok(Self { id, domain, source })
    }
}

/// Whether `dir` holds a decoder-only language model: its `config.json` names a causal-LM `model_type` (SFT
/// outputs keep their base's `config.json`, PEFT ones included).
pub fn is_language_model_dir(dir: &Path) -> bool {
    let config = dir.join("config.json");
    config.is_file() && suite_text::models::causal_model_type(&config).is_ok()
}

/// Model ids go into URL paths and metric labels: letters, digits, `.`, `_`, `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The domain of a run folder, from the table its `config.toml` has.
pub fn run_domain(dir: &Path) -> Result<Domain> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--run {}: not a run folder (no readable config.toml)", dir.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{}: not a valid TOML file", path.display()))?;
    let found: Vec<Domain> = [("vision", Domain::Vision), ("text", Domain::Text), ("speech", Domain::Speech)]
        .into_iter()
        .filter(|(k, _)| table.contains_key(*k))
        .map(|(_, d)| d)
        .collect();
    match found.as_slice() {
        [d] => Ok(*d),
        [] => bail!("{}: no [vision], [text] or [speech] table; not a suite run?", path.display()),
        _ => bail!("{}: more than one domain table", path.display()),
    }
}

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: Vec<ModelSpec>,
    pub host: String,
    /// 0 picks a free port (printed once bound).
    pub port: u16,
    pub batch: BatchConfig,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// With a key, every route but `/health` and the page needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// libtorch intra-op threads; `None` keeps libtorch's default.
    pub threads: Option<usize>,
    /// Beam size of Whisper decoding (1 = greedy).
    pub beam_size: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
    /// Linear layers in int8 (libtorch's dynamic quantization, per-channel weights; CPU only).
    pub int8: bool,
}

impl ServeConfig {
    /// Checks what the command line cannot: at least one model, unique ids, sane numbers.
    pub fn validate(&self) -> Result<()> {
        if self.models.is_empty() {
            bail!("nothing to serve: give --run runs/NAME and/or --model whisper-base");
        }
        let mut ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("two models have the id {:?}: name one with --run DIR=ID", w[0]);
        }
        if self.batch.max_batch == 0 {
            bail!("--max-batch 0: expected at least 1");
        }
        if self.batch.max_queue == 0 {
            bail!("--max-queue 0: expected at least 1");
        }
        if self.max_body_bytes == 0 {
            bail!("--max-body-mb 0: expected a positive size");
        }
        if self.beam_size == 0 {
            bail!("--beam 0: expected 1 (greedy) or more");
        }
        if let Some(key) = &self.api_key {
            if key.trim().is_empty() {
                bail!("the API key is empty");
            }
        }
        Ok(())
    }
}

/// Reads an API key file: its first non-empty line, trimmed.
pub fn read_api_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--api-key-file {}", path.display()))?;
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(k) => Ok(k.to_string()),
        None => bail!("--api-key-file {}: the file is empty", path.display()),
    }
}
