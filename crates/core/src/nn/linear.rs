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
            None => x.linear(&self.weight, self.bias.as_ref()),
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
