//! Out-of-sample predicted probabilities for confident learning. cleanlab needs, for every example, class
//! probabilities from a model that did not train on that example; a fine-tuned model has usually memorised its own
//! training labels, wrong ones included. As cleanlab's guide recommends (`cross_val_predict` of a logistic
//! regression on embeddings), each example is scored by a multinomial logistic regression fitted on the other
//! folds of fixed features (a run's pooled embeddings): stratified K-fold, standardised features, full-batch Adam
//! with L2, all libtorch on the CPU and seeded, so the same inputs give the same probabilities.

use anyhow::{ensure, Result};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Settings of [`out_of_fold_probs`].
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ProbeConfig {
    /// Folds (each example is scored by the model fitted on the others).
    pub folds: usize,
    /// Full-batch optimisation steps per fold.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 penalty on the weights (scikit-learn's `1 / C` per example, as `LogisticRegression`'s default C = 1).
    pub l2: f64,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { folds: 5, steps: 300, lr: 0.05, l2: 1.0, seed: 0 }
    }
}

/// Stratified fold of each example: within each class, a seeded shuffle dealt round robin.
pub fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % folds;
            next += 1;
        }
    }
    fold
}

/// n × `classes` probabilities: row i from a logistic regression fitted on the folds that do not hold example i.
/// `features` is n × d (any float kind), `labels` the given labels in `0..classes`.
pub fn out_of_fold_probs(
    features: &Tensor,
    labels: &[usize],
    classes: usize,
    cfg: &ProbeConfig,
) -> Result<Array2<f64>> {
    let (n, d) = features.size2()?;
    ensure!(n as usize == labels.len(), "{} feature rows for {} labels", n, labels.len());
    ensure!(cfg.folds >= 2, "cross-validation needs at least 2 folds");
    ensure!(labels.iter().all(|&l| l < classes), "a label is outside the {classes} classes");
    ensure!(labels.len() >= cfg.folds, "{} examples are too few for {} folds", labels.len(), cfg.folds);
    let x = features.to_kind(Kind::Float).to_device(Device::Cpu);
    let y = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let fold = stratified_folds(labels, cfg.folds, cfg.seed);
    let mut probs = Array2::<f64>::zeros((labels.len(), classes));
    for f in 0..cfg.folds {
        let test: Vec<i64> = (0..labels.len()).filter(|&i| fold[i] == f).map(|i| i as i64).collect();
        let train: Vec<i64> = (0..labels.len()).filter(|&i| fold[i] != f).map(|i| i as i64).collect();
        if test.is_empty() {
            continue;
        }
        let (ti, vi) = (Tensor::from_slice(&train), Tensor::from_slice(&test));
        let (xt, yt, xv) = (x.index_select(0, &ti), y.index_select(0, &ti), x.index_select(0, &vi));
        // Standardise with the training fold's statistics (a constant feature keeps scale 1).
        let mean = xt.mean_dim(0, true, Kind::Float);
        let std = xt.std_dim(0, false, true).clamp_min(1e-6);
        let (xt, xv) = ((&xt - &mean) / &std, (&xv - &mean) / &std);
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(
            vs.root() / "probe",
            d,
            classes as i64,
            nn::LinearConfig { ws_init: nn::Init::Const(0.0), ..Default::default() },
        );
        let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;
        let m = train.len() as f64;
        for _ in 0..cfg.steps {
            let logits = xt.apply(&linear);
            // scikit-learn minimises C·Σ loss + ½‖W‖²; divided by C·m this is the mean loss + ‖W‖² / (2·C·m).
            let loss =
                logits.cross_entropy_for_logits(&yt) + linear.ws.square().sum(Kind::Float) * (cfg.l2 / (2.0 * m));
            opt.backward_step(&loss);
        }
        let p = tch::no_grad(|| xv.apply(&linear).softmax(-1, Kind::Double));
        let p: Vec<f64> = Vec::<f64>::try_from(p.flatten(0, -1))?;
        for (r, &i) in test.iter().enumerate() {
            for c in 0..classes {
                probs[[i as usize, c]] = p[r * classes + c];
            }
        }
    }
    Ok(probs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_cover_every_example() {
        let labels: Vec<usize> = (0..103).map(|i| i % 3).collect();
        let f = stratified_folds(&labels, 5, 7);
        for c in 0..3 {
            let mut per = [0usize; 5];
            for i in 0..labels.len() {
                if labels[i] == c {
                    per[f[i]] += 1;
                }
            }
            assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "class {c}: {per:?}");
        }
        assert_eq!(f, stratified_folds(&labels, 5, 7), "seeded");
    }

    #[test]
    fn out_of_fold_probabilities_find_a_flipped_label() {
        // Two well separated clusters; example 0 sits in cluster 0 but is labelled 1.
        let _rng = crate::device::torch_rng_lock();
        tch::manual_seed(0);
        let n = 60;
        let labels: Vec<usize> = (0..n).map(|i| if i == 0 { 1 } else { i % 2 }).collect();
        let centers = Tensor::from_slice(&(0..n).map(|i| if i % 2 == 0 { -3.0f32 } else { 3.0 }).collect::<Vec<_>>());
        let x = Tensor::randn([n as i64, 4], (Kind::Float, Device::Cpu)) * 0.5 + centers.unsqueeze(1);
        let p = out_of_fold_probs(&x, &labels, 2, &ProbeConfig::default()).unwrap();
        for i in 0..n {
            assert!((p.row(i).sum() - 1.0).abs() < 1e-9);
        }
        assert!(p[[0, 1]] < 0.2, "the flipped example gets little probability for its given label: {}", p[[0, 1]]);
        let issues = super::super::label_issues::find_label_issues(&labels, p.view()).unwrap();
        assert_eq!(issues.ranked.first(), Some(&0), "{:?}", issues.ranked);
    }
}
