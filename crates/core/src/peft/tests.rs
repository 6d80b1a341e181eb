//! Behaviour of the PEFT methods on small models built from the core's layers: identity at initialisation, merge
//! and unmerge, what trains, adapter files, errors, and a short training run.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::test_models::{
    bert_input, det, max_diff, randomize, snapshot, tiny_bert, tiny_conv, TinyBert, TinyConvNet, CLASSES, HIDDEN,
    INTER, LAYERS,
};
use super::*;
use crate::optim::{param_groups, OptimizerConfig};

fn lora(r: i64, alpha: f64) -> LoraConfig {
    LoraConfig { r, alpha, ..LoraConfig::default() }
}

fn conv_input() -> Tensor {
    det(&[2, 3, 9, 7], 55, 1.5)
}

fn trained_names(vs: &VarStore) -> Vec<String> {
    let mut v: Vec<String> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
    v.sort();
    v
}

/// Largest difference between two snapshots, over every variable.
fn snapshot_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((n1, x), (n2, y))| {
            assert_eq!(n1, n2);
            max_diff(x, y)
        })
        .fold(0.0, f64::max)
}

#[test]
fn methods_at_initialisation_leave_outputs_bit_identical() {
    let cases = [
        PeftConfig::Lora(LoraConfig { dropout: 0.1, ..lora(4, 8.0) }),
        PeftConfig::Dora(lora(2, 4.0)),
        PeftConfig::Ia3(Ia3Config::default()),
        PeftConfig::Adapter(AdapterConfig::default()),
        PeftConfig::Adapter(AdapterConfig { kind: AdapterKind::Pfeiffer, ..AdapterConfig::default() }),
        PeftConfig::Lora(LoraConfig { targets: Some(Targets::AllLinear), rslora: true, ..lora(3, 5.0) }),
    ];
    for cfg in &cases {
        let (mut vs, mut m) = tiny_bert(1);
        let (x, mask) = bert_input();
        let before = tch::no_grad(|| m.forward(&x, Some(&mask), false));
        let report = apply_peft(&mut vs, &mut m, cfg, &TinyBert::targets()).unwrap();
        assert!(!report.adapted_layers.is_empty());
        let after = tch::no_grad(|| m.forward(&x, Some(&mask), false));
        assert!(before.equal(&after), "{}: outputs changed at initialisation", cfg.method_name());
        // Training mode too: LoRA's dropout only feeds the branch that B = 0 cancels.
        let after_train = tch::no_grad(|| m.forward(&x, Some(&mask), true));
        assert!(before.equal(&after_train), "{}: training-mode outputs changed", cfg.method_name());
    }
    for cfg in [PeftConfig::Lora(lora(4, 8.0)), PeftConfig::Dora(lora(4, 8.0)), PeftConfig::Ia3(Ia3Config::default())] {
        let (mut vs, mut m) = tiny_conv(2);
        let x = conv_input();
        let before = tch::no_grad(|| m.forward(&x, false));
        let t = PeftTargets { ia3: vec!["conv1".into(), "conv2".into()], ..TinyConvNet::targets() };
        let report = apply_peft(&mut vs, &mut m, &cfg, &t).unwrap();
        assert_eq!(report.adapted_layers, ["conv1", "layer1.0.conv2"]);
        assert!(before.equal(&tch::no_grad(|| m.forward(&x, false))), "{}: conv net changed", cfg.method_name());
    }
}

