//! What every classifier's prediction shares, whatever its domain: scores per label and the `k` best of them.
//!
//! The domain crates build their prediction APIs (used by `suite predict` and `suite serve`) on these types, so
//! that every model answers with the same JSON shape for labels.

use serde::{Deserialize, Serialize};

/// One label with its probability, as `{"label": "cat", "prob": 0.93}` in JSON answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// The label's name.
    pub label: String,
    /// Its probability (softmax for single-label models, sigmoid for multi-label ones).
    pub prob: f32,
}

/// The `k` (at most `probs.len()`) most probable labels, most probable first. The order is stable: equal
/// probabilities keep their label order, so the same scores always give the same answer. A label without a name
/// in `names` is shown by its index.
pub fn top_k(probs: &[f32], names: &[String], k: usize) -> Vec<LabelScore> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // A NaN (a broken model) sorts last rather than first (`total_cmp` ranks it above +inf); `sort_by` is stable.
    let key = |i: usize| if probs[i].is_nan() { f32::NEG_INFINITY } else { probs[i] };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    order.truncate(k);
    order.into_iter().map(|i| LabelScore { label: label_name(names, i), prob: probs[i] }).collect()
}

/// Every label whose probability reaches `threshold`, most probable first (stable as [`top_k`]): the answer of a
/// multi-label classifier.
pub fn above(probs: &[f32], names: &[String], threshold: f32) -> Vec<LabelScore> {
    let mut all = top_k(probs, names, probs.len());
    all.retain(|s| s.prob >= threshold);
    all
}

fn label_name(names: &[String], i: usize) -> String {
    names.get(i).cloned().unwrap_or_else(|| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("l{i}")).collect()
    }

    #[test]
    fn top_k_orders_by_probability_and_keeps_label_order_on_ties() {
        let got = top_k(&[0.1, 0.4, 0.1, 0.4], &names(4), 3);
        let labels: Vec<&str> = got.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["l1", "l3", "l0"]);
        assert_eq!(got[0].prob, 0.4);
    }

    #[test]
    fn top_k_is_at_most_the_number_of_labels() {
        assert_eq!(top_k(&[0.5, 0.5], &names(2), 10).len(), 2);
        assert!(top_k(&[0.5, 0.5], &names(2), 0).is_empty());
    }

    #[test]
    fn nan_goes_last_and_a_missing_name_is_the_index() {
        let got = top_k(&[f32::NAN, 0.2], &names(1), 2);
        assert_eq!(got[0].label, "1");
        assert!(got[1].prob.is_nan());
    }

    #[test]
    fn above_keeps_the_labels_at_or_over_the_threshold() {
        let got = above(&[0.5, 0.2, 0.9], &names(3), 0.5);
        let labels: Vec<&str> = got.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["l2", "l0"]);
    }
}
