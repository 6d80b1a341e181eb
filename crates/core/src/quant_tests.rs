//! int8 linear layers against PyTorch's own dynamic quantization on the same weights and inputs.

use super::*;
use crate::nn::Linear;

/// `torch.ao.quantization.quantize_dynamic` of one nn.Linear with the weights in argv[1], applied to the input in
/// the same file through `quantized::linear_dynamic` with `reduce_range` = argv[3]; argv[2] = per_channel |
/// per_tensor. Prints the output, the int8 weights and the fp32 output.
const REFERENCE: &str = r#"
import sys, json, torch
from safetensors.torch import load_file
from torch.ao.quantization import quantize_dynamic, default_dynamic_qconfig, per_channel_dynamic_qconfig
t = load_file(sys.argv[1])
lin = torch.nn.Linear(t["weight"].shape[1], t["weight"].shape[0])
with torch.no_grad():
    lin.weight.copy_(t["weight"]); lin.bias.copy_(t["bias"])
qconfig = per_channel_dynamic_qconfig if sys.argv[2] == "per_channel" else default_dynamic_qconfig
q = quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
with torch.no_grad():
    packed = q[0]._packed_params._packed_params
    y = torch.ops.quantized.linear_dynamic(t["x"], packed, reduce_range=sys.argv[3] == "1")
w = q[0].weight()
print(json.dumps({"y": y.flatten().tolist(), "int_repr": w.int_repr().flatten().tolist(),
                  "fp32": lin(t["x"]).flatten().tolist()}))
"#;

#[test]
fn int8_linear_matches_pytorch_quantize_dynamic() {
    tch::manual_seed(3);
    let dir = tempfile::tempdir().unwrap();
    let (w, b, x) = (
        Tensor::randn([48, 64], (Kind::Float, Device::Cpu)),
        Tensor::randn([48], (Kind::Float, Device::Cpu)),
        Tensor::randn([2, 5, 64], (Kind::Float, Device::Cpu)),
    );
    let path = dir.path().join("lin.safetensors");
    Tensor::write_safetensors(&[("weight", &w), ("bias", &b), ("x", &x)], &path).unwrap();
    let cases = [
        (WeightScheme::PerChannel, "per_channel", true),
        (WeightScheme::PerChannel, "per_channel", false),
        (WeightScheme::PerTensor, "per_tensor", true),
    ];
    for (scheme, name, reduce) in cases {
        let rr = if reduce { "1" } else { "0" };
        let out = crate::python::run_python(REFERENCE, &[path.to_str().unwrap(), name, rr]).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        let mut q = QuantizedLinear::new(&w, Some(&b), scheme).unwrap();
        q.reduce_range = reduce;
        let y = q.forward(&x).unwrap();
        assert_eq!(y.size(), vec![2, 5, 48]);
        let ours: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        let theirs: Vec<f64> = v["y"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).collect();
        let diff = ours.iter().zip(&theirs).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-5, "{name}: int8 output differs from PyTorch's by {diff}");
        // Same int8 weights, value for value.
        let (qw, qb) = q.unpack().unwrap();
        let ints: Vec<i8> = Vec::try_from(qw.int_repr().flatten(0, -1)).unwrap();
        let want: Vec<i64> = v["int_repr"].as_array().unwrap().iter().map(|a| a.as_i64().unwrap()).collect();
        assert!(ints.iter().zip(&want).all(|(a, b)| i64::from(*a) == *b), "{name}: int8 weights differ");
        assert!(qb.is_some());
        // And close to fp32, as int8 should be.
        let fp32: Vec<f64> = v["fp32"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).collect();
        let err = ours.iter().zip(&fp32).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        let scale = fp32.iter().map(|v| v.abs()).fold(0.0, f64::max);
        // With 8-bit activations on a CPU without VNNI, fbgemm's 16-bit pair sums saturate — PyTorch's too (equal
        // above) — which is why suite takes 7 bits there (`needs_reduce_range`); closeness holds otherwise.
        if reduce || !crate::quant::needs_reduce_range() {
            assert!(err > 0.0 && err < 0.05 * scale, "{name}: int8 vs fp32 max |Δ| {err} of outputs up to {scale}");
        } else {
            println!("{name}: 8-bit activations without VNNI saturate as in PyTorch: max |Δ| {err} of {scale}");
        }
    }
}

