//! Integrated gradients against Captum 0.9.0's `LayerIntegratedGradients` in suite's pinned Python: the real
//! all-MiniLM-L6-v2 with a deterministic head (classification, NER, QA), exported in hub layout and loaded by
//! transformers' `AutoModelFor…`, explained on the same ids, baseline, targets and steps; and the Gauss-Legendre
//! rule against numpy's `leggauss`.

use std::path::Path;

use serde_json::{json, Value};
use suite_core::python::run_python;
use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::models::{minilm_asset_dir, EncoderConfig, Head, TextModel};
use crate::task::TextConfig;

/// Captum vs suite, per token score and explained outputs.
const TOL: f64 = 1e-4;

const LEGGAUSS: &str = r#"
import sys, json, numpy as np
out = {}
for n in map(int, sys.argv[1:]):
    x, w = np.polynomial.legendre.leggauss(n)
    out[n] = [(0.5 * (1 + x)).tolist(), (0.5 * w).tolist()]
print(json.dumps(out))
"#;

#[test]
fn explain_gauss_legendre_matches_numpy() {
    let ns = [1usize, 2, 7, 50, 300];
    let args: Vec<String> = ns.iter().map(|n| n.to_string()).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let want: Value = serde_json::from_str(&run_python(LEGGAUSS, &refs).unwrap()).unwrap();
    for n in ns {
        let (alphas, steps) = gauss_legendre(n);
        let w = &want[n.to_string()];
        for (ours, theirs) in [(&alphas, &w[0]), (&steps, &w[1])] {
            let theirs: Vec<f64> = serde_json::from_value(theirs.clone()).unwrap();
            let d = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert_eq!(ours.len(), theirs.len());
            assert!(d < 1e-12, "n = {n}: |Δ| {d}");
        }
    }
}

/// Runs `LayerIntegratedGradients(forward, model.bert.embeddings.word_embeddings)` with Captum's default method
/// for each case of the job file: classification with `target=`, NER and QA with a forward that returns the
/// explained output itself (an entity's logit sum, the start or end logit at a position).
const CAPTUM: &str = r#"
import sys, json, torch
from captum.attr import LayerIntegratedGradients
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoModelForQuestionAnswering)
job = json.load(open(sys.argv[1]))
cls = {"classify": AutoModelForSequenceClassification, "ner": AutoModelForTokenClassification,
       "qa": AutoModelForQuestionAnswering}[job["task"]]
m = cls.from_pretrained(job["model_dir"]).eval()
layer = m.bert.embeddings.word_embeddings
out = []
for case in job["cases"]:
    ids, types, base = (torch.tensor([case[k]]) for k in ("ids", "types", "baseline"))
    mask = torch.ones_like(ids)
    res = []
    for t in case["targets"]:
        target = None
        if job["task"] == "classify":
            fwd = lambda i, ty, ma: m(input_ids=i, token_type_ids=ty, attention_mask=ma).logits
            target = t["class"]
        elif job["task"] == "ner":
            fwd = lambda i, ty, ma, items=t["items"]: sum(
                m(input_ids=i, token_type_ids=ty, attention_mask=ma).logits[:, p, l] for p, l in items)
        else:
            fwd = lambda i, ty, ma, t=t: getattr(m(input_ids=i, token_type_ids=ty, attention_mask=ma),
                                                 t["which"] + "_logits")[:, t["pos"]]
        lig = LayerIntegratedGradients(fwd, layer)
        attr, delta = lig.attribute(ids, baselines=base, additional_forward_args=(types, mask), target=target,
                                    n_steps=job["steps"], method="gausslegendre", return_convergence_delta=True)
        with torch.no_grad():
            fx, fb = fwd(ids, types, mask), fwd(base, types, mask)
        if target is not None:
            fx, fb = fx[:, target], fb[:, target]
        res.append({"scores": attr.sum(-1)[0].tolist(), "delta": delta.item(), "fx": fx.item(), "fb": fb.item()})
    out.append(res)
print(json.dumps(out))
"#;

/// all-MiniLM-L6-v2 with `head`, whose head weights are set to a fixed pattern (no random draw, so no seed),
/// exported in hub layout into `dir` and loaded back as predictions load it.
fn predictor(dir: &Path, head: Head, labels: &[&str], cfg: TextConfig) -> TextPredictor {
    let asset = minilm_asset_dir().expect("the minilm asset is not unpacked: run scripts/setup.sh");
    let config = EncoderConfig::from_file(asset.join("config.json")).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, head).unwrap();
    model.load_pretrained(&mut vs, &[asset.join("model.safetensors")]).unwrap();
    for (name, t) in vs.variables() {
        if name.starts_with("classifier.") || name.starts_with("qa_outputs.") {
            let n = t.numel() as i64;
            let pattern = (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.731).sin() * 0.3;
            tch::no_grad(|| t.shallow_clone().copy_(&pattern.view_as(&t)));
        }
    }
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    model.export(&vs, dir, &labels, false, &asset).unwrap();
    TextPredictor::load(dir, &cfg, Device::Cpu).unwrap()
}

