//! [`generate_ids`] against transformers' `generate` on the tiny random Llama of `tests/py/tiny_lm.py`: greedy
//! continuations of a left-padded batch of three prompts of different lengths and of each prompt alone, eos and
//! `max_new_tokens` stopping, the repetition penalty; seeded sampling reproducible and independent of the batch.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;
use suite_core::python::run_python;
use tch::Device;

use super::*;
use crate::generate::fixture_tests::tiny_lm;
use crate::models::load_causal_lm;

/// Greedy continuations by transformers (`generate(do_sample=False)`, left padding with an attention mask, no eos
/// unless given): the batch, each prompt alone, the same with an eos that occurs (row 0's fifth token), and each
/// prompt alone with repetition penalty 1.3. One JSON object on stdout.
const REFERENCE: &str = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
prompts, pad = json.loads(sys.argv[2]), int(sys.argv[3])
model.generation_config.eos_token_id = None
def gen(batch, max_new, eos=None, **kw):
    w = max(len(p) for p in batch)
    ids = torch.tensor([[pad] * (w - len(p)) + p for p in batch])
    mask = torch.tensor([[0] * (w - len(p)) + [1] * len(p) for p in batch])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new, eos_token_id=eos,
                             pad_token_id=pad, **kw)
    rows = [r[w:].tolist() for r in out]
    # transformers pads a row that stopped early; the row ends at its eos.
    return [r[: r.index(eos) + 1] if eos is not None and eos in r else r for r in rows]
greedy = gen(prompts, 12)
eos = greedy[0][4]
print(json.dumps({
    "batch": greedy,
    "alone": [gen([p], 12)[0] for p in prompts],
    "eos": eos,
    "eos_batch": gen(prompts, 12, eos),
    "eos_alone": [gen([p], 12, eos)[0] for p in prompts],
    "penalty_alone": [gen([p], 12, repetition_penalty=1.3)[0] for p in prompts],
}))
"#;

const PAD: i64 = 0;

fn prompts() -> Vec<Vec<i64>> {
    vec![vec![331, 363, 3], vec![223, 332, 295, 279, 40, 41, 42], vec![10, 20, 30, 40, 50]]
}

/// transformers' answers for the tiny model of `arch`, computed once per architecture.
fn reference_for(arch: &str) -> &'static Value {
    static REFS: Mutex<BTreeMap<String, &'static Value>> = Mutex::new(BTreeMap::new());
    let mut refs = REFS.lock().unwrap_or_else(|e| e.into_inner());
    refs.entry(arch.to_string()).or_insert_with(|| {
        let prompts = serde_json::to_string(&prompts()).unwrap();
        let out = run_python(REFERENCE, &[tiny_lm(arch).to_str().unwrap(), &prompts, &PAD.to_string()]).unwrap();
        Box::leak(Box::new(serde_json::from_str(out.lines().last().unwrap()).unwrap()))
    })
}

fn reference() -> &'static Value {
    reference_for("llama")
}

