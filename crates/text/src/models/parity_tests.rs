//! Parity with transformers 5.23.0 in suite's pinned Python environment: the real all-MiniLM-L6-v2 against
//! `BertModel`, seeded small RoBERTa / XLM-R / DistilBERT / BERT (gelu_new) models against their
//! `AutoModelFor…` classes for all three heads (logits and gradients), exports loaded back by `from_pretrained`,
//! and `load_pretrained` on base, task and wrong-architecture checkpoints. Tensors travel as safetensors files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use suite_core::python::run_python;
use suite_core::weights::{read_safetensors, save_safetensors};
use tch::{nn, Device, Kind, Tensor};

use super::*;

const TOL: f64 = 1e-4;

fn read_map(path: &Path) -> HashMap<String, Tensor> {
    read_safetensors(path).unwrap().into_iter().collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Two rows: a sentence pair with a second segment, and a shorter padded sentence.
fn inputs(pad: i64, cls: i64, sep: i64, pair_types: bool) -> (Tensor, Tensor, Tensor) {
    let ids = Tensor::from_slice(&[
        cls, 7592, 2088, 1010, 2129, sep, 2024, 2017, 1029, sep, //
        cls, 4067, 2017, sep, pad, pad, pad, pad, pad, pad,
    ])
    .view([2, 10]);
    let t = i64::from(pair_types);
    let types = Tensor::from_slice(&[0, 0, 0, 0, 0, 0, t, t, t, t, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0i64]).view([2, 10]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]).view([2, 10]);
    (ids, types, mask)
}

/// Token ids folded into a small vocabulary, keeping the special ids.
fn small_ids(ids: &Tensor, mask: &Tensor, vocab: i64, pad: i64) -> Tensor {
    let folded = ids.remainder(vocab - 4) + 3;
    folded.where_self(&mask.ne(0), &Tensor::from(pad))
}

fn save_inputs(dir: &Path, ids: &Tensor, types: &Tensor, mask: &Tensor) {
    let t = vec![
        ("ids".to_string(), ids.shallow_clone()),
        ("types".to_string(), types.shallow_clone()),
        ("mask".to_string(), mask.shallow_clone()),
    ];
    save_safetensors(&dir.join("in.safetensors"), &t, None).unwrap();
}

fn minilm() -> PathBuf {
    minilm_asset_dir().expect("the minilm asset is not unpacked: run scripts/setup.sh")
}

const MINILM_HIDDEN: &str = r#"
import sys, torch
from transformers import BertModel
from safetensors.torch import load_file, save_file
d, out = sys.argv[1], sys.argv[2]
m = BertModel.from_pretrained(d).eval()
x = load_file(out + "/in.safetensors")
with torch.no_grad():
    o = m(input_ids=x["ids"], token_type_ids=x["types"], attention_mask=x["mask"])
save_file({"hidden": o.last_hidden_state.contiguous(), "pooled": o.pooler_output.contiguous()}, out + "/out.safetensors")
"#;

#[test]
fn minilm_hidden_states_match_bert_model() {
    let dir = tempfile::tempdir().unwrap();
    let asset = minilm();
    let (ids, types, mask) = inputs(0, 101, 102, true);
    save_inputs(dir.path(), &ids, &types, &mask);
    run_python(MINILM_HIDDEN, &[asset.to_str().unwrap(), dir.path().to_str().unwrap()]).unwrap();
    let want = read_map(&dir.path().join("out.safetensors"));

    let config = EncoderConfig::from_file(asset.join("config.json")).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Classify { num_labels: 2 }).unwrap();
    let report = model.load_pretrained(&mut vs, &[asset.join("model.safetensors")]).unwrap();
    assert_eq!(report.missing, ["classifier.bias", "classifier.weight"], "{report}");
    assert!(report.unexpected.is_empty() && report.mismatched.is_empty(), "{report}");
    let (hidden, pooled) = tch::no_grad(|| model.encode(&ids, &types, &mask, false));
    let dh = max_abs_diff(&hidden, &want["hidden"]);
    let dp = max_abs_diff(&pooled.unwrap(), &want["pooled"]);
    println!("all-MiniLM-L6-v2 vs BertModel: hidden states max |Δ| {dh:.3e}, pooled max |Δ| {dp:.3e}");
    assert!(dh < TOL && dp < TOL, "hidden {dh}, pooled {dp}");
}

