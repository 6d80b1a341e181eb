//! Batched greedy and beam search in no-timestamps mode, after OpenAI's `DecodingTask` (`GreedyDecoder`,
//! `BeamSearchDecoder`, `MaximumLikelihoodRanker`).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::beam::{select, Hypothesis};
use super::language::detect_language;
use super::options::{DecodeOptions, Transcript};
use crate::models::{KvCache, Whisper};
use crate::tokenizer::WhisperTokenizer;

/// Logit masks: the tokens never allowed, and those also barred from the first generated position.
struct Suppression {
    always: Tensor,
    first: Tensor,
}

impl Suppression {
    fn new(model: &Whisper, tok: &WhisperTokenizer, opts: &DecodeOptions, device: Device) -> Result<Self> {
        let vocab = model.config.vocab_size;
        let mut ids: Vec<i64> = model.config.suppress_tokens.clone();
        for &id in &opts.suppress_tokens {
            if !(0..vocab).contains(&id) {
                bail!("suppress_tokens holds {id}, outside the vocabulary (0..{vocab})");
            }
            ids.push(id);
        }
        // Prompt tokens have no place in a transcript, nor timestamps (every id after <|notimestamps|>).
        ids.extend([tok.sot(), tok.no_timestamps(), tok.transcribe(), tok.translate()]);
        ids.extend(tok.start_of_prev());
        ids.extend(tok.no_timestamps() + 1..vocab);
        ids.retain(|id| (0..vocab).contains(id));
        let mut always = vec![false; vocab as usize];
        for id in ids {
            always[id as usize] = true;
        }
        let mut first = always.clone();
        if opts.suppress_blank {
            for &id in &model.config.begin_suppress_tokens {
                first[id as usize] = true;
            }
        }
        let to_tensor = |m: Vec<bool>| Tensor::from_slice(&m).to_device(device);
        Ok(Self { always: to_tensor(always), first: to_tensor(first) })
    }

    /// Log-probabilities `[rows, vocab]` of the allowed tokens.
    fn log_probs(&self, logits: &Tensor, first: bool) -> Tensor {
        let mask = if first { &self.first } else { &self.always };
        logits.masked_fill(mask, f64::NEG_INFINITY).log_softmax(-1, Kind::Float)
    }
}

fn to_vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1))?)
}

fn to_vec_i64(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(t.to_kind(Kind::Int64).to_device(Device::Cpu).flatten(0, -1))?)
}

/// Batched greedy or beam search over mel windows `[b, n_mels, 3000]`, in no-timestamps mode: the prompt is
/// `<|startoftranscript|><|lang|><|task|><|notimestamps|>` and timestamp tokens are suppressed, as are the model's
/// `suppress_tokens` and `opts.suppress_tokens`. Without a language in `opts`, each item's language is detected
/// first. Decoding stops at `<|endoftext|>` or after `max_new_tokens`.
pub fn transcribe_batch(
    model: &Whisper,
    tok: &WhisperTokenizer,
    mel: &Tensor,
    opts: &DecodeOptions,
) -> Result<Vec<Transcript>> {
    opts.validate()?;
    model.check_mel(mel)?;
    let b = mel.size()[0];
    if b == 0 {
        return Ok(Vec::new());
    }
    if tok.eot() >= model.config.vocab_size || tok.no_timestamps() >= model.config.vocab_size {
        bail!("{}: special tokens beyond the model's vocabulary; a tokenizer of another model?", tok.path().display());
    }
    tch::no_grad(|| {
        let device = model.device();
        let encoder_states = model.encode(&mel.to_device(device), false);
        let languages: Vec<String> = match &opts.language {
            Some(code) if tok.is_multilingual() => {
                let id = tok.language_token(code)?;
                vec![tok.language_of(id).unwrap_or(code).to_string(); b as usize]
            }
            Some(code) => {
                tok.prompt(code, opts.task)?;
                vec!["en".to_string(); b as usize]
            }
            None => detect_language(model, tok, &encoder_states)?.into_iter().map(|(code, _)| code).collect(),
        };
        let prompts: Vec<Vec<i64>> = languages.iter().map(|l| tok.prompt(l, opts.task)).collect::<Result<_>>()?;
        let prompt_len = prompts[0].len();
        let room = (model.config.max_target_positions as usize).saturating_sub(prompt_len);
        if room == 0 {
            bail!("the decoder has {} positions, no room after a {prompt_len}-token prompt", room + prompt_len);
        }
        let max_new = opts.max_new_tokens.min(room);
        let suppression = Suppression::new(model, tok, opts, device)?;
        let search =
            Search { model, encoder_states: &encoder_states, suppression: &suppression, eot: tok.eot(), max_new };
        let best = if opts.beam_size == 1 {
            search.greedy(&prompts)?
        } else {
            search.beam(&prompts, opts.beam_size, opts.length_penalty)?
        };
        best.into_iter()
            .zip(languages)
            .map(|(h, language)| {
                Ok(Transcript {
                    text: tok.decode_text(&h.tokens)?.trim().to_string(),
                    language,
                    avg_logprob: h.sum_logprob / (h.tokens.len() + 1) as f64,
                    tokens: h.tokens,
                })
            })
            .collect()
    })
}

