//! Every metric against scikit-learn on randomly generated cases, to 1e-9.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tch::Tensor;

use super::*;
use crate::python::run_python;

const TOL: f64 = 1e-9;

struct Case {
    n_classes: usize,
    targets: Vec<usize>,
    preds: Vec<usize>,
    scores: Vec<Vec<f32>>,
}

/// Random cases that reach the edge cases: missing classes, classes only predicted, constant predictions, one
/// sample, two classes, and scores with exact ties.
fn cases() -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(20240611);
    let mut out = Vec::new();
    for i in 0..120 {
        let n_classes = [2, 3, 4, 5, 7, 10, 13][i % 7];
        let n = match i % 5 {
            0 => 1,
            1 => rng.random_range(2..8),
            _ => rng.random_range(8..300),
        };
        // Only a subset of classes occurs in the targets for some cases, so some classes have zero support.
        let occurring = if i % 3 == 0 { rng.random_range(1..=n_classes) } else { n_classes };
        let targets: Vec<usize> = (0..n).map(|_| rng.random_range(0..occurring)).collect();
        let quantised = i % 4 == 0;
        let scores: Vec<Vec<f32>> = targets
            .iter()
            .map(|&t| {
                (0..n_classes)
                    .map(|c| {
                        let v: f32 = rng.random::<f32>() * 4.0 - 2.0 + if c == t { 1.5 } else { 0.0 };
                        // Quarter steps make exact ties frequent, to pin down the tie rule.
                        if quantised {
                            (v * 2.0).round() / 2.0
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        let preds: Vec<usize> = match i % 11 {
            // Constant prediction: MCC is undefined (0) and most classes are never predicted.
            5 => vec![rng.random_range(0..n_classes); n],
            // Predictions drawn from all classes although targets miss some.
            7 => (0..n).map(|_| rng.random_range(0..n_classes)).collect(),
            _ => scores.iter().map(|r| argmax(r)).collect(),
        };
        out.push(Case { n_classes, targets, preds, scores });
    }
    out
}

fn argmax(r: &[f32]) -> usize {
    let mut b = 0;
    for (i, &v) in r.iter().enumerate() {
        if v > r[b] {
            b = i;
        }
    }
    b
}

#[derive(Deserialize)]
struct Reference {
    accuracy: f64,
    precision: Vec<f64>,
    recall: Vec<f64>,
    f1: Vec<f64>,
    support: Vec<u64>,
    /// [macro, micro, weighted] × [precision, recall, f1]
    averages: Vec<[f64; 3]>,
    mcc: f64,
    /// (k, top-k accuracy); empty for two classes, where sklearn wants 1-D scores.
    topk: Vec<(usize, f64)>,
}

const SKLEARN: &str = r#"
import json, sys, warnings
import numpy as np
from sklearn.metrics import (accuracy_score, precision_recall_fscore_support, matthews_corrcoef,
                             top_k_accuracy_score)
warnings.simplefilter("ignore")
out = []
for c in json.load(open(sys.argv[1])):
    y, p, n = np.array(c["targets"]), np.array(c["preds"]), c["n_classes"]
    s = np.array(c["scores"], dtype=np.float64)
    P, R, F, S = precision_recall_fscore_support(y, p, labels=np.arange(n), average=None, zero_division=0)
    avgs = [list(precision_recall_fscore_support(y, p, average=a, zero_division=0)[:3])
            for a in ("macro", "micro", "weighted")]
    topk = [] if n <= 2 else [(k, top_k_accuracy_score(y, s, k=k, labels=np.arange(n))) for k in (1, 2, 3)]
    out.append(dict(accuracy=accuracy_score(y, p), precision=P.tolist(), recall=R.tolist(), f1=F.tolist(),
                    support=[int(v) for v in S], averages=avgs, mcc=matthews_corrcoef(y, p), topk=topk))
print(json.dumps(out))
"#;

fn reference(cases: &[Case]) -> Vec<Reference> {
    let json: Vec<_> = cases
        .iter()
        .map(|c| {
            serde_json::json!({"n_classes": c.n_classes, "targets": c.targets, "preds": c.preds, "scores": c.scores})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = run_python(SKLEARN, &[path.to_str().unwrap()]).expect("scikit-learn reference (scripts/setup.sh)");
    serde_json::from_str(&out).unwrap()
}

fn close(what: &str, case: usize, ours: f64, theirs: f64) {
    assert!((ours - theirs).abs() <= TOL, "case {case}: {what}: ours {ours}, sklearn {theirs}");
}

#[test]
fn confusion_matrix_metrics_match_sklearn() {
    let cases = cases();
    let refs = reference(&cases);
    let mut saw_tie_disagreement = false;
    for (i, (c, r)) in cases.iter().zip(&refs).enumerate() {
        let m = ConfusionMatrix::from_labels(c.n_classes, &c.targets, &c.preds).unwrap();
        close("accuracy", i, m.accuracy(), r.accuracy);
        close("accuracy()", i, accuracy(&c.targets, &c.preds).unwrap(), r.accuracy);
        for (k, s) in m.per_class().iter().enumerate() {
            close(&format!("precision[{k}]"), i, s.precision, r.precision[k]);
            close(&format!("recall[{k}]"), i, s.recall, r.recall[k]);
            close(&format!("f1[{k}]"), i, s.f1, r.f1[k]);
            assert_eq!(s.support, r.support[k], "case {i}: support[{k}]");
        }
        for (a, avg) in [Average::Macro, Average::Micro, Average::Weighted].into_iter().enumerate() {
            let s = m.average(avg);
            close(&format!("{avg:?} precision"), i, s.precision, r.averages[a][0]);
            close(&format!("{avg:?} recall"), i, s.recall, r.averages[a][1]);
            close(&format!("{avg:?} f1"), i, s.f1, r.averages[a][2]);
        }
        close("mcc", i, m.mcc(), r.mcc);
        for &(k, want) in &r.topk {
            close(&format!("top{k} (rows)"), i, top_k_accuracy_rows(&c.scores, &c.targets, k).unwrap(), want);
            if k == 1
                && (want - r.accuracy).abs() > TOL
                && c.preds == c.scores.iter().map(|s| argmax(s)).collect::<Vec<_>>()
            {
                saw_tie_disagreement = true;
            }
        }
    }
    // The quantised cases must really exercise the tie rule (top-1 under sklearn's rule ≠ argmax accuracy).
    assert!(saw_tie_disagreement, "no case had ties that separate sklearn's top-1 from argmax accuracy");
}

#[test]
fn tensor_top_k_and_report_match_sklearn() {
    let cases = cases();
    let refs = reference(&cases);
    for (i, (c, r)) in cases.iter().zip(&refs).enumerate() {
        let flat: Vec<f32> = c.scores.iter().flatten().copied().collect();
        let logits = Tensor::from_slice(&flat).view([c.targets.len() as i64, c.n_classes as i64]);
        let targets = Tensor::from_slice(&c.targets.iter().map(|&t| t as i64).collect::<Vec<_>>());
        for &(k, want) in &r.topk {
            close(&format!("top{k} (tensor)"), i, top_k_accuracy(&logits, &targets, k).unwrap(), want);
        }
        // Fed in uneven batches, the report must equal the one-shot sklearn figures.
        let mut rep = ClassificationReport::unnamed(c.n_classes, &[2, 3]);
        let n = c.targets.len() as i64;
        let mut start = 0;
        while start < n {
            let len = (7 + i as i64 % 5).min(n - start);
            rep.add_logits(&logits.narrow(0, start, len), &targets.narrow(0, start, len)).unwrap();
            start += len;
        }
        let m = rep.metrics();
        let argmax_preds: Vec<usize> = c.scores.iter().map(|s| argmax(s)).collect();
        if argmax_preds == c.preds {
            close("report accuracy", i, m["accuracy"], r.accuracy);
            close("report macro_f1", i, m["macro_f1"], r.averages[0][2]);
            close("report micro_f1", i, m["micro_f1"], r.averages[1][2]);
            close("report weighted_f1", i, m["weighted_f1"], r.averages[2][2]);
            close("report mcc", i, m["mcc"], r.mcc);
        }
        for &(k, want) in r.topk.iter().filter(|(k, _)| *k > 1 && *k < c.n_classes) {
            close(&format!("report top{k}"), i, m[&format!("top{k}")], want);
        }
    }
}