struct Two {
    a: Linear,
    b: Linear,
}

impl VisitLayers for Two {
    fn visit_layers(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.a);
        v.linear(&mut self.b);
    }
}

impl Two {
    fn new(vs: &tch::nn::VarStore) -> Self {
        Two { a: Linear::new(vs.root() / "a", 32, 64, true), b: Linear::new(vs.root() / "b", 64, 8, false) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.b.forward_t(&self.a.forward_t(x, false).relu(), false)
    }
}

#[test]
fn quantizing_while_loading_equals_quantizing_after() {
    tch::manual_seed(3);
    let source = tch::nn::VarStore::new(Device::Cpu);
    let _ = Two::new(&source);
    // As the CT2 asset stores them: fp16, widened by the loader.
    let checkpoint: Vec<(String, Tensor)> =
        source.variables().into_iter().map(|(n, t)| (n, t.to_kind(Kind::Half))).collect();
    let load = |vs: &tch::nn::VarStore, each: &mut dyn FnMut(&str) -> Result<()>| {
        let copy = checkpoint.iter().map(|(n, t)| (n.clone(), t.shallow_clone()));
        crate::weights::load_named_each(vs, copy, &crate::weights::LoadOptions::strict(), "test", each).unwrap();
    };
    let after_vs = tch::nn::VarStore::new(Device::Cpu);
    let mut after = Two::new(&after_vs);
    load(&after_vs, &mut |_| Ok(()));
    let after_summary = quantize_dynamic(&mut after, WeightScheme::PerChannel).unwrap();

    let during_vs = tch::nn::VarStore::new(Device::Cpu);
    let mut during = Two::new(&during_vs);
    let mut q = LoadQuantizer::new(WeightScheme::PerChannel);
    let mut seen = Vec::new();
    load(&during_vs, &mut |name| {
        q.loaded(&mut during, name)?;
        // A layer is quantized once its weight and bias are both in, not before.
        seen.push((name.to_string(), during.a.quantized.is_some(), during.b.quantized.is_some()));
        Ok(())
    });
    assert_eq!(q.summary().layers, 2, "both layers quantized during the load");
    let a_done = seen.iter().position(|(_, a, _)| *a).unwrap();
    let a_vars: Vec<&str> =
        seen[..=a_done].iter().map(|(n, _, _)| n.as_str()).filter(|n| n.starts_with("a.")).collect();
    assert_eq!(a_vars.len(), 2, "a is quantized when its second variable arrives: {seen:?}");
    assert_eq!(during.a.weight.numel(), 0, "fp32 weight released during the load");
    let during_summary = q.finish(&mut during).unwrap();
    assert_eq!((during_summary.layers, during_summary.int8_bytes), (after_summary.layers, after_summary.int8_bytes));
    let x = Tensor::randn([5, 32], (Kind::Float, Device::Cpu));
    assert!(during.forward(&x).equal(&after.forward(&x)), "same int8 model either way");
}

#[test]
fn quantize_dynamic_swaps_every_linear_and_keeps_adapters_working() {
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut m = Two::new(&vs);
    let x = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let fp32 = m.b.forward_t(&m.a.forward_t(&x, false).relu(), false);
    let s = quantize_dynamic(&mut m, WeightScheme::PerChannel).unwrap();
    assert_eq!((s.layers, s.weights), (2, 32 * 64 + 64 * 8));
    assert!(s.int8_bytes * 3 < s.fp32_bytes, "{s:?}");
    let int8 = m.b.forward_t(&m.a.forward_t(&x, false).relu(), false);
    let rel = (&int8 - &fp32).abs().max().double_value(&[]) / fp32.abs().max().double_value(&[]);
    assert!(rel > 0.0 && rel < 0.05, "int8 relative error {rel}");
    // The fp32 weights are released (the VarStore's variables too: they share the tensor), the shapes still known.
    assert_eq!(m.a.weight.numel(), 0);
    assert_eq!(vs.variables()["a.weight"].numel(), 0);
    assert_eq!((m.a.in_features(), m.a.out_features(), m.b.in_features(), m.b.out_features()), (32, 64, 64, 8));
    assert_eq!(m.a.bias.as_ref().unwrap().numel(), 64, "biases stay");
    // A second call leaves the layers as they are.
    assert_eq!(quantize_dynamic(&mut m, WeightScheme::PerChannel).unwrap().layers, 0);
}
