//! Chat templates: the `chat_template` of a model's `tokenizer_config.json`, rendered as transformers'
//! `apply_chat_template(..., tokenize=False)` renders it.
//!
//! Templates are Jinja programs written for Python's `jinja2`; they are run by the `minijinja` crate (as Hugging
//! Face's text-generation-inference runs them) in the environment transformers builds in
//! `utils/chat_template_utils.py`: `trim_blocks` and `lstrip_blocks` on, loop controls, `raise_exception`,
//! `strftime_now`, a `tojson` filter that writes what Python's `json.dumps` writes (no HTML escaping), and the
//! Python string methods (`.strip()`, `.startswith()` …) through `minijinja-contrib`'s pycompat layer.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The name the template carries inside minijinja; errors print it with the line (`chat_template:12`).
const TEMPLATE_NAME: &str = "chat_template";

/// The special tokens transformers passes to every template (`tokenizer.special_tokens_map`).
const SPECIAL_TOKEN_KEYS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"];

/// End-of-turn markers of the common chat families, used as stop tokens when the vocabulary has them: Llama 3
/// (`<|eot_id|>`, and `<|eom_id|>` after a tool call), ChatML — Qwen, SmolLM2 — (`<|im_end|>`), Phi-3 (`<|end|>`)
/// and Gemma (`<end_of_turn>`). Their models' `eos_token` is often the end-of-text token instead, which a chat
/// model does not emit at the end of a reply.
const END_OF_TURN_MARKERS: [&str; 5] = ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"];

/// One message of a conversation in OpenAI's shape. Fields other than `role` and `content` (`name`,
/// `tool_calls` …) are kept and handed to the template as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool` …
    pub role: String,
    /// The message text.
    pub content: String,
    /// Any further fields of the message.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Json>,
}

impl ChatMessage {
    /// A message with a role and a text and no other field.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into(), extra: serde_json::Map::new() }
    }
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special_tokens: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

impl ChatTemplate {
    /// Reads the template of a `tokenizer_config.json` (a path to the file or to the model folder that holds it).
    ///
    /// `chat_template` may be a string or transformers' list of named templates (`[{"name", "template"}]`, of which
    /// `default` is taken); without one there, a `chat_template.jinja` beside the file (where transformers ≥ 4.43
    /// saves it) is read. `bos_token`/`eos_token` … may be strings or `AddedToken` objects (`{"content": …}`).
    pub fn from_tokenizer_config(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_tokenizer_config_named(path, None)
    }

