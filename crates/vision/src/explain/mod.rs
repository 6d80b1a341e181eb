//! What an image classifier looked at: Grad-CAM and Grad-CAM++ heatmaps of a convolutional layer
//! ([`gradcam`], matching pytorch-grad-cam) and integrated gradients on the input pixels
//! ([`integrated_gradients`], matching Captum), with the overlay pictures of [`overlay`]. [`explain_image`] does
//! one image of a loaded run; `suite explain vision` writes what it returns.

pub mod gradcam;
pub mod integrated_gradients;
pub mod overlay;

#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod tests;

use anyhow::{bail, ensure, Result};
use image::RgbImage;
use ndarray::Array2;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::models::ImageClassifier;
use crate::predict::VisionPredictor;
pub use gradcam::{class_activation_map, CamMaps, CamMethod};
pub use integrated_gradients::{integrated_gradients, Attributions, Quadrature};

/// Path points of integrated gradients per forward pass: bounds the memory of the backward pass.
const IG_CHUNK: usize = 8;

/// An attribution method and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Grad-CAM of a layer.
    GradCam,
    /// Grad-CAM++ of a layer.
    GradCamPlusPlus,
    /// Integrated gradients from a black image, with Captum's default Gauss–Legendre rule.
    IntegratedGradients {
        /// Points on the path.
        steps: usize,
    },
}

impl Method {
    /// Short name, used in file names and the index: `gradcam`, `gradcampp`, `ig`.
    pub fn tag(self) -> &'static str {
        match self {
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcampp",
            Method::IntegratedGradients { .. } => "ig",
        }
    }
}

/// The completeness check of integrated gradients: the attributions should add up to the change of the target
/// logit between the baseline and the image.
#[derive(Debug, Clone, Serialize)]
pub struct Completeness {
    /// Σ of all attributions.
    pub attribution_sum: f64,
    /// `F(image) − F(baseline)` of the target logit.
    pub logit_difference: f64,
    /// `attribution_sum − logit_difference` (Captum's convergence delta).
    pub error: f64,
}

/// The numbers of one explanation, as the index records them.
#[derive(Debug, Clone, Serialize)]
pub struct ExplanationSummary {
    /// [`Method::tag`].
    pub method: &'static str,
    /// The layer Grad-CAM weighed (none for integrated gradients).
    pub layer: Option<String>,
    /// Predicted class index and name, and its softmax probability.
    pub predicted: usize,
    /// Name of the predicted class.
    pub predicted_label: String,
    /// Probability of the predicted class.
    pub predicted_probability: f64,
    /// The class explained.
    pub target: usize,
    /// Name of the class explained.
    pub target_label: String,
    /// Probability of the class explained.
    pub target_probability: f64,
    /// `[h, w]` of the raw map (the layer's resolution for Grad-CAM, the input's for integrated gradients).
    pub raw_shape: [usize; 2],
    /// Integration points (integrated gradients).
    pub steps: Option<usize>,
    /// Completeness check (integrated gradients).
    pub completeness: Option<Completeness>,
}

/// One image explained.
#[derive(Debug)]
pub struct Explanation {
    /// The numbers.
    pub summary: ExplanationSummary,
    /// The raw map: Grad-CAM's `relu(Σ_k w_k A_k)` at the layer's resolution, or the attributions of integrated
    /// gradients summed over the colour channels (signed) at the input's resolution.
    pub raw: Array2<f32>,
    /// The map for display, at the input's resolution, in [0, 1]: pytorch-grad-cam's scaled and resized map, or
    /// [`overlay::attribution_heatmap`] of the integrated gradients.
    pub heatmap: Array2<f32>,
    /// The model's view of the image (resized, centre-cropped), on which `heatmap` lies.
    pub view: RgbImage,
}

/// The layer Grad-CAM uses: `layer` if the model has it, else an error listing those it has; by default the last
/// stage (`layer4` of a ResNet, `head_conv` of an EfficientNet-Lite), the last convolutional map, as
/// pytorch-grad-cam's users pick.
pub fn resolve_layer(model: &dyn ImageClassifier, layer: Option<&str>) -> Result<String> {
    let valid = model.activation_layers();
    match layer {
        None => Ok(model.stages().last().map(|s| s.label.clone()).unwrap_or_default()),
        Some(l) if valid.iter().any(|v| v == l) => Ok(l.to_string()),
        Some(l) => bail!("no layer {l:?} in this model; valid layers: {}", valid.join(", ")),
    }
}

