//! End to end: `suite export --format hub|peft|gguf` of a causal LM's LoRA adapter folder (the layout SFT saves,
//! made here by suite's own `apply_peft` + `save_adapter` on a tiny Llama from `tests/py/tiny_lm.py`). The hub
//! folder loads in transformers and the peft folder in peft with suite's logits (within 1e-4); the GGUF file is
//! read back by llama.cpp's gguf-py and checked against peft's merged weights; bad requests are one error line.

mod common;

use std::path::Path;

use common::{python, python_file, s, suite, tmp};
use serde_json::json;
use suite_core::peft::{apply_peft, save_adapter, LoraConfig, PeftConfig, PrefixConfig, Targets};
use suite_text::models::{causal_peft_targets, copy_tokenizer_files, load_causal_lm};
use tch::{Device, Tensor};

/// The shared fixture generator and the GGUF oracle, by absolute path (tests run in the package folder).
const TINY_LM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/tiny_lm.py");
const GGUF_ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/text/src/export/gguf_reference.py");

const IDS: [[i64; 9]; 2] = [[5, 17, 42, 99, 3, 150, 7, 64, 128], [200, 13, 13, 8, 190, 45, 2, 66, 31]];

/// Logits of a hub folder (transformers) or of a peft folder on its base (peft), as JSON.
const LOGITS: &str = r#"
import sys, json, warnings, torch
from transformers import AutoModelForCausalLM
warnings.filterwarnings("ignore")
kind, folder, ids = sys.argv[1], sys.argv[2], torch.tensor(json.loads(sys.argv[3]))
if kind == "hub":
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
else:
    from peft import PeftModel
    base = json.load(open(folder + "/adapter_config.json"))["base_model_name_or_path"]
    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), folder)
with torch.no_grad():
    print(json.dumps(m.eval()(input_ids=ids).logits.flatten().tolist()))
"#;

/// Saves `cfg` on the base model as SFT does (adapter.safetensors + suite_adapter.json + tokenizer and configs of
/// the base), with every trained tensor moved off its initial value; returns suite's logits for [`IDS`].
fn adapter_folder(base: &Path, cfg: &PeftConfig, out: &Path) -> Vec<f64> {
    let (mut vs, mut model, _) = load_causal_lm(base, Device::Cpu).unwrap();
    let report = apply_peft(&mut vs, model.as_mut(), cfg, &causal_peft_targets("llama")).unwrap();
    tch::manual_seed(11);
    tch::no_grad(|| {
        for (_, t) in vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
            t.shallow_clone().copy_(&(t.randn_like() * 0.2));
        }
    });
    std::fs::create_dir_all(out).unwrap();
    save_adapter(&out.join("adapter.safetensors"), &vs, cfg, s(base), &report.base_checksum).unwrap();
    let meta = json!({"base_model": s(base), "method": cfg.method_name()});
    std::fs::write(out.join("suite_adapter.json"), meta.to_string()).unwrap();
    copy_tokenizer_files(base, out).unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(base.join(f), out.join(f)).unwrap();
    }
    let ids = Tensor::from_slice2(&IDS);
    let logits = tch::no_grad(|| model.forward(&ids, None, false));
    Vec::<f64>::try_from(logits.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}