#[test]
fn merged_lora_and_dora_match_unmerged_and_unmerge_restores() {
    for dora in [false, true] {
        let c = LoraConfig { targets: Some(Targets::AllLinear), ..lora(4, 16.0) };
        let cfg = if dora { PeftConfig::Dora(c) } else { PeftConfig::Lora(c) };
        let (mut vs, mut m) = tiny_bert(3);
        apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
        let (x, mask) = bert_input();
        randomize(&vs, &["lora_"], 11);
        let before = snapshot(&vs);
        let adapted = tch::no_grad(|| m.forward(&x, Some(&mask), false));
        // Six linear layers per encoder layer, the head excluded.
        assert_eq!(merge_lora(&mut m).unwrap(), 12, "{}", cfg.method_name());
        let merged = tch::no_grad(|| m.forward(&x, Some(&mask), false));
        assert!(snapshot_diff(&before, &snapshot(&vs)) > 1e-3, "merging changes the weights");
        assert_eq!(merge_lora(&mut m).unwrap(), 0, "nothing left to merge");
        assert_eq!(unmerge_lora(&mut m).unwrap(), 12);
        let d_merge = max_diff(&adapted, &merged);
        let d_weight = snapshot_diff(&before, &snapshot(&vs));
        let d_out = max_diff(&adapted, &tch::no_grad(|| m.forward(&x, Some(&mask), false)));
        println!(
            "{} bert: merged vs unmerged {d_merge:.2e}, weights after unmerge {d_weight:.2e}, outputs {d_out:.2e}",
            cfg.method_name()
        );
        assert!(d_merge < 1e-5 && d_weight < 1e-6 && d_out < 1e-5, "{d_merge} {d_weight} {d_out}");
        assert_eq!(unmerge_lora(&mut m).unwrap(), 0);

        let (mut vs, mut m) = tiny_conv(4);
        let cfg = if dora { PeftConfig::Dora(lora(4, 8.0)) } else { PeftConfig::Lora(lora(4, 8.0)) };
        apply_peft(&mut vs, &mut m, &cfg, &TinyConvNet::targets()).unwrap();
        let x = conv_input();
        randomize(&vs, &["lora_"], 12);
        let before = snapshot(&vs);
        let adapted = tch::no_grad(|| m.forward(&x, false));
        assert_eq!(merge_lora(&mut m).unwrap(), 2);
        let d_merge = max_diff(&adapted, &tch::no_grad(|| m.forward(&x, false)));
        assert_eq!(unmerge_lora(&mut m).unwrap(), 2);
        let d_weight = snapshot_diff(&before, &snapshot(&vs));
        println!("{} conv: merged vs unmerged {d_merge:.2e}, weights after unmerge {d_weight:.2e}", cfg.method_name());
        assert!(d_merge < 1e-5 && d_weight < 1e-6, "{d_merge} {d_weight}");
    }
}

