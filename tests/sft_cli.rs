//! End to end: `suite finetune text --task sft` on a tiny Llama made by `tests/py/tiny_lm.py`. A model built from
//! scratch is pretrained on plain text (its loss must fall), its `final/` folder is checked against transformers
//! (same logits), and LoRA then fine-tunes that folder on chat JSONL, saving an adapter folder that names it.
//! `--gradient-checkpointing` trains exactly as the run without it (the same validation losses).

mod common;

use std::path::Path;

use common::{python, python_file, read_json, s, suite, tmp};
use suite_text::generate::{GenerationRequest, LanguageModel};
use tch::{Device, Tensor};

/// The shared fixture generator (tests run in the crate folder).
const TINY_LM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/tiny_lm.py");

const SENTENCES: [&str; 6] = [
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with a single step",
    "to be or not to be, that is the question",
    "all that glitters is not gold",
    "love is patient, love is kind",
    "hello! how are you today? i am fine, thank you",
];

/// A few hundred short documents, blank-line separated.
fn corpus(path: &Path) {
    let docs: Vec<String> = (0..300).map(|i| format!("{} {}.", SENTENCES[i % SENTENCES.len()], i % 10)).collect();
    std::fs::write(path, docs.join("\n\n")).unwrap();
}

fn chats(path: &Path) {
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let q = format!("What is {i} plus one?");
            let a = format!("{i} plus one is {}.", i + 1);
            serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

fn eval_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval")
        .map(|v| v["metrics"]["loss"].as_f64().unwrap())
        .collect()
}

