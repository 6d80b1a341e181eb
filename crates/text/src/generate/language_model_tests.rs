//! [`LanguageModel`] against transformers on the tiny random Llama of `tests/py/tiny_lm.py` (byte-level BPE,
//! ChatML template): prompts encoded and chat rendered as `AutoTokenizer` does, greedy text of a left-padded
//! batch equal to `generate` + `decode(skip_special_tokens=True)`; streamed deltas, stop strings, seeded sampling,
//! the context limit, and a PEFT folder loaded back with its adapter.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use suite_core::peft::{apply_peft, save_adapter, LoraConfig, PeftConfig};
use suite_core::python::run_python;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::generate::fixture_tests::tiny_llama;
use crate::models::{causal_peft_targets, load_causal_lm};
use crate::task::{ADAPTER_FILE, ADAPTER_META};

/// transformers' side: the chat prompt from `apply_chat_template`, the prompts' ids from the tokenizer, and the
/// greedy continuation (24 tokens at most, eos from generation_config.json) of the three prompts as one
/// left-padded batch, as ids and as `decode(skip_special_tokens=True)`.
const REFERENCE: &str = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(d).eval()
tok = AutoTokenizer.from_pretrained(d)
tok.padding_side = "left"
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello! How are you?"}]
chat = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
prompts = ["The quick brown fox", "To be or not to be, that is", chat]
enc = tok(prompts, return_tensors="pt", padding=True)
with torch.no_grad():
    out = model.generate(**enc, do_sample=False, max_new_tokens=24)
width = enc["input_ids"].shape[1]
eos = model.generation_config.eos_token_id
rows = []
for r in out:
    ids = r[width:].tolist()
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
    rows.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True)})
print(json.dumps({"chat": chat, "prompts": prompts, "prompt_ids": [tok(p)["input_ids"] for p in prompts],
                  "rows": rows}))
"#;

fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        let out = run_python(REFERENCE, &[tiny_llama().to_str().unwrap()]).unwrap();
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    })
}

fn lm() -> LanguageModel {
    LanguageModel::load(tiny_llama(), Device::Cpu).unwrap()
}

fn prompts() -> Vec<String> {
    serde_json::from_value(reference()["prompts"].clone()).unwrap()
}

/// Generates, collecting each request's streamed deltas.
fn generate_streamed(lm: &LanguageModel, requests: &[GenerationRequest]) -> (Vec<Generated>, Vec<Vec<String>>) {
    let mut deltas: Vec<Vec<String>> = vec![Vec::new(); requests.len()];
    let out = lm.generate(requests, &mut |i, d| deltas[i].push(d.to_string())).unwrap();
    (out, deltas)
}

#[test]
fn chat_prompt_and_encoding_equal_transformers() {
    let lm = lm();
    let r = reference();
    let chat = lm
        .render_chat(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hello! How are you?")], true)
        .unwrap();
    assert_eq!(chat, r["chat"].as_str().unwrap());
    let want: Vec<Vec<i64>> = serde_json::from_value(r["prompt_ids"].clone()).unwrap();
    for (p, ids) in prompts().iter().zip(&want) {
        assert_eq!(&lm.encode(p), ids, "{p:?}");
    }
    // eos of generation_config.json and the template's end of turn are the same token here: <|im_end|>.
    assert_eq!(lm.stop_token_ids(), &[lm.tokenizer().token_to_id("<|im_end|>").unwrap() as i64]);
}

#[test]
fn greedy_batch_text_equals_transformers_and_deltas_concatenate_to_it() {
    let lm = lm();
    let r = reference();
    let requests: Vec<GenerationRequest> = prompts().into_iter().map(|p| GenerationRequest::greedy(p, 24)).collect();
    let (out, deltas) = generate_streamed(&lm, &requests);
    let prompt_ids: Vec<Vec<i64>> = serde_json::from_value(r["prompt_ids"].clone()).unwrap();
    for (i, g) in out.iter().enumerate() {
        let want = &r["rows"][i];
        let want_ids: Vec<i64> = serde_json::from_value(want["ids"].clone()).unwrap();
        println!("request {i}: {:?} ({} deltas, finish {})", g.text, deltas[i].len(), g.finish_reason);
        assert_eq!(g.token_ids, want_ids, "request {i}: tokens differ from transformers");
        assert_eq!(g.text, want["text"].as_str().unwrap(), "request {i}: text differs from transformers");
        assert_eq!(deltas[i].concat(), g.text, "request {i}: deltas do not add up to the text");
        assert!(deltas[i].len() > 1, "request {i}: the text came in one piece, not streamed");
        assert_eq!(g.completion_tokens, g.token_ids.len());
        assert_eq!(g.prompt_tokens, prompt_ids[i].len());
        let stopped = lm.stop_token_ids().contains(g.token_ids.last().unwrap());
        assert_eq!(g.finish_reason, if stopped { "stop" } else { "length" });
    }
    // Each request alone gives the same answer.
    for (i, request) in requests.iter().enumerate() {
        let alone = lm.generate(std::slice::from_ref(request), &mut |_, _| {}).unwrap();
        assert_eq!(alone[0], out[i], "request {i} alone");
    }
}

#[test]
fn stop_strings_cut_the_text_and_are_never_streamed() {
    let lm = lm();
    let full = lm.generate(&[GenerationRequest::greedy(prompts()[0].clone(), 24)], &mut |_, _| {}).unwrap();
    let text = &full[0].text;
    // A stop string from the middle of the greedy answer (two characters, at the fourth character).
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let (start, end) = (chars[3].0, chars[5].0);
    let stop = text[start..end].to_string();
    let cut = text.find(&stop).unwrap();
    let request = GenerationRequest {
        stop: vec!["never appears".into(), stop.clone()],
        ..GenerationRequest::greedy(prompts()[0].clone(), 24)
    };
    let (out, deltas) = generate_streamed(&lm, &[request]);
    println!("stop {stop:?}: {:?} in {:?}", out[0].text, deltas[0]);
    assert_eq!(out[0].text, text[..cut]);
    assert_eq!(out[0].finish_reason, "stop");
    assert_eq!(deltas[0].concat(), out[0].text);
    assert!(deltas[0].iter().all(|d| !d.contains(&stop)));
    assert!(out[0].token_ids.len() < full[0].token_ids.len(), "generation stopped at the stop string");
    assert!(full[0].token_ids.starts_with(&out[0].token_ids));
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    let lm = lm();
    let sampling = SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.9, repetition_penalty: 1.0 };
    let requests: Vec<GenerationRequest> = prompts()
        .into_iter()
        .enumerate()
        .map(|(i, p)| GenerationRequest { sampling, seed: 100 + i as u64, ..GenerationRequest::greedy(p, 20) })
        .collect();
    let a = lm.generate(&requests, &mut |_, _| {}).unwrap();
    let b = lm.generate(&requests, &mut |_, _| {}).unwrap();
    assert_eq!(a, b);
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(lm.generate(std::slice::from_ref(request), &mut |_, _| {}).unwrap()[0], a[i], "request {i}");
    }
    let greedy = lm.generate(&[GenerationRequest::greedy(prompts()[0].clone(), 20)], &mut |_, _| {}).unwrap();
    assert_ne!(greedy[0].token_ids, a[0].token_ids, "sampling at temperature 0.8 is not greedy decoding");
}

