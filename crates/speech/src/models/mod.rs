//! Whisper: config, model, weights from the hub or CTranslate2 folders.

mod attention;
mod cache;
mod config;
mod ctranslate2;
mod registry;
mod whisper;

#[cfg(test)]
pub(crate) mod parity_tests;

pub use cache::KvCache;
pub use config::WhisperConfig;
pub use ctranslate2::{ct2_variable_count, read_ct2_config, read_ct2_model};
pub use registry::{
    load_whisper, load_whisper_as, offline_whisper_base, resolve_whisper, save_whisper_hub, whisper_parameter_names,
    WhisperFiles, WhisperWeights,
};
pub use whisper::{sinusoids, Whisper};
