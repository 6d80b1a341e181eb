//! Parity of [`Gpt2LmHeadModel`] with transformers' `GPT2LMHeadModel` on random weights: `tests/py/tiny_lm.py`
//! writes the tiny models (every parameter random, biases and LayerNorms included), Python loads them with
//! `AutoModelForCausalLM` and writes logits, the causal-LM loss and every gradient for fixed ids; Rust loads the
//! same folders by name and compares. Also: the KV cache, the original `gpt2` checkpoint names, checkpoints written
//! back through [`gpt2_checkpoint_tensors`], and LoRA against peft (which marks `Conv1D` as `fan_in_fan_out`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;
use suite_core::peft::{apply_peft, Ia3Config, LoraConfig, PeftConfig, PrefixConfig};
use suite_core::python::run_python;
use suite_core::weights::save_safetensors;
use tch::{Device, Tensor};

use super::fixture_tests::{max_abs_diff, read_named, shifted_loss, write_tiny_lm, PEFT_PREFIX_REFERENCE, TOL};
use super::*;

/// For every folder in `argv[1:]`: eval-mode `logits` of `ids` [2, 10], the `loss` with `labels = ids` and
/// `grad.NAME` of every parameter, in `ref.safetensors`; for the folder named `gpt2`, a copy `gpt2_noprefix` in
/// the original `gpt2` repository's naming (no `transformer.` prefix, the `attn.bias` / `attn.masked_bias`
/// buffers of old checkpoints).
const REFERENCE: &str = r#"
import json, os, shutil, sys, torch
from transformers import AutoModelForCausalLM
from safetensors.torch import load_file, save_file
for d in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (2, 10), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    t = {"ids": ids, "logits": logits, "loss": loss.detach().reshape(1)}
    t.update({"grad." + n: p.grad for n, p in model.named_parameters()})
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(d, "ref.safetensors"))
    if os.path.basename(d) == "gpt2":
        out = d + "_noprefix"
        os.makedirs(out, exist_ok=True)
        old = {k.removeprefix("transformer."): v for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
        n = model.config.n_positions
        for i in range(model.config.n_layer):
            old[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
            old[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        save_file(old, os.path.join(out, "model.safetensors"))
        shutil.copy(os.path.join(d, "config.json"), out)
"#;

/// The fixture folders `gpt2` (transformers' defaults: tied, `gelu_new`) and `gpt2_variant` (untied,
/// exact `gelu`, `n_inner` 80, scores also scaled by the inverse layer index), with their references; made once
/// per test binary.
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let gpt2 = dir.path().join("gpt2");
        let variant = dir.path().join("gpt2_variant");
        write_tiny_lm(&gpt2, &["--arch", "gpt2", "--random-all", "--seed", "3"]);
        write_tiny_lm(
            &variant,
            &[
                "--arch",
                "gpt2",
                "--random-all",
                "--set",
                "scale_attn_by_inverse_layer_idx=true",
                "--set",
                "n_inner=80",
                "--set",
                "activation_function=\"gelu\"",
                "--set",
                "tie_word_embeddings=false",
            ],
        );
        run_python(REFERENCE, &[gpt2.to_str().unwrap(), variant.to_str().unwrap()]).unwrap();
        dir
    })
    .path()
}

struct Reference {
    dir: PathBuf,
    vs: tch::nn::VarStore,
    model: Gpt2LmHeadModel,
    refs: HashMap<String, Tensor>,
    ids: Tensor,
}

