//! EfficientNet-Lite (Tan & Le 2019, Lite variants of TensorFlow's `efficientnet/lite`), with the parameter names
//! of `efficientnet_pytorch` / `efficientnet_lite_pytorch` (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`…),
//! the layout of the ImageNet-trained Lite0 checkpoint that suite ships.
//!
//! Lite differs from EfficientNet-B: no squeeze-excitation, ReLU6 instead of swish, and a stem (32 channels) and
//! head (1280) that width scaling leaves alone. The weights come from TensorFlow, so convolutions pad like
//! TensorFlow's `SAME`: a stride-2 convolution on an even-sized input pads one pixel less before than after.

use anyhow::Result;
use suite_core::nn::{BatchNorm2d, Conv2d, Conv2dConfig, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Tensor};

use super::classifier::{channels_last, check_num_classes, ImageClassifier, Stage};

/// TensorFlow's batch-norm epsilon, kept by the converted checkpoint.
const BN_EPS: f64 = 1e-3;
/// TensorFlow's decay 0.99 expressed as a torch momentum.
const BN_MOMENTUM: f64 = 0.01;
/// Channel counts are rounded to multiples of this, as in the TensorFlow builder.
const CHANNEL_DIVISOR: i64 = 8;
/// Stem and head widths, never scaled in the Lite variants.
const STEM_CHANNELS: i64 = 32;
const HEAD_CHANNELS: i64 = 1280;

/// One stage of the EfficientNet-B0 / Lite0 layout: its first block takes the stride, the repeats keep the shape.
#[derive(Debug, Clone, Copy)]
struct StageArgs {
    repeats: usize,
    kernel: i64,
    stride: i64,
    expand_ratio: i64,
    c_in: i64,
    c_out: i64,
}

/// The seven stages of the base network, before width and depth scaling.
const BASE_STAGES: [StageArgs; 7] = [
    StageArgs { repeats: 1, kernel: 3, stride: 1, expand_ratio: 1, c_in: 32, c_out: 16 },
    StageArgs { repeats: 2, kernel: 3, stride: 2, expand_ratio: 6, c_in: 16, c_out: 24 },
    StageArgs { repeats: 2, kernel: 5, stride: 2, expand_ratio: 6, c_in: 24, c_out: 40 },
    StageArgs { repeats: 3, kernel: 3, stride: 2, expand_ratio: 6, c_in: 40, c_out: 80 },
    StageArgs { repeats: 3, kernel: 5, stride: 1, expand_ratio: 6, c_in: 80, c_out: 112 },
    StageArgs { repeats: 4, kernel: 5, stride: 2, expand_ratio: 6, c_in: 112, c_out: 192 },
    StageArgs { repeats: 1, kernel: 3, stride: 1, expand_ratio: 6, c_in: 192, c_out: 320 },
];

/// Scaling and regularisation of an EfficientNet-Lite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetLiteConfig {
    /// Channel multiplier of the blocks.
    pub width: f64,
    /// Repeat multiplier of the inner stages (the first and last stage keep one block in Lite).
    pub depth: f64,
    /// Native input resolution.
    pub image_size: i64,
    /// Dropout before the head, in training.
    pub dropout: f64,
    /// Stochastic-depth rate of the last block; block `i` of `n` drops its residual branch with probability
    /// `drop_connect * i / n` in training.
    pub drop_connect: f64,
}

impl EfficientNetLiteConfig {
    /// Lite0 (the values of TensorFlow's `efficientnet_lite_builder`).
    pub const LITE0: Self = Self { width: 1.0, depth: 1.0, image_size: 224, dropout: 0.2, drop_connect: 0.2 };
    /// Lite1.
    pub const LITE1: Self = Self { width: 1.0, depth: 1.1, image_size: 240, dropout: 0.2, drop_connect: 0.2 };
    /// Lite2.
    pub const LITE2: Self = Self { width: 1.1, depth: 1.2, image_size: 260, dropout: 0.3, drop_connect: 0.2 };
    /// Lite3.
    pub const LITE3: Self = Self { width: 1.2, depth: 1.4, image_size: 280, dropout: 0.3, drop_connect: 0.2 };
    /// Lite4.
    pub const LITE4: Self = Self { width: 1.4, depth: 1.8, image_size: 300, dropout: 0.3, drop_connect: 0.2 };

    /// `channels` × width, rounded to a multiple of 8 but never more than 10 % down (TensorFlow's rule).
    fn round_channels(&self, channels: i64) -> i64 {
        let scaled = channels as f64 * self.width;
        let d = CHANNEL_DIVISOR as f64;
        let rounded = (((scaled + d / 2.0) / d).floor() * d).max(d);
        let rounded = if rounded < 0.9 * scaled { rounded + d } else { rounded };
        rounded as i64
    }

