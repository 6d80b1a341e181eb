//! Extractive question answering examples in SQuAD v1.1 / v2.0 JSON, and SQuAD-style prediction files.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::read_utf8;
use crate::data::datasets::QaPrediction;

/// One gold answer: its text and where it starts in the context, in characters (not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaAnswer {
    /// The answer text, exactly as it appears in the context.
    pub text: String,
    /// Character offset of the answer in the context.
    pub start: usize,
}

/// One question about one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaExample {
    /// The question id (unique in the file).
    pub id: String,
    /// The question.
    pub question: String,
    /// The paragraph that holds the answer.
    pub context: String,
    /// Gold answers (SQuAD dev sets give several; training uses the first). Empty for unanswerable questions.
    pub answers: Vec<QaAnswer>,
    /// SQuAD v2: the context does not answer the question.
    pub is_impossible: bool,
}

/// The SQuAD JSON layout as serde reads it (shared with `suite inspect`'s lenient reader).
#[derive(Deserialize)]
pub(crate) struct SquadFile {
    pub(crate) data: Vec<Article>,
}

#[derive(Deserialize)]
pub(crate) struct Article {
    pub(crate) paragraphs: Vec<Paragraph>,
}

#[derive(Deserialize)]
pub(crate) struct Paragraph {
    pub(crate) context: String,
    pub(crate) qas: Vec<Question>,
}

#[derive(Deserialize)]
pub(crate) struct Question {
    pub(crate) id: String,
    pub(crate) question: String,
    #[serde(default)]
    pub(crate) answers: Vec<Answer>,
    #[serde(default)]
    pub(crate) is_impossible: bool,
}

#[derive(Deserialize)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) answer_start: usize,
}

/// Reads SQuAD v1.1 or v2.0 JSON (`{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
/// [{"text", "answer_start"}], "is_impossible"?}]}]}]}`). Every answer must appear at its `answer_start`
/// (characters, as Python indexes strings); a mismatch, or a repeated question id, is an error naming the id.
pub fn read_squad(path: &Path) -> Result<Vec<QaExample>> {
    let file = path.display();
    let text = read_utf8(path)?;
    if text.trim().is_empty() {
        bail!("{file}: the file is empty: expected SQuAD JSON with a `data` list");
    }
    let squad: SquadFile = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: not SQuAD JSON: {e}"))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for article in squad.data {
        for paragraph in article.paragraphs {
            // Character index → byte index, so offsets are checked in characters as SQuAD defines them.
            let bytes: Vec<usize> =
                paragraph.context.char_indices().map(|(b, _)| b).chain([paragraph.context.len()]).collect();
            let n_chars = bytes.len() - 1;
            for q in paragraph.qas {
                if !seen.insert(q.id.clone()) {
                    bail!("{file}: question id `{}` appears twice; ids must be unique", q.id);
                }
                let mut answers = Vec::with_capacity(q.answers.len());
                for (k, a) in q.answers.into_iter().enumerate() {
                    let end = a.answer_start + a.text.chars().count();
                    let found = (end <= n_chars).then(|| &paragraph.context[bytes[a.answer_start]..bytes[end]]);
                    if found != Some(a.text.as_str()) {
                        bail!(
                            "{file}: question `{}`: answer {k} `{}` is not at its answer_start {} (characters) of the \
                             context: found {}",
                            q.id,
                            a.text,
                            a.answer_start,
                            match found {
                                Some(f) => format!("`{f}`"),
                                None => format!("the end of the context ({n_chars} characters)"),
                            }
                        );
                    }
                    answers.push(QaAnswer { text: a.text, start: a.answer_start });
                }
                out.push(QaExample {
                    id: q.id,
                    question: q.question,
                    context: paragraph.context.clone(),
                    answers,
                    is_impossible: q.is_impossible,
                });
            }
        }
    }
    if out.is_empty() {
        bail!("{file}: no questions in the `data` list");
    }
    Ok(out)
}

/// Writes predictions as SQuAD's evaluation script reads them: one JSON object `{"question id": "answer text"}`.
pub fn write_squad_predictions(path: &Path, predictions: &[QaPrediction]) -> Result<()> {
    let map: BTreeMap<&str, &str> = predictions.iter().map(|p| (p.id.as_str(), p.text.as_str())).collect();
    let json = serde_json::to_string_pretty(&map)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
