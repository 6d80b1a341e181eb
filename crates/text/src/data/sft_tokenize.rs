//! SFT examples as token ids with loss labels.
//!
//! A conversation is rendered with the model's chat template and tokenized once; the labelled tokens are those
//! inside an assistant turn. Each turn's character span comes from the template itself: `messages[..i]` rendered
//! with the generation prompt ends where assistant turn `i` starts, and `messages[..=i]` rendered without it ends
//! after the turn; the span is then cut after the last end-of-turn token inside it (the newline a template writes
//! after `<|im_end|>` is formatting, not something the model must say). Spans map to tokens through the
//! tokenizer's byte offsets. Prompt/completion and Alpaca examples become a user and an assistant turn when the
//! model has a template, else plain text (Alpaca's standard prompt) followed by the eos token. Plain text learns
//! every token, then eos.
//!
//! Labels follow transformers: `labels[t]` is the token the model should predict at `t` from the tokens before
//! it (the loss shifts by one); positions without loss hold [`IGNORE_INDEX`]. The first token of an example never
//! carries a label, so that in a packed row no token is predicted across an example boundary.

use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::Tokenizer;

use super::datasets::IGNORE_INDEX;
use super::sft::{SftContent, SftExample};
use crate::chat::{ChatMessage, ChatTemplate};

/// Alpaca's prompt for an instruction with an input (Stanford Alpaca's `PROMPT_DICT["prompt_input"]`).
const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides \
further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n\
### Input:\n{input}\n\n### Response:\n";
/// Alpaca's prompt for an instruction alone (`PROMPT_DICT["prompt_no_input"]`).
const ALPACA_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately \
completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

/// Token ids and the byte span of each in the text.
type IdsAndOffsets = (Vec<i64>, Vec<(usize, usize)>);

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftTokens {
    /// Token ids.
    pub ids: Vec<i64>,
    /// Target ids where the loss applies, [`IGNORE_INDEX`] elsewhere; same length as `ids`.
    pub labels: Vec<i64>,
    /// Tokens cut off the end because the example was longer than `max_len`.
    pub dropped: usize,
}

