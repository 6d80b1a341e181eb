//! Confident learning (Northcutt et al., 2021): which given labels disagree confidently with a model's out-of-sample
//! predicted probabilities. This is cleanlab 2.9.0's
//! `cleanlab.filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate",
//! return_indices_ranked_by="self_confidence")` with its defaults (`frac_noise=1.0`, `num_to_remove_per_class=None`,
//! `min_examples_per_class=1`), step for step, so that `suite inspect` flags the same examples in the same order as
//! the Python tool people compare it with:
//!
//! 1. per-class thresholds: the mean self-confidence of the examples given each class (2 for a class nobody has,
//!    so nothing is counted into it), clipped below at 2e-6;
//! 2. the confident joint: each example whose probability reaches a class's threshold (less 1e-6) is counted under
//!    (given label, that class), the most probable one when several do; the diagonal is raised to at least 1, then
//!    calibrated so that row sums are the label counts and the total is n (rounded preserving row totals);
//! 3. prune by noise rate: for each given class k and other class j, the examples given k with the largest margin
//!    `p(j) - p(k)` are flagged, as many as the (adjusted) joint counts for (k, j);
//! 4. examples whose given label is still the model's prediction (within 1e-6) are unflagged;
//! 5. the rest are ranked by self-confidence, lowest first.
//!
//! Floating-point sums follow numpy's pairwise summation in numpy's memory order, and rounding is numpy's
//! round-half-to-even, so the counts match to the last unit. One thing cannot be mirrored: numpy's `argsort` is not
//! stable (on AVX-512 machines even five elements can come back in any order among ties), so where cleanlab sorts
//! equal keys its own answer depends on the CPU. Here every sort is stable (ties keep index order), which is what
//! cleanlab returns with `np.argsort(..., kind="stable")`.

use std::cmp::Ordering;

use anyhow::{bail, Result};
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Serialize, Serializer};

/// cleanlab's `FLOATING_POINT_COMPARISON`: the slack of "reaches the threshold" and of "is still the prediction".
const FLOATING_POINT_COMPARISON: f64 = 1e-6;
/// cleanlab's `CONFIDENT_THRESHOLDS_LOWER_BOUND`: keeps a threshold above the comparison slack.
const CONFIDENT_THRESHOLDS_LOWER_BOUND: f64 = 2.0 * FLOATING_POINT_COMPARISON;
/// cleanlab's `TINY_VALUE`, the floor of divisors.
const TINY_VALUE: f64 = 1e-100;
/// The threshold of a class no example is given: above any probability, so nothing is counted into it.
const MISSING_CLASS_THRESHOLD: f64 = 2.0;

/// The knobs of cleanlab's `find_label_issues` that apply to `prune_by_noise_rate`; the defaults are cleanlab's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LabelIssueOptions {
    /// Fraction of the estimated noise counts to flag (1.0: all of them).
    pub frac_noise: f64,
    /// Classes with this many given examples or fewer are never pruned, and at least this many stay unflagged.
    pub min_examples_per_class: usize,
}

impl Default for LabelIssueOptions {
    fn default() -> Self {
        LabelIssueOptions { frac_noise: 1.0, min_examples_per_class: 1 }
    }
}

/// The label issues of a data set and the statistics a report shows beside them.
#[derive(Clone, Debug, Serialize)]
pub struct LabelIssues {
    /// Indices of the examples whose given label is likely wrong, most likely first (lowest self-confidence).
    pub ranked: Vec<usize>,
    /// The self-confidence (probability of the given label) of each example in `ranked`, in the same order.
    pub self_confidence: Vec<f64>,
    /// Per-class confident thresholds: the mean self-confidence of the examples given each class.
    pub thresholds: Vec<f64>,
    /// The calibrated confident joint, K x K: row = given label, column = estimated true label; rows sum to the
    /// label counts and the whole to n.
    #[serde(serialize_with = "serialize_rows")]
    pub confident_joint: Array2<i64>,
    /// One error slice per class, in class order (classes nobody was given included).
    pub classes: Vec<ClassIssues>,
}

