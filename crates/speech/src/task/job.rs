//! Building a speech job (data, model, PEFT) and loading a trained model back from a run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use suite_core::data::{stratified_split, DataLoader, LoaderConfig};
use suite_core::peft::{apply_peft, load_adapter, read_adapter, PeftConfig, PeftReport, PeftTargets};
use suite_core::train::TrainConfig;
use tch::{nn::VarStore, Device};

use super::config::SpeechConfig;
use super::dataset::{labelled_clips, LabelledClip, SpeechDataset};
use super::spec_augment::SpecAugment;
use super::whisper_task::{AdapterManifest, SpeechSaver, WhisperTask};
use crate::data::read_speech_data;
use crate::models::{load_whisper, load_whisper_as, resolve_whisper, Whisper, WhisperFiles};
use crate::tokenizer::WhisperTokenizer;

/// Variable-name prefix of the encoder.
const ENCODER_PREFIX: &str = "model.encoder.";

/// Encoder layers a PEFT method leaves alone when the encoder is frozen.
const ENCODER_LAYERS: [&str; 6] = [
    "encoder.layers.*.self_attn.q_proj",
    "encoder.layers.*.self_attn.k_proj",
    "encoder.layers.*.self_attn.v_proj",
    "encoder.layers.*.self_attn.out_proj",
    "encoder.layers.*.fc1",
    "encoder.layers.*.fc2",
];

/// Where PEFT methods go in Whisper (peft's defaults for Whisper: LoRA on `q_proj`/`v_proj`; (IA)³ on keys,
/// values and `fc2`). The head is the tied token embedding, so there is no separate head. With a frozen encoder,
/// its layers are excluded, so that the encoder stays exactly the base model's.
pub fn whisper_peft_targets(freeze_encoder: bool) -> PeftTargets {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PeftTargets {
        default_lora: s(&["q_proj", "v_proj"]),
        ia3: s(&["k_proj", "v_proj", "fc2"]),
        ia3_feedforward: s(&["fc2"]),
        adapter_after_attention: s(&["self_attn.out_proj"]),
        adapter_after_ffn: s(&["fc2"]),
        head_prefixes: Vec::new(),
        exclude: if freeze_encoder { s(&ENCODER_LAYERS) } else { Vec::new() },
    }
}

/// Whether a method adds prefixes to attention blocks (those of the encoder then train, frozen encoder or not).
fn is_prefix(cfg: &PeftConfig) -> bool {
    matches!(cfg, PeftConfig::Prefix(_) | PeftConfig::Ptuning2(_))
}

/// Stops every encoder variable from training; returns how many tensors were affected.
fn freeze_encoder_vars(vs: &VarStore) -> usize {
    let mut n = 0;
    for (name, t) in vs.variables() {
        if name.starts_with(ENCODER_PREFIX) && t.requires_grad() {
            let _ = t.set_requires_grad(false);
            n += 1;
        }
    }
    n
}

/// Whether any encoder variable trains.
fn encoder_trains(vs: &VarStore) -> bool {
    vs.variables().iter().any(|(n, t)| n.starts_with(ENCODER_PREFIX) && t.requires_grad())
}

/// Applies a PEFT method to a loaded base model with the speech domain's targets, then freezes the encoder when
/// asked (prefix methods keep their encoder prefixes trainable). `PeftConfig::None` with `freeze_encoder` just
/// freezes the encoder.
pub fn setup_peft(
    vs: &mut VarStore,
    model: &mut Whisper,
    cfg: &PeftConfig,
    freeze_encoder: bool,
) -> Result<Option<PeftReport>> {
    let report = if matches!(cfg, PeftConfig::None) {
        None
    } else {
        Some(apply_peft(vs, model, cfg, &whisper_peft_targets(freeze_encoder && !is_prefix(cfg)))?)
    };
    if freeze_encoder {
        if is_prefix(cfg) {
            for (name, t) in vs.variables() {
                if name.starts_with(ENCODER_PREFIX) && !name.ends_with("prefix_kv") {
                    let _ = t.set_requires_grad(false);
                }
            }
        } else {
            freeze_encoder_vars(vs);
        }
    }
    Ok(report)
}

/// The base model id recorded with an adapter: a local folder as an absolute path, so the run can be used from
/// anywhere; registry names and hub ids as given.
fn base_model_id(spec: &str) -> String {
    let p = Path::new(spec);
    if p.is_dir() {
        if let Ok(abs) = std::fs::canonicalize(p) {
            return abs.display().to_string();
        }
    }
    spec.to_string()
}

