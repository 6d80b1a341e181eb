use tch::nn::VarStore;
use tch::Tensor;

/// Parameters sharing a learning-rate multiplier and a weight decay.
#[derive(Debug)]
pub struct ParamGroup {
    /// Label shown in logs, such as `backbone/decay`.
    pub label: String,
    /// Named trainable tensors.
    pub params: Vec<(String, Tensor)>,
    /// Multiplier on the scheduled learning rate (discriminative / layer-wise rates).
    pub lr_mult: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

extern "C" {
    fn suite_clear_grads(params: *const *const std::ffi::c_void, n: i32);
}

/// Drops the gradient of every parameter in `groups` (PyTorch's `zero_grad(set_to_none=True)`, its default since
/// 2.0, which transformers' Trainer uses); shared by the optimizers. The next backward pass then stores its
/// gradient instead of adding it to a tensor of zeros, and a parameter that gets no gradient in a step is skipped
/// by the optimizer step, as in PyTorch.
pub(crate) fn zero_grads(groups: &[ParamGroup]) {
    let params: Vec<*const std::ffi::c_void> =
        groups.iter().flat_map(|g| &g.params).map(|(_, p)| p.as_ptr() as *const std::ffi::c_void).collect();
    // SAFETY: every pointer is a live at::Tensor owned by `groups` for the duration of the call; resetting a
    // tensor's grad field cannot throw.
    unsafe { suite_clear_grads(params.as_ptr(), params.len() as i32) };
}

/// A learning-rate multiplier for every parameter whose name starts with `prefix`; the first matching rule wins.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    /// Name prefix, such as `fc.` or `encoder.layer.0.`.
    pub prefix: String,
    /// Multiplier on the learning rate.
    pub lr_mult: f64,
}

/// Splits the trainable variables of `vs` into groups: by the first matching [`GroupRule`] (else multiplier 1),
/// then into decayed and non-decayed parameters. Biases and normalisation weights — every tensor of rank ≤ 1 —
/// get no weight decay, as Hugging Face's Trainer and timm do.
pub fn param_groups(vs: &VarStore, rules: &[GroupRule], weight_decay: f64) -> Vec<ParamGroup> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: Vec<ParamGroup> = Vec::new();
    for (name, t) in named {
        let (label, mult) = rules
            .iter()
            .find(|r| name.starts_with(&r.prefix))
            .map(|r| (r.prefix.trim_end_matches('.').to_string(), r.lr_mult))
            .unwrap_or_else(|| ("default".to_string(), 1.0));
        let decay = if t.dim() <= 1 { 0.0 } else { weight_decay };
        let label = format!("{label}/{}", if decay > 0.0 { "decay" } else { "no_decay" });
        match groups.iter_mut().find(|g| g.label == label) {
            Some(g) => g.params.push((name, t)),
            None => groups.push(ParamGroup { label, params: vec![(name, t)], lr_mult: mult, weight_decay: decay }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    #[test]
    fn groups_split_by_rule_and_rank() {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root();
        let _ = p.sub("body").var("weight", &[4, 4], nn::Init::Const(0.));
        let _ = p.sub("body").var("bias", &[4], nn::Init::Const(0.));
        let _ = p.sub("fc").var("weight", &[2, 4], nn::Init::Const(0.));
        let _ = p.sub("fc").zeros_no_train("frozen", &[3]);
        let rules = [GroupRule { prefix: "fc.".into(), lr_mult: 1.0 }, GroupRule { prefix: "".into(), lr_mult: 0.1 }];
        let groups = param_groups(&vs, &rules, 0.05);
        let find = |n: &str| groups.iter().find(|g| g.params.iter().any(|(p, _)| p == n)).unwrap();
        assert_eq!(find("body.weight").lr_mult, 0.1);
        assert_eq!(find("body.weight").weight_decay, 0.05);
        assert_eq!(find("body.bias").weight_decay, 0.0, "biases are not decayed");
        assert_eq!(find("fc.weight").lr_mult, 1.0);
        assert!(groups.iter().all(|g| g.params.iter().all(|(n, _)| n != "fc.frozen")), "buffers are not trained");
    }
}
