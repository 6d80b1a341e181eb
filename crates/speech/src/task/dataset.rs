//! Labelled clips as training batches: Whisper log-mel features and teacher-forcing token rows.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use suite_core::data::{Dataset, SampleRng};
use tch::{Kind, Tensor};

use super::config::{SpeechConfig, SpeechTaskKind};
use crate::audio::{load_audio, LogMel, MelConfig};
use crate::data::SpeechExample;
use crate::tokenizer::WhisperTokenizer;

/// Label value the loss ignores (prompt positions and padding), as PyTorch's `ignore_index` default.
pub const IGNORE_INDEX: i64 = -100;

/// One utterance with its language resolved and its token row built.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledClip {
    /// The audio file.
    pub audio: PathBuf,
    /// The transcript (or translation target) as written in the manifest.
    pub text: String,
    /// Language code of the audio.
    pub language: String,
    /// `<|startoftranscript|><|lang|><|task|><|notimestamps|>` + text tokens + `<|endoftext|>`, truncated.
    pub tokens: Vec<i64>,
    /// How many leading tokens are the prompt (never predicted by the loss).
    pub prompt_len: usize,
}

/// Resolves each row's language (the row's, else `cfg.language`) and builds its token row. Errors name the data
/// source and the row: a row without a language when the job gives none, or a language the tokenizer does not
/// know.
pub fn labelled_clips(
    examples: &[SpeechExample],
    source: &Path,
    tok: &WhisperTokenizer,
    cfg: &SpeechConfig,
) -> Result<Vec<LabelledClip>> {
    let mut out = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let row = || format!("{}: row {} ({})", source.display(), i + 1, ex.audio.display());
        let language = match (&ex.language, &cfg.language) {
            (Some(l), _) if !l.trim().is_empty() => l.trim().to_string(),
            (_, Some(l)) => l.clone(),
            _ => bail!("{}: no language: add a \"language\" field to the row or pass --language CODE", row()),
        };
        let prompt = tok.prompt(&language, cfg.task.into()).with_context(|| format!("{}: language", row()))?;
        let text = tok.encode_text(ex.text.trim()).with_context(row)?;
        let mut tokens = prompt.clone();
        tokens.extend(text);
        tokens.push(tok.eot());
        // A transcript longer than the decoder allows is cut: the rest of it cannot be taught anyway.
        tokens.truncate(cfg.max_label_tokens);
        out.push(LabelledClip {
            audio: ex.audio.clone(),
            text: ex.text.clone(),
            language,
            tokens,
            prompt_len: prompt.len(),
        });
    }
    Ok(out)
}

/// The clips of a speech job; items are decoded and turned into log-mels on the loader's worker threads.
#[derive(Debug)]
pub struct SpeechDataset {
    clips: Vec<LabelledClip>,
    n_mels: i64,
    pad_id: i64,
    task: SpeechTaskKind,
}

/// One decoded clip.
#[derive(Debug)]
pub struct SpeechItem {
    mel: Tensor,
    frames: i64,
    index: usize,
}

/// A collated batch.
#[derive(Debug)]
pub struct SpeechBatch {
    /// Log-mel features `[b, n_mels, 3000]` (Float, CPU).
    pub mel: Tensor,
    /// Frames of real audio per row (the rest is padding), for time masking.
    pub frames: Vec<i64>,
    /// Decoder input: every token of the row but the last, padded with `<|endoftext|>`; Int64 `[b, t]`.
    pub tokens: Tensor,
    /// The next token at each position; [`IGNORE_INDEX`] on prompt positions and padding; Int64 `[b, t]`.
    pub labels: Tensor,
    /// Dataset indices of the rows.
    pub index: Vec<usize>,
    /// Transcripts, as written in the data.
    pub references: Vec<String>,
    /// Language codes.
    pub languages: Vec<String>,
    /// Audio files.
    pub audio: Vec<PathBuf>,
}

impl SpeechDataset {
    /// A dataset over `clips` for a model with `n_mels` mel bins; `pad_id` fills decoder rows (Whisper's
    /// `pad_token_id`, `<|endoftext|>`).
    pub fn new(clips: Vec<LabelledClip>, n_mels: i64, pad_id: i64, task: SpeechTaskKind) -> Self {
        Self { clips, n_mels, pad_id, task }
    }

    /// The clips, in index order.
    pub fn clips(&self) -> &[LabelledClip] {
        &self.clips
    }

    /// Transcribe or translate.
    pub fn task(&self) -> SpeechTaskKind {
        self.task
    }
}

impl Dataset for SpeechDataset {
    type Item = SpeechItem;
    type Batch = SpeechBatch;

    fn len(&self) -> usize {
        self.clips.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<SpeechItem> {
        let clip = &self.clips[index];
        let samples = load_audio(&clip.audio)?;
        // The filter bank holds tensors, which cannot be shared between worker threads; building it is cheap next
        // to the STFT.
        let mel = LogMel::new(MelConfig::whisper(self.n_mels));
        let window = mel.config().n_samples;
        if samples.len() > window {
            bail!(
                "{}: {:.1} s of audio, longer than Whisper's 30-s window: split it into shorter clips for training",
                clip.audio.display(),
                samples.len() as f64 / 16_000.0
            );
        }
        let hop = mel.config().hop_length as usize;
        let frames = (samples.len().div_ceil(hop) as i64).min(mel.config().n_frames());
        Ok(SpeechItem { mel: mel.features(&samples), frames, index })
    }

    fn collate(&self, items: Vec<SpeechItem>) -> Result<SpeechBatch> {
        let t = items.iter().map(|it| self.clips[it.index].tokens.len().saturating_sub(1)).max().unwrap_or(0).max(1);
        let b = items.len();
        let mut tokens = vec![self.pad_id; b * t];
        let mut labels = vec![IGNORE_INDEX; b * t];
        for (row, it) in items.iter().enumerate() {
            let clip = &self.clips[it.index];
            for (j, pair) in clip.tokens.windows(2).enumerate() {
                tokens[row * t + j] = pair[0];
                // Position j predicts token j + 1; the prompt's own tokens (positions before its last) are given.
                if j + 1 >= clip.prompt_len {
                    labels[row * t + j] = pair[1];
                }
            }
        }
        let mels: Vec<&Tensor> = items.iter().map(|it| &it.mel).collect();
        Ok(SpeechBatch {
            mel: Tensor::stack(&mels, 0),
            frames: items.iter().map(|it| it.frames).collect(),
            tokens: Tensor::from_slice(&tokens).view([b as i64, t as i64]).to_kind(Kind::Int64),
            labels: Tensor::from_slice(&labels).view([b as i64, t as i64]),
            index: items.iter().map(|it| it.index).collect(),
            references: items.iter().map(|it| self.clips[it.index].text.clone()).collect(),
            languages: items.iter().map(|it| self.clips[it.index].language.clone()).collect(),
            audio: items.iter().map(|it| self.clips[it.index].audio.clone()).collect(),
        })
    }
}
