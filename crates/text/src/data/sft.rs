//! Supervised fine-tuning data for decoder-only language models, read from JSON lines or plain text.
//!
//! A `.jsonl`/`.json` file holds one example per line in one of four shapes, detected from the first example and
//! then required of every line (a file mixing them is almost always a concatenation mistake):
//!
//! - chat, OpenAI's fine-tuning shape: `{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": …}, …]}`
//!   with at least one assistant turn;
//! - prompt/completion: `{"prompt": …, "completion": …}`;
//! - Alpaca: `{"instruction": …, "input": …?, "output": …}`;
//! - plain text (continued pre-training): `{"text": …}`.
//!
//! A `.txt` file is plain text, one document per block of lines separated by blank lines. Every error names the
//! file, the line and the field.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

use super::sources::{extension, quote_json, read_utf8};
use crate::chat::ChatMessage;

/// The roles a chat example may use.
pub const SFT_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// What one SFT example holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SftContent {
    /// A conversation; the loss covers the assistant turns.
    Chat(Vec<ChatMessage>),
    /// A prompt and the completion the model learns to write.
    Completion {
        /// The prompt (no loss).
        prompt: String,
        /// The completion (loss).
        completion: String,
    },
    /// An Alpaca instruction, with its optional input and the expected output.
    Alpaca {
        /// The task description.
        instruction: String,
        /// Context for the task; empty when the line has none.
        input: String,
        /// The response (loss).
        output: String,
    },
    /// Plain text: every token carries the loss.
    Text(String),
}

impl SftContent {
    /// The format's name, as errors and reports spell it.
    pub fn format(&self) -> SftFormat {
        match self {
            SftContent::Chat(_) => SftFormat::Chat,
            SftContent::Completion { .. } => SftFormat::Completion,
            SftContent::Alpaca { .. } => SftFormat::Alpaca,
            SftContent::Text(_) => SftFormat::Text,
        }
    }
}

/// The four example shapes of an SFT file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SftFormat {
    /// `{"messages": [...]}`.
    Chat,
    /// `{"prompt", "completion"}`.
    Completion,
    /// `{"instruction", "input"?, "output"}`.
    Alpaca,
    /// `{"text"}` or a `.txt` file.
    Text,
}

impl std::fmt::Display for SftFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SftFormat::Chat => "chat {\"messages\"}",
            SftFormat::Completion => "{\"prompt\", \"completion\"}",
            SftFormat::Alpaca => "Alpaca {\"instruction\", \"input\", \"output\"}",
            SftFormat::Text => "plain text {\"text\"}",
        })
    }
}

/// One example and where it came from, for errors raised later (tokenization, templates).
#[derive(Debug, Clone, PartialEq)]
pub struct SftExample {
    /// The example.
    pub content: SftContent,
    /// The file it was read from.
    pub file: PathBuf,
    /// Its 1-based line (the first line of its block in a `.txt` file).
    pub line: usize,
}

impl SftExample {
    /// `file:line`, the prefix of every error about this example.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Reads an SFT file: `.jsonl`/`.json` (one example per line, one format per file) or `.txt` (blank-line separated
/// documents). Errors name the file, the line and the field.
pub fn read_sft(path: &Path) -> Result<Vec<SftExample>> {
    let text = read_utf8(path)?;
    let examples = match extension(path).as_str() {
        "txt" | "text" | "md" => read_text_blocks(path, &text),
        "jsonl" | "json" | "ndjson" => read_jsonl(path, &text)?,
        other => bail!(
            "{}: unknown SFT data extension {other:?}: expected .jsonl (chat, prompt/completion, Alpaca or text \
             lines) or .txt (plain text)",
            path.display()
        ),
    };
    if examples.is_empty() {
        bail!("{}: no examples (the file is empty)", path.display());
    }
    Ok(examples)
}

fn read_text_blocks(path: &Path, text: &str) -> Vec<SftExample> {
    let mut out = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, line) in text.lines().chain(std::iter::once("")).enumerate() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                out.push(SftExample {
                    content: SftContent::Text(block.join("\n")),
                    file: path.to_path_buf(),
                    line: start,
                });
                block.clear();
            }
        } else {
            if block.is_empty() {
                start = i + 1;
            }
            block.push(line.trim_end_matches('\r'));
        }
    }
    out
}

