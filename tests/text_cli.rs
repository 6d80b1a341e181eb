//! End-to-end tests of the `suite` binary on text jobs: classification, PEFT (LoRA, BitFit), NER and QA with the
//! real all-MiniLM-L6-v2 (offline asset), on tiny data sets each test writes into its own temporary folder, CPU
//! only. Exports are checked against transformers through the reference Python.
//!
//! Every training run uses one libtorch thread and one loader worker (the harness runs two tests at a time on
//! CI's two cores), sequences of at most 32 tokens and a handful of optimizer steps: what these tests check is
//! that each job runs end to end and that its outputs agree with each other and with transformers, not accuracy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use suite_text::task::{load_trained, TextTaskKind};
use tch::{Device, Kind, Tensor};

mod common;
use common::*;

/// Flags of every training run (besides the defaults of [`finetune_args`], which a test may change).
const COMMON: &[&str] = &["--threads", "1", "--workers", "1", "--seed", "0"];

/// Tolerance of transformers vs suite on the same weights and inputs (probabilities and logits).
const TOL: f64 = 1e-4;

/// The arguments of `suite finetune text`: [`COMMON`], then `--device cpu`, `--max-steps 4`, `--max-len 32` and
/// `--batch-size 4` unless `flags` set them, the whitespace-separated `flags`, then `more` (paths, mostly).
fn finetune_args(flags: &str, more: &[&str]) -> Vec<String> {
    let given: Vec<&str> = flags.split_whitespace().chain(more.iter().copied()).collect();
    let mut a: Vec<String> = ["finetune", "text"].iter().chain(COMMON).map(|s| s.to_string()).collect();
    for (flag, default) in [("--device", "cpu"), ("--max-steps", "4"), ("--max-len", "32"), ("--batch-size", "4")] {
        if !given.contains(&flag) {
            a.extend([flag.to_string(), default.to_string()]);
        }
    }
    a.extend(given.iter().map(|s| s.to_string()));
    a
}

/// Runs `suite finetune text` (see [`finetune_args`]) in `cwd`.
fn finetune(cwd: &Path, flags: &str, more: &[&str]) -> Out {
    let args = finetune_args(flags, more);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    suite(cwd, &refs)
}

/// The unpacked all-MiniLM-L6-v2 asset (`$SUITE_CACHE/assets/...`, as the registry finds it).
fn minilm_dir() -> PathBuf {
    suite_text::models::minilm_asset_dir()
        .expect("the all-MiniLM-L6-v2 asset is not unpacked under $SUITE_CACHE/assets: run scripts/setup.sh")
}

// ---------------------------------------------------------------------------------------------------------------
// Data

const SPORT: [&str; 8] = ["football", "goal", "match", "team", "stadium", "referee", "player", "tennis"];
const FOOD: [&str; 8] = ["soup", "bread", "oven", "recipe", "flour", "sugar", "cheese", "butter"];
const ADJ: [&str; 4] = ["great", "new", "old", "famous"];
const LABELS: [&str; 2] = ["food", "sport"];

/// `n` short texts per label whose nouns separate the labels (`sport`, `food`); `offset` varies the texts.
fn classify_rows(n: usize, offset: usize) -> Vec<(String, &'static str)> {
    let mut rows = Vec::new();
    for i in 0..n {
        let k = i + offset;
        let adj = ADJ[k % ADJ.len()];
        rows.push((format!("the {adj} {} and the {}", SPORT[k % 8], SPORT[(k * 3 + 1) % 8]), "sport"));
        rows.push((format!("a {adj} {} with {}", FOOD[k % 8], FOOD[(k * 5 + 2) % 8]), "food"));
    }
    rows
}

/// A `text,label` CSV of [`classify_rows`].
fn write_classify_csv(path: &Path, n: usize, offset: usize) {
    let mut csv = String::from("text,label\n");
    for (t, l) in classify_rows(n, offset) {
        csv.push_str(&format!("{t},{l}\n"));
    }
    std::fs::write(path, csv).unwrap();
}

/// `train.csv` (12 per label) and `val.csv` (3 per label) in `dir`.
fn classify_data(dir: &Path) -> (PathBuf, PathBuf) {
    let (train, val) = (dir.join("train.csv"), dir.join("val.csv"));
    write_classify_csv(&train, 12, 0);
    write_classify_csv(&val, 3, 40);
    (train, val)
}

