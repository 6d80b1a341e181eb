//! LoRA and DoRA on [`Linear`] and [`Conv2d`] layers, with merging into the base weight and back, as peft's
//! `lora.Linear`, `lora.Conv2d`, `DoraLinearLayer` and `DoraConv2dLayer`.

use std::sync::Arc;

use anyhow::{bail, Result};
use tch::Tensor;

use super::registry::{self, Entry, LoraParts};
use crate::nn::{Conv2d, ConvAdapter, LayerVisitor, Linear, LinearAdapter, VisitLayers};

/// The input of the low-rank branch: dropped out in training when the config asks for it.
fn branch_input(x: &Tensor, p: f64, train: bool) -> (Tensor, bool) {
    if train && p > 0.0 {
        (x.dropout(p, true), true)
    } else {
        (x.shallow_clone(), false)
    }
}

/// `‖W + ΔW‖` per output row of a dense weight: `[out]`.
fn linear_row_norm(w: &Tensor) -> Tensor {
    w.norm_scalaropt_dim(2.0, [1i64], false)
}

/// `‖W + ΔW‖` per output channel of a kernel, laid out as peft's conv magnitude: `[1, out, 1, 1]`.
fn conv_channel_norm(w: &Tensor) -> Tensor {
    w.norm_scalaropt_dim(2.0, [1i64, 2, 3], true).transpose(1, 0)
}

/// `B·A` of a convolution's LoRA as a kernel of the base weight's shape (groups must be 1).
fn conv_lora_weight(parts: &LoraParts, shape: &[i64]) -> Tensor {
    let r = parts.a.size()[0];
    parts.b.view([-1, r]).mm(&parts.a.view([r, -1])).reshape(shape)
}

/// The DoRA magnitude of a dense layer at initialisation: the row norms of its weight.
pub(crate) fn linear_magnitude(weight: &Tensor) -> Tensor {
    tch::no_grad(|| linear_row_norm(weight))
}

/// The DoRA magnitude of a convolution at initialisation, `[1, out, 1, 1]`.
pub(crate) fn conv_magnitude(weight: &Tensor) -> Tensor {
    tch::no_grad(|| conv_channel_norm(weight))
}

/// LoRA (or DoRA) on a dense layer: `y + (B·A·dropout(x))·scale`.
#[derive(Debug)]
pub(crate) struct LoraLinear {
    parts: LoraParts,
    _alive: Arc<()>,
}

impl LinearAdapter for LoraLinear {
    fn adapt(&self, base: &Linear, x: &Tensor, y: Tensor, train: bool) -> Tensor {
        let p = &self.parts;
        let (xd, dropped) = branch_input(x, p.dropout, train);
        let lora = xd.linear::<Tensor>(&p.a, None).linear::<Tensor>(&p.b, None);
        let Some(m) = &p.magnitude else {
            return y + lora * p.scale;
        };
        // DoRA: the norm of the adapted weight is a constant for autograd (paper §4.3, as peft does).
        let adapted = &base.weight + p.b.matmul(&p.a).detach() * p.scale;
        let s = m / linear_row_norm(&adapted).detach();
        let base_out = if dropped {
            xd.linear::<Tensor>(&base.weight, None)
        } else {
            match &base.bias {
                Some(b) => &y - b,
                None => y.shallow_clone(),
            }
        };
        y + (&s - 1.0) * base_out + s * lora * p.scale
    }
}

/// LoRA (or DoRA) on a convolution: `lora_A` has the base kernel, stride, padding and dilation and `r` outputs,
/// `lora_B` is a 1×1 convolution with the base's groups.
#[derive(Debug)]
pub(crate) struct LoraConv {
    parts: LoraParts,
    _alive: Arc<()>,
}

impl ConvAdapter for LoraConv {
    fn adapt(&self, base: &Conv2d, x: &Tensor, y: Tensor, train: bool) -> Tensor {
        let p = &self.parts;
        let c = base.config;
        let (xd, dropped) = branch_input(x, p.dropout, train);
        let lora = xd.conv2d::<Tensor>(&p.a, None, [c.stride; 2], [c.padding; 2], [c.dilation; 2], 1).conv2d::<Tensor>(
            &p.b,
            None,
            [1, 1],
            [0, 0],
            [1, 1],
            c.groups,
        );
        let Some(m) = &p.magnitude else {
            return y + lora * p.scale;
        };
        let adapted = &base.weight + conv_lora_weight(p, &base.weight.size()).detach() * p.scale;
        let s = m / conv_channel_norm(&adapted).detach();
        let base_out = if dropped {
            xd.conv2d::<Tensor>(&base.weight, None, [c.stride; 2], [c.padding; 2], [c.dilation; 2], c.groups)
        } else {
            match &base.bias {
                Some(b) => &y - b.view([1, -1, 1, 1]),
                None => y.shallow_clone(),
            }
        };
        y + (&s - 1.0) * base_out + s * lora * p.scale
    }
}

