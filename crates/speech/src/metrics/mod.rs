//! Speech metrics: text normalisers, WER and CER.
mod normalize;
mod numbers;
#[cfg(test)]
mod tests;
mod wer;

pub use normalize::{normalize_basic, normalize_english};
pub use wer::{cer, wer, ErrorCounts};
