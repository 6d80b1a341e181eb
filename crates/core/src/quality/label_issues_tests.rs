//! Confident learning against cleanlab 2.9.0 itself on seeded random cases: the same ranked indices, confident
//! joint and thresholds, exactly.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::*;
use crate::python::run_python;

/// Runs `cleanlab.filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate",
/// return_indices_ranked_by="self_confidence")` on each case in the JSON file argv[1], twice: as installed, and
/// with numpy's argsort made stable (the tie rule the Rust side implements; numpy's default sort orders ties
/// differently per CPU). Also prints the calibrated confident joint and the thresholds.
const REFERENCE: &str = r#"
import sys, json, warnings
import numpy as np
warnings.simplefilter("ignore")
from cleanlab.filter import find_label_issues
from cleanlab.count import compute_confident_joint, get_confident_thresholds
cases = json.load(open(sys.argv[1]))
orig = np.argsort
def stable(a, axis=-1, kind=None, order=None, **kw):
    return orig(a, axis=axis, kind="stable", order=order, **kw)
out = []
for c in cases:
    labels = np.asarray(c["labels"], dtype=np.int64)
    probs = np.asarray(c["probs"], dtype=np.float64)
    kw = dict(filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence", n_jobs=1,
              frac_noise=c["frac_noise"], min_examples_per_class=c["min_examples"])
    default = find_label_issues(labels, probs, **kw).tolist()
    np.argsort = stable
    try:
        ranked = find_label_issues(labels, probs, **kw).tolist()
        joint = compute_confident_joint(labels, probs).tolist()
    finally:
        np.argsort = orig
    out.append({"ranked": ranked, "default": default, "joint": joint,
                "thresholds": get_confident_thresholds(labels, probs).tolist()})
print(json.dumps(out))
"#;

#[derive(serde::Serialize)]
struct Case {
    name: String,
    labels: Vec<usize>,
    probs: Vec<Vec<f64>>,
    frac_noise: f64,
    min_examples: usize,
}

#[derive(Deserialize)]
struct Reference {
    ranked: Vec<usize>,
    default: Vec<usize>,
    joint: Vec<Vec<i64>>,
    thresholds: Vec<f64>,
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller: rand_distr is not a dependency.
    let u: f64 = rng.random::<f64>().max(1e-300);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A noisy data set: true classes drawn from `classes` (a subset of 0..k leaves classes nobody is given), a model
/// that is right with confidence `strength`, and a fraction `noise` of labels flipped to another class.
fn make_case(rng: &mut ChaCha8Rng, name: &str, n: usize, k: usize, classes: usize, strength: f64, noise: f64) -> Case {
    let mut labels = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n);
    for _ in 0..n {
        let truth = rng.random_range(0..classes);
        let logits: Vec<f64> = (0..k).map(|c| gaussian(rng) + if c == truth { strength } else { 0.0 }).collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let s: f64 = e.iter().sum();
        probs.push(e.iter().map(|v| v / s).collect());
        let given = if rng.random::<f64>() < noise && classes > 1 {
            (truth + rng.random_range(1..classes)) % classes
        } else {
            truth
        };
        labels.push(given);
    }
    Case { name: name.into(), labels, probs, frac_noise: 1.0, min_examples: 1 }
}

fn cases() -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(20261202);
    let mut out = vec![
        make_case(&mut rng, "n200_k3", 200, 3, 3, 2.0, 0.2),
        make_case(&mut rng, "n1000_k10", 1000, 10, 10, 2.5, 0.1),
        make_case(&mut rng, "n5000_k5", 5000, 5, 5, 1.5, 0.15),
        make_case(&mut rng, "binary", 300, 2, 2, 1.0, 0.25),
        make_case(&mut rng, "missing_classes", 400, 6, 4, 2.0, 0.2),
        make_case(&mut rng, "n_lt_k", 6, 10, 10, 2.0, 0.3),
        make_case(&mut rng, "flat", 400, 4, 4, 0.3, 0.3),
        make_case(&mut rng, "confident", 600, 8, 8, 6.0, 0.05),
        make_case(&mut rng, "n150_k20", 150, 20, 20, 3.0, 0.2),
        make_case(&mut rng, "clean", 300, 3, 3, 3.0, 0.0),
    ];
    // Class 0 only: cleanlab's one-class special case (a one-vs-rest slice).
    let mut one = make_case(&mut rng, "one_class", 50, 3, 3, 2.0, 0.0);
    one.labels = vec![0; 50];
    out.push(one);
    // A class with a single example is never pruned (min_examples_per_class = 1).
    let mut single = make_case(&mut rng, "singleton_class", 120, 4, 3, 2.0, 0.2);
    single.labels[7] = 3;
    out.push(single);
    for (i, seed_n) in [37usize, 129, 257, 2000].iter().enumerate() {
        let k = 2 + i * 3;
        out.push(make_case(&mut rng, &format!("random_{seed_n}_{k}"), *seed_n, k, k, 1.0 + i as f64, 0.25));
    }
    let mut frac = make_case(&mut rng, "frac_noise_0.5", 500, 5, 5, 2.0, 0.2);
    frac.frac_noise = 0.5;
    out.push(frac);
    let mut min3 = make_case(&mut rng, "min_examples_3", 300, 4, 4, 1.5, 0.3);
    min3.min_examples = 3;
    out.push(min3);
    out
}