impl SftTokens {
    /// Number of tokens that carry a label.
    pub fn label_count(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// A held-out prompt for generation-based evaluation: the prompt's ids and the reference answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftPrompt {
    /// The prompt, ending where the model's answer starts.
    pub ids: Vec<i64>,
    /// The answer the data gives.
    pub reference: String,
}

/// Turns SFT examples into ids and labels with a model's tokenizer and chat template.
pub struct SftTokenizer {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    end_of_turn: Vec<String>,
    eos_id: i64,
    system_prompt: Option<String>,
    max_len: usize,
}

impl SftTokenizer {
    /// Reads `dir/tokenizer.json` and the chat template of `dir/tokenizer_config.json` (when there is one).
    /// `eos_ids` are the model's end-of-sequence tokens (from its config), used when the tokenizer config names no
    /// eos token; `system_prompt` is put in front of conversations that have no system turn.
    pub fn from_dir(dir: &Path, eos_ids: &[i64], system_prompt: Option<String>, max_len: usize) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&path).map_err(|e| anyhow!("{}: cannot read the tokenizer: {e}", path.display()))?;
        let config = dir.join("tokenizer_config.json");
        let template = if config.is_file() {
            let text =
                std::fs::read_to_string(&config).with_context(|| format!("{}: cannot read", config.display()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", config.display()))?;
            match json.get("chat_template") {
                None | Some(serde_json::Value::Null) if !dir.join("chat_template.jinja").is_file() => None,
                _ => Some(ChatTemplate::from_tokenizer_config(&config)?),
            }
        } else {
            None
        };
        Self::new(tokenizer, template, eos_ids, system_prompt, max_len)
            .with_context(|| format!("the tokenizer of {}", dir.display()))
    }

    /// A tokenizer with an optional chat template; see [`SftTokenizer::from_dir`].
    pub fn new(
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        eos_ids: &[i64],
        system_prompt: Option<String>,
        max_len: usize,
    ) -> Result<Self> {
        let added: Vec<String> = tokenizer.get_added_tokens_decoder().values().map(|t| t.content.clone()).collect();
        let end_of_turn = template.as_ref().map(|t| t.end_of_turn_tokens(&added)).unwrap_or_default();
        let named_eos = template.as_ref().and_then(|t| t.eos_token()).and_then(|t| tokenizer.token_to_id(t));
        let eos_id = match (named_eos, eos_ids.first()) {
            (Some(id), _) => id as i64,
            (None, Some(&id)) => id,
            (None, None) => bail!("no end-of-sequence token: neither tokenizer_config.json nor config.json names one"),
        };
        Ok(Self { tokenizer, template, end_of_turn, eos_id, system_prompt, max_len })
    }

    /// The chat template, when the model has one.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The token appended to plain text and untemplated completions.
    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes one example, truncated to `max_len` tokens. A prompt that alone fills `max_len` (no labelled
    /// token would remain) is an error naming the example's file and line.
    pub fn encode(&self, ex: &SftExample) -> Result<SftTokens> {
        let (mut ids, mut labels) = self.encode_full(ex).with_context(|| ex.location())?;
        if let Some(l) = labels.first_mut() {
            *l = IGNORE_INDEX;
        }
        let mut dropped = 0;
        if ids.len() > self.max_len {
            let first_label = labels.iter().position(|&l| l != IGNORE_INDEX).unwrap_or(ids.len());
            if first_label >= self.max_len {
                bail!(
                    "{}: the prompt alone is {first_label} tokens, which fills max_len = {} (the example is {} \
                     tokens): raise --max-len or shorten the prompt",
                    ex.location(),
                    self.max_len,
                    ids.len()
                );
            }
            dropped = ids.len() - self.max_len;
            ids.truncate(self.max_len);
            labels.truncate(self.max_len);
        }
        if !labels.iter().any(|&l| l != IGNORE_INDEX) {
            bail!("{}: the example leaves no token to learn (it is one token long)", ex.location());
        }
        Ok(SftTokens { ids, labels, dropped })
    }

    /// The prompt and reference answer of an example whose last turn is the answer (an assistant turn, a
    /// completion or an Alpaca output); `None` for plain text and conversations that end with another role.
    pub fn prompt(&self, ex: &SftExample) -> Result<Option<SftPrompt>> {
        let (prompt, reference) = match &ex.content {
            SftContent::Text(_) => return Ok(None),
            SftContent::Chat(messages) => match messages.split_last() {
                Some((last, rest)) if last.role == "assistant" => match &self.template {
                    Some(t) => {
                        let text = t.render(&self.with_system(rest), true).with_context(|| ex.location())?;
                        (text, last.content.clone())
                    }
                    None => return Ok(None),
                },
                _ => return Ok(None),
            },
            SftContent::Completion { prompt, completion } => (self.user_prompt(prompt, ex)?, completion.clone()),
            SftContent::Alpaca { instruction, input, output } => {
                let text = match &self.template {
                    Some(_) => self.user_prompt(&alpaca_user(instruction, input), ex)?,
                    None => alpaca_prompt(instruction, input),
                };
                (text, output.clone())
            }
        };
        let ids = self.ids(&prompt, self.template.is_none())?.0;
        Ok(Some(SftPrompt { ids, reference }))
    }

    /// The conversation with the configured system prompt in front when it has no system turn.
    fn with_system(&self, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(messages.len() + 1);
        if let Some(s) = &self.system_prompt {
            if messages.first().is_none_or(|m| m.role != "system") {
                out.push(ChatMessage::new("system", s.clone()));
            }
        }
        out.extend(messages.iter().cloned());
        out
    }

    /// A prompt as the model sees it before the answer: templated as a user turn, else as it is.
    fn user_prompt(&self, prompt: &str, ex: &SftExample) -> Result<String> {
        match &self.template {
            Some(t) => {
                t.render(&self.with_system(&[ChatMessage::new("user", prompt)]), true).with_context(|| ex.location())
            }
            None => Ok(prompt.to_string()),
        }
    }

    /// Ids and labels of the whole example, before truncation.
    fn encode_full(&self, ex: &SftExample) -> Result<(Vec<i64>, Vec<i64>)> {
        match &ex.content {
            SftContent::Text(text) => {
                let (mut ids, _) = self.ids(text, true)?;
                ids.push(self.eos_id);
                Ok((ids.clone(), ids))
            }
            SftContent::Chat(messages) => {
                let t = self.template.as_ref().ok_or_else(|| {
                    anyhow!("a chat example, but the model's tokenizer_config.json has no chat_template")
                })?;
                self.chat(t, &self.with_system(messages))
            }
            SftContent::Completion { prompt, completion } => self.pair(prompt, completion),
            SftContent::Alpaca { instruction, input, output } => match &self.template {
                Some(_) => self.pair(&alpaca_user(instruction, input), output),
                None => self.pair(&alpaca_prompt(instruction, input), output),
            },
        }
    }

    /// A prompt and its answer: a user and an assistant turn through the template, else plain concatenation with
    /// eos after the answer.
    fn pair(&self, prompt: &str, answer: &str) -> Result<(Vec<i64>, Vec<i64>)> {
        match &self.template {
            Some(t) => {
                let messages =
                    self.with_system(&[ChatMessage::new("user", prompt), ChatMessage::new("assistant", answer)]);
                self.chat(t, &messages)
            }
            None => {
                let text = format!("{prompt}{answer}");
                let (mut ids, offsets) = self.ids(&text, true)?;
                let completion = prompt.len()..text.len();
                let mut labels = mask(&ids, &offsets, std::slice::from_ref(&completion));
                ids.push(self.eos_id);
                labels.push(self.eos_id);
                Ok((ids, labels))
            }
        }
    }

    /// A conversation through the template; the assistant turns carry the labels.
    fn chat(&self, t: &ChatTemplate, messages: &[ChatMessage]) -> Result<(Vec<i64>, Vec<i64>)> {
        let full = t.render(messages, false)?;
        let mut spans = Vec::new();
        for i in (0..messages.len()).filter(|&i| messages[i].role == "assistant") {
            let before = t.render(&messages[..i], true)?;
            let through = t.render(&messages[..=i], false)?;
            if !full.starts_with(&before) || !full.starts_with(&through) || through.len() < before.len() {
                bail!(
                    "{}: the chat template renders the conversation up to assistant turn {i} differently from the \
                     start of the whole conversation, so the turn's tokens cannot be located",
                    t.origin()
                );
            }
            spans.push(before.len()..self.cut_after_end_of_turn(&full, before.len()..through.len()));
        }
        let (ids, offsets) = self.ids(&full, false)?;
        let labels = mask(&ids, &offsets, &spans);
        Ok((ids, labels))
    }

    /// The end of an assistant turn's span: just after its last end-of-turn token, else without trailing
    /// whitespace.
    fn cut_after_end_of_turn(&self, text: &str, span: Range<usize>) -> usize {
        let turn = &text[span.clone()];
        let at_marker = self.end_of_turn.iter().filter_map(|m| turn.rfind(m.as_str()).map(|p| p + m.len())).max();
        match at_marker {
            Some(end) => span.start + end,
            None => span.start + turn.trim_end().len(),
        }
    }

    /// Ids and byte offsets of `text`; `special` adds the tokenizer's own special tokens (bos), which a rendered
    /// template already contains.
    fn ids(&self, text: &str, special: bool) -> Result<IdsAndOffsets> {
        let enc = self.tokenizer.encode(text, special).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok((enc.get_ids().iter().map(|&i| i as i64).collect(), enc.get_offsets().to_vec()))
    }
}

/// Labels of tokens whose bytes overlap one of `spans`; [`IGNORE_INDEX`] for the others and for added special
/// tokens outside the text (empty offsets).
fn mask(ids: &[i64], offsets: &[(usize, usize)], spans: &[Range<usize>]) -> Vec<i64> {
    ids.iter()
        .zip(offsets)
        .map(|(&id, &(s, e))| {
            let inside = e > s && spans.iter().any(|r| s < r.end && e > r.start);
            if inside {
                id
            } else {
                IGNORE_INDEX
            }
        })
        .collect()
}

/// An Alpaca example as one user message: the instruction, then the input after a blank line.
fn alpaca_user(instruction: &str, input: &str) -> String {
    if input.trim().is_empty() {
        instruction.to_string()
    } else {
        format!("{instruction}\n\n{input}")
    }
}

/// Stanford Alpaca's prompt of an instruction (and input).
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    if input.trim().is_empty() {
        ALPACA_NO_INPUT.replace("{instruction}", instruction)
    } else {
        ALPACA_WITH_INPUT.replace("{instruction}", instruction).replace("{input}", input)
    }
}
