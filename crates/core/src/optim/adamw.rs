use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{Optimizer, ParamGroup};

/// AdamW exactly as `torch.optim.AdamW` (non-amsgrad, non-fused): decoupled decay `p ← p·(1 − lr·wd)`, then the
/// bias-corrected Adam step.
#[derive(Debug)]
pub struct AdamW {
    groups: Vec<ParamGroup>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Per parameter: (exp_avg, exp_avg_sq, step).
    state: HashMap<String, (Tensor, Tensor, i64)>,
}

impl AdamW {
    /// AdamW over `groups` with the given betas and epsilon.
    pub fn new(groups: Vec<ParamGroup>, beta1: f64, beta2: f64, eps: f64) -> Self {
        Self { groups, beta1, beta2, eps, state: HashMap::new() }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, lr: f64) {
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        tch::no_grad(|| {
            for g in &self.groups {
                let lr = lr * g.lr_mult;
                for (name, p) in &g.params {
                    let grad = p.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let grad = grad.to_kind(p.kind());
                    let st = self.state.entry(name.clone()).or_insert_with(|| (p.zeros_like(), p.zeros_like(), 0));
                    st.2 += 1;
                    let mut p = p.shallow_clone();
                    if g.weight_decay != 0.0 {
                        let _ = p.g_mul_scalar_(1.0 - lr * g.weight_decay);
                    }
                    let _ = st.0.lerp_(&grad, 1.0 - b1);
                    let _ = st.1.g_mul_scalar_(b2);
                    let _ = st.1.addcmul_(&grad, &(&grad * (1.0 - b2)));
                    let bc1 = 1.0 - b1.powi(st.2 as i32);
                    let bc2 = 1.0 - b2.powi(st.2 as i32);
                    let denom = (st.1.sqrt() / bc2.sqrt()) + eps;
                    let _ = p.addcdiv_(&(&st.0 * (-lr / bc1)), &denom);
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
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.state.keys().collect();
        names.sort();
        for name in names {
            let (m, v, s) = &self.state[name];
            out.push((format!("{name}.exp_avg"), m.shallow_clone()));
            out.push((format!("{name}.exp_avg_sq"), v.shallow_clone()));
            out.push((format!("{name}.step"), Tensor::from(*s)));
        }
        out
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        self.state.clear();
        for g in &self.groups {
            for (name, p) in &g.params {
                let key = |s: &str| format!("{name}.{s}");
                match (map.get(&key("exp_avg")), map.get(&key("exp_avg_sq")), map.get(&key("step"))) {
                    (Some(m), Some(v), Some(s)) => {
                        if m.size() != p.size() || v.size() != p.size() {
                            bail!("optimizer state for {name} has shape {:?}, the parameter {:?}", m.size(), p.size());
                        }
                        let s = s.to_kind(Kind::Int64).int64_value(&[]);
                        self.state.insert(name.clone(), (m.to_device(p.device()), v.to_device(p.device()), s));
                    }
                    (None, None, None) => {}
                    _ => bail!("optimizer state for {name} is incomplete"),
                }
            }
        }
        Ok(())
    }
}
