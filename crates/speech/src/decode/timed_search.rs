//! One decode of a group of windows with timestamps: greedy, beam search or sampling (`best_of` draws), the logit
//! filters applied on the host ([`TimestampRules`]), as openai-whisper's `DecodingTask` with `ApplyTimestampRules`.
//! The windows of a group share one prompt length: the decoder has no padding mask.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::beam::{select, Hypothesis};
use super::rules::{argmax, TimestampRules};
use crate::models::{KvCache, Whisper};

/// How tokens are chosen.
#[derive(Debug, Clone)]
pub(crate) enum Choice {
    /// The most likely token, one row per window.
    Greedy,
    /// Beam search with this many beams per window (patience 1, ranked by log-probability / length).
    Beam(usize),
    /// `best_of` samples per window at `temperature`; `seeds[i]` drives window `i`'s draws.
    Sample { temperature: f64, best_of: usize, seeds: Vec<u64> },
}

/// What one window decoded to.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    /// Generated tokens, timestamps included, without `<|endoftext|>`.
    pub tokens: Vec<i64>,
    /// Summed log-probability of the tokens and `<|endoftext|>` (when reached), divided by their number.
    pub avg_logprob: f64,
    /// Probability of `<|nospeech|>` at `<|startoftranscript|>` (0 for a vocabulary without it).
    pub no_speech_prob: f64,
}

impl Hypothesis {
    fn decoded(self, no_speech_prob: f64) -> Decoded {
        let avg_logprob = self.sum_logprob / (self.tokens.len() + 1) as f64;
        Decoded { tokens: self.tokens, avg_logprob, no_speech_prob }
    }

    /// openai-whisper's `MaximumLikelihoodRanker` without a length penalty: log-probability per token.
    fn rank(&self) -> f64 {
        self.sum_logprob / self.tokens.len().max(1) as f64
    }
}

/// A group of windows decoded together.
pub(crate) struct Group<'a> {
    pub model: &'a Whisper,
    pub rules: &'a TimestampRules,
    /// Encoder states of the group's windows, `[n, frames, d]`.
    pub encoder_states: &'a Tensor,
    /// One prompt per window, all of one length, each with `<|startoftranscript|>` at `sot_index`.
    pub prompts: &'a [Vec<i64>],
    pub sot_index: usize,
    pub eot: i64,
    pub no_speech: Option<i64>,
    /// Most tokens generated after the prompt.
    pub max_new: usize,
}

fn to_host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))?)
}