const LOGITS: &str = r#"
import sys, json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
with torch.no_grad():
    print(json.dumps(m(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits.flatten().tolist()))
"#;

#[test]
fn sft_from_scratch_then_lora_on_chat() {
    let dir = tmp();
    let base = dir.path().join("tiny");
    python_file(TINY_LM, &[s(&base), "--arch", "llama", "--no-weights", "--context", "128"]);
    assert!(!base.join("model.safetensors").exists());
    let text = dir.path().join("corpus.txt");
    corpus(&text);
    let run1 = dir.path().join("pretrain");
    #[rustfmt::skip]
    let out = suite(dir.path(), &[
        "finetune", "text", "--task", "sft", "--init", "scratch", "--model", s(&base), "--data", s(&text),
        "--val-split", "0.1", "--max-len", "64", "--epochs", "3", "--batch-size", "8", "--lr", "5e-3",
        "--device", "cpu", "--seed", "1", "--out", s(&run1),
    ]);
    out.assert_ok();
    let losses = eval_losses(&run1);
    assert!(losses.len() >= 3, "{losses:?}");
    assert!(losses.last().unwrap() < &(losses[0] * 0.8), "validation loss did not fall: {losses:?}");
    let report = std::fs::read_to_string(run1.join("report.txt")).unwrap();
    assert!(report.contains("packing efficiency"), "{report}");
    let metrics = read_json(&run1.join("eval/metrics.json"));
    let (loss, ppl) = (metrics["loss"].as_f64().unwrap(), metrics["perplexity"].as_f64().unwrap());
    assert!((ppl - loss.exp()).abs() < 1e-9 * ppl, "{metrics}");

    // The full model is a hub folder transformers loads, with the same logits.
    let fin = run1.join("final");
    for f in ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(fin.join(f).is_file(), "final/ lacks {f}");
    }
    let max = logits_gap(&fin);
    assert!(max < 1e-4, "logits differ from transformers by {max}");
    eprintln!("scratch run: eval losses {losses:?}; final/ logits vs transformers max |Δ| {max:e}");

    // LoRA on chat data over the pretrained folder: an adapter folder naming its base.
    let chat = dir.path().join("chat.jsonl");
    chats(&chat);
    let run2 = dir.path().join("lora");
    #[rustfmt::skip]
    let out = suite(dir.path(), &[
        "finetune", "text", "--task", "sft", "--model", s(&fin), "--data", s(&chat), "--val-split", "0.2",
        "--peft", "lora", "--max-len", "64", "--epochs", "2", "--batch-size", "4", "--lr", "5e-3",
        "--eval-generate", "4", "--device", "cpu", "--out", s(&run2),
    ]);
    out.assert_ok();
    let best = run2.join("best");
    for f in ["adapter.safetensors", "suite_adapter.json", "config.json", "generation_config.json", "tokenizer.json"] {
        assert!(best.join(f).is_file(), "best/ lacks {f}");
    }
    assert!(!best.join("model.safetensors").exists());
    let meta = read_json(&best.join("suite_adapter.json"));
    assert_eq!(meta["method"], "lora");
    assert_eq!(Path::new(meta["base_model"].as_str().unwrap()), std::path::absolute(&fin).unwrap());
    let metrics = read_json(&run2.join("eval/metrics.json"));
    for k in ["loss", "perplexity", "exact_match", "rouge_l"] {
        assert!(metrics[k].as_f64().is_some_and(f64::is_finite), "eval/metrics.json lacks {k}: {metrics}");
    }
    let generations = std::fs::read_to_string(run2.join("eval/generations.jsonl")).unwrap();
    assert_eq!(generations.lines().count(), 4, "{generations}");

    // suite eval reloads both runs' best models and scores the validation split as the runs did.
    for run in [&run1, &run2] {
        let out = suite(dir.path(), &["eval", "--run", s(run), "--device", "cpu"]);
        out.assert_ok();
        let want = read_json(&run.join("eval/metrics.json"));
        let loss_line = out.stdout.lines().find(|l| l.trim_start().starts_with("loss ")).expect("a loss line");
        let loss: f64 = loss_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((loss - want["loss"].as_f64().unwrap()).abs() < 1e-4, "suite eval: {}, run: {want}", out.stdout);
    }

    // LanguageModel (what suite generate and serve load) reads both folders; through the adapter folder it answers
    // a held-out prompt as the evaluation did (greedy; the evaluation's answer may stop earlier, at its length cap).
    let lm = LanguageModel::load(&fin, Device::Cpu).unwrap();
    assert_eq!(
        lm.encode("the quick brown fox").len(),
        lm.tokenizer().encode("the quick brown fox", false).unwrap().len()
    );
    let lm = LanguageModel::load(&best, Device::Cpu).unwrap();
    let first: serde_json::Value = serde_json::from_str(generations.lines().next().unwrap()).unwrap();
    let request = GenerationRequest::greedy(first["prompt"].as_str().unwrap(), 64);
    let answer = lm.generate(&[request], &mut |_, _| {}).unwrap().remove(0).text;
    let evaluated = first["prediction"].as_str().unwrap().trim_end_matches('\u{FFFD}');
    assert!(answer.starts_with(evaluated), "LanguageModel: {answer:?}, evaluation: {evaluated:?}");
}

const IDS: [[i64; 16]; 2] = [
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
    [55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40],
];

/// Our logits for [`IDS`] from the model folder `dir`, flattened.
fn rust_logits(dir: &Path) -> Vec<f32> {
    let (_vs, model, _) = suite_text::models::load_causal_lm(dir, Device::Cpu).unwrap();
    let ids = Tensor::from_slice(IDS.as_flattened()).view([2, 16]);
    let logits = tch::no_grad(|| model.forward(&ids, None, false));
    Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap()
}

fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// Max |Δ| between the logits of our model loaded from `dir` and transformers' on [`IDS`].
fn logits_gap(dir: &Path) -> f32 {
    let py = python(LOGITS, &[s(dir), &serde_json::to_string(&IDS).unwrap()]);
    let want: Vec<f32> = serde_json::from_str(py.trim()).unwrap();
    max_gap(&rust_logits(dir), &want)
}