#[test]
fn a_prompt_over_the_context_is_refused_naming_the_request() {
    let lm = lm();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(30);
    let requests = [GenerationRequest::greedy("Hello", 4), GenerationRequest::greedy(long, 4)];
    let e = lm.generate(&requests, &mut |_, _| {}).unwrap_err().to_string();
    println!("{e}");
    assert!(e.starts_with("request 1: the prompt has") && e.contains("context of 128 tokens"), "{e}");
    let bad =
        GenerationRequest { sampling: SamplingParams { top_p: 0.0, ..Default::default() }, ..requests[0].clone() };
    let e = format!("{:#}", lm.generate(&[bad], &mut |_, _| {}).unwrap_err());
    assert!(e.contains("request 0") && e.contains("top_p"), "{e}");
    let e = format!("{:#}", LanguageModel::load(Path::new("/nonexistent/model"), Device::Cpu).unwrap_err());
    assert!(e.contains("/nonexistent/model: no such model folder"), "{e}");
}

/// A LoRA adapter with non-zero `lora_B` (a fresh one changes nothing) saved as SFT saves a PEFT folder.
fn save_peft_folder(out: &Path, base_model: &str) -> Tensor {
    let base = tiny_llama();
    let (mut vs, mut model, _) = load_causal_lm(base, Device::Cpu).unwrap();
    let cfg = PeftConfig::Lora(LoraConfig { r: 4, alpha: 8.0, ..Default::default() });
    let layers: &mut dyn suite_core::nn::VisitLayers = model.as_mut();
    let report = apply_peft(&mut vs, layers, &cfg, &causal_peft_targets("llama")).unwrap();
    tch::manual_seed(0);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.contains("lora_B") {
                t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.3));
            }
        }
    });
    std::fs::create_dir_all(out).unwrap();
    save_adapter(&out.join(ADAPTER_FILE), &vs, &cfg, base_model, &report.base_checksum).unwrap();
    let meta = serde_json::json!({"base_model": base_model, "method": "lora"});
    std::fs::write(out.join(ADAPTER_META), meta.to_string()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json"] {
        std::fs::copy(base.join(f), out.join(f)).unwrap();
    }
    let ids = Tensor::from_slice(&[296i64, 71, 314, 299, 77]).unsqueeze(0);
    tch::no_grad(|| model.forward(&ids, None, false))
}

#[test]
fn a_peft_folder_loads_its_base_and_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("final");
    let want = save_peft_folder(&peft, tiny_llama().to_str().unwrap());
    let lm = LanguageModel::load(&peft, Device::Cpu).unwrap();
    let ids = Tensor::from_slice(&[296i64, 71, 314, 299, 77]).unsqueeze(0);
    let got = tch::no_grad(|| lm.model().forward(&ids, None, false));
    let base = tch::no_grad(|| self::lm().model().forward(&ids, None, false));
    let d = (&got - &want).abs().max().double_value(&[]);
    let moved = (&base - &want).abs().max().double_value(&[]);
    println!("PEFT folder logits vs the adapted model in memory: max |Δ| {d:.2e} (base differs by {moved:.2e})");
    assert!(d <= 1e-6, "{d}");
    assert!(moved > 1e-2, "the adapter changes the logits");
    assert!(!lm.generate(&[GenerationRequest::greedy("Hello", 4)], &mut |_, _| {}).unwrap()[0].token_ids.is_empty());

    // A hub id that is not in the cache: one line saying to pass a folder.
    let other = tmp.path().join("hub_id");
    let _ = save_peft_folder(&other, "someorg/somemodel");
    let e = format!("{:#}", LanguageModel::load(&other, Device::Cpu).unwrap_err());
    assert!(e.contains("field `base_model`") && e.contains("\"someorg/somemodel\"") && e.contains("hub"), "{e}");
}
