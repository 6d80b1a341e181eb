//! The training loop shared by every domain: optimizer steps with gradient accumulation and clipping, scheduled
//! learning rates, evaluation, early stopping, best-model tracking, checkpoints with exact resume, a NaN guard and
//! a progress view. Domains plug in through [`TrainModel`].

mod checkpoint;
mod config;
mod early_stop;
mod model;
mod observer;
mod progress;
mod trainer;

pub use checkpoint::{latest_checkpoint, Checkpoint, TrainerState};
pub use config::{EarlyStoppingConfig, MetricMode, Precision, ScheduleConfig, TrainConfig};
pub use early_stop::BestTracker;
pub use model::TrainModel;
pub use observer::{FitObserver, Verdict};
pub use trainer::{FitSummary, Trainer};

#[cfg(test)]
mod tests;
