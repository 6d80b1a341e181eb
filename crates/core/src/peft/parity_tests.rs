//! Parity with Hugging Face PEFT (the pinned `peft` of scripts/requirements.txt) on the same weights: LoRA, rsLoRA,
//! DoRA and (IA)³ layer outputs, gradients and merged weights on `nn.Linear`/`nn.Conv2d`; the prefix encoder; and
//! attention over prefixed keys and values against torch's SDPA. Tensors travel as safetensors files.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::test_models::{bert_input, max_diff, randomize, tiny_bert, TinyBert, HEADS, HIDDEN, LAYERS};
use super::*;
use crate::nn::{Conv2d, Conv2dConfig, LayerVisitor, Linear, VisitLayers};
use crate::python::run_python;
use crate::weights::{read_safetensors, save_safetensors};

const TOL: f64 = 1e-5;

/// `lin` (6→5), `ff` (5→7) and `conv` (3→4, 3×3, stride 2, padding 1), as the Python module `M` below.
struct Layers {
    lin: Linear,
    ff: Linear,
    conv: Conv2d,
}

impl VisitLayers for Layers {
    fn visit_layers(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.lin);
        v.linear(&mut self.ff);
        v.conv2d(&mut self.conv);
    }
}

/// Builds `M`, wraps it with peft for the case's config, loads our tensors through `set_peft_model_state_dict`
/// (after checking that peft's own adapter names are ours), then writes outputs, gradients of the adapter tensors
/// under a fixed random loss, and for LoRA/DoRA the weights of `merge_and_unload`.
const PEFT_LAYERS: &str = r#"
import sys, json, warnings, torch
from safetensors.torch import load_file, save_file
from peft import LoraConfig, IA3Config, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
warnings.filterwarnings("ignore")
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 5)
        self.ff = torch.nn.Linear(5, 7)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    def forward(self, x, h, img):
        return self.lin(x), self.ff(h), self.conv(img)
for d in sys.argv[1:]:
    case = json.load(open(d + "/case.json"))
    t = load_file(d + "/in.safetensors")
    m = M()
    m.load_state_dict({k: t[k] for k in m.state_dict()})
    targets = ["lin", "ff", "conv"]
    if case["method"] == "ia3":
        cfg = IA3Config(target_modules=targets, feedforward_modules=case["feedforward"])
    else:
        cfg = LoraConfig(r=case["r"], lora_alpha=case["alpha"], lora_dropout=case["dropout"],
                         use_rslora=case["rslora"], use_dora=case["method"] == "dora", target_modules=targets)
    pm = get_peft_model(m, cfg)
    ours = {"base_model.model." + k: v for k, v in t.items() if ".lora_" in k or ".ia3_l" in k}
    theirs = get_peft_model_state_dict(pm)
    assert sorted(theirs) == sorted(ours), (sorted(theirs), sorted(ours))
    for k, v in theirs.items():
        assert v.shape == ours[k].shape, (k, v.shape, ours[k].shape)
    res = set_peft_model_state_dict(pm, ours)
    assert not res.unexpected_keys, res.unexpected_keys
    pm.eval()
    lin, ff, conv = pm(t["x"], t["h"], t["img"])
    loss = (lin * t["r_lin"]).sum() + (ff * t["r_ff"]).sum() + (conv * t["r_conv"]).sum()
    loss.backward()
    out = {"lin": lin, "ff": ff, "conv": conv}
    params = dict(pm.named_parameters())
    for k in ours:
        # peft's parameter of a saved name: the adapter name goes before the last `.weight`, or at the end.
        cands = [p for p in params if p.replace(".default", "") == k or p.replace(".default", "") == k + ".weight"]
        assert len(cands) == 1, (k, cands)
        out["grad." + k[len("base_model.model."):]] = params[cands[0]].grad
    if case["method"] != "ia3":
        merged = pm.merge_and_unload()
        for n in targets:
            out["merged." + n + ".weight"] = merged.get_submodule(n).weight
    save_file({k: v.detach().contiguous() for k, v in out.items()}, d + "/out.safetensors")
print("ok")
"#;

struct Case {
    label: &'static str,
    cfg: PeftConfig,
    json: serde_json::Value,
}

