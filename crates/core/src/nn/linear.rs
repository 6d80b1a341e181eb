use std::fmt::Debug;
use tch::{nn, Tensor};

/// Something a PEFT method adds to a [`Linear`]: it sees the layer's input and base output and returns the output
/// to use (LoRA adds `B·A·x`, IA3 rescales, …).
pub trait LinearAdapter: Debug + Send {
    /// Returns the adapted output given the input `x` and the base output `y`.
    fn adapt(&self, base: &Linear, x: &Tensor, y: Tensor, train: bool) -> Tensor;
}

/// A dense layer `y = x·Wᵀ + b`, with `weight` [out, in] and `bias` [out] named as in `torch.nn.Linear`.
#[derive(Debug)]
pub struct Linear {
    /// Checkpoint name of this layer, such as `encoder.layer.0.attention.self.query`.
    pub name: String,
    /// Weight of shape `[out_features, in_features]`.
    pub weight: Tensor,
    /// Optional bias of shape `[out_features]`.
    pub bias: Option<Tensor>,
    /// PEFT adapters applied in order after the base product.
    pub adapters: Vec<Box<dyn LinearAdapter>>,
    /// The int8 form of `weight` and `bias` for inference ([`crate::quant::quantize_dynamic`]); when set, the base
    /// product reads it instead of the fp32 weights.
    pub quantized: Option<std::sync::Arc<crate::quant::QuantizedLinear>>,
}

impl Linear {
    /// Registers `weight` (and `bias` when `bias` is true) under `p` with torch's default initialisation.
    pub fn new(p: nn::Path, in_features: i64, out_features: i64, bias: bool) -> Self {
        let bound = 1.0 / (in_features as f64).sqrt();
        let init = nn::Init::Uniform { lo: -bound, up: bound };
        let weight = super::init::var(&p, "weight", &[out_features, in_features], init);
        let bias = bias.then(|| super::init::var(&p, "bias", &[out_features], init));
        Self { name: super::path_name(&p), weight, bias, adapters: Vec::new(), quantized: None }
    }

    /// A layer over tensors the caller registered (custom initialisation, tied weights).
    pub fn from_parts(name: impl Into<String>, weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { name: name.into(), weight, bias, adapters: Vec::new(), quantized: None }
    }

    /// Input width.
    pub fn in_features(&self) -> i64 {
        // An int8 layer has released its fp32 weight (see `quantize_dynamic`).
        self.quantized.as_ref().map_or_else(|| self.weight.size()[1], |q| q.in_features())
    }

    /// Output width.
    pub fn out_features(&self) -> i64 {
        self.quantized.as_ref().map_or_else(|| self.weight.size()[0], |q| q.out_features())
    }

    /// The base product without adapters.
    pub fn forward_base(&self, x: &Tensor) -> Tensor {
        match &self.quantized {
            // A failure here is libtorch's (a wrong input width or device): reported as tch reports its own.
            Some(q) => q.forward(x).unwrap_or_else(|e| panic!("{}: int8 linear: {e:#}", self.name)),
            None => dense(x, &self.weight, self.bias.as_ref()),
        }
    }

    /// Output with every adapter applied; `train` switches adapter dropout.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.forward_base(x);
        self.adapters.iter().fold(y, |y, a| a.adapt(self, x, y, train))
    }
}

impl nn::ModuleT for Linear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Linear::forward_t(self, xs, train)
    }
}

/// Inputs of at most this many rows take [`skinny`]'s product on the CPU.
pub const SKINNY_ROWS: i64 = 128;

/// `x·Wᵀ + b` as `torch.nn.functional.linear` computes it, except that at inference on the CPU (autograd off) an
/// input of few rows (a decoding step: one row per sequence or beam) takes [`skinny`]'s product. Training keeps
/// `linear`, whose kernels and gradients the parity tests and the step benchmarks measure.
pub fn dense(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let in_features = weight.size().get(1).copied().unwrap_or(0);
    let rows = if in_features > 0 { x.numel() as i64 / in_features } else { 0 };
    let few = (1..=SKINNY_ROWS).contains(&rows) && x.size().last() == Some(&in_features);
    if few && x.device() == tch::Device::Cpu && !crate::device::grad_enabled() {
        skinny(x, weight, bias)
    } else {
        x.linear(weight, bias)
    }
}

/// `x·Wᵀ + b` for an `x` of few rows, computed as `(W·xᵀ)ᵀ`: the weight is the left operand, read row by row as it
/// is stored. With the weight on the right (`x·Wᵀ`, what `linear` asks BLAS for), MKL's product of a few rows by
/// a transposed weight ran single-threaded and well below memory bandwidth on the AMD EPYC measured — half the
/// speed of this order for whisper-base's vocabulary projection (README "Measured", transcription).
/// One row is doubled, because BLAS turns a one-column product into a matrix–vector product that has the same
/// problem. Same values as `linear` up to the order of the sums.
pub fn skinny(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let in_features = weight.size()[1];
    let mut out_shape = x.size();
    let last = out_shape.len() - 1;
    out_shape[last] = weight.size()[0];
    let rows = x.reshape([-1, in_features]);
    let n = rows.size()[0];
    let cols = if n == 1 { Tensor::cat(&[&rows, &rows], 0) } else { rows };
    let y = match bias {
        Some(b) => b.unsqueeze(1).addmm(weight, &cols.tr()),
        None => weight.mm(&cols.tr()),
    };
    y.narrow(1, 0, n).tr().contiguous().reshape(out_shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn the_skinny_product_is_linear_for_one_row_many_rows_and_leading_dimensions() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let (w, b) = (Tensor::randn([300, 64], opts), Tensor::randn([300], opts));
        for shape in [vec![1, 64], vec![5, 64], vec![2, 3, 64], vec![4, 1, 64], vec![128, 64]] {
            let x = Tensor::randn(shape.as_slice(), opts);
            for bias in [Some(&b), None] {
                let want = x.linear(&w, bias);
                let got = skinny(&x, &w, bias);
                assert!(got.is_contiguous(), "{shape:?}");
                assert!(max_abs_diff(&got, &want) < 1e-4, "{shape:?}: {}", max_abs_diff(&got, &want));
                let via_dense = tch::no_grad(|| dense(&x, &w, bias));
                assert!(max_abs_diff(&via_dense, &want) < 1e-4, "{shape:?}");
            }
        }
    }

    #[test]
    fn dense_keeps_linear_while_autograd_records_and_on_many_rows() {
        tch::manual_seed(4);
        let opts = (Kind::Float, Device::Cpu);
        let w = Tensor::randn([40, 16], opts).set_requires_grad(true);
        let x = Tensor::randn([3, 16], opts);
        assert!(crate::device::grad_enabled());
        assert!(!tch::no_grad(crate::device::grad_enabled));
        // With autograd on, the very kernels of `linear`: equal to the bit, and differentiable.
        let y = dense(&x, &w, None);
        assert_eq!(max_abs_diff(&y, &x.linear(&w, None::<Tensor>)), 0.0);
        y.sum(Kind::Float).backward();
        assert_eq!(w.grad().size(), vec![40, 16]);
        // More rows than SKINNY_ROWS: `linear` as well, autograd or not.
        let big = Tensor::randn([SKINNY_ROWS + 1, 16], opts);
        let want = big.linear(&w, None::<Tensor>);
        assert_eq!(max_abs_diff(&tch::no_grad(|| dense(&big, &w, None)), &want), 0.0);
    }
}
