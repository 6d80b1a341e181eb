//! Checkpointed blocks against the same blocks run directly: equal gradients (dropout masks repeat), no shift of
//! the random stream, the closure freed with its graph, and a panic in the recomputation reported as an error.

use super::checkpoint;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Two dropout MLP blocks, `x -> dropout(gelu(l1 x)) -> l2`, each of which may be checkpointed.
struct Mlp {
    blocks: Vec<(nn::Linear, nn::Linear)>,
}

impl Mlp {
    fn new(vs: &nn::VarStore) -> Self {
        let p = vs.root();
        let block = |i: usize| {
            let p = &p / i;
            (nn::linear(&p / "l1", 8, 16, Default::default()), nn::linear(&p / "l2", 16, 8, Default::default()))
        };
        Self { blocks: vec![block(0), block(1)] }
    }

    fn forward(&self, x: &Tensor, checkpointed: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for (l1, l2) in &self.blocks {
            let f = move |xs: &[Tensor]| l2.forward(&l1.forward(&xs[0]).gelu("none").dropout(0.3, true));
            // SAFETY: the blocks outlive the backward passes of every test below.
            x = if checkpointed { unsafe { checkpoint(&[&x], f) } } else { f(&[x]) };
        }
        x
    }
}

/// Everything a training step yields: loss, parameter gradients by name, the input's gradient (when it requires
/// one) and the next random draw after the backward pass.
struct Step {
    loss: f64,
    grads: Vec<(String, Tensor)>,
    input_grad: Option<Tensor>,
    next_random: Tensor,
}

fn step(checkpointed: bool, input_requires_grad: bool, seed: i64) -> Step {
    step_on(tch::Device::Cpu, false, checkpointed, input_requires_grad, seed)
}

/// A step on `device`, its forward under CUDA bf16 autocast when `autocast` (backward outside it, as the trainer
/// runs it: the recomputation must restore the forward's autocast state itself).
fn step_on(device: tch::Device, autocast: bool, checkpointed: bool, input_requires_grad: bool, seed: i64) -> Step {
    let _rng = crate::device::torch_rng_lock();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let mlp = Mlp::new(&vs);
    let x = Tensor::randn([5, 8], (Kind::Float, device)).set_requires_grad(input_requires_grad);
    tch::manual_seed(seed);
    let y = crate::device::maybe_autocast(autocast, || mlp.forward(&x, checkpointed));
    let loss = (&y * &y).sum(Kind::Float);
    loss.backward();
    let mut grads: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, v)| (n, v.grad())).collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    let input_grad = input_requires_grad.then(|| x.grad());
    Step { loss: loss.double_value(&[]), grads, input_grad, next_random: Tensor::rand([4], (Kind::Float, x.device())) }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn assert_same_step(direct: &Step, ckpt: &Step) {
    assert!((direct.loss - ckpt.loss).abs() <= 1e-6, "loss {} vs {}", direct.loss, ckpt.loss);
    assert_eq!(direct.grads.len(), 8);
    for ((name, g), (_, c)) in direct.grads.iter().zip(&ckpt.grads) {
        assert!(g.defined() && c.defined(), "{name}: no gradient");
        let d = max_diff(g, c);
        assert!(d <= 1e-6, "{name}: gradients differ by {d}");
    }
    match (&direct.input_grad, &ckpt.input_grad) {
        (Some(g), Some(c)) => assert!(max_diff(g, c) <= 1e-6, "input gradients differ by {}", max_diff(g, c)),
        (None, None) => {}
        _ => panic!("input gradient on one side only"),
    }
    // The recomputation ran under the forward's random state and put the later one back.
    assert_eq!(max_diff(&direct.next_random, &ckpt.next_random), 0.0, "random stream shifted");
}

#[test]
fn gradients_equal_direct_with_dropout() {
    let direct = step(false, true, 3);
    let ckpt = step(true, true, 3);
    assert_same_step(&direct, &ckpt);
    // Dropout really draws: another seed gives other gradients, so equal masks above are not a given.
    let other = step(false, true, 4);
    assert!(max_diff(&direct.grads[0].1, &other.grads[0].1) > 1e-3);
}

#[test]
fn gradients_equal_direct_on_cuda_under_autocast() {
    // The CUDA generator's state and the autocast state are restored only where there is a GPU.
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: skipped");
        return;
    }
    let cuda = tch::Device::Cuda(0);
    for autocast in [false, true] {
        let direct = step_on(cuda, autocast, false, true, 3);
        let ckpt = step_on(cuda, autocast, true, true, 3);
        assert_same_step(&direct, &ckpt);
    }
}

#[test]
fn parameters_get_gradients_when_no_input_requires_grad() {
    // As LoRA on a frozen model: the block's input needs no gradient, its parameters do.
    let direct = step(false, false, 5);
    let ckpt = step(true, false, 5);
    assert_same_step(&direct, &ckpt);
}

/// Counts drops of the value a closure captures.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn closure_freed_with_its_graph() {
    let _rng = crate::device::torch_rng_lock();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = Tensor::randn([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let counted = |drops: &Arc<AtomicUsize>| {
        let guard = DropCount(drops.clone());
        move |xs: &[Tensor]| {
            let _keep = &guard;
            xs[0].exp()
        }
    };

    // Dropped without a backward pass.
    let y = unsafe { checkpoint(&[&x], counted(&drops)) };
    assert!(y.requires_grad());
    assert_eq!(drops.load(Ordering::SeqCst), 0, "closure freed while its graph lives");
    drop(y);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "graph dropped without backward leaked the closure");

    // After a backward pass, freed with the graph (the node keeps it, as PyTorch keeps a Function's context,
    // for a backward pass with `retain_graph`).
    let y = unsafe { checkpoint(&[&x], counted(&drops)) };
    y.sum(Kind::Float).backward();
    assert!(max_diff(&x.grad(), &x.detach().exp()) <= 1e-6);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(y);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "closure kept after its graph was dropped");

    // Without grad mode: called once, freed at once, nothing recorded.
    let y = tch::no_grad(|| unsafe { checkpoint(&[&x], counted(&drops)) });
    assert!(!y.requires_grad());
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn panic_in_recomputation_is_a_backward_error() {
    let _rng = crate::device::torch_rng_lock();
    let x = Tensor::randn([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let calls = AtomicUsize::new(0);
    let y = unsafe {
        checkpoint(&[&x], |xs| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                panic!("recomputation refused");
            }
            xs[0].sin()
        })
    };
    let err = y.sum(Kind::Float).f_backward().expect_err("backward must fail");
    assert!(err.to_string().contains("recomputation refused"), "{err}");
}
