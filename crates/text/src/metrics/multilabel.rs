//! Multi-label classification scores over `[n, k]` 0/1 matrices, equal to scikit-learn's (`zero_division=0`).

use anyhow::{ensure, Result};
use suite_core::metrics::Metrics;

use super::numeric::{np_mean, np_weighted_average, ratio};

/// Counts of one label (over samples) or one sample (over labels).
#[derive(Clone, Copy, Default)]
struct Counts {
    tp: u64,
    predicted: u64,
    actual: u64,
}

impl Counts {
    fn add(&mut self, t: bool, p: bool) {
        self.tp += u64::from(t && p);
        self.predicted += u64::from(p);
        self.actual += u64::from(t);
    }

    /// Precision, recall and F1 as scikit-learn computes them: F from the counts, `2·TP / (actual + predicted)`.
    fn prf(&self) -> (f64, f64, f64) {
        let tp = self.tp as f64;
        (
            ratio(tp, self.predicted as f64),
            ratio(tp, self.actual as f64),
            ratio(2.0 * tp, self.actual as f64 + self.predicted as f64),
        )
    }
}

/// Means of precision, recall and F1 over rows of counts, as `_nanaverage` (weights, else a plain mean; all-zero
/// weights fall back to the plain mean, as scikit-learn's `ZeroDivisionError` branch).
fn averages(rows: &[Counts], weights: Option<&[f64]>) -> [f64; 3] {
    let scores: Vec<(f64, f64, f64)> = rows.iter().map(Counts::prf).collect();
    let cols = [
        scores.iter().map(|s| s.0).collect::<Vec<_>>(),
        scores.iter().map(|s| s.1).collect(),
        scores.iter().map(|s| s.2).collect(),
    ];
    cols.map(|c| weights.and_then(|w| np_weighted_average(&c, w)).or_else(|| np_mean(&c)).unwrap_or(0.0))
}

/// Multi-label scores of `pred` against `truth`, both `[n samples][k labels]`, as scikit-learn 1.9's
/// `accuracy_score` (subset accuracy) and `precision_recall_fscore_support(average=…, zero_division=0)`.
///
/// Keys: `subset_accuracy`, `hamming_loss`, and `{micro,macro,weighted,samples}_{precision,recall,f1}`. Macro and
/// weighted averages run over all `k` labels (scikit-learn's multilabel rule, unlike its multiclass one that skips
/// absent classes); the samples average runs over rows, a row with no true and no predicted label scoring 0.
///
/// Fails on no samples, no labels, or rows of differing length (naming the row and matrix).
pub fn multilabel_scores(truth: &[Vec<bool>], pred: &[Vec<bool>]) -> Result<Metrics> {
    ensure!(!truth.is_empty(), "multi-label scores: no samples");
    ensure!(
        truth.len() == pred.len(),
        "multi-label scores: {} true rows but {} predicted rows",
        truth.len(),
        pred.len()
    );
    let k = truth[0].len();
    ensure!(k > 0, "multi-label scores: row 0 of the truth has no labels");
    let mut per_label = vec![Counts::default(); k];
    let mut per_sample = Vec::with_capacity(truth.len());
    let (mut exact_rows, mut differing) = (0u64, 0u64);
    for (i, (t, p)) in truth.iter().zip(pred).enumerate() {
        ensure!(t.len() == k, "multi-label scores: true row {i} has {} labels, row 0 has {k}", t.len());
        ensure!(p.len() == k, "multi-label scores: predicted row {i} has {} labels, expected {k}", p.len());
        let mut row = Counts::default();
        let mut diff = 0u64;
        for (j, (&tj, &pj)) in t.iter().zip(p).enumerate() {
            per_label[j].add(tj, pj);
            row.add(tj, pj);
            diff += u64::from(tj != pj);
        }
        per_sample.push(row);
        exact_rows += u64::from(diff == 0);
        differing += diff;
    }
    let n = truth.len() as f64;

    let mut m = Metrics::new();
    let mut put = |avg: &str, [p, r, f]: [f64; 3]| {
        m.insert(format!("{avg}_precision"), p);
        m.insert(format!("{avg}_recall"), r);
        m.insert(format!("{avg}_f1"), f);
    };
    let pooled = per_label.iter().fold(Counts::default(), |a, c| Counts {
        tp: a.tp + c.tp,
        predicted: a.predicted + c.predicted,
        actual: a.actual + c.actual,
    });
    let (p, r, f) = pooled.prf();
    put("micro", [p, r, f]);
    put("macro", averages(&per_label, None));
    let support: Vec<f64> = per_label.iter().map(|c| c.actual as f64).collect();
    put("weighted", averages(&per_label, Some(&support)));
    put("samples", averages(&per_sample, None));
    // accuracy_score averages a 0/1 vector with numpy; the pairwise sum of 0s and 1s is exact, so count / n.
    m.insert("subset_accuracy".into(), exact_rows as f64 / n);
    m.insert("hamming_loss".into(), differing as f64 / (n * k as f64));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_case_by_hand_and_errors() {
        let t = vec![vec![true, false, true], vec![false, false, false]];
        let p = vec![vec![true, true, false], vec![false, false, false]];
        let m = multilabel_scores(&t, &p).unwrap();
        assert_eq!(m["subset_accuracy"], 0.5);
        assert_eq!(m["micro_precision"], 0.5);
        assert_eq!(m["micro_recall"], 0.5);
        // Label 0: F1 1; labels 1 and 2: 0.
        assert_eq!(m["macro_f1"], 1.0 / 3.0);
        assert_eq!(m["weighted_f1"], 0.5);
        // Row 1 has neither true nor predicted labels: 0 under zero_division=0.
        assert_eq!(m["samples_f1"], 0.25);
        assert_eq!(m["hamming_loss"], 2.0 / 6.0);
        assert!(multilabel_scores(&[], &[]).is_err());
        let e = multilabel_scores(&t, &[vec![true; 3], vec![true; 2]]).unwrap_err().to_string();
        assert!(e.contains("predicted row 1 has 2 labels"), "{e}");
    }
}