/// Explains `inputs` with suite and Captum, asserts per-token agreement within [`TOL`] and small completeness
/// errors; returns the explanations.
fn compare(dir: &Path, p: &TextPredictor, task: &str, inputs: &[(TextInput, Option<usize>)]) -> Vec<TextExplanation> {
    let steps = 50;
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (input, target) in inputs {
        let e = explain(p, input, &ExplainOptions { steps, target: *target }).unwrap();
        let targets: Vec<Value> = e
            .attributions
            .iter()
            .map(|a| match a.kind {
                "class" => json!({"class": p.labels().iter().position(|l| *l == a.label).unwrap()}),
                "entity" => {
                    let tags: Vec<(usize, i64)> =
                        a.positions.iter().map(|&pos| (pos, explained_tag(p, &e, pos))).collect();
                    json!({"items": tags})
                }
                which => json!({"which": which, "pos": a.positions[0]}),
            })
            .collect();
        cases.push(json!({"ids": e.token_ids, "types": e.type_ids, "baseline": e.baseline_ids, "targets": targets}));
        ours.push(e);
    }
    let job = json!({"task": task, "model_dir": dir, "steps": steps, "cases": cases});
    let job_file = dir.join("job.json");
    std::fs::write(&job_file, job.to_string()).unwrap();
    let theirs: Vec<Vec<Value>> =
        serde_json::from_str(&run_python(CAPTUM, &[job_file.to_str().unwrap()]).unwrap()).unwrap();
    let (mut worst, mut worst_completeness) = (0f64, 0f64);
    for (e, want) in ours.iter().zip(&theirs) {
        assert_eq!(e.attributions.len(), want.len());
        for (a, w) in e.attributions.iter().zip(want) {
            let scores: Vec<f64> = serde_json::from_value(w["scores"].clone()).unwrap();
            assert_eq!(a.scores.len(), scores.len());
            assert_eq!(a.scores.len(), e.tokens.len());
            // Guards against comparing two empty explanations.
            assert!(scores.iter().any(|s| s.abs() > 1e-3), "{task} {}: Captum's scores are all ~0", a.label);
            let d = a.scores.iter().zip(&scores).map(|(&x, y)| (x as f64 - y).abs()).fold(0.0, f64::max);
            let df =
                (a.output - w["fx"].as_f64().unwrap()).abs().max((a.baseline_output - w["fb"].as_f64().unwrap()).abs());
            let dd = (a.completeness_error - w["delta"].as_f64().unwrap().abs()).abs();
            println!(
                "{task} {} {:?}: scores max |Δ| {d:.2e}, F max |Δ| {df:.2e}, completeness {:.2e} (relative {:.2e}), \
                 Captum's delta {:.2e}",
                a.label,
                a.text,
                a.completeness_error,
                a.relative_error,
                w["delta"].as_f64().unwrap().abs()
            );
            assert!(d < TOL && df < TOL && dd < TOL, "{task} {}: scores {d}, outputs {df}, delta {dd}", a.label);
            worst = worst.max(d);
            worst_completeness = worst_completeness.max(a.relative_error);
        }
    }
    println!("{task}: max |Δ| vs Captum {worst:.2e}, worst relative completeness error {worst_completeness:.2e}");
    assert!(worst_completeness < 0.05, "{task}: completeness error {worst_completeness}");
    ours
}

/// The tag index an NER explanation used at `pos`: the predicted tag of the token (its word's first sub-token).
fn explained_tag(p: &TextPredictor, e: &TextExplanation, pos: usize) -> i64 {
    let ids = Tensor::from_slice(&e.token_ids).view([1, -1]);
    let types = Tensor::from_slice(&e.type_ids).view([1, -1]);
    let logits = tch::no_grad(|| p.text_model().forward(&ids, &types, &ids.ones_like(), false));
    logits.get(0).get(pos as i64).argmax(-1, false).int64_value(&[])
}

#[test]
fn explain_classification_matches_captum() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TextConfig { max_len: 64, ..TextConfig::default() };
    let p = predictor(dir.path(), Head::Classify { num_labels: 3 }, &["food", "sport", "weather"], cfg);
    let inputs = [
        (TextInput::text("the referee stopped the football match"), None),
        (TextInput::Text { text: "is it cold today?".into(), pair: Some("the soup is hot".into()) }, Some(2)),
    ];
    let out = compare(dir.path(), &p, "classify", &inputs);
    assert_eq!(out[1].attributions[0].label, "weather");
}

#[test]
fn explain_ner_matches_captum() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TextConfig { task: TextTaskKind::Ner, max_len: 64, ..TextConfig::default() };
    let p = predictor(dir.path(), Head::Tokens { num_labels: 5 }, &["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], cfg);
    let words = ["John", "Smith", "visited", "Paris", "and", "Tokyo", "yesterday", "."];
    let inputs = [
        (TextInput::text("Maria Garcia moved to Berlin last year"), None),
        (TextInput::Tokens(words.iter().map(|w| w.to_string()).collect()), None),
    ];
    let out = compare(dir.path(), &p, "ner", &inputs);
    assert!(out.iter().any(|e| !e.attributions.is_empty()), "no entity predicted: {out:?}");
}

#[test]
fn explain_qa_matches_captum() {
    let dir = tempfile::tempdir().unwrap();
    // Short windows, so that the context spans several and the answer's window must be found.
    let cfg = TextConfig { task: TextTaskKind::Qa, max_len: 40, doc_stride: 12, ..TextConfig::default() };
    let p = predictor(dir.path(), Head::Span, &[], cfg);
    let context = "Maria Garcia is a pilot who lives in Berlin. She flies to Tokyo every week and spends her free \
                   time painting the old harbour of Hamburg, where her grandfather built ships for sixty years.";
    let inputs = [(TextInput::Question { question: "Where does Maria live?".into(), context: context.into() }, None)];
    let out = compare(dir.path(), &p, "qa", &inputs);
    assert_eq!(out[0].attributions.len(), 2);
    assert!(out[0].window.is_some());
}
