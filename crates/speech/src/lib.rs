//! The speech domain of suite: audio decoding (files and uploaded bytes) and resampling, Whisper's log-mel
//! features, the Whisper encoder–decoder (hub safetensors and CTranslate2 folders), its tokenizer, greedy and beam
//! decoding, timestamped long-form transcription (openai-whisper's `transcribe()`, batched over recordings) with
//! OpenAI's response formats, manifests and WER/CER.
//!
//! No training loop lives here: [`task`] implements [`suite_core::train::TrainModel`] and the core trains it.
pub mod audio;
pub mod data;
pub mod decode;
pub mod inspect;
pub mod metrics;
pub mod models;
pub mod task;
pub mod tokenizer;
