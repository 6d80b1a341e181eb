//! The token-level generation loop: a batch of prompts of different lengths, left padded as transformers'
//! `generate` pads them, decoded step by step through the model's [`KvCache`].
//!
//! Each row has its own [`SequenceSampler`] seeded `seed + row` and its own repetition-penalty history (its prompt
//! and generated tokens, padding excluded), so a row's tokens do not depend on which other rows share the batch.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::sampling::{SamplingParams, SequenceSampler};
use crate::models::{BatchLayout, CausalLm};

/// How [`generate_ids`] decodes.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Greedy decoding or sampling, and the logits processors.
    pub sampling: SamplingParams,
    /// Row `i` samples with seed `seed + i`.
    pub seed: u64,
    /// The most tokens generated per row (the stop token included).
    pub max_new_tokens: usize,
    /// Tokens that end a row (eos, end of turn); the stop token is returned as the row's last token.
    pub stop_token_ids: Vec<i64>,
    /// The token left padding is made of (never attended, so any id in the vocabulary works).
    pub pad_token_id: i64,
}

impl GenerationConfig {
    /// Greedy decoding of at most `max_new_tokens` tokens, stopping at `stop_token_ids`.
    pub fn greedy(max_new_tokens: usize, stop_token_ids: Vec<i64>, pad_token_id: i64) -> Self {
        GenerationConfig { sampling: SamplingParams::greedy(), seed: 0, max_new_tokens, stop_token_ids, pad_token_id }
    }
}

/// Generates a continuation of every prompt in one batch and returns each row's new tokens (its stop token
/// included when one ended it).
///
/// `on_token(row, token)` is called for every new token as it is chosen; returning `false` ends that row (the
/// token is kept). A row also ends at a stop token, after `max_new_tokens` tokens, or when prompt and continuation
/// fill the model's context (`max_position_embeddings`). Prompts must be non-empty and fit in the context.
pub fn generate_ids(
    model: &dyn CausalLm,
    prompts: &[Vec<i64>],
    cfg: &GenerationConfig,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<Vec<i64>>> {
    let rows: Vec<RowSpec> = prompts
        .iter()
        .enumerate()
        .map(|(row, prompt)| RowSpec {
            prompt,
            sampling: cfg.sampling,
            seed: cfg.seed.wrapping_add(row as u64),
            max_new_tokens: cfg.max_new_tokens,
            stop_token_ids: &cfg.stop_token_ids,
        })
        .collect();
    generate_rows(model, &rows, cfg.pad_token_id, on_token)
}

/// One row of [`generate_rows`]: a prompt with its own sampling, seed, budget and stop tokens (requests of
/// different clients batched together).
#[derive(Debug, Clone, Copy)]
pub struct RowSpec<'a> {
    /// The prompt's token ids.
    pub prompt: &'a [i64],
    /// Greedy decoding or sampling, and the logits processors.
    pub sampling: SamplingParams,
    /// The seed of this row's sampler.
    pub seed: u64,
    /// The most tokens generated (the stop token included).
    pub max_new_tokens: usize,
    /// Tokens that end the row.
    pub stop_token_ids: &'a [i64],
}

/// [`generate_ids`] with settings per row. Errors name the row as `prompt {row}`.
pub fn generate_rows(
    model: &dyn CausalLm,
    rows: &[RowSpec],
    pad_token_id: i64,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<Vec<i64>>> {
    let info = model.info();
    let context = info.max_position_embeddings.max(0) as usize;
    check_ids(&[pad_token_id], info.vocab_size, "pad_token_id")?;
    for (row, spec) in rows.iter().enumerate() {
        if spec.prompt.is_empty() {
            bail!("prompt {row} is empty: generation needs at least one token to continue");
        }
        if spec.prompt.len() > context {
            bail!(
                "prompt {row} has {} tokens, more than the model's context of {context} tokens \
                 (max_position_embeddings): shorten it",
                spec.prompt.len()
            );
        }
        check_ids(spec.prompt, info.vocab_size, &format!("prompt {row}"))?;
    }
    let mut samplers =
        rows.iter().map(|spec| SequenceSampler::new(spec.sampling, spec.seed)).collect::<Result<Vec<_>>>()?;
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); rows.len()];
    let mut done: Vec<bool> = rows.iter().map(|spec| spec.max_new_tokens == 0).collect();
    if done.iter().all(|&d| d) {
        return Ok(out);
    }
    let device = model.device();
    let batch = rows.len() as i64;
    let width = rows.iter().map(|spec| spec.prompt.len()).max().unwrap_or(0);
    // Left padding: every prompt ends at the last column, so the next token of every row is predicted there.
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for spec in rows {
        let pad = width - spec.prompt.len();
        ids.extend(std::iter::repeat_n(pad_token_id, pad).chain(spec.prompt.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, spec.prompt.len())));
    }
    let mut input = Tensor::from_slice(&ids).view([batch, width as i64]).to_device(device);
    let mut attention_mask = Tensor::from_slice(&mask).view([batch, width as i64]).to_device(device);
    // Repetition-penalty history: the row's real tokens only.
    let mut seen: Vec<Vec<i64>> = rows.iter().map(|spec| spec.prompt.to_vec()).collect();
    let mut cache = model.new_cache();
    tch::no_grad(|| loop {
        let len = input.size()[1];
        let layout = BatchLayout {
            position_ids: Some(positions(&attention_mask, len)),
            attention_mask: Some(attention_mask.shallow_clone()),
            segment_ids: None,
        };
        let logits = model.forward_layout(&input, &layout, Some(&mut cache), false);
        let last = logits.select(1, -1).to_kind(Kind::Float);
        let mut next = vec![pad_token_id; rows.len()];
        let mut real = vec![0i64; rows.len()];
        for (row, spec) in rows.iter().enumerate() {
            if done[row] {
                continue;
            }
            let token = samplers[row].next_token(&last.get(row as i64), &seen[row]);
            out[row].push(token);
            seen[row].push(token);
            let keep_going = on_token(row, token);
            done[row] = !keep_going
                || spec.stop_token_ids.contains(&token)
                || out[row].len() >= spec.max_new_tokens
                || seen[row].len() >= context;
            if !done[row] {
                next[row] = token;
                real[row] = 1;
            }
        }
        if done.iter().all(|&d| d) {
            return;
        }
        // Finished rows are fed padding, masked out: nothing reads their outputs any more, and their positions
        // stop growing (a learned position table has an end).
        input = Tensor::from_slice(&next).view([batch, 1]).to_device(device);
        let step = Tensor::from_slice(&real).view([batch, 1]).to_device(device);
        attention_mask = Tensor::cat(&[&attention_mask, &step], 1);
    });
    Ok(out)
}

/// Positions `[batch, len]` of the last `len` columns of `attention_mask` (`[batch, total]`): each real token's
/// index among its row's real tokens (`cumsum(mask) - 1`), and 1 for padding, as transformers'
/// `prepare_inputs_for_generation` fills them.
fn positions(attention_mask: &Tensor, len: i64) -> Tensor {
    let total = attention_mask.size()[1];
    let pos = attention_mask.cumsum(1, Kind::Int64) - 1;
    let pos = pos.masked_fill(&attention_mask.eq(0), 1);
    pos.narrow(1, total - len, len)
}

/// Refuses token ids outside the vocabulary, which would index out of the embedding table.
fn check_ids(ids: &[i64], vocab_size: i64, what: &str) -> Result<()> {
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab_size) {
        bail!("{what}: token id {bad} is outside the model's vocabulary of {vocab_size} tokens");
    }
    Ok(())
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
