//! `POST /v1/chat/completions` and `POST /v1/completions`: OpenAI's text-generation APIs over the served language
//! models, answered with one JSON object or, with `stream: true`, with server-sent events of chunks ended by
//! `data: [DONE]`, so that OpenAI's own clients work unchanged.
//!
//! Each choice is one request to the model's queue, submitted from a task of its own: the batch it joins runs to
//! its end and the other requests get their answers whether or not this client stays connected. Its progress
//! (started, text deltas, done) comes back on one channel per HTTP request; a stream answers 200 only once every
//! choice has started, so that a prompt that does not fit is a JSON 400, not a broken stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use suite_text::generate::Generated;
use tokio::sync::mpsc;

use super::chat_body::{parse_chat, parse_completion, GenerationFields};
use super::predict::{body_bytes, media_type};
use super::ModelLabel;
use crate::engines::{ChatEvent, ChatRequest, Events, Prompt, TEXT_GENERATION};
use crate::error::AppError;
use crate::state::{AppState, Handle};

/// The events of one HTTP request's generations, tagged with their choice index.
type EventRx = mpsc::UnboundedReceiver<(usize, ChatEvent)>;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, AppError> {
    let chat = parse_chat(read_json(&state, req).await?)?;
    let prompts = vec![(Prompt::Messages(chat.messages), "messages".to_string())];
    answer(&state, Api::Chat, chat.fields, prompts).await
}

/// `POST /v1/completions`: one choice per prompt.
pub async fn completions(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, AppError> {
    let body = parse_completion(read_json(&state, req).await?)?;
    let many = body.prompts.len() > 1;
    let prompts = body
        .prompts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (Prompt::Text(p), if many { format!("prompt[{i}]") } else { "prompt".to_string() }))
        .collect();
    answer(&state, Api::Completion, body.fields, prompts).await
}

/// A JSON body (`application/json`).
async fn read_json(state: &Arc<AppState>, req: Request) -> Result<Value, AppError> {
    match media_type(&req).as_deref() {
        Some("application/json") => {}
        other => {
            return Err(AppError::UnsupportedMediaType(format!(
                "Content-Type {}: the body must be JSON (application/json)",
                other.unwrap_or("(none)")
            )))
        }
    }
    let bytes = body_bytes(state, req).await?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::bad("body", format!("the body is not valid JSON: {e}")))
}

/// Which API an answer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completion,
}

/// Submits one generation per prompt and answers: in one piece, or as a stream once every generation started.
async fn answer(
    state: &Arc<AppState>,
    api: Api,
    fields: GenerationFields,
    prompts: Vec<(Prompt, String)>,
) -> Result<Response, AppError> {
    let (served, info) = state.model(&fields.model)?;
    if !matches!(served.handle, Handle::Chat(_)) {
        return Err(AppError::bad(
            "model",
            format!(
                "model {:?} is a {} model; this route needs a language model (task {TEXT_GENERATION} in GET /v1/models)",
                fields.model, info.task
            ),
        ));
    }
    let n = prompts.len();
    let mut rx = submit(state, &fields, prompts);
    let meta = Meta::new(api, &fields.model);
    let mut response = if fields.stream {
        let backlog = started(&mut rx, n).await?;
        let chunks = Chunks {
            meta,
            rx,
            backlog,
            ready: VecDeque::new(),
            open: n,
            include_usage: fields.include_usage,
            usage: Usage::default(),
            ended: false,
        };
        let events = futures_util::stream::unfold(chunks, |mut c| async move {
            c.next_event().await.map(|e| (Ok::<_, Infallible>(e), c))
        });
        Sse::new(events).keep_alive(KeepAlive::default()).into_response()
    } else {
        let generated = finished(&mut rx, n).await?;
        Json(meta.completion(&generated)).into_response()
    };
    response.extensions_mut().insert(ModelLabel(fields.model));
    Ok(response)
}