#[test]
fn only_method_tensors_and_head_train_and_counts_are_right() {
    // Parameters of TinyBert per layer: q, k, v, attention output (8·8 + 8 each), two layer norms (8 + 8 each),
    // intermediate 8→16 and output 16→8, with biases; plus the 8→3 classifier.
    let per_layer =
        4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * 2 * HIDDEN + (HIDDEN * INTER + INTER) + (INTER * HIDDEN + HIDDEN);
    let head = HIDDEN * CLASSES + CLASSES;
    let base = LAYERS * per_layer + head;

    let (mut vs, mut m) = tiny_bert(5);
    let report = apply_peft(&mut vs, &mut m, &PeftConfig::Lora(lora(2, 4.0)), &TinyBert::targets()).unwrap();
    let lora_params = LAYERS * 2 * (2 * HIDDEN + HIDDEN * 2);
    assert_eq!((report.trainable, report.total), (lora_params + head, base + lora_params));
    let mut want: Vec<String> = (0..LAYERS)
        .flat_map(|i| {
            ["query", "value"].into_iter().flat_map(move |t| {
                ["lora_A", "lora_B"].map(|ab| format!("encoder.layer.{i}.attention.self.{t}.{ab}.weight"))
            })
        })
        .chain(["classifier.bias".to_string(), "classifier.weight".to_string()])
        .collect();
    want.sort();
    assert_eq!(trained_names(&vs), want);
    assert_eq!(report.method, "lora");
    assert_eq!(report.adapted_layers.len(), 4);
    assert_eq!(
        report.summary_line(),
        format!(
            "trainable params: 155 of 1,355 ({:.2} %) — lora on 4 layers",
            100.0 * (lora_params + head) as f64 / (base + lora_params) as f64
        )
    );

    let (mut vs, mut m) = tiny_bert(5);
    let report = apply_peft(&mut vs, &mut m, &PeftConfig::Bitfit, &TinyBert::targets()).unwrap();
    let biases = LAYERS * (4 * HIDDEN + 2 * HIDDEN + INTER + HIDDEN);
    assert_eq!((report.trainable, report.total), (biases + head, base));
    assert!(trained_names(&vs).iter().all(|n| n.ends_with(".bias") || n.starts_with("classifier.")));
    assert_eq!(report.adapted_layers.len(), LAYERS as usize * 8);

    let (mut vs, mut m) = tiny_bert(5);
    let report = apply_peft(&mut vs, &mut m, &PeftConfig::Ia3(Ia3Config::default()), &TinyBert::targets()).unwrap();
    // key and value scale their 8 outputs; both output.dense layers are feed-forward (as peft's BERT defaults),
    // scaling their inputs: 8 for the attention output, 16 for the FFN down-projection.
    assert_eq!(report.trainable - head, LAYERS * (8 + 8 + 8 + 16));
    let names = trained_names(&vs);
    assert!(names.contains(&"encoder.layer.1.output.dense.ia3_l".to_string()));
    assert_eq!(vs.variables()["encoder.layer.1.output.dense.ia3_l"].size(), [1, INTER]);
    assert_eq!(vs.variables()["encoder.layer.1.attention.self.key.ia3_l"].size(), [HIDDEN, 1]);

    let (mut vs, mut m) = tiny_bert(5);
    let cfg = PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 3, projection: Some(5) });
    let report = apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
    let mlp = 3 * HIDDEN + (HIDDEN * 5 + 5) + (5 * 2 * LAYERS * HIDDEN + 2 * LAYERS * HIDDEN);
    assert_eq!((report.trainable, report.total), (mlp + head, base + mlp));
    assert_eq!(report.summary_line().split(" — ").nth(1), Some("prefix on 2 attention blocks"));

    let (mut vs, mut m) = tiny_bert(5);
    let cfg = PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 4, projection: None });
    let report = apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
    assert_eq!(report.trainable, LAYERS * 4 * 2 * HIDDEN + head);
    assert_eq!(vs.variables()["encoder.layer.0.attention.self.prefix_kv"].size(), [4, 2 * HIDDEN]);

    // Conv net: LoRA on both convolutions; batch norms outside the head stop updating their statistics.
    let (mut vs, mut m) = tiny_conv(6);
    let report = apply_peft(&mut vs, &mut m, &PeftConfig::Lora(lora(2, 2.0)), &TinyConvNet::targets()).unwrap();
    let conv_lora = (2 * 3 * 9 + 8 * 2) + (2 * 8 * 9 + 8 * 2);
    assert_eq!(report.trainable, conv_lora + 8 * 4 + 4);
    assert!(m.bn1.frozen && m.bn2.frozen);
    assert_eq!(vs.variables()["layer1.0.conv2.lora_A.weight"].size(), [2, 8, 3, 3]);
    assert_eq!(vs.variables()["layer1.0.conv2.lora_B.weight"].size(), [8, 2, 1, 1]);
}

