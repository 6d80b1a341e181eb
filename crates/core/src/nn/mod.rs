//! Layers shared by every domain model, built so parameter-efficient methods attach without touching model code.
//!
//! Each layer registers its tensors under the checkpoint's own names (`weight`, `bias`, `running_mean`…) in the
//! `nn::Path` it is given, and remembers that path. PEFT methods find layers through [`VisitLayers`], then push
//! an adapter into the layer's slot: a [`LinearAdapter`] or [`ConvAdapter`] that rewrites the layer's output, or a
//! [`PrefixKv`] that prepends keys and values in an attention block.

mod attention;
mod batch_norm;
mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
mod conv;
mod dropout;
pub mod init;
mod linear;

pub use attention::{scaled_dot_product_attention, AttentionSlots, PrefixKv};
pub use batch_norm::BatchNorm2d;
pub use checkpoint::checkpoint;
pub use conv::{Conv2d, Conv2dConfig, ConvAdapter};
pub use dropout::{dropout, keep_mask};
pub use linear::{dense, Linear, LinearAdapter};

/// Receives every PEFT-capable layer of a model, by mutable reference.
///
/// All methods default to doing nothing, so a visitor implements only the kinds of layer it cares about.
pub trait LayerVisitor {
    /// A dense layer.
    fn linear(&mut self, _layer: &mut Linear) {}
    /// A 2-D convolution.
    fn conv2d(&mut self, _layer: &mut Conv2d) {}
    /// The prefix slot of an attention block.
    fn attention(&mut self, _slots: &mut AttentionSlots) {}
    /// A batch-norm layer.
    fn batch_norm(&mut self, _layer: &mut BatchNorm2d) {}
}

/// A model (or block) that can show its PEFT-capable layers to a [`LayerVisitor`].
pub trait VisitLayers {
    /// Calls the visitor once per layer, in module order.
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor);
}

/// The dotted checkpoint name of a `tch::nn::Path`, e.g. `layer1.0.conv1`.
pub fn path_name(p: &tch::nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}
