//! The state every handler shares (behind an `Arc`): the served models with their queues, the metrics, the key.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Domain;
use crate::engines::{ChatQueue, SpeechQueue, TextQueue, VisionQueue};
use crate::error::AppError;
use crate::metrics::Metrics;

/// What a loaded model tells clients about itself (`GET /v1/models`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `image-classification`, `classify`, `ner`, `qa`, `transcribe`, `text-generation`.
    pub task: String,
    /// Class names or tags (empty for speech and QA).
    pub labels: Vec<String>,
    /// `fp32`, or `int8` when its linear layers were quantized (`--precision int8`).
    pub precision: &'static str,
    /// Vision: the decoder and evaluation transform, run on the blocking pool so that decoding overlaps the
    /// inference thread's forward passes.
    #[serde(skip)]
    pub preprocessor: Option<suite_vision::predict::ImagePreprocessor>,
}

/// The queue of a served model, by domain.
pub enum Handle {
    Vision(VisionQueue),
    Text(TextQueue),
    Speech(SpeechQueue),
    /// A decoder-only language model (the chat and completion routes).
    Chat(ChatQueue),
}

/// One served model.
pub struct Served {
    pub id: String,
    pub domain: Domain,
    /// Set once its inference thread has loaded it.
    pub info: OnceLock<ModelInfo>,
    pub handle: Handle,
}

/// Shared state of the handlers.
pub struct AppState {
    pub models: BTreeMap<String, Served>,
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the API key: comparing digests in constant time reveals neither the key nor its length.
    pub api_key_digest: Option<[u8; 32]>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Unix time the server started (OpenAI's `created` of every model).
    pub created: u64,
    /// Beam size of Whisper decoding (1 = greedy).
    pub beam_size: usize,
}

impl AppState {
    /// State over `models`, with an optional API key.
    pub fn new(
        models: Vec<Served>,
        metrics: Arc<Metrics>,
        api_key: Option<&str>,
        max_body_bytes: usize,
        beam_size: usize,
    ) -> Self {
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self {
            models: models.into_iter().map(|m| (m.id.clone(), m)).collect(),
            metrics,
            api_key_digest: api_key.map(digest),
            max_body_bytes,
            created,
            beam_size,
        }
    }

    /// The model `id`, loaded; 404 when unknown, 503 while it loads.
    pub fn model(&self, id: &str) -> Result<(&Served, &ModelInfo), AppError> {
        let served = self.models.get(id).ok_or_else(|| AppError::unknown_model(id, &self.ids()))?;
        let info = served.info.get().ok_or_else(|| AppError::Unavailable {
            message: format!("model {id:?} is still loading"),
            retry_after_s: 2,
        })?;
        Ok((served, info))
    }

    /// The served ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    /// Whether every model is loaded.
    pub fn ready(&self) -> bool {
        self.models.values().all(|m| m.info.get().is_some())
    }
}

/// SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
