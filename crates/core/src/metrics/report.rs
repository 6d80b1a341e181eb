use std::path::Path;

use anyhow::{ensure, Context, Result};
use tch::Tensor;

use super::classification::{labels_from_tensor, target_ranks, top_k_hits_rows};
use super::{Average, ClassScores, ConfusionMatrix, Metrics};

/// Accumulates a classification evaluation batch by batch (confusion matrix and top-k hits) and turns it into
/// [`Metrics`] and a confusion-matrix CSV.
///
/// Predictions from logits are the argmax (lowest index among equal maxima, as `torch.argmax`); top-k uses
/// sklearn's tie rule (see [`super::top_k_accuracy`]).
#[derive(Debug, Clone)]
pub struct ClassificationReport {
    /// One display name per class, in class-index order.
    pub class_names: Vec<String>,
    /// Counts so far.
    pub confusion: ConfusionMatrix,
    top_k: Vec<usize>,
    top_k_hits: Vec<u64>,
    /// Samples that came with scores, the denominator of top-k accuracy.
    scored: u64,
}

impl ClassificationReport {
    /// An empty report for these classes; `top_k` lists the k of the `top{k}` keys to report (e.g. `[5]`), and
    /// values of k that are 0 or 1 (top-1 is `accuracy`) or not below the class count (always 1) are dropped.
    pub fn new(class_names: Vec<String>, top_k: &[usize]) -> Self {
        let n = class_names.len();
        let mut top_k: Vec<usize> = top_k.iter().copied().filter(|&k| k > 1 && k < n).collect();
        top_k.sort_unstable();
        top_k.dedup();
        Self { confusion: ConfusionMatrix::new(n), top_k_hits: vec![0; top_k.len()], top_k, scored: 0, class_names }
    }

    /// A report with class names `"0"`, `"1"`, … for unnamed classes.
    pub fn unnamed(n_classes: usize, top_k: &[usize]) -> Self {
        Self::new((0..n_classes).map(|c| c.to_string()).collect(), top_k)
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Adds a batch of `[N, C]` logits (or probabilities) and `[N]` integer targets, on any device.
    pub fn add_logits(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        let c = self.n_classes() as i64;
        ensure!(
            logits.dim() == 2 && logits.size()[1] == c,
            "logits must have shape [N, {c}] for {c} classes, got {:?}",
            logits.size()
        );
        let ranks = target_ranks(logits, targets)?;
        let preds = labels_from_tensor(&logits.f_argmax(1, false)?, "predictions")?;
        let targets = labels_from_tensor(targets, "targets")?;
        self.add_predictions(&targets, &preds)?;
        for (h, &k) in self.top_k_hits.iter_mut().zip(&self.top_k) {
            *h += ranks.iter().filter(|&&r| (r as usize) < k).count() as u64;
        }
        self.scored += ranks.len() as u64;
        Ok(())
    }

    /// Adds a batch given as one score vector per sample.
    pub fn add_scores(&mut self, scores: &[Vec<f32>], targets: &[usize]) -> Result<()> {
        let c = self.n_classes();
        if let Some((i, row)) = scores.iter().enumerate().find(|(_, r)| r.len() != c) {
            anyhow::bail!("score row {i} has {} entries for {c} classes", row.len());
        }
        let hits = top_k_hits_rows(scores, targets, &self.top_k)?;
        let preds: Vec<usize> = scores.iter().map(|r| argmax_first(r)).collect();
        self.add_predictions(targets, &preds)?;
        for (h, n) in self.top_k_hits.iter_mut().zip(hits) {
            *h += n;
        }
        self.scored += targets.len() as u64;
        Ok(())
    }

    /// Adds hard predictions; top-k keys are then left out of [`Self::metrics`] unless every sample had scores.
    pub fn add_predictions(&mut self, targets: &[usize], preds: &[usize]) -> Result<()> {
        ensure!(targets.len() == preds.len(), "{} targets but {} predictions", targets.len(), preds.len());
        // Check the whole batch first so that a bad label leaves the counts untouched.
        let n = self.n_classes();
        if let Some(i) = targets.iter().zip(preds).position(|(&t, &p)| t >= n || p >= n) {
            anyhow::bail!("sample {i}: target {} / prediction {} out of range for {n} classes", targets[i], preds[i]);
        }
        for (&t, &p) in targets.iter().zip(preds) {
            self.confusion.add(t, p)?;
        }
        Ok(())
    }

    /// Per-class precision, recall, F1 and support.
    pub fn per_class(&self) -> Vec<ClassScores> {
        self.confusion.per_class()
    }

    /// The aggregate metrics: `accuracy`, `top{k}`, `{macro,micro,weighted}_{precision,recall,f1}` and `mcc`.
    /// Empty when no sample was added.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        let total = self.confusion.total();
        if total == 0 {
            return m;
        }
        m.insert("accuracy".into(), self.confusion.accuracy());
        if self.scored == total {
            for (k, h) in self.top_k.iter().zip(&self.top_k_hits) {
                m.insert(format!("top{k}"), *h as f64 / total as f64);
            }
        }
        for (name, avg) in [("macro", Average::Macro), ("micro", Average::Micro), ("weighted", Average::Weighted)] {
            let s = self.confusion.average(avg);
            m.insert(format!("{name}_precision"), s.precision);
            m.insert(format!("{name}_recall"), s.recall);
            m.insert(format!("{name}_f1"), s.f1);
        }
        m.insert("mcc".into(), self.confusion.mcc());
        m
    }

