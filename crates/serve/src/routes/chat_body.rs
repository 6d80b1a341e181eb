//! The JSON bodies of `POST /v1/chat/completions` and `POST /v1/completions`, read field by field so that every
//! error names the field at fault and says what was expected.
//!
//! OpenAI's fields that change what is generated and that this server does not do (`n` > 1, penalties other than 0,
//! log-probabilities, tools, JSON mode, `echo`…) are refused with a 400 rather than silently ignored; fields that
//! only label a request (`user`, `metadata`, `store`…) are accepted and ignored; any other field is a 400, as
//! OpenAI answers an unrecognised argument.

use serde_json::{Map, Value};
use suite_text::chat::ChatMessage;
use suite_text::generate::SamplingParams;

use crate::error::AppError;

/// Fields that only label or route a request on OpenAI's side; accepted and ignored.
const IGNORED: [&str; 5] = ["user", "metadata", "store", "service_tier", "parallel_tool_calls"];

/// Roles a chat message may have (`developer` is OpenAI's newer name for `system`).
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// What both routes ask of the generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationFields {
    /// The served model's id.
    pub model: String,
    pub sampling: SamplingParams,
    /// `None`: a random seed per request.
    pub seed: Option<u64>,
    /// The most new tokens, and the field that gave it (`max_tokens` or `max_completion_tokens`).
    pub max_tokens: Option<(usize, &'static str)>,
    /// Strings that end the text.
    pub stop: Vec<String>,
    /// Answer with server-sent events.
    pub stream: bool,
    /// A stream ends with a chunk holding the usage (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBody {
    pub fields: GenerationFields,
    pub messages: Vec<ChatMessage>,
}

/// A (legacy) completion request: one choice per prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionBody {
    pub fields: GenerationFields,
    pub prompts: Vec<String>,
}

/// The body's fields, taken out one by one; what is left at the end is unknown.
struct Fields(Map<String, Value>);

impl Fields {
    fn new(body: Value, shape: &str) -> Result<Self, AppError> {
        match body {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err(AppError::bad("body", format!("expected a JSON object {shape}"))),
        }
    }

    /// The field, or `None` when it is absent or `null` (OpenAI's clients send `null` for "not given").
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    /// A number within what `ok` accepts.
    fn number(&mut self, key: &str, ok: impl Fn(f64) -> bool, expected: &str) -> Result<Option<f64>, AppError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if ok(x) => Ok(Some(x)),
                _ => Err(AppError::bad(key, format!("{key} = {v}: expected {expected}"))),
            },
        }
    }

    /// A whole number ≥ `min`.
    fn whole(&mut self, key: &str, min: u64) -> Result<Option<u64>, AppError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= min => Ok(Some(n)),
                _ => Err(AppError::bad(key, format!("{key} = {v}: expected a whole number ≥ {min}"))),
            },
        }
    }

    fn flag(&mut self, key: &str) -> Result<Option<bool>, AppError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(AppError::bad(key, format!("{key} = {v}: expected true or false"))),
        }
    }

    /// Refuses a field unless it has a value that changes nothing (`0`, `false`, `[]`…).
    fn only_neutral(&mut self, key: &str, neutral: &[Value], why: &str) -> Result<(), AppError> {
        match self.take(key) {
            Some(v) if !neutral.contains(&v) => Err(AppError::bad(key, format!("{key} = {v}: {why}"))),
            _ => Ok(()),
        }
    }

    /// The first field nobody took, as a 400.
    fn finish(mut self) -> Result<(), AppError> {
        for key in IGNORED {
            self.0.remove(key);
        }
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) => Err(AppError::bad(key.as_str(), format!("unrecognised field {key:?}"))),
        }
    }
}

/// Reads `POST /v1/chat/completions`.
pub fn parse_chat(body: Value) -> Result<ChatBody, AppError> {
    let mut f = Fields::new(body, "{\"model\": …, \"messages\": [{\"role\", \"content\"}, …]}")?;
    let fields = generation_fields(&mut f, None)?;
    let messages = match f.take("messages") {
        None => {
            return Err(AppError::bad("messages", "the body has no `messages` (a list of {\"role\", \"content\"})"))
        }
        Some(v) => parse_messages(v)?,
    };
    f.only_neutral("logprobs", &[Value::Bool(false)], "log-probabilities are not served; leave it false")?;
    f.only_neutral("top_logprobs", &[0.into()], "log-probabilities are not served")?;
    f.only_neutral("tools", &[Value::Array(vec![])], "tool calls are not served")?;
    f.only_neutral("tool_choice", &["none".into(), "auto".into()], "tool calls are not served")?;
    f.only_neutral("functions", &[Value::Array(vec![])], "function calls are not served")?;
    f.only_neutral(
        "response_format",
        &[serde_json::json!({"type": "text"})],
        "only {\"type\": \"text\"} is served (no JSON mode)",
    )?;
    f.finish()?;
    Ok(ChatBody { fields, messages })
}

