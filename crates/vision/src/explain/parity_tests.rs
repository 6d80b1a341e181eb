//! Parity of the explanations with the pinned references, run in suite's Python environment: Grad-CAM and
//! Grad-CAM++ against pytorch-grad-cam 1.5.7 (`GradCAM`, `GradCAMPlusPlus`, `ClassifierOutputTarget`) and
//! integrated gradients against Captum 0.9 (`IntegratedGradients`), on the same weights, images, layers and
//! targets. Weights and results travel as safetensors files, as in `models::parity_tests`.
//!
//! Two maps are compared for the CAMs: the raw map at the layer's resolution (the library's `get_cam_image`, then
//! its `np.maximum(cam, 0)`, before any scaling), within 1e-4 of its largest value, and the final map the library
//! returns (min-max scaled, cv2-resized to the input, scaled again), within 1e-4 absolutely.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use suite_core::python::run_python;
use suite_core::weights::{load_safetensors, load_torch_pickle, LoadOptions};
use tch::{nn, Device, Kind, Tensor};

use super::gradcam::{class_activation_map, CamMethod};
use super::integrated_gradients::{integrated_gradients, Quadrature};
use crate::models::{ImageClassifier, ResNet, ResNetConfig};

fn read_all(path: &Path) -> Result<std::collections::HashMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)?.into_iter().collect())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// The helpers every reference script shares: pytorch-grad-cam on one layer with the given targets, writing the
/// raw map (recomputed by the library's own `get_cam_image` from the activations and gradients it hooked) and the
/// final map; Captum's integrated gradients with their convergence deltas.
const COMMON: &str = r#"
import numpy as np, torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from captum.attr import IntegratedGradients

def cams(model, layer, x, targets, io, key):
    for name, cls in [("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)]:
        with cls(model=model, target_layers=[layer]) as cam:
            t = [ClassifierOutputTarget(int(c)) for c in targets]
            scaled = cam(input_tensor=x, targets=t)
            a = cam.activations_and_grads.activations[0].cpu().numpy()
            g = cam.activations_and_grads.gradients[0].cpu().numpy()
            raw = np.maximum(cam.get_cam_image(x, layer, t, a, g), 0)
        io[f"{key}.{name}.raw"] = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        io[f"{key}.{name}.scaled"] = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))

def ig(model, x, baseline, targets, steps, method, io, key):
    attr, delta = IntegratedGradients(model).attribute(x, baselines=baseline, target=[int(c) for c in targets],
        n_steps=steps, method=method, return_convergence_delta=True)
    io[f"{key}.attr"] = attr.detach().contiguous()
    io[f"{key}.delta"] = delta.detach().double()
"#;

/// torchvision resnet18 with seeded weights, a 5-class head and randomised batch norms (so none is the
/// identity), on a photo (sklearn's `china.jpg`) and noise at 224 px; Grad-CAM/++ of `layer4` and `layer3.1`,
/// integrated gradients at 96 px from a black baseline with both quadrature rules.
const RESNET18: &str = r#"
import os, sys, sklearn, torchvision
from PIL import Image
from torchvision import transforms as T
from safetensors.torch import save_file
out = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=5)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 2.0)
model.eval()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + "/weights.safetensors")
photo = Image.open(os.path.join(os.path.dirname(sklearn.__file__), "datasets/images/china.jpg")).convert("RGB")
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
pre = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
x = torch.stack([pre(photo), torch.randn(3, 224, 224)])
io = {"x": x, "targets": torch.tensor([3, 1])}
cams(model, model.layer4, x, [3, 1], io, "layer4")
cams(model, model.layer3[1], x, [3, 1], io, "layer3.1")
small = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False).contiguous()
black = ((torch.zeros(1, 3, 1, 1) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
black = black.expand_as(small).contiguous()
io["small"], io["black"] = small, black
ig(model, small, black, [3, 1], 24, "gausslegendre", io, "ig.gausslegendre")
ig(model, small, black, [3, 1], 24, "riemann_trapezoid", io, "ig.riemann_trapezoid")
save_file(io, out + "/io.safetensors")
"#;

/// Checks both CAM methods of one layer against the reference; returns the largest (raw relative, scaled) |Δ|.
fn check_cams(
    model: &dyn ImageClassifier,
    io_key: &str,
    layer: &str,
    x: &Tensor,
    targets: &[i64],
    io: &Io,
) -> Result<(f64, f64)> {
    let mut worst = (0.0f64, 0.0f64);
    for (name, method) in [("gradcam", CamMethod::GradCam), ("gradcampp", CamMethod::GradCamPlusPlus)] {
        let maps = class_activation_map(model, x, layer, Some(targets), method)?;
        let raw = io.get(&format!("{io_key}.{name}.raw")).context("raw map")?;
        let scaled = io.get(&format!("{io_key}.{name}.scaled")).context("scaled map")?;
        let scale = raw.abs().max().double_value(&[]).max(1.0);
        let d_raw = max_abs_diff(&maps.raw, raw) / scale;
        let d_scaled = max_abs_diff(&maps.scaled, scaled);
        println!(
            "{layer} {name}: raw max |diff| {:.3e} (max |raw| {scale:.3}), scaled max |diff| {d_scaled:.3e}",
            d_raw * scale
        );
        ensure!(d_raw <= 1e-4, "{layer} {name}: raw maps differ by {d_raw} of their largest value");
        ensure!(d_scaled <= 1e-4, "{layer} {name}: scaled maps differ by {d_scaled}");
        worst = (worst.0.max(d_raw), worst.1.max(d_scaled));
    }
    Ok(worst)
}

type Io = std::collections::HashMap<String, Tensor>;

#[test]
fn resnet18_gradcam_and_integrated_gradients_match_pytorch_grad_cam_and_captum() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run_python(&format!("{COMMON}{RESNET18}"), &[dir.path().to_str().context("path")?])?;
    let io = read_all(&dir.path().join("io.safetensors"))?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 5)?;
    load_safetensors(&vs, &[dir.path().join("weights.safetensors")], &LoadOptions::strict())?;
    let (x, targets) = (&io["x"], Vec::<i64>::try_from(&io["targets"])?);
    check_cams(&model, "layer4", "layer4", x, &targets, &io)?;
    check_cams(&model, "layer3.1", "layer3.1", x, &targets, &io)?;

    for quadrature in [Quadrature::GaussLegendre, Quadrature::RiemannTrapezoid] {
        let key = format!("ig.{}", quadrature.captum_name());
        let ig = integrated_gradients(&model, &io["small"], &io["black"], &targets, 24, quadrature, 8)?;
        let expected = &io[&format!("{key}.attr")];
        let d = max_abs_diff(&ig.attributions, expected);
        let scale = expected.abs().max().double_value(&[]);
        let ours = ig.completeness_errors()?;
        let theirs = Vec::<f64>::try_from(&io[&format!("{key}.delta")])?;
        println!("IG {key}: attributions max |diff| {d:.3e} (max |attr| {scale:.3e}); completeness error ours {ours:?}, Captum {theirs:?}");
        ensure!(d <= 1e-4, "{key}: attributions differ by {d}");
        for (a, b) in ours.iter().zip(&theirs) {
            ensure!((a - b).abs() <= 1e-3, "{key}: completeness errors {ours:?} vs Captum's {theirs:?}");
        }
    }
    Ok(())
}