fn cases() -> Vec<Case> {
    let names = Some(Targets::Names(vec!["lin".into(), "ff".into(), "conv".into()]));
    let lora = |r, alpha: f64, dropout, rslora| LoraConfig {
        r,
        alpha,
        dropout,
        rslora,
        targets: names.clone(),
        use_dora: false,
    };
    let ia3 = |ff: &[&str]| Ia3Config {
        targets: names.clone(),
        feedforward: Some(ff.iter().map(|s| s.to_string()).collect()),
    };
    let j = |m: &str, r: i64, alpha: f64, dropout: f64, rslora: bool| serde_json::json!({"method": m, "r": r, "alpha": alpha, "dropout": dropout, "rslora": rslora});
    vec![
        Case { label: "lora", cfg: PeftConfig::Lora(lora(4, 8.0, 0.0, false)), json: j("lora", 4, 8.0, 0.0, false) },
        Case {
            label: "rslora (dropout, eval)",
            cfg: PeftConfig::Lora(lora(3, 5.0, 0.2, true)),
            json: j("lora", 3, 5.0, 0.2, true),
        },
        Case { label: "dora", cfg: PeftConfig::Dora(lora(4, 6.0, 0.0, false)), json: j("dora", 4, 6.0, 0.0, false) },
        Case {
            label: "ia3 (ff input-scaled)",
            cfg: PeftConfig::Ia3(ia3(&["ff"])),
            json: serde_json::json!({"method": "ia3", "feedforward": ["ff"]}),
        },
        Case {
            label: "ia3 (conv input-scaled)",
            cfg: PeftConfig::Ia3(ia3(&["conv"])),
            json: serde_json::json!({"method": "ia3", "feedforward": ["conv"]}),
        },
    ]
}

fn tensor_map(path: &Path) -> HashMap<String, Tensor> {
    read_safetensors(path).unwrap().into_iter().collect()
}

#[test]
fn lora_dora_ia3_match_peft() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        tch::manual_seed(100 + i as i64);
        let mut vs = VarStore::new(Device::Cpu);
        let r = vs.root();
        let conv_cfg = Conv2dConfig { stride: 2, padding: 1, ..Conv2dConfig::default() };
        let mut m = Layers {
            lin: Linear::new(&r / "lin", 6, 5, true),
            ff: Linear::new(&r / "ff", 5, 7, true),
            conv: Conv2d::new(&r / "conv", 3, 4, 3, conv_cfg),
        };
        apply_peft(&mut vs, &mut m, &case.cfg, &PeftTargets::default()).unwrap();
        randomize(&vs, &[".lora_", ".ia3_l"], 200 + i as i64);
        let x = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let h = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let img = Tensor::randn([2, 3, 9, 7], (Kind::Float, Device::Cpu));
        let lin = m.lin.forward_t(&x, false);
        let ff = m.ff.forward_t(&h, false);
        let conv = m.conv.forward_t(&img, false);
        let (r_lin, r_ff, r_conv) = (lin.randn_like(), ff.randn_like(), conv.randn_like());
        ((&lin * &r_lin).sum(Kind::Float) + (&ff * &r_ff).sum(Kind::Float) + (&conv * &r_conv).sum(Kind::Float))
            .backward();

        let case_dir = dir.path().join(format!("case{i}"));
        std::fs::create_dir(&case_dir).unwrap();
        std::fs::write(case_dir.join("case.json"), case.json.to_string()).unwrap();
        let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.detach())).collect();
        for (n, t) in [("x", &x), ("h", &h), ("img", &img), ("r_lin", &r_lin), ("r_ff", &r_ff), ("r_conv", &r_conv)] {
            tensors.push((n.to_string(), t.shallow_clone()));
        }
        save_safetensors(&case_dir.join("in.safetensors"), &tensors, None).unwrap();
        let grads: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.contains(".lora_") || n.contains(".ia3_l"))
            .map(|(n, t)| (n, t.grad().copy()))
            .collect();
        let outputs = [("lin", lin.detach()), ("ff", ff.detach()), ("conv", conv.detach())];
        let merged = if case.cfg.lora().is_some() {
            assert_eq!(merge_lora(&mut m).unwrap(), 3);
            vec![("lin", m.lin.weight.detach()), ("ff", m.ff.weight.detach()), ("conv", m.conv.weight.detach())]
        } else {
            Vec::new()
        };
        runs.push((case.label, case_dir, outputs, grads, merged));
    }
    let dirs: Vec<String> = runs.iter().map(|r| r.1.to_str().unwrap().to_string()).collect();
    let args: Vec<&str> = dirs.iter().map(String::as_str).collect();
    assert_eq!(run_python(PEFT_LAYERS, &args).unwrap().trim(), "ok");

    for (label, case_dir, outputs, grads, merged) in runs {
        let want = tensor_map(&case_dir.join("out.safetensors"));
        let d_out = outputs.iter().map(|(n, t)| max_diff(t, &want[*n])).fold(0.0, f64::max);
        assert!(grads.iter().all(|(_, g)| g.abs().max().double_value(&[]) > 0.0), "{label}: a zero gradient");
        let d_grad = grads.iter().map(|(n, g)| max_diff(g, &want[&format!("grad.{n}")])).fold(0.0, f64::max);
        let d_merge = merged.iter().map(|(n, w)| max_diff(w, &want[&format!("merged.{n}.weight")])).fold(0.0, f64::max);
        println!(
            "peft parity {label}: outputs {d_out:.2e}, adapter grads {d_grad:.2e} ({} tensors), merged weights \
             {d_merge:.2e}",
            grads.len()
        );
        assert!(d_out < TOL, "{label}: outputs differ by {d_out}");
        assert!(d_grad < TOL, "{label}: gradients differ by {d_grad}");
        assert!(d_merge < TOL, "{label}: merged weights differ by {d_merge}");
    }
}

