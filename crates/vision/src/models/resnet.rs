//! ResNet-18/34/50/101/152 ("Deep Residual Learning for Image Recognition", He et al. 2015) in the torchvision
//! v1.5 form that timm shares: the stride of a bottleneck block sits on its 3×3 convolution. Parameters carry
//! torchvision's names (`conv1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`…), so torchvision and timm
//! checkpoints load by name with no rename table.

use anyhow::Result;
use suite_core::nn::{BatchNorm2d, Conv2d, Conv2dConfig, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Tensor};

use super::classifier::{channels_last, check_num_classes, ImageClassifier, Stage};

/// torch's `BatchNorm2d` default, which torchvision and timm ResNets keep.
const BN_EPS: f64 = 1e-5;

/// The residual block a ResNet stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand ×4 (ResNet-50 and deeper).
    Bottleneck,
}

impl BlockKind {
    /// Ratio of a block's output channels to its base width.
    pub fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Depth and block type of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Block type of every stage.
    pub block: BlockKind,
    /// Number of blocks in `layer1`…`layer4`.
    pub layers: [usize; 4],
}

impl ResNetConfig {
    /// ResNet-18.
    pub const RESNET18: Self = Self { block: BlockKind::Basic, layers: [2, 2, 2, 2] };
    /// ResNet-34.
    pub const RESNET34: Self = Self { block: BlockKind::Basic, layers: [3, 4, 6, 3] };
    /// ResNet-50.
    pub const RESNET50: Self = Self { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3] };
    /// ResNet-101.
    pub const RESNET101: Self = Self { block: BlockKind::Bottleneck, layers: [3, 4, 23, 3] };
    /// ResNet-152.
    pub const RESNET152: Self = Self { block: BlockKind::Bottleneck, layers: [3, 8, 36, 3] };

    /// Width of the pooled features: 512 × the block's expansion.
    pub fn num_features(&self) -> i64 {
        512 * self.block.expansion()
    }
}

/// A bias-free convolution, as every convolution of a ResNet is (a batch norm follows each).
fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Conv2d {
    let config = Conv2dConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
    Conv2d::new(p, c_in, c_out, kernel, config)
}

/// One residual block: a chain of convolution + batch-norm pairs named `conv1`/`bn1`, `conv2`/`bn2`(, `conv3`/
/// `bn3`) with a ReLU after each but the last, added to the shortcut, then a ReLU. One struct serves both block
/// kinds, which differ only in the chain.
#[derive(Debug)]
struct ResidualBlock {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    /// 1×1 projection of the shortcut (`downsample.0`, `downsample.1`) where the shape changes.
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl ResidualBlock {
    fn new(p: &nn::Path, kind: BlockKind, c_in: i64, width: i64, stride: i64) -> Self {
        let c_out = width * kind.expansion();
        // (input channels, output channels, kernel, stride) of each convolution in the chain.
        let shapes = match kind {
            BlockKind::Basic => vec![(c_in, width, 3, stride), (width, width, 3, 1)],
            BlockKind::Bottleneck => vec![(c_in, width, 1, 1), (width, width, 3, stride), (width, c_out, 1, 1)],
        };
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s))| {
                let n = i + 1;
                (conv(p / format!("conv{n}"), ci, co, k, s), BatchNorm2d::new(p / format!("bn{n}"), co, BN_EPS))
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            (conv(&d / 0, c_in, c_out, 1, stride), BatchNorm2d::new(&d / 1, c_out, BN_EPS))
        });
        Self { convs, downsample }
    }

    /// The block's output. As torchvision's blocks, the ReLUs and the residual add work in place on the batch
    /// norms' fresh outputs, which no earlier operation saved for its backward pass (a batch norm keeps its input,
    /// an in-place ReLU its own output); the block's input `x`, which `conv1` and the shortcut keep, is never
    /// written.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            y = bn.forward_t(&conv.forward_t(&y, train), train);
            if i < last {
                let _ = y.relu_();
            }
        }
        match &self.downsample {
            Some((conv, bn)) => y += bn.forward_t(&conv.forward_t(x, train), train),
            None => y += x,
        }
        let _ = y.relu_();
        y
    }

    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        for (conv, bn) in self.convs.iter_mut().chain(self.downsample.iter_mut()) {
            visitor.conv2d(conv);
            visitor.batch_norm(bn);
        }
    }
}

/// A ResNet classifier with torchvision's parameter names.
#[derive(Debug)]
pub struct ResNet {
    config: ResNetConfig,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// `layer1`…`layer4`.
    layers: Vec<Vec<ResidualBlock>>,
    fc: Linear,
}

