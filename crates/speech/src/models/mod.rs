//! Whisper: config, model, weights from the hub or CTranslate2 folders.