/// Queues one generation per prompt, each from a task of its own that sends its outcome as the last event.
fn submit(state: &Arc<AppState>, fields: &GenerationFields, prompts: Vec<(Prompt, String)>) -> EventRx {
    let (tx, rx) = mpsc::unbounded_channel();
    let seed = fields.seed.unwrap_or_else(rand::random);
    let (max_tokens, max_tokens_param) = match fields.max_tokens {
        Some((n, param)) => (Some(n), param),
        None => (None, "max_tokens"),
    };
    for (index, (prompt, param)) in prompts.into_iter().enumerate() {
        let events = Events { index, tx: tx.clone() };
        let request = ChatRequest {
            prompt,
            param,
            sampling: fields.sampling,
            seed,
            max_tokens,
            max_tokens_param,
            stop: fields.stop.clone(),
            events: events.clone(),
        };
        let (state, model) = (state.clone(), fields.model.clone());
        tokio::spawn(async move {
            let result = match state.models.get(&model).map(|m| &m.handle) {
                Some(Handle::Chat(queue)) => queue.submit(request).await,
                _ => Err(AppError::Internal(format!("model {model:?} is not a language model"))),
            };
            events.send(ChatEvent::Done(result));
        });
    }
    rx
}

/// Waits until each of the `n` generations has started and returns the events received meanwhile, or answers the
/// first failure (a prompt that does not fit, a full queue) in their place.
async fn started(rx: &mut EventRx, n: usize) -> Result<VecDeque<(usize, ChatEvent)>, AppError> {
    let mut waiting = vec![true; n];
    let mut left = n;
    let mut backlog = VecDeque::new();
    while left > 0 {
        let Some((i, event)) = rx.recv().await else {
            return Err(AppError::Internal("the generations ended without an answer".into()));
        };
        match event {
            ChatEvent::Done(Err(e)) => return Err(e),
            ChatEvent::Started if waiting.get(i) == Some(&true) => {
                waiting[i] = false;
                left -= 1;
            }
            _ => {}
        }
        backlog.push_back((i, event));
    }
    Ok(backlog)
}

/// Waits for the outcome of each of the `n` generations; the first failure is the answer.
async fn finished(rx: &mut EventRx, n: usize) -> Result<Vec<Generated>, AppError> {
    let mut done: Vec<Option<Generated>> = (0..n).map(|_| None).collect();
    let mut left = n;
    while left > 0 {
        match rx.recv().await {
            None => return Err(AppError::Internal("the generations ended without an answer".into())),
            Some((i, ChatEvent::Done(result))) => {
                let g = result?;
                if let Some(slot @ None) = done.get_mut(i) {
                    *slot = Some(g);
                    left -= 1;
                }
            }
            Some(_) => {}
        }
    }
    Ok(done.into_iter().flatten().collect())
}

/// Token counts of an answer.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    prompt: usize,
    completion: usize,
}

impl Usage {
    fn add(&mut self, g: &Generated) {
        self.prompt += g.prompt_tokens;
        self.completion += g.completion_tokens;
    }

    fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// What every object of one answer shares: OpenAI's `id`, `created` and `model`.
struct Meta {
    api: Api,
    id: String,
    created: u64,
    model: String,
}

impl Meta {
    fn new(api: Api, model: &str) -> Self {
        let prefix = match api {
            Api::Chat => "chatcmpl",
            Api::Completion => "cmpl",
        };
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Meta { api, id: format!("{prefix}-{:032x}", rand::random::<u128>()), created, model: model.to_string() }
    }

    /// The whole answer: `chat.completion` or `text_completion`.
    fn completion(&self, generated: &[Generated]) -> Value {
        let mut usage = Usage::default();
        let choices: Vec<Value> = generated
            .iter()
            .enumerate()
            .map(|(index, g)| {
                usage.add(g);
                match self.api {
                    Api::Chat => json!({
                        "index": index,
                        "message": {"role": "assistant", "content": g.text, "refusal": null},
                        "logprobs": null,
                        "finish_reason": g.finish_reason,
                    }),
                    Api::Completion => json!({
                        "index": index,
                        "text": g.text,
                        "logprobs": null,
                        "finish_reason": g.finish_reason,
                    }),
                }
            })
            .collect();
        let object = match self.api {
            Api::Chat => "chat.completion",
            Api::Completion => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
            "usage": usage.to_json(),
        })
    }

