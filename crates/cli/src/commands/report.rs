//! The end-of-training summary every domain prints.

use suite_core::metrics::Metrics;
use suite_core::runs::RunDir;
use suite_core::train::FitSummary;

/// Rows shared by every domain's summary table: run, steps, trainable parameters, time, best value, early stop, and
/// the best model's metrics.
pub fn summary_rows(run: &RunDir, summary: &FitSummary, metrics: &Metrics) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = vec![
        ("run".into(), run.root().display().to_string()),
        ("steps".into(), summary.steps.to_string()),
        (
            "trainable params".into(),
            format!(
                "{} of {} ({:.2} %)",
                summary.trainable_params,
                summary.total_params,
                100.0 * summary.trainable_params as f64 / summary.total_params.max(1) as f64
            ),
        ),
        ("train time".into(), format!("{:.1} s ({:.1} samples/s)", summary.elapsed_s, summary.samples_per_sec)),
    ];
    if let Some((v, s)) = summary.best {
        rows.push(("best".into(), format!("{v:.4} at step {s}")));
    }
    if summary.stopped_early {
        rows.push(("early stop".into(), "yes".into()));
    }
    for (k, v) in metrics {
        rows.push((format!("best model {k}"), format!("{v:.4}")));
    }
    rows
}
