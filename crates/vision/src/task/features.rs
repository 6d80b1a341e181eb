use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use suite_core::data::{DataLoader, Dataset, LoaderConfig, SampleRng};
use tch::{Device, Tensor};

use crate::data::{ImageBatch, ImageDataset};
use crate::models::ImageClassifier;

/// The output of the frozen part of the backbone computed once, for tuning without augmentation: pooled features
/// for `--tune head` (every later epoch costs only the linear head) or the activation maps entering the first
/// trained stage for `--tune last:N`.
pub struct FeatureDataset {
    // Plain vectors rather than tensors: loader workers share the dataset, and tch tensors are not `Sync`.
    features: Vec<f32>,
    labels: Vec<i64>,
    /// Shape of one item (`[C]` or `[C, H, W]`).
    shape: Vec<i64>,
    dim: usize,
}

impl FeatureDataset {
    /// Runs the frozen backbone (eval mode, no gradients) over `images` and keeps its output in memory: the pooled
    /// features when `upto` is `None`, else the activation maps after the stages `0..upto`.
    pub fn compute(
        model: &dyn ImageClassifier,
        images: Arc<ImageDataset>,
        loader: &LoaderConfig,
        device: Device,
        upto: Option<usize>,
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
            let x = batch.images.to_device(device);
            let f = tch::no_grad(|| match upto {
                None => model.forward_features(&x, false),
                Some(k) => model.forward_stages(&x, 0..k, false),
            });
            bar.inc(batch.labels.size()[0] as u64);
            feats.push(f.to_device(Device::Cpu));
            labels.push(batch.labels);
        }
        bar.finish_and_clear();
        let features = Tensor::cat(&feats, 0).to_kind(tch::Kind::Float);
        let shape = features.size()[1..].to_vec();
        let dim = shape.iter().product::<i64>() as usize;
        let features = Vec::<f32>::try_from(features.view([-1]))?;
        let labels = Vec::<i64>::try_from(Tensor::cat(&labels, 0))?;
        Ok(Self { features, labels, shape, dim })
    }

    /// Number of values per item.
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
        let mut shape = vec![items.len() as i64];
        shape.extend(&self.shape);
        Ok(ImageBatch { images: Tensor::from_slice(&x).view(shape.as_slice()), labels: Tensor::from_slice(&y) })
    }
}