    /// One chunk of a stream with these `choices`; `usage` is present (`null` until the last chunk) when the
    /// client asked for it, as OpenAI sends it.
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let object = match self.api {
            Api::Chat => "chat.completion.chunk",
            Api::Completion => "text_completion",
        };
        let mut chunk = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(u) = usage {
            chunk["usage"] = u;
        }
        chunk
    }

    /// A choice of a chunk: new text, the assistant's role (chat, once at the start), or the finish reason.
    fn choice(&self, index: usize, text: &str, role: bool, finish_reason: Option<&str>) -> Value {
        match self.api {
            Api::Chat => {
                let delta = match (role, finish_reason) {
                    (true, _) => json!({"role": "assistant", "content": text}),
                    (false, Some(_)) => json!({}),
                    (false, None) => json!({"content": text}),
                };
                json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
            }
            Api::Completion => json!({"index": index, "text": text, "logprobs": null, "finish_reason": finish_reason}),
        }
    }
}

/// The server-sent events of a stream, made from the generations' events as they arrive.
struct Chunks {
    meta: Meta,
    rx: EventRx,
    /// Events that arrived before the answer started.
    backlog: VecDeque<(usize, ChatEvent)>,
    /// Events ready to send.
    ready: VecDeque<Event>,
    /// Generations not done yet.
    open: usize,
    include_usage: bool,
    usage: Usage,
    /// `[DONE]` is queued: nothing follows.
    ended: bool,
}

impl Chunks {
    /// The next event to send; `None` after `[DONE]`.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let next = match self.backlog.pop_front() {
                Some(e) => Some(e),
                None => self.rx.recv().await,
            };
            match next {
                Some((index, event)) => self.on_event(index, event),
                None => {
                    self.push_error(&AppError::Internal("the generations ended without an answer".into()));
                    self.end();
                }
            }
        }
    }

    fn on_event(&mut self, index: usize, event: ChatEvent) {
        match event {
            ChatEvent::Started if self.meta.api == Api::Chat => self.push_choice(index, "", true, None),
            ChatEvent::Started => {}
            ChatEvent::Delta(text) if text.is_empty() => {}
            ChatEvent::Delta(text) => self.push_choice(index, &text, false, None),
            ChatEvent::Done(Ok(g)) => {
                self.usage.add(&g);
                self.push_choice(index, "", false, Some(&g.finish_reason));
                self.close_one();
            }
            ChatEvent::Done(Err(e)) => {
                // The stream has started (200): the failure is an event, which OpenAI's clients raise.
                self.push_error(&e);
                self.close_one();
            }
        }
    }

    fn push_choice(&mut self, index: usize, text: &str, role: bool, finish_reason: Option<&str>) {
        let choice = self.meta.choice(index, text, role, finish_reason);
        let chunk = self.meta.chunk(json!([choice]), self.include_usage.then_some(Value::Null));
        self.ready.push_back(Event::default().data(chunk.to_string()));
    }

    fn push_error(&mut self, e: &AppError) {
        eprintln!("error: a stream failed after its start: {e}");
        self.ready.push_back(Event::default().data(e.to_json().to_string()));
    }

    fn close_one(&mut self) {
        self.open = self.open.saturating_sub(1);
        if self.open == 0 {
            self.end();
        }
    }

    fn end(&mut self) {
        if self.include_usage {
            let chunk = self.meta.chunk(json!([]), Some(self.usage.to_json()));
            self.ready.push_back(Event::default().data(chunk.to_string()));
        }
        self.ready.push_back(Event::default().data("[DONE]"));
        self.ended = true;
    }
}