/// Builds the three task models of a config with a fixed seed and perturbed weights (so no LayerNorm is the
/// identity and no bias is zero), saves their state dicts, eval logits, and the gradients of a fixed linear
/// function of the classification logits.
const SMALL_MODELS: &str = r#"
import sys, json, torch
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoModelForQuestionAnswering)
from safetensors.torch import load_file, save_file
root = sys.argv[1]
for case in sys.argv[2:]:
    d = f"{root}/{case}"
    x = load_file(d + "/in.safetensors")
    out = {}
    for name, cls, n in [("classify", AutoModelForSequenceClassification, 3),
                         ("tokens", AutoModelForTokenClassification, 4),
                         ("span", AutoModelForQuestionAnswering, 2)]:
        cfg = AutoConfig.from_pretrained(d, num_labels=n)
        torch.manual_seed(0)
        m = cls.from_config(cfg).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{d}/{name}.safetensors")
        kw = dict(input_ids=x["ids"], attention_mask=x["mask"])
        if cfg.model_type != "distilbert":
            kw["token_type_ids"] = x["types"]
        o = m(**kw)
        logits = torch.stack([o.start_logits, o.end_logits], -1) if name == "span" else o.logits
        out[name] = logits.detach().contiguous()
        if name == "classify":
            w = torch.linspace(-1, 1, logits.numel()).view_as(logits)
            (logits * w).sum().backward()
            for k, p in m.named_parameters():
                out["grad." + k] = p.grad.contiguous()
    save_file(out, d + "/out.safetensors")
"#;

fn small_configs() -> Vec<(&'static str, serde_json::Value)> {
    let bert_like = |model_type: &str, act: &str, pad: i64, types: i64, eps: f64| {
        json!({"model_type": model_type, "vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 37, "hidden_act": act,
               "max_position_embeddings": 40, "type_vocab_size": types, "layer_norm_eps": eps,
               "pad_token_id": pad, "bos_token_id": 0, "eos_token_id": 2})
    };
    vec![
        ("bert", bert_like("bert", "gelu_new", 0, 2, 1e-12)),
        ("roberta", bert_like("roberta", "relu", 1, 1, 1e-5)),
        ("xlm-roberta", bert_like("xlm-roberta", "gelu_pytorch_tanh", 1, 1, 1e-5)),
        (
            "distilbert",
            json!({"model_type": "distilbert", "vocab_size": 60, "dim": 32, "n_layers": 2, "n_heads": 4,
                   "hidden_dim": 48, "activation": "gelu", "max_position_embeddings": 40, "pad_token_id": 0}),
        ),
    ]
}

