//! Decoding: greedy and beam search, language detection and long-form windows.

mod language;
mod long;
mod options;
mod search;

#[cfg(test)]
mod tests;

pub use language::detect_language;
pub use long::transcribe_long;
pub use options::{DecodeOptions, Transcript};
pub use search::transcribe_batch;
