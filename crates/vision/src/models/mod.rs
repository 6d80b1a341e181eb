//! Pretrained image classifiers on suite's PEFT-ready layers: ResNet-18…152 and EfficientNet-Lite0, with the
//! parameter names of their public checkpoints, a common [`ImageClassifier`] interface for the trainer, and a
//! timm-style [`registry`] of names, default weights and preprocessing.

mod classifier;
mod efficientnet_lite;
pub mod registry;
mod resnet;

#[cfg(test)]
mod parity_tests;

pub use classifier::{has_prefix, set_batch_norms_frozen, ImageClassifier, Stage};
pub use efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
pub use registry::{
    lookup, model_names, Architecture, Interpolation, ModelSpec, Preprocess, PretrainedWeights, WeightsFormat,
    WeightsSource, MODELS,
};
pub use resnet::{BlockKind, ResNet, ResNetConfig};