    /// The stages after scaling. Lite keeps the first and last stage at their base repeats (and the first at the
    /// unscaled stem width), as its builder's `fix_head_stem` does.
    fn stages(&self) -> Vec<StageArgs> {
        let last = BASE_STAGES.len() - 1;
        BASE_STAGES
            .iter()
            .enumerate()
            .map(|(i, s)| StageArgs {
                repeats: if i == 0 || i == last { s.repeats } else { (s.repeats as f64 * self.depth).ceil() as usize },
                c_in: if i == 0 { STEM_CHANNELS } else { self.round_channels(s.c_in) },
                c_out: self.round_channels(s.c_out),
                ..*s
            })
            .collect()
    }
}

/// Zero padding `[left, right, top, bottom]` that makes a `kernel`×`kernel` convolution with `stride` produce
/// `ceil(size / stride)` outputs, the extra pixel going after, as TensorFlow's `SAME` does.
fn same_padding(height: i64, width: i64, kernel: i64, stride: i64) -> [i64; 4] {
    let total = |size: i64| ((size + stride - 1) / stride - 1) * stride + kernel - size;
    let (ph, pw) = (total(height).max(0), total(width).max(0));
    [pw / 2, pw - pw / 2, ph / 2, ph - ph / 2]
}

/// A bias-free convolution padded like TensorFlow's `SAME`.
///
/// With stride 1, `SAME` is the symmetric padding `(k - 1) / 2` whatever the input size, so the convolution pads
/// by itself. With stride 2 the padding depends on the input size and may be lopsided, so the input is padded
/// here first; doing it per call (not fixed for 224×224 as `efficientnet_pytorch`'s static padding does) gives
/// the same result at 224 and TensorFlow's at any other size.
#[derive(Debug)]
struct SameConv {
    conv: Conv2d,
    kernel: i64,
    stride: i64,
}

impl SameConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let padding = if stride == 1 { (kernel - 1) / 2 } else { 0 };
        let config = Conv2dConfig { stride, padding, groups, bias: false, ..Default::default() };
        Self { conv: Conv2d::new(p, c_in, c_out, kernel, config), kernel, stride }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if self.stride == 1 {
            return self.conv.forward_t(x, train);
        }
        let (h, w) = (x.size()[2], x.size()[3]);
        let pad = same_padding(h, w, self.kernel, self.stride);
        self.conv.forward_t(&x.constant_pad_nd(pad), train)
    }
}

fn batch_norm(p: nn::Path, channels: i64) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(p, channels, BN_EPS);
    bn.momentum = BN_MOMENTUM;
    bn
}

/// Inverted residual (MBConv) block without squeeze-excitation: 1×1 expand (`_expand_conv`/`_bn0`, absent when
/// the expand ratio is 1), depthwise k×k (`_depthwise_conv`/`_bn1`), linear 1×1 projection
/// (`_project_conv`/`_bn2`), and an identity shortcut when the shape is kept.
#[derive(Debug)]
struct MbConv {
    expand: Option<(SameConv, BatchNorm2d)>,
    depthwise: SameConv,
    bn1: BatchNorm2d,
    project: SameConv,
    bn2: BatchNorm2d,
    residual: bool,
    drop_connect: f64,
}

impl MbConv {
    fn new(p: &nn::Path, args: &StageArgs, c_in: i64, stride: i64, drop_connect: f64) -> Self {
        let hidden = c_in * args.expand_ratio;
        let expand = (args.expand_ratio != 1)
            .then(|| (SameConv::new(p / "_expand_conv", c_in, hidden, 1, 1, 1), batch_norm(p / "_bn0", hidden)));
        Self {
            expand,
            depthwise: SameConv::new(p / "_depthwise_conv", hidden, hidden, args.kernel, stride, hidden),
            bn1: batch_norm(p / "_bn1", hidden),
            project: SameConv::new(p / "_project_conv", hidden, args.c_out, 1, 1, 1),
            bn2: batch_norm(p / "_bn2", args.c_out),
            residual: stride == 1 && c_in == args.c_out,
            drop_connect,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        // In place, as timm's `ReLU6(inplace=True)` and residual add: each works on a batch norm's (or the drop
        // path's) fresh output, which no earlier operation saved for backward; the block's input is never written.
        let mut y = x.shallow_clone();
        if let Some((conv, bn)) = &self.expand {
            y = bn.forward_t(&conv.forward_t(&y, train), train);
            let _ = y.relu6_();
        }
        y = self.bn1.forward_t(&self.depthwise.forward_t(&y, train), train);
        let _ = y.relu6_();
        y = self.bn2.forward_t(&self.project.forward_t(&y, train), train);
        if !self.residual {
            return y;
        }
        if train && self.drop_connect > 0.0 {
            y = drop_path(&y, self.drop_connect);
        }
        y += x;
        y
    }

    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        if let Some((conv, bn)) = &mut self.expand {
            visitor.conv2d(&mut conv.conv);
            visitor.batch_norm(bn);
        }
        visitor.conv2d(&mut self.depthwise.conv);
        visitor.batch_norm(&mut self.bn1);
        visitor.conv2d(&mut self.project.conv);
        visitor.batch_norm(&mut self.bn2);
    }
}

