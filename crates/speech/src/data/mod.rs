//! Speech manifests: JSONL/CSV, Hugging Face audiofolder and Common Voice TSV folders.
mod manifest;
#[cfg(test)]
mod tests;

pub use manifest::{read_speech_data, read_speech_rows, SpeechExample};