#[test]
fn bottleneck_adapters_start_as_identity_and_train_only_themselves() {
    for (kind, positions) in [(AdapterKind::Houlsby, 4), (AdapterKind::Pfeiffer, 2)] {
        let (mut vs, mut m) = tiny_bert(7);
        let cfg = PeftConfig::Adapter(AdapterConfig { kind, reduction_factor: 2, ..AdapterConfig::default() });
        let report = apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
        assert_eq!(report.adapted_layers.len(), positions);
        if kind == AdapterKind::Pfeiffer {
            assert!(report.adapted_layers.iter().all(|n| n.ends_with(".output.dense") && !n.contains("attention")));
        }
        assert_eq!(vs.variables()["encoder.layer.0.output.dense.adapter_down.weight"].size(), [4, HIDDEN]);
        let (x, mask) = bert_input();
        let target = Tensor::from_slice(&[0i64, 2]);
        let groups = param_groups(&vs, &[], 0.0);
        let mut opt = OptimizerConfig::default().build(groups);
        let before = snapshot(&vs);
        for _ in 0..3 {
            opt.zero_grad();
            m.forward(&x, Some(&mask), true).cross_entropy_for_logits(&target).backward();
            opt.step(1e-2);
        }
        let after = snapshot(&vs);
        let changed: Vec<&str> =
            before.iter().zip(&after).filter(|((_, a), (_, b))| !a.equal(b)).map(|((n, _), _)| n.as_str()).collect();
        assert!(changed.iter().all(|n| n.contains(".adapter_") || n.starts_with("classifier.")), "{changed:?}");
        // Every `up` moves; with up = 0 the first step gives `down` no gradient, later steps do (units whose ReLU
        // never fires on this tiny batch stay put, so at least one `down` per position is asked for).
        for layer in &report.adapted_layers {
            assert!(changed.contains(&format!("{layer}.adapter_up.weight").as_str()), "{layer} up: {changed:?}");
            assert!(changed.contains(&format!("{layer}.adapter_down.weight").as_str()), "{layer} down: {changed:?}");
        }
    }
}

#[test]
fn adapter_file_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.safetensors");
    let cfg = PeftConfig::Dora(LoraConfig {
        targets: Some(Targets::Names(vec!["value".into(), "output.dense".into()])),
        ..lora(2, 4.0)
    });
    let (mut vs, mut m) = tiny_bert(8);
    let report = apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
    randomize(&vs, &["lora_", "classifier."], 21);
    let (x, mask) = bert_input();
    let want = tch::no_grad(|| m.forward(&x, Some(&mask), false));
    save_adapter(&path, &vs, &cfg, "tiny-bert", &report.base_checksum).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

    let file = read_adapter(&path).unwrap();
    assert_eq!(file.config, cfg);
    assert_eq!(file.base_id, "tiny-bert");
    assert_eq!(file.tensors.len(), trained_names(&vs).len());
    assert!(file.tensors.iter().all(|(n, _)| n.contains(".lora_") || n.starts_with("classifier.")));
    let meta = crate::weights::read_safetensors_metadata(&path).unwrap();
    assert_eq!(meta["suite.peft.method"], "dora");
    assert_eq!(meta["suite.version"], env!("CARGO_PKG_VERSION"));

    // A fresh copy of the same base: same checksum, same outputs once loaded.
    let (mut vs2, mut m2) = tiny_bert(8);
    let report2 = apply_peft(&mut vs2, &mut m2, &file.config, &TinyBert::targets()).unwrap();
    assert_eq!(report2.base_checksum, report.base_checksum);
    load_adapter(&mut vs2, &file, Some(&cfg), &report2.base_checksum).unwrap();
    let got = tch::no_grad(|| m2.forward(&x, Some(&mask), false));
    assert!(got.equal(&want), "outputs after loading differ by {}", max_diff(&got, &want));

    // Another base (different seed): refused, naming the base it was trained on.
    let (mut vs3, mut m3) = tiny_bert(9);
    let report3 = apply_peft(&mut vs3, &mut m3, &file.config, &TinyBert::targets()).unwrap();
    assert_ne!(report3.base_checksum, report.base_checksum);
    let err = load_adapter(&mut vs3, &file, None, &report3.base_checksum).unwrap_err().to_string();
    assert!(err.contains("adapter was trained on base tiny-bert (checksum") && err.contains("different base"), "{err}");

    // A model set up for another method.
    let (mut vs4, mut m4) = tiny_bert(8);
    let ia3 = PeftConfig::Ia3(Ia3Config::default());
    let r4 = apply_peft(&mut vs4, &mut m4, &ia3, &TinyBert::targets()).unwrap();
    let err = load_adapter(&mut vs4, &file, Some(&ia3), &r4.base_checksum).unwrap_err().to_string();
    assert!(err.contains("this is a dora adapter, but the model was set up for ia3"), "{err}");
    // Without an expected config the tensor names still disagree.
    let err = load_adapter(&mut vs4, &file, None, &r4.base_checksum).unwrap_err().to_string();
    assert!(
        err.contains("missing from the file [classifier") || err.contains("missing from the file [encoder"),
        "{err}"
    );
    assert!(err.contains("lora_"), "{err}");

    // Same method, another rank.
    let (mut vs5, mut m5) = tiny_bert(8);
    let other = PeftConfig::Dora(LoraConfig { r: 4, ..cfg.lora().unwrap() });
    let r5 = apply_peft(&mut vs5, &mut m5, &other, &TinyBert::targets()).unwrap();
    let err = load_adapter(&mut vs5, &file, Some(&other), &r5.base_checksum).unwrap_err().to_string();
    assert!(err.contains("differs from the model's"), "{err}");
    let err = load_adapter(&mut vs5, &file, None, &r5.base_checksum).unwrap_err().to_string();
    assert!(err.contains("has shape [2,") || err.contains("has shape [8, 2]"), "{err}");

    // Not an adapter file.
    let plain = dir.path().join("plain.safetensors");
    crate::weights::save_safetensors(&plain, &[("w".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)))], None)
        .unwrap();
    let err = read_adapter(&plain).unwrap_err().to_string();
    assert!(err.contains("plain.safetensors") && err.contains("suite.peft.config"), "{err}");
    let err = save_adapter(&path, &vs, &PeftConfig::None, "x", "y").unwrap_err().to_string();
    assert!(err.contains("no PEFT method"), "{err}");
}