/// Stochastic depth: zeroes the residual branch of whole samples with probability `p` and rescales the rest by
/// `1 / (1 - p)`, so the expected output is unchanged.
fn drop_path(x: &Tensor, p: f64) -> Tensor {
    let keep = 1.0 - p;
    let mask = Tensor::rand([x.size()[0], 1, 1, 1], (x.kind(), x.device())).g_add_scalar(keep).floor();
    x * mask / keep
}

/// An EfficientNet-Lite classifier with `efficientnet_pytorch`'s parameter names.
#[derive(Debug)]
pub struct EfficientNetLite {
    config: EfficientNetLiteConfig,
    conv_stem: SameConv,
    bn0: BatchNorm2d,
    blocks: Vec<MbConv>,
    /// Index of the first block of each stage, for [`ImageClassifier::stages`].
    stage_starts: Vec<usize>,
    conv_head: SameConv,
    bn1: BatchNorm2d,
    fc: Linear,
}

impl EfficientNetLite {
    /// Builds the network under `p` with a freshly initialised `num_classes`-way head `_fc`; load pretrained
    /// weights into the `VarStore` afterwards.
    pub fn new(p: &nn::Path, config: EfficientNetLiteConfig, num_classes: i64) -> Result<Self> {
        check_num_classes(num_classes)?;
        anyhow::ensure!(
            config.width > 0.0 && config.depth > 0.0 && (0.0..1.0).contains(&config.dropout),
            "invalid EfficientNet-Lite config {config:?}"
        );
        let conv_stem = SameConv::new(p / "_conv_stem", 3, STEM_CHANNELS, 3, 2, 1);
        let bn0 = batch_norm(p / "_bn0", STEM_CHANNELS);
        let stages = config.stages();
        let n_blocks: usize = stages.iter().map(|s| s.repeats).sum();
        let (mut blocks, mut stage_starts) = (Vec::with_capacity(n_blocks), Vec::with_capacity(stages.len()));
        let p_blocks = p / "_blocks";
        for stage in &stages {
            stage_starts.push(blocks.len());
            for r in 0..stage.repeats {
                let (c_in, stride) = if r == 0 { (stage.c_in, stage.stride) } else { (stage.c_out, 1) };
                let i = blocks.len();
                let drop_connect = config.drop_connect * i as f64 / n_blocks as f64;
                blocks.push(MbConv::new(&(&p_blocks / i), stage, c_in, stride, drop_connect));
            }
        }
        let c_last = stages.last().map_or(STEM_CHANNELS, |s| s.c_out);
        let conv_head = SameConv::new(p / "_conv_head", c_last, HEAD_CHANNELS, 1, 1, 1);
        let bn1 = batch_norm(p / "_bn1", HEAD_CHANNELS);
        let fc = Linear::new(p / "_fc", HEAD_CHANNELS, num_classes, true);
        Ok(Self { config, conv_stem, bn0, blocks, stage_starts, conv_head, bn1, fc })
    }

    /// Scaling and regularisation.
    pub fn config(&self) -> EfficientNetLiteConfig {
        self.config
    }

    /// Number of MBConv blocks (16 for Lite0).
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// `_conv_stem`, `_bn0`, ReLU6.
    fn stem(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.bn0.forward_t(&self.conv_stem.forward_t(x, train), train);
        let _ = y.relu6_();
        y
    }

    /// `_conv_head`, `_bn1`, ReLU6: the last convolutional map, before pooling.
    fn head_conv(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.bn1.forward_t(&self.conv_head.forward_t(x, train), train);
        let _ = y.relu6_();
        y
    }

    /// Stage label (`stage1`…) of block `i`, the stage it ends when it is the stage's last block.
    fn stage_ending_at(&self, i: usize) -> Option<String> {
        let s = self.stage_starts.iter().rposition(|&start| start <= i)?;
        let end = self.stage_starts.get(s + 1).copied().unwrap_or(self.blocks.len());
        (i + 1 == end).then(|| format!("stage{}", s + 1))
    }
}