/// The label-issue slice of one given class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassIssues {
    /// The class index.
    pub class: usize,
    /// How many examples are given this class.
    pub count: usize,
    /// How many of them are flagged as label issues.
    pub flagged: usize,
    /// This class's row of the calibrated confident joint: of the examples given this class, how many are estimated
    /// to truly belong to each class.
    pub confident_row: Vec<i64>,
}

/// Reports a matrix as a list of rows, the shape a JSON reader expects.
fn serialize_rows<S: Serializer>(m: &Array2<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    let rows: Vec<Vec<i64>> = m.outer_iter().map(|r| r.to_vec()).collect();
    rows.serialize(s)
}

/// `find_label_issues` with cleanlab's defaults. `pred_probs` is n x K (out-of-sample probabilities, rows summing to
/// about 1), `labels` the n given labels in 0..K.
pub fn find_label_issues(labels: &[usize], pred_probs: ArrayView2<f64>) -> Result<LabelIssues> {
    find_label_issues_with(labels, pred_probs, LabelIssueOptions::default())
}

/// `find_label_issues` with explicit [`LabelIssueOptions`].
pub fn find_label_issues_with(
    labels: &[usize],
    pred_probs: ArrayView2<f64>,
    opts: LabelIssueOptions,
) -> Result<LabelIssues> {
    check_inputs(labels, pred_probs)?;
    if !(0.0..=1.0).contains(&opts.frac_noise) {
        bail!("frac_noise must be in [0, 1], not {}", opts.frac_noise);
    }
    let (n, k) = pred_probs.dim();
    let counts = label_counts(labels, k);
    let thresholds = confident_thresholds(labels, pred_probs)?;
    let joint = compute_confident_joint(labels, pred_probs, true)?;
    let prune = keep_at_least_n_per_class(&joint, opts.min_examples_per_class, opts.frac_noise);

    let mut flagged = vec![false; n];
    for class in 0..k {
        // Only classes with more than `min_examples_per_class` examples are pruned (cleanlab warns and skips the rest).
        if counts[class] <= opts.min_examples_per_class {
            continue;
        }
        let members: Vec<usize> = (0..n).filter(|&i| labels[i] == class).collect();
        for other in 0..k {
            let num = prune[[class, other]];
            if other == class || num <= 0 {
                continue;
            }
            // The examples given `class` that look most like `other`: largest p(other) - p(class) first.
            let margin: Vec<f64> = members.iter().map(|&i| pred_probs[[i, other]] - pred_probs[[i, class]]).collect();
            let order = stable_argsort(&margin.iter().map(|m| -m).collect::<Vec<_>>());
            for &o in order.iter().take(num as usize) {
                flagged[members[o]] = true;
            }
        }
    }
    // An example whose given label is (within 1e-6) still the model's prediction is not an issue.
    for (i, &label) in labels.iter().enumerate() {
        if flagged[i] {
            let row = pred_probs.row(i);
            let mut best = 0;
            let mut best_v = f64::NEG_INFINITY;
            for (j, &p) in row.iter().enumerate() {
                let v = if j == label { p + FLOATING_POINT_COMPARISON } else { p };
                // argmax: the first of equal maxima, as numpy's.
                if v > best_v {
                    best_v = v;
                    best = j;
                }
            }
            if best == label {
                flagged[i] = false;
            }
        }
    }

    let conf = self_confidence(labels, pred_probs);
    let issues: Vec<usize> = (0..n).filter(|&i| flagged[i]).collect();
    let order = stable_argsort(&issues.iter().map(|&i| conf[i]).collect::<Vec<_>>());
    let ranked: Vec<usize> = order.iter().map(|&o| issues[o]).collect();
    let classes = (0..k)
        .map(|c| ClassIssues {
            class: c,
            count: counts[c],
            flagged: ranked.iter().filter(|&&i| labels[i] == c).count(),
            confident_row: joint.row(c).to_vec(),
        })
        .collect();
    Ok(LabelIssues {
        self_confidence: ranked.iter().map(|&i| conf[i]).collect(),
        ranked,
        thresholds: thresholds.to_vec(),
        confident_joint: joint,
        classes,
    })
}

/// The probability each example's model gives its given label (cleanlab's `self_confidence` label-quality score;
/// lower means more likely mislabelled).
pub fn self_confidence(labels: &[usize], pred_probs: ArrayView2<f64>) -> Array1<f64> {
    labels.iter().enumerate().map(|(i, &l)| pred_probs[[i, l]]).collect()
}

