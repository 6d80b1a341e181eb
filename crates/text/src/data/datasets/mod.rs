//! Datasets for the core [`suite_core::data::DataLoader`]: every example is tokenized once when the dataset is
//! built, `get` is deterministic (text tasks have no augmentation, the RNG is ignored) and `collate` pads to the
//! longest item of the batch (dynamic padding).

mod batch;
mod classify;
mod ner;
mod qa;
mod qa_post;

pub use batch::TextBatch;
pub(crate) use batch::IGNORE_INDEX;
pub use classify::ClassifyDataset;
pub use ner::NerDataset;
pub use qa::{QaBatch, QaDataset};
pub use qa_post::QaPrediction;
