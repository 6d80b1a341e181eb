//! The small pieces every encoder is made of: embeddings, LayerNorm and dense layers initialised as transformers'
//! `_init_weights` does, plus the attention-mask and dropout helpers.

use suite_core::nn::{path_name, Linear};
use tch::{nn, Kind, Tensor};

/// Collects `(full name, tensor)` of a module's own parameters, in module order.
pub(crate) type Named = Vec<(String, Tensor)>;

/// A dense layer with transformers' initialisation: weight ~ N(0, `std`), bias 0.
pub(crate) fn dense(p: nn::Path, in_features: i64, out_features: i64, std: f64) -> Linear {
    let weight = p.var("weight", &[out_features, in_features], nn::Init::Randn { mean: 0.0, stdev: std });
    let bias = p.var("bias", &[out_features], nn::Init::Const(0.0));
    Linear::from_parts(path_name(&p), weight, Some(bias))
}

pub(crate) fn push_linear(out: &mut Named, l: &Linear) {
    out.push((format!("{}.weight", l.name), l.weight.shallow_clone()));
    if let Some(b) = &l.bias {
        out.push((format!("{}.bias", l.name), b.shallow_clone()));
    }
}

/// `torch.nn.LayerNorm` over the last dimension, with `weight` and `bias` named as in the checkpoints.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    name: String,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(p: nn::Path, size: i64, eps: f64) -> Self {
        let weight = p.var("weight", &[size], nn::Init::Const(1.0));
        let bias = p.var("bias", &[size], nn::Init::Const(0.0));
        Self { name: path_name(&p), weight, bias, eps }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.weight.size()[0]], Some(&self.weight), Some(&self.bias), self.eps, true)
    }

    pub(crate) fn push(&self, out: &mut Named) {
        out.push((format!("{}.weight", self.name), self.weight.shallow_clone()));
        out.push((format!("{}.bias", self.name), self.bias.shallow_clone()));
    }
}

/// `torch.nn.Embedding`: rows ~ N(0, `std`), the padding row zero and, as in torch, never updated by gradients.
#[derive(Debug)]
pub(crate) struct Embedding {
    name: String,
    pub(crate) weight: Tensor,
    padding_idx: Option<i64>,
}

impl Embedding {
    pub(crate) fn new(p: nn::Path, num: i64, dim: i64, padding_idx: Option<i64>, std: f64) -> Self {
        let weight = p.var("weight", &[num, dim], nn::Init::Randn { mean: 0.0, stdev: std });
        if let Some(i) = padding_idx.filter(|&i| (0..num).contains(&i)) {
            tch::no_grad(|| {
                let _ = weight.get(i).zero_();
            });
        }
        Self { name: path_name(&p), weight, padding_idx }
    }

    pub(crate) fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, self.padding_idx.unwrap_or(-1), false, false)
    }

    pub(crate) fn push(&self, out: &mut Named) {
        out.push((format!("{}.weight", self.name), self.weight.shallow_clone()));
    }
}

/// Inverted dropout in training mode; the identity (no copy) otherwise (one implementation for every domain).
pub(crate) use suite_core::nn::dropout;

/// The additive attention mask `[batch, 1, 1, len]` of a 0/1 `[batch, len]` mask, in `kind`; `None` when every
/// position is visible, so that attention runs unmasked (as transformers' SDPA path does).
pub(crate) fn additive_mask(attention_mask: &Tensor, kind: Kind) -> Option<Tensor> {
    let visible = attention_mask.ne(0);
    if bool::try_from(visible.all()).unwrap_or(false) {
        return None;
    }
    let (b, l) = (visible.size()[0], visible.size()[1]);
    // A large finite value rather than -inf: a row whose keys are all masked then averages instead of giving NaN,
    // and the value stays finite when autocast turns the mask into bf16.
    let mask = Tensor::zeros([b, 1, 1, l], (kind, attention_mask.device()))
        .masked_fill(&visible.logical_not().view([b, 1, 1, l]), -1e30);
    Some(mask)
}

/// Splits `[batch, len, heads·head_dim]` into `[batch, heads, len, head_dim]` (a view, no copy).
pub(crate) fn split_heads(x: &Tensor, heads: i64, head_dim: i64) -> Tensor {
    let (b, l) = (x.size()[0], x.size()[1]);
    x.view([b, l, heads, head_dim]).transpose(1, 2)
}

/// Merges `[batch, heads, len, head_dim]` back into `[batch, len, heads·head_dim]`.
pub(crate) fn merge_heads(x: &Tensor) -> Tensor {
    let s = x.size();
    x.transpose(1, 2).reshape([s[0], s[2], s[1] * s[3]])
}