#[test]
fn small_models_match_transformers_for_every_head() {
    let root = tempfile::tempdir().unwrap();
    let cases = small_configs();
    for (name, cfg) in &cases {
        let d = root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), serde_json::to_string_pretty(cfg).unwrap()).unwrap();
        let pad = cfg["pad_token_id"].as_i64().unwrap();
        let (ids, types, mask) = inputs(pad, 0, 2, *name == "bert");
        save_inputs(&d, &small_ids(&ids, &mask, 60, pad), &types, &mask);
    }
    let mut args = vec![root.path().to_str().unwrap()];
    args.extend(cases.iter().map(|(n, _)| *n));
    run_python(SMALL_MODELS, &args).unwrap();

    for (name, _) in &cases {
        let d = root.path().join(name);
        let config = EncoderConfig::from_file(d.join("config.json")).unwrap();
        let x = read_map(&d.join("in.safetensors"));
        let want = read_map(&d.join("out.safetensors"));
        for (key, head) in [
            ("classify", Head::Classify { num_labels: 3 }),
            ("tokens", Head::Tokens { num_labels: 4 }),
            ("span", Head::Span),
        ] {
            let mut vs = nn::VarStore::new(Device::Cpu);
            let model = TextModel::new(&vs.root(), &config, head).unwrap();
            let report = model.load_pretrained(&mut vs, &[d.join(format!("{key}.safetensors"))]).unwrap();
            assert!(
                report.missing.is_empty() && report.unexpected.is_empty() && report.mismatched.is_empty(),
                "{name} {key}: {report}"
            );
            let logits = model.forward(&x["ids"], &x["types"], &x["mask"], false);
            let diff = max_abs_diff(&logits, &want[key]);
            println!("{name} {key}: logits max |Δ| {diff:.3e}");
            assert!(diff < TOL, "{name} {key}: logits differ by {diff}");
            if key != "classify" {
                continue;
            }
            let w = Tensor::linspace(-1.0, 1.0, logits.numel() as i64, (Kind::Float, Device::Cpu)).view_as(&logits);
            (&logits * w).sum(Kind::Float).backward();
            let mut worst = (0.0f64, String::new());
            for (var, t) in vs.variables() {
                let g = &want[&format!("grad.{var}")];
                let diff = max_abs_diff(&t.grad(), g) / (1.0 + g.abs().max().double_value(&[]));
                if diff > worst.0 {
                    worst = (diff, var);
                }
            }
            println!("{name} classify: gradients max relative |Δ| {:.3e} ({})", worst.0, worst.1);
            assert!(worst.0 < TOL, "{name}: gradient of {} differs by {}", worst.1, worst.0);
        }
    }
}

/// Loads each exported folder with `AutoModelFor…` and `AutoTokenizer`, and writes logits and config facts.
const LOAD_EXPORTS: &str = r#"
import sys, json, torch
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoModelForQuestionAnswering, AutoTokenizer)
from safetensors.torch import load_file, save_file
root = sys.argv[1]
x = load_file(root + "/in.safetensors")
facts, out = {}, {}
for name, cls in [("classify", AutoModelForSequenceClassification), ("tokens", AutoModelForTokenClassification),
                  ("span", AutoModelForQuestionAnswering), ("multi", AutoModelForSequenceClassification)]:
    d = f"{root}/{name}"
    m = cls.from_pretrained(d).eval()
    with torch.no_grad():
        o = m(input_ids=x["ids"], token_type_ids=x["types"], attention_mask=x["mask"])
    out[name] = (torch.stack([o.start_logits, o.end_logits], -1) if name == "span" else o.logits).contiguous()
    tok = AutoTokenizer.from_pretrained(d)
    facts[name] = {"class": type(m).__name__, "labels": [m.config.id2label[i] for i in range(m.config.num_labels)],
                   "problem_type": m.config.problem_type, "ids": tok("hello world")["input_ids"],
                   "fast": tok.is_fast}
save_file(out, root + "/out.safetensors")
print(json.dumps(facts))
"#;