/// Texts to predict on: unseen sentences of both kinds, one longer than `--max-len 32` tokens (truncated alike by
/// suite and transformers), one with a comma and non-ASCII text.
const PREDICT_TEXTS: [&str; 4] = [
    "the referee stopped the football match",
    "fresh bread and butter from the oven",
    "soup, cheese and café crème: a recipe for a long winter evening with friends, family, neighbours and \
     everyone else who likes to eat well and talk about the old stadium and the famous team",
    "tennis",
];

const PERSONS: [&str; 6] = ["John", "Maria", "Ahmed", "Lena", "Pierre", "Yuki"];
const SURNAMES: [&str; 3] = ["Smith", "Garcia", "Tanaka"];
const CITIES: [&str; 6] = ["Paris", "Berlin", "Tokyo", "Cairo", "Lima", "Oslo"];

/// A CoNLL file (word and tag columns, IOB2) of `n` sentences with PER and LOC entities.
fn write_conll(path: &Path, n: usize, offset: usize) {
    let mut out = String::from("-DOCSTART- O\n\n");
    for i in 0..n {
        let k = i + offset;
        let mut words: Vec<(&str, &str)> = vec![(PERSONS[k % 6], "B-PER")];
        if k.is_multiple_of(2) {
            words.push((SURNAMES[k % 3], "I-PER"));
        }
        let verb = ["visited", "moved to", "lives in"][k % 3];
        words.extend(verb.split(' ').map(|w| (w, "O")));
        words.push((CITIES[(k * 5 + 1) % 6], "B-LOC"));
        words.push((["yesterday", "last", "again"][k % 3], "O"));
        words.push((".", "O"));
        for (w, t) in words {
            out.push_str(&format!("{w} {t}\n"));
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// A SQuAD v1.1 JSON file of `n` short biographies with two questions each.
fn write_squad(path: &Path, n: usize, offset: usize) {
    let jobs = ["doctor", "pilot", "teacher", "baker", "painter"];
    let mut paragraphs = Vec::new();
    for i in 0..n {
        let k = i + offset;
        let (name, city, job) = (PERSONS[k % 6], CITIES[(k * 5 + 1) % 6], jobs[k % 5]);
        let context =
            format!("{name} was born in {city} in {}. Later {name} worked as a {job} for many years.", 1950 + k);
        let qa = |id: String, q: String, a: &str| {
            let start = context.find(a).unwrap();
            serde_json::json!({"id": id, "question": q, "answers": [{"text": a, "answer_start": start}]})
        };
        let qas = vec![
            qa(format!("q{k}a"), format!("Where was {name} born?"), city),
            qa(format!("q{k}b"), format!("What did {name} work as?"), job),
        ];
        paragraphs.push(serde_json::json!({"context": context, "qas": qas}));
    }
    let squad = serde_json::json!({"version": "1.1", "data": [{"title": "people", "paragraphs": paragraphs}]});
    std::fs::write(path, serde_json::to_string_pretty(&squad).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// transformers as the reference

/// Loads a hub-layout folder with `AutoModelFor<kind>` + `AutoTokenizer`, runs the texts of a JSON list (or
/// question/context pairs) through them, truncated to `max_len` tokens and padded, and writes the logits with
/// the encoded inputs (so that suite can run the very same ids). Prints `id2label` as JSON.
const TRANSFORMERS_LOGITS: &str = r#"
import sys, json, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from safetensors.torch import save_file
model_dir, texts_path, out_path, max_len = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = json.load(open(texts_path, encoding="utf-8"))
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
save_file({k: v.contiguous() for k, v in [("logits", logits), ("input_ids", enc["input_ids"]),
           ("attention_mask", enc["attention_mask"]), ("token_type_ids", enc["token_type_ids"])]}, out_path)
print(json.dumps({int(k): v for k, v in model.config.id2label.items()}))
"#;

/// transformers' logits on [`PREDICT_TEXTS`] for the hub-layout folder `model_dir`, with the encoded inputs and
/// the label names in head order.
struct Reference {
    logits: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    token_type_ids: Tensor,
    labels: Vec<String>,
}

fn transformers_reference(dir: &Path, model_dir: &Path) -> Reference {
    let texts = dir.join("texts.json");
    std::fs::write(&texts, serde_json::to_string(&PREDICT_TEXTS).unwrap()).unwrap();
    let out = dir.join("reference.safetensors");
    let id2label = python(TRANSFORMERS_LOGITS, &[s(model_dir), s(&texts), s(&out), "32"]);
    let id2label: HashMap<String, String> = serde_json::from_str(id2label.trim()).unwrap();
    let labels: Vec<String> = (0..id2label.len()).map(|i| id2label[&i.to_string()].clone()).collect();
    let mut t: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let mut take = |k: &str| t.remove(k).unwrap_or_else(|| panic!("no {k} in the reference"));
    Reference {
        logits: take("logits"),
        input_ids: take("input_ids"),
        attention_mask: take("attention_mask"),
        token_type_ids: take("token_type_ids"),
        labels,
    }
}

/// `suite predict text --json` of [`PREDICT_TEXTS`] from stdin: per input, label → probability.
fn predict_probs(cwd: &Path, run: &Path) -> Vec<HashMap<String, f64>> {
    let stdin = PREDICT_TEXTS.join("\n") + "\n";
    let out = suite_with_stdin(cwd, &["predict", "text", "--run", s(run), "--json", "--device", "cpu"], &stdin);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), PREDICT_TEXTS.len(), "one JSON line per input: {}", out.show());
    let mut all = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["line"], i + 1, "{line}");
        let top = v["top"].as_array().unwrap_or_else(|| panic!("no top list: {line}"));
        let probs: HashMap<String, f64> =
            top.iter().map(|t| (t["label"].as_str().unwrap().to_string(), t["prob"].as_f64().unwrap())).collect();
        let mut names: Vec<&str> = probs.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, LABELS, "every label, from the training set: {line}");
        let sum: f64 = probs.values().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}: {line}");
        let p: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "not sorted: {line}");
        all.push(probs);
    }
    all
}

