//! `suite inspect text`: checks the data of an encoder task (classification, NER, extractive QA) before training
//! and fills a [`Report`]: examples per label or entity type and split ([`classes`]), lengths in tokens of the
//! model's tokenizer against the sequence length ([`lengths`]), NER tag-scheme violations ([`tags`]), QA answers that
//! no window holds or that do not match their context ([`answers`]), exact and near duplicates within and across
//! splits and texts given conflicting labels ([`duplicates`]) and, with a trained classification run, likely label
//! errors ranked by confident learning ([`label_issues`]).
//!
//! The data is read with the readers of `suite finetune text` ([`read`]), so what is inspected is what training
//! reads; a file those readers refuse is an error naming the file and line, except SQuAD answers that do not match
//! their context, which are listed as findings.

pub mod answers;
pub mod classes;
pub mod duplicates;
pub mod label_issues;
pub mod lengths;
pub mod read;
pub mod tags;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use suite_core::quality::report::{Report, SplitInput};
use tch::Device;

use crate::data::{ClassifyColumns, TextTokenizer};
use crate::models::resolve_text_model;
use crate::task::TextTaskKind;

/// What to inspect and how.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// The data as `(split, path)`, train first.
    pub splits: Vec<(String, PathBuf)>,
    /// Classification, NER or QA (SFT data is not inspected).
    pub task: TextTaskKind,
    /// Classification: the columns (keys) of text, pair text and label.
    pub columns: ClassifyColumns,
    /// Classification: several labels per text.
    pub multi_label: bool,
    /// Whose tokenizer measures lengths: a model folder (a run's `best/`), a `tokenizer.json`, a registry name or
    /// a hub id (as `suite finetune text --model`).
    pub tokenizer: String,
    /// Tokens per sequence (QA: per window), special tokens included.
    pub max_len: usize,
    /// QA: context tokens shared by consecutive windows.
    pub doc_stride: usize,
    /// Smallest Jaccard similarity (character 5-grams) of near-duplicate texts.
    pub near_jaccard: f64,
    /// A classification run whose model's pooled features rank label issues.
    pub run: Option<PathBuf>,
    /// `best` or `final` model of the run.
    pub which: String,
    /// Cross-validation folds of the label-issue probe.
    pub folds: usize,
    /// Device of the run's model.
    pub device: Device,
    /// Texts per forward pass of the run's model.
    pub batch_size: usize,
}

impl InspectOptions {
    /// Options with the defaults of `suite finetune text` and the command line for `splits` of a `task`.
    pub fn new(splits: Vec<(String, PathBuf)>, task: TextTaskKind) -> Self {
        let defaults = crate::task::TextConfig::default();
        InspectOptions {
            splits,
            task,
            columns: ClassifyColumns::default(),
            multi_label: false,
            tokenizer: defaults.model,
            max_len: defaults.max_len,
            doc_stride: defaults.doc_stride,
            near_jaccard: 0.8,
            run: None,
            which: "best".into(),
            folds: 5,
            device: Device::Cpu,
            batch_size: 32,
        }
    }
}

/// The task's name as recipes and `--task` spell it, and the report's task.
pub fn task_name(task: TextTaskKind) -> &'static str {
    match task {
        TextTaskKind::Classify => "classification",
        TextTaskKind::Ner => "ner",
        TextTaskKind::Qa => "qa",
        TextTaskKind::Sft => "sft",
    }
}

/// The `tokenizer.json` of a tokenizer source: the file itself, a folder holding one, else the model that
/// `suite finetune text --model` would resolve (the offline all-MiniLM-L6-v2 asset for its names).
pub fn tokenizer_file(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() && p.join("tokenizer.json").is_file() {
        return Ok(p.join("tokenizer.json"));
    }
    Ok(resolve_text_model(spec).with_context(|| format!("the tokenizer of {spec}"))?.tokenizer)
}

/// Inspects the data and returns the report. A missing path, a file the training readers refuse, a bad option or a
/// run without a model is an error; anything wrong inside readable data is a finding.
pub fn inspect(opts: &InspectOptions) -> Result<Report> {
    check_options(opts)?;
    for (split, path) in &opts.splits {
        if !path.exists() {
            bail!("{split} data {}: no such file", path.display());
        }
        if path.is_dir() {
            bail!(
                "{split} data {}: is a folder; text data is one file (CSV, TSV, JSONL, CoNLL or SQuAD JSON)",
                path.display()
            );
        }
    }
    let tok_path = tokenizer_file(&opts.tokenizer)?;
    let tok = TextTokenizer::from_file(&tok_path)?;
    // The run is loaded before the data passes, so that a wrong --run fails at once.
    let run = match (&opts.run, opts.task) {
        (Some(run), TextTaskKind::Classify) if !opts.multi_label => {
            Some(label_issues::RunModel::load(run, &opts.which, opts.device)?)
        }
        _ => None,
    };
    let data = read::read(opts)?;
    let mut report = Report::new("text", task_name(opts.task));
    report.inputs = opts
        .splits
        .iter()
        .enumerate()
        .map(|(s, (split, path))| SplitInput {
            split: split.clone(),
            path: path.display().to_string(),
            examples: data.examples.iter().filter(|e| e.split == s).count(),
        })
        .collect();
    report.run = opts.run.as_ref().map(|r| r.display().to_string());
    if opts.task != TextTaskKind::Qa {
        report.sections.push(classes::section(&data, opts.task, opts.multi_label));
    }
    let mut len = lengths::section(&data, &tok, opts.max_len)?;
    len.stat("tokenizer", tok_path.display().to_string());
    report.sections.push(len);
    match opts.task {
        TextTaskKind::Ner => report.sections.push(tags::section(&data)),
        TextTaskKind::Qa => report.sections.push(answers::section(&data, &tok, opts.max_len, opts.doc_stride)),
        _ => {}
    }
    let (dups, conflicts) = duplicates::sections(&data, opts.near_jaccard)?;
    report.sections.push(dups);
    if let Some(c) = conflicts {
        report.sections.push(c);
    }
    if let Some(r) = &opts.run {
        report.sections.push(match &run {
            Some(model) => label_issues::section(&data, model, opts.folds, opts.batch_size)?,
            None => label_issues::not_ranked(r, opts.task, opts.multi_label),
        });
    }
    Ok(report)
}

fn check_options(opts: &InspectOptions) -> Result<()> {
    if opts.task == TextTaskKind::Sft {
        bail!("--task sft: suite inspect text checks classify, ner and qa data");
    }
    if opts.max_len < 8 {
        bail!("--max-len {}: expected at least 8 tokens", opts.max_len);
    }
    if !(opts.near_jaccard > 0.0 && opts.near_jaccard <= 1.0) {
        bail!("--near-jaccard {}: expected a similarity in (0, 1]", opts.near_jaccard);
    }
    if opts.task == TextTaskKind::Qa && (opts.doc_stride == 0 || opts.doc_stride >= opts.max_len) {
        bail!(
            "text.doc_stride = {}: expected 1 ..< max_len ({}), as suite finetune text requires",
            opts.doc_stride,
            opts.max_len
        );
    }
    if opts.run.is_some() && opts.folds < 2 {
        bail!("--folds {}: cross-validation needs at least 2 folds", opts.folds);
    }
    if opts.splits.is_empty() {
        bail!("no data: pass --data FILE");
    }
    Ok(())
}
