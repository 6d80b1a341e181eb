//! Label sets (label name ↔ index), NER tag schemes and how word labels map onto sub-words.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::sources::NerSentence;

/// The label names of a task, index `i` being label `i`. Saved with a model so predictions map back to names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSet {
    /// Names in index order.
    pub names: Vec<String>,
}

/// How many names an error message lists before eliding the rest.
const NAMES_IN_ERRORS: usize = 20;

impl LabelSet {
    /// A label set in the given order (for example the `id2label` of a checkpoint).
    pub fn from_names(names: Vec<String>) -> Self {
        Self { names }
    }

    /// Sorted unique labels seen in the data (NER: sorted with "O" first).
    ///
    /// Sorting is by code point, so the order does not depend on the order of the data; `"O"`, when present,
    /// takes index 0 so that NER's outside tag is the same index in every tag set.
    pub fn collect<'a>(labels: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<&str> = labels.into_iter().collect();
        let mut names: Vec<String> = Vec::with_capacity(set.len());
        if set.contains("O") {
            names.push("O".into());
        }
        names.extend(set.into_iter().filter(|&n| n != "O").map(str::to_string));
        Self { names }
    }

    /// Index of `name`; an error lists the known labels.
    pub fn index(&self, name: &str) -> Result<usize> {
        match self.names.iter().position(|n| n == name) {
            Some(i) => Ok(i),
            None => {
                let shown: Vec<&str> = self.names.iter().take(NAMES_IN_ERRORS).map(String::as_str).collect();
                let more = self.names.len().saturating_sub(NAMES_IN_ERRORS);
                let tail = if more > 0 { format!(", … {more} more") } else { String::new() };
                bail!("label `{name}` is not in the label set [{}{tail}]", shown.join(", "))
            }
        }
    }

    /// Name of label `index`, if there is one.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// NER tagging schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagScheme {
    /// `I-X` inside and at the start of entities; `B-X` only where two `X` entities touch (CoNLL-2003's files).
    Iob1,
    /// Every entity starts with `B-X`, continues with `I-X` (what seqeval's default mode scores).
    Iob2,
    /// `B-X`, `I-X`, `E-X` (end), `S-X` (single-token entity).
    Bioes,
}

/// Splits a tag into prefix and entity type; `None` for `O`. Errors on anything else.
fn split_tag(tag: &str) -> Result<Option<(char, &str)>> {
    if tag == "O" {
        return Ok(None);
    }
    let mut chars = tag.chars();
    match (chars.next(), chars.next()) {
        (Some(p @ ('B' | 'I' | 'E' | 'S')), Some('-')) if tag.len() > 2 => Ok(Some((p, &tag[2..]))),
        _ => bail!("tag `{tag}` is not `O` or a prefix B-, I-, E-, S- followed by an entity type (as `B-PER`)"),
    }
}

/// Detects the tagging scheme of `sentences`, checking every tag: `E-`/`S-` tags mean BIOES; an `I-X` that starts
/// an entity (not after `B-X` or `I-X`) means IOB1; otherwise IOB2. A malformed tag is an error naming the
/// sentence and word.
pub fn detect_scheme(sentences: &[NerSentence]) -> Result<TagScheme> {
    let (mut bioes, mut iob1) = (false, false);
    for (s, sentence) in sentences.iter().enumerate() {
        let mut previous: Option<(char, &str)> = None;
        for (w, tag) in sentence.tags.iter().enumerate() {
            let parsed = split_tag(tag).map_err(|e| {
                anyhow::anyhow!(
                    "sentence {} word {} (`{}`): {e}",
                    s + 1,
                    w + 1,
                    sentence.tokens.get(w).map_or("", |t| t)
                )
            })?;
            match parsed {
                Some(('E' | 'S', _)) => bioes = true,
                Some(('I', kind)) => {
                    let continues = matches!(previous, Some((p, k)) if k == kind && p != 'E' && p != 'S');
                    if !continues {
                        iob1 = true;
                    }
                }
                _ => {}
            }
            previous = parsed;
        }
    }
    Ok(match (bioes, iob1) {
        (true, _) => TagScheme::Bioes,
        (false, true) => TagScheme::Iob1,
        (false, false) => TagScheme::Iob2,
    })
}

/// IOB1 tags to IOB2: an `I-X` that starts an entity becomes `B-X`. Valid IOB2 input is returned unchanged.
pub fn iob1_to_iob2(tags: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(tags.len());
    let mut previous: Option<&str> = None;
    for tag in tags {
        let converted = match tag.strip_prefix("I-") {
            Some(kind) => {
                let continues =
                    previous.is_some_and(|p| p.strip_prefix("B-").or_else(|| p.strip_prefix("I-")) == Some(kind));
                if continues {
                    tag.clone()
                } else {
                    format!("B-{kind}")
                }
            }
            None => tag.clone(),
        };
        previous = Some(tag);
        out.push(converted);
    }
    out
}

/// [`iob1_to_iob2`] over sentences.
pub fn sentences_to_iob2(sentences: &[NerSentence]) -> Vec<NerSentence> {
    sentences.iter().map(|s| NerSentence { tokens: s.tokens.clone(), tags: iob1_to_iob2(&s.tags) }).collect()
}

/// Which sub-words of a word carry its label in NER training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SubwordLabels {
    /// Only the first sub-word of each word carries the label; the others get -100 (ignored by the loss), as
    /// Hugging Face's `run_ner` by default.
    #[default]
    First,
    /// Every sub-word carries the word's label, `B-X` becoming `I-X` after the first sub-word (`run_ner
    /// --label_all_tokens`).
    All,
}

/// For each label, the label that a non-first sub-word takes under [`SubwordLabels::All`]: `I-X` for `B-X` when
/// the set has `I-X`, else the label itself (HF's `b_to_i_label`).
pub(crate) fn inside_labels(labels: &LabelSet) -> Vec<usize> {
    (0..labels.len())
        .map(|i| {
            labels.names[i]
                .strip_prefix("B-")
                .and_then(|kind| labels.names.iter().position(|n| n.strip_prefix("I-") == Some(kind)))
                .unwrap_or(i)
        })
        .collect()
}
