use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use suite_core::data::{DataLoader, Dataset, LoaderConfig, SampleRng};
use tch::{Device, Tensor};

use crate::data::{ImageBatch, ImageDataset};
use crate::models::ImageClassifier;

/// Backbone features computed once, for head-only tuning without augmentation: every epoch after the first pass
/// costs only the linear head.
pub struct FeatureDataset {
    // Plain vectors rather than tensors: loader workers share the dataset, and tch tensors are not `Sync`.
    features: Vec<f32>,
    labels: Vec<i64>,
    dim: usize,
}

impl FeatureDataset {
    /// Runs the frozen backbone (eval mode, no gradients) over `images` and keeps the pooled features in memory.
    pub fn compute(
        model: &dyn ImageClassifier,
        images: Arc<ImageDataset>,
        loader: &LoaderConfig,
        device: Device,
        what: &str,
    ) -> Result<Self> {
        let loader = DataLoader::sequential(images, loader.clone());
        let total = loader.dataset().len() as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30.green/blue}] {pos}/{len} images  {per_sec}  ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("features ({what})"));
        let (mut feats, mut labels) = (Vec::new(), Vec::new());
        for batch in loader.iter_epoch(0, 0) {
            let batch = batch?;
            let f = tch::no_grad(|| model.forward_features(&batch.images.to_device(device), false));
            bar.inc(batch.labels.size()[0] as u64);
            feats.push(f.to_device(Device::Cpu));
            labels.push(batch.labels);
        }
        bar.finish_and_clear();
        let features = Tensor::cat(&feats, 0).to_kind(tch::Kind::Float);
        let dim = features.size()[1] as usize;
        let features = Vec::<f32>::try_from(features.view([-1]))?;
        let labels = Vec::<i64>::try_from(Tensor::cat(&labels, 0))?;
        Ok(Self { features, labels, dim })
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl Dataset for FeatureDataset {
    type Item = usize;
    type Batch = ImageBatch;

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<usize> {
        Ok(index)
    }

    fn collate(&self, items: Vec<usize>) -> Result<ImageBatch> {
        let d = self.dim;
        let mut x = Vec::with_capacity(items.len() * d);
        for &i in &items {
            x.extend_from_slice(&self.features[i * d..(i + 1) * d]);
        }
        let y: Vec<i64> = items.iter().map(|&i| self.labels[i]).collect();
        Ok(ImageBatch {
            images: Tensor::from_slice(&x).view([items.len() as i64, d as i64]),
            labels: Tensor::from_slice(&y),
        })
    }
}
