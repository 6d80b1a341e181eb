use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use suite_core::data::{stratified_split, DataLoader, LoaderConfig};
use suite_core::optim::GroupRule;
use suite_core::peft::{read_adapter, PeftConfig, PeftReport};
use suite_core::train::TrainConfig;
use suite_core::weights::LoadReport;
use tch::{nn::VarStore, Device};

use super::config::{TextConfig, TextTaskKind};
use super::peft::{apply_text_peft, load_text_adapter, AdapterMeta, AdapterSaver, ADAPTER_FILE, ADAPTER_META};
use super::sequence::{HubSaver, NerEval, SequenceTask};
use super::sft::SftTask;
use super::sft_job::prepare_sft;
use super::span::{QaEval, SpanSettings, SpanTask};
use crate::data::{
    detect_scheme, read_classify, read_classify_checked, read_ner, read_ner_checked, read_squad, ClassifyColumns,
    ClassifyDataset, ClassifyExample, LabelSet, NerDataset, NerSentence, QaDataset, QaExample, SftDataset, TagScheme,
    TextTokenizer,
};
use crate::metrics::{Mode, Scheme};
use crate::models::{resolve_text_model, EncoderConfig, Head, TextModel, TextModelFiles};

/// The trainable model of a text job.
pub enum TextTask {
    /// Classification or NER.
    Sequence(SequenceTask),
    /// Extractive QA.
    Span(SpanTask),
    /// Supervised fine-tuning of a language model.
    Sft(Box<SftTask>),
}

/// Training and validation loaders of a text job.
pub enum TextData {
    /// Sequence classification.
    Classify {
        /// Training batches.
        train: DataLoader<ClassifyDataset>,
        /// Validation batches.
        val: DataLoader<ClassifyDataset>,
    },
    /// Token classification.
    Ner {
        /// Training batches.
        train: DataLoader<NerDataset>,
        /// Validation batches.
        val: DataLoader<NerDataset>,
    },
    /// Question answering (windows of contexts).
    Qa {
        /// Training windows.
        train: DataLoader<QaDataset>,
        /// Validation windows.
        val: DataLoader<QaDataset>,
    },
    /// Language-model rows (packed or padded).
    Sft {
        /// Training rows.
        train: DataLoader<SftDataset>,
        /// Validation rows.
        val: DataLoader<SftDataset>,
    },
}

/// Everything a text fine-tuning run needs, ready for the trainer.
pub struct TextJob {
    /// Model, loss and metrics.
    pub task: TextTask,
    /// Data loaders.
    pub data: TextData,
    /// Learning-rate rules (encoder vs head).
    pub rules: Vec<GroupRule>,
    /// How the pretrained weights loaded.
    pub load_report: Option<LoadReport>,
    /// What PEFT set up (None without PEFT).
    pub peft: Option<PeftReport>,
    /// Where model, config and tokenizer came from.
    pub files: TextModelFiles,
    /// Training / validation example counts.
    pub sizes: (usize, usize),
    /// The metric that selects the best model when the recipe says `auto`.
    pub metric: String,
    /// Lines for the run report about how the data was prepared (SFT: truncation, packing).
    pub notes: Vec<String>,
}

/// Batches of a text job's training and validation data: the recipe's batch size and seed, at most two workers.
pub(super) fn train_loader(train: &TrainConfig) -> LoaderConfig {
    LoaderConfig {
        batch_size: train.batch_size,
        drop_last: false,
        workers: train.workers.min(2),
        prefetch: 4,
        seed: train.seed,
    }
}

/// The metric a task is judged by (`train.metric = "auto"`).
pub fn default_metric(cfg: &TextConfig) -> &'static str {
    match (cfg.task, cfg.multi_label) {
        (TextTaskKind::Classify, false) => "accuracy",
        (TextTaskKind::Classify, true) => "micro_f1",
        (TextTaskKind::Sft, _) => "loss",
        _ => "f1",
    }
}

