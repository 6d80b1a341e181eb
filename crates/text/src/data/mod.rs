//! Text data: tokenization, file readers (CSV/TSV/JSONL, CoNLL, SQuAD), label sets and datasets.
