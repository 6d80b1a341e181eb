//! Sequence classification (single- and multi-label) as a core dataset.

use anyhow::{bail, ensure, Context, Result};
use suite_core::data::{Dataset, SampleRng};
use tch::Tensor;

use super::batch::{attention_mask, check_index, no_labels, pad_rows, TextBatch};
use crate::data::labels::LabelSet;
use crate::data::sources::ClassifyExample;
use crate::data::tokenize::TextTokenizer;

/// Targets of the whole dataset, one row per example.
enum Targets {
    None,
    Single(Vec<i64>),
    /// Multi-hot rows of `n` labels, flattened.
    Multi {
        n: usize,
        hot: Vec<f32>,
    },
}

/// Tokenized classification examples; items are example indices, batches are [`TextBatch`]es.
pub struct ClassifyDataset {
    ids: Vec<Vec<i64>>,
    type_ids: Vec<Vec<i64>>,
    targets: Targets,
    pad_id: i64,
}

impl ClassifyDataset {
    /// Tokenizes `examples` (pairs as pairs, truncated longest-first to `max_len`). With `labels`, every example
    /// must carry labels from the set: exactly one unless `multi_label`; without, the batches have no labels.
    pub fn new(
        examples: &[ClassifyExample],
        tok: &TextTokenizer,
        labels: Option<&LabelSet>,
        max_len: usize,
        multi_label: bool,
    ) -> Result<Self> {
        let mut ids = Vec::with_capacity(examples.len());
        let mut type_ids = Vec::with_capacity(examples.len());
        for (i, e) in examples.iter().enumerate() {
            let enc = tok.encode(&e.text, e.text_pair.as_deref(), max_len).with_context(|| format!("example {i}"))?;
            ids.push(enc.ids);
            type_ids.push(enc.type_ids);
        }
        let targets = match labels {
            None => Targets::None,
            Some(set) if multi_label => {
                let n = set.len();
                let mut hot = vec![0f32; n * examples.len()];
                for (i, e) in examples.iter().enumerate() {
                    for l in &e.labels {
                        hot[i * n + set.index(l).with_context(|| format!("example {i}"))?] = 1.0;
                    }
                }
                Targets::Multi { n, hot }
            }
            Some(set) => {
                let mut single = Vec::with_capacity(examples.len());
                for (i, e) in examples.iter().enumerate() {
                    let [label] = e.labels.as_slice() else {
                        bail!(
                            "example {i}: {} labels {:?} for a single-label task; expected exactly one (use \
                             multi-label classification for several)",
                            e.labels.len(),
                            e.labels
                        );
                    };
                    single.push(set.index(label).with_context(|| format!("example {i}"))? as i64);
                }
                Targets::Single(single)
            }
        };
        ensure!(!ids.is_empty(), "no examples to build a classification dataset from");
        Ok(Self { ids, type_ids, targets, pad_id: tok.pad_id() })
    }

    /// Token count of each example (for length bucketing).
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// Token ids of example `i` (special tokens included, unpadded).
    pub fn input_ids(&self, i: usize) -> Option<&[i64]> {
        self.ids.get(i).map(Vec::as_slice)
    }
}

impl Dataset for ClassifyDataset {
    type Item = usize;
    type Batch = TextBatch;

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<usize> {
        check_index(index, self.ids.len(), "classification example")
    }

    fn collate(&self, items: Vec<usize>) -> Result<TextBatch> {
        let labels = match &self.targets {
            Targets::None => no_labels(),
            Targets::Single(l) => Tensor::from_slice(&items.iter().map(|&i| l[i]).collect::<Vec<_>>()),
            Targets::Multi { n, hot } => {
                let rows: Vec<f32> = items.iter().flat_map(|&i| hot[i * n..(i + 1) * n].iter().copied()).collect();
                Tensor::from_slice(&rows).view([items.len() as i64, *n as i64])
            }
        };
        Ok(TextBatch {
            input_ids: pad_rows(items.iter().map(|&i| self.ids[i].as_slice()), self.pad_id),
            token_type_ids: pad_rows(items.iter().map(|&i| self.type_ids[i].as_slice()), 0),
            attention_mask: attention_mask(items.iter().map(|&i| self.ids[i].len())),
            labels,
            index: items,
        })
    }
}