/// Everything a speech fine-tuning run needs.
pub struct SpeechJob {
    /// Model, loss and metrics.
    pub task: WhisperTask,
    /// Training batches.
    pub train: DataLoader<SpeechDataset>,
    /// Validation batches.
    pub val: DataLoader<SpeechDataset>,
    /// Where the model came from.
    pub files: WhisperFiles,
    /// What PEFT did (None without PEFT).
    pub peft_report: Option<PeftReport>,
}

/// Training and validation clips: `val_data`, else `val_split` of the data held out, stratified by language.
/// Rows are checked (language, tokenizer) before the split, so errors name the row of the file as read.
pub fn speech_splits(
    cfg: &SpeechConfig,
    tok: &WhisperTokenizer,
    seed: u64,
) -> Result<(Vec<LabelledClip>, Vec<LabelledClip>)> {
    let data = cfg.data.as_deref().context("speech.data is not set: pass --data MANIFEST")?;
    let all = labelled_clips(&read_speech_data(data, Some("train"))?, data, tok, cfg)?;
    if let Some(v) = &cfg.val_data {
        let val = labelled_clips(&read_speech_data(v, Some("validation"))?, v, tok, cfg)?;
        return Ok((all, val));
    }
    if cfg.val_split <= 0.0 {
        bail!("{}: no validation data: pass --val-data MANIFEST or --val-split FRACTION", data.display());
    }
    let mut codes: Vec<&str> = all.iter().map(|c| c.language.as_str()).collect();
    codes.sort();
    codes.dedup();
    let strata: Vec<usize> = all.iter().map(|c| codes.iter().position(|l| *l == c.language).unwrap_or(0)).collect();
    let (train, val) = stratified_split(&all, &strata, cfg.val_split, seed);
    if train.is_empty() || val.is_empty() {
        bail!(
            "{}: {} clip(s) cannot be split into training and validation (val_split {}): add data or pass --val-data",
            data.display(),
            all.len(),
            cfg.val_split
        );
    }
    Ok((train, val))
}

/// Reads the data, loads the model (and PEFT), and builds the task and loaders. Base weights are loaded on resume
/// too: a PEFT adapter records their checksum, and the checkpoint then overwrites them.
pub fn prepare(cfg: &SpeechConfig, peft: &PeftConfig, train: &TrainConfig, device: Device) -> Result<SpeechJob> {
    cfg.validate()?;
    peft.validate()?;
    let files = resolve_whisper(&cfg.model)?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    let (tr, va) = speech_splits(cfg, &tok, train.seed)?;
    // Every clip must open and start decoding before the model loads and the run folder appears: a bad file found
    // by the loader mid-training used to fail the job after its run folder was written.
    let mut clips: Vec<&Path> = tr.iter().chain(&va).map(|c| c.audio.as_path()).collect();
    clips.sort();
    clips.dedup();
    crate::audio::check_decodable(&clips)?;
    let mut vs = VarStore::new(device);
    let mut model = load_whisper(&mut vs, &files).with_context(|| format!("loading {}", cfg.model))?;
    let peft_report = setup_peft(&mut vs, &mut model, peft, cfg.freeze_encoder)?;
    let saver = match &peft_report {
        Some(r) => SpeechSaver::Adapter {
            config: peft.clone(),
            base_model: base_model_id(&cfg.model),
            base_checksum: r.base_checksum.clone(),
            freeze_encoder: cfg.freeze_encoder,
        },
        None => SpeechSaver::Hub,
    };
    let frozen = !encoder_trains(&vs);
    let c = &files.config;
    let mut task = WhisperTask::new(vs, model, tok, files.tokenizer.clone(), cfg.task, frozen, saver);
    task.spec_augment = cfg.spec_augment.then_some(SpecAugment::LD);
    task.eval_beam = cfg.eval_beam;
    task.normalizer = cfg.normalizer;
    let loader = LoaderConfig {
        batch_size: train.batch_size,
        drop_last: false,
        workers: train.workers.min(2),
        prefetch: 2,
        seed: train.seed,
    };
    let eval_loader = LoaderConfig { batch_size: train.batch_size.max(8), ..loader.clone() };
    let train_ds = Arc::new(SpeechDataset::new(tr, c.num_mel_bins, c.pad_token_id, cfg.task));
    let val_ds = Arc::new(SpeechDataset::new(va, c.num_mel_bins, c.pad_token_id, cfg.task));
    Ok(SpeechJob {
        task,
        train: DataLoader::shuffled(train_ds, loader),
        val: DataLoader::sequential(val_ds, eval_loader),
        files,
        peft_report,
    })
}

