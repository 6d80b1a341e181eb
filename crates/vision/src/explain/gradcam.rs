//! Grad-CAM and Grad-CAM++ as pytorch-grad-cam 1.5.7 computes them (`GradCAM`, `GradCAMPlusPlus` with one target
//! layer and `ClassifierOutputTarget`): the gradient of the target class's logit with respect to a layer's output
//! weighs that output's channels.

use anyhow::{anyhow, ensure, Result};
use tch::{Kind, Tensor};

use crate::models::ImageClassifier;

/// How the channels of the layer's output are weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamMethod {
    /// Grad-CAM (Selvaraju et al.): the spatial mean of each channel's gradient.
    GradCam,
    /// Grad-CAM++ (Chattopadhyay et al., eq. 19): positive gradients weighed by second- and third-order terms.
    GradCamPlusPlus,
}

/// What [`class_activation_map`] computes for a batch.
#[derive(Debug)]
pub struct CamMaps {
    /// Class logits `[N, K]` of the forward pass the maps come from.
    pub logits: Tensor,
    /// The class each map explains, per image.
    pub targets: Vec<i64>,
    /// `relu(Σ_k w_k A_k)` at the layer's resolution `[N, h, w]`, before any scaling: pytorch-grad-cam's
    /// `get_cam_image` followed by its `np.maximum(cam, 0)`.
    pub raw: Tensor,
    /// The map pytorch-grad-cam returns `[N, H, W]` in [0, 1]: the raw map min-max scaled, resized bilinearly to
    /// the input's size (cv2's `INTER_LINEAR`, which is torch's `align_corners=False` bilinear), scaled again.
    pub scaled: Tensor,
}

/// Grad-CAM or Grad-CAM++ of `layer` (one of [`ImageClassifier::activation_layers`]) for images `x`
/// `[N, 3, H, W]` (normalised, on the model's device), explaining `targets` (one class per image; `None`: each
/// image's predicted class, as pytorch-grad-cam's default). The model runs in evaluation mode.
pub fn class_activation_map(
    model: &dyn ImageClassifier,
    x: &Tensor,
    layer: &str,
    targets: Option<&[i64]>,
    method: CamMethod,
) -> Result<CamMaps> {
    let n = x.size()[0];
    // An input that asks for gradients makes every activation part of the graph even when all the weights are
    // frozen (a loaded predictor's may be).
    let x = x.detach().set_requires_grad(true);
    let (activation, logits) = model
        .forward_with_activation(&x, layer, false)
        .ok_or_else(|| anyhow!("no layer {layer:?}; valid layers: {}", model.activation_layers().join(", ")))?;
    let targets: Vec<i64> = match targets {
        Some(t) => t.to_vec(),
        None => Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu))?,
    };
    ensure!(targets.len() as i64 == n, "{} targets for {n} images", targets.len());
    let k = logits.size()[1];
    ensure!(targets.iter().all(|t| (0..k).contains(t)), "target classes {targets:?} outside 0..{k}");
    let index = Tensor::from_slice(&targets).to_device(logits.device()).unsqueeze(1);
    // The sum of each image's target logit: images do not interact in evaluation mode, so one backward pass
    // gives every image's gradient, as pytorch-grad-cam's summed loss does.
    let score = logits.gather(1, &index, false).sum(Kind::Float);
    let grads = Tensor::run_backward(&[score], &[&activation], false, false);
    let (a, g) = (activation.detach().contiguous(), grads[0].contiguous());
    let spatial = [2i64, 3];
    let weights = match method {
        CamMethod::GradCam => g.mean_dim(spatial.as_slice(), false, Kind::Float),
        CamMethod::GradCamPlusPlus => {
            let g2 = &g * &g;
            let g3 = &g2 * &g;
            let sum_a = a.sum_dim_intlist(spatial.as_slice(), true, Kind::Float);
            let aij = &g2 / (&g2 * 2.0 + sum_a * g3 + 1e-6);
            // Zero where the gradient is zero (the paper's ReLU on the gradient brought back), as the library does.
            let aij = aij.where_self(&g.ne(0.0), &aij.zeros_like());
            (g.relu() * aij).sum_dim_intlist(spatial.as_slice(), false, Kind::Float)
        }
    };
    let raw = (weights.unsqueeze(-1).unsqueeze(-1) * &a).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).relu();
    let (h, w) = (x.size()[2], x.size()[3]);
    let resized = min_max(&raw).unsqueeze(1).upsample_bilinear2d([h, w], false, None, None).squeeze_dim(1);
    // pytorch-grad-cam scales again after averaging its target layers (one here) and clipping at zero.
    let scaled = min_max(&resized.relu());
    Ok(CamMaps { logits: logits.detach(), targets, raw: raw.detach(), scaled: scaled.detach() })
}

/// Per image of `[N, h, w]`: subtract the minimum, divide by `1e-7 +` the maximum (pytorch-grad-cam's
/// `scale_cam_image`, whose epsilon keeps an all-zero map at zero).
pub fn min_max(maps: &Tensor) -> Tensor {
    let flat = maps.flatten(1, -1);
    let shifted = &flat - flat.amin([1i64].as_slice(), true);
    let out = &shifted / (shifted.amax([1i64].as_slice(), true) + 1e-7);
    out.view_as(maps)
}