/// Checks a hub-layout export against the run it came from: transformers' softmax equals suite predict's
/// probabilities, and suite's own forward pass of the run's model (`model_dir`, full or adapter folder) on
/// transformers' input ids equals transformers' logits, both within [`TOL`]. Returns the largest differences.
fn assert_export_matches(dir: &Path, run: &Path, export: &Path, model_dir: &Path) -> (f64, f64) {
    let reference = transformers_reference(dir, export);
    let mut sorted = reference.labels.clone();
    sorted.sort();
    assert_eq!(sorted, LABELS, "id2label of the export");
    let theirs = reference.logits.softmax(-1, Kind::Double);
    let ours = predict_probs(dir, run);
    let mut prob_diff = 0.0f64;
    for (i, probs) in ours.iter().enumerate() {
        for (c, name) in reference.labels.iter().enumerate() {
            let t = theirs.double_value(&[i as i64, c as i64]);
            prob_diff = prob_diff.max((probs[name] - t).abs());
        }
    }
    assert!(prob_diff <= TOL, "suite predict vs transformers probabilities differ by {prob_diff}");

    let (_vs, model, labels, _) = load_trained(model_dir, TextTaskKind::Classify, Device::Cpu).unwrap();
    assert_eq!(labels, reference.labels);
    let logits = tch::no_grad(|| {
        model.forward(&reference.input_ids, &reference.token_type_ids, &reference.attention_mask, false)
    });
    let logit_diff = (&logits - &reference.logits).abs().max().double_value(&[]);
    let scale = reference.logits.abs().max().double_value(&[]);
    assert!(scale > 1e-3, "degenerate logits {}", reference.logits);
    assert!(logit_diff <= TOL, "suite vs transformers logits differ by {logit_diff}:\n{logits}\n{}", reference.logits);
    eprintln!("max |Δ| vs transformers: probabilities {prob_diff:.3e}, logits {logit_diff:.3e} (tolerance {TOL})");
    (prob_diff, logit_diff)
}

/// The value `suite eval` prints for `metric` (`  accuracy  0.8333`).
#[track_caller]
fn printed_metric(out: &Out, metric: &str) -> f64 {
    let line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(metric))
        .unwrap_or_else(|| panic!("{metric} not printed: {}", out.show()));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn eval_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "eval")
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Classification end to end: run folder, predict, eval, export to transformers

