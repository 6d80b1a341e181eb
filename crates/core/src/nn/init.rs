//! Parameter registration that can skip initialisation when a checkpoint is about to overwrite every value.
//!
//! A model is built with random weights and then loaded, so loading a 72 M-parameter Whisper used to hold the
//! random weights and the checkpoint's at once (290 MB each) and spend time drawing numbers nobody reads. Inside
//! [`without_init`], [`var`] registers uninitialised tensors instead: their pages are never touched until the loader
//! copies into them, so they are not resident, and the peak falls by a model's size. Only for strict loads, where a
//! variable the checkpoint lacks is an error rather than garbage.

use std::cell::Cell;

use tch::{nn, Tensor};

thread_local! {
    static SKIP: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` with [`var`] registering uninitialised variables (on this thread); for models that a strict load
/// fills right after.
pub fn without_init<T>(build: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SKIP.set(self.0);
        }
    }
    let _restore = Restore(SKIP.replace(true));
    build()
}

/// `p.var(name, dims, init)`, or an uninitialised trainable variable of the same shape inside [`without_init`].
pub fn var(p: &nn::Path, name: &str, dims: &[i64], init: nn::Init) -> Tensor {
    if SKIP.get() {
        p.add(name, Tensor::empty(dims, (p.kind(), p.device())), true)
    } else {
        p.var(name, dims, init)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_only_inside_without_init() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let a = var(&vs.root(), "a", &[3, 2], nn::Init::Const(1.0));
        assert_eq!(a.sum(tch::Kind::Float).double_value(&[]), 6.0);
        let b = without_init(|| var(&vs.root(), "b", &[1 << 20], nn::Init::Const(1.0)));
        assert_eq!(b.size(), [1 << 20]);
        assert!(b.requires_grad());
        assert!(vs.variables().contains_key("b"));
        // Restored afterwards.
        let c = var(&vs.root(), "c", &[2], nn::Init::Const(1.0));
        assert_eq!(c.sum(tch::Kind::Float).double_value(&[]), 2.0);
    }
}
