//! Text tasks: classification, NER, extractive QA and supervised fine-tuning of language models as trainable
//! models for the core trainer.
mod config;
mod job;
mod peft;
mod sequence;
mod sft;
mod sft_job;
#[cfg(test)]
mod sft_tests;
mod span;

pub use config::{Columns, SftInit, SubwordMode, TextConfig, TextTaskKind};
pub use job::{
    classify_splits, default_metric, gold_answers, id2label, load_trained, ner_labels, ner_splits, prepare, qa_splits,
    seqeval_scheme, span_settings, TextData, TextJob, TextTask,
};
pub use peft::{
    apply_text_peft, load_text_adapter, text_targets, AdapterMeta, AdapterSaver, ADAPTER_FILE, ADAPTER_META,
};
pub use sequence::{HubSaver, ModelSaver, NerEval, SequenceReport, SequenceTask};
pub use sft::{causal_lm_loss, SftGeneration, SftSaver, SftTask};
pub use sft_job::{load_sft_eval, prepare_sft, resolve_lm, sft_splits};
pub use span::{QaEval, SpanSettings, SpanTask};
