use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::data::SubwordLabels;

/// Which head is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextTaskKind {
    /// Sequence classification (single texts or pairs; multi-label with `multi_label`).
    #[default]
    Classify,
    /// Token classification (named entities).
    Ner,
    /// Extractive question answering (SQuAD).
    Qa,
    /// Supervised fine-tuning of a decoder-only language model (chat, prompt/completion, Alpaca or plain text).
    Sft,
}

impl std::str::FromStr for TextTaskKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "classify" | "classification" => Ok(Self::Classify),
            "ner" | "token-classification" => Ok(Self::Ner),
            "qa" | "question-answering" => Ok(Self::Qa),
            "sft" | "causal-lm" | "text-generation" => Ok(Self::Sft),
            _ => Err(format!("task {s:?}: expected classify, ner, qa or sft")),
        }
    }
}

/// How sub-word tokens of a word are labelled in NER (serialised form of [`SubwordLabels`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SubwordMode {
    /// Only the first sub-word carries the word's label (the others are ignored by the loss), as HF `run_ner.py`.
    #[default]
    First,
    /// Every sub-word carries it.
    All,
}

impl From<SubwordMode> for SubwordLabels {
    fn from(m: SubwordMode) -> Self {
        match m {
            SubwordMode::First => SubwordLabels::First,
            SubwordMode::All => SubwordLabels::All,
        }
    }
}

/// Where an SFT model's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SftInit {
    /// The model folder's weights.
    #[default]
    Pretrained,
    /// Random weights from the folder's config.json (pretraining a new model).
    Scratch,
}

impl std::str::FromStr for SftInit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pretrained" => Ok(Self::Pretrained),
            "scratch" | "random" => Ok(Self::Scratch),
            _ => Err(format!("init {s:?}: expected pretrained or scratch")),
        }
    }
}

/// Column names of CSV/TSV/JSONL classification data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// The text column.
    pub text: String,
    /// The second text of a pair, when the data has it.
    pub text_pair: Option<String>,
    /// The label column.
    pub label: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self { text: "text".into(), text_pair: None, label: "label".into() }
    }
}

/// The `[text]` table of a task recipe: model, data and task settings of a text fine-tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    /// `classify`, `ner`, `qa` or `sft`.
    pub task: TextTaskKind,
    /// A registry name (`all-MiniLM-L6-v2`, `bert-base-uncased`…), a local hub-layout folder or a hub id.
    pub model: String,
    /// Training data: CSV/TSV/JSONL (classify), CoNLL or JSONL (ner), SQuAD JSON (qa).
    pub data: Option<PathBuf>,
    /// Validation data; else `val_split` of the training data is held out.
    pub val_data: Option<PathBuf>,
    /// Fraction held out for validation when there is no validation data.
    pub val_split: f64,
    /// Tokens per sequence (window length for QA), special tokens included.
    pub max_len: usize,
    /// Classification: several labels per text (sigmoid + binary cross-entropy).
    pub multi_label: bool,
    /// Classification: columns of CSV/TSV/JSONL data.
    pub columns: Columns,
    /// NER: which sub-words carry labels.
    pub subword_labels: SubwordMode,
    /// NER: score entities in seqeval's strict mode with the data's tag scheme (default: seqeval's default mode).
    pub strict: bool,
    /// QA: overlap in tokens between consecutive windows of a long context.
    pub doc_stride: usize,
    /// QA: longest answer, in tokens.
    pub max_answer_len: usize,
    /// QA: candidate spans kept per question.
    pub n_best: usize,
    /// QA: SQuAD v2 — questions may have no answer.
    pub version_2: bool,
    /// QA (v2): predict no answer when the null score beats the best span by more than this.
    pub null_threshold: f64,
    /// Learning-rate multiplier of the pretrained encoder relative to the new head.
    pub encoder_lr_mult: f64,
    /// Label smoothing of the classification cross-entropy.
    pub label_smoothing: f64,
    /// SFT: start from the model's weights or from random weights built from its config.json.
    pub init: SftInit,
    /// SFT: pack several examples into each row of `max_len` tokens (attention stays inside each example).
    pub packing: bool,
    /// SFT: held-out prompts answered greedily at each evaluation for `exact_match` and `rouge_l` (0: none).
    pub eval_generate: usize,
    /// SFT: a system message put in front of every conversation that has none.
    pub system_prompt: Option<String>,
    /// SFT: recompute each decoder layer's activations in the backward pass instead of keeping them, for about a
    /// third more compute and a fraction of the activation memory (Llama and Qwen2 models).
    pub gradient_checkpointing: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            task: TextTaskKind::Classify,
            model: crate::models::DEFAULT_TEXT_MODEL.into(),
            data: None,
            val_data: None,
            val_split: 0.1,
            max_len: 128,
            multi_label: false,
            columns: Columns::default(),
            subword_labels: SubwordMode::First,
            strict: false,
            doc_stride: 128,
            max_answer_len: 30,
            n_best: 20,
            version_2: false,
            null_threshold: 0.0,
            encoder_lr_mult: 1.0,
            label_smoothing: 0.0,
            init: SftInit::Pretrained,
            packing: true,
            eval_generate: 64,
            system_prompt: None,
            gradient_checkpointing: false,
        }
    }
}

impl TextConfig {
    /// Checks ranges, naming the offending `text.*` field.
    pub fn validate(&self) -> Result<()> {
        if self.data.is_none() {
            bail!("text.data is not set: pass --data FILE");
        }
        if !(0.0..1.0).contains(&self.val_split) {
            bail!("text.val_split = {}: expected a fraction in [0, 1)", self.val_split);
        }
        if self.max_len < 8 {
            bail!("text.max_len = {}: expected at least 8 tokens", self.max_len);
        }
        if self.task == TextTaskKind::Qa {
            if self.doc_stride == 0 || self.doc_stride >= self.max_len {
                // The default stride (128) suits the default windows; a user who shortens them meets this first.
                bail!(
                    "text.doc_stride = {}: expected 1 ..< max_len ({}); pass --doc-stride N below --max-len",
                    self.doc_stride,
                    self.max_len
                );
            }
            if self.max_answer_len == 0 || self.n_best == 0 {
                bail!("text.max_answer_len and text.n_best must be at least 1");
            }
        }
        if self.task != TextTaskKind::Sft && self.init != SftInit::Pretrained {
            bail!("text.init = \"scratch\" applies to the sft task only");
        }
        if self.gradient_checkpointing && self.task != TextTaskKind::Sft {
            bail!("text.gradient_checkpointing applies to the sft task only");
        }
        if self.multi_label && self.task != TextTaskKind::Classify {
            bail!("text.multi_label applies to classification only");
        }
        if !(self.encoder_lr_mult > 0.0 && self.encoder_lr_mult.is_finite()) {
            bail!("text.encoder_lr_mult = {}: expected a positive number", self.encoder_lr_mult);
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!("text.label_smoothing = {}: expected a value in [0, 1)", self.label_smoothing);
        }
        Ok(())
    }
}
