//! End-to-end tests of `suite explain text`: tiny classification runs of the real all-MiniLM-L6-v2 (full
//! fine-tuning and a LoRA adapter, a few CPU steps), explained from a file and from stdin; the JSONL (one line per
//! input, tokens and scores aligned, small completeness errors) and the HTML page; and every bad input refused
//! with one `error:` line and exit code 2.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::serve::text_run;
use common::*;

/// Bound on the completeness error |Σ scores − (F(x) − F(x′))| at 20 steps: 2 % of |F(x) − F(x′)| plus 1e-3
/// (a model after 4 steps may move a logit little between baseline and input).
const COMPLETENESS: (f64, f64) = (0.02, 1e-3);

const INPUTS: &str = "the referee stopped the football match\n\
                      {\"text\": \"fresh bread and butter\", \"text_pair\": \"from the oven\"}\n\
                      \n\
                      tennis\n";

fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Checks the outputs in `out`: one JSONL line per input with aligned tokens and scores and a small completeness
/// error, and an HTML page naming every prediction. Returns the lines.
fn check_outputs(out: &Path, lines: &[u64]) -> Vec<Value> {
    let records = read_jsonl(&out.join("attributions.jsonl"));
    assert_eq!(records.len(), lines.len(), "{records:?}");
    let html = std::fs::read_to_string(out.join("attributions.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for (r, &line) in records.iter().zip(lines) {
        assert_eq!(r["line"], line, "{r}");
        assert_eq!(r["task"], "classify");
        let n = r["tokens"].as_array().unwrap().len();
        assert!(n >= 3, "{r}");
        assert_eq!(r["token_ids"].as_array().unwrap().len(), n);
        assert_eq!(r["baseline_ids"].as_array().unwrap().len(), n);
        let a = &r["attributions"][0];
        assert_eq!(a["scores"].as_array().unwrap().len(), n, "tokens and scores aligned: {r}");
        let (rel, err) = (a["relative_error"].as_f64().unwrap(), a["completeness_error"].as_f64().unwrap());
        println!("line {line}: {} completeness {err:.2e} (relative {rel:.2e})", r["prediction"]);
        let delta = (a["output"].as_f64().unwrap() - a["baseline_output"].as_f64().unwrap()).abs();
        assert!(err < COMPLETENESS.0 * delta + COMPLETENESS.1, "completeness error {err}: {r}");
        let sum: f64 = a["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).sum();
        assert!((sum - a["sum"].as_f64().unwrap()).abs() < 1e-3);
        assert!(html.contains(r["prediction"].as_str().unwrap()), "the page shows {}", r["prediction"]);
    }
    records
}

fn explain(cwd: &Path, run: &Path, more: &[&str], stdin: &str) -> Out {
    let mut args = vec!["explain", "text", "--run", s(run), "--device", "cpu", "--steps", "20"];
    args.extend(more);
    suite_with_stdin(cwd, &args, stdin)
}

#[test]
fn explains_a_classification_run_and_refuses_bad_input() {
    let dir = tmp();
    let run = text_run(dir.path());
    let inputs = dir.path().join("inputs.txt");
    std::fs::write(&inputs, INPUTS).unwrap();

    let out_dir = dir.path().join("out");
    let out = explain(dir.path(), &run, &[s(&inputs), "--out", s(&out_dir)], "");
    out.assert_ok();
    assert!(out.stdout.contains("wrote"), "{}", out.show());
    let records = check_outputs(&out_dir, &[1, 2, 4]);
    // The pair's second segment has token type 1; the baseline keeps [CLS] and both [SEP]s.
    let pair = &records[1];
    assert!(pair["type_ids"].as_array().unwrap().iter().any(|t| t == 1), "{pair}");
    let kept = pair["token_ids"].as_array().unwrap().iter().zip(pair["baseline_ids"].as_array().unwrap());
    assert_eq!(kept.filter(|(a, b)| a == b).count(), 3, "{pair}");

    // From stdin, another class, the default folder explain/<run>-text.
    let out = explain(dir.path(), &run, &["-", "--target", "food"], "the referee stopped the football match\n");
    out.assert_ok();
    let records = check_outputs(&dir.path().join("explain/text-run-text"), &[1]);
    assert_eq!(records[0]["attributions"][0]["label"], "food");

    // Bad input: one clear line, exit code 2, nothing panics.
    let missing = dir.path().join("nope.txt");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let bad_json = dir.path().join("bad.jsonl");
    std::fs::write(&bad_json, "fine text\n{\"question\": \"who?\", \"context\": \"me\"}\n").unwrap();
    let gone = dir.path().join("no-such-run");
    let cases: Vec<(Vec<&str>, &str, Vec<&str>)> = vec![
        (vec![s(&inputs), "--target", "weather"], "", vec!["--target", "weather", "food", "sport"]),
        (vec![s(&inputs), "--target", "7"], "", vec!["--target", "7"]),
        (vec![s(&missing)], "", vec!["cannot open", "nope.txt"]),
        (vec![s(&empty)], "", vec!["no input"]),
        (vec!["-"], "", vec!["<stdin>", "no input"]),
        (vec![s(&bad_json)], "", vec!["bad.jsonl", "line 2", "question"]),
        (vec![s(&inputs), "--which", "middle"], "", vec!["middle"]),
    ];
    for (args, stdin, needles) in cases {
        explain(dir.path(), &run, &args, stdin).assert_user_error(&needles);
    }
    let out = suite(dir.path(), &["explain", "text", "--run", s(&gone), s(&inputs)]);
    out.assert_user_error(&["no-such-run"]);
    let out = suite(dir.path(), &["explain", "text", "--run", s(&run), "--steps", "0", s(&inputs)]);
    out.assert_user_error(&["--steps 0"]);
}

/// all-MiniLM-L6-v2 with a LoRA adapter after 4 steps on the data of [`text_run`].
fn lora_run(dir: &Path) -> PathBuf {
    let run = serve::text_run_with(dir, "lora-run", "1e-3", &["--peft", "lora"]);
    assert!(run.join("best/adapter.safetensors").is_file(), "a LoRA run saves an adapter");
    run
}

#[test]
fn explains_a_lora_run() {
    let dir = tmp();
    let run = lora_run(dir.path());
    let out_dir = dir.path().join("out");
    let out = explain(dir.path(), &run, &["--out", s(&out_dir)], "the referee stopped the football match\n");
    out.assert_ok();
    check_outputs(&out_dir, &[1]);
}