impl Group<'_> {
    fn rows_tensor(&self, rows: &[&[i64]]) -> Tensor {
        let width = rows[0].len() as i64;
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, width]).to_device(self.model.device())
    }

    /// Feeds every window's prompt, `g` rows each. Returns the logits of the first generated position
    /// `[n·g, vocab]` and each window's `<|nospeech|>` probability, read at `<|startoftranscript|>`: the prompt
    /// goes in as two pieces, up to that token and after it.
    fn feed_prompts(&self, g: usize, cache: &mut KvCache) -> Result<(Tensor, Vec<f64>)> {
        let n = self.prompts.len();
        let split = self.sot_index + 1;
        let rows = |range: std::ops::Range<usize>| -> Vec<&[i64]> {
            self.prompts.iter().flat_map(|p| std::iter::repeat_n(&p[range.clone()], g)).collect()
        };
        let len = self.prompts[0].len();
        let at_sot = self.model.decoder_step(&self.rows_tensor(&rows(0..split)), self.encoder_states, cache);
        let no_speech = match self.no_speech {
            Some(id) => {
                let p = to_host_f32(&at_sot.softmax(-1, Kind::Float).select(1, id))?;
                (0..n).map(|i| p[i * g] as f64).collect()
            }
            None => vec![0.0; n],
        };
        let logits = if split < len {
            self.model.decoder_step(&self.rows_tensor(&rows(split..len)), self.encoder_states, cache)
        } else {
            at_sot
        };
        Ok((logits, no_speech))
    }

    /// Decodes every window of the group.
    pub(crate) fn run(&self, choice: &Choice) -> Result<Vec<Decoded>> {
        if self.prompts.is_empty() {
            return Ok(Vec::new());
        }
        if self.prompts.iter().any(|p| p.len() != self.prompts[0].len() || p.get(self.sot_index).is_none()) {
            bail!("internal: a decode group mixes prompt lengths");
        }
        tch::no_grad(|| match choice {
            Choice::Greedy => self.sample_rows(1, None, &[]),
            Choice::Sample { temperature, best_of, seeds } => self.sample_rows(*best_of, Some(*temperature), seeds),
            Choice::Beam(k) => self.beam(*k),
        })
    }

    /// Greedy decoding (`temperature` None, one row per window) or `g` independent samples per window; each window
    /// keeps its best row. Finished rows are fed `<|endoftext|>` until every row is done.
    fn sample_rows(&self, g: usize, temperature: Option<f64>, seeds: &[u64]) -> Result<Vec<Decoded>> {
        let n = self.prompts.len();
        let rows = n * g;
        let vocab = self.rules.vocab();
        let mut rngs: Vec<ChaCha8Rng> =
            (0..n).map(|i| ChaCha8Rng::seed_from_u64(seeds.get(i).copied().unwrap_or(0))).collect();
        let mut hyps = vec![Hypothesis::default(); rows];
        let mut done = vec![false; rows];
        let mut cache = KvCache::new();
        let (mut logits, no_speech) = self.feed_prompts(g, &mut cache)?;
        for step in 0..self.max_new {
            let host = to_host_f32(&logits)?;
            if host.len() != rows * vocab {
                bail!("internal: decoder logits of {} values, expected {rows} × {vocab}", host.len());
            }
            let mut next = vec![self.eot; rows];
            for r in 0..rows {
                if done[r] {
                    continue;
                }
                let lp = self.rules.log_probs(&host[r * vocab..(r + 1) * vocab], &hyps[r].tokens);
                let token = match temperature {
                    None => argmax(&lp),
                    Some(t) => sample(&lp, t, &mut rngs[r / g]),
                };
                let token = if lp[token] == f64::NEG_INFINITY { self.eot as usize } else { token };
                let token_lp = lp[token];
                if token_lp.is_finite() {
                    hyps[r].sum_logprob += token_lp;
                }
                if token as i64 == self.eot {
                    done[r] = true;
                } else {
                    hyps[r].tokens.push(token as i64);
                    next[r] = token as i64;
                }
            }
            if done.iter().all(|&d| d) || step + 1 == self.max_new {
                break;
            }
            let feed: Vec<[i64; 1]> = next.iter().map(|&t| [t]).collect();
            let feed: Vec<&[i64]> = feed.iter().map(|t| t.as_slice()).collect();
            logits = self.model.decoder_step(&self.rows_tensor(&feed), self.encoder_states, &mut cache);
        }
        Ok((0..n)
            .map(|i| {
                let item = &hyps[i * g..(i + 1) * g];
                // The first of equally ranked rows, as a stable sort would keep.
                let best = (0..g).fold(0, |b, j| if item[j].rank() > item[b].rank() { j } else { b });
                item[best].clone().decoded(no_speech[i])
            })
            .collect())
    }

    /// Beam search with `k` beams per window, as openai-whisper's `BeamSearchDecoder` (patience 1): each beam
    /// proposes its `k + 1` best continuations, the best `k` unfinished ones go on, finished ones are collected
    /// until a window has `k`; the winner has the best log-probability per token.
    fn beam(&self, k: usize) -> Result<Vec<Decoded>> {
        let n = self.prompts.len();
        let rows = n * k;
        let vocab = self.rules.vocab();
        let mut beams = vec![Hypothesis::default(); rows];
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); n];
        let mut cache = KvCache::new();
        let (mut logits, no_speech) = self.feed_prompts(k, &mut cache)?;
        for step in 0..self.max_new {
            let host = to_host_f32(&logits)?;
            // Each beam's k + 1 best continuations.
            let proposals: Vec<Vec<(i64, f64)>> = (0..rows)
                .map(|r| {
                    let lp = self.rules.log_probs(&host[r * vocab..(r + 1) * vocab], &beams[r].tokens);
                    let mut idx: Vec<usize> = (0..vocab).filter(|&i| lp[i].is_finite()).collect();
                    let by_lp = |a: &usize, b: &usize| lp[*b].total_cmp(&lp[*a]).then(a.cmp(b));
                    if idx.len() > k + 1 {
                        idx.select_nth_unstable_by(k, by_lp);
                        idx.truncate(k + 1);
                    }
                    idx.sort_by(by_lp);
                    idx.into_iter().map(|i| (i as i64, lp[i])).collect()
                })
                .collect();
            let (next, sources) = select(&beams, &proposals, &mut finished, k, self.eot);
            beams = next;
            if finished.iter().all(|f| f.len() >= k) || step + 1 == self.max_new {
                break;
            }
            cache.reorder(&Tensor::from_slice(&sources));
            let last: Vec<[i64; 1]> = beams.iter().map(|h| [h.tokens.last().copied().unwrap_or(self.eot)]).collect();
            let last: Vec<&[i64]> = last.iter().map(|t| t.as_slice()).collect();
            logits = self.model.decoder_step(&self.rows_tensor(&last), self.encoder_states, &mut cache);
        }
        Ok(finished
            .into_iter()
            .enumerate()
            .map(|(item, mut hs)| {
                // Windows without k finished hypotheses take their best open beams.
                if hs.len() < k {
                    let mut open: Vec<&Hypothesis> = beams[item * k..(item + 1) * k].iter().collect();
                    open.sort_by(|a, b| b.sum_logprob.total_cmp(&a.sum_logprob));
                    hs.extend(open.into_iter().take(k - hs.len()).cloned());
                }
                let best = (0..hs.len()).fold(0, |b, j| if hs[j].rank() > hs[b].rank() { j } else { b });
                hs.swap_remove(best).decoded(no_speech[item])
            })
            .collect())
    }
}

/// Draws a token from `softmax(lp / temperature)` (−∞ entries never drawn).
fn sample(lp: &[f64], temperature: f64, rng: &mut ChaCha8Rng) -> usize {
    let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return 0;
    }
    let weights: Vec<f64> = lp.iter().map(|&v| ((v - max) / temperature).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    let mut last = argmax(lp);
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last = i;
            if u < w {
                return i;
            }
            u -= w;
        }
    }
    last
}