/// EfficientNet-Lite0 with its ImageNet weights in the reference implementation (dynamic `SAME` padding, as
/// suite's convolutions always pad), the head's activation exposed as a module (`_head_act`) so a hook can see
/// it: Grad-CAM/++ of the head convolution and of the last block on the photo and noise.
const LITE0: &str = r#"
import os, sys, types, sklearn
from PIL import Image
from torchvision import transforms as T
from safetensors.torch import save_file
from efficientnet_lite_pytorch import EfficientNet
ckpt, out = sys.argv[1], sys.argv[2]
photo = Image.open(os.path.join(os.path.dirname(sklearn.__file__), "datasets/images/china.jpg")).convert("RGB")
pre = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
torch.manual_seed(0)
x = torch.stack([pre(photo), torch.randn(3, 224, 224)])
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=ckpt, image_size=None).eval()
model._head_act = torch.nn.ReLU6()
def extract_features(self, inputs):
    x = self._swish(self._bn0(self._conv_stem(inputs)))
    for block in self._blocks:
        x = block(x)
    return self._head_act(self._bn1(self._conv_head(x)))
model.extract_features = types.MethodType(extract_features, model)
io = {"x": x, "targets": torch.tensor([698, 111])}
cams(model, model._head_act, x, [698, 111], io, "head_conv")
cams(model, model._blocks[15], x, [698, 111], io, "_blocks.15")
save_file(io, out + "/io.safetensors")
"#;

#[test]
fn efficientnet_lite0_gradcam_matches_pytorch_grad_cam() -> Result<()> {
    let spec = crate::models::lookup("efficientnet_lite0")?;
    let ckpt = spec.asset_path().context("lite0 weights are an asset")?;
    ensure!(ckpt.exists(), "{} missing: run scripts/setup.sh", ckpt.display());
    let dir = tempfile::tempdir()?;
    run_python(&format!("{COMMON}{LITE0}"), &[ckpt.to_str().context("path")?, dir.path().to_str().context("path")?])?;
    let io = read_all(&dir.path().join("io.safetensors"))?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = spec.build(&vs.root(), 1000)?;
    load_torch_pickle(&vs, &ckpt, &LoadOptions::strict())?;
    let (x, targets) = (&io["x"], Vec::<i64>::try_from(&io["targets"])?);
    check_cams(model.as_ref(), "head_conv", "head_conv", x, &targets, &io)?;
    check_cams(model.as_ref(), "_blocks.15", "_blocks.15", x, &targets, &io)?;
    // `stage7` is the same tensor as its only block's output.
    check_cams(model.as_ref(), "_blocks.15", "stage7", x, &targets, &io)?;
    Ok(())
}
