use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tch::{Kind, Tensor};

/// Fraction of samples whose prediction equals the target, as sklearn's `accuracy_score`.
///
/// Fails when the slices differ in length or are empty.
pub fn accuracy(targets: &[usize], preds: &[usize]) -> Result<f64> {
    ensure!(targets.len() == preds.len(), "accuracy: {} targets but {} predictions", targets.len(), preds.len());
    ensure!(!targets.is_empty(), "accuracy: no samples");
    let correct = targets.iter().zip(preds).filter(|(t, p)| t == p).count();
    Ok(correct as f64 / targets.len() as f64)
}

/// How many classes rank strictly ahead of `target` in `scores`, so 0 means the target is the top prediction.
///
/// Ties are broken as sklearn's `top_k_accuracy_score` breaks them (a stable ascending sort, reversed): among equal
/// scores the higher class index ranks first. `np.argmax`/`torch.argmax` pick the lowest index instead, so with
/// exact ties top-1 accuracy can differ from argmax accuracy, in sklearn as here.
fn target_rank(scores: &[f32], target: usize) -> usize {
    let s = scores[target];
    scores.iter().enumerate().filter(|&(c, &v)| v > s || (v == s && c > target)).count()
}

/// Number of samples whose target is among the `k` best-scored classes, for row-major `scores`.
pub(crate) fn top_k_hits_rows(scores: &[Vec<f32>], targets: &[usize], ks: &[usize]) -> Result<Vec<u64>> {
    ensure!(scores.len() == targets.len(), "top-k accuracy: {} score rows but {} targets", scores.len(), targets.len());
    let n_classes = scores.first().map_or(0, Vec::len);
    let mut hits = vec![0u64; ks.len()];
    for (i, (row, &t)) in scores.iter().zip(targets).enumerate() {
        ensure!(
            row.len() == n_classes,
            "top-k accuracy: score row {i} has {} classes, row 0 has {n_classes}",
            row.len()
        );
        ensure!(t < n_classes, "top-k accuracy: target {t} of sample {i} is out of range for {n_classes} classes");
        ensure!(row.iter().all(|v| !v.is_nan()), "top-k accuracy: score row {i} contains NaN");
        let rank = target_rank(row, t);
        for (h, &k) in hits.iter_mut().zip(ks) {
            *h += u64::from(rank < k);
        }
    }
    Ok(hits)
}

/// Top-k accuracy from one score vector per sample (logits or probabilities), as sklearn's
/// `top_k_accuracy_score(targets, scores, k=k, labels=range(C))` for `C > 2` classes.
///
/// Fails on ragged rows, NaN scores, out-of-range targets, `k == 0` or no samples.
pub fn top_k_accuracy_rows(scores: &[Vec<f32>], targets: &[usize], k: usize) -> Result<f64> {
    ensure!(k > 0, "top-k accuracy: k must be at least 1");
    ensure!(!targets.is_empty(), "top-k accuracy: no samples");
    let hits = top_k_hits_rows(scores, targets, &[k])?;
    Ok(hits[0] as f64 / targets.len() as f64)
}

/// Checks a `[N, C]` logits tensor against `[N]` integer targets and returns the targets as i64.
fn check_logits(logits: &Tensor, targets: &Tensor) -> Result<(i64, i64, Tensor)> {
    let size = logits.size();
    ensure!(size.len() == 2, "logits must have shape [N, C], got {size:?}");
    let (n, c) = (size[0], size[1]);
    ensure!(targets.size() == [n], "targets must have shape [{n}] to match logits {size:?}, got {:?}", targets.size());
    ensure!(logits.is_floating_point(), "logits must be floating point, got {:?}", logits.kind());
    ensure!(
        matches!(targets.kind(), Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8),
        "targets must be an integer tensor, got {:?}",
        targets.kind()
    );
    let targets = targets.f_to_kind(Kind::Int64)?.f_to_device(logits.device())?;
    if n > 0 {
        let (lo, hi) = (targets.f_min()?.int64_value(&[]), targets.f_max()?.int64_value(&[]));
        ensure!(lo >= 0 && hi < c, "targets must lie in 0..{c}, found values in {lo}..={hi}");
        ensure!(!bool::try_from(logits.f_isnan()?.f_any()?)?, "logits contain NaN");
    }
    Ok((n, c, targets))
}

/// Rank of each target among its row's logits (0 = top), with sklearn's tie rule; computed on the logits' device
/// and returned on the CPU.
pub(crate) fn target_ranks(logits: &Tensor, targets: &Tensor) -> Result<Vec<i64>> {
    let (_, c, targets) = check_logits(logits, targets)?;
    let logits = logits.f_detach()?;
    let t = targets.f_unsqueeze(1)?;
    let target_scores = logits.f_gather(1, &t, false)?;
    let class_idx = Tensor::f_arange(c, (Kind::Int64, logits.device()))?.f_unsqueeze(0)?;
    let ahead = logits
        .f_gt_tensor(&target_scores)?
        .f_logical_or(&logits.f_eq_tensor(&target_scores)?.f_logical_and(&class_idx.f_gt_tensor(&t)?)?)?;
    let ranks = ahead.f_sum_dim_intlist(1, false, Kind::Int64)?.f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<i64>::try_from(&ranks)?)
}

