//! ResNet-18/34/50/101/152 ("Deep Residual Learning for Image Recognition", He et al. 2015) in the torchvision
//! v1.5 form that timm shares: the stride of a bottleneck block sits on its 3×3 convolution. Parameters carry
//! torchvision's names (`conv1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`…), so torchvision and timm
//! checkpoints load by name with no rename table.

use anyhow::Result;
use suite_core::nn::{BatchNorm2d, Conv2d, Conv2dConfig, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Tensor};

use super::classifier::{check_num_classes, ImageClassifier, Stage};

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

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            y = bn.forward_t(&conv.forward_t(&y, train), train);
            if i < last {
                y = y.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward_t(x, train), train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
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
}

impl ImageClassifier for ResNet {
    fn forward_stages(&self, x: &Tensor, range: std::ops::Range<usize>, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for stage in range {
            if stage == 0 {
                let y = self.bn1.forward_t(&self.conv1.forward_t(&x, train), train).relu();
                x = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            } else {
                for block in &self.layers[stage - 1] {
                    x = block.forward_t(&x, train);
                }
            }
        }
        x
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(features, train)
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