    /// As [`ChatTemplate::from_tokenizer_config`], choosing a named template (`tool_use`, `rag` …) of the list
    /// form; `None` takes `default`.
    pub fn from_tokenizer_config_named(path: impl AsRef<Path>, name: Option<&str>) -> Result<Self> {
        let mut path: PathBuf = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer_config.json");
        }
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("{origin}: cannot read the tokenizer config"))?;
        let config: Json = serde_json::from_str(&text).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
        let jinja_file = path.with_file_name("chat_template.jinja");
        if config.get("chat_template").is_none_or(Json::is_null) && jinja_file.is_file() {
            let source = std::fs::read_to_string(&jinja_file)
                .with_context(|| format!("{}: cannot read the chat template", jinja_file.display()))?;
            let special = special_tokens(&config, &origin)?;
            return Self::new(source, special, &jinja_file.display().to_string());
        }
        Self::from_config_value(&config, name, &origin)
    }

    /// The template of an already parsed `tokenizer_config.json`; `origin` names it in errors.
    pub fn from_config_value(config: &Json, name: Option<&str>, origin: &str) -> Result<Self> {
        let source = match config.get("chat_template") {
            None | Some(Json::Null) => bail!(
                "{origin}: no `chat_template`: this tokenizer has no chat template (a base model, not an instruct or \
                 chat model?); give one explicitly"
            ),
            Some(Json::String(s)) => {
                if let Some(name) = name.filter(|n| *n != "default") {
                    bail!("{origin}: `chat_template` is a single template; there is no template named `{name}`");
                }
                s.clone()
            }
            Some(Json::Array(items)) => {
                let wanted = name.unwrap_or("default");
                let mut names = Vec::new();
                let mut found = None;
                for (i, item) in items.iter().enumerate() {
                    let (Some(n), Some(t)) =
                        (item.get("name").and_then(Json::as_str), item.get("template").and_then(Json::as_str))
                    else {
                        bail!("{origin}: `chat_template[{i}]` should be an object with string `name` and `template`");
                    };
                    names.push(n.to_string());
                    if n == wanted {
                        found = Some(t.to_string());
                    }
                }
                found.ok_or_else(|| {
                    anyhow!("{origin}: `chat_template` has no template named `{wanted}` (it has: {})", names.join(", "))
                })?
            }
            Some(other) => bail!(
                "{origin}: `chat_template` should be a string or a list of {{\"name\", \"template\"}} objects, not {}",
                json_kind(other)
            ),
        };
        let special = special_tokens(config, origin)?;
        Self::new(source, special, origin)
    }

    /// Compiles a template from its source. `special_tokens` are the variables `bos_token`, `eos_token` … the
    /// template sees; `origin` names the template in errors (a file path).
    pub fn new(source: impl Into<String>, special_tokens: Vec<(&'static str, String)>, origin: &str) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        // What transformers' `_compile_jinja_template` sets: `{% ... %}` eats the newline after it and the
        // indentation before it, so that templates may be written over several lines.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| anyhow!("{origin}: the chat template does not compile: {}", describe(&e)))?;
        Ok(ChatTemplate { env, source, origin: origin.to_string(), special_tokens })
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from (a file path), as errors name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A special token of the config (`bos_token`, `eos_token` …), when it has one.
    pub fn special_token(&self, key: &str) -> Option<&str> {
        self.special_tokens.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// The beginning-of-sequence token, when the config names one.
    pub fn bos_token(&self) -> Option<&str> {
        self.special_token("bos_token")
    }

    /// The end-of-sequence token, when the config names one.
    pub fn eos_token(&self) -> Option<&str> {
        self.special_token("eos_token")
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends with the header of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let messages = serde_json::to_value(messages).expect("messages serialize");
        self.render_json(&messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Renders a conversation given as JSON (OpenAI's `messages` array, any extra fields kept), with further
    /// template variables in `extra` (`date_string`, `tools`, `enable_thinking` …; they override the defaults).
    pub fn render_json(
        &self,
        messages: &Json,
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, Json>,
    ) -> Result<String> {
        let origin = &self.origin;
        let Json::Array(list) = messages else {
            bail!(
                "{origin}: `messages` should be a list of {{\"role\", \"content\"}} objects, not {}",
                json_kind(messages)
            );
        };
        for (i, m) in list.iter().enumerate() {
            match m.get("role") {
                Some(Json::String(_)) => {}
                Some(other) => bail!("messages[{i}]: `role` should be a string, not {}", json_kind(other)),
                None if m.is_object() => bail!("messages[{i}]: a message without a `role`"),
                None => bail!("messages[{i}]: a message should be an object, not {}", json_kind(m)),
            }
        }
        // The variables transformers' `render_jinja_template` passes: the messages, `tools` and `documents` (None
        // when not given), `add_generation_prompt`, the special tokens, then the caller's keyword arguments.
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("tools".into(), Json::Null);
        ctx.insert("documents".into(), Json::Null);
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        for (k, v) in &self.special_tokens {
            ctx.insert((*k).into(), Json::String(v.clone()));
        }
        for (k, v) in extra {
            ctx.insert(k.clone(), v.clone());
        }
        let template = self.env.get_template(TEMPLATE_NAME).expect("the template was added in new");
        template.render(Value::from_serialize(&ctx)).map_err(|e| {
            if e.kind() == ErrorKind::InvalidOperation && is_raised(&e) {
                anyhow!(
                    "{origin}: the chat template refused the conversation: {} (template line {})",
                    e.detail().unwrap_or_default().trim_start_matches(RAISED),
                    e.line().unwrap_or(0)
                )
            } else {
                anyhow!("{origin}: the chat template failed to render: {}", describe(&e))
            }
        })
    }

    /// The tokens that end a model's turn, for stopping generation: `eos_token` and the chat families' end-of-turn
    /// markers (`<|eot_id|>`, `<|im_end|>` …) that are among `added_tokens` (the tokenizer's added tokens, e.g.
    /// `tokenizer.json`'s `added_tokens[].content`). Without duplicates, `eos_token` first.
    pub fn end_of_turn_tokens<S: AsRef<str>>(&self, added_tokens: &[S]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(eos) = self.eos_token() {
            out.push(eos.to_string());
        }
        for marker in END_OF_TURN_MARKERS {
            if added_tokens.iter().any(|t| t.as_ref() == marker) && !out.iter().any(|t| t == marker) {
                out.push(marker.to_string());
            }
        }
        out
    }
}

/// The special tokens of a tokenizer config, strings or `AddedToken` objects.
fn special_tokens(config: &Json, origin: &str) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for key in SPECIAL_TOKEN_KEYS {
        match config.get(key) {
            None | Some(Json::Null) => {}
            Some(Json::String(s)) => out.push((key, s.clone())),
            Some(Json::Object(o)) => match o.get("content") {
                Some(Json::String(s)) => out.push((key, s.clone())),
                _ => bail!("{origin}: `{key}` is an object without a string `content`"),
            },
            Some(other) => {
                bail!("{origin}: `{key}` should be a string or an AddedToken object, not {}", json_kind(other))
            }
        }
    }
    Ok(out)
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// A minijinja error as one line: what is wrong and the template line (`… (template line 3)`).
fn describe(e: &JinjaError) -> String {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("{what} (template line {line})"),
        None => what,
    }
}

/// Marks the errors `raise_exception` makes, so that they read as the template's own message.
const RAISED: &str = "raise_exception: ";

fn is_raised(e: &JinjaError) -> bool {
    e.detail().is_some_and(|d| d.starts_with(RAISED))
}

/// `raise_exception(message)`: templates call it to refuse a conversation (e.g. roles that do not alternate).
fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, format!("{RAISED}{message}")))
}

/// `strftime_now(format)`: the current UTC date and time, formatted as Python's `datetime.strftime`
/// (Llama 3.2's template prints `Today Date: 02 Dec 2026` with `"%d %b %Y"`).
fn strftime_now(format: String) -> Result<Value, JinjaError> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    strftime(&format, secs as i64).map(Value::from)
}

