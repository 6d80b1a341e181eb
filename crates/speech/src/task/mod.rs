//! Speech fine-tuning as a trainable model for the core trainer.