/// Reads data, builds and initialises the model and its loaders. `resume` skips the pretrained weights (the
/// checkpoint has them).
pub fn prepare(
    cfg: &TextConfig,
    peft: &PeftConfig,
    train: &TrainConfig,
    device: Device,
    resume: bool,
) -> Result<TextJob> {
    cfg.validate()?;
    if cfg.task == TextTaskKind::Sft {
        // The base weights (or the random ones) load on resume too; the checkpoint overwrites what trained.
        return prepare_sft(cfg, peft, train, device);
    }
    let files = resolve_text_model(&cfg.model)?;
    let tok = TextTokenizer::from_file(&files.tokenizer)?;
    let enc = EncoderConfig::from_file(&files.config)?;
    let loader = train_loader(train);
    let eval_loader = LoaderConfig { batch_size: train.batch_size.max(32), ..loader.clone() };
    let mut vs = VarStore::new(device);
    let data_path = cfg.data.as_deref().expect("validated");

    let (task, data, sizes) = match cfg.task {
        TextTaskKind::Classify => {
            let (tr, va) = classify_splits(cfg, train.seed)?;
            let labels = LabelSet::collect(tr.iter().flat_map(|e| e.labels.iter().map(String::as_str)));
            if labels.len() < 2 && !cfg.multi_label {
                bail!(
                    "{}: only one label ({:?}) in the training data; classification needs two or more",
                    data_path.display(),
                    labels.names
                );
            }
            if let Some(v) = &cfg.val_data {
                // The dataset knows examples by index only: this names the file and line of an unseen label.
                read_classify_checked(v, &columns(cfg), &labels)?;
            }
            let train_ds = Arc::new(ClassifyDataset::new(&tr, &tok, Some(&labels), cfg.max_len, cfg.multi_label)?);
            let val_ds = Arc::new(
                ClassifyDataset::new(&va, &tok, Some(&labels), cfg.max_len, cfg.multi_label)
                    .with_context(|| format!("validation data {}", val_source(cfg)))?,
            );
            let model = TextModel::new(&vs.root(), &enc, Head::Classify { num_labels: labels.len() as i64 })?;
            let task = SequenceTask {
                vs: VarStore::new(device),
                model,
                kind: TextTaskKind::Classify,
                labels,
                multi_label: cfg.multi_label,
                label_smoothing: cfg.label_smoothing,
                ner_mode: (Mode::Default, Scheme::Iob2),
                eval_ner: None,
                tokenizer_dir: files.dir.clone(),
                saver: Box::new(HubSaver),
                last_report: None,
            };
            let data = TextData::Classify {
                train: DataLoader::shuffled(train_ds, loader.clone()),
                val: DataLoader::sequential(val_ds, eval_loader),
            };
            (TextTask::Sequence(task), data, (tr.len(), va.len()))
        }
        TextTaskKind::Ner => {
            let (tr, va) = ner_splits(cfg, train.seed)?;
            // A held-out split comes from the same file, so its tags belong to the tag set even when none of a
            // rare tag's sentences fell into the training part.
            let labels = match cfg.val_data {
                Some(_) => ner_labels(&tr),
                None => LabelSet::collect(tr.iter().chain(&va).flat_map(|s| s.tags.iter().map(String::as_str))),
            };
            if let Some(v) = &cfg.val_data {
                // The dataset knows sentences by index only: this names the file and line of an unseen tag.
                read_ner_checked(v, &labels)?;
            }
            let scheme = detect_scheme(&tr).with_context(|| format!("{}", data_path.display()))?;
            let mode = if cfg.strict { Mode::Strict } else { Mode::Default };
            let train_ds = Arc::new(NerDataset::new(&tr, &tok, Some(&labels), cfg.max_len, cfg.subword_labels.into())?);
            let val_ds = Arc::new(
                NerDataset::new(&va, &tok, Some(&labels), cfg.max_len, cfg.subword_labels.into())
                    .with_context(|| format!("validation data {}", val_source(cfg)))?,
            );
            let model = TextModel::new(&vs.root(), &enc, Head::Tokens { num_labels: labels.len() as i64 })?;
            let task = SequenceTask {
                vs: VarStore::new(device),
                model,
                kind: TextTaskKind::Ner,
                labels,
                multi_label: false,
                label_smoothing: cfg.label_smoothing,
                ner_mode: (mode, seqeval_scheme(scheme)),
                eval_ner: Some(NerEval { dataset: val_ds.clone(), tags: va.iter().map(|s| s.tags.clone()).collect() }),
                tokenizer_dir: files.dir.clone(),
                saver: Box::new(HubSaver),
                last_report: None,
            };
            let data = TextData::Ner {
                train: DataLoader::shuffled(train_ds, loader.clone()),
                val: DataLoader::sequential(val_ds, eval_loader),
            };
            (TextTask::Sequence(task), data, (tr.len(), va.len()))
        }
        TextTaskKind::Qa => {
            let (tr, va) = qa_splits(cfg, train.seed)?;
            let train_ds = Arc::new(QaDataset::new(&tr, &tok, cfg.max_len, cfg.doc_stride)?);
            let val_ds = Arc::new(
                QaDataset::new(&va, &tok, cfg.max_len, cfg.doc_stride)
                    .with_context(|| format!("validation data {}", val_source(cfg)))?,
            );
            let model = TextModel::new(&vs.root(), &enc, Head::Span)?;
            let task = SpanTask {
                vs: VarStore::new(device),
                model,
                settings: span_settings(cfg),
                eval: Some(QaEval { dataset: val_ds.clone(), gold: gold_answers(&va) }),
                tokenizer_dir: files.dir.clone(),
                saver: Box::new(HubSaver),
                last_predictions: Vec::new(),
            };
            let data = TextData::Qa {
                train: DataLoader::shuffled(train_ds, loader.clone()),
                val: DataLoader::sequential(val_ds, eval_loader),
            };
            (TextTask::Span(task), data, (tr.len(), va.len()))
        }
        TextTaskKind::Sft => unreachable!("prepared by prepare_sft above"),
    };

    // The base weights load on resume too: PEFT's checksum and DoRA's magnitudes come from them, and the
    // checkpoint then overwrites everything that trained.
    let _ = resume;
    let mut task = task;
    let model = match &mut task {
        TextTask::Sequence(t) => &mut t.model,
        TextTask::Span(t) => &mut t.model,
        TextTask::Sft(_) => unreachable!("prepared by prepare_sft"),
    };
    let load_report =
        Some(model.load_pretrained(&mut vs, &files.weights).with_context(|| format!("loading {}", cfg.model))?);
    let peft_report = apply_text_peft(&mut vs, model, peft)?;
    if let Some(r) = &peft_report {
        let saver = AdapterSaver {
            config: peft.clone(),
            base_model: cfg.model.clone(),
            base_checksum: r.base_checksum.clone(),
        };
        match &mut task {
            TextTask::Sequence(t) => t.saver = Box::new(saver),
            TextTask::Span(t) => t.saver = Box::new(saver),
            TextTask::Sft(_) => unreachable!("prepared by prepare_sft"),
        }
    }
    let prefix = match &task {
        TextTask::Sequence(t) => t.model.encoder_prefix(),
        TextTask::Span(t) => t.model.encoder_prefix(),
        TextTask::Sft(_) => unreachable!("prepared by prepare_sft"),
    };
    let rules = if (cfg.encoder_lr_mult - 1.0).abs() > f64::EPSILON {
        vec![GroupRule { prefix: format!("{prefix}."), lr_mult: cfg.encoder_lr_mult }]
    } else {
        Vec::new()
    };
    let task = match task {
        TextTask::Sequence(mut t) => {
            t.vs = vs;
            TextTask::Sequence(t)
        }
        TextTask::Span(mut t) => {
            t.vs = vs;
            TextTask::Span(t)
        }
        TextTask::Sft(t) => TextTask::Sft(t),
    };
    let metric = default_metric(cfg).into();
    Ok(TextJob { task, data, rules, load_report, peft: peft_report, files, sizes, metric, notes: Vec::new() })
}

