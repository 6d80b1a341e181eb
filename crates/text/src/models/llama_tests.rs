//! Parity of [`LlamaForCausalLm`] with transformers 5 in suite's pinned Python environment, on random weights:
//! Python seeds a tiny `LlamaForCausalLM` / `Qwen2ForCausalLM`, `save_pretrained`s it and writes its logits for
//! fixed ids, loss and gradients; Rust loads the folder by name and compares. The KV-cache tests check that a prompt followed by
//! single-token (and multi-token) steps gives the full sequence's logits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::json;
use suite_core::peft::{apply_peft, LoraConfig, PeftConfig, PrefixConfig, Targets};
use suite_core::python::run_python;
use suite_core::weights::{read_safetensors, save_safetensors};
use tch::{Device, Kind, Tensor};

use super::fixture_tests::{max_abs_diff, PEFT_PREFIX_REFERENCE, TOL};
use super::*;

/// Builds the model of every case with seed 0, saves it into `argv[1]/CASE` and writes there `ref.safetensors`:
/// `ids`, eval-mode `logits`, the rotary `inv_freq`, the causal-LM `loss` (labels = ids) and `grad.NAME` of every
/// parameter after its backward pass. One process for all cases: importing transformers is most of the time.
const REFERENCE: &str = r#"
import os, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from safetensors.torch import save_file
root = sys.argv[1]
common = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
llama3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
linear = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
cases = {
    "tied": (LlamaConfig(tie_word_embeddings=True, **common), LlamaForCausalLM),
    "llama3": (LlamaConfig(tie_word_embeddings=False, rope_parameters=llama3, **common), LlamaForCausalLM),
    "linear": (LlamaConfig(tie_word_embeddings=False, rope_parameters=linear, **common), LlamaForCausalLM),
    "qwen2": (Qwen2Config(tie_word_embeddings=False, **common), Qwen2ForCausalLM),
}
for case, (config, cls) in cases.items():
    out = os.path.join(root, case)
    torch.manual_seed(0)
    model = cls(config).eval()
    if case == "qwen2":
        # Zero-initialised biases would not test that they are loaded and added.
        with torch.no_grad():
            for layer in model.model.layers:
                for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    p.bias.normal_(0.0, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    if case == "tied":
        # A sharded copy: model.safetensors.index.json and several model-0000N-of-0000M.safetensors.
        model.save_pretrained(out + "_sharded", safe_serialization=True, max_shard_size="40KB")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 128, (2, 10), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    # Greedy continuation of the first 6 ids by 12 tokens; min_new_tokens keeps eos (id 2) out, as the test does.
    with torch.no_grad():
        greedy = model.generate(ids[:, :6], attention_mask=torch.ones_like(ids[:, :6]), max_new_tokens=12,
                                min_new_tokens=12, do_sample=False, pad_token_id=0)
    t = {"ids": ids, "logits": logits.float(), "loss": loss.detach().reshape(1),
         "inv_freq": model.model.rotary_emb.inv_freq.float(), "greedy": greedy}
    t.update({"grad." + n: p.grad for n, p in model.named_parameters()})
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(out, "ref.safetensors"))
"#;

/// The reference folders, made once per test binary (the directory is left behind in the system's temp folder
/// when the binary exits, as statics are not dropped).
fn reference_root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_python(REFERENCE, &[dir.path().to_str().unwrap()]).unwrap();
        dir
    })
    .path()
}

struct Reference {
    vs: tch::nn::VarStore,
    model: LlamaForCausalLm,
    refs: HashMap<String, Tensor>,
    ids: Tensor,
}

