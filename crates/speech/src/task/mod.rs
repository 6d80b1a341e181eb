//! Speech fine-tuning as a trainable model for the core trainer: labelled clips → log-mel and token batches,
//! SpecAugment, the Whisper task (teacher-forced loss, WER/CER evaluation by decoding, hub or adapter saving) and
//! loading a trained model back.
mod config;
mod dataset;
mod job;
mod spec_augment;
mod whisper_task;

#[cfg(test)]
mod tests;

pub use config::{Normalizer, SpeechConfig, SpeechTaskKind};
pub use dataset::{labelled_clips, LabelledClip, SpeechBatch, SpeechDataset, SpeechItem, IGNORE_INDEX};
pub use job::{
    is_model_dir, load_for_inference, load_for_inference_as, prepare, setup_peft, speech_splits, whisper_peft_targets,
    LoadedWhisper, SpeechJob,
};
pub use spec_augment::SpecAugment;
pub use whisper_task::{normalize, resolve_normalizer, score, AdapterManifest, Prediction, SpeechSaver, WhisperTask};
