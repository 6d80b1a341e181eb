//! Image classification: images arrive decoded and transformed (the handlers do that on the blocking pool), and a
//! batch is stacked into one forward pass.

use std::path::Path;

use suite_vision::predict::{ImagePrediction, VisionPredictor};

use crate::error::AppError;
use crate::state::ModelInfo;
use crate::worker::{Engine, Queue};

/// One image to classify.
pub struct VisionRequest {
    /// The model's input `[3, h, w]`, from [`suite_vision::predict::ImagePreprocessor::decode`].
    pub image: tch::Tensor,
    /// Labels wanted, most probable first.
    pub top_k: usize,
}

/// The queue of a vision model.
pub type VisionQueue = Queue<VisionRequest, ImagePrediction>;

/// A loaded image classifier on its inference thread.
pub struct VisionEngine {
    predictor: VisionPredictor,
}

impl VisionEngine {
    /// Loads the `which` model of a vision run.
    /// With `int8`, its linear layers run in int8 (convolutions stay fp32).
    pub fn load(run: &Path, which: &str, device: tch::Device, int8: bool) -> anyhow::Result<(Self, ModelInfo)> {
        let mut predictor = VisionPredictor::load_run(run, which, device)?;
        if int8 {
            predictor.quantize_int8()?;
        }
        let info = ModelInfo {
            task: "image-classification".into(),
            labels: predictor.labels().to_vec(),
            precision: super::precision_name(int8),
            preprocessor: Some(predictor.preprocessor()),
        };
        Ok((Self { predictor }, info))
    }
}

impl Engine for VisionEngine {
    type Request = VisionRequest;
    type Response = ImagePrediction;

    fn run(&mut self, batch: Vec<VisionRequest>) -> Vec<Result<ImagePrediction, AppError>> {
        let images: Vec<tch::Tensor> = batch.iter().map(|r| r.image.shallow_clone()).collect();
        // The batch runs with its largest k; the ranking is the same for a smaller one.
        let k = batch.iter().map(|r| r.top_k).max().unwrap_or(1);
        match self.predictor.predict(&images, k) {
            Ok(predicted) if predicted.len() == batch.len() => predicted
                .into_iter()
                .zip(&batch)
                .map(|(mut p, r)| {
                    p.top.truncate(r.top_k.max(1));
                    Ok(p)
                })
                .collect(),
            Ok(_) => batch.iter().map(|_| Err(AppError::Internal("a prediction is missing".into()))).collect(),
            Err(e) => {
                let msg = format!("{e:#}");
                batch.iter().map(|_| Err(AppError::Internal(msg.clone()))).collect()
            }
        }
    }
}
