//! Named-entity (token tagging) sentences from CoNLL column files or JSON lines.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{extension, quote_json, read_utf8};
use crate::data::labels::LabelSet;

/// One sentence: its words and one tag per word (`O`, `B-PER`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NerSentence {
    /// Words, as split in the file.
    pub tokens: Vec<String>,
    /// One tag per word.
    pub tags: Vec<String>,
}

/// Reads NER sentences.
///
/// `.jsonl`/`.json`: one `{"tokens": [...], "tags": [...]}` per line (`"ner_tags"` is accepted for `"tags"` when it
/// holds tag names). Anything else is a CoNLL column file: whitespace-separated columns with the word first and
/// the tag last, blank lines between sentences, `-DOCSTART-` lines skipped. The number of columns is fixed by
/// the first data line; a line with another count is an error naming it.
pub fn read_ner(path: &Path) -> Result<Vec<NerSentence>> {
    Ok(read_with_lines(path)?.into_iter().map(|(s, _)| s).collect())
}

/// [`read_ner`] with every tag checked against `labels`, so an unknown tag is reported with its file and line.
pub fn read_ner_checked(path: &Path, labels: &LabelSet) -> Result<Vec<NerSentence>> {
    let sentences = read_with_lines(path)?;
    for (sentence, lines) in &sentences {
        for (tag, line) in sentence.tags.iter().zip(lines) {
            labels.index(tag).with_context(|| format!("{}: line {line}: tag", path.display()))?;
        }
    }
    Ok(sentences.into_iter().map(|(s, _)| s).collect())
}

/// [`read_ner`] with the line of each word's tag (1-based; for JSON lines all the sentence's line), for reports
/// that name the line of a tag.
pub fn read_ner_lines(path: &Path) -> Result<Vec<(NerSentence, Vec<usize>)>> {
    read_with_lines(path)
}

/// Sentences with the line of each tag (all the same line for JSON lines).
fn read_with_lines(path: &Path) -> Result<Vec<(NerSentence, Vec<usize>)>> {
    let text = read_utf8(path)?;
    let sentences = match extension(path).as_str() {
        "jsonl" | "json" => read_json_lines(path, &text)?,
        _ => read_conll(path, &text)?,
    };
    if sentences.is_empty() {
        bail!("{}: no sentences (the file is empty or has only -DOCSTART- lines)", path.display());
    }
    Ok(sentences)
}

fn read_conll(path: &Path, text: &str) -> Result<Vec<(NerSentence, Vec<usize>)>> {
    let file = path.display();
    let mut out = Vec::new();
    let mut current = (NerSentence { tokens: Vec::new(), tags: Vec::new() }, Vec::new());
    // (number of columns, line that fixed it)
    let mut width: Option<(usize, usize)> = None;
    let flush = |current: &mut (NerSentence, Vec<usize>), out: &mut Vec<_>| {
        if !current.0.tokens.is_empty() {
            out.push(std::mem::replace(current, (NerSentence { tokens: Vec::new(), tags: Vec::new() }, Vec::new())));
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() {
            flush(&mut current, &mut out);
            continue;
        }
        if fields[0] == "-DOCSTART-" {
            flush(&mut current, &mut out);
            continue;
        }
        match width {
            None if fields.len() < 2 => {
                bail!("{file}: line {line}: 1 column, expected at least 2 (the word first, its tag last)")
            }
            None => width = Some((fields.len(), line)),
            Some((n, first)) if n != fields.len() => bail!(
                "{file}: line {line}: {} columns, expected {n} as on line {first} (the first data line)",
                fields.len()
            ),
            Some(_) => {}
        }
        current.0.tokens.push(fields[0].to_string());
        current.0.tags.push(fields[fields.len() - 1].to_string());
        current.1.push(line);
    }
    flush(&mut current, &mut out);
    Ok(out)
}

fn read_json_lines(path: &Path, text: &str) -> Result<Vec<(NerSentence, Vec<usize>)>> {
    let file = path.display();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| anyhow::anyhow!("{file}: line {line}: malformed JSON ({e}); expected one object per line"))?;
        let Value::Object(obj) = value else {
            bail!("{file}: line {line}: expected a JSON object, got {}", quote_json(&value));
        };
        let strings = |name: &str| -> Result<Vec<String>> {
            let Some(Value::Array(items)) = obj.get(name) else {
                bail!("{file}: line {line}: field `{name}`: expected a list of strings");
            };
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) if name == "ner_tags" => bail!(
                        "{file}: line {line}: field `ner_tags`: holds tag indices ({v}); give tag names (\"B-PER\"), \
                         in `tags` or `ner_tags`"
                    ),
                    _ => bail!(
                        "{file}: line {line}: field `{name}`: expected a list of strings, found {}",
                        quote_json(v)
                    ),
                })
                .collect()
        };
        let tokens = strings("tokens")?;
        let tag_field = if obj.contains_key("tags") || !obj.contains_key("ner_tags") { "tags" } else { "ner_tags" };
        let tags = strings(tag_field)?;
        if tokens.len() != tags.len() {
            bail!(
                "{file}: line {line}: field `{tag_field}`: {} tags for {} tokens; expected one tag per token",
                tags.len(),
                tokens.len()
            );
        }
        if !tokens.is_empty() {
            let n = tokens.len();
            out.push((NerSentence { tokens, tags }, vec![line; n]));
        }
    }
    Ok(out)
}