/// Reads `POST /v1/completions`.
pub fn parse_completion(body: Value) -> Result<CompletionBody, AppError> {
    let mut f = Fields::new(body, "{\"model\": …, \"prompt\": \"…\"}")?;
    // OpenAI's completions default to 16 new tokens.
    let fields = generation_fields(&mut f, Some(16))?;
    let prompts = match f.take("prompt") {
        None => return Err(AppError::bad("prompt", "the body has no `prompt` (a string or a list of strings)")),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(AppError::bad("prompt", "prompt: an empty list; expected at least one string"));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(AppError::bad(
                        format!("prompt[{i}]"),
                        format!("prompt[{i}] = {other}: expected a string (token ids are not taken; send the text)"),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(v) => {
            return Err(AppError::bad("prompt", format!("prompt = {v}: expected a string or a list of strings")))
        }
    };
    f.only_neutral("echo", &[Value::Bool(false)], "echoing the prompt is not served; leave it false")?;
    f.only_neutral("logprobs", &[0.into()], "log-probabilities are not served")?;
    f.only_neutral("best_of", &[1.into()], "only best_of = 1 is served")?;
    f.only_neutral("suffix", &["".into()], "insertion (a suffix) is not served")?;
    f.finish()?;
    Ok(CompletionBody { fields, prompts })
}

/// The fields both routes share. `default_max_tokens`: the budget when the request names none (`None`: what the
/// context leaves).
fn generation_fields(f: &mut Fields, default_max_tokens: Option<usize>) -> Result<GenerationFields, AppError> {
    let model = match f.take("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        None => {
            return Err(AppError::bad("model", "the body has no `model` (the id of a served model: GET /v1/models)"))
        }
        Some(v) => return Err(AppError::bad("model", format!("model = {v}: expected a model id (GET /v1/models)"))),
    };
    // OpenAI's defaults: temperature 1, top_p 1.
    let temperature = f.number("temperature", |t| (0.0..=2.0).contains(&t), "a number in 0..2 (0 = greedy)")?;
    let top_p = f.number("top_p", |p| p > 0.0 && p <= 1.0, "a number in (0, 1]")?;
    // Extensions (as vLLM has them): transformers' repetition penalty and top-k.
    let repetition_penalty = f.number("repetition_penalty", |r| r.is_finite() && r > 0.0, "a number > 0 (1 = off)")?;
    let top_k = match f.take("top_k") {
        None => 0,
        Some(v) => match v.as_i64() {
            // vLLM's -1 and 0 both mean every token.
            Some(k) if k >= -1 => k.max(0) as usize,
            _ => return Err(AppError::bad("top_k", format!("top_k = {v}: expected a whole number ≥ 0 (0 = off)"))),
        },
    };
    for key in ["frequency_penalty", "presence_penalty"] {
        f.number(key, |p| p == 0.0, "0 (this penalty is not served; repetition_penalty is)")?;
    }
    f.only_neutral("logit_bias", &[Value::Object(Map::new())], "logit biases are not served")?;
    if let Some(n) = f.whole("n", 1)? {
        if n != 1 {
            return Err(AppError::bad("n", format!("n = {n}: only one choice per request is served (n = 1)")));
        }
    }
    let max_tokens = match (f.whole("max_completion_tokens", 1)?, f.whole("max_tokens", 1)?) {
        (Some(a), Some(b)) if a != b => {
            return Err(AppError::bad(
                "max_tokens",
                format!("max_tokens = {b} and max_completion_tokens = {a}: give one of them"),
            ))
        }
        (Some(n), _) => Some((n as usize, "max_completion_tokens")),
        (None, Some(n)) => Some((n as usize, "max_tokens")),
        (None, None) => default_max_tokens.map(|n| (n, "max_tokens")),
    };
    let stop = match f.take("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(AppError::bad(format!("stop[{i}]"), format!("stop[{i}] = {other}: expected a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(AppError::bad("stop", format!("stop = {v}: expected a string or a list of strings"))),
    };
    if stop.iter().any(String::is_empty) {
        return Err(AppError::bad("stop", "stop: an empty string would stop before the first token"));
    }
    let seed = match f.take("seed") {
        None => None,
        // OpenAI takes any 64-bit integer; a negative one is as good a seed as its bits.
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|s| s as u64))
                .ok_or_else(|| AppError::bad("seed", format!("seed = {v}: expected a whole number")))?,
        ),
    };
    let stream = f.flag("stream")?.unwrap_or(false);
    let include_usage = match f.take("stream_options") {
        None => false,
        Some(_) if !stream => {
            return Err(AppError::bad("stream_options", "stream_options: only allowed with stream = true"));
        }
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(AppError::bad(
                    "stream_options.include_usage",
                    format!("stream_options.include_usage = {v}: expected true or false"),
                ))
            }
        },
        Some(v) => return Err(AppError::bad("stream_options", format!("stream_options = {v}: expected an object"))),
    };
    let sampling = SamplingParams {
        temperature: temperature.unwrap_or(1.0),
        top_k,
        top_p: top_p.unwrap_or(1.0),
        repetition_penalty: repetition_penalty.unwrap_or(1.0),
    };
    Ok(GenerationFields { model, sampling, seed, max_tokens, stop, stream, include_usage })
}

