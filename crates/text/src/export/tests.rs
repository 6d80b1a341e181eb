//! Causal-LM exports checked against their consumers: transformers loads the hub folder, peft the adapter folder
//! (logits within 1e-4 of suite's PEFT model), and llama.cpp's gguf-py reads the GGUF file (every key, tensor and
//! byte checked against what convert_hf_to_gguf.py writes).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;
use suite_core::peft::{apply_peft, save_adapter, Ia3Config, LoraConfig, PeftConfig, PrefixConfig, Targets};
use suite_core::python::run_python;
use suite_core::weights::read_safetensors;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::models::{causal_peft_targets, copy_tokenizer_files, load_causal_lm};
use crate::task::{ADAPTER_FILE, ADAPTER_META};

const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");
const REFERENCE: &str = include_str!("reference.py");
const GGUF_REFERENCE: &str = include_str!("gguf_reference.py");

/// Logits must agree this closely with transformers/peft (float32 on both sides).
const TOLERANCE: f64 = 1e-4;

/// Tiny random `llama` (untied), `qwen2` (tied, q/k/v biases) and `gpt2` (`Conv1D` weights) hub folders, made once
/// per test process.
fn fixture(arch: &str) -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for (arch, seed) in [("llama", "3"), ("qwen2", "4"), ("gpt2", "5")] {
            let out = dir.path().join(arch);
            run_python(TINY_LM, &[out.to_str().unwrap(), "--arch", arch, "--seed", seed]).unwrap();
        }
        dir
    });
    root.path().join(arch)
}

fn ids() -> Vec<Vec<i64>> {
    vec![vec![5, 17, 42, 99, 3, 150, 7, 64, 128, 1, 77], vec![200, 13, 13, 8, 190, 45, 2, 66, 31, 100, 9]]
}

fn ids_tensor() -> Tensor {
    Tensor::from_slice2(&ids())
}

/// Applies `cfg` to the base model, moves every trained tensor away from its initial value (so that the adapter
/// changes the logits), saves the folder SFT would (adapter.safetensors + suite_adapter.json + tokenizer and
/// config files of the base) and returns suite's logits for [`ids`].
fn adapter_folder(base: &Path, cfg: &PeftConfig, out: &Path) -> Tensor {
    let model_type = crate::models::causal_model_type(&base.join("config.json")).unwrap();
    let (mut vs, mut model, _) = load_causal_lm(base, Device::Cpu).unwrap();
    let report = apply_peft(&mut vs, model.as_mut(), cfg, &causal_peft_targets(&model_type)).unwrap();
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, t) in vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
            let noise = t.randn_like() * 0.2;
            let value = if name.ends_with("ia3_l") || name.ends_with("lora_magnitude_vector") {
                &t * (noise + 1.0)
            } else {
                noise
            };
            t.shallow_clone().copy_(&value);
        }
    });
    std::fs::create_dir_all(out).unwrap();
    let base_id = base.to_str().unwrap();
    save_adapter(&out.join(ADAPTER_FILE), &vs, cfg, base_id, &report.base_checksum).unwrap();
    let meta = json!({"base_model": base_id, "method": cfg.method_name()});
    std::fs::write(out.join(ADAPTER_META), serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    copy_tokenizer_files(base, out).unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(base.join(f), out.join(f)).unwrap();
    }
    tch::no_grad(|| model.forward(&ids_tensor(), None, false))
}

