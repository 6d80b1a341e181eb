//! The interface every image classifier offers the trainer, and the name-prefix helpers that partial fine-tuning
//! (`--tune last:N`, frozen batch norms) is built on.

use suite_core::nn::{BatchNorm2d, LayerVisitor, VisitLayers};
use tch::Tensor;

/// A contiguous group of layers that partial fine-tuning treats as one unit, named by checkpoint-name prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Short label for logs, such as `layer4` or `stage6`.
    pub label: String,
    /// Checkpoint-name prefixes of the stage's modules, such as `["layer4"]` or `["_blocks.11", "_blocks.12"]`.
    pub prefixes: Vec<String>,
}

impl Stage {
    /// A stage made of the modules under `prefixes`.
    pub fn new(label: impl Into<String>, prefixes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { label: label.into(), prefixes: prefixes.into_iter().map(Into::into).collect() }
    }

    /// Whether the parameter or layer named `name` belongs to this stage.
    pub fn contains(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| has_prefix(name, p))
    }
}

/// A pretrained image classifier: a backbone that pools to one feature vector per image, then a linear head.
///
/// Parameters live in the `tch::nn::VarStore` the model was built on, under the checkpoint's own names, so the
/// trainer selects what to train by name: [`ImageClassifier::head_prefix`] for the head and
/// [`ImageClassifier::stages`] for `--tune last:N`.
pub trait ImageClassifier: VisitLayers + Send {
    /// Pooled backbone features `[N, num_features]` of images `x` `[N, 3, H, W]` (normalised as the model's
    /// preprocessing says); `train` switches batch statistics and stochastic regularisation.
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        global_avg_pool(&self.forward_stages(x, 0..self.stages().len(), train))
    }

    /// Runs the stages `range` of [`ImageClassifier::stages`] on `x` — the images when the range starts at 0, else
    /// the activation map stage `range.start - 1` produced — and returns the activation map, before pooling.
    /// Caching the output of the frozen stages lets `--tune last:N` skip them after the first pass.
    fn forward_stages(&self, x: &Tensor, range: std::ops::Range<usize>, train: bool) -> Tensor;

    /// Class logits `[N, num_classes]` from pooled features (dropout, if the model has any, then the linear head).
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor;

    /// Class logits `[N, num_classes]` of images `x`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_head(&self.forward_features(x, train), train)
    }

    /// Width of the pooled features, the head's input.
    fn num_features(&self) -> i64;

    /// Number of classes the head predicts.
    fn num_classes(&self) -> i64;

    /// Checkpoint-name prefix of the classification head (`fc` for ResNet, `_fc` for EfficientNet), the part a
    /// new task replaces.
    fn head_prefix(&self) -> &str;

    /// The backbone's stages in forward order, stem first; the head is not among them.
    fn stages(&self) -> Vec<Stage>;

    /// Names of the layers whose output [`ImageClassifier::forward_with_activation`] can hand back, in forward
    /// order: the stage labels of [`ImageClassifier::stages`] (a stage's output is its last block's) and the blocks
    /// inside them under their checkpoint names (`layer3.1`, `_blocks.15`).
    fn activation_layers(&self) -> Vec<String>;

    /// Class logits `[N, num_classes]` of images `x` together with the output of the layer named `layer` (one of
    /// [`ImageClassifier::activation_layers`]; `None` for any other name), so that gradients with respect to that
    /// activation can be taken (Grad-CAM). The activation has the logical shape `[N, C, h, w]` but may be laid out
    /// channels-last in memory: it is the very tensor the rest of the forward pass consumed, not a copy, since a
    /// copy would not be part of the graph.
    fn forward_with_activation(&self, x: &Tensor, layer: &str, train: bool) -> Option<(Tensor, Tensor)>;

    /// The last `n` stages of the backbone (all of them when `n` exceeds their number), in forward order: what
    /// `--tune last:N` trains besides the head.
    fn last_stages(&self, n: usize) -> Vec<Stage> {
        let stages = self.stages();
        let skip = stages.len().saturating_sub(n);
        stages.into_iter().skip(skip).collect()
    }
}

/// Whether the dotted checkpoint name `name` lies under `prefix`: equal to it or continuing with a `.`, so that
/// `_blocks.1` covers `_blocks.1._bn0.weight` but not `_blocks.10._bn0.weight`. An empty prefix covers everything.
pub fn has_prefix(name: &str, prefix: &str) -> bool {
    prefix.is_empty() || name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Sets `frozen` on every batch norm of `model` whose name lies under one of `prefixes`, and returns how many it
/// set. A frozen batch norm normalises with its running statistics and never updates them (eval mode) even while
/// the rest of the model trains, which is what a partly frozen pretrained backbone needs: small fine-tuning batches
/// would otherwise overwrite the statistics the frozen convolutions were trained with.
pub fn set_batch_norms_frozen(model: &mut dyn VisitLayers, prefixes: &[&str], frozen: bool) -> usize {
    struct Freezer<'a> {
        prefixes: &'a [&'a str],
        frozen: bool,
        count: usize,
    }
    impl LayerVisitor for Freezer<'_> {
        fn batch_norm(&mut self, layer: &mut BatchNorm2d) {
            if self.prefixes.iter().any(|p| has_prefix(&layer.name, p)) {
                layer.frozen = self.frozen;
                self.count += 1;
            }
        }
    }
    let mut freezer = Freezer { prefixes, frozen, count: 0 };
    model.visit_layers(&mut freezer);
    freezer.count
}

/// Global average pooling `[N, C, H, W]` → `[N, C]`.
pub(crate) fn global_avg_pool(x: &Tensor) -> Tensor {
    x.mean_dim([-2i64, -1].as_slice(), false, None::<tch::Kind>)
}

/// `x` `[N, C, H, W]` in the channels-last (NHWC) memory format: the same shape and values, with strides that keep
/// the channels of a pixel together, as `x.to(memory_format=torch.channels_last)` gives (tch has no memory-format
/// argument, so the permute–contiguous–permute round trip builds the strides; a tensor already channels-last comes
/// back without a copy). libtorch's oneDNN convolutions, batch norms, pooling and element-wise kernels then run in
/// NHWC end to end, which on the CPU is faster than NCHW and computes the same values. Other ranks pass through.
pub(crate) fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Checks a constructor's class count, so that a bad `--num-classes` is an error rather than a libtorch abort.
pub(crate) fn check_num_classes(num_classes: i64) -> anyhow::Result<()> {
    anyhow::ensure!(num_classes > 0, "a classifier needs at least one class, got num_classes = {num_classes}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_dots() {
        assert!(has_prefix("_blocks.1._bn0.weight", "_blocks.1"));
        assert!(!has_prefix("_blocks.10._bn0.weight", "_blocks.1"));
        assert!(has_prefix("layer4", "layer4"));
        assert!(!has_prefix("layer4", "layer4.0"));
        assert!(has_prefix("fc.weight", ""));
        let stage = Stage::new("stem", ["conv1", "bn1"]);
        assert!(stage.contains("bn1.running_mean"));
        assert!(!stage.contains("layer1.0.bn1.weight"));
    }
}
