//! Prediction with a trained image classifier, as a library: load a run's model (timm layout, or base weights +
//! PEFT adapter), decode and preprocess encoded images exactly as evaluation does, and classify a batch of them in
//! one forward pass. `suite predict vision` and `suite serve` both answer through this module.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Result};
use image::{Limits, RgbImage};
use rand::SeedableRng;
use serde::Serialize;
use suite_core::predict::{top_k, LabelScore};
use tch::{Device, Kind, Tensor};

use crate::data::{decode_bytes_limited, Transform};
use crate::task::{load_timm_layout, transform_config, Augment, ClassifierTask, Inputs};

/// Largest width or height of an image [`VisionPredictor::decode`] accepts, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Most memory the image decoder may allocate for one image (256 MiB: a 64-megapixel RGBA picture).
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// The answer for one image: its most probable labels, most probable first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePrediction {
    /// The `top_k` labels with their softmax probabilities.
    pub top: Vec<LabelScore>,
}

/// Turns encoded image bytes into the model's input tensor: decoding under [`MAX_IMAGE_SIDE`] and
/// [`MAX_DECODE_BYTES`], then the evaluation transform (resize, centre crop, normalise). Holds no model, so it can
/// be cloned to and used on any thread (a server decodes on its request threads, off the inference thread).
#[derive(Debug, Clone)]
pub struct ImagePreprocessor {
    transform: Transform,
}

impl ImagePreprocessor {
    /// `[3, h, w]` of every tensor [`ImagePreprocessor::decode`] returns.
    pub fn input_shape(&self) -> [usize; 3] {
        self.transform.output_shape()
    }

    /// Decodes `bytes` (any supported format, sniffed from the content) and applies the evaluation transform:
    /// a Float `[3, h, w]` tensor on the CPU. Bad bytes are an error meant for the client:
    /// `not a decodable image (N bytes): <reason>`.
    pub fn decode(&self, bytes: &[u8]) -> Result<Tensor> {
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        let img = decode_bytes_limited(bytes, limits)
            .map_err(|e| anyhow!("not a decodable image ({} bytes): {e:#}", bytes.len()))?;
        Ok(self.preprocess(&img))
    }

    /// The evaluation transform of an already decoded image (e.g. a local file read with
    /// [`crate::data::decode_image`], as training reads them): a Float `[3, h, w]` tensor on the CPU.
    pub fn preprocess(&self, img: &RgbImage) -> Tensor {
        // The evaluation transform draws no random numbers; the generator only satisfies the signature.
        let mut rng = suite_core::data::SampleRng::seed_from_u64(0);
        let [c, h, w] = self.input_shape();
        Tensor::from_slice(&self.transform.apply(img, &mut rng)).view([c as i64, h as i64, w as i64])
    }
}

/// A loaded image classifier ready to answer. Built and used on one thread (the model need not be `Send`).
pub struct VisionPredictor {
    task: ClassifierTask,
    pre: ImagePreprocessor,
}

impl VisionPredictor {
    /// Loads the model folder `model_dir`: a timm-layout `config.json` + `model.safetensors`, or a PEFT run's
    /// `config.json` + `adapter.safetensors` over the base weights it names (refused if they are not the weights
    /// the adapter was trained on).
    pub fn load(model_dir: &Path, device: Device) -> Result<Self> {
        let mut task = load_timm_layout(model_dir, device)?;
        task.inputs = Inputs::Pixels;
        let transform = Transform::eval(transform_config(&task.preprocess, Augment::None))?;
        Ok(Self { task, pre: ImagePreprocessor { transform } })
    }

    /// Loads the `which` (`best` or `final`) model of the run folder `run`.
    pub fn load_run(run: &Path, which: &str, device: Device) -> Result<Self> {
        Self::load(&suite_core::runs::model_dir(run, which)?, device)
    }

    /// Puts the linear layers (the classifier head; convolutions stay fp32, as in PyTorch's dynamic quantization)
    /// in int8 for CPU inference.
    pub fn quantize_int8(&mut self) -> Result<suite_core::quant::QuantSummary> {
        suite_core::quant::quantize_dynamic(self.task.model.as_mut(), suite_core::quant::WeightScheme::PerChannel)
    }

    /// The network, for what needs more than its probabilities (the gradients of [`crate::explain`]).
    pub fn model(&self) -> &dyn crate::models::ImageClassifier {
        self.task.model.as_ref()
    }

    /// The device the model's tensors live on.
    pub fn device(&self) -> Device {
        self.task.vs.device()
    }

    /// The preprocessing the model was trained with (input size, normalisation).
    pub fn preprocess_config(&self) -> &crate::models::Preprocess {
        &self.task.preprocess
    }

    /// Class names in the order of the model's outputs.
    pub fn labels(&self) -> &[String] {
        self.task.classes.names()
    }

    /// `[3, h, w]` of the model's input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.pre.input_shape()
    }

    /// A copy of the decoding and preprocessing step, for use on other threads.
    pub fn preprocessor(&self) -> ImagePreprocessor {
        self.pre.clone()
    }

    /// See [`ImagePreprocessor::decode`].
    pub fn decode(&self, bytes: &[u8]) -> Result<Tensor> {
        self.pre.decode(bytes)
    }

    /// See [`ImagePreprocessor::preprocess`].
    pub fn preprocess(&self, img: &RgbImage) -> Tensor {
        self.pre.preprocess(img)
    }

    /// Classifies `images` (each a `[3, h, w]` tensor from [`VisionPredictor::decode`]) in one forward pass of the
    /// stacked batch; returns one prediction per image, in order, each with the `top_k` labels (clamped to
    /// `1..=labels`).
    pub fn predict(&self, images: &[Tensor], top_k_: usize) -> Result<Vec<ImagePrediction>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.stack(images)?;
        let probs = tch::no_grad(|| self.task.logits(&batch, false)).softmax(-1, Kind::Float).to_device(Device::Cpu);
        let n_labels = self.labels().len();
        let k = top_k_.clamp(1, n_labels.max(1));
        let flat = Vec::<f32>::try_from(probs.contiguous().view([-1]))?;
        if flat.len() != images.len() * n_labels {
            bail!(
                "internal error: the model gave {} scores for {} images of {n_labels} labels",
                flat.len(),
                images.len()
            );
        }
        Ok(flat.chunks(n_labels.max(1)).map(|p| ImagePrediction { top: top_k(p, self.labels(), k) }).collect())
    }

    /// The pooled backbone features `[N, num_features]` of `images` (tensors from [`VisionPredictor::decode`]) on
    /// the CPU: the head's input, what `suite inspect --run` fits its label-issue probe on.
    pub fn features(&self, images: &[Tensor]) -> Result<Tensor> {
        if images.is_empty() {
            return Ok(Tensor::zeros([0, self.task.model.num_features()], (Kind::Float, Device::Cpu)));
        }
        let batch = self.stack(images)?.to_device(self.task.vs.device());
        Ok(tch::no_grad(|| self.task.model.forward_features(&batch, false)).to_device(Device::Cpu))
    }

    /// Stacks preprocessed images into a batch, refusing any of another shape.
    fn stack(&self, images: &[Tensor]) -> Result<Tensor> {
        let shape = self.input_shape().map(|d| d as i64);
        for (i, x) in images.iter().enumerate() {
            ensure!(
                x.size() == shape,
                "image {i}: a tensor of shape {:?}, expected {shape:?} (use decode to preprocess images)",
                x.size()
            );
        }
        Ok(Tensor::stack(images, 0).to_kind(Kind::Float))
    }
}

#[cfg(test)]
#[path = "predict_tests.rs"]
mod tests;
