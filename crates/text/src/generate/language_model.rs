//! A causal language model ready to answer text prompts: weights, tokenizer, chat template and stop tokens
//! loaded from a hub-layout folder or from a PEFT folder saved by SFT, and a text-in, text-out [`generate`]
//! that streams each request's new text as soon as it can no longer change.
//!
//! [`generate`]: LanguageModel::generate

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tch::nn::VarStore;
use tch::Device;
use tokenizers::Tokenizer;

use super::decode::{generate_rows, RowSpec};
use super::sampling::SamplingParams;
use super::stop::{StopCriteria, StopReason};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::models::{CausalLm, CausalLmInfo, LmCheckpoint};

/// One prompt to continue, with its own decoding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The text to continue, chat template already applied when it is a conversation.
    pub prompt: String,
    /// Greedy decoding or sampling, and the logits processors.
    pub sampling: SamplingParams,
    /// The sampler's seed: the same request with the same seed gives the same text, whatever it is batched with.
    pub seed: u64,
    /// The most tokens to generate (the stop token included).
    pub max_new_tokens: usize,
    /// Strings that end the text where they first appear (not included in it).
    pub stop: Vec<String>,
}

impl GenerationRequest {
    /// Greedy decoding of at most `max_new_tokens` tokens, no stop string.
    pub fn greedy(prompt: impl Into<String>, max_new_tokens: usize) -> Self {
        GenerationRequest {
            prompt: prompt.into(),
            sampling: SamplingParams::greedy(),
            seed: 0,
            max_new_tokens,
            stop: Vec::new(),
        }
    }
}

/// The answer to one [`GenerationRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    /// The new text, without the stop token or stop string (and without what followed a stop string).
    pub text: String,
    /// Every generated token id, the stop token included.
    pub token_ids: Vec<i64>,
    /// OpenAI's `finish_reason`: `stop` (stop token or stop string) or `length` (token budget or context full).
    pub finish_reason: String,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the length of `token_ids`).
    pub completion_tokens: usize,
}

/// A causal LM with its tokenizer, chat template and stop tokens.
pub struct LanguageModel {
    vs: VarStore,
    model: Box<dyn CausalLm>,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    stop_token_ids: Vec<i64>,
    pad_token_id: i64,
    dir: PathBuf,
    model_id: String,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("model_id", &self.model_id)
            .field("info", self.model.info())
            .field("stop_token_ids", &self.stop_token_ids)
            .finish()
    }
}

