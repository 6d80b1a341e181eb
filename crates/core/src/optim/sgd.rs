use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::Tensor;

use super::{Optimizer, ParamGroup};

/// SGD with momentum and Nesterov momentum as `torch.optim.SGD` (dampening 0), but with *decoupled* weight decay
/// (SGDW: `p ← p·(1 − lr·wd)` before the step), consistent with [`super::AdamW`].
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    momentum: f64,
    nesterov: bool,
    buffers: HashMap<String, Tensor>,
}

impl Sgd {
    /// SGD over `groups`; `momentum` 0 is plain SGD.
    pub fn new(groups: Vec<ParamGroup>, momentum: f64, nesterov: bool) -> Self {
        Self { groups, momentum, nesterov, buffers: HashMap::new() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for g in &self.groups {
                let lr = lr * g.lr_mult;
                for (name, p) in &g.params {
                    let grad = p.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let mut p = p.shallow_clone();
                    if g.weight_decay != 0.0 {
                        let _ = p.g_mul_scalar_(1.0 - lr * g.weight_decay);
                    }
                    let mut d = grad.to_kind(p.kind());
                    if self.momentum != 0.0 {
                        let buf = match self.buffers.get_mut(name) {
                            Some(b) => {
                                let _ = b.g_mul_scalar_(self.momentum).g_add_(&d);
                                b.shallow_clone()
                            }
                            None => {
                                let b = d.copy();
                                self.buffers.insert(name.clone(), b.shallow_clone());
                                b
                            }
                        };
                        d = if self.nesterov { d + buf * self.momentum } else { buf };
                    }
                    let _ = p.g_add_(&(d * -lr));
                }
            }
        });
    }

    fn zero_grad(&mut self) {
        super::groups::zero_grads(&self.groups);
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            self.buffers.iter().map(|(n, b)| (format!("{n}.momentum_buffer"), b.shallow_clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        self.buffers.clear();
        for (key, t) in tensors {
            let Some(name) = key.strip_suffix(".momentum_buffer") else {
                bail!("unexpected SGD state tensor {key}");
            };
            let Some((_, p)) = self.groups.iter().flat_map(|g| g.params.iter()).find(|(n, _)| n == name) else {
                bail!("SGD state for {name}, which is not a trainable parameter of this model");
            };
            if t.size() != p.size() {
                bail!("SGD state for {name} has shape {:?}, the parameter {:?}", t.size(), p.size());
            }
            self.buffers.insert(name.to_string(), t.to_device(p.device()));
        }
        Ok(())
    }
}
