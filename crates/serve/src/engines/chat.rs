//! Decoder-only language models behind the chat and completion routes: each request of a batch is checked
//! (template, context), then the accepted ones are generated together by one [`LanguageModel::generate`] call
//! whose text deltas go to each request's channel as they come, so that a stream is answered while its batch runs.

use std::path::Path;

use suite_text::chat::ChatMessage;
use suite_text::generate::{Generated, GenerationRequest, LanguageModel, SamplingParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::AppError;
use crate::state::ModelInfo;
use crate::worker::{Engine, Queue};

/// The task name of a language model in `GET /v1/models`.
pub const TEXT_GENERATION: &str = "text-generation";

/// What a request asks the model to continue.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Text continued as it is (`/v1/completions`).
    Text(String),
    /// A conversation, rendered by the model's chat template with the assistant's turn opened.
    Messages(Vec<ChatMessage>),
}

/// The progress of one generation, sent on its request's channel.
pub enum ChatEvent {
    /// The prompt was accepted (it renders and fits the context) and generation has started.
    Started,
    /// New text: complete characters that cannot be the start of a stop string.
    Delta(String),
    /// The generation's outcome. The engine never sends it: whoever submitted the request does, once the
    /// worker has answered (so that a failure outside the engine reaches the stream too).
    Done(Result<Generated, AppError>),
}

/// Where the events of a generation go: a channel shared by the generations of one HTTP request, each event
/// tagged with its generation's `index` (its choice).
#[derive(Debug, Clone)]
pub struct Events {
    pub index: usize,
    pub tx: UnboundedSender<(usize, ChatEvent)>,
}

impl Events {
    /// Sends `event`; a client that has gone away is not an error (the batch goes on without it).
    pub fn send(&self, event: ChatEvent) {
        let _ = self.tx.send((self.index, event));
    }
}

/// One generation (one choice of an HTTP request).
pub struct ChatRequest {
    pub prompt: Prompt,
    /// The part of the body the prompt came from (`messages`, `prompt`, `prompt[2]`), named by its errors.
    pub param: String,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// The most new tokens; `None` for as many as the context leaves.
    pub max_tokens: Option<usize>,
    /// The field `max_tokens` came from (`max_tokens` or `max_completion_tokens`), named by its errors.
    pub max_tokens_param: &'static str,
    /// Strings that end the text (not included in it).
    pub stop: Vec<String>,
    pub events: Events,
}

/// The queue of a language model.
pub type ChatQueue = Queue<ChatRequest, Generated>;

/// A loaded language model on its inference thread.
pub struct ChatEngine {
    lm: LanguageModel,
}

impl ChatEngine {
    /// Loads a hub-layout folder or an SFT output (full or PEFT), as [`LanguageModel::load`] does.
    /// With `int8`, its linear layers run in int8.
    pub fn load(dir: &Path, device: tch::Device, int8: bool) -> anyhow::Result<(Self, ModelInfo)> {
        if !dir.is_dir() {
            anyhow::bail!("{}: no such model folder (has the run saved it? --which best|final picks)", dir.display());
        }
        let mut lm = LanguageModel::load(dir, device)?;
        if int8 {
            lm.quantize_int8()?;
        }
        let info = ModelInfo {
            task: TEXT_GENERATION.into(),
            labels: Vec::new(),
            precision: super::precision_name(int8),
            preprocessor: None,
        };
        Ok((Self { lm }, info))
    }

    /// The prompt of `r` as the model will continue it, checked against the context: a 400 naming the body part
    /// at fault otherwise.
    fn prepare(&self, r: &ChatRequest) -> Result<GenerationRequest, AppError> {
        let param = r.param.as_str();
        let prompt = match &r.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Messages(messages) => {
                self.lm.render_chat(messages, true).map_err(|e| AppError::bad(param, format!("{param}: {e:#}")))?
            }
        };
        let tokens = self.lm.encode(&prompt).len();
        let context = self.lm.info().max_position_embeddings.max(0) as usize;
        if tokens == 0 {
            return Err(AppError::bad(param, format!("{param}: the prompt is empty: there is nothing to continue")));
        }
        if tokens >= context {
            return Err(AppError::bad(
                param,
                format!(
                    "{param}: the prompt is {tokens} tokens; the model's context is {context} tokens \
                     (max_position_embeddings), which must leave room for at least one new token: shorten it"
                ),
            ));
        }
        let room = context - tokens;
        let max_new_tokens = match r.max_tokens {
            None => room,
            Some(n) if n > room => {
                let at = r.max_tokens_param;
                return Err(AppError::bad(
                    at,
                    format!(
                        "{at} = {n}: the model's context is {context} tokens and the prompt takes {tokens}, which \
                         leaves {room} new tokens: lower {at} or shorten the prompt"
                    ),
                ));
            }
            Some(n) => n,
        };
        Ok(GenerationRequest { prompt, sampling: r.sampling, seed: r.seed, max_new_tokens, stop: r.stop.clone() })
    }
}

impl Engine for ChatEngine {
    type Request = ChatRequest;
    type Response = Generated;

    fn run(&mut self, batch: Vec<ChatRequest>) -> Vec<Result<Generated, AppError>> {
        let mut results: Vec<Option<Result<Generated, AppError>>> = batch.iter().map(|_| None).collect();
        // `rows[k]`: the batch position of the k-th generation.
        let (mut rows, mut requests) = (Vec::new(), Vec::new());
        for (i, r) in batch.iter().enumerate() {
            match self.prepare(r) {
                Ok(g) => {
                    rows.push(i);
                    requests.push(g);
                    r.events.send(ChatEvent::Started);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !requests.is_empty() {
            let mut forward = |k: usize, delta: &str| {
                if let Some(&i) = rows.get(k) {
                    batch[i].events.send(ChatEvent::Delta(delta.to_string()));
                }
            };
            match tch::no_grad(|| self.lm.generate(&requests, &mut forward)) {
                Ok(generated) if generated.len() == rows.len() => {
                    for (&i, g) in rows.iter().zip(generated) {
                        results[i] = Some(Ok(g));
                    }
                }
                Ok(_) => {
                    for &i in &rows {
                        results[i] = Some(Err(AppError::Internal("a generation is missing".into())));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for &i in &rows {
                        results[i] = Some(Err(AppError::Internal(msg.clone())));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(AppError::Internal("unanswered".into())))).collect()
    }
}