/// The class index `target` names: a label of `labels`, or an index below their number (a label wins when a
/// label is itself a number).
pub fn resolve_target(labels: &[String], target: &str) -> Result<usize> {
    if let Some(i) = labels.iter().position(|l| l == target) {
        return Ok(i);
    }
    match target.parse::<usize>() {
        Ok(i) if i < labels.len() => Ok(i),
        _ => bail!(
            "target class {target:?} is neither a label nor an index below {}; labels: {}",
            labels.len(),
            labels.join(", ")
        ),
    }
}

/// Explains one preprocessed image `x` `[3, H, W]` (from [`VisionPredictor::decode`] or
/// [`VisionPredictor::preprocess`]) with `method`, for class `target` (default: the predicted one), Grad-CAM on
/// `layer` (default: see [`resolve_layer`]).
pub fn explain_image(
    predictor: &VisionPredictor,
    x: &Tensor,
    method: Method,
    layer: Option<&str>,
    target: Option<usize>,
) -> Result<Explanation> {
    let model = predictor.model();
    let labels = predictor.labels();
    let batch = x.unsqueeze(0).to_kind(Kind::Float).to_device(predictor.device());
    let logits = tch::no_grad(|| model.forward_t(&batch, false));
    let probs = Vec::<f64>::try_from(logits.softmax(-1, Kind::Double).view([-1]).to_device(tch::Device::Cpu))?;
    ensure!(probs.len() == labels.len(), "the model has {} outputs for {} labels", probs.len(), labels.len());
    let predicted = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    let target = target.unwrap_or(predicted);
    ensure!(target < labels.len(), "target class {target} outside 0..{}", labels.len());
    let pre = predictor.preprocess_config();
    let view = overlay::denormalize(x, pre.mean, pre.std)?;
    let (raw, heatmap, layer, steps, completeness) = match method {
        Method::GradCam | Method::GradCamPlusPlus => {
            let layer = resolve_layer(model, layer)?;
            let cam = if method == Method::GradCam { CamMethod::GradCam } else { CamMethod::GradCamPlusPlus };
            let maps = class_activation_map(model, &batch, &layer, Some(&[target as i64]), cam)?;
            (to_array2(&maps.raw.get(0))?, to_array2(&maps.scaled.get(0))?, Some(layer), None, None)
        }
        Method::IntegratedGradients { steps } => {
            ensure!(layer.is_none(), "--layer applies to gradcam and gradcam++, not to integrated gradients");
            let baseline = black(pre.mean, pre.std, &batch);
            let ig = integrated_gradients(
                model,
                &batch,
                &baseline,
                &[target as i64],
                steps,
                Quadrature::GaussLegendre,
                IG_CHUNK,
            )?;
            let error = ig.completeness_errors()?[0];
            let logit_difference = ig.input_scores[0] - ig.baseline_scores[0];
            let completeness = Completeness { attribution_sum: logit_difference + error, logit_difference, error };
            let summed = ig.attributions.get(0).sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
            let raw = to_array2(&summed)?;
            let heatmap = overlay::attribution_heatmap(&raw);
            (raw, heatmap, None, Some(steps), Some(completeness))
        }
    };
    let summary = ExplanationSummary {
        method: method.tag(),
        layer,
        predicted,
        predicted_label: labels[predicted].clone(),
        predicted_probability: probs[predicted],
        target,
        target_label: labels[target].clone(),
        target_probability: probs[target],
        raw_shape: [raw.nrows(), raw.ncols()],
        steps,
        completeness,
    };
    Ok(Explanation { summary, raw, heatmap, view })
}

/// A black image in the model's normalisation (`(0 − mean) / std` per channel), shaped and placed like `like`:
/// the baseline of integrated gradients, "no signal" for pictures whose background is dark.
pub fn black(mean: [f64; 3], std: [f64; 3], like: &Tensor) -> Tensor {
    let values: Vec<f32> = mean.iter().zip(&std).map(|(m, s)| (-m / s) as f32).collect();
    let b = Tensor::from_slice(&values).to_device(like.device()).view([1, 3, 1, 1]);
    b.expand_as(like).contiguous()
}

/// A `[h, w]` tensor as an ndarray on the CPU.
fn to_array2(t: &Tensor) -> Result<Array2<f32>> {
    let size = t.size();
    ensure!(size.len() == 2, "a map of shape {size:?}, expected [h, w]");
    let values = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?;
    Ok(Array2::from_shape_vec((size[0] as usize, size[1] as usize), values)?)
}