impl LanguageModel {
    /// Loads `dir` on `device`: either a hub-layout folder (config.json, model.safetensors or its shards,
    /// tokenizer.json, optionally tokenizer_config.json and generation_config.json) or a PEFT folder saved by SFT
    /// (adapter.safetensors + suite_adapter.json naming the base model + tokenizer files), whose base is loaded,
    /// prepared with the adapter's PEFT config and given the adapter's tensors.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: no such model folder", dir.display());
        }
        let ckpt =
            LmCheckpoint::load_on(dir, device).with_context(|| format!("loading the model in {}", dir.display()))?;
        let base_dir = ckpt.is_peft().then(|| ckpt.base_dir.clone());
        let LmCheckpoint { mut vs, model, .. } = ckpt;
        vs.freeze();
        // The adapter folder's own tokenizer files first (SFT may have added tokens), else the base's.
        let files_dir = |name: &str| -> PathBuf {
            match &base_dir {
                Some(base) if !dir.join(name).is_file() => base.join(name),
                _ => dir.join(name),
            }
        };
        let tokenizer_path = files_dir("tokenizer.json");
        if !tokenizer_path.is_file() {
            bail!("{}: no tokenizer.json (the tokenizer is needed to read prompts and write text)", dir.display());
        }
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!("{}: not a tokenizers file: {e}", tokenizer_path.display()))?;
        let config_path = files_dir("tokenizer_config.json");
        let tokenizer_config = read_json(&config_path)?;
        let template = match &tokenizer_config {
            Some(config) if has_template(config, &config_path) => {
                Some(ChatTemplate::from_tokenizer_config(&config_path)?)
            }
            _ => None,
        };
        let stop_token_ids = stop_tokens(model.info(), &tokenizer, template.as_ref());
        let pad_token_id = pad_token(&tokenizer, tokenizer_config.as_ref(), model.info());
        let model_id = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(LanguageModel {
            vs,
            model,
            tokenizer,
            template,
            stop_token_ids,
            pad_token_id,
            dir: dir.to_path_buf(),
            model_id,
        })
    }

    /// Puts every linear layer in int8 for CPU inference (libtorch's dynamic quantization, per-channel weights; see
    /// [`suite_core::quant`]); embeddings and norms stay fp32.
    pub fn quantize_int8(&mut self) -> Result<suite_core::quant::QuantSummary> {
        suite_core::quant::quantize_dynamic(self.model.as_mut(), suite_core::quant::WeightScheme::PerChannel)
    }

    /// Vocabulary, special tokens, context length.
    pub fn info(&self) -> &CausalLmInfo {
        self.model.info()
    }

    /// The causal LM itself.
    pub fn model(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// The variables of the model (base and adapter).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The tokenizer of `tokenizer.json`.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template of `tokenizer_config.json`, when the folder has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name for the model: its folder's name.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Token ids that end a reply: the eos tokens of generation_config.json (or config.json) and the chat
    /// template's end-of-turn tokens.
    pub fn stop_token_ids(&self) -> &[i64] {
        &self.stop_token_ids
    }

    /// The token ids of `text` as the model reads it: with the tokenizer's special tokens (a bos, when its
    /// post-processor adds one), but never a second bos when the text already starts with it (a rendered chat
    /// template usually does).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let ids: Vec<i64> = match self.tokenizer.encode(text, true) {
            Ok(enc) => enc.get_ids().iter().map(|&i| i as i64).collect(),
            // Encoding a &str fails only in exotic normalisers; without special tokens is then the best effort.
            Err(_) => self
                .tokenizer
                .encode(text, false)
                .map(|enc| enc.get_ids().iter().map(|&i| i as i64).collect())
                .unwrap_or_default(),
        };
        match self.info().bos_token_id {
            Some(bos) if ids.len() >= 2 && ids[0] == bos && ids[1] == bos => ids[1..].to_vec(),
            _ => ids,
        }
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.tokenizer.decode(&ids, true).unwrap_or_default()
    }

    /// The prompt of a conversation as the model's chat template writes it; with `add_generation_prompt` it ends
    /// with the header of the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let Some(template) = &self.template else {
            bail!(
                "{}: the model has no chat template (no `chat_template` in tokenizer_config.json): give a plain \
                 prompt instead",
                self.dir.display()
            );
        };
        template.render(messages, add_generation_prompt)
    }

    /// Continues every request in one batch. `on_text(request, delta)` receives each request's new text as soon as
    /// it is final: complete UTF-8 characters that cannot be the start of a stop string. The deltas of a request
    /// concatenate to its [`Generated::text`]. A prompt longer than the model's context is an error naming the
    /// request.
    pub fn generate(
        &self,
        requests: &[GenerationRequest],
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Generated>> {
        let context = self.info().max_position_embeddings;
        let mut prompts = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            r.sampling.validate().with_context(|| format!("request {i}"))?;
            let ids = self.encode(&r.prompt);
            if ids.is_empty() {
                bail!("request {i}: the prompt is empty (no tokens to continue)");
            }
            if ids.len() as i64 > context {
                bail!(
                    "request {i}: the prompt has {} tokens, more than the model's context of {context} tokens \
                     (max_position_embeddings in {}): shorten it",
                    ids.len(),
                    self.dir.display()
                );
            }
            prompts.push(ids);
        }
        let criteria: Vec<StopCriteria> = requests
            .iter()
            .map(|r| StopCriteria {
                stop_token_ids: self.stop_token_ids.clone(),
                stop_strings: r.stop.clone(),
                max_new_tokens: Some(r.max_new_tokens),
            })
            .collect();
        let rows: Vec<RowSpec> = requests
            .iter()
            .zip(&prompts)
            .map(|(r, prompt)| RowSpec {
                prompt,
                sampling: r.sampling,
                seed: r.seed,
                max_new_tokens: r.max_new_tokens,
                stop_token_ids: &self.stop_token_ids,
            })
            .collect();
        let mut streams: Vec<TextStream> = requests.iter().map(|_| TextStream::default()).collect();
        let mut stops: Vec<Option<StopReason>> = vec![None; requests.len()];
        let mut generated: Vec<Vec<i64>> = vec![Vec::new(); requests.len()];
        let ids = generate_rows(self.model.as_ref(), &rows, self.pad_token_id, &mut |row, token| {
            generated[row].push(token);
            let ids = &generated[row];
            let text_ids = if self.stop_token_ids.contains(&token) { &ids[..ids.len() - 1] } else { &ids[..] };
            let text = self.decode(text_ids);
            match criteria[row].check(ids, &text) {
                Some(stop) => {
                    streams[row].finish(&text[..stop.text_len], &mut |d| on_text(row, d));
                    stops[row] = Some(stop.reason);
                    false
                }
                None => {
                    let safe = criteria[row].streamable_len(complete_prefix(&text));
                    streams[row].advance(&text[..safe], &mut |d| on_text(row, d));
                    true
                }
            }
        })?;
        let mut out = Vec::with_capacity(requests.len());
        for (row, token_ids) in ids.into_iter().enumerate() {
            if stops[row].is_none() {
                // The context filled up before any stop: everything decoded is the answer.
                let text = self.decode(&token_ids);
                streams[row].finish(&text, &mut |d| on_text(row, d));
            }
            let finish = stops[row].as_ref().map_or("length", StopReason::finish_reason);
            out.push(Generated {
                text: std::mem::take(&mut streams[row].sent),
                completion_tokens: token_ids.len(),
                token_ids,
                finish_reason: finish.to_string(),
                prompt_tokens: prompts[row].len(),
            });
        }
        Ok(out)
    }
}