/// peft's `PrefixEncoder` (with and without projection) on our tensors, laid out per layer as peft's `get_prompt`
/// does; then attention with each block's prefixed keys and values by torch SDPA with an explicit mask, padding
/// and causal.
const PEFT_PREFIX: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
from peft import PrefixTuningConfig
from peft.tuners.prefix_tuning.model import PrefixEncoder
d, layers, heads, hidden, batch = sys.argv[1], *map(int, sys.argv[2:6])
t = load_file(d + "/in.safetensors")
out = {}
for kind in ("mlp", "table"):
    n = t[kind + ".n"].item()
    cfg = PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=n, token_dim=hidden, num_layers=layers,
                             num_attention_heads=heads, prefix_projection=kind == "mlp",
                             encoder_hidden_size=t["mlp.prefix_encoder.transform.0.weight"].shape[0])
    enc = PrefixEncoder(cfg)
    if kind == "mlp":
        sd = {k[len("mlp.prefix_encoder."):]: v for k, v in t.items() if k.startswith("mlp.prefix_encoder.")}
    else:
        blocks = [t[f"table.encoder.layer.{i}.attention.self.prefix_kv"] for i in range(layers)]
        sd = {"embedding.weight": torch.cat(blocks, dim=1)}
    enc.load_state_dict(sd, strict=True)
    tokens = torch.arange(n).unsqueeze(0).expand(batch, -1)
    with torch.no_grad():
        pkv = enc(tokens).view(batch, n, layers * 2, heads, hidden // heads).permute([2, 0, 3, 1, 4]).split(2)
    for i, kv in enumerate(pkv):
        out[f"{kind}.{i}.k"], out[f"{kind}.{i}.v"] = kv[0].contiguous(), kv[1].contiguous()
# Attention of block 0 of the MLP prefix: prefix keys always visible, own keys masked additively or causally.
q, k, v, mask = t["q"], t["k"], t["v"], t["mask"]
pk, pv = out["mlp.0.k"], out["mlp.0.v"]
p = pk.shape[2]
kk, vv = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
full = torch.cat([torch.zeros(*mask.shape[:-1], p), mask], -1)
out["attn.padding"] = torch.nn.functional.scaled_dot_product_attention(q, kk, vv, attn_mask=full)
L = q.shape[2]
blocked = torch.cat([torch.zeros(L, p, dtype=torch.bool), torch.ones(L, L, dtype=torch.bool).triu(1)], 1)
causal = torch.zeros(L, p + L).masked_fill(blocked, float("-inf"))
out["attn.causal"] = torch.nn.functional.scaled_dot_product_attention(q, kk, vv, attn_mask=causal)
save_file(out, d + "/out.safetensors")
print("ok")
"#;

#[test]
fn prefix_encoder_and_prefixed_attention_match_peft_and_sdpa() {
    let dir = tempfile::tempdir().unwrap();
    let batch = 2i64;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut models = Vec::new();
    for (kind, cfg) in [
        ("mlp", PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 3, projection: Some(6) })),
        ("table", PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 4, projection: None })),
    ] {
        let (mut vs, mut m) = tiny_bert(40);
        apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
        let n = if kind == "mlp" { 3i64 } else { 4 };
        tensors.push((format!("{kind}.n"), Tensor::from(n)));
        for (name, t) in vs.variables() {
            if name.contains("prefix") {
                tensors.push((format!("{kind}.{name}"), t.detach()));
            }
        }
        models.push((kind, vs, m));
    }
    let head_dim = HIDDEN / HEADS;
    let q = Tensor::randn([batch, HEADS, 5, head_dim], (Kind::Float, Device::Cpu));
    let k = Tensor::randn([batch, HEADS, 5, head_dim], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([batch, HEADS, 5, head_dim], (Kind::Float, Device::Cpu));
    // One padding mask for the whole batch: a per-example mask `[batch, 1, 1, len]` trips an in-place broadcast in
    // `AttentionSlots::attend` (see `per_example_masks_with_a_prefix`).
    let (_, mask) = bert_input();
    let mask = mask.narrow(0, 1, 1);
    for (n, t) in [("q", &q), ("k", &k), ("v", &v), ("mask", &mask)] {
        tensors.push((n.to_string(), t.shallow_clone()));
    }
    save_safetensors(&dir.path().join("in.safetensors"), &tensors, None).unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [d, &LAYERS.to_string(), &HEADS.to_string(), &HIDDEN.to_string(), &batch.to_string()];
    let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    assert_eq!(run_python(PEFT_PREFIX, &args).unwrap().trim(), "ok");
    let want = tensor_map(&dir.path().join("out.safetensors"));

    for (kind, _vs, m) in &models {
        let mut worst: f64 = 0.0;
        for (i, layer) in m.layers.iter().enumerate() {
            let prefix = layer.slots.prefix.as_ref().unwrap();
            let (pk, pv) = tch::no_grad(|| prefix.key_values(batch, false));
            worst = worst.max(max_diff(&pk, &want[&format!("{kind}.{i}.k")]));
            worst = worst.max(max_diff(&pv, &want[&format!("{kind}.{i}.v")]));
        }
        println!("prefix {kind}: keys/values vs peft PrefixEncoder max |diff| {worst:.2e}");
        assert!(worst < TOL, "{kind}: prefix keys/values differ by {worst}");
    }
    let slots = &models[0].2.layers[0].slots;
    let padded = tch::no_grad(|| slots.attend(&q, &k, &v, Some(&mask), false, false));
    let causal = tch::no_grad(|| slots.attend(&q, &k, &v, None, true, false));
    let (dp, dc) = (max_diff(&padded, &want["attn.padding"]), max_diff(&causal, &want["attn.causal"]));
    println!("prefixed attention vs torch SDPA: padding mask {dp:.2e}, causal {dc:.2e}");
    assert!(dp < TOL && dc < TOL, "{dp} {dc}");
    // The prefix changes the model's output, and gradients reach the shared MLP.
    let (vs, m) = (&models[0].1, &models[0].2);
    let (x, mask) = bert_input();
    m.forward(&x, Some(&mask.narrow(0, 1, 1)), true).sum(Kind::Float).backward();
    let g = vs.variables()["prefix_encoder.transform.0.weight"].grad();
    assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

/// `AttentionSlots::attend` with a prefix and a per-example padding mask `[batch, 1, 1, len]`, the shape every
/// encoder passes: the prefixed attention must equal SDPA over the concatenated keys with the prefix visible.
#[test]
fn per_example_masks_with_a_prefix() {
    let (mut vs, mut m) = tiny_bert(41);
    let cfg = PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 2, projection: None });
    apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
    let slots = &m.layers[0].slots;
    let head_dim = HIDDEN / HEADS;
    let q = super::test_models::det(&[2, HEADS, 5, head_dim], 1, 1.0);
    let k = super::test_models::det(&[2, HEADS, 5, head_dim], 2, 1.0);
    let v = super::test_models::det(&[2, HEADS, 5, head_dim], 3, 1.0);
    let (_, mask) = bert_input();
    let got = tch::no_grad(|| slots.attend(&q, &k, &v, Some(&mask), false, false));
    let (pk, pv) = tch::no_grad(|| slots.prefix.as_ref().unwrap().key_values(2, false));
    let full = Tensor::cat(&[Tensor::zeros([2, 1, 1, 2], (Kind::Float, Device::Cpu)), mask], -1);
    let want = crate::nn::scaled_dot_product_attention(
        &q,
        &Tensor::cat(&[pk, k], 2),
        &Tensor::cat(&[pv, v], 2),
        Some(&full),
        false,
    );
    assert!(max_diff(&got, &want) < TOL);
}
