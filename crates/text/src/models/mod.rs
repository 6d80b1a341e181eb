//! Text encoders and their task heads, named as in `transformers`.
//!
//! BERT/MiniLM, RoBERTa, XLM-RoBERTa and DistilBERT encoders are built on suite's PEFT-ready layers (every dense
//! layer a [`suite_core::nn::Linear`], every attention block through [`suite_core::nn::AttentionSlots`]) under the
//! tensor names of transformers' `BertModel`, `RobertaModel` and `DistilBertModel`. A [`TextModel`] puts the
//! encoder under its transformers prefix and a task head at the top level, so that checkpoints of base and task
//! models load by name and exports load back into `AutoModelFor…`.

mod bert;
mod causal;
mod causal_load;
mod config;
mod distilbert;
mod export;
mod gpt2;
mod heads;
mod layers;
mod llama;
mod lm_folder;
mod load;
pub mod registry;
mod text_model;

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod gpt2_tests;
#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod llama_tests;
#[cfg(test)]
mod parity_tests;

pub use bert::{roberta_position_ids, BertModel, Positions};
pub use causal::{BatchLayout, CausalLm, CausalLmInfo, KvCache};
pub use causal_load::{causal_model_type, causal_model_types, causal_peft_targets, load_causal_lm, new_causal_lm};
pub use config::{Activation, EncoderConfig, ModelType, SUPPORTED_MODEL_TYPES};
pub use distilbert::DistilBertModel;
pub use export::{copy_tokenizer_files, TOKENIZER_FILES};
pub use gpt2::{
    gpt2_checkpoint_tensors, gpt2_peft_targets, Gpt2Config, Gpt2LmHeadModel, GPT2_CONV1D_WEIGHTS, GPT2_MODEL_TYPES,
};
pub use heads::Head;
pub use llama::{llama_peft_targets, LlamaConfig, LlamaForCausalLm, RopeScaling, LLAMA_MODEL_TYPES};
pub(crate) use lm_folder::read_json;
pub use lm_folder::LmCheckpoint;
pub use registry::{known_models, minilm_asset_dir, resolve_text_model, TextModelFiles, DEFAULT_TEXT_MODEL};
pub use text_model::TextModel;
