//! Preparing an SFT run: the language model (pretrained, or random weights from its config for pretraining from
//! scratch), PEFT on it, the data read, tokenized with loss masks and packed, and the held-out prompts of the
//! generation metrics.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use suite_core::data::{stratified_split, DataLoader, LoaderConfig};
use suite_core::peft::{apply_peft, PeftConfig};
use suite_core::train::TrainConfig;
use suite_core::weights::{resolve_model, ModelSource};
use tch::{nn::VarStore, Device};

use super::config::{SftInit, TextConfig};
use super::job::{train_loader, TextData, TextJob, TextTask};
use super::sft::{SftSaver, SftTask};
use crate::data::{build_rows, read_sft, SftDataset, SftExample, SftPrompt, SftStats, SftTokenizer, SftTokens};
use crate::models::{
    causal_model_type, causal_peft_targets, load_causal_lm, new_causal_lm, LmCheckpoint, TextModelFiles,
    LLAMA_MODEL_TYPES,
};

/// Optional files of a language model folder.
const LM_FILES: [&str; 4] =
    ["model.safetensors", "model.safetensors.index.json", "tokenizer_config.json", "generation_config.json"];

/// The folder of a language model: a local folder, or a hub id through the hub cache. It must hold config.json
/// and tokenizer.json, and weights unless the model starts from scratch.
pub fn resolve_lm(spec: &str, init: SftInit) -> Result<TextModelFiles> {
    let files = resolve_model(spec, &["config.json", "tokenizer.json"], &LM_FILES).with_context(|| {
        format!("text.model = {spec:?}: a language model folder needs config.json and tokenizer.json")
    })?;
    let config = files.require("config.json")?.to_path_buf();
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let weights = match init {
        SftInit::Scratch => Vec::new(),
        SftInit::Pretrained => files.weight_files().with_context(|| {
            format!("text.model = {spec:?}: no weights; pass --init scratch to train a new model from its config.json")
        })?,
    };
    let tokenizer = files.require("tokenizer.json")?.to_path_buf();
    let source = match &files.source {
        ModelSource::Local { .. } => ModelSource::Local { dir: std::path::absolute(&dir).unwrap_or(dir.clone()) },
        other => other.clone(),
    };
    Ok(TextModelFiles { dir, config, weights, tokenizer, source })
}

