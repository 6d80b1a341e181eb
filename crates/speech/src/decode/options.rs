//! What a decoding run is asked to do, and what it returns.

use anyhow::{bail, Result};

use crate::tokenizer::Task;

/// Options of [`super::transcribe_batch`] and [`super::transcribe_long`], after OpenAI's `DecodingOptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Language code (`en`, `de`, …); `None` detects it from the audio (per window item in a batch).
    pub language: Option<String>,
    /// Transcribe, or translate into English.
    pub task: Task,
    /// 1 for greedy decoding, more for beam search with that many beams.
    pub beam_size: usize,
    /// Ranking of finished beams: `None` divides the summed log-probability by the length (OpenAI's default);
    /// `Some(a)` divides it by the Google NMT penalty `((5 + len) / 6)^a`.
    pub length_penalty: Option<f64>,
    /// Most tokens generated after the prompt (capped by the decoder's 448 positions).
    pub max_new_tokens: usize,
    /// Token ids never generated, on top of the model's own `suppress_tokens` and the special and timestamp
    /// tokens that have no place in a no-timestamps transcript.
    pub suppress_tokens: Vec<i64>,
    /// Forbid the model's `begin_suppress_tokens` (a lone space and `<|endoftext|>`) as the first token.
    pub suppress_blank: bool,
}

impl Default for DecodeOptions {
    /// Greedy transcription with language detection, up to 224 new tokens (OpenAI's `sample_len`), blank
    /// suppressed.
    fn default() -> Self {
        Self {
            language: None,
            task: Task::Transcribe,
            beam_size: 1,
            length_penalty: None,
            max_new_tokens: 224,
            suppress_tokens: Vec::new(),
            suppress_blank: true,
        }
    }
}

impl DecodeOptions {
    /// Checks the numbers; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.beam_size == 0 {
            bail!("beam_size = 0: expected 1 (greedy) or more (beam search)");
        }
        if self.max_new_tokens == 0 {
            bail!("max_new_tokens = 0: expected at least 1");
        }
        if let Some(a) = self.length_penalty {
            if !a.is_finite() {
                bail!("length_penalty = {a}: expected a finite number");
            }
        }
        Ok(())
    }
}

/// One decoded audio item (or long recording).
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The text, without special tokens and surrounding spaces.
    pub text: String,
    /// The language code it was decoded in (given or detected).
    pub language: String,
    /// Generated token ids, without the prompt and the final `<|endoftext|>`.
    pub tokens: Vec<i64>,
    /// Summed log-probability of the tokens and the final `<|endoftext|>`, divided by their number (OpenAI's
    /// `avg_logprob`, used for its fallback thresholds).
    pub avg_logprob: f64,
}