/// Logits of each export as transformers/peft compute them, by job name.
fn reference_logits(jobs: Vec<serde_json::Value>, work: &Path) -> Vec<(String, Tensor)> {
    let spec = work.join("spec.json");
    std::fs::write(&spec, json!({"ids": ids(), "jobs": jobs}).to_string()).unwrap();
    let out = work.join("reference.safetensors");
    run_python(REFERENCE, &[spec.to_str().unwrap(), out.to_str().unwrap()]).unwrap();
    read_safetensors(&out).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn lora(r: i64, alpha: f64, targets: Option<Targets>) -> LoraConfig {
    LoraConfig { r, alpha, targets, ..LoraConfig::default() }
}

/// The methods exported for each architecture: what `--format hub` merges and `--format peft` writes.
fn methods(arch: &str) -> Vec<(&'static str, PeftConfig)> {
    let dora_targets = if arch == "gpt2" { "c_attn,c_fc" } else { "q_proj,k_proj,o_proj,up_proj" };
    vec![
        ("lora", PeftConfig::Lora(lora(4, 8.0, None))),
        ("lora_all", PeftConfig::Lora(LoraConfig { rslora: true, ..lora(2, 5.0, Some(Targets::AllLinear)) })),
        ("dora", PeftConfig::Dora(lora(4, 16.0, Some(Targets::parse(dora_targets).unwrap())))),
        ("ia3", PeftConfig::Ia3(Ia3Config::default())),
    ]
}

const ARCHS: [&str; 3] = ["llama", "qwen2", "gpt2"];

/// LoRA, rsLoRA on every linear layer, DoRA and (IA)³ adapters of tiny Llama, Qwen2 and GPT-2 models: the merged hub
/// export loaded by `AutoModelForCausalLM` and the peft export loaded by `PeftModel.from_pretrained` give suite's
/// logits within 1e-4; the full model exports as itself.
#[test]
fn hub_and_peft_exports_load_in_transformers_and_peft() {
    let work = tempfile::tempdir().unwrap();
    let mut ours = Vec::new();
    let mut jobs = Vec::new();
    for arch in ARCHS {
        let base = fixture(arch);
        for (method, cfg) in methods(arch) {
            let name = format!("{arch}_{method}");
            let adapter = work.path().join(&name);
            ours.push((name.clone(), adapter_folder(&base, &cfg, &adapter)));
            let mut ckpt = LmCheckpoint::load(&adapter).unwrap();
            assert!(ckpt.is_peft());
            let hub = work.path().join(format!("{name}_hub"));
            export_hub(&ckpt, &hub, WeightDtype::F32).unwrap();
            let peft = work.path().join(format!("{name}_peft"));
            export_peft(&mut ckpt, &peft, None).unwrap();
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
            assert_eq!(config["base_model_name_or_path"], base.to_str().unwrap());
            jobs.push(json!({"name": format!("{name}_hub"), "kind": "hub", "dir": hub}));
            jobs.push(json!({"name": format!("{name}_peft"), "kind": "peft", "dir": peft, "base": base}));
        }
        // A full model: the export is the model itself.
        let ckpt = LmCheckpoint::load(&base).unwrap();
        assert!(!ckpt.is_peft());
        let hub = work.path().join(format!("{arch}_full_hub"));
        export_hub(&ckpt, &hub, WeightDtype::F32).unwrap();
        let (_, model, _) = load_causal_lm(&base, Device::Cpu).unwrap();
        ours.push((format!("{arch}_full"), tch::no_grad(|| model.forward(&ids_tensor(), None, false))));
        jobs.push(json!({"name": format!("{arch}_full_hub"), "kind": "hub", "dir": hub}));
    }
    let theirs = reference_logits(jobs, work.path());
    let base_logits: Vec<(String, Tensor)> = ARCHS
        .iter()
        .map(|a| (a.to_string(), ours.iter().find(|(n, _)| *n == format!("{a}_full")).unwrap().1.shallow_clone()))
        .collect();
    for (name, logits) in &ours {
        let arch = name.split('_').next().unwrap();
        let base = &base_logits.iter().find(|(a, _)| a == arch).unwrap().1;
        if !name.ends_with("_full") {
            let moved = max_abs_diff(logits, base);
            assert!(moved > 1e-2, "{name}: the adapter hardly changes the logits ({moved:e}): nothing was tested");
        }
        for kind in ["hub", "peft"] {
            let Some((_, reference)) = theirs.iter().find(|(n, _)| *n == format!("{name}_{kind}")) else { continue };
            let d = max_abs_diff(logits, reference);
            println!(
                "{name} --format {kind}: logits |Δ| {d:.2e} (max |logit| {:.2})",
                logits.abs().max().double_value(&[])
            );
            assert!(d < TOLERANCE, "{name} --format {kind}: logits differ by {d:e}");
        }
    }
}

/// Prefix tuning (with its reparameterisation MLP) and P-tuning v2 export to peft's `PREFIX_TUNING` with the
/// evaluated table, which peft loads onto the grouped-query Llama and Qwen2 and onto GPT-2 (logits within 1e-4); merging them
/// into the weights is refused with a pointer to `--format peft`.
#[test]
fn prefix_methods_export_to_peft_and_refuse_merging() {
    let work = tempfile::tempdir().unwrap();
    let mut ours = Vec::new();
    let mut jobs = Vec::new();
    let cases = [
        ("prefix", PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 3, projection: Some(16) })),
        ("ptuning2", PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 4, projection: None })),
    ];
    for arch in ARCHS {
        let base = fixture(arch);
        for (method, cfg) in &cases {
            let name = format!("{arch}_{method}");
            let adapter = work.path().join(&name);
            ours.push((name.clone(), adapter_folder(&base, cfg, &adapter)));
            let mut ckpt = LmCheckpoint::load(&adapter).unwrap();
            let e = format!("{:#}", export_hub(&ckpt, &work.path().join("no"), WeightDtype::F32).unwrap_err());
            assert!(e.contains("--format peft") && e.contains("cannot be merged"), "{e}");
            let peft = work.path().join(format!("{name}_peft"));
            export_peft(&mut ckpt, &peft, Some("my/base")).unwrap();
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
            assert_eq!(config["base_model_name_or_path"], "my/base");
            jobs.push(json!({"name": format!("{name}_peft"), "kind": "peft", "dir": peft, "base": base}));
        }
    }
    let theirs = reference_logits(jobs, work.path());
    for (name, logits) in &ours {
        let reference = &theirs.iter().find(|(n, _)| *n == format!("{name}_peft")).unwrap().1;
        let d = max_abs_diff(logits, reference);
        println!("{name} --format peft: logits |Δ| {d:.2e}");
        assert!(d < TOLERANCE, "{name}: logits differ by {d:e}");
    }
}