/// Top-k accuracy from a `[N, C]` logits (or probabilities) tensor and `[N]` integer targets, as sklearn's
/// `top_k_accuracy_score(targets, logits, k=k, labels=range(C))` for `C > 2` classes.
///
/// The comparison runs on the logits' device; only the per-sample ranks come back to the CPU.
pub fn top_k_accuracy(logits: &Tensor, targets: &Tensor, k: usize) -> Result<f64> {
    ensure!(k > 0, "top-k accuracy: k must be at least 1");
    let ranks = target_ranks(logits, targets)?;
    ensure!(!ranks.is_empty(), "top-k accuracy: no samples");
    let hits = ranks.iter().filter(|&&r| (r as usize) < k).count();
    Ok(hits as f64 / ranks.len() as f64)
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    /// `TP / (TP + FP)`, 0 when the class was never predicted (sklearn's `zero_division=0`).
    pub precision: f64,
    /// `TP / (TP + FN)`, 0 when the class never occurs.
    pub recall: f64,
    /// `2·TP / (2·TP + FP + FN)`, 0 when the class neither occurs nor is predicted.
    pub f1: f64,
    /// Number of samples whose target is this class.
    pub support: u64,
}

/// How per-class scores are combined into one number, as sklearn's `average=` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// Unweighted mean over the classes that occur in the targets or the predictions.
    Macro,
    /// Scores of the pooled counts; for single-label data precision, recall and F1 all equal accuracy.
    Micro,
    /// Mean over classes weighted by support.
    Weighted,
}

/// Averaged precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AveragedScores {
    /// Averaged precision.
    pub precision: f64,
    /// Averaged recall.
    pub recall: f64,
    /// Averaged F1 (the average of per-class F1, not the F1 of averaged precision and recall, as in sklearn).
    pub f1: f64,
}

/// Counts of (target, prediction) pairs; row = true class, column = predicted class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Number of classes; targets and predictions lie in `0..n_classes`.
    pub n_classes: usize,
    /// Row-major `n_classes × n_classes` counts: `counts[target * n_classes + pred]`.
    pub counts: Vec<u64>,
}

