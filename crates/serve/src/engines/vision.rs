//! Image classification: images decoded and transformed one by one, then stacked into one forward pass.

use std::path::Path;

use axum::body::Bytes;
use suite_vision::predict::{ImagePrediction, VisionPredictor};

use crate::error::AppError;
use crate::state::ModelInfo;
use crate::worker::{Engine, Queue};

/// One image to classify.
pub struct VisionRequest {
    /// The encoded image (PNG, JPEG, …) as the client sent it.
    pub image: Bytes,
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
    pub fn load(run: &Path, which: &str, device: tch::Device) -> anyhow::Result<(Self, ModelInfo)> {
        let predictor = VisionPredictor::load_run(run, which, device)?;
        let info = ModelInfo { task: "image-classification".into(), labels: predictor.labels().to_vec() };
        Ok((Self { predictor }, info))
    }
}

impl Engine for VisionEngine {
    type Request = VisionRequest;
    type Response = ImagePrediction;

    fn run(&mut self, batch: Vec<VisionRequest>) -> Vec<Result<ImagePrediction, AppError>> {
        let decoded: Vec<Result<tch::Tensor, AppError>> = batch
            .iter()
            .map(|r| self.predictor.decode(&r.image).map_err(|e| AppError::bad("file", format!("{e:#}"))))
            .collect();
        let images: Vec<tch::Tensor> =
            decoded.iter().filter_map(|d| d.as_ref().ok().map(|t| t.shallow_clone())).collect();
        let k = batch.iter().map(|r| r.top_k).max().unwrap_or(1);
        let mut predicted = if images.is_empty() {
            Vec::new().into_iter()
        } else {
            match self.predictor.predict(&images, k) {
                Ok(p) => p.into_iter(),
                Err(e) => {
                    let msg = format!("{e:#}");
                    return batch.iter().map(|_| Err(AppError::Internal(msg.clone()))).collect();
                }
            }
        };
        decoded
            .into_iter()
            .zip(&batch)
            .map(|(d, r)| {
                d.map(drop)?;
                let mut p = predicted.next().ok_or_else(|| AppError::Internal("a prediction is missing".into()))?;
                // The batch ran with its largest k; the ranking is the same for a smaller one.
                p.top.truncate(r.top_k.max(1));
                Ok(p)
            })
            .collect()
    }
}