    /// Writes the confusion matrix as CSV, header row of class names.
    pub fn write_confusion_csv(&self, path: &Path) -> Result<()> {
        self.confusion.write_csv(&self.class_names, path).context("writing the confusion matrix")
    }
}

/// Index of the largest score, the first among equals (as `torch.argmax`); NaN never wins.
fn argmax_first(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input_without_counting_it() {
        let mut rep = ClassificationReport::unnamed(3, &[2]);
        rep.add_predictions(&[0, 1], &[0, 2]).unwrap();
        let err = rep.add_predictions(&[0, 3], &[0, 0]).unwrap_err().to_string();
        assert!(err.contains("sample 1") && err.contains("3 classes"), "{err}");
        assert_eq!(rep.confusion.total(), 2, "a rejected batch must not be half-counted");
        assert!(rep.add_predictions(&[0], &[0, 1]).is_err());

        let logits = Tensor::from_slice(&[0.1f32, 0.2, 0.3, f32::NAN, 0.0, 1.0]).view([2, 3]);
        let err = rep.add_logits(&logits, &Tensor::from_slice(&[0i64, 1])).unwrap_err().to_string();
        assert!(err.contains("NaN"), "{err}");
        let logits = Tensor::from_slice(&[0.1f32, 0.2, 0.3]).view([1, 3]);
        let err = rep.add_logits(&logits, &Tensor::from_slice(&[-1i64])).unwrap_err().to_string();
        assert!(err.contains("0..3"), "{err}");
        let err = rep.add_logits(&logits.view([3, 1]), &Tensor::from_slice(&[0i64; 3])).unwrap_err().to_string();
        assert!(err.contains("[N, 3]"), "{err}");
        assert!(rep.add_scores(&[vec![0.0, 1.0]], &[0]).is_err());
        assert_eq!(rep.confusion.total(), 2);
    }

    #[test]
    fn keys_and_top_k_only_when_every_sample_was_scored() {
        let names: Vec<String> = ["cat", "dog", "bird", "fish"].map(String::from).to_vec();
        let mut rep = ClassificationReport::new(names, &[1, 2, 2, 9]);
        assert!(rep.metrics().is_empty());
        rep.add_scores(&[vec![0.1, 0.5, 0.4, 0.0], vec![0.9, 0.05, 0.05, 0.0]], &[2, 0]).unwrap();
        let m = rep.metrics();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "accuracy",
                "macro_f1",
                "macro_precision",
                "macro_recall",
                "mcc",
                "micro_f1",
                "micro_precision",
                "micro_recall",
                "top2",
                "weighted_f1",
                "weighted_precision",
                "weighted_recall"
            ]
        );
        assert_eq!(m["accuracy"], 0.5);
        assert_eq!(m["top2"], 1.0);
        rep.add_predictions(&[1], &[1]).unwrap();
        assert!(!rep.metrics().contains_key("top2"), "top-2 over a subset of the samples would mislead");
    }

    #[test]
    fn confusion_csv_has_a_header_of_class_names_and_quotes_them() {
        let names: Vec<String> = ["a", "b,c", "say \"hi\""].map(String::from).to_vec();
        let mut rep = ClassificationReport::new(names, &[]);
        rep.add_predictions(&[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.csv");
        rep.write_confusion_csv(&path).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            csv,
            "true\\predicted,a,\"b,c\",\"say \"\"hi\"\"\"\na,1,1,0\n\"b,c\",0,1,0\n\"say \"\"hi\"\"\",1,0,2\n"
        );
        assert!(rep.confusion.to_csv(&["x".to_string()]).is_err());
    }
}
