//! Multi-label scores against scikit-learn on 300 random indicator matrices.

use super::{oracle, MaxDiff};
use crate::metrics::multilabel_scores;

/// Exact: counts are integers and the averages reproduce numpy's pairwise sums.
const TOL: f64 = 0.0;

/// Cases: dense and sparse matrices, labels never true or never predicted, empty rows, perfect and empty
/// predictions, 2 to 40 labels (past numpy's 8-way unrolled sum) and 1 to 300 samples.
const SKLEARN: &str = r#"
import json, random, sys, warnings
import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support
warnings.simplefilter("ignore")
rng = random.Random(int(sys.argv[1]))
out = []
for c in range(int(sys.argv[2])):
    n, k = rng.choice([1, 2, 5, 17, 60, 300]), rng.choice([2, 3, 5, 8, 9, 13, 40])
    dense_t, dense_p = rng.random(), rng.random()
    t = [[int(rng.random() < dense_t * (j % 3 != 0 or c % 4 != 0)) for j in range(k)] for _ in range(n)]
    p = [[int(rng.random() < dense_p) if rng.random() < 0.5 else t[i][j] for j in range(k)] for i in range(n)]
    if c % 9 == 0: p = [list(r) for r in t]
    if c % 10 == 0: p = [[0] * k for _ in range(n)]
    if c % 11 == 0: t = [[0] * k for _ in range(n)]
    T, P = np.array(t), np.array(p)
    ref = {"subset_accuracy": accuracy_score(T, P), "hamming_loss": hamming_loss(T, P)}
    for avg in ("micro", "macro", "weighted", "samples"):
        pr, rc, f, _ = precision_recall_fscore_support(T, P, average=avg, zero_division=0)
        ref[avg + "_precision"], ref[avg + "_recall"], ref[avg + "_f1"] = float(pr), float(rc), float(f)
    out.append({"truth": t, "pred": p, "ref": {k2: float(v) for k2, v in ref.items()}})
print(json.dumps(out))
"#;

fn matrix(v: &serde_json::Value) -> Vec<Vec<bool>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64() == Some(1)).collect())
        .collect()
}

#[test]
fn multilabel_scores_match_sklearn() {
    let cases = oracle(SKLEARN, &["20240611", "300"]);
    let mut d = MaxDiff::new("multi-label", TOL);
    for (i, c) in cases.as_array().unwrap().iter().enumerate() {
        let ours = multilabel_scores(&matrix(&c["truth"]), &matrix(&c["pred"])).unwrap();
        let reference = c["ref"].as_object().unwrap();
        assert_eq!(ours.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "case {i}: metric names");
        for (name, want) in reference {
            d.check(|| format!("case {i}: {name}"), ours[name], want.as_f64().unwrap());
        }
    }
    d.report();
}