fn reference(case: &str) -> Reference {
    let dir = root().join(case);
    let mut refs = read_named(&dir.join("ref.safetensors"));
    let (vs, model, report) = Gpt2LmHeadModel::load_dir(&dir, Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    let ids = refs.remove("ids").unwrap();
    Reference { dir, vs, model, refs, ids }
}

/// Logits in eval mode, then the loss and every gradient (eval mode too: the fixtures keep GPT-2's dropout
/// probabilities, which transformers' reference does not apply in eval mode either).
fn check_parity(case: &str) -> Reference {
    let r = reference(case);
    let got = tch::no_grad(|| r.model.forward(&r.ids, None, false));
    let d = max_abs_diff(&got, &r.refs["logits"]);
    let scale = r.refs["logits"].abs().max().double_value(&[]);
    println!("{case}: logits {:?} max |Δ| vs transformers = {d:.3e} (max |logit| {scale:.2})", got.size());
    assert!(d <= TOL, "{case}: max |Δ| {d:e} > {TOL:e}");

    let logits = r.model.forward(&r.ids, None, false);
    let loss = shifted_loss(&logits, &r.ids);
    loss.backward();
    let d_loss = max_abs_diff(&loss.reshape([1]), &r.refs["loss"]);
    let (mut d_grad, mut largest) = (0.0f64, 0.0f64);
    let vars = r.vs.variables();
    for (name, var) in &vars {
        let want = r.refs.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("{case}: no reference grad {name}"));
        // transformers' Conv1D gradients are [in, out], like its weights.
        let conv1d = GPT2_CONV1D_WEIGHTS.iter().any(|s| name.ends_with(s));
        let want = if conv1d { want.tr() } else { want.shallow_clone() };
        d_grad = d_grad.max(max_abs_diff(&var.grad(), &want));
        largest = largest.max(want.abs().max().double_value(&[]));
    }
    let n_ref = r.refs.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(vars.len(), n_ref, "{case}: parameter count differs from transformers'");
    assert!(largest > 1e-3, "{case}: the reference gradients are all near zero ({largest:e}): nothing was tested");
    println!("{case}: loss |Δ| = {d_loss:.3e}; {} gradients max |Δ| = {d_grad:.3e} (largest {largest:.2})", vars.len());
    assert!(d_loss <= TOL && d_grad <= TOL, "{case}: loss |Δ| {d_loss:e}, gradient |Δ| {d_grad:e}");
    r
}

#[test]
fn gpt2_logits_loss_and_gradients_match_transformers() {
    let r = check_parity("gpt2");
    let c = r.model.config();
    assert!(c.tie_word_embeddings && c.scale_attn_weights && !c.scale_attn_by_inverse_layer_idx);
    assert_eq!((c.n_inner, c.activation_function), (4 * c.n_embd, Activation::GeluTanh));
    // tiny_lm.py's generation_config.json names <|im_end|> as eos.
    assert_eq!(r.model.info().eos_token_ids.len(), 1);
    assert_eq!(r.model.info().max_position_embeddings, 128);
}

#[test]
fn gpt2_config_variants_match_transformers() {
    let r = check_parity("gpt2_variant");
    let c = r.model.config();
    assert!(!c.tie_word_embeddings && c.scale_attn_by_inverse_layer_idx);
    assert_eq!((c.n_inner, c.activation_function), (80, Activation::Gelu));
    assert!(r.vs.variables().contains_key("lm_head.weight"));
}

/// Runs `ids` through the cache in chunks of the given lengths and concatenates the logits.
fn chunked(model: &dyn CausalLm, ids: &Tensor, chunks: &[i64]) -> Tensor {
    let mut cache = model.new_cache();
    let mut start = 0;
    let mut out = Vec::new();
    for &n in chunks {
        assert_eq!(cache.len(), start);
        out.push(tch::no_grad(|| model.forward(&ids.narrow(1, start, n), Some(&mut cache), false)));
        start += n;
    }
    Tensor::cat(&out, 1)
}

#[test]
fn gpt2_kv_cache_steps_equal_full_sequence() {
    for case in ["gpt2", "gpt2_variant"] {
        let r = reference(case);
        let full = tch::no_grad(|| r.model.forward(&r.ids, None, false));
        for chunks in [&[7, 1, 1, 1][..], &[4, 3, 1, 2]] {
            let got = chunked(&r.model, &r.ids, chunks);
            let (d_full, d_ref) = (max_abs_diff(&got, &full), max_abs_diff(&got, &r.refs["logits"]));
            println!("{case}: chunks {chunks:?} max |Δ| vs full sequence {d_full:.3e}, vs transformers {d_ref:.3e}");
            assert!(d_full <= TOL && d_ref <= TOL, "{case}: cached chunks {chunks:?} differ");
        }
    }
}

