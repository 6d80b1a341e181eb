//! Text data: tokenization, file readers (CSV/TSV/JSONL, CoNLL, SQuAD), label sets and datasets.
//!
//! - [`tokenize`]: [`TextTokenizer`] over a model's `tokenizer.json` (ids, char offsets, word ids as
//!   `transformers`' fast tokenizers), with truncation and QA windows under our control;
//! - [`sources`]: readers whose errors name the file, line and field;
//! - [`labels`]: [`LabelSet`], NER tag schemes and sub-word labelling;
//! - [`sft`], [`sft_tokenize`], [`sft_dataset`]: supervised fine-tuning data of causal LMs (chat, prompt/completion,
//!   Alpaca, plain text), tokenized with loss masks and packed;
//! - [`datasets`]: [`ClassifyDataset`], [`NerDataset`] and [`QaDataset`] (with SQuAD post-processing) for the core
//!   data loader, dynamically padded.

pub mod datasets;
pub mod labels;
pub mod sft;
pub mod sft_dataset;
pub mod sft_tokenize;
pub mod sources;
pub mod tokenize;

#[cfg(test)]
mod tests;

pub use datasets::{ClassifyDataset, NerDataset, QaBatch, QaDataset, QaPrediction, TextBatch};
pub use labels::{detect_scheme, iob1_to_iob2, sentences_to_iob2, LabelSet, SubwordLabels, TagScheme};
pub use sft::{read_sft, SftContent, SftExample, SftFormat};
pub use sft_dataset::{build_rows, SftBatch, SftDataset, SftRow, SftStats};
pub use sft_tokenize::{alpaca_prompt, SftPrompt, SftTokenizer, SftTokens};
pub use sources::{
    read_classify, read_classify_checked, read_classify_lines, read_ner, read_ner_checked, read_ner_lines, read_squad,
    write_squad_predictions, ClassifyColumns, ClassifyExample, NerSentence, QaAnswer, QaExample,
};
pub use tokenize::{Encoded, TextTokenizer};