/// f16 and bf16 hub exports hold the float32 weights rounded to the type, with `dtype` in config.json.
#[test]
fn hub_export_in_half_precision_rounds_the_weights() {
    let work = tempfile::tempdir().unwrap();
    let base = fixture("qwen2");
    let ckpt = LmCheckpoint::load(&base).unwrap();
    for (dtype, kind) in [(WeightDtype::F16, Kind::Half), (WeightDtype::Bf16, Kind::BFloat16)] {
        let out = work.path().join(dtype.torch_name());
        export_hub(&ckpt, &out, dtype).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["dtype"], dtype.torch_name());
        let source = ckpt.merged_weights().unwrap();
        let written = read_safetensors(out.join("model.safetensors")).unwrap();
        assert_eq!(written.len(), source.len());
        for ((n1, w), (n2, s)) in written.iter().zip(&source) {
            assert_eq!(n1, n2);
            assert_eq!(w.kind(), kind, "{n1}");
            assert!(w.equal(&s.to_kind(kind)), "{n1}: not the rounded weight");
        }
        for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            assert!(out.join(f).is_file(), "{f} not exported");
        }
    }
}

/// GGUF f16 and q8_0 files of the full Llama, the tied Qwen2 and a LoRA-merged Llama, read back by gguf-py:
/// metadata, tensor names/shapes/types, f16 data equal to numpy's rounding and Q8_0 blocks byte-identical to
/// `gguf.quants.quantize`, against weights that peft's `merge_and_unload` computes.
#[test]
fn gguf_files_match_llama_cpp_conversion() {
    let work = tempfile::tempdir().unwrap();
    let lora_dir = work.path().join("llama_lora");
    let _ = adapter_folder(&fixture("llama"), &PeftConfig::Lora(lora(4, 8.0, Some(Targets::AllLinear))), &lora_dir);
    let peft_dir = work.path().join("llama_lora_peft");
    let mut ckpt = LmCheckpoint::load(&lora_dir).unwrap();
    export_peft(&mut ckpt, &peft_dir, None).unwrap();
    // Rope scaling: linear (metadata keys) and Llama 3.1's (a rope_freqs tensor, the three wavelength bands hit).
    let mut cases = vec![(fixture("llama"), None), (fixture("qwen2"), None), (lora_dir.clone(), Some(peft_dir))];
    let scalings = [
        ("llama_linear", json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})),
        (
            "llama_llama3",
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 256, "rope_theta": 500000.0}),
        ),
    ];
    for (name, rope) in scalings {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture("llama")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        config["rope_parameters"] = rope;
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        cases.push((dir, None));
    }
    for (dir, peft) in &cases {
        let ckpt = LmCheckpoint::load(dir).unwrap();
        for ty in [GgufType::F16, GgufType::Q8_0] {
            let path = work.path().join(format!("{}-{}.gguf", dir.file_name().unwrap().to_str().unwrap(), ty.name()));
            export_gguf(&ckpt, &path, ty).unwrap();
            let name = dir.file_name().unwrap().to_str().unwrap();
            let mut args = vec![path.to_str().unwrap(), ckpt.base_dir.to_str().unwrap(), name, ty.name()];
            if let Some(p) = peft {
                args.push(p.to_str().unwrap());
            }
            let out = run_python(GGUF_REFERENCE, &args).unwrap();
            println!("{name} {}: {}", ty.name(), out.trim());
        }
    }
}

/// ggml's Q8_0 rounding on the cases that matter: ties away from zero, an all-zero block, the extremes.
#[test]
fn q8_0_blocks_round_as_ggml() {
    let mut block = vec![0f32; 32];
    block[0] = 127.0;
    block[1] = -127.0;
    block[2] = 0.5;
    block[3] = -0.5;
    block[4] = 1.5;
    let q = quantize_q8_0(&block);
    assert_eq!(q.len(), 34);
    assert_eq!(half::f16::from_le_bytes([q[0], q[1]]).to_f32(), 1.0);
    assert_eq!(&q[2..7], &[127u8, (-127i8) as u8, 1, (-1i8) as u8, 2]);
    let zeros = quantize_q8_0(&[0f32; 32]);
    assert!(zeros.iter().all(|&b| b == 0));
}

/// The Q/K permutation interleaves the two rotary halves of each head's rows (`[a0 a1 b0 b1]` → `[a0 b0 a1 b1]`).
#[test]
fn permute_rows_interleaves_rotary_halves_per_head() {
    let w = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([8, 1]);
    let p = permute_rows(&w, 2);
    assert_eq!(Vec::<f32>::try_from(p.view([-1])).unwrap(), [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
}

/// GGUF export covers the Llama family only; GPT-2 is refused by name.
#[test]
fn gguf_refuses_other_architectures() {
    let ckpt = LmCheckpoint::load(&fixture("gpt2")).unwrap();
    let e = gguf_file(&ckpt, GgufType::F16).unwrap_err().to_string();
    assert!(e.contains("\"gpt2\"") && e.contains("llama and qwen2"), "{e}");
}
