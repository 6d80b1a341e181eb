use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{Optimizer, ParamGroup};

/// AdamW as `torch.optim.AdamW` (non-amsgrad): decoupled decay `p ← p·(1 − lr·wd)`, then the bias-corrected Adam
/// step. By default through libtorch's fused kernel (`torch.optim.AdamW(fused=True)`: one pass per tensor instead
/// of eight, the same formula up to float rounding); [`AdamW::per_tensor`] is the literal per-tensor formula.
#[derive(Debug)]
pub struct AdamW {
    groups: Vec<ParamGroup>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    fused: bool,
    /// Per parameter: (exp_avg, exp_avg_sq, step).
    state: HashMap<String, (Tensor, Tensor, i64)>,
}

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn suite_fused_adamw(
        params: *const *const std::ffi::c_void,
        grads: *const *const std::ffi::c_void,
        exp_avgs: *const *const std::ffi::c_void,
        exp_avg_sqs: *const *const std::ffi::c_void,
        steps: *const *const std::ffi::c_void,
        n: i32,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut std::ffi::c_char,
        err_len: i32,
    ) -> i32;
}

impl AdamW {
    /// AdamW over `groups` with the given betas and epsilon, through the fused kernel.
    pub fn new(groups: Vec<ParamGroup>, beta1: f64, beta2: f64, eps: f64) -> Self {
        Self { groups, beta1, beta2, eps, fused: true, state: HashMap::new() }
    }

    /// The same optimizer computed tensor by tensor with the textbook formula (as `torch.optim.AdamW`'s default on
    /// CPU).
    pub fn per_tensor(mut self) -> Self {
        self.fused = false;
        self
    }

    /// One fused update of a group's parameters that have gradients.
    fn fused_group_step(&mut self, g: usize, lr: f64) {
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let group = &self.groups[g];
        let lr = lr * group.lr_mult;
        let mut live: Vec<(Tensor, Tensor, Tensor, Tensor, Tensor)> = Vec::new();
        for (name, p) in &group.params {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let grad = if grad.kind() == p.kind() { grad } else { grad.to_kind(p.kind()) };
            let st = self.state.entry(name.clone()).or_insert_with(|| (p.zeros_like(), p.zeros_like(), 0));
            st.2 += 1;
            let step = Tensor::from(st.2 as f32).to_device(p.device());
            live.push((p.shallow_clone(), grad, st.0.shallow_clone(), st.1.shallow_clone(), step));
        }
        if live.is_empty() {
            return;
        }
        let ptr = |t: &Tensor| t.as_ptr() as *const std::ffi::c_void;
        let p: Vec<_> = live.iter().map(|t| ptr(&t.0)).collect();
        let gr: Vec<_> = live.iter().map(|t| ptr(&t.1)).collect();
        let m: Vec<_> = live.iter().map(|t| ptr(&t.2)).collect();
        let v: Vec<_> = live.iter().map(|t| ptr(&t.3)).collect();
        let s: Vec<_> = live.iter().map(|t| ptr(&t.4)).collect();
        let mut err = vec![0 as std::ffi::c_char; 512];
        // SAFETY: every pointer is a live at::Tensor owned by `live` for the duration of the call; the shim copies
        // the handles into std::vectors and catches every C++ exception.
        let rc = unsafe {
            suite_fused_adamw(
                p.as_ptr(),
                gr.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                s.as_ptr(),
                live.len() as i32,
                lr,
                b1,
                b2,
                group.weight_decay,
                eps,
                err.as_mut_ptr(),
                err.len() as i32,
            )
        };
        if rc != 0 {
            // SAFETY: the shim wrote a NUL-terminated message into `err`.
            let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            panic!("libtorch's fused AdamW failed: {msg}");
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, lr: f64) {
        if self.fused {
            tch::no_grad(|| {
                for g in 0..self.groups.len() {
                    self.fused_group_step(g, lr);
                }
            });
            return;
        }
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
