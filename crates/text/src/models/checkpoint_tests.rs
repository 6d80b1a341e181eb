//! Gradient checkpointing of the Llama decoder layers: the same loss and LoRA gradients as without it (dropout
//! included), less peak memory, and an error instead of a recomputation once the model has changed.
//!
//! libtorch's random generator is process-wide and other tests draw from it on parallel threads, so every run whose
//! result depends on dropout masks, and every memory measurement, happens in a child process: this test binary
//! re-run on [`child_step`] alone, configured through `SUITE_CHECKPOINT_CHILD`.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use suite_core::peft::{apply_peft, LoraConfig, PeftConfig, Targets};
use suite_core::weights::{read_safetensors, save_safetensors};
use tch::{nn, Device, Kind, Tensor};

use super::*;

const CHILD_ENV: &str = "SUITE_CHECKPOINT_CHILD";

/// A Llama with LoRA on every projection (random B, so every LoRA tensor gets a gradient), `dropout` on the
/// attention probabilities and the LoRA inputs.
fn lora_llama(config: &Value, dropout: f64) -> (nn::VarStore, LlamaForCausalLm) {
    tch::manual_seed(0);
    let mut c = config.clone();
    c["attention_dropout"] = json!(dropout);
    let config = LlamaConfig::from_json(&c).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = LlamaForCausalLm::new(vs.root(), &config);
    let names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let cfg = PeftConfig::Lora(LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout,
        targets: Some(Targets::Names(names.iter().map(|n| n.to_string()).collect())),
        ..LoraConfig::default()
    });
    apply_peft(&mut vs, &mut model, &cfg, &llama_peft_targets()).unwrap();
    // By name: `variables()` comes in hash order, which differs between runs.
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut var) in vars {
        if name.contains(".lora_B") {
            tch::no_grad(|| var.copy_(&(var.randn_like() * 0.2)));
        }
    }
    (vs, model)
}

fn tiny() -> Value {
    json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128})
}

