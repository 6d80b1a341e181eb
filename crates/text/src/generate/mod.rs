//! The model-independent parts of text generation: choosing the next token from a step's logits
//! ([`sampling`]: transformers' logits processors and seeded per-sequence sampling) and deciding when to stop
//! ([`stop`]: stop tokens, stop strings, maximum new tokens).

pub mod sampling;
pub mod stop;

pub use sampling::{process_logits, sample_batch, SamplingParams, SequenceSampler};
pub use stop::{Stop, StopCriteria, StopReason};