/// Tokenizes examples with a progress bar (on a terminal); the first bad example stops it with its file:line.
fn tokenize_all(tok: &SftTokenizer, examples: &[SftExample], what: &str) -> Result<Vec<SftTokens>> {
    let bar = ProgressBar::with_draw_target(Some(examples.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30.cyan/blue}] {pos}/{len} examples [{elapsed_precise}]")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("tokenizing {what}"));
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        out.push(tok.encode(ex)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Training and validation examples: `val_data`, else `val_split` of the training file held out (seeded).
pub fn sft_splits(cfg: &TextConfig, seed: u64) -> Result<(Vec<SftExample>, Vec<SftExample>)> {
    let data = cfg.data.as_deref().context("text.data is not set")?;
    let all = read_sft(data)?;
    match &cfg.val_data {
        Some(v) => Ok((all, read_sft(v)?)),
        None if cfg.val_split > 0.0 => {
            let (train, val) = stratified_split(&all, &vec![0; all.len()], cfg.val_split, seed);
            if train.is_empty() || val.is_empty() {
                bail!(
                    "{}: {} examples cannot be split by text.val_split = {}: add data or pass --val-data FILE",
                    data.display(),
                    all.len(),
                    cfg.val_split
                );
            }
            Ok((train, val))
        }
        None => bail!("{}: no validation data: pass --val-data FILE or --val-split FRACTION", data.display()),
    }
}

/// Builds the SFT job: model (+ PEFT), tokenized and packed data, loaders and evaluation prompts.
pub fn prepare_sft(cfg: &TextConfig, peft: &PeftConfig, train: &TrainConfig, device: Device) -> Result<TextJob> {
    let files = resolve_lm(&cfg.model, cfg.init)?;
    let model_type = causal_model_type(&files.config)?;
    let (mut vs, mut model, load_report) = match cfg.init {
        SftInit::Pretrained => {
            let (vs, model, report) =
                load_causal_lm(&files.dir, device).with_context(|| format!("loading {}", cfg.model))?;
            (vs, model, Some(report))
        }
        SftInit::Scratch => {
            let vs = VarStore::new(device);
            let model = new_causal_lm(&vs, &files.dir)?;
            (vs, model, None)
        }
    };
    let info = model.info().clone();
    if cfg.max_len as i64 > info.max_position_embeddings {
        bail!(
            "text.max_len = {}: longer than the model's context ({} tokens, max_position_embeddings of {})",
            cfg.max_len,
            info.max_position_embeddings,
            files.config.display()
        );
    }
    let tok = SftTokenizer::from_dir(&files.dir, &info.eos_token_ids, cfg.system_prompt.clone(), cfg.max_len)?;
    let (train_ex, val_ex) = sft_splits(cfg, train.seed)?;
    let train_tokens = tokenize_all(&tok, &train_ex, "training")?;
    let val_tokens = tokenize_all(&tok, &val_ex, "validation")?;
    let (train_rows, train_stats) = build_rows(&train_tokens, cfg.max_len, cfg.packing);
    let (val_rows, val_stats) = build_rows(&val_tokens, cfg.max_len, cfg.packing);
    let eval_prompts = eval_prompts(&tok, &val_ex, cfg.eval_generate, info.max_position_embeddings as usize)?;

    let stop_ids = stop_ids(&tok, &info.eos_token_ids);
    let base_dir = std::path::absolute(&files.dir).unwrap_or(files.dir.clone());
    let (saver, peft_report) = if matches!(peft, PeftConfig::None) {
        (SftSaver::Full { base_dir, model_type: model_type.clone() }, None)
    } else {
        let report = apply_peft(&mut vs, &mut *model, peft, &causal_peft_targets(&model_type))?;
        eprintln!("{}", report.summary_line());
        let saver = SftSaver::Adapter { config: peft.clone(), base_dir, base_checksum: report.base_checksum.clone() };
        (saver, Some(report))
    };

    if cfg.gradient_checkpointing && !LLAMA_MODEL_TYPES.contains(&model_type.as_str()) {
        bail!(
            "text.gradient_checkpointing: not implemented for {model_type:?} models yet (supported: {LLAMA_MODEL_TYPES:?})"
        );
    }
    model.set_gradient_checkpointing(cfg.gradient_checkpointing);

    let loader = train_loader(train);
    let pad_id = tok.eos_id();
    let train_ds = Arc::new(SftDataset::new(train_rows, pad_id, cfg.packing));
    let val_ds = Arc::new(SftDataset::new(val_rows, pad_id, cfg.packing));
    let data = TextData::Sft {
        train: DataLoader::shuffled(train_ds, loader.clone()),
        val: DataLoader::sequential(val_ds, loader),
    };
    let mut notes = vec![
        format!("training data: {train_stats}"),
        format!("validation data: {val_stats}"),
        format!("generation metrics on {} held-out prompts", eval_prompts.len()),
    ];
    if cfg.gradient_checkpointing {
        notes.push("gradient checkpointing: decoder layers recomputed in the backward pass".into());
    }
    report_truncation(&train_stats, &val_stats);
    let task = SftTask {
        vs,
        model,
        eval_prompts,
        tokenizer: tok.tokenizer().clone(),
        stop_ids,
        pad_id,
        saver,
        last_generations: Vec::new(),
    };
    Ok(TextJob {
        task: TextTask::Sft(Box::new(task)),
        data,
        rules: Vec::new(),
        load_report,
        peft: peft_report,
        files,
        sizes: (train_ex.len(), val_ex.len()),
        metric: "loss".into(),
        notes,
    })
}

fn report_truncation(train: &SftStats, val: &SftStats) {
    eprintln!("training data: {train}");
    eprintln!("validation data: {val}");
}

/// The tokens that end a generated answer: the template's end-of-turn markers and the model's eos tokens.
fn stop_ids(tok: &SftTokenizer, eos_ids: &[i64]) -> Vec<i64> {
    let mut ids: Vec<i64> = vec![tok.eos_id()];
    if let Some(t) = tok.template() {
        let added: Vec<String> =
            tok.tokenizer().get_added_tokens_decoder().values().map(|t| t.content.clone()).collect();
        for marker in t.end_of_turn_tokens(&added) {
            if let Some(id) = tok.tokenizer().token_to_id(&marker) {
                ids.push(id as i64);
            }
        }
    }
    ids.extend_from_slice(eos_ids);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Up to `cap` held-out prompts (examples that end with the answer) that leave room to answer in the context.
fn eval_prompts(tok: &SftTokenizer, examples: &[SftExample], cap: usize, context: usize) -> Result<Vec<SftPrompt>> {
    let mut out = Vec::new();
    for ex in examples {
        if out.len() >= cap {
            break;
        }
        if let Some(p) = tok.prompt(ex)? {
            if !p.ids.is_empty() && p.ids.len() < context {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// A model folder saved by an SFT run (`best/` or `final/`), ready to evaluate: the full model, or the base named
/// by `suite_adapter.json` with the adapter applied and loaded. `data` replaces the run's validation examples.
pub fn load_sft_eval(
    cfg: &TextConfig,
    dir: &Path,
    data: Option<&Path>,
    seed: u64,
    batch_size: usize,
    device: Device,
) -> Result<(SftTask, DataLoader<SftDataset>)> {
    let ckpt = LmCheckpoint::load_on(dir, device)?;
    let saver = match &ckpt.base_checksum {
        Some(sum) => {
            SftSaver::Adapter { config: ckpt.peft.clone(), base_dir: ckpt.base_dir.clone(), base_checksum: sum.clone() }
        }
        None => SftSaver::Full { base_dir: dir.to_path_buf(), model_type: ckpt.model_type.clone() },
    };
    let LmCheckpoint { mut vs, model, .. } = ckpt;
    vs.freeze();
    let info = model.info().clone();
    let tok = SftTokenizer::from_dir(dir, &info.eos_token_ids, cfg.system_prompt.clone(), cfg.max_len)?;
    let examples = match data {
        Some(d) => read_sft(d)?,
        None => sft_splits(cfg, seed)?.1,
    };
    let tokens = tokenize_all(&tok, &examples, "evaluation")?;
    let (rows, stats) = build_rows(&tokens, cfg.max_len, cfg.packing);
    eprintln!("evaluation data: {stats}");
    let eval_prompts = eval_prompts(&tok, &examples, cfg.eval_generate, info.max_position_embeddings as usize)?;
    let pad_id = tok.eos_id();
    let loader = LoaderConfig { batch_size, workers: 0, ..LoaderConfig::default() };
    let data = DataLoader::sequential(Arc::new(SftDataset::new(rows, pad_id, cfg.packing)), loader);
    let task = SftTask {
        vs,
        model,
        eval_prompts,
        tokenizer: tok.tokenizer().clone(),
        stop_ids: stop_ids(&tok, &info.eos_token_ids),
        pad_id,
        saver,
        last_generations: Vec::new(),
    };
    Ok((task, data))
}