struct Search<'a> {
    model: &'a Whisper,
    encoder_states: &'a Tensor,
    suppression: &'a Suppression,
    eot: i64,
    max_new: usize,
}

impl Search<'_> {
    fn rows_tensor(&self, rows: &[Vec<i64>]) -> Tensor {
        let width = rows[0].len() as i64;
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, width]).to_device(self.model.device())
    }

    /// Greedy decoding: the most likely allowed token at every step; finished rows are fed `<|endoftext|>` until
    /// every row is done.
    fn greedy(&self, prompts: &[Vec<i64>]) -> Result<Vec<Hypothesis>> {
        let n = prompts.len();
        let mut hyps = vec![Hypothesis { tokens: Vec::new(), sum_logprob: 0.0 }; n];
        let mut done = vec![false; n];
        let mut cache = KvCache::new();
        let mut logits = self.model.decoder_step(&self.rows_tensor(prompts), self.encoder_states, &mut cache);
        for step in 0..self.max_new {
            let (best_lp, best) = self.suppression.log_probs(&logits, step == 0).max_dim(-1, false);
            let (best_lp, best) = (to_vec_f64(&best_lp)?, to_vec_i64(&best)?);
            for i in 0..n {
                if done[i] {
                    continue;
                }
                hyps[i].sum_logprob += best_lp[i];
                if best[i] == self.eot {
                    done[i] = true;
                } else {
                    hyps[i].tokens.push(best[i]);
                }
            }
            if done.iter().all(|&d| d) || step + 1 == self.max_new {
                break;
            }
            let next: Vec<Vec<i64>> = (0..n).map(|i| vec![if done[i] { self.eot } else { best[i] }]).collect();
            logits = self.model.decoder_step(&self.rows_tensor(&next), self.encoder_states, &mut cache);
        }
        Ok(hyps)
    }

    /// Beam search with `k` beams per item, as OpenAI's `BeamSearchDecoder` (patience 1): each beam proposes its
    /// `k + 1` best continuations, the best `k` unfinished ones go on, finished ones are collected until an item
    /// has `k`; the winner maximises the length-penalised summed log-probability.
    fn beam(&self, prompts: &[Vec<i64>], k: usize, length_penalty: Option<f64>) -> Result<Vec<Hypothesis>> {
        let n = prompts.len();
        let rows = n * k;
        let mut beams: Vec<Hypothesis> = vec![Hypothesis { tokens: Vec::new(), sum_logprob: 0.0 }; rows];
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); n];
        let start: Vec<Vec<i64>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), k)).collect();
        let mut cache = KvCache::new();
        let mut logits = self.model.decoder_step(&self.rows_tensor(&start), self.encoder_states, &mut cache);
        let width = (k + 1) as i64;
        for step in 0..self.max_new {
            let (top_lp, top) = self.suppression.log_probs(&logits, step == 0).topk(width, -1, true, true);
            let (top_lp, top) = (to_vec_f64(&top_lp)?, to_vec_i64(&top)?);
            // Each row proposes its k + 1 best continuations, best first.
            let proposals: Vec<Vec<(i64, f64)>> = (0..rows)
                .map(|row| (0..k + 1).map(|c| (top[row * (k + 1) + c], top_lp[row * (k + 1) + c])).collect())
                .collect();
            let (next, sources) = select(&beams, &proposals, &mut finished, k, self.eot);
            beams = next;
            if finished.iter().all(|f| f.len() >= k) || step + 1 == self.max_new {
                break;
            }
            cache.reorder(&Tensor::from_slice(&sources));
            let last: Vec<Vec<i64>> =
                beams.iter().map(|h| vec![*h.tokens.last().expect("a beam has a token")]).collect();
            logits = self.model.decoder_step(&self.rows_tensor(&last), self.encoder_states, &mut cache);
        }
        // Items without k finished hypotheses take their best unfinished beams.
        for (item, item_finished) in finished.iter_mut().enumerate() {
            let mut open: Vec<&Hypothesis> = beams[item * k..(item + 1) * k].iter().collect();
            open.sort_by(|a, b| b.sum_logprob.total_cmp(&a.sum_logprob));
            for h in open {
                if item_finished.len() >= k {
                    break;
                }
                item_finished.push(h.clone());
            }
        }
        let penalised = |h: &Hypothesis| {
            let len = h.tokens.len() as f64;
            let penalty = match length_penalty {
                None => len.max(1.0),
                Some(a) => ((5.0 + len) / 6.0).powf(a),
            };
            h.sum_logprob / penalty
        };
        Ok(finished
            .into_iter()
            .map(|hs| {
                let mut best = 0;
                for (i, h) in hs.iter().enumerate() {
                    if penalised(h) > penalised(&hs[best]) {
                        best = i;
                    }
                }
                hs[best].clone()
            })
            .collect())
    }
}