#[test]
fn gpt2_loads_checkpoints_without_the_transformer_prefix() {
    let dir = root().join("gpt2_noprefix");
    let (_vs, model, report) = Gpt2LmHeadModel::load_dir(&dir, Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    // Two layers × {attn.bias, attn.masked_bias}.
    assert_eq!(report.skipped.len(), 4, "{:?}", report.skipped);
    let r = reference("gpt2");
    let d = max_abs_diff(&tch::no_grad(|| model.forward(&r.ids, None, false)), &r.refs["logits"]);
    println!("gpt2 without `transformer.` prefix: logits max |Δ| vs transformers = {d:.3e}");
    assert!(d <= TOL);
}

/// Loads `argv[1]` (a folder Rust wrote) and `argv[2]` (the original) with `AutoModelForCausalLM` and prints the
/// largest difference between their state dicts.
const ROUND_TRIP: &str = r#"
import sys, torch
from transformers import AutoModelForCausalLM
a = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32).state_dict()
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
print(max((a[k] - b[k]).abs().max().item() for k in a))
"#;

#[test]
fn gpt2_checkpoint_tensors_load_back_into_transformers() {
    let r = reference("gpt2");
    let out = tempfile::tempdir().unwrap();
    let tensors = gpt2_checkpoint_tensors(r.vs.variables().into_iter().collect());
    let c_attn = tensors.iter().find(|(n, _)| n == "transformer.h.0.attn.c_attn.weight").unwrap();
    assert_eq!(c_attn.1.size(), [r.model.config().n_embd, 3 * r.model.config().n_embd], "Conv1D is [in, out]");
    save_safetensors(&out.path().join("model.safetensors"), &tensors, None).unwrap();
    std::fs::copy(r.dir.join("config.json"), out.path().join("config.json")).unwrap();
    let printed = run_python(ROUND_TRIP, &[out.path().to_str().unwrap(), r.dir.to_str().unwrap()]).unwrap();
    let d: f64 = printed.trim().parse().unwrap();
    println!("gpt2 written back through gpt2_checkpoint_tensors: state dict max |Δ| = {d:e}");
    assert_eq!(d, 0.0);
}

/// `get_peft_model` with `argv[3]`'s method as peft configures it for GPT-2 (`fan_in_fan_out`, as peft sets for
/// `Conv1D`): LoRA r=4, alpha=8 on `c_attn`, or (IA)³ on `c_attn` and `mlp.c_proj` (the latter scaling its
/// input). Rust's adapter tensors come from `argv[2]/adapter.safetensors`; writes logits, loss and the adapter
/// gradients.
const PEFT_REFERENCE: &str = r#"
import sys, warnings, torch
from transformers import AutoModelForCausalLM
from peft import IA3Config, LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
warnings.filterwarnings("ignore")
case_dir, out, method = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(case_dir, dtype=torch.float32)
if method == "lora":
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True)
else:
    cfg = IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"], fan_in_fan_out=True)
pm = get_peft_model(model, cfg)
ours = {"base_model.model." + k: v for k, v in load_file(out + "/adapter.safetensors").items()}
theirs = get_peft_model_state_dict(pm)
assert sorted(theirs) == sorted(ours), (sorted(theirs), sorted(ours))
assert all(theirs[k].shape == ours[k].shape for k in ours), [(k, theirs[k].shape, ours[k].shape) for k in ours]
res = set_peft_model_state_dict(pm, ours)
assert not res.unexpected_keys, res.unexpected_keys
pm.eval()
ids = load_file(case_dir + "/ref.safetensors")["ids"]
o = pm(input_ids=ids, labels=ids)
o.loss.backward()
t = {"logits": o.logits.detach(), "loss": o.loss.detach().reshape(1)}
for n, p in pm.named_parameters():
    if p.requires_grad:
        t["grad." + n.replace("base_model.model.", "", 1).replace(".default", "")] = p.grad
