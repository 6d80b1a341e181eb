//! Speech fine-tuning as a trainable model for the core trainer.
mod config;

pub use config::{Normalizer, SpeechConfig, SpeechTaskKind};
