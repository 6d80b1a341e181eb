//! Integrated gradients (Sundararajan et al. 2017) as Captum 0.9's `IntegratedGradients` computes them: the
//! gradient of the target logit at points on the straight path from a baseline to the input, combined with a
//! quadrature rule's weights, times `input − baseline`.

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

use crate::models::ImageClassifier;

/// The quadrature rule along the path (Captum's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quadrature {
    /// Gauss–Legendre nodes and weights on [0, 1], Captum's default (`"gausslegendre"`).
    GaussLegendre,
    /// The trapezoid rule on `n` evenly spaced points including both ends (`"riemann_trapezoid"`).
    RiemannTrapezoid,
}

impl Quadrature {
    /// Captum's name of the rule.
    pub fn captum_name(self) -> &'static str {
        match self {
            Quadrature::GaussLegendre => "gausslegendre",
            Quadrature::RiemannTrapezoid => "riemann_trapezoid",
        }
    }

    /// `(step sizes, alphas)` of `n` points, as Captum's `approximation_parameters` gives them.
    pub fn parameters(self, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        match self {
            Quadrature::GaussLegendre => {
                ensure!(n > 0, "integrated gradients needs at least one step");
                let (nodes, weights) = gauss_legendre(n);
                Ok((weights.iter().map(|w| 0.5 * w).collect(), nodes.iter().map(|x| 0.5 * (1.0 + x)).collect()))
            }
            Quadrature::RiemannTrapezoid => {
                ensure!(n > 1, "the trapezoid rule needs at least two steps");
                let mut steps = vec![1.0 / n as f64; n];
                steps[0] /= 2.0;
                steps[n - 1] /= 2.0;
                // Captum takes `torch.linspace(0, 1, n).tolist()`: float32 points, reproduced bit for bit.
                let alphas =
                    Vec::<f32>::try_from(Tensor::linspace(0.0, 1.0, n as i64, (Kind::Float, tch::Device::Cpu)))?;
                Ok((steps, alphas.into_iter().map(f64::from).collect()))
            }
        }
    }
}

/// Nodes (ascending) and weights of the `n`-point Gauss–Legendre rule on [-1, 1], to double precision: Newton's
/// method on the Legendre polynomial from the usual cosine guesses (numpy's `leggauss` gives the same values to
/// within rounding).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut nodes, mut weights) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in (1..=n).rev() {
        let mut x = (std::f64::consts::PI * (i as f64 - 0.25) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // P_n(x) by the three-term recurrence, and its derivative.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                (p0, p1) = (p1, p2);
            }
            dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        nodes.push(x);
        weights.push(2.0 / ((1.0 - x * x) * dp * dp));
    }
    (nodes, weights)
}

/// Attributions of one batch and the completeness check that goes with them.
#[derive(Debug)]
pub struct Attributions {
    /// `[N, 3, H, W]`, same shape as the input.
    pub attributions: Tensor,
    /// Target logits at the inputs `F(x)`, per image.
    pub input_scores: Vec<f64>,
    /// Target logits at the baselines `F(x')`, per image.
    pub baseline_scores: Vec<f64>,
}

impl Attributions {
    /// Per image, `Σ attributions − (F(x) − F(x'))`: Captum's `compute_convergence_delta`, zero for exact
    /// integration.
    pub fn completeness_errors(&self) -> Result<Vec<f64>> {
        let sums = Vec::<f64>::try_from(self.attributions.flatten(1, -1).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Double,
        ))?;
        Ok(sums
            .iter()
            .zip(self.input_scores.iter().zip(&self.baseline_scores))
            .map(|(s, (a, b))| s - (a - b))
            .collect())
    }
}

/// Integrated gradients of `model`'s logit for class `targets[i]` at image `x[i]` (`[N, 3, H, W]`, normalised,
/// on the model's device) from `baseline` (same shape), with `steps` points of `quadrature`. The path points of one
/// image go through the network `chunk` at a time (evaluation mode, so batching changes no value; it only bounds
/// memory).
pub fn integrated_gradients(
    model: &dyn ImageClassifier,
    x: &Tensor,
    baseline: &Tensor,
    targets: &[i64],
    steps: usize,
    quadrature: Quadrature,
    chunk: usize,
) -> Result<Attributions> {
    ensure!(x.size() == baseline.size(), "baseline shape {:?} is not the input's {:?}", baseline.size(), x.size());
    ensure!(targets.len() as i64 == x.size()[0], "{} targets for {} images", targets.len(), x.size()[0]);
    let (step_sizes, alphas) = quadrature.parameters(steps)?;
    let chunk = chunk.max(1);
    let (mut attributions, mut input_scores, mut baseline_scores) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &target) in targets.iter().enumerate() {
        let (xi, bi) = (x.narrow(0, i as i64, 1).detach(), baseline.narrow(0, i as i64, 1).detach());
        let k = model.num_classes();
        ensure!((0..k).contains(&target), "target class {target} outside 0..{k}");
        let delta = &xi - &bi;
        // Σ_j step_j · ∂F/∂x at baseline + alpha_j (x − baseline), in float32 as Captum sums them.
        let mut total = xi.zeros_like();
        for (a_chunk, s_chunk) in alphas.chunks(chunk).zip(step_sizes.chunks(chunk)) {
            let points: Vec<Tensor> = a_chunk.iter().map(|&a| &bi + &delta * a).collect();
            let batch = Tensor::cat(&points, 0).set_requires_grad(true);
            let score = model.forward_t(&batch, false).select(1, target).sum(Kind::Float);
            let grad = Tensor::run_backward(&[score], &[&batch], false, false).remove(0);
            let w = Tensor::from_slice(s_chunk).to_kind(Kind::Float).to_device(grad.device()).view([-1, 1, 1, 1]);
            total += (grad * w).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        }
        attributions.push(total * &delta);
        let ends = tch::no_grad(|| model.forward_t(&Tensor::cat(&[&xi, &bi], 0), false)).select(1, target);
        let ends = Vec::<f64>::try_from(ends.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
        input_scores.push(ends[0]);
        baseline_scores.push(ends[1]);
    }
    Ok(Attributions { attributions: Tensor::cat(&attributions, 0), input_scores, baseline_scores })
}