/// Formats seconds since the Unix epoch (UTC) with the common `strftime` directives.
pub(crate) fn strftime(format: &str, epoch_secs: i64) -> Result<String, JinjaError> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('b') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('%') => out.push('%'),
            other => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{}", other.map(String::from).unwrap_or_default()),
                ))
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=None, sort_keys=False)` as transformers overrides
/// the filter — `", "` and `": "` separators, no HTML escaping (minijinja's own escapes `<` for HTML).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    python_json(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
    if ensure_ascii.unwrap_or(false) {
        out = out.chars().map(|c| if c.is_ascii() { c.to_string() } else { utf16_escapes(c) }).collect();
    }
    Ok(Value::from_safe_string(out))
}

fn utf16_escapes(c: char) -> String {
    let mut buf = [0u16; 2];
    c.encode_utf16(&mut buf).iter().map(|u| format!("\\u{u:04x}")).collect()
}

/// Writes `v` as Python's `json.dumps` does.
pub(crate) fn python_json(v: &Json, indent: Option<usize>, sort_keys: bool, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            // Python's float repr keeps a `.0` on whole numbers.
            (_, _, Some(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => out.push_str(&format!("{f:.1}")),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
        Json::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                python_json(item, indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Json::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).expect("strings serialize"));
                out.push_str(": ");
                python_json(item, indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