fn reference(case: &str) -> Reference {
    let dir = reference_root().join(case);
    let mut refs: HashMap<String, Tensor> =
        read_safetensors(dir.join("ref.safetensors")).unwrap().into_iter().collect();
    let (vs, model, report) = LlamaForCausalLm::load_dir(&dir, Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    let ids = refs.remove("ids").unwrap();
    Reference { vs, model, refs, ids }
}

fn check_parity(case: &str) -> Reference {
    let r = reference(case);
    // The scaled frequencies themselves, so that a scaling both sides ignored could not pass unnoticed.
    let inv_freq = &r.refs["inv_freq"];
    let d = max_abs_diff(&r.model.config().inv_freq(), inv_freq);
    println!("{case}: rotary inv_freq max |Δ| vs transformers = {d:.3e}");
    assert!(d <= 1e-7 * inv_freq.abs().max().double_value(&[]), "{case}: inv_freq differs by {d:e}");
    let got = tch::no_grad(|| r.model.forward(&r.ids, None, false));
    let d = max_abs_diff(&got, &r.refs["logits"]);
    println!("{case}: logits [2, 10, 128] max |Δ| vs transformers = {d:.3e}");
    assert!(d <= TOL, "{case}: max |Δ| {d:e} > {TOL:e}");

    // Training path: next-token loss (as transformers' ForCausalLMLoss with labels = ids) and every gradient.
    let logits = r.model.forward(&r.ids, None, true);
    let v = logits.size()[2];
    let loss = logits.narrow(1, 0, 9).reshape([-1, v]).cross_entropy_for_logits(&r.ids.narrow(1, 1, 9).reshape([-1]));
    loss.backward();
    let d_loss = max_abs_diff(&loss.reshape([1]), &r.refs["loss"]);
    let (mut d_grad, mut largest) = (0.0f64, 0.0f64);
    let vars = r.vs.variables();
    for (name, var) in &vars {
        let want = r.refs.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("{case}: no reference grad {name}"));
        d_grad = d_grad.max(max_abs_diff(&var.grad(), want));
        largest = largest.max(want.abs().max().double_value(&[]));
    }
    let n_ref = r.refs.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(vars.len(), n_ref, "{case}: parameter count differs from transformers'");
    assert!(largest > 1e-3, "{case}: the reference gradients are all near zero ({largest:e}): nothing was tested");
    println!("{case}: loss max |Δ| = {d_loss:.3e}; {} gradients max |Δ| = {d_grad:.3e}", vars.len());
    assert!(d_loss <= TOL && d_grad <= TOL, "{case}: loss |Δ| {d_loss:e}, gradient |Δ| {d_grad:e}");
    r
}

#[test]
fn llama_tied_embeddings_match_transformers() {
    let r = check_parity("tied");
    assert!(r.model.config().tie_word_embeddings);
    assert_eq!(r.model.info().eos_token_ids, vec![2]);
    assert_eq!(r.model.info().bos_token_id, Some(1));
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    let r = check_parity("llama3");
    assert!(matches!(r.model.config().rope_scaling, RopeScaling::Llama3 { .. }));
    assert_eq!(r.model.config().rope_theta, 500000.0);
}

#[test]
fn llama_linear_rope_scaling_matches_transformers() {
    let r = check_parity("linear");
    assert_eq!(r.model.config().rope_scaling, RopeScaling::Linear { factor: 4.0 });
}

#[test]
fn qwen2_qkv_bias_matches_transformers() {
    let r = check_parity("qwen2");
    assert!(r.model.config().qkv_bias && !r.model.config().o_bias);
}

/// Runs `ids` through the cache in chunks of the given lengths and concatenates the logits.
fn chunked(model: &LlamaForCausalLm, ids: &Tensor, chunks: &[i64]) -> Tensor {
    let mut cache = model.new_cache();
    let mut start = 0;
    let mut out = Vec::new();
    for &n in chunks {
        assert_eq!(cache.len(), start);
        out.push(tch::no_grad(|| model.forward(&ids.narrow(1, start, n), Some(&mut cache), false)));
        start += n;
    }
    assert_eq!(cache.len(), start);
    Tensor::cat(&out, 1)
}

#[test]
fn llama_kv_cache_steps_equal_full_sequence() {
    for case in ["llama3", "qwen2"] {
        let r = reference(case);
        let full = tch::no_grad(|| r.model.forward(&r.ids, None, false));
        let want = &r.refs["logits"];
        // Prompt of 7, then 3 single-token steps (the generation path).
        let d = max_abs_diff(&chunked(&r.model, &r.ids, &[7, 1, 1, 1]), &full);
        println!("{case}: prompt 7 + 3 single-token steps, max |Δ| vs full sequence = {d:.3e}");
        assert!(d <= TOL, "{case}: cached steps differ by {d:e}");
        let d = max_abs_diff(&chunked(&r.model, &r.ids, &[7, 1, 1, 1]), want);
        println!("{case}: prompt 7 + 3 single-token steps, max |Δ| vs transformers = {d:.3e}");
        assert!(d <= TOL, "{case}: cached steps differ from transformers by {d:e}");
        // A multi-token chunk after cached positions takes the explicit bottom-right causal mask.
        let d = max_abs_diff(&chunked(&r.model, &r.ids, &[4, 3, 1, 2]), &full);
        println!("{case}: chunks 4 + 3 + 1 + 2, max |Δ| vs full sequence = {d:.3e}");
        assert!(d <= TOL, "{case}: chunked prefill differs by {d:e}");
    }
}