#[test]
fn classify_run_predicts_evaluates_and_exports_to_transformers() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let run = dir.path().join("run");
    let out = finetune(dir.path(), "--lr 3e-4", &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]);
    out.assert_ok();
    assert!(out.stderr.contains("24 training and 6 validation examples"), "{}", out.show());
    for f in [
        "config.toml",
        "metrics.jsonl",
        "curves.png",
        "best/config.json",
        "best/model.safetensors",
        "best/tokenizer.json",
        "eval/metrics.json",
        "eval/confusion.csv",
        "eval/confusion.png",
        "eval/per_class.csv",
    ] {
        let p = run.join(f);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 0, "{f} missing or empty");
    }
    for png in ["curves.png", "eval/confusion.png"] {
        assert_eq!(&std::fs::read(run.join(png)).unwrap()[..8], b"\x89PNG\r\n\x1a\n", "{png} is not a PNG");
    }
    let records: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train_recs: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "train").collect();
    assert!(!train_recs.is_empty() && train_recs.iter().all(|r| r["loss"].as_f64().is_some_and(f64::is_finite)));
    assert!(!eval_records(&run).is_empty(), "no eval record: {records:?}");

    // The saved config is a transformers config with the run's labels.
    let config = read_json(&run.join("best/config.json"));
    assert_eq!(config["model_type"], "bert");
    let id2label: Vec<&str> = (0..2).map(|i| config["id2label"][i.to_string()].as_str().unwrap()).collect();
    assert_eq!(id2label, LABELS);
    // The report of the best model over the 6 validation texts.
    let metrics = read_json(&run.join("eval/metrics.json"));
    let best_acc = metrics["accuracy"].as_f64().expect("eval/metrics.json has accuracy");
    let confusion = std::fs::read_to_string(run.join("eval/confusion.csv")).unwrap();
    let total: u64 =
        confusion.lines().skip(1).flat_map(|l| l.split(',').skip(1)).map(|v| v.parse::<u64>().unwrap()).sum();
    assert_eq!(total, 6, "confusion matrix over the 6 validation texts:\n{confusion}");
    let per_class = std::fs::read_to_string(run.join("eval/per_class.csv")).unwrap();
    assert_eq!(per_class.lines().count(), 1 + LABELS.len(), "{per_class}");

    // eval on the run's validation data prints the accuracy of eval/metrics.json; on other data, an accuracy.
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_ok();
    let printed = printed_metric(&out, "accuracy");
    assert!((printed - best_acc).abs() < 1e-4, "eval prints {printed}, eval/metrics.json has {best_acc}");
    let other = dir.path().join("other.csv");
    write_classify_csv(&other, 4, 80);
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--data", s(&other), "--device", "cpu"]);
    out.assert_ok();
    assert!((0.0..=1.0).contains(&printed_metric(&out, "accuracy")), "{}", out.show());

    // Labelled data with a label the model does not know, empty input, a broken JSON line: named by file and line.
    let zebra = dir.path().join("zebra.csv");
    std::fs::write(&zebra, "text,label\nthe goal,sport\nstripes,zebra\n").unwrap();
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--data", s(&zebra), "--device", "cpu"]);
    out.assert_error(&["zebra.csv", "line 3", "zebra"]);
    let predict = ["predict", "text", "--run", s(&run), "--device", "cpu"];
    suite_with_stdin(dir.path(), &predict, "\n  \n").assert_error(&["<stdin>", "empty"]);
    suite_with_stdin(dir.path(), &predict, "soup\n{\"text\": \n").assert_error(&["<stdin>", "line 2", "JSON"]);

    // Plain text output: one line per input, line number first.
    let out =
        suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--device", "cpu"], "tennis\n\nsoup\n");
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "blank lines are skipped: {}", out.show());
    assert!(lines[0].starts_with("1\t") && lines[1].starts_with("3\t"), "{}", out.show());

    // Export, then transformers on the export vs suite on the run.
    let export = dir.path().join("export");
    suite(dir.path(), &["export", "--run", s(&run), "--out", s(&export)]).assert_ok();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(export.join(f).is_file(), "export lacks {f}");
    }
    assert_export_matches(dir.path(), &run, &export, &run.join("best"));
}

// ---------------------------------------------------------------------------------------------------------------
// 2. PEFT

