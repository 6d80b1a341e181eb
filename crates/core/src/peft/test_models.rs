//! Small models built from the core's layers, with the checkpoint names of the real ones (a BERT encoder, a
//! ResNet-like conv net), for the PEFT tests.

use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

use crate::nn::{AttentionSlots, BatchNorm2d, Conv2d, Conv2dConfig, LayerVisitor, Linear, VisitLayers};
use crate::peft::PeftTargets;

pub(crate) const HIDDEN: i64 = 8;
pub(crate) const HEADS: i64 = 2;
pub(crate) const INTER: i64 = 16;
pub(crate) const LAYERS: i64 = 2;
pub(crate) const CLASSES: i64 = 3;

/// One BERT layer with BERT's names.
pub(crate) struct TinyLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub slots: AttentionSlots,
    pub attn_out: Linear,
    ln1: (Tensor, Tensor),
    pub inter: Linear,
    pub out: Linear,
    ln2: (Tensor, Tensor),
}

/// A two-layer BERT-style encoder with a classification head `classifier`.
pub(crate) struct TinyBert {
    pub layers: Vec<TinyLayer>,
    pub classifier: Linear,
}

fn layer_norm(p: &nn::Path) -> (Tensor, Tensor) {
    (p.var("weight", &[HIDDEN], nn::Init::Const(1.0)), p.var("bias", &[HIDDEN], nn::Init::Const(0.0)))
}

impl TinyBert {
    pub(crate) fn new(vs: &VarStore) -> Self {
        let root = vs.root();
        let layers = (0..LAYERS)
            .map(|i| {
                let l = &root / "encoder" / "layer" / i;
                let att = &l / "attention";
                let this = &att / "self";
                TinyLayer {
                    query: Linear::new(&this / "query", HIDDEN, HIDDEN, true),
                    key: Linear::new(&this / "key", HIDDEN, HIDDEN, true),
                    value: Linear::new(&this / "value", HIDDEN, HIDDEN, true),
                    slots: AttentionSlots::new(crate::nn::path_name(&this), HEADS, HIDDEN / HEADS),
                    attn_out: Linear::new(&att / "output" / "dense", HIDDEN, HIDDEN, true),
                    ln1: layer_norm(&(&att / "output" / "LayerNorm")),
                    inter: Linear::new(&l / "intermediate" / "dense", HIDDEN, INTER, true),
                    out: Linear::new(&l / "output" / "dense", INTER, HIDDEN, true),
                    ln2: layer_norm(&(&l / "output" / "LayerNorm")),
                }
            })
            .collect();
        Self { layers, classifier: Linear::new(&root / "classifier", HIDDEN, CLASSES, true) }
    }

    /// Logits `[batch, classes]` of `x` `[batch, len, hidden]`, with an additive key mask `[batch, 1, 1, len]`.
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        let (b, t, _) = x.size3().unwrap();
        for l in &self.layers {
            let split = |y: Tensor| y.view([b, t, HEADS, HIDDEN / HEADS]).transpose(1, 2);
            let q = split(l.query.forward_t(&h, train));
            let k = split(l.key.forward_t(&h, train));
            let v = split(l.value.forward_t(&h, train));
            let a = l.slots.attend(&q, &k, &v, mask, false, train).transpose(1, 2).reshape([b, t, HIDDEN]);
            let a = l.attn_out.forward_t(&a, train);
            h = (a + &h).layer_norm([HIDDEN], Some(&l.ln1.0), Some(&l.ln1.1), 1e-12, false);
            let f = l.out.forward_t(&l.inter.forward_t(&h, train).gelu("none"), train);
            h = (f + &h).layer_norm([HIDDEN], Some(&l.ln2.0), Some(&l.ln2.1), 1e-12, false);
        }
        self.classifier.forward_t(&h.mean_dim(1, false, Kind::Float), train)
    }

    /// What the BERT domain declares, with peft's BERT defaults.
    pub(crate) fn targets() -> PeftTargets {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PeftTargets {
            default_lora: s(&["query", "value"]),
            ia3: s(&["key", "value", "output.dense"]),
            ia3_feedforward: s(&["output.dense"]),
            adapter_after_attention: s(&["attention.output.dense"]),
            adapter_after_ffn: s(&["layer.*.output.dense"]),
            head_prefixes: s(&["classifier"]),
            exclude: Vec::new(),
        }
    }
}

impl VisitLayers for TinyBert {
    fn visit_layers(&mut self, v: &mut dyn LayerVisitor) {
        for l in &mut self.layers {
            v.linear(&mut l.query);
            v.linear(&mut l.key);
            v.linear(&mut l.value);
            v.attention(&mut l.slots);
            v.linear(&mut l.attn_out);
            v.linear(&mut l.inter);
            v.linear(&mut l.out);
        }
        v.linear(&mut self.classifier);
    }
}

