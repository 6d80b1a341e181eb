//! Extractive QA as a core dataset: (question, context) pairs cut into overlapping windows ("features"), with the
//! answer's token positions in each window, as Hugging Face's `run_qa.py` `prepare_train_features`.

use anyhow::{Context, Result};
use suite_core::data::{Dataset, SampleRng};
use tch::Tensor;

use super::batch::{attention_mask, check_index, pad_rows};
use crate::data::sources::QaExample;
use crate::data::tokenize::TextTokenizer;

/// A padded batch of QA windows.
#[derive(Debug)]
pub struct QaBatch {
    /// Token ids, Int64 `[b, len]`: `[CLS] question [SEP] context window [SEP]`, padded.
    pub input_ids: Tensor,
    /// Segment ids, Int64 `[b, len]`.
    pub token_type_ids: Tensor,
    /// 1 for tokens, 0 for padding, Int64 `[b, len]`.
    pub attention_mask: Tensor,
    /// Token index of the answer's first token, Int64 `[b]`; 0 (CLS) when the answer is not inside this window
    /// or the question is impossible.
    pub start_positions: Tensor,
    /// Token index of the answer's last token, Int64 `[b]`; 0 (CLS) as for `start_positions`.
    pub end_positions: Tensor,
    /// Feature (window) indices of the rows.
    pub index: Vec<usize>,
}

/// One window of one example.
pub(crate) struct Feature {
    pub(crate) example: usize,
    pub(crate) ids: Vec<i64>,
    pub(crate) type_ids: Vec<i64>,
    /// Character offsets into the context for context tokens; `None` for the question and special tokens.
    pub(crate) offsets: Vec<Option<(usize, usize)>>,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// What post-processing needs of an example.
pub(crate) struct ExampleRef {
    pub(crate) id: String,
    pub(crate) context: String,
    pub(crate) features: Vec<usize>,
}

/// QA windows ("features") of a set of examples; items are feature indices, batches are [`QaBatch`]es.
pub struct QaDataset {
    pub(crate) features: Vec<Feature>,
    pub(crate) examples: Vec<ExampleRef>,
    pad_id: i64,
}

impl QaDataset {
    /// Splits each (question, context) into windows of `max_len` tokens with `doc_stride` overlap (truncation of the
    /// context only, question first, as HF run_qa with pad_on_right).
    ///
    /// The question is left-stripped as in `run_qa.py`. Each window's answer positions come from the first gold
    /// answer; windows that do not hold it whole point at the CLS token.
    pub fn new(examples: &[QaExample], tok: &TextTokenizer, max_len: usize, doc_stride: usize) -> Result<Self> {
        anyhow::ensure!(!examples.is_empty(), "no questions to build a QA dataset from");
        let mut features = Vec::new();
        let mut refs = Vec::with_capacity(examples.len());
        for (e, example) in examples.iter().enumerate() {
            let windows = tok
                .encode_windows(example.question.trim_start(), &example.context, max_len, doc_stride)
                .with_context(|| format!("question `{}`", example.id))?;
            let answer = match (example.is_impossible, example.answers.first()) {
                (false, Some(a)) => Some((a.start, a.start + a.text.chars().count())),
                _ => None,
            };
            let mut ids = Vec::with_capacity(windows.len());
            for w in windows {
                let cls = tok.cls_id().and_then(|c| w.ids.iter().position(|&i| i == c)).unwrap_or(0) as i64;
                let offsets: Vec<Option<(usize, usize)>> =
                    w.offsets.iter().zip(&w.sequence_ids).map(|(&o, &s)| (s == Some(1)).then_some(o)).collect();
                let (start, end) = answer.and_then(|a| answer_tokens(&offsets, a)).unwrap_or((cls, cls));
                ids.push(features.len());
                features.push(Feature { example: e, ids: w.ids, type_ids: w.type_ids, offsets, start, end });
            }
            refs.push(ExampleRef { id: example.id.clone(), context: example.context.clone(), features: ids });
        }
        Ok(Self { features, examples: refs, pad_id: tok.pad_id() })
    }

    /// Number of windows over all examples.
    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    /// Number of examples (questions).
    pub fn n_examples(&self) -> usize {
        self.examples.len()
    }

    /// Token count of each window (for length bucketing).
    pub fn lengths(&self) -> Vec<usize> {
        self.features.iter().map(|f| f.ids.len()).collect()
    }

    /// The example (question) index of feature `f`.
    pub fn feature_example(&self, f: usize) -> Option<usize> {
        self.features.get(f).map(|f| f.example)
    }

    /// Token ids of feature `f`.
    pub fn feature_ids(&self, f: usize) -> Option<&[i64]> {
        self.features.get(f).map(|f| f.ids.as_slice())
    }

    /// Context character offsets of the tokens of feature `f` (`None` outside the context).
    pub fn feature_offsets(&self, f: usize) -> Option<&[Option<(usize, usize)>]> {
        self.features.get(f).map(|f| f.offsets.as_slice())
    }

    /// Gold (start, end) token positions of feature `f`.
    pub fn feature_positions(&self, f: usize) -> Option<(i64, i64)> {
        self.features.get(f).map(|f| (f.start, f.end))
    }
}

/// The first and last token of the answer's characters `[start, end)`, when the window's context tokens cover them.
fn answer_tokens(offsets: &[Option<(usize, usize)>], (start, end): (usize, usize)) -> Option<(i64, i64)> {
    let first = offsets.iter().position(Option::is_some)?;
    let last = offsets.iter().rposition(Option::is_some)?;
    let at = |i: usize| offsets[i].unwrap_or((0, 0));
    if !(at(first).0 <= start && at(last).1 >= end) {
        return None;
    }
    // As run_qa: the last token starting at or before the answer, the first token ending at or after it. Unlike
    // run_qa the scan stays inside the context, which only matters when the answer starts in the window's last
    // token (run_qa then points past the context).
    let mut s = first;
    while s <= last && at(s).0 <= start {
        s += 1;
    }
    let mut e = last;
    while e >= first && at(e).1 >= end {
        if e == 0 {
            break;
        }
        e -= 1;
    }
    Some(((s - 1) as i64, (e + 1) as i64))
}

impl Dataset for QaDataset {
    type Item = usize;
    type Batch = QaBatch;

    fn len(&self) -> usize {
        self.features.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<usize> {
        check_index(index, self.features.len(), "QA feature")
    }

    fn collate(&self, items: Vec<usize>) -> Result<QaBatch> {
        let f = |i: usize| &self.features[i];
        Ok(QaBatch {
            input_ids: pad_rows(items.iter().map(|&i| f(i).ids.as_slice()), self.pad_id),
            token_type_ids: pad_rows(items.iter().map(|&i| f(i).type_ids.as_slice()), 0),
            attention_mask: attention_mask(items.iter().map(|&i| f(i).ids.len())),
            start_positions: Tensor::from_slice(&items.iter().map(|&i| f(i).start).collect::<Vec<_>>()),
            end_positions: Tensor::from_slice(&items.iter().map(|&i| f(i).end).collect::<Vec<_>>()),
            index: items,
        })
    }
}