fn config_error(v: serde_json::Value) -> String {
    format!("{:#}", LlamaConfig::from_json(&v).unwrap_err())
}

fn tiny() -> serde_json::Value {
    json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128})
}

#[test]
fn llama_config_reads_hub_fields() {
    // The older layout: top-level rope_theta, rope_scaling with "type", eos as a list (Llama 3.x Instruct).
    let mut v = tiny();
    v["rope_theta"] = json!(500000.0);
    v["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
    v["eos_token_id"] = json!([128001, 128008, 128009]);
    v["bos_token_id"] = json!(128000);
    let c = LlamaConfig::from_json(&v).unwrap();
    assert_eq!((c.rope_theta, c.rope_scaling.clone()), (500000.0, RopeScaling::Linear { factor: 2.0 }));
    assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
    assert_eq!((c.bos_token_id, c.head_dim, c.max_position_embeddings), (Some(128000), 16, 2048));
    assert!(!c.qkv_bias && !c.tie_word_embeddings);
    let mut v = tiny();
    v["model_type"] = json!("qwen2");
    v["rope_scaling"] = serde_json::Value::Null;
    let c = LlamaConfig::from_json(&v).unwrap();
    assert!(c.qkv_bias && !c.o_bias && c.eos_token_ids.is_empty());
    assert_eq!(c.rope_scaling, RopeScaling::Default);
}

#[test]
fn llama_config_refuses_what_it_cannot_build() {
    let mut v = tiny();
    v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    let e = config_error(v);
    assert!(e.contains("rope_scaling.rope_type") && e.contains("yarn"), "{e}");
    let mut v = tiny();
    v["rope_parameters"] = json!({"rope_type": "llama3", "factor": 8.0});
    let e = config_error(v);
    assert!(e.contains("rope_parameters.low_freq_factor"), "{e}");
    let mut v = tiny();
    v["model_type"] = json!("gpt2");
    assert!(config_error(v).contains("model_type"));
    let mut v = tiny();
    v["num_key_value_heads"] = json!(3);
    assert!(config_error(v).contains("num_key_value_heads"));
    let mut v = tiny();
    v["hidden_act"] = json!("gelu");
    assert!(config_error(v).contains("hidden_act"));
    let mut v = tiny();
    v["model_type"] = json!("qwen2");
    v["use_sliding_window"] = json!(true);
    assert!(config_error(v).contains("use_sliding_window"));
    let v = json!({"model_type": "llama"});
    assert!(config_error(v).contains("hidden_size"));
}

#[test]
fn llama_load_dir_names_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), tiny().to_string()).unwrap();
    let e = format!("{:#}", LlamaForCausalLm::load_dir(dir.path(), Device::Cpu).unwrap_err());
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Loads the case's model with `get_peft_model` (LoRA r=4, alpha=8 on q_proj/v_proj), puts Rust's LoRA tensors
/// (`argv[2]/lora.safetensors`, peft's names without `base_model.model.`) in, and writes logits, loss and the
/// LoRA gradients to `argv[2]/peft.safetensors`.
const PEFT_REFERENCE: &str = r#"
import sys, warnings, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
warnings.filterwarnings("ignore")
case_dir, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(case_dir, dtype=torch.float32)
pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
ours = {"base_model.model." + k: v for k, v in load_file(out + "/lora.safetensors").items()}
theirs = get_peft_model_state_dict(pm)
assert sorted(theirs) == sorted(ours), (sorted(theirs), sorted(ours))
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