#[test]
fn bad_configs_and_targets_are_clear_errors() {
    let t = TinyBert::targets();
    let err_of = |cfg: PeftConfig| {
        let (mut vs, mut m) = tiny_bert(10);
        apply_peft(&mut vs, &mut m, &cfg, &t).unwrap_err().to_string()
    };
    let e = err_of(PeftConfig::Lora(lora(0, 8.0)));
    assert!(e.contains("r = 0") && e.contains("positive integer"), "{e}");
    let e = err_of(PeftConfig::Lora(lora(4, 0.0)));
    assert!(e.contains("alpha = 0"), "{e}");
    let e = err_of(PeftConfig::Lora(LoraConfig { dropout: 1.0, ..lora(4, 8.0) }));
    assert!(e.contains("dropout = 1") && e.contains("[0, 1)"), "{e}");
    let e =
        err_of(PeftConfig::Lora(LoraConfig { targets: Some(Targets::Names(vec!["qurey".into()])), ..lora(4, 8.0) }));
    assert!(e.contains("\"qurey\" matches no layer") && e.contains("encoder.layer.0.attention.self.query"), "{e}");
    let e = err_of(PeftConfig::Lora(LoraConfig {
        targets: Some(Targets::Names(vec!["classifier".into()])),
        ..lora(4, 8.0)
    }));
    assert!(e.contains("matches only classifier") && e.contains("head"), "{e}");
    let e = err_of(PeftConfig::Ia3(Ia3Config { targets: None, feedforward: Some(vec!["intermediate.dense".into()]) }));
    assert!(e.contains("feedforward pattern \"intermediate.dense\""), "{e}");
    let e = err_of(PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 4, projection: Some(8) }));
    assert!(e.contains("P-tuning v2 has no reparameterisation"), "{e}");

    // A model with no place for the method.
    let (mut vs, mut m) = tiny_conv(11);
    let e = apply_peft(&mut vs, &mut m, &PeftConfig::Prefix(PrefixConfig::default()), &TinyConvNet::targets());
    assert!(e.unwrap_err().to_string().contains("no attention blocks"));
    let e = apply_peft(&mut vs, &mut m, &PeftConfig::Adapter(AdapterConfig::default()), &TinyConvNet::targets());
    assert!(e.unwrap_err().to_string().contains("no place for bottleneck adapters"));
    let e = apply_peft(&mut vs, &mut m, &PeftConfig::Ia3(Ia3Config::default()), &TinyConvNet::targets());
    assert!(e.unwrap_err().to_string().contains("declares no default (IA)³ targets"));

    // Applying twice.
    let (mut vs, mut m) = tiny_bert(12);
    apply_peft(&mut vs, &mut m, &PeftConfig::Lora(lora(2, 2.0)), &t).unwrap();
    let e = apply_peft(&mut vs, &mut m, &PeftConfig::Lora(lora(2, 2.0)), &t).unwrap_err().to_string();
    assert!(e.contains("already has an adapter"), "{e}");
}