/// A LoRA adapter folded into its layer's weight: the identity, kept so that [`unmerge_lora`] can restore it.
#[derive(Debug)]
struct Merged {
    _alive: Arc<()>,
}

impl LinearAdapter for Merged {
    fn adapt(&self, _base: &Linear, _x: &Tensor, y: Tensor, _train: bool) -> Tensor {
        y
    }
}

impl ConvAdapter for Merged {
    fn adapt(&self, _base: &Conv2d, _x: &Tensor, y: Tensor, _train: bool) -> Tensor {
        y
    }
}

/// A registered LoRA adapter for a dense layer.
pub(crate) fn linear_adapter(parts: LoraParts) -> Box<dyn LinearAdapter> {
    let alive = Arc::new(());
    let entry = Entry::Active(parts.share());
    let adapter = Box::new(LoraLinear { parts, _alive: alive.clone() });
    registry::register(registry::address_of(&*adapter), &alive, entry);
    adapter
}

/// A registered LoRA adapter for a convolution.
pub(crate) fn conv_adapter(parts: LoraParts) -> Box<dyn ConvAdapter> {
    let alive = Arc::new(());
    let entry = Entry::Active(parts.share());
    let adapter = Box::new(LoraConv { parts, _alive: alive.clone() });
    registry::register(registry::address_of(&*adapter), &alive, entry);
    adapter
}

fn merged_marker(parts: LoraParts, dora_norm: Option<Tensor>) -> Box<Merged> {
    let alive = Arc::new(());
    let marker = Box::new(Merged { _alive: alive.clone() });
    registry::register(registry::address_of(&*marker), &alive, Entry::Merged { parts, dora_norm });
    marker
}

/// The layer geometry merging needs.
enum Geometry {
    Dense,
    Conv,
}

impl Geometry {
    fn delta(&self, parts: &LoraParts, weight: &Tensor) -> Tensor {
        match self {
            Geometry::Dense => parts.b.matmul(&parts.a) * parts.scale,
            Geometry::Conv => conv_lora_weight(parts, &weight.size()) * parts.scale,
        }
    }

    /// DoRA's `m / ‖W + ΔW‖` broadcast over the weight's rows.
    fn dora_factor(&self, magnitude: &Tensor, norm: &Tensor) -> Tensor {
        match self {
            Geometry::Dense => (magnitude / norm).view([-1, 1]),
            Geometry::Conv => (magnitude / norm).view([-1, 1, 1, 1]),
        }
    }

    fn norm(&self, w: &Tensor) -> Tensor {
        match self {
            Geometry::Dense => linear_row_norm(w),
            Geometry::Conv => conv_channel_norm(w),
        }
    }
}

/// `weight` with the LoRA/DoRA update of `parts` folded in, as a new tensor, the layer left as it is: what
/// [`merge_lora`] writes into the layer (`weight` 2-D for a dense layer, 4-D for a convolution).
pub(crate) fn folded_weight(weight: &Tensor, parts: &LoraParts) -> Tensor {
    let geo = if weight.dim() == 4 { Geometry::Conv } else { Geometry::Dense };
    tch::no_grad(|| {
        let adapted = weight + geo.delta(parts, weight).to_kind(weight.kind());
        match &parts.magnitude {
            None => adapted,
            Some(m) => geo.dora_factor(m, &geo.norm(&adapted)) * adapted,
        }
    })
}

/// Folds the adapter into `weight` in place; returns DoRA's weight norm, which unmerging needs.
fn fold(weight: &Tensor, parts: &LoraParts, geo: &Geometry) -> Option<Tensor> {
    tch::no_grad(|| {
        let delta = geo.delta(parts, weight).to_kind(weight.kind());
        let mut w = weight.shallow_clone();
        match &parts.magnitude {
            None => {
                let _ = w.g_add_(&delta);
                None
            }
            Some(m) => {
                let adapted = &w + &delta;
                let norm = geo.norm(&adapted);
                w.copy_(&(geo.dora_factor(m, &norm) * adapted));
                Some(norm)
            }
        }
    })
}

/// Undoes [`fold`].
fn unfold(weight: &Tensor, parts: &LoraParts, dora_norm: Option<&Tensor>, geo: &Geometry) {
    tch::no_grad(|| {
        let delta = geo.delta(parts, weight).to_kind(weight.kind());
        let mut w = weight.shallow_clone();
        match (&parts.magnitude, dora_norm) {
            (Some(m), Some(norm)) => {
                w.copy_(&(&w / geo.dora_factor(m, norm) - delta));
            }
            _ => {
                let _ = w.g_sub_(&delta);
            }
        }
    })
}

