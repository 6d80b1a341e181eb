//! Activation (gradient) checkpointing: a block's intermediate activations are not kept for the backward pass but
//! recomputed from its inputs when the gradient reaches it, trading one extra forward of the block for the memory
//! of its activations.
//!
//! This is PyTorch's reentrant `torch.utils.checkpoint(use_reentrant=True)`, through a libtorch
//! `torch::autograd::Function` in `csrc/checkpoint.cpp` (tch binds no custom autograd functions). The forward runs
//! the closure without recording a graph and saves only the inputs, together with the CPU and CUDA random states
//! and the autocast state; the backward restores those, runs the closure again with grad mode on and
//! back-propagates through the fresh graph, so dropout masks repeat and the gradients of the parameters used inside
//! accumulate as they would without checkpointing.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;

/// The closure as the C++ side holds it: a thin pointer to this box.
type Closure<'a> = Box<dyn Fn(&[Tensor]) -> Tensor + 'a>;

type CallFn = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, c_int, *mut *mut c_void, *mut c_char, c_int) -> c_int;
type DropFn = unsafe extern "C" fn(*mut c_void);

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn suite_checkpoint(
        inputs: *const *const c_void,
        n: c_int,
        ctx: *mut c_void,
        call: CallFn,
        drop: DropFn,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: c_int,
    ) -> c_int;
}

/// `f(inputs)`, computed so that the activations inside `f` are not kept for the backward pass but recomputed
/// then: the returned tensor's gradient function runs `f` again on the saved inputs, under the random and autocast
/// state of the first run, and back-propagates through it. The gradients of the inputs (those that require grad)
/// and of every parameter `f` uses equal those of calling `f` directly, dropout included.
///
/// `f` receives the inputs as new handles on the same tensors; it must compute its result from them (and from
/// parameters it captures), deterministically apart from the random draws. It runs once here and once more per
/// backward pass through the result.
///
/// Without grad mode `f` is simply called. When no input requires grad, parameters inside `f` may still need
/// gradients (LoRA on a frozen model, whose embeddings need no grad): the node is then anchored to a scalar that
/// requires grad, so it is recorded whatever `f` captures, and its backward does nothing when `f`'s recomputed
/// result needs no gradient after all. (PyTorch's reentrant checkpoint instead silently drops those gradients,
/// which is why transformers calls `enable_input_require_grads`.)
///
/// A panic inside `f` during the backward pass becomes an error of that backward pass (`f_backward`), not an
/// unwind through libtorch; a panic during the first run, or a libtorch error, panics here with its message.
///
/// # Safety
/// The result carries `f` in its autograd graph, which the borrow checker cannot see: everything `f` borrows must
/// stay alive, and must not be mutated, until every backward pass through the result has run or the graph has been
/// dropped. The backward pass may run `f` on the autograd engine's device thread (CUDA) while the thread that
/// called `backward` waits, and the graph may drop `f` on whichever thread frees it. A model that checkpoints its
/// blocks with closures borrowing itself has to guard against being dropped or changed before the backward pass
/// (see `LlamaForCausalLm`'s liveness token).
pub unsafe fn checkpoint<'a>(inputs: &[&Tensor], f: impl Fn(&[Tensor]) -> Tensor + 'a) -> Tensor {
    let closure: Box<Closure<'a>> = Box::new(Box::new(f));
    // From here on the C++ side owns the closure and frees it through `drop_closure` on every path.
    let ctx = Box::into_raw(closure) as *mut c_void;
    let ptrs: Vec<*const c_void> = inputs.iter().map(|t| t.as_ptr() as *const c_void).collect();
    let mut out: *mut c_void = std::ptr::null_mut();
    let mut err = vec![0 as c_char; 1024];
    let rc = suite_checkpoint(
        ptrs.as_ptr(),
        ptrs.len() as c_int,
        ctx,
        call_closure,
        drop_closure,
        &mut out,
        err.as_mut_ptr(),
        err.len() as c_int,
    );
    if rc != 0 {
        let msg = CStr::from_ptr(err.as_ptr()).to_string_lossy().into_owned();
        panic!("checkpoint: {msg}");
    }
    Tensor::from_ptr(out.cast())
}

/// Runs the closure behind `ctx` on `n` inputs it takes ownership of and hands the result over through `out`.
/// Returns 0, or 1 with the panic message in `err`.
unsafe extern "C" fn call_closure(
    ctx: *mut c_void,
    inputs: *mut *mut c_void,
    n: c_int,
    out: *mut *mut c_void,
    err: *mut c_char,
    err_len: c_int,
) -> c_int {
    // Owned before anything can panic, so the inputs are freed on every path.
    let xs: Vec<Tensor> = (0..n as usize).map(|i| Tensor::from_ptr((*inputs.add(i)).cast())).collect();
    let f = &*(ctx as *const Closure);
    match catch_unwind(AssertUnwindSafe(|| f(&xs))) {
        Ok(mut t) => {
            *out = t.as_mut_ptr().cast();
            // The C++ side now owns the handle.
            std::mem::forget(t);
            0
        }
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            let bytes = msg.as_bytes();
            let len = bytes.len().min(err_len.max(1) as usize - 1);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), err, len);
            *err.add(len) = 0;
            1
        }
    }
}

/// Frees the closure behind `ctx`; a panic in a captured value's destructor is swallowed rather than unwound into
/// libtorch.
unsafe extern "C" fn drop_closure(ctx: *mut c_void) {
    let closure = Box::from_raw(ctx as *mut Closure);
    let _ = catch_unwind(AssertUnwindSafe(move || drop(closure)));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