/// A ResNet-like stem: conv–BN–ReLU twice (the second strided), global average pooling, `fc`.
pub(crate) struct TinyConvNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub fc: Linear,
}

impl TinyConvNet {
    pub(crate) fn new(vs: &VarStore) -> Self {
        let r = vs.root();
        let c = |stride| Conv2dConfig { stride, padding: 1, bias: false, ..Conv2dConfig::default() };
        Self {
            conv1: Conv2d::new(&r / "conv1", 3, 8, 3, c(1)),
            bn1: BatchNorm2d::new(&r / "bn1", 8, 1e-5),
            conv2: Conv2d::new(&r / "layer1" / "0" / "conv2", 8, 8, 3, c(2)),
            bn2: BatchNorm2d::new(&r / "layer1" / "0" / "bn2", 8, 1e-5),
            fc: Linear::new(&r / "fc", 8, 4, true),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.bn1.forward_t(&self.conv1.forward_t(x, train), train).relu();
        let h = self.bn2.forward_t(&self.conv2.forward_t(&h, train), train).relu();
        self.fc.forward_t(&h.mean_dim([2i64, 3].as_slice(), false, Kind::Float), train)
    }

    pub(crate) fn targets() -> PeftTargets {
        PeftTargets {
            default_lora: vec!["conv1".into(), "conv2".into()],
            head_prefixes: vec!["fc".into()],
            ..PeftTargets::default()
        }
    }
}

impl VisitLayers for TinyConvNet {
    fn visit_layers(&mut self, v: &mut dyn LayerVisitor) {
        v.conv2d(&mut self.conv1);
        v.batch_norm(&mut self.bn1);
        v.conv2d(&mut self.conv2);
        v.batch_norm(&mut self.bn2);
        v.linear(&mut self.fc);
    }
}

/// Deterministic pseudo-random values in `[-scale, scale)` from `seed`: unlike torch's global generator, the
/// same in every test thread, so that two models built from one seed are equal.
pub(crate) fn det(shape: &[i64], seed: i64, scale: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let i = Tensor::arange(n, (Kind::Double, Device::Cpu));
    let u = ((i * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453).frac().abs();
    ((u * 2.0 - 1.0) * scale).to_kind(Kind::Float).view(shape)
}

/// Overwrites every variable of `vs` whose name passes `filter` with [`det`] values.
fn fill(vs: &VarStore, seed: i64, filter: impl Fn(&str) -> Option<(f64, f64)>) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (k, (n, mut t)) in vars.into_iter().enumerate() {
            if let Some((offset, scale)) = filter(&n) {
                let v = det(&t.size(), seed * 1000 + k as i64, scale) + offset;
                t.copy_(&v.to_kind(t.kind()));
            }
        }
    });
}

/// A TinyBert with seeded weights, and a seeded input batch with padding in the second example.
pub(crate) fn tiny_bert(seed: i64) -> (VarStore, TinyBert) {
    let vs = VarStore::new(Device::Cpu);
    let m = TinyBert::new(&vs);
    // Non-trivial layer norms too, so that BitFit's biases and checksums see real values.
    fill(&vs, seed, |n| Some(if n.contains("LayerNorm.weight") { (1.0, 0.5) } else { (0.0, 0.4) }));
    (vs, m)
}

pub(crate) fn tiny_conv(seed: i64) -> (VarStore, TinyConvNet) {
    let vs = VarStore::new(Device::Cpu);
    let m = TinyConvNet::new(&vs);
    fill(&vs, seed, |n| {
        if n.ends_with("num_batches_tracked") {
            None
        } else if n.ends_with("running_var") || n.ends_with(".weight") && n.contains("bn") {
            Some((1.25, 0.75))
        } else {
            Some((0.0, 0.4))
        }
    });
    (vs, m)
}

/// Input tokens `[2, 5, HIDDEN]` and a key mask hiding the last two positions of the second example.
pub(crate) fn bert_input() -> (Tensor, Tensor) {
    let x = det(&[2, 5, HIDDEN], 77, 1.5);
    let keep = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
    let _ = keep.get(1).narrow(0, 3, 2).fill_(0.0);
    let mask = ((keep - 1.0) * 1e9).view([2, 1, 1, 5]);
    (x, mask)
}

/// Sets every variable whose name contains one of `parts` to seeded random values (a trained adapter).
pub(crate) fn randomize(vs: &VarStore, parts: &[&str], seed: i64) {
    fill(vs, seed, |n| {
        parts.iter().any(|p| n.contains(p)).then(|| {
            // Magnitudes and (IA)³ scales are positive and near 1, as after training.
            if n.contains("magnitude") || n.contains("ia3_l") {
                (1.0, 0.4)
            } else {
                (0.0, 0.5)
            }
        })
    });
}

/// Copies of every variable, by name.
pub(crate) fn snapshot(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}
