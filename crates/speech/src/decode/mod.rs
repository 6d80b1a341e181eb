//! Decoding: greedy and beam search, language detection, long-form windows, and timestamped long-form
//! transcription with OpenAI's response formats.

mod align;
mod beam;
mod formats;
mod language;
mod languages;
mod long;
mod options;
mod rules;
mod search;
mod seek;
mod timed_search;
mod transcription;
mod words;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod timed_tests;

pub use align::{
    alignment_heads, dtw, find_alignment, median_filter, Alignment, MEDIAN_FILTER_WIDTH, TOKENS_PER_SECOND,
};
pub use formats::{format_timestamp, render, ResponseFormat};
pub use language::detect_language;
pub use languages::language_name;
pub use long::transcribe_long;
pub use options::{DecodeOptions, Transcript};
pub use search::transcribe_batch;
pub use seek::transcribe_timed;
pub use transcription::{Segment, TranscribeOptions, Transcription};
pub use words::{Word, APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS};
