//! Recognising this module's LoRA adapters behind `Box<dyn LinearAdapter>` / `Box<dyn ConvAdapter>`.
//!
//! The adapter traits of `crate::nn` have no `Any` downcast, and merging needs the adapter's tensors back. Each
//! LoRA adapter therefore registers its heap address together with a weak reference to a token that only it
//! holds: an entry counts only while its token is alive, so an address reused by another adapter after ours was
//! dropped is never mistaken for ours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tch::Tensor;

/// What merging and unmerging need from a LoRA adapter; the tensors share storage with the `VarStore`'s.
#[derive(Debug)]
pub(crate) struct LoraParts {
    /// `lora_A.weight`: `[r, in]`, or `[r, in, kh, kw]` on a convolution.
    pub a: Tensor,
    /// `lora_B.weight`: `[out, r]`, or `[out, r / groups, 1, 1]`.
    pub b: Tensor,
    /// DoRA's `lora_magnitude_vector`: `[out]`, or `[1, out, 1, 1]` on a convolution.
    pub magnitude: Option<Tensor>,
    /// `alpha / r` or `alpha / √r`.
    pub scale: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
}

impl LoraParts {
    pub(crate) fn share(&self) -> Self {
        Self {
            a: self.a.shallow_clone(),
            b: self.b.shallow_clone(),
            magnitude: self.magnitude.as_ref().map(Tensor::shallow_clone),
            scale: self.scale,
            dropout: self.dropout,
        }
    }
}

/// A registered adapter: active, or merged into its layer's weight (with DoRA's weight norm at merge time).
#[derive(Debug)]
pub(crate) enum Entry {
    Active(LoraParts),
    Merged { parts: LoraParts, dora_norm: Option<Tensor> },
}

type Table = HashMap<usize, (Weak<()>, Entry)>;

static REGISTRY: Mutex<Option<Table>> = Mutex::new(None);

/// The address that identifies the adapter object `r` points at.
pub(crate) fn address_of<T: ?Sized>(r: &T) -> usize {
    r as *const T as *const () as usize
}

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    // A panic while the lock was held cannot leave the map half-updated (every update is one insert or remove),
    // so a poisoned lock is still usable.
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let table = guard.get_or_insert_with(HashMap::new);
    table.retain(|_, (alive, _)| alive.strong_count() > 0);
    f(table)
}

/// Registers the adapter at `address`, alive as long as `token` is.
pub(crate) fn register(address: usize, token: &Arc<()>, entry: Entry) {
    with_table(|t| {
        t.insert(address, (Arc::downgrade(token), entry));
    });
}

/// Removes the registration of the adapter at `address`, returning its entry if it was one of ours.
pub(crate) fn take(address: usize) -> Option<Entry> {
    with_table(|t| t.remove(&address).map(|(_, e)| e))
}

/// Whether the adapter at `address` is one of ours, and in which state: `Some(false)` active, `Some(true)` merged.
pub(crate) fn state(address: usize) -> Option<bool> {
    with_table(|t| t.get(&address).map(|(_, e)| matches!(e, Entry::Merged { .. })))
}