#[test]
fn lora_run_saves_an_adapter_and_merges_into_a_transformers_model() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let run = dir.path().join("lora");
    let out =
        finetune(dir.path(), "--peft lora --lr 1e-3", &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]);
    out.assert_ok();
    let best = run.join("best");
    for f in ["adapter.safetensors", "config.json", "suite_adapter.json", "tokenizer.json"] {
        assert!(best.join(f).is_file(), "best/ lacks {f}");
    }
    assert!(!best.join("model.safetensors").exists(), "a LoRA run saves no full model");
    let meta = read_json(&best.join("suite_adapter.json"));
    assert_eq!(meta["base_model"], "all-MiniLM-L6-v2");

    // predict and eval load base + adapter.
    predict_probs(dir.path(), &run);
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_ok();
    let acc = printed_metric(&out, "accuracy");
    let best_acc = read_json(&run.join("eval/metrics.json"))["accuracy"].as_f64().unwrap();
    assert!((acc - best_acc).abs() < 1e-4, "eval prints {acc}, eval/metrics.json has {best_acc}");

    // Without --merge, the adapter folder as it is.
    let plain = dir.path().join("adapter-export");
    suite(dir.path(), &["export", "--run", s(&run), "--out", s(&plain)]).assert_ok();
    assert!(plain.join("adapter.safetensors").is_file() && !plain.join("model.safetensors").exists());

    // --merge: a plain hub-layout model that transformers loads, equal to the adapter run.
    let merged = dir.path().join("merged");
    let out = suite(dir.path(), &["export", "--run", s(&run), "--out", s(&merged), "--merge"]);
    out.assert_ok();
    assert!(!merged.join("adapter.safetensors").exists(), "a merged export has no adapter");
    let full = std::fs::metadata(merged.join("model.safetensors")).unwrap().len();
    let adapter = std::fs::metadata(best.join("adapter.safetensors")).unwrap().len();
    let ratio = adapter as f64 / full as f64;
    eprintln!("adapter {adapter} bytes = {:.2} % of the full model ({full} bytes)", 100.0 * ratio);
    assert!(ratio < 0.05, "adapter {adapter} bytes is not < 5 % of the full model's {full}");
    assert_export_matches(dir.path(), &run, &merged, &best);
}

#[test]
fn merge_of_a_bitfit_run_is_refused() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let run = dir.path().join("bitfit");
    let out = finetune(
        dir.path(),
        "--peft bitfit --max-steps 1",
        &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)],
    );
    out.assert_ok();
    assert!(run.join("best/adapter.safetensors").is_file());
    let merged = dir.path().join("merged");
    let out = suite(dir.path(), &["export", "--run", s(&run), "--out", s(&merged), "--merge"]);
    out.assert_error(&["--merge", "bitfit", "LoRA"]);
    assert!(!merged.join("model.safetensors").exists());
}

/// Perturbs one encoder tensor of a copy of the MiniLM folder.
const PERTURB: &str = r#"
import sys
from safetensors.torch import load_file, save_file
path = sys.argv[1]
t = load_file(path)
t["encoder.layer.2.intermediate.dense.bias"] += 0.01
save_file({k: v.contiguous() for k, v in t.items()}, path, metadata={"format": "pt"})
"#;

#[test]
fn adapter_on_another_base_is_refused_by_checksum() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let base = dir.path().join("minilm-perturbed");
    std::fs::create_dir_all(&base).unwrap();
    for entry in std::fs::read_dir(minilm_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, base.join(p.file_name().unwrap())).unwrap();
        }
    }
    python(PERTURB, &[s(&base.join("model.safetensors"))]);
    let run = dir.path().join("run");
    let flags = format!("--peft lora --max-steps 1 --model {}", s(&base));
    finetune(dir.path(), &flags, &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]).assert_ok();
    // Still loads on its own base.
    suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--device", "cpu"], "soup\n").assert_ok();

    // Now claim it was trained on the real all-MiniLM-L6-v2.
    let meta_path = run.join("best/suite_adapter.json");
    let mut meta = read_json(&meta_path);
    meta["base_model"] = "all-MiniLM-L6-v2".into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let out = suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--device", "cpu"], "soup\n");
    out.assert_error_after_progress(&["adapter was trained on", "checksum", "different base"]);
    let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu"]);
    out.assert_error_after_progress(&["checksum", "different base"]);
}

