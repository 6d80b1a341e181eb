//! Unit tests of the explanation helpers that need no reference: quadrature rules, layer and target names,
//! scaling and the colormap, and a planted signal that Grad-CAM must find.

use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::models::{EfficientNetLite, EfficientNetLiteConfig, ResNet, ResNetConfig};

#[test]
fn gauss_legendre_matches_known_rules_and_integrates_polynomials() {
    let (x, w) = integrated_gradients::gauss_legendre(2);
    let r = 1.0 / 3f64.sqrt();
    assert!((x[0] + r).abs() < 1e-15 && (x[1] - r).abs() < 1e-15 && (w[0] - 1.0).abs() < 1e-15, "{x:?} {w:?}");
    // An n-point rule integrates polynomials up to degree 2n − 1 exactly: ∫₀¹ t⁹⁹ dt = 1/100 with 50 points.
    let (steps, alphas) = Quadrature::GaussLegendre.parameters(50).unwrap();
    let integral: f64 = steps.iter().zip(&alphas).map(|(s, a)| s * a.powi(99)).sum();
    assert!((integral - 0.01).abs() < 1e-13, "{integral}");
    assert!(alphas.windows(2).all(|p| p[0] < p[1]) && alphas[0] > 0.0 && alphas[49] < 1.0);
    let (steps, alphas) = Quadrature::RiemannTrapezoid.parameters(5).unwrap();
    assert_eq!(steps, [0.1, 0.2, 0.2, 0.2, 0.1]);
    assert_eq!(alphas, [0.0, 0.25, 0.5, 0.75, 1.0]);
    assert!(Quadrature::GaussLegendre.parameters(0).is_err());
}

#[test]
fn layer_names_follow_the_checkpoints_and_unknown_ones_are_listed() -> Result<()> {
    let vs = nn::VarStore::new(Device::Cpu);
    let resnet = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 3)?;
    let layers = resnet.activation_layers();
    assert_eq!(layers[..4], ["stem", "layer1.0", "layer1.1", "layer1"]);
    assert_eq!(resolve_layer(&resnet, None)?, "layer4");
    assert_eq!(resolve_layer(&resnet, Some("layer3.1"))?, "layer3.1");
    let err = resolve_layer(&resnet, Some("layer9")).unwrap_err().to_string();
    assert!(err.contains("layer9") && err.contains("layer4.1"), "{err}");

    let vs = nn::VarStore::new(Device::Cpu);
    let lite = EfficientNetLite::new(&vs.root(), EfficientNetLiteConfig::LITE0, 3)?;
    let layers = lite.activation_layers();
    assert_eq!(layers[..4], ["stem", "_blocks.0", "stage1", "_blocks.1"]);
    assert_eq!(layers[layers.len() - 3..], ["_blocks.15", "stage7", "head_conv"]);
    assert_eq!(resolve_layer(&lite, None)?, "head_conv");
    // Every listed layer gives an activation of the batch's size, and the logits of the plain forward pass.
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| lite.forward_t(&x, false));
    for layer in ["stem", "_blocks.3", "stage4", "head_conv"] {
        let (a, l) = tch::no_grad(|| lite.forward_with_activation(&x, layer, false)).unwrap();
        assert_eq!(a.size()[0], 2, "{layer}");
        assert!((l - &logits).abs().max().double_value(&[]) < 1e-5, "{layer}");
    }
    assert!(lite.forward_with_activation(&x, "layer4", false).is_none());
    Ok(())
}

#[test]
fn targets_are_labels_or_indices() {
    let labels: Vec<String> = ["cat", "dog", "7"].iter().map(|s| s.to_string()).collect();
    assert_eq!(resolve_target(&labels, "dog").unwrap(), 1);
    assert_eq!(resolve_target(&labels, "0").unwrap(), 0);
    assert_eq!(resolve_target(&labels, "7").unwrap(), 2);
    let err = resolve_target(&labels, "5").unwrap_err().to_string();
    assert!(err.contains("\"5\"") && err.contains("cat, dog, 7"), "{err}");
}

#[test]
fn scaling_colormap_and_overlay() -> Result<()> {
    let maps = Tensor::from_slice(&[1.0f32, 3.0, 5.0, 1.0, 0.0, 0.0, 0.0, 0.0]).view([2, 2, 2]);
    let s = Vec::<f32>::try_from(gradcam::min_max(&maps).view([-1]))?;
    assert!((s[2] - 1.0).abs() < 1e-6 && s[0] == 0.0 && s[4..].iter().all(|&v| v == 0.0), "{s:?}");
    assert_eq!(overlay::jet(0.0).0, [0, 0, 128]);
    assert_eq!(overlay::jet(0.5).0, [128, 255, 128]);
    assert_eq!(overlay::jet(1.0).0, [128, 0, 0]);
    let img = image::RgbImage::from_pixel(4, 2, image::Rgb([255, 255, 255]));
    let heat = ndarray::Array2::from_shape_fn((2, 4), |(_, x)| x as f32 / 3.0);
    let out = overlay::overlay(&img, &heat)?;
    assert_eq!(out.dimensions(), (4, 2));
    assert!(out.get_pixel(3, 0).0[0] > out.get_pixel(3, 0).0[2], "hot end is red");
    assert!(overlay::overlay(&img, &ndarray::Array2::zeros((3, 3))).is_err());
    Ok(())
}

/// Grad-CAM of a random ResNet-18 is not interpretable, but its maps must be non-negative, of the layer's and the
/// input's size (also for a non-square input), in [0, 1] once scaled, and explain the predicted class by default.
/// No seed: nothing here depends on the draws.
#[test]
fn gradcam_maps_have_the_input_size_and_range() -> Result<()> {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 3)?;
    let x = Tensor::randn([2, 3, 64, 48], (Kind::Float, Device::Cpu));
    for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
        let maps = class_activation_map(&model, &x, "layer4", None, method)?;
        assert_eq!(maps.raw.size(), [2, 2, 2]);
        assert_eq!(maps.scaled.size(), [2, 64, 48]);
        assert!(maps.raw.min().double_value(&[]) >= 0.0);
        assert!(maps.scaled.max().double_value(&[]) <= 1.0 + 1e-6 && maps.scaled.min().double_value(&[]) >= 0.0);
        assert_eq!(maps.targets, Vec::<i64>::try_from(maps.logits.argmax(-1, false))?);
    }
    assert!(class_activation_map(&model, &x, "nope", None, CamMethod::GradCam).is_err());
    assert!(class_activation_map(&model, &x, "layer4", Some(&[0, 3]), CamMethod::GradCam).is_err());
    Ok(())
}
