//! The per-step logits processing of transformers' `generate` and the choice of the next token.
//!
//! The processors are written as transformers writes them (`generation/logits_process.py`), on a `[batch, vocab]`
//! tensor of scores, so that they give the same numbers: [`repetition_penalty`] (`RepetitionPenaltyLogitsProcessor`),
//! then, when sampling, [`temperature`], [`top_k`] and [`top_p`] (`TemperatureLogitsWarper`, `TopKLogitsWarper`,
//! `TopPLogitsWarper`), in the order `generate` applies them.
//!
//! Sampling draws from each sequence's own ChaCha20 generator rather than from torch's global one: a request's
//! tokens then depend on its seed only, not on which other requests share its batch.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tch::{Device, Kind, Tensor};

/// How the next token is chosen. The defaults change nothing: temperature 1, no top-k, top-p 1, no penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Divides the scores before sampling; 0 means greedy decoding (the most likely token, no randomness).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens; 0 keeps all (transformers' `GenerationConfig` defaults to 50,
    /// OpenAI's API has no top-k: callers that want transformers' behaviour pass 50).
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to at least `top_p` (at least one
    /// token); 1 keeps all.
    pub top_p: f64,
    /// Penalises tokens already in the sequence (prompt included): positive scores are divided by it, negative
    /// ones multiplied (the CTRL paper's rule as transformers applies it); 1 is off.
    pub repetition_penalty: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0 }
    }
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..Default::default() }
    }

    /// Whether the next token is the most likely one rather than a draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the ranges; the message names the parameter as a user writes it.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!("temperature must be a finite number ≥ 0 (0 = greedy), got {}", self.temperature);
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("top_p must be in (0, 1], got {}", self.top_p);
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            bail!("repetition_penalty must be a finite number > 0 (1 = off), got {}", self.repetition_penalty);
        }
        Ok(())
    }
}

/// `RepetitionPenaltyLogitsProcessor`: for each row, the scores of the tokens in `seen[row]` (duplicates allowed)
/// are divided by `penalty` when positive and multiplied by it when negative.
pub fn repetition_penalty<S: AsRef<[i64]>>(scores: &Tensor, seen: &[S], penalty: f64) -> Tensor {
    let (batch, _) = scores.size2().expect("scores are [batch, vocab]");
    assert_eq!(batch as usize, seen.len(), "one list of seen tokens per row of scores");
    if penalty == 1.0 {
        return scores.shallow_clone();
    }
    let rows: Vec<Tensor> = seen
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let row = scores.get(i as i64).unsqueeze(0);
            let ids = ids.as_ref();
            if ids.is_empty() {
                return row;
            }
            let index = Tensor::from_slice(ids).to_device(scores.device()).unsqueeze(0);
            let score = row.gather(1, &index, false);
            let penalised = (&score * penalty).where_self(&score.lt(0.0), &(&score / penalty));
            row.scatter(1, &index, &penalised)
        })
        .collect();
    Tensor::cat(&rows, 0)
}

/// `TemperatureLogitsWarper`: the scores divided by `temperature` (> 0).
pub fn temperature(scores: &Tensor, temperature: f64) -> Tensor {
    assert!(temperature > 0.0, "temperature 0 is greedy decoding, not a warper");
    scores / temperature
}

/// `TopKLogitsWarper`: scores below the k-th largest of their row become -inf (ties with it are kept).
pub fn top_k(scores: &Tensor, k: usize) -> Tensor {
    let vocab = *scores.size().last().expect("scores have a vocabulary axis");
    // transformers keeps at least one token (`min_tokens_to_keep`) and at most the vocabulary.
    let k = (k.max(1) as i64).min(vocab);
    let (values, _) = scores.topk(k, -1, true, true);
    let kth = values.narrow(-1, k - 1, 1);
    scores.masked_fill(&scores.lt_tensor(&kth), f64::NEG_INFINITY)
}

