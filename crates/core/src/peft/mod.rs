//! Parameter-efficient fine-tuning on the core's layers, with Hugging Face PEFT's methods, names and maths:
//! LoRA, DoRA, (IA)³, prefix tuning, P-tuning v2, bottleneck adapters (Houlsby, Pfeiffer) and BitFit.
//!
//! A domain describes where its models keep attention outputs, feed-forward projections and the head
//! ([`PeftTargets`]); [`apply_peft`] adds the method's tensors to the `VarStore` under peft's names, pushes
//! adapters into the [`crate::nn::Linear`]/[`crate::nn::Conv2d`] layers and prefixes into the
//! [`crate::nn::AttentionSlots`], and leaves only the method's tensors and the head trainable, so the trainer
//! needs no change. [`save_adapter`] writes those tensors alone with the base model's checksum, [`load_adapter`]
//! puts them back into a fresh base, and [`merge_lora`] folds LoRA/DoRA into the weights for export.

mod apply;
mod bottleneck;
mod config;
mod file;
mod ia3;
mod lora;
mod merged;
mod prefix;
mod registry;
mod targets;

pub use apply::{apply_peft, PeftReport};
pub use config::{
    from_cli, AdapterConfig, AdapterKind, Ia3Config, LoraConfig, NonLinearity, PeftCliOptions, PeftConfig,
    PrefixConfig, Targets,
};
pub use file::{base_checksum, load_adapter, read_adapter, save_adapter, AdapterFile};
pub use lora::{merge_lora, unmerge_lora};
pub use merged::merged_weights;
pub use targets::{pattern_matches, PeftTargets};

#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod test_models;
#[cfg(test)]
mod tests;