fn read_jsonl(path: &Path, text: &str) -> Result<Vec<SftExample>> {
    let mut out: Vec<SftExample> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{line_no}", path.display());
        let value: Value = serde_json::from_str(line).map_err(|e| anyhow!("{}: invalid JSON: {e}", at()))?;
        let Value::Object(obj) = value else {
            bail!("{}: expected a JSON object, found {}", at(), quote_json(&value));
        };
        let content = parse_object(&obj).map_err(|e| anyhow!("{}: {e}", at()))?;
        if let Some(first) = out.first() {
            if first.content.format() != content.format() {
                bail!(
                    "{}: a {} example in a file of {} examples (line {}); use one format per file",
                    at(),
                    content.format(),
                    first.content.format(),
                    first.line
                );
            }
        }
        out.push(SftExample { content, file: path.to_path_buf(), line: line_no });
    }
    Ok(out)
}

/// A string field, `None` when absent or null.
fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("field `{key}` should be a string, not {}", quote_json(other)),
    }
}

fn required(obj: &Map<String, Value>, key: &str, format: &str) -> Result<String> {
    string_field(obj, key)?.ok_or_else(|| anyhow!("field `{key}` is missing ({format} examples need it)"))
}

fn non_empty(value: String, key: &str) -> Result<String> {
    if value.trim().is_empty() {
        bail!("field `{key}` is empty: there is nothing to learn");
    }
    Ok(value)
}

/// The example of one JSON object, its shape told by its keys.
fn parse_object(obj: &Map<String, Value>) -> Result<SftContent> {
    if let Some(messages) = obj.get("messages") {
        return parse_messages(messages).map(SftContent::Chat);
    }
    if obj.contains_key("prompt") || obj.contains_key("completion") {
        let prompt = required(obj, "prompt", "prompt/completion")?;
        let completion = non_empty(required(obj, "completion", "prompt/completion")?, "completion")?;
        return Ok(SftContent::Completion { prompt, completion });
    }
    if obj.contains_key("instruction") || obj.contains_key("output") {
        let instruction = non_empty(required(obj, "instruction", "Alpaca")?, "instruction")?;
        let input = string_field(obj, "input")?.unwrap_or_default();
        let output = non_empty(required(obj, "output", "Alpaca")?, "output")?;
        return Ok(SftContent::Alpaca { instruction, input, output });
    }
    if obj.contains_key("text") {
        return Ok(SftContent::Text(non_empty(required(obj, "text", "text")?, "text")?));
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    bail!(
        "unknown example shape (keys {keys:?}): expected \"messages\" (chat), \"prompt\" + \"completion\", \
         \"instruction\" + \"output\" (Alpaca) or \"text\""
    )
}

fn parse_messages(messages: &Value) -> Result<Vec<ChatMessage>> {
    let Value::Array(list) = messages else {
        bail!("field `messages` should be a list of {{\"role\", \"content\"}} objects, not {}", quote_json(messages));
    };
    if list.is_empty() {
        bail!("field `messages` is an empty list");
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::Object(obj) = m else {
            bail!("messages[{i}] should be an object with `role` and `content`, not {}", quote_json(m));
        };
        let role = match obj.get("role") {
            None | Some(Value::Null) => bail!("messages[{i}] has no `role` (expected one of {SFT_ROLES:?})"),
            Some(Value::String(r)) => r.clone(),
            Some(other) => bail!("messages[{i}].role should be a string, not {}", quote_json(other)),
        };
        if !SFT_ROLES.contains(&role.as_str()) {
            bail!("messages[{i}].role = {role:?}: unknown role (expected one of {SFT_ROLES:?})");
        }
        let content = match obj.get("content") {
            Some(Value::String(c)) => c.clone(),
            None | Some(Value::Null) => bail!("messages[{i}] ({role}) has no `content`"),
            Some(other) => bail!("messages[{i}].content should be a string, not {}", quote_json(other)),
        };
        if role == "assistant" && content.trim().is_empty() {
            bail!("messages[{i}].content is empty: an assistant turn must say something to learn from");
        }
        let mut message = ChatMessage::new(role, content);
        message.extra =
            obj.iter().filter(|(k, _)| *k != "role" && *k != "content").map(|(k, v)| (k.clone(), v.clone())).collect();
        out.push(message);
    }
    if !out.iter().any(|m| m.role == "assistant") {
        bail!("field `messages`: the conversation has no assistant turn, so nothing would be learned");
    }
    Ok(out)
}