#[test]
fn label_issues_match_cleanlab() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = run_python(REFERENCE, &[path.to_str().unwrap()]).unwrap();
    let refs: Vec<Reference> = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let mut tie_sensitive = Vec::new();
    let mut flagged = 0;
    for (case, want) in cases.iter().zip(&refs) {
        let (n, k) = (case.probs.len(), case.probs[0].len());
        let probs = Array2::from_shape_vec((n, k), case.probs.concat()).unwrap();
        let opts = LabelIssueOptions { frac_noise: case.frac_noise, min_examples_per_class: case.min_examples };
        let got = find_label_issues_with(&case.labels, probs.view(), opts).unwrap();
        assert_eq!(got.thresholds, want.thresholds, "{}: thresholds", case.name);
        let joint: Vec<Vec<i64>> = got.confident_joint.outer_iter().map(|r| r.to_vec()).collect();
        assert_eq!(joint, want.joint, "{}: confident joint", case.name);
        assert_eq!(got.ranked, want.ranked, "{}: ranked label issues", case.name);
        if want.default != want.ranked {
            tie_sensitive.push(case.name.clone());
        }
        flagged += got.ranked.len();
        // The slices add up.
        assert_eq!(got.classes.iter().map(|c| c.flagged).sum::<usize>(), got.ranked.len());
        assert_eq!(got.classes.iter().map(|c| c.count).sum::<usize>(), n);
        for c in &got.classes {
            assert_eq!(c.confident_row.iter().sum::<i64>(), c.count as i64, "{}: row {}", case.name, c.class);
        }
    }
    eprintln!(
        "cleanlab parity: {} cases, {flagged} issues, identical; cases where cleanlab's unstable numpy sort changes \
         its own answer: {tie_sensitive:?}",
        cases.len()
    );
    assert!(flagged > 100, "the cases should flag issues");
}

#[test]
fn bad_inputs_are_errors() {
    let p = ndarray::array![[0.9, 0.1], [0.2, 0.8]];
    assert!(find_label_issues(&[0, 2], p.view()).is_err());
    assert!(find_label_issues(&[0], p.view()).is_err());
    assert!(find_label_issues(&[1, 1], p.view()).is_err());
    let bad = ndarray::array![[1.5, -0.5], [0.2, 0.8]];
    assert!(find_label_issues(&[0, 1], bad.view()).is_err());
    // All class 0 is cleanlab's allowed one-class case.
    assert!(find_label_issues(&[0, 0], p.view()).unwrap().ranked.is_empty());
}

#[test]
fn pairwise_sum_is_numpys() {
    // Sums that depend on the order: numpy's np.sum of sin(1..=n) (a plain loop gives ...315 and ...531).
    let v: Vec<f64> = (1..=300).map(|i| (i as f64).sin()).collect();
    assert_eq!(np_sum(&v), 0.43558973604614226);
    let v: Vec<f64> = (1..=257).map(|i| (i as f64).sin()).collect();
    assert_eq!(np_sum(&v), -0.12129908226705277);
}

#[test]
fn round_preserving_sum_keeps_the_total() {
    let r = round_preserving_sum(&[0.5, 0.5, 1.5, 2.5, 0.0]);
    assert_eq!(r, vec![0, 0, 2, 3, 0]);
    // Equal losses: the later index moves first, as cleanlab with a stable sort.
    assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1, 2, 1]);
}
