//! Experiment tracking: TensorBoard event files in the run folder ([`tensorboard`]) and runs on an MLflow tracking
//! server ([`mlflow`]), both as [`crate::train::FitObserver`]s that follow every record of `metrics.jsonl`.
//!
//! A tracker must never cost the run it follows: a failure (a full disk under the event file, a tracking server
//! that went away) is reported once on stderr and the tracker stops, while training goes on.

pub mod mlflow;
pub mod tensorboard;

pub use mlflow::{MlflowClient, MlflowObserver, MlflowSettings};
pub use tensorboard::{EventWriter, TensorBoardObserver};

use crate::runs::MetricRecord;

/// The scalars of one record as `(tag, value)`: `train/loss`, `train/lr`, `train/samples_per_sec` for a training
/// line, `eval/<metric>` for an evaluation. Both trackers use these names, so the curves match across them.
pub fn scalars(record: &MetricRecord) -> Vec<(String, f64)> {
    match record {
        MetricRecord::Train(r) => vec![
            ("train/loss".into(), r.loss),
            ("train/lr".into(), r.lr),
            ("train/samples_per_sec".into(), r.samples_per_sec),
        ],
        MetricRecord::Eval(r) => r.metrics.iter().map(|(k, v)| (format!("eval/{k}"), *v)).collect(),
    }
}

/// Seconds since the Unix epoch, as trackers stamp their values.
pub(crate) fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
