//! (IA)³ on [`Linear`] and [`Conv2d`] layers, as peft's `ia3.Linear` and `ia3.Conv2d`: a learned vector `ia3_l`
//! that scales the layer's output, or, on feed-forward layers, its input.

use tch::Tensor;

use crate::nn::{Conv2d, ConvAdapter, Linear, LinearAdapter};

/// (IA)³ on a dense layer; `l` is `[out, 1]`, or `[1, in]` on a feed-forward layer, as peft stores it.
#[derive(Debug)]
pub(crate) struct Ia3Linear {
    pub l: Tensor,
    pub feedforward: bool,
}

impl LinearAdapter for Ia3Linear {
    fn adapt(&self, base: &Linear, x: &Tensor, y: Tensor, _train: bool) -> Tensor {
        if self.feedforward {
            // Scaling the input changes the product itself, so the base output is recomputed; (IA)³ is always the
            // first adapter of its layer (apply_peft only adds it to layers without adapters). `dense`, as the base
            // product: the same kernel for the same values, so (IA)³ at initialisation changes nothing to the bit.
            crate::nn::dense(&(x * self.l.flatten(0, -1)), &base.weight, base.bias.as_ref())
        } else {
            y * self.l.flatten(0, -1)
        }
    }
}

/// (IA)³ on a convolution; `l` is `[1, out, 1, 1]`, or `[1, in, 1, 1]` on a feed-forward layer.
#[derive(Debug)]
pub(crate) struct Ia3Conv {
    pub l: Tensor,
    pub feedforward: bool,
}

impl ConvAdapter for Ia3Conv {
    fn adapt(&self, base: &Conv2d, x: &Tensor, y: Tensor, _train: bool) -> Tensor {
        if self.feedforward {
            base.forward_base(&(x * &self.l))
        } else {
            y * &self.l
        }
    }
}
