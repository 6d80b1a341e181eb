//! The speech domain of suite: audio decoding and resampling, Whisper's log-mel features, the Whisper
//! encoder–decoder (hub safetensors and CTranslate2 folders), its tokenizer, greedy and beam decoding, manifests and
//! WER/CER.
//!
//! No training loop lives here: [`task`] implements [`suite_core::train::TrainModel`] and the core trains it.
pub mod audio;
pub mod data;
pub mod decode;
pub mod metrics;
pub mod models;
pub mod task;
pub mod tokenizer;
