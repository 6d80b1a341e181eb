//! Generic classification metrics.
//!
//! Everything follows scikit-learn's definitions (checked against scikit-learn 1.9 in the tests): precision,
//! recall and F1 use `zero_division=0`, macro and weighted averages run over the classes present in the targets or
//! predictions, MCC is the multiclass `matthews_corrcoef`, and top-k breaks ties as `top_k_accuracy_score`.

mod classification;
mod report;
#[cfg(test)]
mod sklearn_tests;

pub use classification::{
    accuracy, top_k_accuracy, top_k_accuracy_rows, Average, AveragedScores, ClassScores, ConfusionMatrix,
};
pub use report::ClassificationReport;

/// One evaluation result: metric name (`accuracy`, `macro_f1`, `loss`, …) to value. Sorted, so logs and tables
/// list metrics in a stable order.
pub type Metrics = std::collections::BTreeMap<String, f64>;