#[test]
fn sft_of_gpt2_saves_conv1d_weights_as_transformers_reads_them() {
    let dir = tmp();
    let base = dir.path().join("gpt2");
    python_file(TINY_LM, &[s(&base), "--arch", "gpt2"]);
    let chat = dir.path().join("chat.jsonl");
    chats(&chat);
    let run = dir.path().join("run");
    #[rustfmt::skip]
    let out = suite(dir.path(), &[
        "finetune", "text", "--task", "sft", "--model", s(&base), "--data", s(&chat), "--val-split", "0.2",
        "--max-len", "64", "--max-steps", "3", "--batch-size", "4", "--lr", "1e-2", "--eval-generate", "2",
        "--device", "cpu", "--out", s(&run),
    ]);
    out.assert_ok();
    let fin = run.join("final");
    let max = logits_gap(&fin);
    assert!(max < 1e-4, "GPT-2 final/ logits differ from transformers by {max}");
    // The weights did train: the saved model is not the base.
    let moved = max_gap(&rust_logits(&fin), &rust_logits(&base));
    assert!(moved > 1e-3, "final/ gives the base model's logits (max |Δ| {moved})");
    let a = read_json(&run.join("eval/metrics.json"));
    assert!(a["loss"].as_f64().is_some_and(f64::is_finite), "{a}");
    eprintln!("gpt2 final/ logits vs transformers max |Δ| {max:e}");
}

#[test]
fn sft_data_errors_name_the_line() {
    let dir = tmp();
    let base = dir.path().join("tiny");
    python_file(TINY_LM, &[s(&base), "--arch", "qwen2", "--no-weights"]);
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n\
         {\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
    )
    .unwrap();
    #[rustfmt::skip]
    let out = suite(dir.path(), &[
        "finetune", "text", "--task", "sft", "--init", "scratch", "--model", s(&base), "--data", s(&data),
        "--device", "cpu", "--out", s(&dir.path().join("run")),
    ]);
    out.assert_error(&[&format!("{}:2", data.display()), "no assistant turn"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    let out = suite(dir.path(), &["finetune", "text", "--task", "chat", "--data", s(&data)]);
    out.assert_error(&["sft"]);
}

#[test]
fn sft_lora_with_gradient_checkpointing_trains_as_without() {
    let dir = tmp();
    let base = dir.path().join("tiny");
    python_file(TINY_LM, &[s(&base), "--arch", "qwen2", "--layers", "3", "--context", "128"]);
    let chat = dir.path().join("chat.jsonl");
    chats(&chat);
    let run = |name: &str, extra: &[&str]| {
        let out_dir = dir.path().join(name);
        #[rustfmt::skip]
        let mut args = vec![
            "finetune", "text", "--task", "sft", "--model", s(&base), "--data", s(&chat), "--val-split", "0.2",
            "--peft", "lora", "--max-len", "64", "--epochs", "2", "--batch-size", "4", "--lr", "5e-3",
            "--eval-generate", "0", "--device", "cpu", "--seed", "3", "--out", s(&out_dir),
        ];
        args.extend_from_slice(extra);
        suite(dir.path(), &args).assert_ok();
        out_dir
    };
    let plain = run("plain", &[]);
    let ckpt = run("ckpt", &["--gradient-checkpointing"]);
    let (a, b) = (eval_losses(&plain), eval_losses(&ckpt));
    assert!(a.len() >= 2 && a.len() == b.len(), "{a:?} vs {b:?}");
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    eprintln!("validation losses plain {a:?}, checkpointed {b:?}: max |Δ| {d:e}");
    assert!(d <= 1e-6, "checkpointing changed training: {a:?} vs {b:?}");
    assert!(a.last().unwrap() < &a[0], "validation loss did not fall: {a:?}");
    let report = std::fs::read_to_string(ckpt.join("report.txt")).unwrap();
    assert!(report.contains("gradient checkpointing"), "{report}");

    // Only SFT trains a decoder-only model.
    #[rustfmt::skip]
    let out = suite(dir.path(), &[
        "finetune", "text", "--task", "classify", "--model", s(&base), "--data", s(&chat), "--gradient-checkpointing",
        "--device", "cpu", "--out", s(&dir.path().join("classify")),
    ]);
    out.assert_error(&["text.gradient_checkpointing", "sft"]);
}