/// Per-class confident thresholds (cleanlab's `count.get_confident_thresholds`): the mean probability of class k
/// over the examples given k, or 2 for a class no example is given; clipped below at 2e-6.
pub fn confident_thresholds(labels: &[usize], pred_probs: ArrayView2<f64>) -> Result<Array1<f64>> {
    check_inputs(labels, pred_probs)?;
    let k = pred_probs.ncols();
    Ok((0..k)
        .map(|c| {
            let vals: Vec<f64> =
                labels.iter().enumerate().filter(|(_, &l)| l == c).map(|(i, _)| pred_probs[[i, c]]).collect();
            let t = if vals.is_empty() { MISSING_CLASS_THRESHOLD } else { np_sum(&vals) / vals.len() as f64 };
            t.max(CONFIDENT_THRESHOLDS_LOWER_BOUND)
        })
        .collect())
}

/// The confident joint (cleanlab's `count.compute_confident_joint`), K x K with row = given label and column =
/// confidently estimated true label; `calibrate` rescales it to the label counts (cleanlab's default, true).
pub fn compute_confident_joint(labels: &[usize], pred_probs: ArrayView2<f64>, calibrate: bool) -> Result<Array2<i64>> {
    let thresholds = confident_thresholds(labels, pred_probs)?;
    let (n, k) = pred_probs.dim();
    let mut joint = Array2::<i64>::zeros((k, k));
    let cut: Vec<f64> = thresholds.iter().map(|t| t - FLOATING_POINT_COMPARISON).collect();
    for i in 0..n {
        let row = pred_probs.row(i);
        let confident: Vec<usize> = (0..k).filter(|&j| row[j] >= cut[j]).collect();
        // Examples confident of no class are outliers and left out.
        let guess = match confident.len() {
            0 => continue,
            1 => confident[0],
            _ => argmax(row.iter().copied()),
        };
        joint[[labels[i], guess]] += 1;
    }
    // Every class keeps at least one correctly labelled example.
    for c in 0..k {
        joint[[c, c]] = joint[[c, c]].max(1);
    }
    Ok(if calibrate { calibrate_confident_joint(&joint, labels) } else { joint })
}

/// cleanlab's `count.calibrate_confident_joint`: rows rescaled to the label counts, the whole to n, then rounded to
/// integers preserving each row's total.
pub fn calibrate_confident_joint(joint: &Array2<i64>, labels: &[usize]) -> Array2<i64> {
    let k = joint.nrows();
    let counts = label_counts(labels, k);
    let mut cal = Array2::<f64>::zeros((k, k));
    for i in 0..k {
        let row_sum = (joint.row(i).sum() as f64).max(TINY_VALUE);
        for j in 0..k {
            cal[[i, j]] = joint[[i, j]] as f64 / row_sum * counts[i] as f64;
        }
    }
    // cleanlab's calibrated matrix is a transposed (column-major) array, and numpy sums in memory order.
    let column_major: Vec<f64> = (0..k).flat_map(|j| (0..k).map(move |i| (i, j))).map(|(i, j)| cal[[i, j]]).collect();
    let total = np_sum(&column_major).max(TINY_VALUE);
    let n = labels.len() as f64;
    cal.mapv_inplace(|v| v / total * n);
    let mut out = Array2::<i64>::zeros((k, k));
    for i in 0..k {
        let row = round_preserving_sum(&cal.row(i).to_vec());
        for j in 0..k {
            out[[i, j]] = row[j];
        }
    }
    out
}