#[test]
fn bad_peft_settings_are_refused_before_training() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let cases: [(&str, &[&str]); 3] = [
        ("--peft lora --lora-r 0", &["lora", "r", "0"]),
        ("--peft lora --lora-targets nosuchlayer", &["nosuchlayer"]),
        ("--peft bogus", &["bogus", "lora", "bitfit"]),
    ];
    for (i, (flags, needles)) in cases.iter().enumerate() {
        let run = dir.path().join(format!("run{i}"));
        let out = finetune(dir.path(), flags, &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]);
        out.assert_error(needles);
        assert!(!run.exists(), "`{flags}` left a run folder behind");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 3. NER and 4. QA

#[test]
fn ner_run_evaluates_f1_and_predicts_entities() {
    let dir = tmp();
    let (train, val) = (dir.path().join("train.conll"), dir.path().join("val.conll"));
    write_conll(&train, 48, 0);
    write_conll(&val, 6, 100);
    let run = dir.path().join("run");
    // Enough steps at a high rate for the tag head to find the entities of this regular data.
    let flags = "--task ner --max-steps 16 --batch-size 8 --lr 2e-3 --warmup-steps 0";
    let out = finetune(dir.path(), flags, &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]);
    out.assert_ok();
    assert!(run.join("eval/metrics.json").is_file() && run.join("eval/per_type.csv").is_file());
    let config = read_json(&run.join("best/config.json"));
    let n_labels = config["id2label"].as_object().unwrap().len();
    assert_eq!(n_labels, 4, "O, B-PER, I-PER, B-LOC: {config}");

    let out = suite(dir.path(), &["eval", "--run", s(&run), "--data", s(&val), "--device", "cpu"]);
    out.assert_ok();
    let f1 = printed_metric(&out, "f1");
    assert!((0.0..=1.0).contains(&f1), "{}", out.show());
    let best_f1 = read_json(&run.join("eval/metrics.json"))["f1"].as_f64().unwrap();
    assert!((f1 - best_f1).abs() < 1e-4, "eval prints f1 {f1}, eval/metrics.json has {best_f1}");

    let text = "Maria Garcia moved to Oslo again .\n";
    let out = suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--device", "cpu"], text);
    out.assert_ok();
    let line = out.stdout.trim();
    assert!(line.starts_with("1\t"), "{}", out.show());
    assert!(line.contains("[PER]") || line.contains("[LOC]"), "no entity found (eval f1 {f1}): {}", out.show());

    let out = suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--json", "--device", "cpu"], text);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(v["tokens"], serde_json::json!(words));
    assert_eq!(v["tags"].as_array().unwrap().len(), words.len());
    for e in v["entities"].as_array().unwrap() {
        let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
        assert!(start < end && end <= words.len(), "{e}");
        assert_eq!(e["text"], words[start..end].join(" "));
        // Character offsets in the input line name the same words.
        let (c0, c1) = (e["start_char"].as_u64().unwrap() as usize, e["end_char"].as_u64().unwrap() as usize);
        assert_eq!(text.chars().skip(c0).take(c1 - c0).collect::<String>(), words[start..end].join(" "), "{e}");
        assert!(["PER", "LOC"].contains(&e["type"].as_str().unwrap()), "{e}");
    }
    eprintln!("NER: f1 {f1}; predicted {}", v["entities"]);
}