#[test]
fn llama_lora_on_q_v_proj_matches_peft() {
    let case = "qwen2";
    let Reference { mut vs, mut model, ids, refs } = reference(case);
    let cfg = PeftConfig::Lora(LoraConfig {
        r: 4,
        alpha: 8.0,
        targets: Some(Targets::Names(vec!["q_proj".into(), "v_proj".into()])),
        ..LoraConfig::default()
    });
    let report = apply_peft(&mut vs, &mut model, &cfg, &llama_peft_targets()).unwrap();
    println!("{}", report.summary_line());
    // peft starts B at zero; random A and B make the update visible in logits and both gradients.
    tch::manual_seed(7);
    let mut lora: Vec<(String, Tensor)> = Vec::new();
    for (name, mut var) in vs.variables() {
        if name.contains(".lora_") {
            tch::no_grad(|| var.copy_(&(var.randn_like() * 0.2)));
            lora.push((name, var.detach()));
        }
    }
    // Two layers × {q_proj, v_proj} × {A, B}.
    assert_eq!(lora.len(), 8, "{:?}", lora.iter().map(|l| &l.0).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    save_safetensors(&dir.path().join("lora.safetensors"), &lora, None).unwrap();
    let case_dir = reference_root().join(case);
    let out = run_python(PEFT_REFERENCE, &[case_dir.to_str().unwrap(), dir.path().to_str().unwrap()]).unwrap();
    assert_eq!(out.trim(), "ok");
    let want: HashMap<String, Tensor> =
        read_safetensors(dir.path().join("peft.safetensors")).unwrap().into_iter().collect();

    let logits = model.forward(&ids, None, false);
    let v = logits.size()[2];
    let loss = logits.narrow(1, 0, 9).reshape([-1, v]).cross_entropy_for_logits(&ids.narrow(1, 1, 9).reshape([-1]));
    loss.backward();
    let d_logits = max_abs_diff(&logits, &want["logits"]);
    let moved = max_abs_diff(&logits, &refs["logits"]);
    assert!(moved > 1e-2, "the LoRA update hardly changes the logits ({moved:e}): nothing was tested");
    let d_loss = max_abs_diff(&loss.reshape([1]), &want["loss"]);
    let mut d_grad = 0.0f64;
    let trainable: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    assert_eq!(trainable.len(), 8, "only the LoRA tensors train");
    for (name, var) in &trainable {
        let g = want.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("no peft gradient for {name}"));
        d_grad = d_grad.max(max_abs_diff(&var.grad(), g));
    }
    println!("{case} + LoRA: logits |Δ| {d_logits:.3e}, loss |Δ| {d_loss:.3e}, LoRA gradients |Δ| {d_grad:.3e}");
    assert!(d_logits <= TOL && d_loss <= TOL && d_grad <= TOL);
}