fn rows(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn model_for(arch: &str) -> Box<dyn CausalLm> {
    let (_vs, model, report) = load_causal_lm(tiny_lm(arch), Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    // The VarStore owns nothing the model needs once loaded: the model holds the tensors.
    model
}

fn model() -> Box<dyn CausalLm> {
    model_for("llama")
}

fn run(model: &dyn CausalLm, prompts: &[Vec<i64>], cfg: &GenerationConfig) -> Vec<Vec<i64>> {
    generate_ids(model, prompts, cfg, &mut |_, _| true).unwrap()
}

#[test]
fn greedy_batch_and_each_prompt_alone_equal_transformers() {
    let model = model();
    let r = reference();
    let cfg = GenerationConfig::greedy(12, vec![], PAD);
    let got = run(model.as_ref(), &prompts(), &cfg);
    println!("batch of 3 (prompt lengths 3, 7, 5), 12 greedy tokens: {got:?}");
    assert_eq!(got, rows(&r["batch"]), "left-padded batch differs from transformers");
    for (i, p) in prompts().iter().enumerate() {
        let alone = run(model.as_ref(), std::slice::from_ref(p), &cfg);
        assert_eq!(alone[0], rows(&r["alone"])[i], "prompt {i} alone differs from transformers");
    }
}

/// Qwen2 (q/k/v biases, tied embeddings) and GPT-2 (learned positions, so the per-row positions of left padding
/// matter for every token) decode the same way.
#[test]
fn qwen2_and_gpt2_batches_equal_transformers() {
    for arch in ["qwen2", "gpt2"] {
        let model = model_for(arch);
        let r = reference_for(arch);
        let got = run(model.as_ref(), &prompts(), &GenerationConfig::greedy(12, vec![], PAD));
        println!("{arch}: batch of 3, 12 greedy tokens: {got:?}");
        assert_eq!(got, rows(&r["batch"]), "{arch}: left-padded batch differs from transformers");
        for (i, p) in prompts().iter().enumerate() {
            let alone = run(model.as_ref(), std::slice::from_ref(p), &GenerationConfig::greedy(12, vec![], PAD));
            assert_eq!(alone[0], rows(&r["alone"])[i], "{arch}: prompt {i} alone");
        }
        let eos = r["eos"].as_i64().unwrap();
        let got = run(model.as_ref(), &prompts(), &GenerationConfig::greedy(12, vec![eos], PAD));
        assert_eq!(got, rows(&r["eos_batch"]), "{arch}: eos {eos}");
    }
}

#[test]
fn eos_and_max_new_tokens_stop_as_transformers() {
    let model = model();
    let r = reference();
    let eos = r["eos"].as_i64().unwrap();
    let cfg = GenerationConfig::greedy(12, vec![eos], PAD);
    let got = run(model.as_ref(), &prompts(), &cfg);
    println!("eos {eos}: {got:?}");
    assert_eq!(got, rows(&r["eos_batch"]));
    assert_eq!(got[0].len(), 5, "row 0 stops at its fifth token, the eos, which is kept");
    for (i, p) in prompts().iter().enumerate() {
        assert_eq!(run(model.as_ref(), std::slice::from_ref(p), &cfg)[0], rows(&r["eos_alone"])[i]);
    }
    // A greedy continuation's prefix is what a smaller budget gives.
    let short = run(model.as_ref(), &prompts(), &GenerationConfig::greedy(5, vec![], PAD));
    let want: Vec<Vec<i64>> = rows(&r["batch"]).into_iter().map(|row| row[..5].to_vec()).collect();
    assert_eq!(short, want);
    assert!(run(model.as_ref(), &prompts(), &GenerationConfig::greedy(0, vec![], PAD)).iter().all(Vec::is_empty));
}

#[test]
fn repetition_penalty_equals_transformers() {
    let model = model();
    let r = reference();
    let mut cfg = GenerationConfig::greedy(12, vec![], PAD);
    cfg.sampling.repetition_penalty = 1.3;
    for (i, p) in prompts().iter().enumerate() {
        let got = run(model.as_ref(), std::slice::from_ref(p), &cfg);
        assert_eq!(got[0], rows(&r["penalty_alone"])[i], "prompt {i} with repetition penalty 1.3");
    }
    assert_ne!(rows(&r["penalty_alone"]), rows(&r["alone"]), "the penalty changes something in this case");
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    let model = model();
    let cfg = GenerationConfig {
        sampling: SamplingParams { temperature: 0.9, top_k: 50, top_p: 0.95, repetition_penalty: 1.1 },
        seed: 7,
        max_new_tokens: 16,
        stop_token_ids: vec![],
        pad_token_id: PAD,
    };
    let a = run(model.as_ref(), &prompts(), &cfg);
    let b = run(model.as_ref(), &prompts(), &cfg);
    println!("sampled (seed 7): {a:?}");
    assert_eq!(a, b, "same seed, same tokens");
    for (i, p) in prompts().iter().enumerate() {
        let alone =
            run(model.as_ref(), std::slice::from_ref(p), &GenerationConfig { seed: 7 + i as u64, ..cfg.clone() });
        assert_eq!(alone[0], a[i], "row {i} alone (seed 7 + {i}) differs from the batch");
    }
    // The batch in another order: each row keeps its tokens when it keeps its seed.
    let reversed: Vec<Vec<i64>> = prompts().into_iter().rev().collect();
    let c = run(model.as_ref(), &reversed[..1], &GenerationConfig { seed: 9, ..cfg.clone() });
    assert_eq!(c[0], a[2]);
    let other = run(model.as_ref(), &prompts(), &GenerationConfig { seed: 8, ..cfg.clone() });
    assert_ne!(other, a, "another seed draws other tokens");
    let greedy = run(model.as_ref(), &prompts(), &GenerationConfig::greedy(16, vec![], PAD));
    assert_ne!(greedy, a, "sampling is not greedy decoding");
}

#[test]
fn on_token_false_ends_only_its_row() {
    let model = model();
    let cfg = GenerationConfig::greedy(12, vec![], PAD);
    let full = run(model.as_ref(), &prompts(), &cfg);
    let mut calls = 0;
    let got = generate_ids(model.as_ref(), &prompts(), &cfg, &mut |row, _| {
        calls += 1;
        row != 1
    })
    .unwrap();
    assert_eq!(got[1], full[1][..1].to_vec());
    assert_eq!(got[0], full[0]);
    assert_eq!(got[2], full[2]);
    assert_eq!(calls, 12 + 1 + 12);
}

#[test]
fn prompts_over_the_context_and_bad_ids_are_refused() {
    let model = model();
    let cfg = GenerationConfig::greedy(4, vec![], PAD);
    let long = vec![vec![5; 10], vec![7; 129]];
    let e = generate_ids(model.as_ref(), &long, &cfg, &mut |_, _| true).unwrap_err().to_string();
    println!("{e}");
    assert!(e.contains("prompt 1") && e.contains("129 tokens") && e.contains("128"), "{e}");
    // A prompt one token short of the context has room for one more token only.
    let full = generate_ids(model.as_ref(), &[vec![7; 127]], &cfg, &mut |_, _| true).unwrap();
    assert_eq!(full[0].len(), 1);
    let e = generate_ids(model.as_ref(), &[vec![5, 384]], &cfg, &mut |_, _| true).unwrap_err().to_string();
    assert!(e.contains("prompt 0") && e.contains("384") && e.contains("vocabulary"), "{e}");
    let e = generate_ids(model.as_ref(), &[vec![]], &cfg, &mut |_, _| true).unwrap_err().to_string();
    assert!(e.contains("prompt 0 is empty"), "{e}");
    let bad = GenerationConfig { sampling: SamplingParams { temperature: -1.0, ..Default::default() }, ..cfg };
    let e = generate_ids(model.as_ref(), &[vec![5]], &bad, &mut |_, _| true).unwrap_err().to_string();
    assert!(e.contains("temperature"), "{e}");
}
