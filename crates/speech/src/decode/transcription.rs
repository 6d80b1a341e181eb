//! What timestamped long-form transcription is asked to do ([`TranscribeOptions`]) and what it returns
//! ([`Transcription`] of [`Segment`]s), after openai-whisper's `transcribe()` arguments and result.

use anyhow::{bail, Result};
use serde::Serialize;

use super::words::Word;
use crate::tokenizer::Task;

/// Options of [`super::transcribe_timed`], with openai-whisper's `transcribe()` defaults (greedy at temperature 0).
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// Language code (`en`, `de`, …); `None` detects it on the first window of each recording.
    pub language: Option<String>,
    /// Transcribe, or translate into English.
    pub task: Task,
    /// Beams at temperature 0 (1 = greedy).
    pub beam_size: usize,
    /// Samples drawn at a temperature above 0; the most likely one is kept.
    pub best_of: usize,
    /// The fallback ladder: a window is decoded at the first temperature, and again at the next one while the
    /// result fails the thresholds below.
    pub temperatures: Vec<f64>,
    /// Falls back when the zlib compression ratio of the text is above this (repetitive output).
    pub compression_ratio_threshold: Option<f64>,
    /// Falls back when the average log-probability of the tokens is below this.
    pub logprob_threshold: Option<f64>,
    /// A window whose `<|nospeech|>` probability is above this, and whose average log-probability is at most
    /// `logprob_threshold`, is silence: skipped without segments.
    pub no_speech_threshold: Option<f64>,
    /// Prompt each window with the text of the previous ones (`<|startofprev|>` + their last 223 tokens); the
    /// prompt is reset after a window decoded above temperature 0.5.
    pub condition_on_previous_text: bool,
    /// Text put before the first window's prompt (spelling, names, style).
    pub initial_prompt: Option<String>,
    /// Seed of the sampling at temperatures above 0; with a window's start and the temperature's rank it fixes
    /// the draws, so a recording gets the same result alone or in any batch.
    pub seed: u64,
    /// Word timestamps and probabilities from the cross-attention alignment (openai-whisper's and faster-whisper's
    /// `word_timestamps=True`): each segment gets its words, segment times follow the words, and a window that did
    /// not end on a timestamp is followed from its last word's end, as there.
    pub word_timestamps: bool,
}

impl Default for TranscribeOptions {
    /// openai-whisper's `transcribe()` defaults: language detected, greedy (beam 1), best of 5 when sampling,
    /// temperatures 0, 0.2, …, 1.0, thresholds 2.4 / -1.0 / 0.6, conditioned on the previous text.
    fn default() -> Self {
        Self {
            language: None,
            task: Task::Transcribe,
            beam_size: 1,
            best_of: 5,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            initial_prompt: None,
            seed: 0,
            word_timestamps: false,
        }
    }
}

impl TranscribeOptions {
    /// The fallback ladder that starts at `start`: `start`, `start + 0.2`, … up to 1.0 (just `start` above 1), as
    /// openai-whisper's CLI builds it from `--temperature` and `--temperature_increment_on_fallback 0.2`, and as
    /// OpenAI's API reads its `temperature` field (0 = fall back automatically).
    pub fn fallback_temperatures(start: f64) -> Vec<f64> {
        let steps = if start <= 1.0 { ((1.0 - start) / 0.2 + 1e-6).floor().max(0.0) as usize } else { 0 };
        // Counted, not summed, and rounded, so that 0.6 comes out as 0.6 and not 0.6000000000000001.
        (0..=steps).map(|i| ((start + 0.2 * i as f64) * 1e6).round() / 1e6).collect()
    }

    /// Checks the numbers; an error names the field and what was expected.
    pub fn validate(&self) -> Result<()> {
        if self.beam_size == 0 {
            bail!("beam_size = 0: expected 1 (greedy) or more (beam search)");
        }
        if self.best_of == 0 {
            bail!("best_of = 0: expected at least 1 sample per temperature");
        }
        if self.temperatures.is_empty() {
            bail!("temperatures is empty: expected at least one temperature (0 for greedy decoding)");
        }
        for &t in &self.temperatures {
            if !t.is_finite() || t < 0.0 {
                bail!("temperature = {t}: expected a finite number ≥ 0");
            }
        }
        for (name, v) in [
            ("compression_ratio_threshold", self.compression_ratio_threshold),
            ("logprob_threshold", self.logprob_threshold),
            ("no_speech_threshold", self.no_speech_threshold),
        ] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                bail!("{name} = {v}: expected a finite number (or none to turn the test off)");
            }
        }
        Ok(())
    }
}

/// One timed piece of a transcript, as openai-whisper's result segments and OpenAI's `verbose_json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Position in the recording's segments, from 0.
    pub id: usize,
    /// First mel frame (10 ms each) of the 30-s window it was decoded in.
    pub seek: usize,
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// The text, with Whisper's leading space.
    pub text: String,
    /// Its tokens, timestamp tokens included.
    pub tokens: Vec<i64>,
    /// The temperature of the decode that produced it.
    pub temperature: f64,
    /// Average log-probability of the window's tokens (and `<|endoftext|>`).
    pub avg_logprob: f64,
    /// zlib compression ratio of the window's text.
    pub compression_ratio: f64,
    /// Probability of `<|nospeech|>` after `<|startoftranscript|>` in the window.
    pub no_speech_prob: f64,
    /// Its words, with word timestamps on (`None` otherwise, and then not serialised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
}

/// A transcribed recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcription {
    /// The language code it was decoded in (given or detected).
    pub language: String,
    /// Length of the audio in seconds.
    pub duration: f64,
    /// The segments' texts joined, without surrounding spaces.
    pub text: String,
    /// The timed segments, in order.
    pub segments: Vec<Segment>,
}