fn val_source(cfg: &TextConfig) -> String {
    match &cfg.val_data {
        Some(p) => p.display().to_string(),
        None => format!("(held-out {} of {})", cfg.val_split, cfg.data.as_deref().unwrap_or(Path::new("?")).display()),
    }
}

fn no_val(cfg: &TextConfig) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: no validation data: pass --val-data FILE or --val-split FRACTION",
        cfg.data.as_deref().unwrap_or(Path::new("?")).display()
    )
}

fn columns(cfg: &TextConfig) -> ClassifyColumns {
    ClassifyColumns {
        text: cfg.columns.text.clone(),
        text_pair: cfg.columns.text_pair.clone(),
        label: cfg.columns.label.clone(),
    }
}

/// Training and validation examples of a classification job: `val_data`, else a split stratified by (first) label.
pub fn classify_splits(cfg: &TextConfig, seed: u64) -> Result<(Vec<ClassifyExample>, Vec<ClassifyExample>)> {
    let data = cfg.data.as_deref().context("text.data is not set")?;
    let cols = columns(cfg);
    let all = read_classify(data, &cols, true)?;
    match &cfg.val_data {
        Some(v) => Ok((all, read_classify(v, &cols, true)?)),
        None if cfg.val_split > 0.0 => {
            let names = LabelSet::collect(all.iter().filter_map(|e| e.labels.first().map(String::as_str)));
            let strata: Vec<usize> =
                all.iter().map(|e| e.labels.first().and_then(|l| names.index(l).ok()).unwrap_or(0)).collect();
            Ok(stratified_split(&all, &strata, cfg.val_split, seed))
        }
        None => Err(no_val(cfg)),
    }
}

/// Training and validation sentences of an NER job.
pub fn ner_splits(cfg: &TextConfig, seed: u64) -> Result<(Vec<NerSentence>, Vec<NerSentence>)> {
    let data = cfg.data.as_deref().context("text.data is not set")?;
    let all = read_ner(data)?;
    match &cfg.val_data {
        Some(v) => Ok((all, read_ner(v)?)),
        None if cfg.val_split > 0.0 => Ok(stratified_split(&all, &vec![0; all.len()], cfg.val_split, seed)),
        None => Err(no_val(cfg)),
    }
}

