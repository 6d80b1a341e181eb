//! The decoder-only benchmarks of `suite bench`, on one random Llama (a SmolLM2-135M-like shape at a third of the
//! depth: width 576, 10 layers, 9 query and 3 key/value heads, vocabulary 8192, about 40 M parameters) that the
//! PyTorch side writes once with transformers and both sides then load:
//!
//! - `sft-step`: LoRA SFT steps (r 16, alpha 32, every projection of attention and MLP, as TRL's and torchtune's
//!   LoRA recipes target) on a batch of random tokens, causal-LM loss over every token, backward, AdamW,
//!   zero_grad, against transformers + peft; with the peak resident memory each side adds.
//! - `generate`: greedy generation of a fixed number of new tokens after a random prompt, KV cache on, against
//!   transformers' `generate`; the tokens must be the same on both sides.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;
use suite_core::optim::{param_groups, OptimizerConfig};
use suite_core::peft::{apply_peft, LoraConfig, PeftConfig, Targets};
use suite_text::generate::{generate_ids, GenerationConfig, SamplingParams};
use suite_text::models::{causal_peft_targets, load_causal_lm};
use tch::{Device, Kind, Reduction, Tensor};

use super::{device_name, run_reference, step_side, sync, thread_args, Report, RssWatch, Side, TempDir, RESNET_WARMUP};

const LM_PY: &str = include_str!("../../bench/lm.py");
const SFT_BATCH: i64 = 4;
const SFT_SEQ: i64 = 256;
const SFT_LR: f64 = 2e-4;
const PROMPT: i64 = 32;
const NEW_TOKENS: usize = 64;

/// Writes the benchmark model with the PyTorch side's script.
fn make_model(dir: &Path) -> Result<u64> {
    let v = run_reference("the benchmark model", LM_PY, &["make".into(), dir.display().to_string()])?;
    Ok(v["parameters"].as_u64().unwrap_or(0))
}