/// A tag whose only sentence falls into the held-out split is still in the tag set: the split comes from the same
/// file, and the held-out sentences are scored against it.
#[test]
fn ner_tag_only_in_the_held_out_split_is_known() {
    let dir = tmp();
    let data = dir.path().join("train.conll");
    write_conll(&data, 8, 0);
    // One ORG sentence, which the seeded 40 % split holds out.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("Acme B-ORG\nsells O\nbread O\n");
    std::fs::write(&data, text).unwrap();
    let run = dir.path().join("run");
    let out = finetune(dir.path(), "--task ner --max-steps 1 --val-split 0.4", &["--data", s(&data), "--out", s(&run)]);
    out.assert_ok();
    let config = read_json(&run.join("best/config.json"));
    let tags: Vec<&str> = config["id2label"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
    assert!(tags.contains(&"B-ORG"), "{config}");
    let held_out = std::fs::read_to_string(run.join("eval/predictions.jsonl")).unwrap();
    assert!(held_out.contains("B-ORG"), "the ORG sentence was not held out, so this test checks nothing:\n{held_out}");
}

#[test]
fn qa_run_evaluates_exact_and_f1_and_answers_from_the_context() {
    let dir = tmp();
    let (train, val) = (dir.path().join("train.json"), dir.path().join("val.json"));
    write_squad(&train, 12, 0);
    write_squad(&val, 3, 50);
    let run = dir.path().join("run");
    let flags = "--task qa --max-len 64 --doc-stride 16 --lr 1e-3";
    let out = finetune(dir.path(), flags, &["--data", s(&train), "--val-data", s(&val), "--out", s(&run)]);
    out.assert_ok();
    assert!(run.join("eval/predictions.json").is_file());

    let out = suite(dir.path(), &["eval", "--run", s(&run), "--data", s(&val), "--device", "cpu"]);
    out.assert_ok();
    for m in ["exact", "f1"] {
        let v = printed_metric(&out, m);
        assert!((0.0..=100.0).contains(&v), "{m} = {v}: {}", out.show());
    }

    let contexts = [
        "Lena was born in Lima in 1999. Later Lena worked as a pilot for many years.",
        // Longer than one 64-token window: the context is read in overlapping windows.
        "The old harbour of the town was rebuilt many times over the centuries, first by traders, then by the navy \
         and finally by the city council. Yuki was born in Cairo in 1987. Later Yuki worked as a baker for many \
         years in a small shop near the harbour.",
    ];
    let stdin: String = [("Where was Lena born?", contexts[0]), ("What did Yuki work as?", contexts[1])]
        .iter()
        .map(|(q, c)| serde_json::json!({"question": q, "context": c}).to_string() + "\n")
        .collect();
    let out = suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--json", "--device", "cpu"], &stdin);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.show());
    for (line, context) in lines.iter().zip(contexts) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let answer = v["answer"].as_str().unwrap();
        assert!(!answer.is_empty() && context.contains(answer), "answer {answer:?} is not in the context: {line}");
        // start/end are the answer's character offsets in the context.
        let (start, end) = (v["start"].as_u64().unwrap() as usize, v["end"].as_u64().unwrap() as usize);
        assert_eq!(context.chars().skip(start).take(end - start).collect::<String>(), answer, "{line}");
    }
    // A plain line is not a question.
    let out = suite_with_stdin(dir.path(), &["predict", "text", "--run", s(&run), "--device", "cpu"], "hello\n");
    out.assert_error(&["<stdin>", "line 1", "question"]);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Bad input

#[test]
fn bad_text_inputs_are_named_by_file_and_line_or_field() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let with = |flags: &str, data: &Path, val: Option<&Path>| {
        let run = dir.path().join("run");
        let mut args: Vec<&str> = vec!["--data", s(data), "--out", s(&run)];
        if let Some(v) = val {
            args.extend(["--val-data", s(v)]);
        }
        let out = finetune(dir.path(), flags, &args);
        assert!(!run.exists(), "a refused job left a run folder: {}", out.show());
        out
    };

    // Non-UTF-8 bytes (Latin-1 é) on line 3.
    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(&latin1, b"text,label\nthe football match,sport\ncaf\xe9 soup,food\n").unwrap();
    with("", &latin1, Some(&val)).assert_error(&["latin1.csv", "line 3", "UTF-8"]);

    // A validation label that training never saw, on line 4 of the validation file.
    let zebra = dir.path().join("val-zebra.csv");
    std::fs::write(&zebra, "text,label\nthe goal,sport\nthe soup,food\nstripes,zebra\n").unwrap();
    with("", &train, Some(&zebra)).assert_error(&["val-zebra.csv", "line 4", "zebra"]);

    // A validation tag that training never saw, on line 2 of the validation file.
    let (ner_train, ner_val) = (dir.path().join("ner-train.conll"), dir.path().join("ner-val.conll"));
    write_conll(&ner_train, 4, 0);
    std::fs::write(&ner_val, "Acme B-ORG\nsells O\n").unwrap();
    with("--task ner", &ner_train, Some(&ner_val)).assert_error(&["ner-val.conll", "line 1", "B-ORG"]);

    // A CoNLL line with three columns after two-column lines.
    let conll = dir.path().join("bad.conll");
    std::fs::write(&conll, "John B-PER\nlives O\nin there O\nParis B-LOC\n\nMaria B-PER\nsings O\n").unwrap();
    with("--task ner", &conll, None).assert_error(&["bad.conll", "line 3", "3"]);

    // A SQuAD answer that is not at its answer_start.
    let squad = dir.path().join("bad.json");
    let bad = serde_json::json!({"data": [{"title": "t", "paragraphs": [{"context": "Lena was born in Lima.",
        "qas": [{"id": "q-lima", "question": "Where was Lena born?", "answers": [{"text": "Lima", "answer_start": 3}]}]}]}]});
    std::fs::write(&squad, bad.to_string()).unwrap();
    with("--task qa --doc-stride 16", &squad, None).assert_error(&["bad.json", "q-lima", "answer_start"]);

    // Empty files, for each task.
    for (task, name) in [("classify", "empty.csv"), ("ner", "empty.conll"), ("qa", "empty.json")] {
        let empty = dir.path().join(name);
        std::fs::write(&empty, "").unwrap();
        with(&format!("--task {task} --doc-stride 16"), &empty, None).assert_error(&[name, "empty"]);
    }

    // A CSV without the label column.
    let nolabel = dir.path().join("nolabel.csv");
    std::fs::write(&nolabel, "text,category\nthe goal,sport\nthe soup,food\n").unwrap();
    with("", &nolabel, Some(&val)).assert_error(&["nolabel.csv", "line 1", "label"]);

    // QA windows shorter than the default stride (128 tokens): the error says which flag to pass.
    with("--task qa", &squad, None).assert_error(&["doc_stride", "128", "max_len (32)", "--doc-stride"]);

    // An unknown task.
    with("--task bogus", &train, Some(&val)).assert_error(&["bogus", "classify", "ner", "qa"]);
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Kill and resume

/// Flags of the resumable job: 24 training texts in batches of 4, 6 steps, a checkpoint and an evaluation every
/// 2 steps.
fn resumable_job(train: &Path, val: &Path, out: &Path) -> Vec<String> {
    let flags = "--max-steps 6 --save-steps 2 --eval-steps 2 --lr 3e-4";
    finetune_args(flags, &["--data", s(train), "--val-data", s(val), "--out", s(out)])
}

/// The first complete checkpoint folder under `run/checkpoints`.
fn complete_checkpoint(run: &Path) -> Option<PathBuf> {
    std::fs::read_dir(run.join("checkpoints")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
        p.file_name().unwrap().to_string_lossy().starts_with("step-") && p.join("trainer_state.json").is_file()
    })
}

