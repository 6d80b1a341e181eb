//! Speech metrics: text normalisers, WER and CER.
