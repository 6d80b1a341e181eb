//! Text tasks: classification, NER and extractive QA as trainable models for the core trainer.
mod config;
mod job;
mod sequence;
mod span;

pub use config::{Columns, SubwordMode, TextConfig, TextTaskKind};
pub use job::{
    classify_splits, default_metric, gold_answers, id2label, load_trained, ner_labels, ner_splits, prepare, qa_splits,
    seqeval_scheme, span_settings, TextData, TextJob, TextTask,
};
pub use sequence::{HubSaver, ModelSaver, NerEval, SequenceReport, SequenceTask};
pub use span::{QaEval, SpanSettings, SpanTask};