#[test]
fn killed_classify_run_resumes_to_the_metrics_of_an_uninterrupted_run() {
    let dir = tmp();
    let (train, val) = classify_data(dir.path());
    let killed = dir.path().join("killed");
    let log = std::fs::File::create(dir.path().join("killed.log")).unwrap();
    let mut child = Command::new(SUITE)
        .args(resumable_job(&train, &val, &killed))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting suite");
    let start = Instant::now();
    let ckpt = loop {
        if let Some(c) = complete_checkpoint(&killed) {
            break c;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before its first checkpoint: {}",
                std::fs::read_to_string(dir.path().join("killed.log")).unwrap()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("final/model.safetensors").exists(),
        "the run finished before it was killed (first checkpoint {}), so nothing was resumed",
        ckpt.display()
    );

    let out = suite(dir.path(), &["finetune", "text", "--resume", s(&killed)]);
    out.assert_ok();
    assert!(out.stderr.contains("resumed from"), "{}", out.show());

    let straight = dir.path().join("straight");
    let args = resumable_job(&train, &val, &straight);
    suite(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>()).assert_ok();

    let (a, b) = (eval_records(&killed), eval_records(&straight));
    assert_eq!(b.len(), 3, "evaluations at steps 2, 4, 6: {b:?}");
    assert_eq!(a.last(), b.last(), "the last evaluation of the resumed run differs from the uninterrupted run's");
    assert_eq!(a, b, "resumed and uninterrupted runs logged different evaluations");
    let tensors = |run: &Path| -> HashMap<String, Tensor> {
        Tensor::read_safetensors(run.join("final/model.safetensors")).unwrap().into_iter().collect()
    };
    let (a, b) = (tensors(&killed), tensors(&straight));
    assert_eq!(a.len(), b.len());
    let differ: Vec<&String> =
        b.iter().filter(|(n, t)| !a.get(*n).is_some_and(|u| u.equal(t))).map(|(n, _)| n).collect();
    assert!(differ.is_empty(), "final/: resumed and uninterrupted runs differ in {differ:?}");
}
