//! Text metrics: seqeval entity scores and SQuAD exact match / F1.