/// cleanlab's `filter._keep_at_least_n_per_class` (with `_reduce_prune_counts`), in the joint's orientation
/// (row = given label): the diagonal is raised to at least `n`, the increase taken evenly from the row's non-zero
/// off-diagonal counts, the off-diagonal counts scaled by `frac_noise`, and everything truncated to integers.
fn keep_at_least_n_per_class(joint: &Array2<i64>, n: usize, frac_noise: f64) -> Array2<i64> {
    let k = joint.nrows();
    let mut m = Array2::<f64>::zeros((k, k));
    for c in 0..k {
        let diag = joint[[c, c]];
        let new_diag = diag.max(n as i64);
        let diff = (new_diag - diag) as f64;
        let nonzero = joint.row(c).iter().filter(|&&v| v != 0).count() as f64;
        let per = (nonzero - 1.0).max(1.0);
        for j in 0..k {
            m[[c, j]] = if j == c { new_diag as f64 } else { (joint[[c, j]] as f64 - diff / per).max(0.0) };
        }
    }
    let mut out = Array2::<i64>::zeros((k, k));
    for c in 0..k {
        // The noise removed by frac_noise goes back to the diagonal, so the row total is kept.
        let mut moved = 0.0;
        for j in 0..k {
            if j != c {
                let scaled = m[[c, j]] * frac_noise;
                moved += m[[c, j]] - scaled;
                out[[c, j]] = scaled as i64;
            }
        }
        out[[c, c]] = (m[[c, c]] + moved) as i64;
    }
    out
}

/// cleanlab's `internal.util.round_preserving_sum`: numpy rounding (half to even), then the entries with the
/// largest (or, to decrease, smallest) rounding loss are moved by one until the rounded total is restored.
fn round_preserving_sum(floats: &[f64]) -> Vec<i64> {
    let mut ints: Vec<f64> = floats.iter().map(|v| v.round_ties_even()).collect();
    let orig_sum = np_sum(floats).round_ties_even();
    let mut int_sum = np_sum(&ints).round_ties_even();
    while (int_sum - orig_sum).abs() > FLOATING_POINT_COMPARISON {
        let diff = (orig_sum - int_sum).round_ties_even();
        let increment = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(floats.len());
        let loss: Vec<f64> = floats.iter().zip(&ints).map(|(f, i)| f - i).collect();
        let mut order = stable_argsort(&loss);
        // `[::-increment]`: largest loss first when incrementing.
        if increment > 0.0 {
            order.reverse();
        }
        for &i in order.iter().take(changes) {
            ints[i] += increment;
        }
        int_sum = np_sum(&ints).round_ties_even();
    }
    ints.iter().map(|&v| v as i64).collect()
}

/// How many examples are given each of the `k` classes.
fn label_counts(labels: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0; k];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

/// cleanlab's input checks (`assert_valid_inputs`), as errors.
fn check_inputs(labels: &[usize], pred_probs: ArrayView2<f64>) -> Result<()> {
    let (n, k) = pred_probs.dim();
    if n == 0 || k == 0 {
        bail!("label issues need at least one example and one class (pred_probs is {n} x {k})");
    }
    if labels.len() != n {
        bail!("pred_probs has {n} rows but there are {} labels", labels.len());
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= k) {
        bail!("label {l} is out of range: pred_probs has {k} columns");
    }
    if pred_probs.iter().any(|p| !(-FLOATING_POINT_COMPARISON..=1.0 + FLOATING_POINT_COMPARISON).contains(p)) {
        bail!("pred_probs must be probabilities in [0, 1] (and not NaN)");
    }
    // cleanlab accepts a single class only when it is class 0 (a one-vs-rest slice of multi-label data).
    let first = labels[0];
    if labels.iter().all(|&l| l == first) && first != 0 {
        bail!("labels must contain at least 2 classes (all are {first})");
    }
    Ok(())
}

/// Index of the first maximum, as numpy's `argmax`.
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = 0;
    let mut best_v = f64::NEG_INFINITY;
    for (i, v) in values.enumerate() {
        if v > best_v || i == 0 {
            best_v = v;
            best = i;
        }
    }
    best
}

/// Ascending stable argsort (ties keep index order): numpy's `argsort(kind="stable")`.
fn stable_argsort(keys: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by(|&a, &b| keys[a].partial_cmp(&keys[b]).unwrap_or(Ordering::Equal));
    idx
}

/// `np.sum` of a contiguous float64 array: the identity 0 plus numpy's pairwise summation, bit for bit.
pub(crate) fn np_sum(a: &[f64]) -> f64 {
    0.0 + pairwise_sum(a)
}

/// numpy's `pairwise_sum` (loops_utils.h): plain below 8 elements, 8 running sums up to 128, halves above.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut r = 0.0;
        for v in a {
            r += v;
        }
        r
    } else if n <= 128 {
        let mut r = [0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

#[cfg(test)]
#[path = "label_issues_tests.rs"]
mod tests;