#[test]
fn configs_parse_from_toml_and_cli() {
    let parse = |s: &str| crate::config::parse_toml::<PeftConfig>(s);
    let c = parse("method = \"lora\"\nr = 16\nalpha = 32\ndropout = 0.05\ntargets = \"query,value\"\n").unwrap();
    assert_eq!(
        c,
        PeftConfig::Lora(LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: Some(Targets::Names(vec!["query".into(), "value".into()])),
            ..LoraConfig::default()
        })
    );
    let c = parse("method = \"dora\"\ntargets = [\"q_proj\", \"v_proj\"]\n").unwrap();
    assert_eq!(c.method_name(), "dora");
    assert_eq!(c.lora().unwrap().targets, Some(Targets::Names(vec!["q_proj".into(), "v_proj".into()])));
    assert_eq!(
        parse("method = \"lora\"\ntargets = \"all-linear\"\n").unwrap().lora().unwrap().targets,
        Some(Targets::AllLinear)
    );
    assert_eq!(parse("method = \"bitfit\"\n").unwrap(), PeftConfig::Bitfit);
    assert_eq!(
        parse("method = \"p-tuning-v2\"\nnum_virtual_tokens = 8\n").unwrap(),
        PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 8, projection: None })
    );
    let a = parse("method = \"adapter\"\nkind = \"pfeiffer\"\nreduction_factor = 8\n").unwrap();
    assert_eq!(
        a,
        PeftConfig::Adapter(AdapterConfig {
            kind: AdapterKind::Pfeiffer,
            reduction_factor: 8,
            non_linearity: NonLinearity::Relu
        })
    );
    let e = parse("method = \"lora\"\nrank = 4\n").unwrap_err();
    assert!(e.contains("line 2") && e.contains("rank"), "{e}");
    let e = parse("method = \"lorra\"\n").unwrap_err();
    assert!(e.contains("lorra"), "{e}");
    let e = parse("method = \"lora\"\ntargets = \"query,,value\"\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    // The config survives JSON (adapter-file metadata).
    let json = serde_json::to_string(&c_all()).unwrap();
    assert_eq!(serde_json::from_str::<PeftConfig>(&json).unwrap(), c_all());

    let opts = PeftCliOptions {
        lora_r: Some(8),
        lora_alpha: Some(16.0),
        lora_dropout: Some(0.1),
        lora_targets: Some("query,value".into()),
        ..PeftCliOptions::default()
    };
    let c = from_cli("lora", &opts).unwrap();
    assert_eq!(c.lora().unwrap().scale(), 2.0);
    assert_eq!(from_cli("dora", &opts).unwrap().method_name(), "dora");
    let e = from_cli("ia3", &opts).unwrap_err().to_string();
    assert!(e.contains("--lora-r does not apply to --peft ia3"), "{e}");
    let e = from_cli("lora", &PeftCliOptions { lora_r: Some(0), ..PeftCliOptions::default() }).unwrap_err().to_string();
    assert!(e.starts_with("--lora-r 0"), "{e}");
    let e = from_cli("lora", &PeftCliOptions { lora_dropout: Some(1.5), ..PeftCliOptions::default() }).unwrap_err();
    assert!(e.to_string().starts_with("--lora-dropout 1.5"), "{e}");
    let c = from_cli(
        "prefix",
        &PeftCliOptions { prefix_tokens: Some(20), prefix_projection: Some(64), ..PeftCliOptions::default() },
    )
    .unwrap();
    assert_eq!(c, PeftConfig::Prefix(PrefixConfig { num_virtual_tokens: 20, projection: Some(64) }));
    let c = from_cli("pfeiffer", &PeftCliOptions { adapter_reduction: Some(16), ..PeftCliOptions::default() }).unwrap();
    assert_eq!(c, PeftConfig::Adapter(AdapterConfig { kind: AdapterKind::Pfeiffer, ..AdapterConfig::default() }));
    assert!(from_cli("qlora", &PeftCliOptions::default()).unwrap_err().to_string().contains("expected one of"));
    let rs = from_cli(
        "lora",
        &PeftCliOptions { rslora: Some(true), lora_r: Some(4), lora_alpha: Some(8.0), ..PeftCliOptions::default() },
    )
    .unwrap();
    assert_eq!(rs.lora().unwrap().scale(), 4.0);
}

