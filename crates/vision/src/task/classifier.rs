use std::path::Path;

use anyhow::{Context, Result};
use suite_core::metrics::{ClassificationReport, Metrics};
use suite_core::train::TrainModel;
use tch::{nn::VarStore, Kind, Reduction, Tensor};

use crate::data::{ClassList, ImageBatch};
use crate::models::{ImageClassifier, ModelSpec, Preprocess};

/// What the batches hold: images, or the output of the frozen part of the backbone computed once (the feature
/// cache of `--tune head` and `--tune last:N` without augmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// `[N, 3, H, W]` normalised images.
    Pixels,
    /// `[N, num_features]` pooled backbone features (head-only tuning).
    Features,
    /// `[N, C, H, W]` activation maps of the stages before `from`, which the model runs from there on.
    Activations {
        /// First stage still to run.
        from: usize,
    },
}

/// Image classification as the trainer sees it: a classifier, its loss (cross-entropy with label smoothing and
/// optional mixup/cutmix) and its metrics (accuracy, top-5, macro F1, confusion matrix).
pub struct ClassifierTask {
    /// Every tensor of the model.
    pub vs: VarStore,
    /// The network.
    pub model: Box<dyn ImageClassifier>,
    /// Registry entry (architecture, preprocessing).
    pub spec: &'static ModelSpec,
    /// Class names in head order.
    pub classes: ClassList,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Mixup alpha (0 = off).
    pub mixup: f64,
    /// CutMix alpha (0 = off).
    pub cutmix: f64,
    /// What batches hold.
    pub inputs: Inputs,
    /// The preprocessing the model is trained and served with (the registry's, or with `input_size` overridden).
    pub preprocess: Preprocess,
    /// Full report (per class, confusion matrix) of the last evaluation.
    pub last_report: Option<ClassificationReport>,
    /// PEFT method and base weights, when the job adapts the backbone (the saved model is then the adapter).
    pub peft: Option<super::peft::VisionPeft>,
}

impl ClassifierTask {
    /// Class logits of a batch of images or features.
    pub fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.to_device(self.vs.device());
        match self.inputs {
            Inputs::Pixels => self.model.forward_t(&x, train),
            Inputs::Features => self.model.forward_head(&x, train),
            Inputs::Activations { from } => {
                let n = self.model.stages().len();
                let maps = self.model.forward_stages(&x, from..n, train);
                let pooled = maps.mean_dim([-2i64, -1].as_slice(), false, None::<Kind>);
                self.model.forward_head(&pooled, train)
            }
        }
    }

    fn ce(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, self.label_smoothing)
    }

    /// Mixes a batch with a shuffled copy of itself: `(inputs, labels_b, lambda)`. CutMix pastes a box whose area is
    /// `1 − λ` (λ then corrected for clipping); mixup blends pixels. Randomness comes from libtorch's generator,
    /// which the trainer seeds per step.
    fn mix(&self, x: &Tensor, y: &Tensor) -> Option<(Tensor, Tensor, f64)> {
        let use_cutmix = self.cutmix > 0.0
            && (self.mixup == 0.0 || Tensor::rand([1], (Kind::Float, tch::Device::Cpu)).double_value(&[0]) < 0.5);
        let alpha = if use_cutmix { self.cutmix } else { self.mixup };
        if alpha <= 0.0 || self.inputs != Inputs::Pixels && use_cutmix {
            return None;
        }
        let g = Tensor::from_slice(&[alpha, alpha]).to_kind(Kind::Float).internal_standard_gamma();
        let lam = g.double_value(&[0]) / (g.double_value(&[0]) + g.double_value(&[1]));
        let perm = Tensor::randperm(x.size()[0], (Kind::Int64, x.device()));
        let y_b = y.index_select(0, &perm.to_device(y.device()));
        let x_b = x.index_select(0, &perm);
        if !use_cutmix {
            return Some((x * lam + x_b * (1.0 - lam), y_b, lam));
        }
        let (h, w) = (x.size()[2], x.size()[3]);
        let cut = (1.0f64 - lam).sqrt();
        let (ch, cw) = ((h as f64 * cut) as i64, (w as f64 * cut) as i64);
        let cy = Tensor::randint(h, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]);
        let cx = Tensor::randint(w, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]);
        let (y0, y1) = ((cy - ch / 2).clamp(0, h), (cy + ch / 2).clamp(0, h));
        let (x0, x1) = ((cx - cw / 2).clamp(0, w), (cx + cw / 2).clamp(0, w));
        let mixed = x.copy();
        if y1 > y0 && x1 > x0 {
            let patch = x_b.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0);
            mixed.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).copy_(&patch);
        }
        let lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
        Some((mixed, y_b, lam))
    }
}

impl TrainModel for ClassifierTask {
    type Batch = ImageBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn batch_len(&self, batch: &ImageBatch) -> usize {
        batch.labels.size()[0] as usize
    }

    fn loss(&mut self, batch: &ImageBatch, train: bool) -> Result<Tensor> {
        let device = self.vs.device();
        let x = batch.images.to_device(device);
        let y = batch.labels.to_device(device);
        if train {
            if let Some((xm, y_b, lam)) = self.mix(&x, &y) {
                let logits = self.logits(&xm, true);
                return Ok(self.ce(&logits, &y) * lam + self.ce(&logits, &y_b) * (1.0 - lam));
            }
        }
        let logits = self.logits(&x, train);
        Ok(self.ce(&logits, &y))
    }

    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<ImageBatch>>) -> Result<Metrics> {
        let mut report = ClassificationReport::new(self.classes.names().to_vec(), &[5]);
        let (mut loss, mut n) = (0.0, 0usize);
        for b in batches {
            let b = b?;
            let logits = self.logits(&b.images, false).to_device(tch::Device::Cpu);
            let labels = b.labels.to_device(tch::Device::Cpu);
            loss += logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, -100, 0.0).double_value(&[]);
            n += labels.size()[0] as usize;
            report.add_logits(&logits, &labels)?;
        }
        // The full report (per-class scores, confusion matrix) stays available; the log gets the headline numbers.
        let all = report.metrics();
        let mut metrics: Metrics = ["accuracy", "top5", "macro_f1", "weighted_f1", "mcc"]
            .iter()
            .filter_map(|k| all.get(*k).map(|v| (k.to_string(), *v)))
            .collect();
        metrics.insert("loss".into(), loss / n.max(1) as f64);
        self.last_report = Some(report);
        Ok(metrics)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        match &self.peft {
            None => super::export::save_timm_layout(self, dir),
            Some(p) => super::export::save_adapter_layout(self, p, dir),
        }
        .with_context(|| format!("writing {}", dir.display()))
    }
}
