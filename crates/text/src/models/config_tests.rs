//! Config parsing, registry errors and model structure, without the Python reference.

use std::collections::BTreeSet;

use serde_json::json;
use suite_core::nn::{AttentionSlots, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Device, Kind, Tensor};

use super::*;

fn write_config(dir: &std::path::Path, value: &serde_json::Value) -> std::path::PathBuf {
    let p = dir.join("config.json");
    std::fs::write(&p, serde_json::to_string_pretty(value).unwrap()).unwrap();
    p
}

fn small_bert() -> serde_json::Value {
    json!({
        "model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": "gelu_new",
        "max_position_embeddings": 20, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0
    })
}

#[test]
fn distilbert_fields_are_normalised() {
    let c = EncoderConfig::from_value(
        json!({"model_type": "distilbert", "dim": 32, "n_layers": 3, "n_heads": 4, "hidden_dim": 64,
               "activation": "relu", "dropout": 0.05, "attention_dropout": 0.2, "seq_classif_dropout": 0.3,
               "qa_dropout": 0.15, "vocab_size": 99, "max_position_embeddings": 40}),
        "cfg",
    )
    .unwrap();
    assert_eq!(c.model_type, ModelType::DistilBert);
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size), (32, 3, 4, 64));
    assert_eq!(c.hidden_act, Activation::Relu);
    assert_eq!((c.hidden_dropout_prob, c.attention_probs_dropout_prob), (0.05, 0.2));
    assert_eq!((c.classifier_dropout, c.token_classifier_dropout, c.qa_dropout), (0.3, 0.05, 0.15));
    assert_eq!((c.type_vocab_size, c.layer_norm_eps, c.head_dim()), (0, 1e-12, 8));
}

#[test]
fn roberta_positions_start_after_padding() {
    let c = EncoderConfig::from_value(
        json!({"model_type": "xlm-roberta", "pad_token_id": 1, "max_position_embeddings": 514,
               "hidden_act": "gelu", "classifier_dropout": null}),
        "cfg",
    )
    .unwrap();
    assert_eq!(c.max_input_len(), 512);
    assert_eq!(c.classifier_dropout, c.hidden_dropout_prob);
    let ids = Tensor::from_slice(&[0i64, 5, 6, 2, 1, 1, 0, 7, 2, 1, 1, 1]).view([2, 6]);
    let pos = Vec::<i64>::try_from(roberta_position_ids(&ids, 1).view([-1])).unwrap();
    assert_eq!(pos, [2, 3, 4, 5, 1, 1, 2, 3, 4, 1, 1, 1]);
}

#[test]
fn config_errors_name_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = small_bert();
    v["hidden_act"] = json!("swish");
    let p = write_config(dir.path(), &v);
    let err = format!("{:#}", EncoderConfig::from_file(&p).unwrap_err());
    assert!(err.contains("config.json: field `hidden_act` (line "), "{err}");
    assert!(err.contains("\"swish\"") && err.contains("gelu_pytorch_tanh"), "{err}");

    let mut v = small_bert();
    v["num_attention_heads"] = json!(5);
    let err = format!("{:#}", EncoderConfig::from_file(write_config(dir.path(), &v)).unwrap_err());
    assert!(err.contains("field `hidden_size`") && err.contains("multiple of num_attention_heads = 5"), "{err}");

    let mut v = small_bert();
    v["model_type"] = json!("gpt2");
    let err = format!("{:#}", EncoderConfig::from_file(write_config(dir.path(), &v)).unwrap_err());
    assert!(
        err.contains("unsupported model type \"gpt2\"") && err.contains("bert, roberta, xlm-roberta, distilbert"),
        "{err}"
    );

    let mut v = small_bert();
    v["vocab_size"] = json!("many");
    let err = format!("{:#}", EncoderConfig::from_file(write_config(dir.path(), &v)).unwrap_err());
    assert!(err.contains("field `vocab_size`") && err.contains("expected an integer"), "{err}");

    std::fs::write(dir.path().join("config.json"), "{\"model_type\": \"bert\",").unwrap();
    let err = format!("{:#}", EncoderConfig::from_file(dir.path().join("config.json")).unwrap_err());
    assert!(err.contains("not valid JSON") && err.contains("line 1"), "{err}");

    // serde entry point: same checks.
    let err = serde_json::from_value::<EncoderConfig>(json!({"model_type": "bert", "hidden_dropout_prob": 1.5}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("hidden_dropout_prob") && err.contains("[0, 1)"), "{err}");
}