fn large() -> Value {
    json!({"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 8,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512})
}

/// Two packed examples per row (segment ids, positions restarting), so the layout reaches the recomputation.
fn packed_batch(batch: i64, len: i64, vocab: i64) -> (Tensor, BatchLayout) {
    let ids = Tensor::randint(vocab, [batch, len], (Kind::Int64, Device::Cpu));
    let first = len / 3;
    let seg = Tensor::cat(
        &[
            Tensor::zeros([batch, first], (Kind::Int64, Device::Cpu)),
            Tensor::ones([batch, len - first], (Kind::Int64, Device::Cpu)),
        ],
        1,
    );
    let pos = Tensor::cat(
        &[Tensor::arange(first, (Kind::Int64, Device::Cpu)), Tensor::arange(len - first, (Kind::Int64, Device::Cpu))],
        0,
    )
    .unsqueeze(0)
    .expand([batch, len], false)
    .contiguous();
    (ids, BatchLayout { attention_mask: None, position_ids: Some(pos), segment_ids: Some(seg) })
}

fn causal_loss(model: &LlamaForCausalLm, ids: &Tensor, layout: &BatchLayout) -> Tensor {
    let logits = model.forward_layout(ids, layout, None, true);
    let (b, t, v) = logits.size3().unwrap();
    logits
        .narrow(1, 0, t - 1)
        .reshape([b * (t - 1), v])
        .cross_entropy_for_logits(&ids.narrow(1, 1, t - 1).reshape([-1]))
}

fn status_kb(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line =
        status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One training step in this process, as `SUITE_CHECKPOINT_CHILD` describes: `{"config": "tiny"|"large",
/// "checkpointing": bool, "dropout": f64, "seed": i64, "out": dir}`. Writes the loss and every trainable tensor's
/// gradient to `out/grads.safetensors` and the memory numbers and step time to `out/memory.json`.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child_step() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let large_config = spec["config"] == "large";
    let (config, batch, len) = if large_config { (large(), 4, 512) } else { (tiny(), 2, 24) };
    let (vs, mut model) = lora_llama(&config, spec["dropout"].as_f64().unwrap());
    model.set_gradient_checkpointing(spec["checkpointing"].as_bool().unwrap());
    tch::manual_seed(spec["seed"].as_i64().unwrap());
    let (ids, layout) = packed_batch(batch, len, config["vocab_size"].as_i64().unwrap());
    let rss_before = status_kb("VmRSS:");
    let start = std::time::Instant::now();
    let loss = causal_loss(&model, &ids, &layout);
    loss.backward();
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:");
    let out = Path::new(spec["out"].as_str().unwrap());
    let mut tensors = vec![("loss".to_string(), loss.detach().reshape([1]))];
    for (name, var) in vs.variables() {
        if var.requires_grad() {
            tensors.push((format!("grad.{name}"), var.grad()));
        }
    }
    save_safetensors(&out.join("grads.safetensors"), &tensors, None).unwrap();
    let memory = json!({"rss_before_kb": rss_before, "peak_kb": peak, "seconds": seconds});
    std::fs::write(out.join("memory.json"), memory.to_string()).unwrap();
}

/// Runs [`child_step`] in a fresh process; returns its loss and gradients by name and its memory numbers.
fn run_child(config: &str, checkpointing: bool, dropout: f64, seed: i64) -> (Vec<(String, Tensor)>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let spec = json!({"config": config, "checkpointing": checkpointing, "dropout": dropout, "seed": seed,
                      "out": dir.path()});
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["models::checkpoint_tests::child_step", "--exact", "--ignored", "--test-threads=1"])
        .env(CHILD_ENV, spec.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
    let mut grads = read_safetensors(dir.path().join("grads.safetensors")).unwrap();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    let memory = serde_json::from_str(&std::fs::read_to_string(dir.path().join("memory.json")).unwrap()).unwrap();
    (grads, memory)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn llama_lora_gradients_equal_with_checkpointing() {
    let (plain, _) = run_child("tiny", false, 0.1, 11);
    let (ckpt, _) = run_child("tiny", true, 0.1, 11);
    // Loss + 3 layers × 7 projections × {A, B}.
    assert_eq!(plain.len(), 1 + 3 * 7 * 2);
    let names: Vec<&String> = plain.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ckpt.iter().map(|(n, _)| n).collect::<Vec<_>>());
    let mut d_grad = 0.0f64;
    for ((name, p), (_, c)) in plain.iter().zip(&ckpt) {
        let d = max_abs_diff(p, c);
        assert!(d <= 1e-6, "{name}: |Δ| {d:e}");
        if name != "loss" {
            d_grad = d_grad.max(d);
        }
    }
    let loss = |g: &[(String, Tensor)]| g.iter().find(|(n, _)| n == "loss").unwrap().1.shallow_clone();
    let d_loss = max_abs_diff(&loss(&plain), &loss(&ckpt));
    // Dropout draws: without it the gradients differ, so equal masks above are not a given.
    let (no_dropout, _) = run_child("tiny", false, 0.0, 11);
    let moved = plain.iter().zip(&no_dropout).map(|((_, a), (_, b))| max_abs_diff(a, b)).fold(0.0, f64::max);
    println!("checkpointed vs plain (dropout 0.1): loss |Δ| {d_loss:.3e}, LoRA gradients |Δ| {d_grad:.3e}; dropout moves them by {moved:.3e}");
    assert!(moved > 1e-4, "dropout hardly changes the gradients ({moved:e}): nothing was tested");
}

#[test]
fn llama_checkpointing_lowers_peak_memory() {
    // 8 layers, batch 4 × 512 tokens, hidden 256: the activations of the plain step dominate the process.
    let (plain, plain_mem) = run_child("large", false, 0.0, 3);
    let (ckpt, ckpt_mem) = run_child("large", true, 0.0, 3);
    let growth = |m: &Value| (m["peak_kb"].as_i64().unwrap() - m["rss_before_kb"].as_i64().unwrap()) as f64 / 1024.0;
    let (g_plain, g_ckpt) = (growth(&plain_mem), growth(&ckpt_mem));
    let d = plain.iter().zip(&ckpt).map(|((_, a), (_, b))| max_abs_diff(a, b)).fold(0.0, f64::max);
    println!(
        "peak RSS above the loaded model during one step: plain {g_plain:.0} MiB, checkpointed {g_ckpt:.0} MiB \
         (peaks {} / {} MiB); step {:.2} s / {:.2} s; loss and gradients |Δ| {d:.3e}",
        plain_mem["peak_kb"].as_i64().unwrap() / 1024,
        ckpt_mem["peak_kb"].as_i64().unwrap() / 1024,
        plain_mem["seconds"].as_f64().unwrap(),
        ckpt_mem["seconds"].as_f64().unwrap(),
    );
    assert!(d <= 1e-5, "large model: |Δ| {d:e}");
    // Alone about 0.45 (280 vs 620 MiB); 0.53 was seen while the rest of the crate's tests ran beside it.
    assert!(g_ckpt < 0.6 * g_plain, "checkpointing saved too little: {g_ckpt:.0} vs {g_plain:.0} MiB");
}

#[test]
fn backward_after_the_model_changed_is_an_error() {
    let (_vs, mut model) = lora_llama(&tiny(), 0.0);
    model.set_gradient_checkpointing(true);
    let (ids, layout) = packed_batch(1, 8, 128);
    let loss = causal_loss(&model, &ids, &layout);
    // Replaces the liveness token, as adding adapters would.
    model.set_gradient_checkpointing(true);
    let err = loss.f_backward().expect_err("backward through a stale graph must fail");
    assert!(err.to_string().contains("between the forward pass and this backward pass"), "{err}");

    let loss = causal_loss(&model, &ids, &layout);
    drop(model);
    let err = loss.f_backward().expect_err("backward after the model was dropped must fail");
    assert!(err.to_string().contains("model was dropped"), "{err}");
}

#[test]
fn checkpointing_is_off_outside_training_and_with_a_cache() {
    let (_vs, mut model) = lora_llama(&tiny(), 0.0);
    let ids = Tensor::randint(128, [1, 6], (Kind::Int64, Device::Cpu));
    let plain = model.forward(&ids, None, false);
    model.set_gradient_checkpointing(true);
    let eval = model.forward(&ids, None, false);
    let mut cache = model.new_cache();
    let cached = model.forward(&ids, Some(&mut cache), true);
    assert_eq!(max_abs_diff(&plain, &eval), 0.0);
    assert!(max_abs_diff(&plain, &cached) <= 1e-5);
    assert_eq!(cache.len(), 6);
}
