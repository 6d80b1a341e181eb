//! [`ImageDataset`]: labelled image files decoded and transformed on the loader's worker threads.

use anyhow::{bail, Context, Result};
use suite_core::data::{Dataset, SampleRng};
use tch::Tensor;

use super::decode::decode_image;
use super::transforms::Transform;
use super::Sample;

/// Labelled image files and the transform that turns each into a model input.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    samples: Vec<Sample>,
    transform: Transform,
}

impl ImageDataset {
    /// A dataset of `samples` (path, class index) read through `transform`.
    pub fn new(samples: Vec<Sample>, transform: Transform) -> Self {
        Self { samples, transform }
    }

    /// The labelled files, in index order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The transform.
    pub fn transform(&self) -> &Transform {
        &self.transform
    }
}

/// A collated batch of images.
#[derive(Debug)]
pub struct ImageBatch {
    /// `[N, 3, H, W]` f32, normalised.
    pub images: Tensor,
    /// `[N]` i64 class indices.
    pub labels: Tensor,
}

impl Dataset for ImageDataset {
    /// A normalised `[3, H, W]` image, flattened channel-major, and its class index.
    type Item = (Vec<f32>, usize);
    type Batch = ImageBatch;

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize, rng: &mut SampleRng) -> Result<Self::Item> {
        let Some((path, label)) = self.samples.get(index) else {
            bail!("image index {index} out of range: the dataset has {} images", self.samples.len());
        };
        // decode_image's errors already start with the path.
        let img = decode_image(path)?;
        Ok((self.transform.apply(&img, rng), *label))
    }

    fn collate(&self, items: Vec<Self::Item>) -> Result<ImageBatch> {
        if items.is_empty() {
            bail!("cannot collate an empty batch of images");
        }
        let [c, h, w] = self.transform.output_shape();
        let per = c * h * w;
        let mut pixels = Vec::with_capacity(items.len() * per);
        let mut labels = Vec::with_capacity(items.len());
        for (i, (x, y)) in items.iter().enumerate() {
            if x.len() != per {
                bail!("image {i} of the batch has {} values, expected {c}x{h}x{w} = {per}", x.len());
            }
            pixels.extend_from_slice(x);
            labels.push(i64::try_from(*y).context("class index does not fit in i64")?);
        }
        let n = items.len() as i64;
        Ok(ImageBatch {
            images: Tensor::from_slice(&pixels).view([n, c as i64, h as i64, w as i64]),
            labels: Tensor::from_slice(&labels),
        })
    }
}