#[test]
fn llama_loads_sharded_checkpoints() {
    let dir = reference_root().join("tied_sharded");
    let shards = suite_core::weights::safetensors_index_shards(dir.join("model.safetensors.index.json")).unwrap();
    assert!(shards.len() > 1, "expected several shards, found {shards:?}");
    assert!(!dir.join("model.safetensors").exists());
    let (_vs, model, report) = LlamaForCausalLm::load_dir(&dir, Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    let r = reference("tied");
    let d = max_abs_diff(&tch::no_grad(|| model.forward(&r.ids, None, false)), &r.refs["logits"]);
    println!("tied, {} shards: logits max |Δ| vs transformers = {d:.3e}", shards.len());
    assert!(d <= TOL);
}

/// Greedy decoding through the cache: the prompt once, then one token per step, eos suppressed (as
/// `min_new_tokens` does in transformers).
fn greedy(model: &LlamaForCausalLm, prompt: &Tensor, new_tokens: i64) -> Tensor {
    let mut cache = model.new_cache();
    let mut out = vec![prompt.shallow_clone()];
    let mut next = prompt.shallow_clone();
    for _ in 0..new_tokens {
        let logits = tch::no_grad(|| model.forward(&next, Some(&mut cache), false)).select(1, -1);
        for &eos in &model.info().eos_token_ids {
            let _ = logits.narrow(1, eos, 1).fill_(f64::NEG_INFINITY);
        }
        next = logits.argmax(-1, true);
        out.push(next.shallow_clone());
    }
    Tensor::cat(&out, 1)
}

#[test]
fn llama_greedy_decoding_with_the_cache_equals_generate() {
    for case in ["tied", "llama3", "qwen2"] {
        let r = reference(case);
        let got = greedy(&r.model, &r.ids.narrow(1, 0, 6), 12);
        let want = &r.refs["greedy"];
        println!("{case}: greedy 6 + 12 tokens: {:?}", Vec::<i64>::try_from(got.get(0)).unwrap());
        assert_eq!(got.size(), want.size());
        assert!(got.equal(want), "{case}: greedy tokens differ from generate:\n{got}\n{want}");
    }
}

#[test]
fn llama_generation_config_overrides_special_tokens() {
    let src = reference_root().join("tied");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("generation_config.json"), r#"{"bos_token_id": 3, "eos_token_id": [2, 5]}"#)
        .unwrap();
    let (_vs, model, _) = LlamaForCausalLm::load_dir(dir.path(), Device::Cpu).unwrap();
    assert_eq!((model.info().bos_token_id, model.info().eos_token_ids.clone()), (Some(3), vec![2, 5]));
    std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
    let e = format!("{:#}", LlamaForCausalLm::load_dir(dir.path(), Device::Cpu).unwrap_err());
    assert!(e.contains("generation_config.json") && e.contains("eos_token_id"), "{e}");
}

#[test]
fn llama_runs_in_bfloat16() {
    // Smoke test of the half-precision path (RMSNorm in float32, rotary tables cast to the activations' kind,
    // the cache's chunk mask in bf16): close to the float32 logits, and the cache agrees with the full sequence.
    let Reference { mut vs, model, ids, refs } = reference("llama3");
    vs.bfloat16();
    let full = tch::no_grad(|| model.forward(&ids, None, false));
    assert_eq!(full.kind(), Kind::BFloat16);
    let scale = refs["logits"].abs().max().double_value(&[]);
    let d = max_abs_diff(&full, &refs["logits"]);
    let d_cache = max_abs_diff(&chunked(&model, &ids, &[4, 3, 1, 1, 1]), &full);
    println!(
        "llama3 bf16: logits max |Δ| vs float32 transformers = {d:.3e} (max |logit| {scale:.2}); cache {d_cache:.3e}"
    );
    assert!(d <= 0.05 * scale, "bf16 logits differ by {d:e}");
    assert!(d_cache <= 0.05 * scale, "bf16 cache differs by {d_cache:e}");
}

#[test]
fn llama_prefix_tuning_matches_peft_with_grouped_query_heads() {
    let case = "llama3";
    let Reference { mut vs, mut model, ids, refs } = reference(case);
    let cfg = PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 3, projection: Some(16) });
    apply_peft(&mut vs, &mut model, &cfg, &llama_peft_targets()).unwrap();
    let prefix: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("prefix_encoder."))
        .map(|(n, t)| (n, t.detach()))
        .collect();
    assert_eq!(prefix.len(), 5, "{:?}", prefix.iter().map(|p| &p.0).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    save_safetensors(&dir.path().join("prefix.safetensors"), &prefix, None).unwrap();
    let case_dir = reference_root().join(case);
    let out = run_python(PEFT_PREFIX_REFERENCE, &[case_dir.to_str().unwrap(), dir.path().to_str().unwrap()]).unwrap();
    assert_eq!(out.trim(), "ok");
    let want: HashMap<String, Tensor> =
        read_safetensors(dir.path().join("peft.safetensors")).unwrap().into_iter().collect();

    let logits = model.forward(&ids, None, false);
    let moved = max_abs_diff(&logits, &refs["logits"]);
    assert!(moved > 1e-3, "the prefix hardly changes the logits ({moved:e}): nothing was tested");
    let v = logits.size()[2];
    let loss = logits.narrow(1, 0, 9).reshape([-1, v]).cross_entropy_for_logits(&ids.narrow(1, 1, 9).reshape([-1]));
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
        "{case} + prefix (3 tokens, 2 KV heads): logits |Δ| {d_logits:.3e}, loss |Δ| {d_loss:.3e}, prefix gradients \
         |Δ| {d_grad:.3e}; cached steps |Δ| {d_cache:.3e}"
    );
    assert!(d_logits <= TOL && d_loss <= TOL && d_grad <= TOL && d_cache <= TOL);
}
