//! Token classification (NER) as a core dataset: words to sub-words, word tags to token labels and back.

use anyhow::{ensure, Context, Result};
use suite_core::data::{Dataset, SampleRng};

use super::batch::{attention_mask, check_index, no_labels, pad_rows, TextBatch, IGNORE_INDEX};
use crate::data::labels::{inside_labels, LabelSet, SubwordLabels};
use crate::data::sources::NerSentence;
use crate::data::tokenize::TextTokenizer;

/// Tokenized sentences; items are sentence indices, batches are [`TextBatch`]es with `[b, len]` labels.
pub struct NerDataset {
    ids: Vec<Vec<i64>>,
    type_ids: Vec<Vec<i64>>,
    word_ids: Vec<Vec<Option<usize>>>,
    n_words: Vec<usize>,
    /// Token labels with -100 where the loss ignores a position; `None` when unlabelled.
    labels: Option<Vec<Vec<i64>>>,
    pad_id: i64,
}

impl NerDataset {
    /// Tokenizes the words of each sentence (truncated to `max_len` tokens) and, with `labels`, gives each
    /// sub-word its word's tag index as `mode` says; special tokens get -100.
    pub fn new(
        sents: &[NerSentence],
        tok: &TextTokenizer,
        labels: Option<&LabelSet>,
        max_len: usize,
        mode: SubwordLabels,
    ) -> Result<Self> {
        ensure!(!sents.is_empty(), "no sentences to build an NER dataset from");
        let inside = labels.map(inside_labels);
        let mut out = Self {
            ids: Vec::with_capacity(sents.len()),
            type_ids: Vec::with_capacity(sents.len()),
            word_ids: Vec::with_capacity(sents.len()),
            n_words: Vec::with_capacity(sents.len()),
            labels: labels.map(|_| Vec::with_capacity(sents.len())),
            pad_id: tok.pad_id(),
        };
        for (s, sentence) in sents.iter().enumerate() {
            let enc = tok.encode_words(&sentence.tokens, max_len).with_context(|| format!("sentence {}", s + 1))?;
            if let (Some(set), Some(inside), Some(all)) = (labels, &inside, out.labels.as_mut()) {
                ensure!(
                    sentence.tags.len() == sentence.tokens.len(),
                    "sentence {}: {} tags for {} words",
                    s + 1,
                    sentence.tags.len(),
                    sentence.tokens.len()
                );
                let tags = sentence
                    .tags
                    .iter()
                    .enumerate()
                    .map(|(w, t)| {
                        set.index(t).map(|i| i as i64).with_context(|| format!("sentence {} word {}", s + 1, w + 1))
                    })
                    .collect::<Result<Vec<i64>>>()?;
                let mut previous = None;
                let row = enc
                    .word_ids
                    .iter()
                    .map(|&w| {
                        let label = match w {
                            None => IGNORE_INDEX,
                            Some(w) if previous != Some(w) => tags[w],
                            Some(w) => match mode {
                                SubwordLabels::First => IGNORE_INDEX,
                                SubwordLabels::All => inside[tags[w] as usize] as i64,
                            },
                        };
                        previous = w;
                        label
                    })
                    .collect();
                all.push(row);
            }
            out.ids.push(enc.ids);
            out.type_ids.push(enc.type_ids);
            out.word_ids.push(enc.word_ids);
            out.n_words.push(sentence.tokens.len());
        }
        Ok(out)
    }

    /// Token count of each sentence (for length bucketing).
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// The word index of each token of sentence `i` (`None` for special tokens).
    pub fn word_ids(&self, i: usize) -> Option<&[Option<usize>]> {
        self.word_ids.get(i).map(Vec::as_slice)
    }

    /// Word-level tags for item `i` from its token-level predicted label indices (first sub-word of each word
    /// decides; words cut by truncation, words with no sub-word and out-of-range predictions get "O").
    /// `token_preds` may be padded (longer than the item).
    pub fn word_predictions(&self, i: usize, token_preds: &[i64], labels: &LabelSet) -> Vec<String> {
        let (Some(word_ids), Some(&n)) = (self.word_ids.get(i), self.n_words.get(i)) else {
            return Vec::new();
        };
        let mut tags = vec!["O".to_string(); n];
        let mut decided = vec![false; n];
        for (pos, w) in word_ids.iter().enumerate() {
            let Some(w) = *w else { continue };
            if w >= n || decided[w] {
                continue;
            }
            decided[w] = true;
            let name = token_preds.get(pos).and_then(|&p| usize::try_from(p).ok()).and_then(|p| labels.name(p));
            if let Some(name) = name {
                tags[w] = name.to_string();
            }
        }
        tags
    }
}

impl Dataset for NerDataset {
    type Item = usize;
    type Batch = TextBatch;

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<usize> {
        check_index(index, self.ids.len(), "NER sentence")
    }

    fn collate(&self, items: Vec<usize>) -> Result<TextBatch> {
        let labels = match &self.labels {
            None => no_labels(),
            Some(l) => pad_rows(items.iter().map(|&i| l[i].as_slice()), IGNORE_INDEX),
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
