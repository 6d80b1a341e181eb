use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use suite_core::data::{BatchSampler, DataLoader, Dataset, LoaderConfig, SampleRng, Sequential};
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
        let n = images.len();
        // Under data parallelism each rank runs the backbone over its own slice of the examples and the slices are
        // summed into every rank's copy (the other rows are zero), instead of every rank computing everything.
        let group = suite_core::dist::group().filter(|g| n >= g.world_size());
        let (start, end) = match &group {
            Some(g) => (n * g.rank() / g.world_size(), n * (g.rank() + 1) / g.world_size()),
            None => (0, n),
        };
        let sampler: Arc<dyn BatchSampler> =
            if group.is_some() { Arc::new(Slice { start, end }) } else { Arc::new(Sequential) };
        let loader = DataLoader::new(images, sampler, LoaderConfig { drop_last: false, ..loader.clone() });
        let total = (end - start) as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30.green/blue}] {pos}/{len} images  {per_sec}  ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("features ({what})"));
        if !suite_core::dist::is_main() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
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
        let mut features = Tensor::cat(&feats, 0).to_kind(tch::Kind::Float);
        let mut labels = Tensor::cat(&labels, 0);
        if let Some(g) = &group {
            let mut shape = features.size();
            shape[0] = n as i64;
            let mut all = [
                Tensor::zeros(shape.as_slice(), (tch::Kind::Float, Device::Cpu)),
                Tensor::zeros([n as i64], (tch::Kind::Int64, Device::Cpu)),
            ];
            all[0].narrow(0, start as i64, (end - start) as i64).copy_(&features);
            all[1].narrow(0, start as i64, (end - start) as i64).copy_(&labels);
            g.all_reduce_sum(&mut all)
                .map_err(|e| anyhow::anyhow!("sharing the {what} features across ranks: {e:#}"))?;
            let [f, l] = all;
            (features, labels) = (f, l);
        }
        let shape = features.size()[1..].to_vec();
        let dim = shape.iter().product::<i64>() as usize;
        let features = Vec::<f32>::try_from(features.view([-1]))?;
        let labels = Vec::<i64>::try_from(labels)?;
        Ok(Self { features, labels, shape, dim })
    }

    /// Number of values per item.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// The examples `start..end` in order: one rank's share of the feature computation.
struct Slice {
    start: usize,
    end: usize,
}

impl BatchSampler for Slice {
    fn batches(&self, _len: usize, batch_size: usize, _drop_last: bool, _seed: u64, _epoch: usize) -> Vec<Vec<usize>> {
        (self.start..self.end).collect::<Vec<_>>().chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
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