fn ratio(num: f64, den: f64) -> f64 {
    // sklearn's zero_division=0: an undefined ratio (empty class) counts as 0 rather than NaN.
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

impl ConfusionMatrix {
    /// An all-zero matrix for `n_classes` classes.
    pub fn new(n_classes: usize) -> Self {
        Self { n_classes, counts: vec![0; n_classes * n_classes] }
    }

    /// A matrix from parallel slices of targets and predictions.
    pub fn from_labels(n_classes: usize, targets: &[usize], preds: &[usize]) -> Result<Self> {
        ensure!(
            targets.len() == preds.len(),
            "confusion matrix: {} targets but {} predictions",
            targets.len(),
            preds.len()
        );
        let mut m = Self::new(n_classes);
        for (&t, &p) in targets.iter().zip(preds) {
            m.add(t, p)?;
        }
        Ok(m)
    }

    /// Counts one sample; fails when a label is out of range.
    pub fn add(&mut self, target: usize, pred: usize) -> Result<()> {
        let n = self.n_classes;
        ensure!(target < n, "target class {target} is out of range for {n} classes");
        ensure!(pred < n, "predicted class {pred} is out of range for {n} classes");
        self.counts[target * n + pred] += 1;
        Ok(())
    }

    /// Adds another matrix's counts (e.g. from another evaluation shard).
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        ensure!(
            other.n_classes == self.n_classes,
            "cannot merge a {}-class confusion matrix into a {}-class one",
            other.n_classes,
            self.n_classes
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        Ok(())
    }

    /// Count of samples of true class `target` predicted as `pred`.
    pub fn get(&self, target: usize, pred: usize) -> u64 {
        self.counts[target * self.n_classes + pred]
    }

    /// Counts of the samples whose true class is `target`, indexed by predicted class.
    pub fn row(&self, target: usize) -> &[u64] {
        &self.counts[target * self.n_classes..(target + 1) * self.n_classes]
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Number of correctly classified samples (the trace).
    pub fn correct(&self) -> u64 {
        (0..self.n_classes).map(|c| self.get(c, c)).sum()
    }

    /// Fraction of correct predictions; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct() as f64, self.total() as f64)
    }

    /// Per-class support: samples per true class (row sums).
    pub fn support(&self) -> Vec<u64> {
        (0..self.n_classes).map(|t| self.row(t).iter().sum()).collect()
    }

    /// Per-class prediction counts (column sums).
    pub fn predicted(&self) -> Vec<u64> {
        let n = self.n_classes;
        (0..n).map(|p| (0..n).map(|t| self.get(t, p)).sum()).collect()
    }

    /// Precision, recall, F1 and support of every class, with sklearn's `zero_division=0`.
    pub fn per_class(&self) -> Vec<ClassScores> {
        let support = self.support();
        let predicted = self.predicted();
        (0..self.n_classes)
            .map(|c| {
                let tp = self.get(c, c) as f64;
                let (s, p) = (support[c] as f64, predicted[c] as f64);
                ClassScores {
                    precision: ratio(tp, p),
                    recall: ratio(tp, s),
                    // sklearn computes F1 from counts, (1+β²)·TP / (β²·support + predicted), not from P and R.
                    f1: ratio(2.0 * tp, s + p),
                    support: support[c],
                }
            })
            .collect()
    }

    /// Precision, recall and F1 averaged as sklearn's `precision_recall_fscore_support(average=…,
    /// zero_division=0)` without `labels=`: macro and weighted means run over the classes present in the targets
    /// or the predictions, so a class absent from both does not drag the mean down.
    pub fn average(&self, average: Average) -> AveragedScores {
        let support = self.support();
        let predicted = self.predicted();
        match average {
            Average::Micro => {
                let tp = self.correct() as f64;
                let (s, p) = (self.total() as f64, self.total() as f64);
                AveragedScores { precision: ratio(tp, p), recall: ratio(tp, s), f1: ratio(2.0 * tp, s + p) }
            }
            Average::Macro | Average::Weighted => {
                let scores = self.per_class();
                let present: Vec<usize> = (0..self.n_classes).filter(|&c| support[c] + predicted[c] > 0).collect();
                let weight = |c: usize| if average == Average::Macro { 1.0 } else { support[c] as f64 };
                let total: f64 = present.iter().map(|&c| weight(c)).sum();
                let mean = |f: fn(&ClassScores) -> f64| {
                    ratio(present.iter().map(|&c| weight(c) * f(&scores[c])).sum::<f64>(), total)
                };
                AveragedScores { precision: mean(|s| s.precision), recall: mean(|s| s.recall), f1: mean(|s| s.f1) }
            }
        }
    }

    /// Matthews correlation coefficient, the multiclass form of sklearn's `matthews_corrcoef`; 0 when undefined
    /// (a constant target or prediction).
    pub fn mcc(&self) -> f64 {
        // Same float64 formula and evaluation order as sklearn, so the results agree to rounding.
        let t_sum: Vec<f64> = self.support().into_iter().map(|v| v as f64).collect();
        let p_sum: Vec<f64> = self.predicted().into_iter().map(|v| v as f64).collect();
        let n_correct = self.correct() as f64;
        let n = p_sum.iter().sum::<f64>();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let cov_ytyp = n_correct * n - dot(&t_sum, &p_sum);
        let cov_ypyp = n * n - dot(&p_sum, &p_sum);
        let cov_ytyt = n * n - dot(&t_sum, &t_sum);
        let prod = cov_ypyp * cov_ytyt;
        if prod == 0.0 {
            0.0
        } else {
            cov_ytyp / prod.sqrt()
        }
    }

    /// The matrix as CSV: a header row `true\predicted,<class names…>`, then one row per true class starting with
    /// its name. Fails unless there is one name per class.
    pub fn to_csv(&self, class_names: &[String]) -> Result<String> {
        ensure!(
            class_names.len() == self.n_classes,
            "confusion matrix CSV: {} class names for {} classes",
            class_names.len(),
            self.n_classes
        );
        let mut out = String::from("true\\predicted");
        for name in class_names {
            out.push(',');
            out.push_str(&csv_field(name));
        }
        out.push('\n');
        for (t, name) in class_names.iter().enumerate() {
            out.push_str(&csv_field(name));
            for v in self.row(t) {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// Writes [`ConfusionMatrix::to_csv`] to `path` atomically.
    pub fn write_csv(&self, class_names: &[String], path: &Path) -> Result<()> {
        let csv = self.to_csv(class_names)?;
        crate::runs::atomic_write(path, csv.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Converts `[N]` integer labels (any integer kind, any device) to `usize`, rejecting negatives.
pub(crate) fn labels_from_tensor(t: &Tensor, what: &str) -> Result<Vec<usize>> {
    ensure!(t.dim() == 1, "{what} must have shape [N], got {:?}", t.size());
    let v = Vec::<i64>::try_from(&t.f_to_kind(Kind::Int64)?.f_to_device(tch::Device::Cpu)?)?;
    v.into_iter()
        .enumerate()
        .map(|(i, x)| match usize::try_from(x) {
            Ok(u) => Ok(u),
            Err(_) => bail!("{what}: sample {i} has negative class {x}"),
        })
        .collect()
}