#[derive(Default)]
struct Names {
    linears: Vec<String>,
    attention: Vec<String>,
}

impl LayerVisitor for Names {
    fn linear(&mut self, layer: &mut Linear) {
        self.linears.push(layer.name.clone());
    }
    fn attention(&mut self, slots: &mut AttentionSlots) {
        self.attention.push(slots.name.clone());
    }
}

#[test]
fn names_and_layers_follow_transformers() {
    let c = EncoderConfig::from_value(small_bert(), "cfg").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut m = TextModel::new(&vs.root(), &c, Head::Classify { num_labels: 3 }).unwrap();
    let names: BTreeSet<String> = vs.variables().into_keys().collect();
    for n in [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.0.attention.output.LayerNorm.weight",
        "bert.encoder.layer.0.intermediate.dense.bias",
        "bert.encoder.layer.0.output.dense.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    let own: BTreeSet<String> = m.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(own, names, "named_tensors lists exactly the VarStore");
    assert_eq!(m.head_prefixes(), ["classifier.", "bert.pooler."]);
    assert_eq!(m.architecture(), "BertForSequenceClassification");
    let mut v = Names::default();
    m.visit_layers(&mut v);
    assert_eq!(v.attention, ["bert.encoder.layer.0.attention.self", "bert.encoder.layer.1.attention.self"]);
    assert_eq!(v.linears.len(), 2 * 6 + 2);
    assert_eq!(v.linears[3], "bert.encoder.layer.0.attention.output.dense");
    // Fresh head: normal(0, 0.02) weights, zero bias; padding row of the word embeddings zero.
    let vars = vs.variables();
    let w = &vars["classifier.weight"];
    let std = w.std(true).double_value(&[]);
    assert!((0.005..0.05).contains(&std), "classifier std {std}");
    assert_eq!(vars["classifier.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert_eq!(vars["bert.embeddings.word_embeddings.weight"].get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);

    // Tokens and Span heads of BERT have no pooler; DistilBERT's classifier is pre_classifier + classifier.
    let vs = nn::VarStore::new(Device::Cpu);
    let m = TextModel::new(&vs.root(), &c, Head::Span).unwrap();
    assert!(!vs.variables().keys().any(|n| n.contains("pooler")));
    assert_eq!(m.head_prefixes(), ["qa_outputs."]);
    let d = EncoderConfig::from_value(json!({"model_type": "distilbert", "dim": 16, "n_heads": 2, "n_layers": 1}), "d")
        .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let m = TextModel::new(&(vs.root() / "wrapped"), &d, Head::Classify { num_labels: 2 }).unwrap();
    assert_eq!(m.head_prefixes(), ["wrapped.pre_classifier.", "wrapped.classifier."]);
    assert!(vs.variables().contains_key("wrapped.distilbert.transformer.layer.0.attention.q_lin.weight"));
    assert!(m.named_tensors().iter().any(|(n, _)| n == "distilbert.transformer.layer.0.ffn.lin1.weight"));
    assert!(TextModel::new(&vs.root(), &d, Head::Tokens { num_labels: 0 }).is_err());
}

#[test]
fn forward_shapes_masks_and_dropout() {
    tch::manual_seed(0);
    let c = EncoderConfig::from_value(small_bert(), "cfg").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let ids = Tensor::from_slice(&[2i64, 5, 7, 9, 3, 2, 8, 3, 0, 0]).view([2, 5]);
    let types = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 0, 0, 0, 0, 0]).view([2, 5]);
    let mask = ids.ne(0).to_kind(Kind::Int64);
    for (i, (head, shape)) in [
        (Head::Classify { num_labels: 3 }, vec![2, 3]),
        (Head::Tokens { num_labels: 4 }, vec![2, 5, 4]),
        (Head::Span, vec![2, 5, 2]),
    ]
    .into_iter()
    .enumerate()
    {
        let m = TextModel::new(&vs.root().sub(i), &c, head).unwrap();
        let eval = tch::no_grad(|| m.forward(&ids, &types, &mask, false));
        assert_eq!(eval.size(), shape);
        assert!(eval.equal(&tch::no_grad(|| m.forward(&ids, &types, &mask, false))), "eval is deterministic");
        let train = tch::no_grad(|| m.forward(&ids, &types, &mask, true));
        assert!(!train.allclose(&eval, 1e-6, 1e-6, false), "dropout is active in train mode");
    }
    let m0 = TextModel::new(&vs.root().sub("check"), &c, Head::Span).unwrap();
    m0.check_inputs(&ids, &types, &mask).unwrap();
    let err = m0.check_inputs(&(&ids + 45), &types, &mask).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary of 50 tokens"), "{err}");
    let err = m0.check_inputs(&ids, &(&types * 2), &mask).unwrap_err().to_string();
    assert!(err.contains("2 token types"), "{err}");
    let long = Tensor::zeros([1, 21], (Kind::Int64, Device::Cpu));
    let err = m0.check_inputs(&long, &long, &long).unwrap_err().to_string();
    assert!(err.contains("longer than the 20 positions"), "{err}");
    let err = m0.check_inputs(&ids, &types, &mask.to_kind(Kind::Float)).unwrap_err().to_string();
    assert!(err.starts_with("attention_mask: expected Int64"), "{err}");

    // Padding does not leak: the first row alone gives the same token logits as inside the padded batch.
    let m = TextModel::new(&vs.root().sub("tok"), &c, Head::Tokens { num_labels: 4 }).unwrap();
    let both = tch::no_grad(|| m.forward(&ids, &types, &mask, false));
    let row = |t: &Tensor| t.narrow(0, 1, 1).narrow(1, 0, 3);
    let alone = tch::no_grad(|| m.forward(&row(&ids), &row(&types), &row(&mask), false));
    let d = (both.narrow(0, 1, 1).narrow(1, 0, 3) - alone).abs().max().double_value(&[]);
    assert!(d < 1e-5, "padding changed unpadded logits by {d}");
}

#[test]
fn registry_errors_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = format!("{:#}", resolve_text_model(d).unwrap_err());
    assert!(err.contains("has no config.json"), "{err}");
    write_config(dir.path(), &small_bert());
    let err = format!("{:#}", resolve_text_model(d).unwrap_err());
    assert!(err.contains("has no tokenizer.json") && err.contains("same hub repository"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let err = format!("{:#}", resolve_text_model(d).unwrap_err());
    assert!(err.contains("model.safetensors"), "{err}");
    write_config(dir.path(), &json!({"model_type": "t5"}));
    let err = format!("{:#}", resolve_text_model(d).unwrap_err());
    assert!(err.contains("\"t5\"") && err.contains("bert, roberta, xlm-roberta, distilbert"), "{err}");
    assert!(known_models().iter().any(|(n, id)| *n == DEFAULT_TEXT_MODEL && id.starts_with("sentence-transformers/")));
}

#[test]
fn minilm_resolves_to_the_offline_asset() {
    let Some(asset) = minilm_asset_dir() else {
        panic!("the minilm asset is not unpacked: run scripts/setup.sh");
    };
    for spec in ["all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2"] {
        let f = resolve_text_model(spec).unwrap();
        assert_eq!(f.dir, asset);
        assert_eq!(f.weights, [asset.join("model.safetensors")]);
        assert_eq!(f.tokenizer, asset.join("tokenizer.json"));
    }
    let local = resolve_text_model(asset.to_str().unwrap()).unwrap();
    assert_eq!(local.config, asset.join("config.json"));
}