/// The registration state of every adapter of a layer: `None` foreign, `Some(false)` active LoRA, `Some(true)`
/// merged LoRA.
fn states<T: ?Sized>(adapters: &[Box<T>]) -> Vec<Option<bool>> {
    adapters.iter().map(|a| registry::state(registry::address_of(&**a))).collect()
}

struct Merger {
    merge: bool,
    /// Only check that every layer can be done, so that an error leaves the model untouched.
    dry_run: bool,
    count: usize,
    error: Option<anyhow::Error>,
}

impl Merger {
    /// Index of the adapter to merge or unmerge, after checking that merging is exact: every adapter before a
    /// LoRA being merged must itself be merged (the identity), or folding would change the result.
    fn pick(&mut self, name: &str, states: &[Option<bool>]) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        let want = Some(!self.merge);
        let i = if self.merge {
            states.iter().position(|s| *s == want)?
        } else {
            states.iter().rposition(|s| *s == want)?
        };
        if self.merge && states[..i].iter().any(|s| *s != Some(true)) {
            self.error = Some(anyhow::anyhow!(
                "{name}: cannot merge LoRA into the weight, another adapter runs before it on this layer"
            ));
            return None;
        }
        if !self.merge && states[i + 1..].iter().any(|s| s.is_some()) {
            // Unmerging out of order would restore a weight that later merges still include.
            self.error = Some(anyhow::anyhow!("{name}: LoRA adapters were merged out of order"));
            return None;
        }
        Some(i)
    }
}

impl LayerVisitor for Merger {
    fn linear(&mut self, layer: &mut Linear) {
        let Some(i) = self.pick(&layer.name, &states(&layer.adapters)) else { return };
        if self.dry_run {
            return;
        }
        let address = registry::address_of(&*layer.adapters[i]);
        if self.merge {
            if let Some(Entry::Active(parts)) = registry::take(address) {
                let norm = fold(&layer.weight, &parts, &Geometry::Dense);
                self.count += 1;
                layer.adapters[i] = merged_marker(parts, norm);
            }
        } else if let Some(Entry::Merged { parts, dora_norm }) = registry::take(address) {
            unfold(&layer.weight, &parts, dora_norm.as_ref(), &Geometry::Dense);
            self.count += 1;
            layer.adapters[i] = linear_adapter(parts);
        }
    }

    fn conv2d(&mut self, layer: &mut Conv2d) {
        let Some(i) = self.pick(&layer.name, &states(&layer.adapters)) else { return };
        let groups = layer.config.groups;
        if groups != 1 {
            self.error = Some(anyhow::anyhow!(
                "{}: LoRA cannot be merged into a grouped convolution (groups = {groups}), as in peft",
                layer.name
            ));
            return;
        }
        if self.dry_run {
            return;
        }
        let geo = Geometry::Conv;
        let address = registry::address_of(&*layer.adapters[i]);
        if self.merge {
            if let Some(Entry::Active(parts)) = registry::take(address) {
                let norm = fold(&layer.weight, &parts, &geo);
                self.count += 1;
                layer.adapters[i] = merged_marker(parts, norm);
            }
        } else if let Some(Entry::Merged { parts, dora_norm }) = registry::take(address) {
            unfold(&layer.weight, &parts, dora_norm.as_ref(), &geo);
            self.count += 1;
            layer.adapters[i] = conv_adapter(parts);
        }
    }
}

/// Folds every LoRA/DoRA adapter of `model` into its layer's weight: `W + scale·B·A`, and for DoRA
/// `m / ‖W + scale·B·A‖ · (W + scale·B·A)` per output row, as peft's `merge`. Returns the number of layers merged.
///
/// Afterwards the layers compute the plain product; each adapter is replaced by an inert record (the identity,
/// free at run time) that [`unmerge_lora`] turns back into the adapter. Merged weights are what an export of the
/// fine-tuned model wants.
pub fn merge_lora(model: &mut dyn VisitLayers) -> Result<usize> {
    walk(model, true)
}

/// Restores the weights [`merge_lora`] changed and reactivates the adapters; returns the number of layers.
pub fn unmerge_lora(model: &mut dyn VisitLayers) -> Result<usize> {
    walk(model, false)
}

fn walk(model: &mut dyn VisitLayers, merge: bool) -> Result<usize> {
    let mut check = Merger { merge, dry_run: true, count: 0, error: None };
    model.visit_layers(&mut check);
    if let Some(e) = check.error {
        bail!(e);
    }
    let mut m = Merger { merge, dry_run: false, count: 0, error: None };
    model.visit_layers(&mut m);
    Ok(m.count)
}
