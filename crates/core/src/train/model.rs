use std::path::Path;

use anyhow::Result;
use tch::{nn::VarStore, Tensor};

use crate::metrics::Metrics;

/// What a domain gives the trainer: a model with its loss, its evaluation and how to save it.
///
/// The trainer owns the loop; the model never sees optimizers or schedules.
pub trait TrainModel {
    /// The collated batch type, as produced by the domain's [`crate::data::Dataset`].
    type Batch: Send + 'static;

    /// Every tensor of the model, trainable or not (a checkpoint saves them all; parameters with
    /// `requires_grad` are the ones trained).
    fn var_store(&self) -> &VarStore;

    /// Number of examples in `batch`.
    fn batch_len(&self, batch: &Self::Batch) -> usize;

    /// Mean loss over `batch`, with its autograd graph; `train` switches dropout, batch norm and augmentation.
    fn loss(&mut self, batch: &Self::Batch, train: bool) -> Result<Tensor>;

    /// Evaluates over `batches` (gradients are off) and returns its metrics, including `loss`.
    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<Self::Batch>>) -> Result<Metrics>;

    /// Writes the deployable model (weights, config, label names…) into the empty folder `dir`.
    fn save_model(&self, dir: &Path) -> Result<()>;
}
