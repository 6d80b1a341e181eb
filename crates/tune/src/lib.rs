//! Hyperparameter search, the generic part of `suite tune`: a search space read from TOML ([`space`]), seeded
//! samplers (random and TPE, [`sampler`]) and the asynchronous successive-halving rule that decides which trials go
//! on at each rung ([`asha`]). The command line (crates/cli) runs the trials and keeps the study journal.

pub mod asha;
pub mod sampler;
pub mod space;

pub use asha::{Asha, RungDecision};
pub use sampler::{Observation, Sampler, SamplerKind};
pub use space::{Dist, Param, Params, Space};