fn c_all() -> PeftConfig {
    PeftConfig::Ia3(Ia3Config { targets: Some(Targets::AllLinear), feedforward: Some(vec!["fc2".into()]) })
}

#[test]
fn lora_training_reduces_loss_and_changes_only_lora() {
    // A frozen random MLP learns to imitate a perturbed copy of itself through rank-4 LoRA on both layers.
    let vs = VarStore::new(Device::Cpu);
    struct Mlp {
        l1: crate::nn::Linear,
        l2: crate::nn::Linear,
    }
    impl crate::nn::VisitLayers for Mlp {
        fn visit_layers(&mut self, v: &mut dyn crate::nn::LayerVisitor) {
            v.linear(&mut self.l1);
            v.linear(&mut self.l2);
        }
    }
    let mut m = Mlp {
        l1: crate::nn::Linear::new(vs.root() / "l1", 6, 16, true),
        l2: crate::nn::Linear::new(vs.root() / "l2", 16, 2, true),
    };
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (i, (_, mut t)) in vars.into_iter().enumerate() {
            t.copy_(&det(&t.size(), 30 + i as i64, 0.5));
        }
    });
    let x = det(&[64, 6], 31, 1.5);
    let teacher = tch::no_grad(|| {
        let w1 = &m.l1.weight + det(&[16, 6], 32, 0.5);
        x.linear(&w1, m.l1.bias.as_ref()).tanh().linear(&m.l2.weight, m.l2.bias.as_ref())
    });
    let mut vs = vs;
    let cfg = PeftConfig::Lora(LoraConfig { targets: Some(Targets::AllLinear), ..lora(4, 8.0) });
    let report = apply_peft(&mut vs, &mut m, &cfg, &PeftTargets::default()).unwrap();
    assert_eq!(report.trainable, 4 * (6 + 16) + 4 * (16 + 2));
    let before = snapshot(&vs);
    let mut opt = OptimizerConfig::default().build(param_groups(&vs, &[], 0.01));
    let loss_of =
        |m: &Mlp| (m.l2.forward_t(&m.l1.forward_t(&x, true).tanh(), true) - &teacher).square().mean(Kind::Float);
    let first = tch::no_grad(|| loss_of(&m)).double_value(&[]);
    for _ in 0..40 {
        opt.zero_grad();
        loss_of(&m).backward();
        opt.step(1e-2);
    }
    let last = tch::no_grad(|| loss_of(&m)).double_value(&[]);
    println!("lora toy regression: loss {first:.4} → {last:.4} after 40 AdamW steps");
    assert!(last < 0.5 * first, "{first} → {last}");
    for ((name, a), (_, b)) in before.iter().zip(snapshot(&vs)) {
        assert_eq!(!a.equal(&b), name.contains(".lora_"), "{name}");
    }
}