fn reference(kind: &str, folder: &Path) -> Vec<f64> {
    serde_json::from_str(&python(LOGITS, &[kind, s(folder), &json!(IDS).to_string()])).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn export_lora_adapter_as_hub_peft_and_gguf() {
    let dir = tmp();
    let base = dir.path().join("base");
    python_file(TINY_LM, &[s(&base), "--arch", "llama", "--seed", "5"]);
    // A run folder whose best/ is the adapter, as SFT leaves it.
    let run = dir.path().join("run");
    let adapter = run.join("best");
    let cfg =
        PeftConfig::Lora(LoraConfig { r: 4, alpha: 8.0, targets: Some(Targets::AllLinear), ..Default::default() });
    let ours = adapter_folder(&base, &cfg, &adapter);

    let hub = dir.path().join("hub");
    let out = suite(dir.path(), &["export", "--run", s(&run), "--format", "hub", "--out", s(&hub)]);
    assert!(out.assert_ok().stdout.contains("lora merged"), "{}", out.show());
    let d_hub = max_diff(&ours, &reference("hub", &hub));
    println!("--format hub (LoRA merged) vs transformers: logits |Δ| {d_hub:.2e}");
    assert!(d_hub < 1e-4, "{d_hub}");

    let peft = dir.path().join("peft");
    suite(dir.path(), &["export", "--model", s(&adapter), "--format", "peft", "--out", s(&peft)]).assert_ok();
    let d_peft = max_diff(&ours, &reference("peft", &peft));
    println!("--format peft vs PeftModel.from_pretrained: logits |Δ| {d_peft:.2e}");
    assert!(d_peft < 1e-4, "{d_peft}");

    let half = dir.path().join("hub16");
    suite(dir.path(), &["export", "--model", s(&adapter), "--out", s(&half), "--dtype", "f16"]).assert_ok();
    assert_eq!(common::read_json(&half.join("config.json"))["dtype"], "float16");

    let gguf_dir = dir.path().join("gguf");
    let out = suite(
        dir.path(),
        &["export", "--model", s(&adapter), "--format", "gguf", "--gguf-type", "q8_0", "--out", s(&gguf_dir)],
    );
    out.assert_ok();
    let file = gguf_dir.join("model-q8_0.gguf");
    assert!(file.is_file(), "{}", out.show());
    let checked = python_file(GGUF_ORACLE, &[s(&file), s(&base), "best", "q8_0", s(&peft)]);
    println!("--format gguf --gguf-type q8_0 read by gguf-py: {}", checked.trim());
    // --precision int8 is the same Q8_0 file.
    let int8 = dir.path().join("int8.gguf");
    suite(dir.path(), &["export", "--model", s(&adapter), "--precision", "int8", "--out", s(&int8)]).assert_ok();
    assert!(std::fs::read(&int8).unwrap() == std::fs::read(&file).unwrap(), "--precision int8 vs --gguf-type q8_0");
    let named = dir.path().join("one.gguf");
    suite(dir.path(), &["export", "--model", s(&base), "--format", "gguf", "--out", s(&named)]).assert_ok();
    python_file(GGUF_ORACLE, &[s(&named), s(&base), "base", "f16"]);
}

#[test]
fn export_refusals_are_one_error_line() {
    let dir = tmp();
    let base = dir.path().join("base");
    python_file(TINY_LM, &[s(&base), "--arch", "qwen2", "--seed", "6"]);
    let prefix = dir.path().join("prefix");
    adapter_folder(&base, &PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 2, projection: None }), &prefix);
    let out_dir = dir.path().join("out");
    let o = s(&out_dir);

    let r = suite(dir.path(), &["export", "--model", s(&prefix), "--format", "hub", "--out", o]);
    r.assert_error_after_progress(&["--format peft", "prefix", "cannot be merged"]);
    let r = suite(dir.path(), &["export", "--model", s(&prefix), "--format", "gguf", "--out", o]);
    r.assert_error_after_progress(&["--format peft", "prefix"]);
    let r = suite(dir.path(), &["export", "--model", s(&base), "--format", "peft", "--out", o]);
    r.assert_error_after_progress(&["full model", "--format hub"]);
    let r = suite(dir.path(), &["export", "--model", s(&base), "--format", "onnx", "--out", o]);
    assert_eq!(r.code, Some(2));
    r.assert_error_after_progress(&["--format \"onnx\"", "hub, peft or gguf"]);
    let r = suite(dir.path(), &["export", "--model", s(&base), "--format", "hub", "--dtype", "f8", "--out", o]);
    r.assert_error_after_progress(&["--dtype \"f8\""]);
    let r = suite(dir.path(), &["export", "--model", s(&base), "--format", "gguf", "--gguf-type", "q4_k", "--out", o]);
    r.assert_error_after_progress(&["--gguf-type \"q4_k\"", "f16 or q8_0"]);
    // An adapter whose base is gone names suite_adapter.json's field.
    std::fs::write(
        prefix.join("suite_adapter.json"),
        json!({"base_model": "/nonexistent/base", "method": "prefix"}).to_string(),
    )
    .unwrap();
    let r = suite(dir.path(), &["export", "--model", s(&prefix), "--format", "peft", "--out", o]);
    r.assert_error_after_progress(&["suite_adapter.json", "base_model"]);
}
