//! Text data: tokenization, file readers (CSV/TSV/JSONL, CoNLL, SQuAD), label sets and datasets.
//!
//! - [`tokenize`]: [`TextTokenizer`] over a model's `tokenizer.json` (ids, char offsets, word ids as
//!   `transformers`' fast tokenizers), with truncation and QA windows under our control;
//! - [`sources`]: readers whose errors name the file, line and field;
//! - [`labels`]: [`LabelSet`], NER tag schemes and sub-word labelling;
//! - [`datasets`]: [`ClassifyDataset`], [`NerDataset`] and [`QaDataset`] (with SQuAD post-processing) for the core
//!   data loader, dynamically padded.

pub mod datasets;
pub mod labels;
pub mod sources;
pub mod tokenize;

#[cfg(test)]
mod tests;

pub use datasets::{ClassifyDataset, NerDataset, QaBatch, QaDataset, QaPrediction, TextBatch};
pub use labels::{detect_scheme, iob1_to_iob2, sentences_to_iob2, LabelSet, SubwordLabels, TagScheme};
pub use sources::{
    read_classify, read_classify_checked, read_ner, read_ner_checked, read_squad, write_squad_predictions,
    ClassifyColumns, ClassifyExample, NerSentence, QaAnswer, QaExample,
};
pub use tokenize::{Encoded, TextTokenizer};
