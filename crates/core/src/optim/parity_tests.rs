//! AdamW and SGD against `torch.optim` on the same parameters and gradient sequence.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::*;

fn run_rust_with(
    build: &dyn Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>,
    wd: f64,
    grads: &[Tensor],
    init: &Tensor,
    lrs: &[f64],
) -> Tensor {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", init);
    let mut o = build(param_groups(&vs, &[], wd));
    for (g, &lr) in grads.iter().zip(lrs) {
        o.zero_grad();
        let loss = (&w * g).sum(Kind::Float);
        loss.backward();
        o.step(lr);
    }
    w.detach().copy()
}

fn run_torch(dir: &Path, ctor: &str) -> Tensor {
    let code = format!(
        r#"
import sys, torch
from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1] + "/in.safetensors")
w = torch.nn.Parameter(d["init"].clone())
opt = {ctor}
for i in range(d["grads"].shape[0]):
    for g in opt.param_groups: g["lr"] = float(d["lrs"][i])
    opt.zero_grad()
    (w * d["grads"][i]).sum().backward()
    opt.step()
save_file({{"w": w.detach()}}, sys.argv[1] + "/out.safetensors")
"#
    );
    crate::python::run_python(&code, &[dir.to_str().unwrap()]).unwrap();
    Tensor::read_safetensors(dir.join("out.safetensors")).unwrap().remove(0).1
}

fn case(opt: OptimizerConfig, wd: f64, ctor: &str) {
    case_with(&|groups| opt.build(groups), wd, ctor)
}

fn case_with(build: &dyn Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>, wd: f64, ctor: &str) {
    let _rng = crate::device::torch_rng_lock();
    tch::manual_seed(3);
    let init = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
    let grads: Vec<Tensor> = (0..6).map(|_| Tensor::randn([5, 7], (Kind::Float, Device::Cpu))).collect();
    let lrs = [0.1, 0.05, 0.02, 0.1, 0.01, 0.03];
    let dir = tempfile::tempdir().unwrap();
    Tensor::write_safetensors(
        &[("init", &init), ("grads", &Tensor::stack(&grads, 0)), ("lrs", &Tensor::from_slice(&lrs))],
        dir.path().join("in.safetensors"),
    )
    .unwrap();
    let ours = run_rust_with(build, wd, &grads, &init, &lrs);
    let theirs = run_torch(dir.path(), ctor);
    let diff = (&ours - &theirs).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "{ctor}: max |Δ| = {diff}");
}

#[test]
fn adamw_matches_torch() {
    case(
        OptimizerConfig::Adamw { beta1: 0.9, beta2: 0.98, eps: 1e-6 },
        0.01,
        "torch.optim.AdamW([w], lr=0.1, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)",
    );
}

#[test]
fn adamw_fused_matches_torch_fused() {
    case(
        OptimizerConfig::Adamw { beta1: 0.9, beta2: 0.98, eps: 1e-6 },
        0.01,
        "torch.optim.AdamW([w], lr=0.1, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, fused=True)",
    );
}

#[test]
fn adamw_per_tensor_matches_torch() {
    case_with(
        &|groups| Box::new(AdamW::new(groups, 0.9, 0.98, 1e-6).per_tensor()),
        0.01,
        "torch.optim.AdamW([w], lr=0.1, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)",
    );
}

#[test]
fn sgd_nesterov_matches_torch() {
    case(
        OptimizerConfig::Sgd { momentum: 0.9, nesterov: true },
        0.0,
        "torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)",
    );
    case(OptimizerConfig::Sgd { momentum: 0.8, nesterov: false }, 0.0, "torch.optim.SGD([w], lr=0.1, momentum=0.8)");
}

