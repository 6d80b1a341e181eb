//! Long recordings: consecutive 30-second windows, transcribed in order and joined.

use anyhow::Result;

use super::options::{DecodeOptions, Transcript};
use super::search::transcribe_batch;
use crate::audio::{windows, LogMel};
use crate::models::Whisper;
use crate::tokenizer::WhisperTokenizer;

/// Windows encoded together: bounds memory (encoder states and beams) on long files.
const WINDOWS_PER_BATCH: usize = 8;

/// Transcribes 16 kHz mono audio of any length: cut into consecutive windows of the extractor's length (30 s),
/// decoded in batches with `opts`, texts joined with a space. Without a language in `opts`, it is detected on the
/// first window and used for all (as OpenAI's `transcribe` does).
///
/// Windows are cut at fixed points, not at the word boundaries that timestamp-guided seeking finds, so a word
/// straddling a boundary may be lost or split.
pub fn transcribe_long(
    model: &Whisper,
    tok: &WhisperTokenizer,
    samples_16k: &[f32],
    mel: &LogMel,
    opts: &DecodeOptions,
) -> Result<Transcript> {
    opts.validate()?;
    let pieces = windows(samples_16k, mel.config().n_samples);
    let mut opts = opts.clone();
    let mut texts = Vec::new();
    let mut tokens = Vec::new();
    let (mut logprob_sum, mut logprob_count) = (0.0, 0usize);
    let mut language = opts.language.clone().unwrap_or_default();
    // Without a language, the first window is decoded alone, and its detected language is used for the rest.
    let first = if opts.language.is_none() { 1 } else { 0 };
    let batches =
        pieces[..first.min(pieces.len())].chunks(1).chain(pieces[first.min(pieces.len())..].chunks(WINDOWS_PER_BATCH));
    for batch in batches {
        let features = mel.batch(batch).to_device(model.device());
        let results = transcribe_batch(model, tok, &features, &opts)?;
        for t in results {
            if opts.language.is_none() {
                language = t.language.clone();
                opts.language = Some(t.language.clone());
            }
            logprob_sum += t.avg_logprob * (t.tokens.len() + 1) as f64;
            logprob_count += t.tokens.len() + 1;
            if !t.text.is_empty() {
                texts.push(t.text);
            }
            tokens.extend(t.tokens);
        }
    }
    let avg_logprob = if logprob_count == 0 { 0.0 } else { logprob_sum / logprob_count as f64 };
    Ok(Transcript { text: texts.join(" "), language, tokens, avg_logprob })
}
