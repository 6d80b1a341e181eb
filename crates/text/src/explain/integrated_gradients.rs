//! Layer integrated gradients on the output of the encoder's `embeddings.word_embeddings`, as Captum's
//! `LayerIntegratedGradients(forward, model.<encoder>.embeddings.word_embeddings)` computes them with its default
//! method (`gausslegendre`) and `multiply_by_inputs`: the word embeddings move along the straight line from the
//! baseline's to the input's, positions, token types and the attention mask stay those of the input, and each
//! token's score is the sum over the hidden dimension of (input − baseline embedding) × the quadrature-weighted
//! gradient of the explained output along the path.

use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

use crate::models::TextModel;

/// Most integration steps accepted: Gauss-Legendre with more nodes changes nothing at float precision, and each
/// step costs a forward and a backward pass.
pub const MAX_STEPS: usize = 1000;

/// Tokens per chunk of path points sent through the model at once (bounds memory on long inputs; the sum over
/// chunks is the sum over all steps, only in another float order).
const CHUNK_TOKENS: usize = 2048;

/// Gauss-Legendre nodes and weights on `[0, 1]`, nodes ascending: numpy's `leggauss(n)` rescaled as Captum does
/// (`alphas = (1 + x) / 2`, `step_sizes = w / 2`). The nodes are the roots of the Legendre polynomial `P_n`,
/// found by Newton's method from Tricomi's estimates (the same roots numpy polishes from its companion matrix).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, x);
            dp = d;
            let dx = p / d;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        // The derivative at the polished root gives the weight.
        let (_, d) = legendre(n, x);
        if d.is_finite() {
            dp = d;
        }
        nodes.push((x, 2.0 / ((1.0 - x * x) * dp * dp)));
    }
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    nodes.iter().map(|&(x, w)| (0.5 * (1.0 + x), 0.5 * w)).unzip()
}

/// `P_n(x)` and `P_n'(x)` by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let k = k as f64;
        let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
    }
    // P_n'(x) = n (x P_n − P_{n−1}) / (x² − 1).
    (p1, n as f64 * (x * p1 - p0) / (x * x - 1.0))
}

/// One sequence to explain: Int64 `[1, len]` tensors on the model's device.
pub struct PathEnds<'a> {
    /// The input's token ids.
    pub input_ids: &'a Tensor,
    /// Its token types.
    pub token_type_ids: &'a Tensor,
    /// Its attention mask.
    pub attention_mask: &'a Tensor,
    /// The baseline's token ids (same length): the word embeddings of these start the path.
    pub baseline_ids: &'a Tensor,
}

/// Attributions of one explained output.
#[derive(Debug, Clone)]
pub struct PathAttribution {
    /// One score per token: the sum over the hidden dimension of the layer attribution.
    pub scores: Vec<f32>,
    /// The explained output at the input, F(x).
    pub output: f64,
    /// The explained output at the baseline, F(x′).
    pub baseline_output: f64,
}

/// Integrated gradients of the outputs `targets` picks from the logits (`[k, …]` → `[k, T]`: T outputs per path
/// point, each explained on its own) with `steps` Gauss-Legendre points; one [`PathAttribution`] per output.
/// The model's weights need no gradients: only the interpolated embeddings are differentiated.
pub fn integrated_gradients(
    model: &TextModel,
    ends: &PathEnds,
    steps: usize,
    targets: &dyn Fn(&Tensor) -> Tensor,
) -> Result<Vec<PathAttribution>> {
    ensure!((1..=MAX_STEPS).contains(&steps), "--steps {steps}: expected 1 to {MAX_STEPS} integration steps");
    let len = ends.input_ids.size()[1];
    let device = ends.input_ids.device();
    let (input, baseline) = tch::no_grad(|| {
        (model.word_embeddings(ends.input_ids).detach(), model.word_embeddings(ends.baseline_ids).detach())
    });
    let diff = &input - &baseline;
    let forward = |word: &Tensor| {
        let k = word.size()[0];
        let logits = model.forward_from_word_embeddings(
            &ends.input_ids.expand([k, len], false),
            &ends.token_type_ids.expand([k, len], false),
            &ends.attention_mask.expand([k, len], false),
            word,
        );
        targets(&logits)
    };
    // F at both ends of the path, through the same override as the path points.
    let both = tch::no_grad(|| forward(&Tensor::cat(&[&input, &baseline], 0))).to_device(Device::Cpu);
    ensure!(both.dim() == 2 && both.size()[0] == 2, "explained outputs must be [points, T], got {:?}", both.size());
    let n_out = both.size()[1];
    let (alphas, weights) = gauss_legendre(steps);
    let mut total: Vec<Tensor> = (0..n_out).map(|_| input.zeros_like()).collect();
    let rows = (CHUNK_TOKENS / len.max(1) as usize).max(1);
    for (a, w) in alphas.chunks(rows).zip(weights.chunks(rows)) {
        let k = a.len() as i64;
        let to_tensor = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::from_slice(&v).view([k, 1, 1]).to_device(device)
        };
        // As Captum: baseline + alpha · (input − baseline).
        let scaled = (&baseline + to_tensor(a) * &diff).detach().set_requires_grad(true);
        let out = forward(&scaled);
        let w = to_tensor(w);
        for (t, acc) in total.iter_mut().enumerate() {
            let keep = (t as i64) + 1 < n_out;
            let grad = Tensor::run_backward(&[out.select(1, t as i64).sum(Kind::Float)], &[&scaled], keep, false);
            *acc += (&grad[0] * &w).sum_dim_intlist(0, true, Kind::Float);
        }
    }
    let mut out = Vec::with_capacity(n_out as usize);
    for (t, acc) in total.iter().enumerate() {
        let scores = (acc * &diff).sum_dim_intlist(-1, false, Kind::Float).to_device(Device::Cpu).view([-1]);
        out.push(PathAttribution {
            scores: Vec::<f32>::try_from(&scores)?,
            output: both.double_value(&[0, t as i64]),
            baseline_output: both.double_value(&[1, t as i64]),
        });
    }
    Ok(out)
}