/// `messages`: a non-empty list of `{role, content}`; content a string or a list of text parts (joined by
/// newlines, as vLLM joins them). Other fields of a message (`name`, `tool_calls`…) go to the template as they are.
fn parse_messages(v: Value) -> Result<Vec<ChatMessage>, AppError> {
    let Value::Array(items) = v else {
        return Err(AppError::bad("messages", format!("messages = {v}: expected a list of {{\"role\", \"content\"}}")));
    };
    if items.is_empty() {
        return Err(AppError::bad("messages", "messages: an empty list; expected at least one message"));
    }
    items.into_iter().enumerate().map(|(i, m)| parse_message(i, m)).collect()
}

fn parse_message(i: usize, m: Value) -> Result<ChatMessage, AppError> {
    let at = format!("messages[{i}]");
    let Value::Object(mut obj) = m else {
        return Err(AppError::bad(at.clone(), format!("{at} = {m}: expected an object {{\"role\", \"content\"}}")));
    };
    let role = match obj.remove("role") {
        None | Some(Value::Null) => {
            return Err(AppError::bad(
                format!("{at}.role"),
                format!("{at} has no `role` (one of {})", ROLES.join(", ")),
            ))
        }
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r,
        Some(v) => {
            return Err(AppError::bad(
                format!("{at}.role"),
                format!("{at}.role = {v}: expected one of {}", ROLES.join(", ")),
            ))
        }
    };
    // Chat templates know `system`; OpenAI renamed it `developer` for its newer models.
    let role = if role == "developer" { "system".to_string() } else { role };
    let content = match obj.remove("content") {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => {
            let texts = parts
                .into_iter()
                .enumerate()
                .map(|(j, part)| text_part(&format!("{at}.content[{j}]"), part))
                .collect::<Result<Vec<_>, _>>()?;
            texts.join("\n")
        }
        // An assistant turn that only called tools has no content.
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None | Some(Value::Null) => {
            return Err(AppError::bad(format!("{at}.content"), format!("{at} ({role}) has no `content`")));
        }
        Some(v) => {
            return Err(AppError::bad(
                format!("{at}.content"),
                format!("{at}.content = {v}: expected a string or a list of {{\"type\": \"text\", \"text\"}} parts"),
            ))
        }
    };
    Ok(ChatMessage { role, content, extra: obj })
}

/// One part of a message's content: only text parts are served.
fn text_part(at: &str, part: Value) -> Result<String, AppError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    match (kind.as_str(), part.get("text")) {
        ("text", Some(Value::String(t))) => Ok(t.clone()),
        ("text", _) => Err(AppError::bad(at, format!("{at}: a text part needs a string `text`"))),
        ("", _) => Err(AppError::bad(at, format!("{at} = {part}: expected {{\"type\": \"text\", \"text\": \"…\"}}"))),
        (other, _) => Err(AppError::bad(at, format!("{at}: parts of type {other:?} are not served (text only)"))),
    }
}

#[cfg(test)]
#[path = "chat_body_tests.rs"]
mod tests;
