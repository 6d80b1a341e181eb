//! End to end: `suite finetune text --task sft --gradient-checkpointing` trains a LoRA on a tiny Llama exactly as
//! the run without it does (the same validation losses), and says so in its report; other tasks refuse the flag.

mod common;

use std::path::Path;

use common::{python_file, s, suite, tmp};

/// The shared fixture generator (tests run in the crate folder).
const TINY_LM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/tiny_lm.py");

fn chats(path: &Path) {
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let q = format!("What is {i} plus two?");
            let a = format!("{i} plus two is {}.", i + 2);
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
