use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What the decoder is trained and asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpeechTaskKind {
    /// Speech → text in the spoken language.
    #[default]
    Transcribe,
    /// Speech → English text.
    Translate,
}

impl std::str::FromStr for SpeechTaskKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "transcribe" => Ok(Self::Transcribe),
            "translate" => Ok(Self::Translate),
            _ => Err(format!("task {s:?}: expected transcribe or translate")),
        }
    }
}

impl From<SpeechTaskKind> for crate::tokenizer::Task {
    fn from(t: SpeechTaskKind) -> Self {
        match t {
            SpeechTaskKind::Transcribe => crate::tokenizer::Task::Transcribe,
            SpeechTaskKind::Translate => crate::tokenizer::Task::Translate,
        }
    }
}

/// Which text normaliser WER/CER are computed after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Normalizer {
    /// English normaliser when every evaluated example is English, else the basic one.
    #[default]
    Auto,
    /// Whisper's EnglishTextNormalizer.
    English,
    /// Whisper's BasicTextNormalizer (case, punctuation, whitespace).
    Basic,
}

/// The `[speech]` table of a task recipe: model, data and options of a Whisper fine-tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// `whisper-base` (offline asset), `whisper-small`…, a hub id, or a local folder (hub or CTranslate2 layout).
    pub model: String,
    /// Training manifest (JSONL/CSV/TSV), audiofolder or Common Voice folder.
    pub data: Option<PathBuf>,
    /// Validation data; else `val_split` of the training data is held out.
    pub val_data: Option<PathBuf>,
    /// Fraction held out for validation when there is no validation data.
    pub val_split: f64,
    /// Language code for rows without one (and for decoding during evaluation); None: rows must say.
    pub language: Option<String>,
    /// `transcribe` or `translate`.
    pub task: SpeechTaskKind,
    /// Train only the decoder.
    pub freeze_encoder: bool,
    /// SpecAugment (time and frequency masking) on training features.
    pub spec_augment: bool,
    /// Beam size of the decoding done at evaluation (1 = greedy).
    pub eval_beam: usize,
    /// Longest transcript in tokens, prompt included (Whisper's limit is 448).
    pub max_label_tokens: usize,
    /// Normaliser applied before WER/CER.
    pub normalizer: Normalizer,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            model: "whisper-base".into(),
            data: None,
            val_data: None,
            val_split: 0.1,
            language: None,
            task: SpeechTaskKind::Transcribe,
            freeze_encoder: false,
            spec_augment: false,
            eval_beam: 1,
            max_label_tokens: 448,
            normalizer: Normalizer::Auto,
        }
    }
}

impl SpeechConfig {
    /// Checks ranges, naming the offending `speech.*` field.
    pub fn validate(&self) -> Result<()> {
        if self.data.is_none() {
            bail!("speech.data is not set: pass --data MANIFEST");
        }
        if !(0.0..1.0).contains(&self.val_split) {
            bail!("speech.val_split = {}: expected a fraction in [0, 1)", self.val_split);
        }
        if self.eval_beam == 0 {
            bail!("speech.eval_beam must be at least 1");
        }
        if !(8..=448).contains(&self.max_label_tokens) {
            bail!("speech.max_label_tokens = {}: expected 8 ..= 448", self.max_label_tokens);
        }
        Ok(())
    }
}
