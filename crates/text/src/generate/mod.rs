//! The model-independent parts of text generation: choosing the next token from a step's logits
//! ([`sampling`]: transformers' logits processors and seeded per-sequence sampling) and deciding when to stop
//! ([`stop`]: stop tokens, stop strings, maximum new tokens), and the loop that runs a causal LM with them
//! ([`decode`]: a left-padded batch through the KV cache).

pub mod decode;
pub mod language_model;
pub mod sampling;
pub mod stop;

#[cfg(test)]
pub(crate) mod fixture_tests;

pub use decode::{generate_ids, generate_rows, GenerationConfig, RowSpec};
pub use language_model::{Generated, GenerationRequest, LanguageModel};
pub use sampling::{process_logits, sample_batch, SamplingParams, SequenceSampler};
pub use stop::{Stop, StopCriteria, StopReason};
