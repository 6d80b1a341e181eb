//! The text domain of suite: BERT-family encoders (BERT/MiniLM, RoBERTa, XLM-RoBERTa, DistilBERT), tokenization,
//! data readers, task heads and metrics for sequence classification, NER and extractive QA, and token
//! attributions of those models ([`explain`]).
//!
//! No training loop lives here: [`task`] implements [`suite_core::train::TrainModel`] and the core trains it.
pub mod chat;
pub mod data;
pub mod explain;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod metrics;
pub mod models;
pub mod offline;
pub mod offline_lm;
pub mod predict;
pub mod task;