/// Training and validation questions of a QA job (split by question).
pub fn qa_splits(cfg: &TextConfig, seed: u64) -> Result<(Vec<QaExample>, Vec<QaExample>)> {
    let data = cfg.data.as_deref().context("text.data is not set")?;
    let all = read_squad(data)?;
    match &cfg.val_data {
        Some(v) => Ok((all, read_squad(v)?)),
        None if cfg.val_split > 0.0 => Ok(stratified_split(&all, &vec![0; all.len()], cfg.val_split, seed)),
        None => Err(no_val(cfg)),
    }
}

/// The tag set of NER training data, `O` first.
pub fn ner_labels(sentences: &[NerSentence]) -> LabelSet {
    LabelSet::collect(sentences.iter().flat_map(|s| s.tags.iter().map(String::as_str)))
}

/// The seqeval scheme matching a detected tag scheme.
pub fn seqeval_scheme(s: TagScheme) -> Scheme {
    match s {
        TagScheme::Iob1 => Scheme::Iob1,
        TagScheme::Iob2 => Scheme::Iob2,
        TagScheme::Bioes => Scheme::Iobes,
    }
}

/// Gold answers per question id (empty for unanswerable questions).
pub fn gold_answers(examples: &[QaExample]) -> Vec<(String, Vec<String>)> {
    examples.iter().map(|e| (e.id.clone(), e.answers.iter().map(|a| a.text.clone()).collect())).collect()
}

/// QA span-selection settings of a config.
pub fn span_settings(cfg: &TextConfig) -> SpanSettings {
    SpanSettings {
        n_best: cfg.n_best,
        max_answer_len: cfg.max_answer_len,
        version_2: cfg.version_2,
        null_threshold: cfg.null_threshold,
    }
}

/// A trained text model loaded back from a run's `best/` or `final/` folder: hub layout, or an adapter folder
/// (base model + adapter, refused when the base model's weights are not the ones it was trained on).
pub fn load_trained(
    dir: &Path,
    kind: TextTaskKind,
    device: Device,
) -> Result<(VarStore, TextModel, Vec<String>, bool)> {
    let config_path = dir.join("config.json");
    let enc = EncoderConfig::from_file(&config_path)?;
    let raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?,
    )?;
    let labels = id2label(&raw).with_context(|| format!("{}: id2label", config_path.display()))?;
    let multi_label = raw.get("problem_type").and_then(|v| v.as_str()) == Some("multi_label_classification");
    let head = match kind {
        TextTaskKind::Classify => Head::Classify { num_labels: labels.len() as i64 },
        TextTaskKind::Ner => Head::Tokens { num_labels: labels.len() as i64 },
        TextTaskKind::Qa => Head::Span,
        TextTaskKind::Sft => bail!(
            "{}: an SFT run's model is a language model: load it with suite_text::generate::LanguageModel",
            dir.display()
        ),
    };
    let mut vs = VarStore::new(device);
    let mut model = TextModel::new(&vs.root(), &enc, head)?;
    if dir.join(ADAPTER_FILE).is_file() {
        let meta_path = dir.join(ADAPTER_META);
        let meta: AdapterMeta = serde_json::from_slice(
            &std::fs::read(&meta_path).with_context(|| format!("cannot read {}", meta_path.display()))?,
        )
        .with_context(|| format!("{}: not an adapter description", meta_path.display()))?;
        let base = resolve_text_model(&meta.base_model)
            .with_context(|| format!("the base model of the adapter in {}", dir.display()))?;
        model.load_pretrained(&mut vs, &base.weights)?;
        let file = read_adapter(&dir.join(ADAPTER_FILE))?;
        let report =
            apply_text_peft(&mut vs, &mut model, &file.config)?.context("the adapter file names no PEFT method")?;
        load_text_adapter(&mut vs, dir, Some(&file.config), &report.base_checksum)?;
    } else {
        let weights: Vec<PathBuf> = vec![dir.join("model.safetensors")];
        suite_core::weights::load_safetensors(&vs, &weights, &suite_core::weights::LoadOptions::strict())
            .with_context(|| format!("loading {}", dir.display()))?;
    }
    vs.freeze();
    Ok((vs, model, labels, multi_label))
}

/// Label names in id order from a hub config's `id2label`.
pub fn id2label(config: &serde_json::Value) -> Result<Vec<String>> {
    let Some(map) = config.get("id2label").and_then(|v| v.as_object()) else {
        return Ok(Vec::new());
    };
    let mut pairs: Vec<(usize, String)> = Vec::new();
    for (k, v) in map {
        let i: usize = k.parse().with_context(|| format!("key {k:?} is not an integer"))?;
        pairs.push((i, v.as_str().unwrap_or_default().to_string()));
    }
    pairs.sort();
    if pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
        bail!("ids are not 0..{}", pairs.len());
    }
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}
