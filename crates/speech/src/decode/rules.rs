//! The logit filters of timestamped decoding, on the host, one row at a time: token suppression and OpenAI's
//! timestamp rules (openai-whisper's `SuppressBlank`, `SuppressTokens` and `ApplyTimestampRules`, as CTranslate2
//! applies them for faster-whisper).

use anyhow::{bail, Result};

use crate::models::Whisper;
use crate::tokenizer::WhisperTokenizer;

/// Seconds per timestamp token.
pub(crate) const TIME_PRECISION: f64 = 0.02;

/// The latest first timestamp, in seconds (openai-whisper's `max_initial_timestamp`).
const MAX_INITIAL_TIMESTAMP: f64 = 1.0;

/// Which tokens may come next, given the tokens sampled so far.
pub(crate) struct TimestampRules {
    eot: i64,
    no_timestamps: i64,
    timestamp_begin: i64,
    vocab: usize,
    max_initial: i64,
    /// Never generated: the model's non-speech tokens and the prompt's special tokens.
    suppressed: Vec<bool>,
    /// Also barred at the first position (a lone space, `<|endoftext|>`).
    begin_suppressed: Vec<i64>,
}

impl TimestampRules {
    /// The rules of `model` and `tok`: its `suppress_tokens` plus `<|transcribe|>`, `<|translate|>`,
    /// `<|startoftranscript|>`, `<|startofprev|>`, `<|startoflm|>` and `<|nospeech|>` suppressed (as faster-whisper's
    /// default `suppress_tokens=[-1]`), `begin_suppress_tokens` at the first position, the first timestamp at most
    /// 1.0 s.
    pub(crate) fn new(model: &Whisper, tok: &WhisperTokenizer) -> Result<Self> {
        let vocab = model.config.vocab_size;
        let timestamp_begin = tok.timestamp_begin();
        // 1501 timestamps: <|0.00|> … <|30.00|>.
        if vocab < timestamp_begin + 1501 {
            bail!(
                "the model's vocabulary ({vocab}) has no room for the 1501 timestamp tokens after <|notimestamps|> = {}",
                tok.no_timestamps()
            );
        }
        let mut ids: Vec<i64> = model.config.suppress_tokens.clone();
        ids.extend([tok.transcribe(), tok.translate(), tok.sot()]);
        ids.extend(tok.start_of_prev());
        ids.extend(tok.start_of_lm());
        ids.extend(tok.no_speech());
        let mut suppressed = vec![false; vocab as usize];
        for id in ids.into_iter().filter(|id| (0..vocab).contains(id)) {
            suppressed[id as usize] = true;
        }
        let begin_suppressed =
            model.config.begin_suppress_tokens.iter().copied().filter(|id| (0..vocab).contains(id)).collect();
        Ok(Self {
            eot: tok.eot(),
            no_timestamps: tok.no_timestamps(),
            timestamp_begin,
            vocab: vocab as usize,
            max_initial: timestamp_begin + (MAX_INITIAL_TIMESTAMP / TIME_PRECISION).round() as i64,
            suppressed,
            begin_suppressed,
        })
    }

    /// `<|0.00|>`.
    pub(crate) fn timestamp_begin(&self) -> i64 {
        self.timestamp_begin
    }

    /// Turns one row of logits (`vocab` wide) into log-probabilities over the tokens allowed after `sampled` (the
    /// tokens generated so far, without the prompt); barred tokens get −∞.
    pub(crate) fn log_probs(&self, logits: &[f32], sampled: &[i64]) -> Vec<f64> {
        let mut x: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let ninf = f64::NEG_INFINITY;
        for (v, &s) in x.iter_mut().zip(&self.suppressed) {
            if s {
                *v = ninf;
            }
        }
        let tb = self.timestamp_begin as usize;
        let eot = self.eot as usize;
        x[self.no_timestamps as usize] = ninf;
        if sampled.is_empty() {
            for &id in &self.begin_suppressed {
                x[id as usize] = ninf;
            }
            // The first token is a timestamp, and an early one.
            x[..tb].fill(ninf);
            x[(self.max_initial + 1) as usize..].fill(ninf);
        } else {
            let n = sampled.len();
            let last_was_timestamp = sampled[n - 1] >= self.timestamp_begin;
            let penultimate_was_timestamp = n < 2 || sampled[n - 2] >= self.timestamp_begin;
            if last_was_timestamp {
                if penultimate_was_timestamp {
                    // A pair is closed: text (or the end) must follow.
                    x[tb..].fill(ninf);
                } else {
                    // A segment ended: its closing timestamp pairs up, or the transcript ends.
                    x[..eot].fill(ninf);
                }
            }
            // Timestamps do not go back. (CTranslate2's rule, which faster-whisper uses: a timestamp equal to the
            // last one stays allowed; openai-whisper bars it when it would open a new segment.)
            if let Some(&last) = sampled.iter().rev().find(|&&t| t >= self.timestamp_begin) {
                x[tb..last as usize].fill(ninf);
            }
        }
        // When the timestamps together are more likely than any single other token, a timestamp it is. Both sides
        // of that comparison are log-probabilities with the same normaliser, which cancels: the logits decide, and
        // the row is normalised once (one pass of exponentials over the vocabulary, the cost of this filter).
        let timestamp_lse = log_sum_exp(&x[tb..]);
        let max_text = x[..tb].iter().copied().fold(ninf, f64::max);
        if timestamp_lse > max_text {
            x[..tb].fill(ninf);
        }
        let z = log_sum_exp(&x);
        for v in &mut x {
            *v -= z;
        }
        x
    }

    /// Width of a row of logits.
    pub(crate) fn vocab(&self) -> usize {
        self.vocab
    }
}

/// `log(Σ exp(x))`, −∞ for an empty or all −∞ slice.
fn log_sum_exp(x: &[f64]) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    // Barred entries (−∞) add nothing; skipping them saves their exponentials.
    max + x.iter().filter(|v| **v != f64::NEG_INFINITY).map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The index of the largest value (the first of equal ones).
pub(crate) fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// zlib compression ratio of `text`'s UTF-8 bytes (openai-whisper's `compression_ratio`, `len / len(zlib.compress)`
/// at the default level): high for repetitive text.
pub(crate) fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    let Ok(len) = libz_sys::uLong::try_from(bytes.len()) else { return 1.0 };
    // SAFETY: `compressBound` is a pure function of the length.
    let bound = unsafe { libz_sys::compressBound(len) };
    let mut out = vec![0u8; bound as usize];
    let mut out_len = bound;
    // SAFETY: `out` holds `out_len` writable bytes (zlib's bound for `len` input bytes) and `bytes` holds `len`
    // readable ones; zlib reads and writes nothing else and keeps no pointer after the call.
    let rc = unsafe {
        libz_sys::compress2(out.as_mut_ptr(), &mut out_len, bytes.as_ptr(), len, libz_sys::Z_DEFAULT_COMPRESSION)
    };
    if rc != libz_sys::Z_OK || out_len == 0 {
        return 1.0;
    }
    bytes.len() as f64 / out_len as f64
}