/// A model folder a speech run wrote: hub layout (`model.safetensors`) or a PEFT adapter (`adapter.safetensors`).
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join("model.safetensors").is_file() || dir.join("adapter.safetensors").is_file()
}

/// A trained (or base) Whisper ready for inference.
pub struct LoadedWhisper {
    /// Its tensors (frozen).
    pub vs: VarStore,
    /// The model.
    pub model: Whisper,
    /// Its tokenizer.
    pub tokenizer: WhisperTokenizer,
    /// The `tokenizer.json`.
    pub tokenizer_path: PathBuf,
    /// What was loaded, for messages.
    pub description: String,
}

/// Loads `spec` (a registry name, hub id or folder) for inference. A folder with `adapter.safetensors` is a PEFT
/// model: its base (from `suite_adapter.json`) is loaded, the method applied and the adapter copied in, checked
/// against the base's checksum.
pub fn load_for_inference(spec: &str, device: Device) -> Result<LoadedWhisper> {
    Ok(load_for_inference_as(spec, device, false)?.0)
}

/// [`load_for_inference`]; with `int8`, every linear layer in int8 (PyTorch's dynamic quantization, see
/// `suite_core::quant`), quantized layer by layer as the weights load so that the fp32 model never exists whole,
/// and what was quantized. A PEFT folder is loaded in fp32 first (its adapters attach to the fp32 layers).
pub fn load_for_inference_as(
    spec: &str,
    device: Device,
    int8: bool,
) -> Result<(LoadedWhisper, Option<suite_core::quant::QuantSummary>)> {
    let scheme = int8.then_some(suite_core::quant::WeightScheme::PerChannel);
    let dir = Path::new(spec);
    if dir.join("adapter.safetensors").is_file() {
        let mut loaded = load_adapter_dir(dir, device)?;
        let summary = scheme.map(|s| suite_core::quant::quantize_dynamic(&mut loaded.model, s)).transpose()?;
        return Ok((loaded, summary));
    }
    let files = resolve_whisper(spec)?;
    let mut vs = VarStore::new(device);
    let (model, summary) = load_whisper_as(&mut vs, &files, scheme).with_context(|| format!("loading {spec}"))?;
    vs.freeze();
    let tokenizer = WhisperTokenizer::from_file(&files.tokenizer)?;
    let loaded = LoadedWhisper { vs, model, tokenizer, tokenizer_path: files.tokenizer, description: spec.to_string() };
    Ok((loaded, summary))
}

fn load_adapter_dir(dir: &Path, device: Device) -> Result<LoadedWhisper> {
    let manifest_path = dir.join("suite_adapter.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{}: adapter folder without a readable suite_adapter.json", dir.display()))?;
    let manifest: AdapterManifest = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", manifest_path.display(), e.line()))?;
    let file = read_adapter(&dir.join("adapter.safetensors"))?;
    let files = resolve_whisper(&manifest.base_model)
        .with_context(|| format!("{}: base model {:?}", manifest_path.display(), manifest.base_model))?;
    let mut vs = VarStore::new(device);
    let mut model = load_whisper(&mut vs, &files).with_context(|| format!("loading {}", manifest.base_model))?;
    let report = setup_peft(&mut vs, &mut model, &file.config, manifest.freeze_encoder)?
        .context("the adapter file names no PEFT method")?;
    load_adapter(&mut vs, &file, Some(&file.config), &report.base_checksum)
        .with_context(|| format!("loading {}", dir.join("adapter.safetensors").display()))?;
    vs.freeze();
    let tokenizer_path =
        if dir.join("tokenizer.json").is_file() { dir.join("tokenizer.json") } else { files.tokenizer };
    let tokenizer = WhisperTokenizer::from_file(&tokenizer_path)?;
    Ok(LoadedWhisper {
        vs,
        model,
        tokenizer,
        tokenizer_path,
        description: format!("{} + {} adapter {}", manifest.base_model, manifest.method, dir.display()),
    })
}