#[test]
fn exports_load_in_transformers_with_the_same_logits() {
    tch::manual_seed(7);
    let root = tempfile::tempdir().unwrap();
    let asset = minilm();
    let config = EncoderConfig::from_file(asset.join("config.json")).unwrap();
    let (ids, types, mask) = inputs(0, 101, 102, true);
    save_inputs(root.path(), &ids, &types, &mask);
    let labels = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let cases = [
        ("classify", Head::Classify { num_labels: 3 }, labels(&["negative", "neutral", "positive"]), false),
        ("tokens", Head::Tokens { num_labels: 5 }, labels(&["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), false),
        ("span", Head::Span, Vec::new(), false),
        ("multi", Head::Classify { num_labels: 2 }, labels(&["sports", "politics"]), true),
    ];
    let mut ours = HashMap::new();
    for (name, head, names, multi) in &cases {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = TextModel::new(&vs.root(), &config, *head).unwrap();
        model.load_pretrained(&mut vs, &[asset.join("model.safetensors")]).unwrap();
        model.export(&vs, &root.path().join(name), names, *multi, &asset).unwrap();
        ours.insert(*name, tch::no_grad(|| model.forward(&ids, &types, &mask, false)));
    }
    let facts: serde_json::Value =
        serde_json::from_str(&run_python(LOAD_EXPORTS, &[root.path().to_str().unwrap()]).unwrap()).unwrap();
    let want = read_map(&root.path().join("out.safetensors"));
    for (name, head, names, multi) in &cases {
        let diff = max_abs_diff(&ours[name], &want[*name]);
        println!("export {name}: transformers logits max |Δ| {diff:.3e}");
        assert!(diff < TOL, "{name}: exported logits differ by {diff}");
        let f = &facts[*name];
        let class = format!("Bert{}", head.class_suffix());
        assert_eq!(f["class"], json!(class));
        if !names.is_empty() {
            assert_eq!(f["labels"], json!(names));
        }
        let problem = match (head, multi) {
            (Head::Classify { .. }, true) => json!("multi_label_classification"),
            (Head::Classify { .. }, false) => json!("single_label_classification"),
            _ => json!(null),
        };
        assert_eq!(f["problem_type"], problem, "{name}");
        assert_eq!(f["ids"], json!([101, 7592, 2088, 102]), "{name}: tokenizer");
        assert_eq!(f["fast"], json!(true));
    }

    // The exported classifier (names with the `bert.` prefix and a head) loads back completely…
    let exported = [root.path().join("classify/model.safetensors")];
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Classify { num_labels: 3 }).unwrap();
    let report = model.load_pretrained(&mut vs, &exported).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty() && report.mismatched.is_empty(), "{report}");
    let diff = max_abs_diff(&tch::no_grad(|| model.forward(&ids, &types, &mask, false)), &ours["classify"]);
    assert_eq!(diff, 0.0);
    // …into a head of another size it loads the encoder and leaves the new head fresh, reported…
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Classify { num_labels: 5 }).unwrap();
    let report = model.load_pretrained(&mut vs, &exported).unwrap();
    let mismatched: Vec<&str> = report.mismatched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(mismatched, ["classifier.bias", "classifier.weight"], "{report}");
    assert!(report.loaded.iter().any(|n| n == "bert.pooler.dense.weight"));
    // …and into a span head the classifier and pooler are left unused.
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Span).unwrap();
    let report = model.load_pretrained(&mut vs, &exported).unwrap();
    assert_eq!(report.missing, ["qa_outputs.bias", "qa_outputs.weight"], "{report}");
    assert_eq!(report.unexpected.len(), 4, "{report}");
}

#[test]
fn wrong_architecture_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let asset = minilm();
    let bert = EncoderConfig::from_file(asset.join("config.json")).unwrap();
    // A DistilBERT task checkpoint offered to a BERT config.
    let distil = EncoderConfig::from_value(
        json!({"model_type": "distilbert", "dim": 384, "n_heads": 12, "n_layers": 1, "hidden_dim": 64}),
        "d",
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let other = TextModel::new(&vs.root(), &distil, Head::Classify { num_labels: 2 }).unwrap();
    let file = dir.path().join("distil.safetensors");
    save_safetensors(&file, &other.named_tensors(), None).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &bert, Head::Classify { num_labels: 2 }).unwrap();
    let err = format!("{:#}", model.load_pretrained(&mut vs, std::slice::from_ref(&file)).unwrap_err());
    println!("{err}");
    assert!(err.contains("distil.safetensors") && err.contains("DistilBERT names"), "{err}");
    assert!(err.contains("model_type \"bert\""), "{err}");

    // The same architecture with other sizes: the core loader lists the shape mismatches and loads nothing.
    let mut small = bert.clone();
    small.num_hidden_layers = 1;
    small.intermediate_size = 100;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &small, Head::Tokens { num_labels: 2 }).unwrap();
    let err = format!("{:#}", model.load_pretrained(&mut vs, &[asset.join("model.safetensors")]).unwrap_err());
    assert!(err.contains("intermediate.dense.weight") && err.contains("mismatch"), "{err}");
}