impl ImageClassifier for EfficientNetLite {
    /// Runs in the channels-last memory format inside (see [`channels_last`]) and returns a contiguous (NCHW)
    /// map, so callers see the layout they passed.
    fn forward_stages(&self, x: &Tensor, range: std::ops::Range<usize>, train: bool) -> Tensor {
        let n_block_stages = self.stage_starts.len();
        let mut x = channels_last(x);
        for stage in range {
            if stage == 0 {
                x = self.stem(&x, train);
            } else if stage <= n_block_stages {
                let start = self.stage_starts[stage - 1];
                let end = self.stage_starts.get(stage).copied().unwrap_or(self.blocks.len());
                for block in &self.blocks[start..end] {
                    x = block.forward_t(&x, train);
                }
            } else {
                x = self.head_conv(&x, train);
            }
        }
        x.contiguous()
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(&features.dropout(self.config.dropout, train), train)
    }

    /// `stem`, the blocks `_blocks.N` each followed by the stage label it ends (`stage1`…`stage7`), then
    /// `head_conv` (the activated output of `_conv_head`/`_bn1`, the last convolutional map).
    fn activation_layers(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        for i in 0..self.blocks.len() {
            names.push(format!("_blocks.{i}"));
            names.extend(self.stage_ending_at(i));
        }
        names.push("head_conv".to_string());
        names
    }

    fn forward_with_activation(&self, x: &Tensor, layer: &str, train: bool) -> Option<(Tensor, Tensor)> {
        // A block adds its input to a fresh tensor and never writes the input itself, so a captured output keeps
        // its values while later blocks run.
        let mut x = self.stem(&channels_last(x), train);
        let mut captured = (layer == "stem").then(|| x.shallow_clone());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_t(&x, train);
            if layer == format!("_blocks.{i}") || self.stage_ending_at(i).is_some_and(|s| s == layer) {
                captured = Some(x.shallow_clone());
            }
        }
        x = self.head_conv(&x, train);
        if layer == "head_conv" {
            captured = Some(x.shallow_clone());
        }
        let logits = self.forward_head(&super::classifier::global_avg_pool(&x), train);
        captured.map(|a| (a, logits))
    }

    fn num_features(&self) -> i64 {
        HEAD_CHANNELS
    }

    fn num_classes(&self) -> i64 {
        self.fc.out_features()
    }

    fn head_prefix(&self) -> &str {
        "_fc"
    }

    /// Stem, then the seven block stages (`_blocks.0`; `_blocks.1`, `_blocks.2`; …), then the head convolution
    /// `_conv_head`/`_bn1` as the last stage.
    fn stages(&self) -> Vec<Stage> {
        let mut stages = vec![Stage::new("stem", ["_conv_stem", "_bn0"])];
        let ends = self.stage_starts.iter().skip(1).copied().chain([self.blocks.len()]);
        for (s, (start, end)) in self.stage_starts.iter().copied().zip(ends).enumerate() {
            stages.push(Stage::new(format!("stage{}", s + 1), (start..end).map(|i| format!("_blocks.{i}"))));
        }
        stages.push(Stage::new("head_conv", ["_conv_head", "_bn1"]));
        stages
    }
}

impl VisitLayers for EfficientNetLite {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        visitor.conv2d(&mut self.conv_stem.conv);
        visitor.batch_norm(&mut self.bn0);
        for block in &mut self.blocks {
            block.visit_layers(visitor);
        }
        visitor.conv2d(&mut self.conv_head.conv);
        visitor.batch_norm(&mut self.bn1);
        visitor.linear(&mut self.fc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 → 112 with a 3×3 stride-2 kernel: one pixel of padding, after.
        assert_eq!(same_padding(224, 224, 3, 2), [0, 1, 0, 1]);
        // 5×5 stride 2 on 28: three pixels, one before and two after.
        assert_eq!(same_padding(28, 28, 5, 2), [1, 2, 1, 2]);
        // An odd size pads symmetrically.
        assert_eq!(same_padding(15, 15, 5, 2), [2, 2, 2, 2]);
    }

    #[test]
    fn lite_scaling_keeps_stem_and_head_stages() {
        let lite0 = EfficientNetLiteConfig::LITE0.stages();
        assert_eq!(lite0.iter().map(|s| s.repeats).sum::<usize>(), 16);
        let lite4 = EfficientNetLiteConfig::LITE4.stages();
        assert_eq!(lite4.iter().map(|s| s.repeats).collect::<Vec<_>>(), [1, 4, 4, 6, 6, 8, 1]);
        assert_eq!(lite4[0].c_in, 32);
        assert_eq!(lite4.iter().map(|s| s.c_out).collect::<Vec<_>>(), [24, 32, 56, 112, 160, 272, 448]);
    }
}