/// `suite bench sft-step`.
pub fn sft_step(iters: usize, device: Device) -> Result<Report> {
    let tmp = TempDir::new()?;
    let dir = tmp.0.join("model");
    let params = make_model(&dir)?;
    eprintln!("suite: {RESNET_WARMUP} warm-up + {iters} LoRA SFT steps…");
    let suite = sft_step_suite(&dir, iters, device)?;
    eprintln!("PyTorch eager (transformers + peft): the same…");
    let mut args = vec!["sft-step".to_string(), dir.display().to_string()];
    args.extend(thread_args(device));
    for (k, v) in [
        ("--batch", SFT_BATCH.to_string()),
        ("--seq", SFT_SEQ.to_string()),
        ("--warmup", RESNET_WARMUP.to_string()),
        ("--iters", iters.to_string()),
        ("--lr", SFT_LR.to_string()),
    ] {
        args.extend([k.to_string(), v]);
    }
    let v = run_reference("sft-step", LM_PY, &args)?;
    let pytorch =
        step_side(&v, SFT_BATCH as usize, &["loss", "trainable", "peak_rss_mib", "torch", "transformers", "peft"])?;
    Ok(Report {
        benchmark: "sft-step".into(),
        description: format!(
            "LoRA SFT step of a random {:.0} M-parameter Llama (width 576, 10 layers, GQA 9/3 heads, vocabulary \
             8192): LoRA r 16, alpha 32 on q/k/v/o/gate/up/down, batch {SFT_BATCH} x {SFT_SEQ} tokens, causal-LM \
             loss over every token, backward, AdamW (lr {SFT_LR}), zero_grad; PyTorch side is transformers' \
             LlamaForCausalLM + peft; {RESNET_WARMUP} warm-up steps, then {iters} timed; peak RSS is what each side \
             adds to its resident memory",
            params as f64 / 1e6
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters,
        unit: "sequences",
        ratio: suite.median_images_per_sec.unwrap_or(f64::NAN) / pytorch.median_images_per_sec.unwrap_or(f64::NAN),
        ratio_of_means: Some(suite.images_per_sec / pytorch.images_per_sec),
        suite,
        pytorch,
        aim: 1.1,
    })
}

fn sft_step_suite(dir: &Path, iters: usize, device: Device) -> Result<Side> {
    tch::manual_seed(0);
    let rss = RssWatch::start();
    let (mut vs, mut model, _) = load_causal_lm(dir, device)?;
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let cfg = PeftConfig::Lora(LoraConfig {
        r: 16,
        alpha: 32.0,
        targets: Some(Targets::Names(targets.iter().map(|s| s.to_string()).collect())),
        ..LoraConfig::default()
    });
    let report = apply_peft(&mut vs, model.as_mut(), &cfg, &causal_peft_targets("llama"))?;
    let mut optimizer = OptimizerConfig::default().build(param_groups(&vs, &[], 0.0));
    let vocab = model.info().vocab_size;
    let ids = Tensor::randint(vocab, [SFT_BATCH, SFT_SEQ], (Kind::Int64, device));
    let mut forward = || {
        let logits = model.forward(&ids, None, true);
        let n = SFT_SEQ - 1;
        logits.narrow(1, 0, n).reshape([-1, vocab]).cross_entropy_loss::<Tensor>(
            &ids.narrow(1, 1, n).reshape([-1]),
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
    };
    let mut side = super::time_training(
        iters,
        RESNET_WARMUP,
        SFT_BATCH as usize,
        device,
        &mut forward,
        optimizer.as_mut(),
        SFT_LR,
    );
    side.extra["trainable"] = report.trainable.into();
    side.extra["peak_rss_mib"] = json!(rss.peak_added_mib());
    Ok(side)
}

/// `suite bench generate`.
pub fn generate(iters: usize, device: Device) -> Result<Report> {
    let tmp = TempDir::new()?;
    let dir = tmp.0.join("model");
    let params = make_model(&dir)?;
    eprintln!("PyTorch eager (transformers generate): {RESNET_WARMUP} warm-up + {iters} greedy generations…");
    let mut args = vec!["generate".to_string(), dir.display().to_string()];
    args.extend(thread_args(device));
    for (k, v) in [
        ("--prompt", PROMPT.to_string()),
        ("--new-tokens", NEW_TOKENS.to_string()),
        ("--warmup", RESNET_WARMUP.to_string()),
        ("--iters", iters.to_string()),
    ] {
        args.extend([k.to_string(), v]);
    }
    let v = run_reference("generate", LM_PY, &args)?;
    let pytorch = step_side(&v, NEW_TOKENS, &["peak_rss_mib", "torch", "transformers"])?;
    let expected: Vec<i64> = serde_json::from_value(v["tokens"].clone()).unwrap_or_default();
    let prompt: Vec<i64> = serde_json::from_value(v["prompt"].clone()).unwrap_or_default();
    eprintln!("suite: the same…");
    let (suite, tokens) = generate_suite(&dir, &prompt, iters, device)?;
    if tokens != expected {
        bail!("suite and transformers generated different tokens:\n  suite        {tokens:?}\n  transformers {expected:?}");
    }
    Ok(Report {
        benchmark: "generate".into(),
        description: format!(
            "greedy generation with a KV cache, batch 1: {NEW_TOKENS} new tokens after a {PROMPT}-token random \
             prompt, random {:.0} M-parameter Llama (width 576, 10 layers, GQA 9/3, vocabulary 8192); PyTorch side \
             is transformers' `generate`; both sides produce the same tokens (checked); {RESNET_WARMUP} warm-up \
             runs, then {iters} timed",
            params as f64 / 1e6
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters,
        unit: "tokens",
        ratio: suite.median_images_per_sec.unwrap_or(f64::NAN) / pytorch.median_images_per_sec.unwrap_or(f64::NAN),
        ratio_of_means: Some(suite.images_per_sec / pytorch.images_per_sec),
        suite,
        pytorch,
        aim: 1.0,
    })
}

fn generate_suite(dir: &Path, prompt: &[i64], iters: usize, device: Device) -> Result<(Side, Vec<i64>)> {
    let rss = RssWatch::start();
    let (_vs, model, _) = load_causal_lm(dir, device)?;
    let prompt = prompt.to_vec();
    let cfg = GenerationConfig {
        sampling: SamplingParams::greedy(),
        seed: 0,
        max_new_tokens: NEW_TOKENS,
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
    };
    let mut times = Vec::new();
    let mut tokens = Vec::new();
    let _guard = tch::no_grad_guard();
    for i in 0..RESNET_WARMUP + iters {
        let t0 = Instant::now();
        let out = generate_ids(model.as_ref(), std::slice::from_ref(&prompt), &cfg, &mut |_, _| true)?;
        sync(device);
        if i >= RESNET_WARMUP {
            times.push(t0.elapsed().as_secs_f64());
        }
        tokens = out.into_iter().next().unwrap_or_default();
    }
    let seconds: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let side = Side {
        seconds,
        images_per_sec: (NEW_TOKENS * iters) as f64 / seconds,
        median_images_per_sec: Some(NEW_TOKENS as f64 / times[times.len() / 2]),
        phase_ms: None,
        extra: json!({ "peak_rss_mib": rss.peak_added_mib() }),
    };
    Ok((side, tokens))
}