#[test]
fn sgd_weight_decay_is_decoupled() {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[3, 3], tch::nn::Init::Const(2.0));
    let mut o = OptimizerConfig::Sgd { momentum: 0.0, nesterov: false }.build(param_groups(&vs, &[], 0.5));
    (&w * 0.0).sum(Kind::Float).backward();
    o.step(0.1);
    let v = w.double_value(&[0, 0]);
    assert!((v - 2.0 * (1.0 - 0.1 * 0.5)).abs() < 1e-7, "{v}");
}

#[test]
fn clipping_bounds_the_global_norm() {
    let vs = VarStore::new(Device::Cpu);
    let a = vs.root().var("a", &[10], tch::nn::Init::Const(1.0));
    let b = vs.root().var("b", &[4, 4], tch::nn::Init::Const(1.0));
    ((&a * 3.0).sum(Kind::Float) + (&b * 4.0).sum(Kind::Float)).backward();
    let groups = param_groups(&vs, &[], 0.0);
    let before = clip_grad_norm(&groups, 1.0);
    assert!((before - (90.0f64 + 256.0).sqrt()).abs() < 1e-4, "{before}");
    let after = (a.grad().square().sum(Kind::Float) + b.grad().square().sum(Kind::Float)).sqrt().double_value(&[]);
    assert!((after - 1.0).abs() < 1e-4, "clipped norm {after}");
    // Under the bound nothing changes.
    let again = clip_grad_norm(&groups, 5.0);
    assert!((again - after).abs() < 1e-5);
}

/// `zero_grad` drops gradients (PyTorch's `set_to_none=True`): a parameter left out of a step's loss has no
/// gradient and is not moved by that step (no weight decay, no momentum), exactly as in torch.optim.
#[test]
fn a_parameter_without_a_gradient_is_skipped_as_in_torch() {
    let _rng = crate::device::torch_rng_lock();
    tch::manual_seed(4);
    // Matrices: param_groups exempts rank-1 tensors from weight decay.
    let init = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
    let grads = Tensor::randn([6, 2, 3, 5], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    Tensor::write_safetensors(&[("init", &init), ("grads", &grads)], dir.path().join("in.safetensors")).unwrap();
    for (fused, ctor) in [(true, "fused=True"), (false, "foreach=False")] {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &init.get(0));
        let u = vs.root().var_copy("u", &init.get(1));
        let groups = param_groups(&vs, &[], 0.1);
        let mut o: Box<dyn Optimizer> = if fused {
            Box::new(AdamW::new(groups, 0.9, 0.999, 1e-8))
        } else {
            Box::new(AdamW::new(groups, 0.9, 0.999, 1e-8).per_tensor())
        };
        for i in 0..6i64 {
            o.zero_grad();
            assert!(!w.grad().defined() && !u.grad().defined(), "zero_grad leaves no gradient");
            // u takes part in even steps only.
            let mut loss = (&w * grads.get(i).get(0)).sum(Kind::Float);
            if i % 2 == 0 {
                loss += (&u * grads.get(i).get(1)).sum(Kind::Float);
            }
            loss.backward();
            o.step(0.05);
        }
        let code = format!(
            r#"
import sys, torch
from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1] + "/in.safetensors")
w = torch.nn.Parameter(d["init"][0].clone()); u = torch.nn.Parameter(d["init"][1].clone())
opt = torch.optim.AdamW([w, u], lr=0.05, weight_decay=0.1, {ctor})
for i in range(6):
    opt.zero_grad()
    loss = (w * d["grads"][i][0]).sum()
    if i % 2 == 0:
        loss = loss + (u * d["grads"][i][1]).sum()
    loss.backward()
    opt.step()
save_file({{"w": w.detach(), "u": u.detach()}}, sys.argv[1] + "/out.safetensors")
"#
        );
        crate::python::run_python(&code, &[dir.path().to_str().unwrap()]).unwrap();
        let theirs: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.path().join("out.safetensors")).unwrap().into_iter().collect();
        for (name, ours) in [("w", &w), ("u", &u)] {
            let diff = (ours - &theirs[name]).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{ctor} {name}: max |Δ| = {diff}");
        }
    }
}
