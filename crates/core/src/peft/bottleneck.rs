//! Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2020): `y + up(act(down(y)))` after a layer, with
//! `up` initialised to zero so that the model starts as the base model.

use tch::Tensor;

use super::config::NonLinearity;
use crate::nn::{Linear, LinearAdapter};

/// A bottleneck on a dense layer's output: `adapter_down` `[bottleneck, out]`, `adapter_up` `[out, bottleneck]`.
#[derive(Debug)]
pub(crate) struct Bottleneck {
    pub down_w: Tensor,
    pub down_b: Tensor,
    pub up_w: Tensor,
    pub up_b: Tensor,
    pub act: NonLinearity,
}

impl LinearAdapter for Bottleneck {
    fn adapt(&self, _base: &Linear, _x: &Tensor, y: Tensor, _train: bool) -> Tensor {
        let h = y.linear(&self.down_w, Some(&self.down_b));
        let h = match self.act {
            NonLinearity::Relu => h.relu(),
            NonLinearity::Gelu => h.gelu("none"),
            NonLinearity::Tanh => h.tanh(),
        };
        let up = h.linear(&self.up_w, Some(&self.up_b));
        y + up
    }
}
