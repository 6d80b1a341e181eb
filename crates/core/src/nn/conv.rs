use std::fmt::Debug;
use tch::{nn, Tensor};

/// Something a PEFT method adds to a [`Conv2d`] (LoRA on convolutions, for example).
pub trait ConvAdapter: Debug + Send {
    /// Returns the adapted output given the input `x` and the base output `y`.
    fn adapt(&self, base: &Conv2d, x: &Tensor, y: Tensor, train: bool) -> Tensor;
}

/// Stride, padding, dilation and groups of a [`Conv2d`], as in `torch.nn.Conv2d`.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dConfig {
    /// Stride in both directions.
    pub stride: i64,
    /// Zero padding on every side.
    pub padding: i64,
    /// Dilation in both directions.
    pub dilation: i64,
    /// Number of channel groups (`in_channels` for a depthwise convolution).
    pub groups: i64,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self { stride: 1, padding: 0, dilation: 1, groups: 1, bias: true }
    }
}

/// A 2-D convolution with `weight` [out, in/groups, kh, kw] and optional `bias`, named as in `torch.nn.Conv2d`.
#[derive(Debug)]
pub struct Conv2d {
    /// Checkpoint name of this layer, such as `layer1.0.conv1`.
    pub name: String,
    /// Kernel of shape `[out, in / groups, kh, kw]`.
    pub weight: Tensor,
    /// Optional bias of shape `[out]`.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub config: Conv2dConfig,
    /// PEFT adapters applied in order after the base convolution.
    pub adapters: Vec<Box<dyn ConvAdapter>>,
}

impl Conv2d {
    /// Registers a square `kernel`×`kernel` convolution under `p` with torch's default (Kaiming-uniform) init.
    pub fn new(p: nn::Path, in_channels: i64, out_channels: i64, kernel: i64, config: Conv2dConfig) -> Self {
        let fan_in = in_channels / config.groups * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = p.var(
            "weight",
            &[out_channels, in_channels / config.groups, kernel, kernel],
            nn::Init::Uniform { lo: -bound, up: bound },
        );
        let bias = config.bias.then(|| p.var("bias", &[out_channels], nn::Init::Uniform { lo: -bound, up: bound }));
        Self { name: super::path_name(&p), weight, bias, config, adapters: Vec::new() }
    }

    /// The base convolution without adapters.
    pub fn forward_base(&self, x: &Tensor) -> Tensor {
        let c = &self.config;
        x.conv2d(&self.weight, self.bias.as_ref(), [c.stride; 2], [c.padding; 2], [c.dilation; 2], c.groups)
    }

    /// Output with every adapter applied.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.forward_base(x);
        self.adapters.iter().fold(y, |y, a| a.adapt(self, x, y, train))
    }
}

impl nn::ModuleT for Conv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Conv2d::forward_t(self, xs, train)
    }
}