save_file({k: v.contiguous() for k, v in t.items()}, out + "/peft.safetensors")
print("ok")
"#;

/// Applies `cfg` with [`gpt2_peft_targets`]' defaults, randomises the adapter tensors named `marker` (peft
/// starts LoRA's B at zero and (IA)³ at one, which would hide the update), and compares logits, loss and adapter
/// gradients with peft's `method`.
fn check_peft(method: &str, cfg: PeftConfig, marker: &str, expected: usize) {
    let case = "gpt2";
    let Reference { dir: case_dir, mut vs, mut model, ids, refs } = reference(case);
    let report = apply_peft(&mut vs, &mut model, &cfg, &gpt2_peft_targets()).unwrap();
    println!("{}", report.summary_line());
    tch::manual_seed(7);
    let mut adapter: Vec<(String, Tensor)> = Vec::new();
    for (name, mut var) in vs.variables() {
        if name.contains(marker) {
            tch::no_grad(|| var.copy_(&(&var + var.randn_like() * 0.2)));
            adapter.push((name, var.detach()));
        }
    }
    assert_eq!(adapter.len(), expected, "{:?}", adapter.iter().map(|l| &l.0).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    save_safetensors(&dir.path().join("adapter.safetensors"), &adapter, None).unwrap();
    let args = [case_dir.to_str().unwrap(), dir.path().to_str().unwrap(), method];
    assert_eq!(run_python(PEFT_REFERENCE, &args).unwrap().trim(), "ok");
    let want = read_named(&dir.path().join("peft.safetensors"));

    let logits = model.forward(&ids, None, false);
    let loss = shifted_loss(&logits, &ids);
    loss.backward();
    let d_logits = max_abs_diff(&logits, &want["logits"]);
    let moved = max_abs_diff(&logits, &refs["logits"]);
    assert!(moved > 1e-2, "the {method} update hardly changes the logits ({moved:e}): nothing was tested");
    let d_loss = max_abs_diff(&loss.reshape([1]), &want["loss"]);
    let trainable: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    assert_eq!(trainable.len(), expected, "only the adapter tensors train");
    let mut d_grad = 0.0f64;
    for (name, var) in &trainable {
        let g = want.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("no peft gradient for {name}"));
        d_grad = d_grad.max(max_abs_diff(&var.grad(), g));
    }
    println!(
        "{case} + {method}: logits |Δ| {d_logits:.3e} (moved {moved:.2}), loss |Δ| {d_loss:.3e}, {expected} adapter \
         gradients |Δ| {d_grad:.3e}"
    );
    assert!(d_logits <= TOL && d_loss <= TOL && d_grad <= TOL);
}

#[test]
fn gpt2_lora_on_c_attn_matches_peft() {
    // No targets in the config: gpt2_peft_targets' default, `c_attn`, as peft's for gpt2. Two layers × {A, B}.
    let cfg = PeftConfig::Lora(LoraConfig { r: 4, alpha: 8.0, ..LoraConfig::default() });
    check_peft("lora", cfg, ".lora_", 4);
}

#[test]
fn gpt2_ia3_matches_peft() {
    // peft's gpt2 defaults: c_attn scaled at its output, mlp.c_proj at its input. Two layers × two vectors.
    check_peft("ia3", PeftConfig::Ia3(Ia3Config { targets: None, feedforward: None }), ".ia3_l", 4);
}

#[test]
fn gpt2_loads_through_load_causal_lm() {
    let dir = root().join("gpt2");
    assert_eq!(causal_model_type(&dir.join("config.json")).unwrap(), "gpt2");
    let (_vs, model, _) = load_causal_lm(&dir, Device::Cpu).unwrap();
    let r = reference("gpt2");
    let d = max_abs_diff(&tch::no_grad(|| model.forward(&r.ids, None, false)), &r.refs["logits"]);
    assert!(d <= TOL, "load_causal_lm: logits differ by {d:e}");
    assert_eq!(causal_peft_targets("gpt2"), gpt2_peft_targets());
    // A fresh model from the config alone has the checkpoint's variables.
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _fresh = new_causal_lm(&vs, &dir).unwrap();
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    let mut want: Vec<String> = r.vs.variables().into_keys().collect();
    want.sort();
    assert_eq!(names, want);
}

