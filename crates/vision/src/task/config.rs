use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Which parameters train (`--tune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Tune {
    /// Only the new head; the backbone is frozen with its batch norms in eval mode.
    Head,
    /// The head and the last N stages of the backbone; earlier batch norms stay in eval mode.
    LastN(usize),
    /// Everything.
    Full,
}

impl std::str::FromStr for Tune {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "head" => Ok(Tune::Head),
            "full" => Ok(Tune::Full),
            _ => match s.strip_prefix("last:").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => Ok(Tune::LastN(n)),
                _ => Err(format!("tune {s:?}: expected head, last:N (N ≥ 1) or full")),
            },
        }
    }
}

impl TryFrom<String> for Tune {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Tune> for String {
    fn from(t: Tune) -> String {
        match t {
            Tune::Head => "head".into(),
            Tune::Full => "full".into(),
            Tune::LastN(n) => format!("last:{n}"),
        }
    }
}

/// Training-time augmentation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// Evaluation transform only (enables the feature cache with `tune = "head"`).
    None,
    /// Random resized crop and horizontal flip.
    #[default]
    Light,
    /// Light plus TrivialAugmentWide and random erasing.
    Strong,
}

/// How weights are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// From the model's pretrained weights (or `weights`).
    #[default]
    Pretrained,
    /// Random: training from scratch on purpose.
    Random,
}

/// The `[vision]` table of a task recipe: model, data and tuning strategy of an image-classification job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionConfig {
    /// Registry name, such as `resnet50` or `efficientnet_lite0`.
    pub model: String,
    /// Weights overriding the registry default: a safetensors or `.pth` file, a folder, or a hub id.
    pub weights: Option<String>,
    /// `pretrained` or `random`.
    pub init: Init,
    /// Training data: an image-folder root (`train/`, `val/`…, or class folders) or a CSV/JSONL manifest.
    pub data: Option<PathBuf>,
    /// Validation data (folder or manifest); else `val/` under `data`, else `val_split`.
    pub val_data: Option<PathBuf>,
    /// Fraction held out for validation when there is no validation data.
    pub val_split: f64,
    /// Which parameters train.
    pub tune: Tune,
    /// Learning-rate multiplier of the trained backbone stages relative to the head.
    pub backbone_lr_mult: f64,
    /// Keep every batch norm in eval mode with its pretrained statistics, also in the trained stages (whose
    /// affine weights still train), as detection fine-tuning's frozen batch norm. Small per-device batches then
    /// cannot skew the statistics, and a data-parallel run matches a single process with the same global batch.
    pub freeze_bn: bool,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Mixup alpha (0 = off).
    pub mixup: f64,
    /// CutMix alpha (0 = off).
    pub cutmix: f64,
    /// Skip unreadable images instead of failing.
    pub skip_bad: bool,
    /// Cache backbone features when only the head trains and nothing is augmented.
    pub cache_features: bool,
    /// Input side in pixels, overriding the model's default (e.g. 128 for small images such as digits).
    pub input_size: Option<u32>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            model: "resnet50".into(),
            weights: None,
            init: Init::Pretrained,
            data: None,
            val_data: None,
            val_split: 0.1,
            tune: Tune::Head,
            backbone_lr_mult: 0.1,
            freeze_bn: false,
            label_smoothing: 0.0,
            augment: Augment::Light,
            mixup: 0.0,
            cutmix: 0.0,
            skip_bad: false,
            cache_features: true,
            input_size: None,
        }
    }
}

impl VisionConfig {
    /// Checks values serde cannot; each error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.data.is_none() {
            bail!("vision.data is not set: pass --data DIR (an image folder or a CSV/JSONL manifest)");
        }
        if !(0.0..1.0).contains(&self.val_split) {
            bail!("vision.val_split must be in [0, 1), got {}", self.val_split);
        }
        if !(self.backbone_lr_mult.is_finite() && self.backbone_lr_mult > 0.0) {
            bail!("vision.backbone_lr_mult must be positive, got {}", self.backbone_lr_mult);
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!("vision.label_smoothing must be in [0, 1), got {}", self.label_smoothing);
        }
        if self.mixup < 0.0 || self.cutmix < 0.0 {
            bail!("vision.mixup and vision.cutmix must be ≥ 0");
        }
        if let Some(s) = self.input_size {
            if !(16..=2048).contains(&s) {
                bail!("vision.input_size must be between 16 and 2048 pixels, got {s}");
            }
        }
        crate::models::lookup(&self.model)?;
        Ok(())
    }

    /// Whether the frozen part of the backbone can be computed once: nothing that trains comes before it and
    /// every epoch sees the same pixels (no augmentation, mixup or cutmix).
    pub fn uses_feature_cache(&self) -> bool {
        self.cache_features
            && matches!(self.tune, Tune::Head | Tune::LastN(_))
            && self.augment == Augment::None
            && self.mixup == 0.0
            && self.cutmix == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_parses_and_rejects() {
        assert_eq!("last:2".parse::<Tune>().unwrap(), Tune::LastN(2));
        assert_eq!("head".parse::<Tune>().unwrap(), Tune::Head);
        assert!("last:0".parse::<Tune>().unwrap_err().contains("expected head, last:N"));
        assert!("most".parse::<Tune>().is_err());
        assert_eq!(String::from(Tune::LastN(3)), "last:3");
    }
}
