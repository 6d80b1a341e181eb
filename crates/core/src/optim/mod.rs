//! Optimizers and learning-rate schedules, written over tensors so that their whole state (moments, momentum
//! buffers, step counts) can be checkpointed and restored exactly — tch's built-in optimizers do not expose it.

mod adamw;
mod groups;
mod schedule;
mod sgd;

pub use adamw::AdamW;
pub use groups::{param_groups, GroupRule, ParamGroup};
pub use schedule::{Schedule, ScheduleKind};
pub use sgd::Sgd;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// An optimizer whose state can be saved and restored bit for bit.
pub trait Optimizer: Send {
    /// Applies one update with learning rate `lr` (each group scales it by its own multiplier).
    fn step(&mut self, lr: f64);
    /// Clears every parameter's gradient.
    fn zero_grad(&mut self);
    /// The parameter groups.
    fn groups(&self) -> &[ParamGroup];
    /// The optimizer state as named tensors (`<param>.exp_avg`, `<param>.momentum_buffer`, `step`…).
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    /// Restores state saved by [`Optimizer::state_tensors`].
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()>;
}

/// Which optimizer to build and its hyper-parameters (`[optimizer]` in a task TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`.
    Adamw {
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Denominator epsilon.
        #[serde(default = "default_eps")]
        eps: f64,
    },
    /// SGD with optional (Nesterov) momentum and decoupled weight decay.
    Sgd {
        /// Momentum factor (0 for plain SGD).
        #[serde(default = "default_momentum")]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_momentum() -> f64 {
    0.9
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

impl OptimizerConfig {
    /// Builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Box<dyn Optimizer> {
        match *self {
            OptimizerConfig::Adamw { beta1, beta2, eps } => Box::new(AdamW::new(groups, beta1, beta2, eps)),
            OptimizerConfig::Sgd { momentum, nesterov } => Box::new(Sgd::new(groups, momentum, nesterov)),
        }
    }
}

/// Global L2 norm of every gradient in `groups`; when above `max_norm`, scales them all down to it, as
/// `torch.nn.utils.clip_grad_norm_`. Returns the norm before clipping.
pub fn clip_grad_norm(groups: &[ParamGroup], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> =
            groups.iter().flat_map(|g| g.params.iter()).map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(tch::Kind::Float)).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        if max_norm > 0.0 && total.is_finite() {
            let coef = max_norm / (total + 1e-6);
            if coef < 1.0 {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            }
        }
        total
    })
}

#[cfg(test)]
mod parity_tests;