fn config_error(v: serde_json::Value) -> String {
    format!("{:#}", Gpt2Config::from_json(&v).unwrap_err())
}

#[test]
fn gpt2_config_refuses_what_it_cannot_build() {
    let tiny = || json!({"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "vocab_size": 100});
    let c = Gpt2Config::from_json(&tiny()).unwrap();
    assert_eq!((c.n_positions, c.n_inner, c.head_dim(), c.layer_norm_epsilon), (1024, 128, 8, 1e-5));
    let mut v = tiny();
    v["activation_function"] = json!("swish");
    let e = config_error(v);
    assert!(e.contains("activation_function") && e.contains("swish"), "{e}");
    let mut v = tiny();
    v["add_cross_attention"] = json!(true);
    assert!(config_error(v).contains("add_cross_attention"));
    let mut v = tiny();
    v["n_head"] = json!(5);
    assert!(config_error(v).contains("n_head"));
    let mut v = tiny();
    v["attn_pdrop"] = json!(1.5);
    assert!(config_error(v).contains("attn_pdrop"));
    let mut v = tiny();
    v["n_layer"] = json!("two");
    assert!(config_error(v).contains("n_layer"));
    let mut v = tiny();
    v["model_type"] = json!("llama");
    assert!(config_error(v).contains("model_type"));
}

#[test]
fn gpt2_prefix_tuning_matches_peft() {
    let case = "gpt2";
    let Reference { dir: case_dir, mut vs, mut model, ids, refs } = reference(case);
    let cfg = PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 3, projection: Some(16) });
    apply_peft(&mut vs, &mut model, &cfg, &gpt2_peft_targets()).unwrap();
    let prefix: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("prefix_encoder."))
        .map(|(n, t)| (n, t.detach()))
        .collect();
    assert_eq!(prefix.len(), 5, "{:?}", prefix.iter().map(|p| &p.0).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    save_safetensors(&dir.path().join("prefix.safetensors"), &prefix, None).unwrap();
    let out = run_python(PEFT_PREFIX_REFERENCE, &[case_dir.to_str().unwrap(), dir.path().to_str().unwrap()]).unwrap();
    assert_eq!(out.trim(), "ok");
    let want = read_named(&dir.path().join("peft.safetensors"));

    let logits = model.forward(&ids, None, false);
    let moved = max_abs_diff(&logits, &refs["logits"]);
    assert!(moved > 1e-3, "the prefix hardly changes the logits ({moved:e}): nothing was tested");
    let loss = shifted_loss(&logits, &ids);
    loss.backward();
    let d_logits = max_abs_diff(&logits, &want["logits"]);
    let d_loss = max_abs_diff(&loss.reshape([1]), &want["loss"]);
    let mut d_grad = 0.0f64;
    for (name, var) in vs.variables().into_iter().filter(|(n, _)| n.starts_with("prefix_encoder.")) {
        d_grad = d_grad.max(max_abs_diff(&var.grad(), &want[&format!("grad.{name}")]));
    }
    // The cache continues after the prefix: prompt 7 + 3 single steps equals the full sequence.
    let d_cache = max_abs_diff(&chunked(&model, &ids, &[7, 1, 1, 1]), &logits);
    println!(
        "{case} + prefix (3 tokens): logits |Δ| {d_logits:.3e} (moved {moved:.2}), loss |Δ| {d_loss:.3e}, prefix \
         gradients |Δ| {d_grad:.3e}; cached steps |Δ| {d_cache:.3e}"
    );
    assert!(d_logits <= TOL && d_loss <= TOL && d_grad <= TOL && d_cache <= TOL);
}