/// The text of one request sent so far.
#[derive(Debug, Default)]
struct TextStream {
    sent: String,
}

impl TextStream {
    /// Sends what `text` adds to what was sent (nothing when it does not extend it: a detokeniser that rewrote
    /// earlier text, which byte-level and SentencePiece decoders do not do when tokens are appended).
    fn advance(&mut self, text: &str, send: &mut dyn FnMut(&str)) {
        if let Some(delta) = text.strip_prefix(self.sent.as_str()) {
            if !delta.is_empty() {
                send(delta);
                self.sent.push_str(delta);
            }
        }
    }

    /// Sends the rest of the final text.
    fn finish(&mut self, text: &str, send: &mut dyn FnMut(&str)) {
        self.advance(text, send);
    }
}

/// `text` without a trailing U+FFFD: the decoder's stand-in for a character whose bytes are split across tokens
/// and not all generated yet.
fn complete_prefix(text: &str) -> &str {
    text.trim_end_matches('\u{FFFD}')
}

/// A JSON file, `None` when absent.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let v = serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))?;
    Ok(Some(v))
}

/// Whether a tokenizer config has a chat template (in the file or in `chat_template.jinja` beside it).
fn has_template(config: &serde_json::Value, path: &Path) -> bool {
    config.get("chat_template").is_some_and(|t| !t.is_null()) || path.with_file_name("chat_template.jinja").is_file()
}

/// The model's eos tokens, then the chat template's end-of-turn tokens that the vocabulary has.
fn stop_tokens(info: &CausalLmInfo, tokenizer: &Tokenizer, template: Option<&ChatTemplate>) -> Vec<i64> {
    let mut ids = info.eos_token_ids.clone();
    if let Some(template) = template {
        let added: Vec<String> =
            tokenizer.get_added_tokens_decoder().values().map(|t| t.content.clone()).collect::<Vec<_>>();
        for token in template.end_of_turn_tokens(&added) {
            if let Some(id) = tokenizer.token_to_id(&token) {
                if !ids.contains(&(id as i64)) {
                    ids.push(id as i64);
                }
            }
        }
    }
    ids
}

/// The padding token: the tokenizer config's `pad_token`, else the first eos, else 0 (padding is never attended,
/// so any id of the vocabulary works).
fn pad_token(tokenizer: &Tokenizer, config: Option<&serde_json::Value>, info: &CausalLmInfo) -> i64 {
    let named = config.and_then(|c| c.get("pad_token")).and_then(|p| match p {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    });
    named
        .and_then(|t| tokenizer.token_to_id(&t))
        .map(|id| id as i64)
        .filter(|&id| id < info.vocab_size)
        .or_else(|| info.eos_token_ids.first().copied())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "language_model_tests.rs"]
mod tests;