impl ResNet {
    /// Builds a ResNet under `p` with a freshly initialised `num_classes`-way head `fc`; load pretrained weights
    /// into the `VarStore` afterwards (a checkpoint's `fc` only fits when `num_classes` matches it).
    pub fn new(p: &nn::Path, config: ResNetConfig, num_classes: i64) -> Result<Self> {
        check_num_classes(num_classes)?;
        anyhow::ensure!(config.layers.iter().all(|&n| n > 0), "every ResNet stage needs a block: {:?}", config.layers);
        let conv1 = conv(p / "conv1", 3, 64, 7, 2);
        let bn1 = BatchNorm2d::new(p / "bn1", 64, BN_EPS);
        let mut c_in = 64;
        let mut layers = Vec::with_capacity(4);
        for (i, (&n_blocks, width)) in config.layers.iter().zip([64, 128, 256, 512]).enumerate() {
            let stage = p / format!("layer{}", i + 1);
            let stride = if i == 0 { 1 } else { 2 };
            let blocks = (0..n_blocks)
                .map(|b| {
                    let block =
                        ResidualBlock::new(&(&stage / b), config.block, c_in, width, if b == 0 { stride } else { 1 });
                    c_in = width * config.block.expansion();
                    block
                })
                .collect();
            layers.push(blocks);
        }
        let fc = Linear::new(p / "fc", config.num_features(), num_classes, true);
        Ok(Self { config, conv1, bn1, layers, fc })
    }

    /// Depth and block type.
    pub fn config(&self) -> ResNetConfig {
        self.config
    }

    /// `conv1`, `bn1`, ReLU and the 3×3 max pool (torchvision's `maxpool`).
    fn stem(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.bn1.forward_t(&self.conv1.forward_t(x, train), train);
        let _ = y.relu_();
        y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }
}

impl ImageClassifier for ResNet {
    /// Runs in the channels-last memory format inside (see [`channels_last`]) and returns a contiguous (NCHW)
    /// map, so callers see the layout they passed.
    fn forward_stages(&self, x: &Tensor, range: std::ops::Range<usize>, train: bool) -> Tensor {
        let mut x = channels_last(x);
        for stage in range {
            if stage == 0 {
                x = self.stem(&x, train);
            } else {
                for block in &self.layers[stage - 1] {
                    x = block.forward_t(&x, train);
                }
            }
        }
        x.contiguous()
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(features, train)
    }

    /// `stem` (the max pool's output), then per stage its blocks `layerN.M` and the stage `layerN` itself.
    fn activation_layers(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        for (s, blocks) in self.layers.iter().enumerate() {
            names.extend((0..blocks.len()).map(|b| format!("layer{}.{b}", s + 1)));
            names.push(format!("layer{}", s + 1));
        }
        names
    }

    fn forward_with_activation(&self, x: &Tensor, layer: &str, train: bool) -> Option<(Tensor, Tensor)> {
        // Later blocks never write their input in place (see ResidualBlock::forward_t), so the captured tensor
        // keeps the values it had when it was captured.
        let mut x = self.stem(&channels_last(x), train);
        let mut captured = (layer == "stem").then(|| x.shallow_clone());
        for (s, blocks) in self.layers.iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                x = block.forward_t(&x, train);
                let last = b + 1 == blocks.len();
                if layer == format!("layer{}.{b}", s + 1) || last && layer == format!("layer{}", s + 1) {
                    captured = Some(x.shallow_clone());
                }
            }
        }
        let logits = self.fc.forward_t(&super::classifier::global_avg_pool(&x), train);
        captured.map(|a| (a, logits))
    }

    fn num_features(&self) -> i64 {
        self.config.num_features()
    }

    fn num_classes(&self) -> i64 {
        self.fc.out_features()
    }

    fn head_prefix(&self) -> &str {
        "fc"
    }

    fn stages(&self) -> Vec<Stage> {
        let mut stages = vec![Stage::new("stem", ["conv1", "bn1"])];
        stages.extend((1..=4).map(|i| Stage::new(format!("layer{i}"), [format!("layer{i}")])));
        stages
    }
}

impl VisitLayers for ResNet {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        visitor.conv2d(&mut self.conv1);
        visitor.batch_norm(&mut self.bn1);
        for block in self.layers.iter_mut().flatten() {
            block.visit_layers(visitor);
        }
        visitor.linear(&mut self.fc);
    }
}

#[cfg(test)]
mod tests {
    use super::super::classifier::global_avg_pool;
    use super::*;
    use tch::{nn::VarStore, Device, Kind, Reduction};

