//! Watchers of a run as the trainer writes it: experiment trackers (TensorBoard, MLflow) see every record, and a
//! tuner's early termination may end a trial after an evaluation.

use anyhow::Result;

use super::config::TrainConfig;
use super::trainer::FitSummary;
use crate::metrics::Metrics;
use crate::runs::{MetricRecord, RunDir};

/// What an observer answers after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on training.
    Continue,
    /// End the run here: it finishes as an early-stopped run (final checkpoint, `final/`, curves), and
    /// [`FitSummary::stopped_by`] names the observer.
    Stop,
}

/// A watcher of one [`super::Trainer::fit`]. Every method has a default that does nothing, so an observer
/// implements only what it needs. Under data parallelism only rank 0 calls observers (it alone writes the run).
///
/// An error from an observer fails the run, with the last checkpoint kept; an observer whose failures should not
/// cost the run (a tracking server that went away) logs them and returns `Ok`.
pub trait FitObserver: Send {
    /// A short name for messages and [`FitSummary::stopped_by`] (`"tensorboard"`, `"mlflow"`, `"asha"`).
    fn name(&self) -> &str;

    /// Before the first step (also on resume): the run folder and its training settings.
    fn on_start(&mut self, _run: &RunDir, _config: &TrainConfig) -> Result<()> {
        Ok(())
    }

    /// Every record the trainer appends to `metrics.jsonl`, in order, right after it is written.
    fn on_record(&mut self, _record: &MetricRecord) -> Result<()> {
        Ok(())
    }

    /// After each evaluation (already passed to [`FitObserver::on_record`]): whether to go on. `last` is true at
    /// the evaluation of the run's final step, where the run ends whatever the answer (and a `Stop` is not counted
    /// as stopping it early).
    fn on_eval(&mut self, _step: usize, _metrics: &Metrics, _last: bool) -> Result<Verdict> {
        Ok(Verdict::Continue)
    }

    /// When the run has finished (its final model written), or stopped early.
    fn on_end(&mut self, _run: &RunDir, _summary: &FitSummary) -> Result<()> {
        Ok(())
    }
}