/// `TopPLogitsWarper`: in each row, the least likely tokens whose probabilities sum to at most `1 - top_p` become
/// -inf; the most likely token always stays.
pub fn top_p(scores: &Tensor, top_p: f64) -> Tensor {
    let (sorted, indices) = scores.sort(-1, false);
    let cumulative = sorted.softmax(-1, sorted.kind()).cumsum(-1, sorted.kind());
    let remove_sorted = cumulative.le(1.0 - top_p);
    let vocab = *scores.size().last().expect("scores have a vocabulary axis");
    // Ascending order: the last position is the most likely token, which is never removed.
    let _ = remove_sorted.narrow(-1, vocab - 1, 1).fill_(0);
    let remove = remove_sorted.scatter(-1, &indices, &remove_sorted);
    scores.masked_fill(&remove, f64::NEG_INFINITY)
}

/// The processors `generate` applies with these parameters, in its order: the repetition penalty, then — when
/// sampling — temperature, top-k and top-p. Greedy decoding applies only the penalty (as `generate` does).
pub fn process_logits<S: AsRef<[i64]>>(scores: &Tensor, seen: &[S], params: &SamplingParams) -> Tensor {
    let mut scores = repetition_penalty(scores, seen, params.repetition_penalty);
    if params.is_greedy() {
        return scores;
    }
    if params.temperature != 1.0 {
        scores = temperature(&scores, params.temperature);
    }
    if params.top_k > 0 {
        scores = top_k(&scores, params.top_k);
    }
    if params.top_p < 1.0 {
        scores = top_p(&scores, params.top_p);
    }
    scores
}

/// Chooses the next tokens of one sequence: its sampling parameters and its own seeded generator.
#[derive(Debug, Clone)]
pub struct SequenceSampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
}

impl SequenceSampler {
    /// A sampler whose draws depend only on `seed` (and on the scores it is given).
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(SequenceSampler { params, rng: ChaCha20Rng::seed_from_u64(seed) })
    }

    /// The sampling parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token from this sequence's scores (`[vocab]` or `[1, vocab]`, any device and float kind) and
    /// the tokens it holds so far (prompt and generated, for the repetition penalty).
    pub fn next_token(&mut self, scores: &Tensor, seen: &[i64]) -> i64 {
        let scores = if scores.dim() == 1 { scores.unsqueeze(0) } else { scores.shallow_clone() };
        let processed = process_logits(&scores, &[seen], &self.params);
        if self.params.is_greedy() {
            return processed.argmax(-1, false).int64_value(&[0]);
        }
        let probs = processed.softmax(-1, Kind::Double).to_device(Device::Cpu).view([-1]);
        let probs = Vec::<f64>::try_from(&probs).expect("probabilities to host");
        match draw(&probs, self.rng.random::<f64>()) {
            Some(token) => token as i64,
            // Scores that are all -inf or NaN give no distribution: the most likely token is the only sane answer.
            None => processed.argmax(-1, false).int64_value(&[0]),
        }
    }
}

/// The index whose cumulative probability first exceeds `u` (in [0, 1)), the inverse-CDF draw; rounding that
/// leaves `u` above the total picks the last token with a non-zero probability.
fn draw(probs: &[f64], u: f64) -> Option<usize> {
    let total: f64 = probs.iter().sum();
    if !total.is_finite() || total <= 0.0 {
        return None;
    }
    let target = u * total;
    let mut cumulative = 0.0;
    let mut last = None;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cumulative += p;
            last = Some(i);
            if target < cumulative {
                return Some(i);
            }
        }
    }
    last
}

/// The next token of every row of `scores` (`[batch, vocab]`), each row with its own sampler and seen tokens. Rows
/// are processed one by one, so a sequence's tokens are the same alone as in any batch.
pub fn sample_batch<S: AsRef<[i64]>>(samplers: &mut [SequenceSampler], scores: &Tensor, seen: &[S]) -> Vec<i64> {
    let (batch, _) = scores.size2().expect("scores are [batch, vocab]");
    assert_eq!(batch as usize, samplers.len(), "one sampler per row of scores");
    assert_eq!(batch as usize, seen.len(), "one list of seen tokens per row of scores");
    samplers
        .iter_mut()
        .zip(seen)
        .enumerate()
        .map(|(i, (sampler, seen))| sampler.next_token(&scores.get(i as i64), seen.as_ref()))
        .collect()
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;