    /// The forward pass as it was before the channels-last and in-place changes: NCHW tensors and out-of-place
    /// ReLUs and adds, the order torchvision's modules define.
    fn reference_forward(m: &ResNet, x: &Tensor, train: bool) -> Tensor {
        let block = |b: &ResidualBlock, x: &Tensor| {
            let last = b.convs.len() - 1;
            let mut y = x.shallow_clone();
            for (i, (conv, bn)) in b.convs.iter().enumerate() {
                y = bn.forward_t(&conv.forward_t(&y, train), train);
                if i < last {
                    y = y.relu();
                }
            }
            let shortcut = match &b.downsample {
                Some((conv, bn)) => bn.forward_t(&conv.forward_t(x, train), train),
                None => x.shallow_clone(),
            };
            (y + shortcut).relu()
        };
        let stem = m.bn1.forward_t(&m.conv1.forward_t(&x.contiguous(), train), train).relu();
        let mut y = stem.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in m.layers.iter().flatten() {
            y = block(b, &y);
            assert!(y.is_contiguous(), "the reference path should stay NCHW");
        }
        m.forward_head(&global_avg_pool(&y), train)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    fn grads(vs: &VarStore) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t.grad().copy())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn channels_last_keeps_shape_values_and_nhwc_strides() {
        let x = Tensor::randn([2, 3, 5, 7], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), [3 * 5 * 7, 1, 7 * 3, 3]);
        assert!(y.equal(&x));
        // Already channels-last: no copy.
        assert_eq!(channels_last(&y).data_ptr(), y.data_ptr());
    }

    /// resnet18 in the channels-last format with in-place ReLUs and adds gives the NCHW, out-of-place forward's
    /// float32 logits within 1e-5, the same loss and, in float64, every parameter's gradient within 1e-9 of its
    /// largest value; its weights stay in the standard layout, so saving them writes exactly the values in memory.
    #[test]
    fn channels_last_resnet18_matches_nchw_forward_and_backward() -> Result<()> {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let model = ResNet::new(&vs.root(), ResNetConfig::RESNET18, 7)?;
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[1i64, 5]);

        let (new, old) = tch::no_grad(|| (model.forward_t(&x, false), reference_forward(&model, &x, false)));
        assert!(new.is_contiguous());
        let d = max_abs_diff(&new, &old);
        assert!(d <= 1e-5, "eval logits differ by {d}");

        // The backward pass is compared in float64. In float32 the weight gradients sum thousands of products in
        // another order in NHWC, an order that also depends on how libtorch splits the work among threads while
        // other tests run: CI measured 1.7e-3 of the largest value on conv1.weight, behind train-mode batch norms
        // over 2x2 maps that amplify rounding. In float64 that rounding is ~1e-13, so a real layout or in-place bug
        // cannot hide under the bound.
        let mut vs = vs;
        vs.double();
        let x = x.to_kind(Kind::Double);
        let loss = |logits: Tensor| logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
        let old_loss = loss(reference_forward(&model, &x, true));
        old_loss.backward();
        let old_grads = grads(&vs);
        for mut t in vs.trainable_variables() {
            t.zero_grad();
        }
        let new_loss = loss(model.forward_t(&x, true));
        new_loss.backward();
        let d = (new_loss.double_value(&[]) - old_loss.double_value(&[])).abs();
        assert!(d <= 1e-12, "train losses differ by {d}");
        assert_eq!(grads(&vs).len(), old_grads.len());
        for ((name, a), (_, b)) in grads(&vs).iter().zip(&old_grads) {
            assert_eq!(a.kind(), Kind::Double);
            let scale = b.abs().max().double_value(&[]).max(1.0);
            let d = max_abs_diff(a, b);
            assert!(d <= 1e-9 * scale, "gradient {name} differs by {d} (scale {scale})");
        }

        // Weights keep the standard layout: what is saved is exactly what is in memory.
        let dir = std::env::temp_dir().join(format!("suite-resnet-cl-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let vars = suite_core::weights::varstore_tensors(&vs, |_| true);
        assert!(vars.iter().all(|(_, t)| t.is_contiguous()));
        let file = dir.join("model.safetensors");
        suite_core::weights::save_safetensors(&file, &vars, None)?;
        Tensor::write_safetensors(&vars, dir.join("checkpoint.safetensors"))?;
        for path in [file, dir.join("checkpoint.safetensors")] {
            let saved = suite_core::weights::read_safetensors(&path)?;
            assert_eq!(saved.len(), vars.len());
            for ((n1, a), (n2, b)) in saved.iter().zip(&vars) {
                assert_eq!(n1, n2);
                assert!(a.equal(b), "{n1} saved differs from memory");
            }
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
