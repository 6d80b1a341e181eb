//! The prediction API on the real all-MiniLM-L6-v2 (offline asset) with seeded task heads: a batch, padded to its
//! longest input, answers as each input alone; offsets point at the words and answers they name; inputs that do
//! not suit the task are refused with a message; a run folder loads with its recorded settings.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::{minilm_asset_dir, EncoderConfig, Head, TextModel};

/// Largest difference allowed between a batched and a one-input probability (float32 sums in another order).
const TOL: f32 = 1e-5;

/// Largest difference allowed between QA scores (sums of two logits of magnitude ~1–10).
const SCORE_TOL: f32 = 1e-4;

fn minilm() -> PathBuf {
    minilm_asset_dir().expect("the minilm asset is not unpacked: run scripts/setup.sh")
}

/// Writes all-MiniLM-L6-v2 with a seeded, freshly initialised `head` in hub layout into `dir`.
fn save_model(dir: &Path, head: Head, labels: &[&str], multi_label: bool) {
    let base = minilm();
    let enc = EncoderConfig::from_file(base.join("config.json")).unwrap();
    tch::manual_seed(0);
    let mut vs = VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &enc, head).unwrap();
    model.load_pretrained(&mut vs, &[base.join("model.safetensors")]).unwrap();
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    model.export(&vs, dir, &labels, multi_label, &base).unwrap();
}

fn predictor(dir: &Path, cfg: TextConfig) -> TextPredictor {
    TextPredictor::load(dir, &cfg, Device::Cpu).unwrap()
}

fn label_probs(p: &TextPrediction) -> Vec<(String, f32)> {
    let TextPrediction::Labels { top } = p else { panic!("not labels: {p:?}") };
    let mut v: Vec<(String, f32)> = top.iter().map(|s| (s.label.clone(), s.prob)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The largest probability difference between two label answers with the same labels.
fn label_difference(a: &TextPrediction, b: &TextPrediction) -> f32 {
    let (a, b) = (label_probs(a), label_probs(b));
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    a.iter().zip(&b).map(|(x, y)| (x.1 - y.1).abs()).fold(0.0, f32::max)
}

fn one_at_a_time(p: &TextPredictor, inputs: &[TextInput], k: usize) -> Vec<TextPrediction> {
    inputs.iter().map(|i| p.predict(std::slice::from_ref(i), k).unwrap().remove(0)).collect()
}

fn classify_inputs() -> Vec<TextInput> {
    vec![
        TextInput::text("The football match ended with a late goal."),
        TextInput::text("soup"),
        TextInput::Text {
            text: "Is the bread fresh?".into(),
            pair: Some("It came out of the oven an hour ago.".into()),
        },
        TextInput::Tokens(vec!["the".into(), "referee".into(), "whistled".into()]),
        // Longer than max_len: truncated, so the batch's longest row is max_len.
        TextInput::text("a very long text about recipes and flour and sugar and butter ".repeat(8)),
    ]
}

#[test]
fn classify_batch_answers_as_each_input_alone() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["food", "sport", "weather"];
    save_model(dir.path(), Head::Classify { num_labels: 3 }, &names, false);
    let p = predictor(dir.path(), TextConfig { max_len: 32, ..TextConfig::default() });
    assert_eq!(
        (p.task(), p.task_name(), p.labels()),
        (TextTaskKind::Classify, "classify", &names.map(String::from)[..])
    );
    let inputs = classify_inputs();
    let batch = p.predict(&inputs, 3).unwrap();
    let alone = one_at_a_time(&p, &inputs, 3);
    let worst = batch.iter().zip(&alone).map(|(a, b)| label_difference(a, b)).fold(0.0, f32::max);
    eprintln!("classify: batched vs one at a time, largest probability difference {worst:e}");
    assert!(worst <= TOL, "batched vs one at a time: largest difference {worst:e}");
    for b in &batch {
        let TextPrediction::Labels { top } = b else { unreachable!() };
        let probs: Vec<f32> = top.iter().map(|s| s.prob).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probs:?}");
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax over every label: {probs:?}");
    }
    // top_k is clamped to 1..=labels.
    let TextPrediction::Labels { top } = &p.predict(&inputs[..1], 0).unwrap()[0] else { unreachable!() };
    assert_eq!(top.len(), 1);
    // A text input and the same words as tokens are one input.
    let words = TextInput::Tokens(vec!["soup".into()]);
    assert!(label_difference(&p.predict(&[words], 3).unwrap()[0], &alone[1]) <= TOL);
}

#[test]
fn multi_label_batch_answers_as_each_input_alone_with_the_labels_over_one_half() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c", "d"];
    save_model(dir.path(), Head::Classify { num_labels: 4 }, &names, true);
    let p = predictor(dir.path(), TextConfig { max_len: 32, multi_label: true, ..TextConfig::default() });
    assert!(p.multi_label());
    let inputs = classify_inputs();
    let batch = p.predict(&inputs, 1).unwrap();
    let alone = one_at_a_time(&p, &inputs, 1);
    for (b, a) in batch.iter().zip(&alone) {
        assert!(label_difference(b, a) <= TOL, "{b:?} vs {a:?}");
        let TextPrediction::Labels { top } = b else { unreachable!() };
        assert!(top.iter().all(|s| s.prob >= MULTI_LABEL_THRESHOLD), "{top:?}");
    }
    let n_labels: usize = batch.iter().map(|b| label_probs(b).len()).sum();
    assert!(n_labels > 0, "the seeded head gives no label over one half, so nothing is compared: {batch:?}");
}

/// The characters `[start, end)` of `text`.
fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

#[test]
fn ner_batch_answers_as_each_input_alone_and_offsets_point_at_the_words() {
    let dir = tempfile::tempdir().unwrap();
    let tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"];
    save_model(dir.path(), Head::Tokens { num_labels: 5 }, &tags, false);
    let p = predictor(dir.path(), TextConfig { task: TextTaskKind::Ner, max_len: 32, ..TextConfig::default() });
    assert_eq!(p.task_name(), "ner");
    let texts = [
        "Maria Garcia moved to Oslo .",
        // Irregular whitespace and characters of several bytes: offsets count characters, not bytes.
        "  Zoë\tflew   from 東京 to  São Paulo\n with Ahmed ",
        "Pierre",
    ];
    let mut inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::text(*t)).collect();
    inputs.push(TextInput::Tokens(["Lena", "Smith", "visits", "Lima"].map(String::from).to_vec()));
    let batch = p.predict(&inputs, 1).unwrap();
    assert_eq!(batch, one_at_a_time(&p, &inputs, 1), "batched vs one at a time");
    let mut n_entities = 0;
    for (input, b) in inputs.iter().zip(&batch) {
        let TextPrediction::Entities { tokens, tags: got, entities } = b else { panic!("{b:?}") };
        let (text, words): (String, Vec<String>) = match input {
            TextInput::Text { text, .. } => (text.clone(), text.split_whitespace().map(String::from).collect()),
            TextInput::Tokens(w) => (w.join(" "), w.clone()),
            TextInput::Question { .. } => unreachable!(),
        };
        assert_eq!(tokens, &words);
        assert_eq!(got.len(), words.len());
        for e in entities {
            assert_eq!(e.text, words[e.start..e.end].join(" "), "{e:?}");
            let span = chars(&text, e.start_char, e.end_char);
            assert_eq!(span.split_whitespace().collect::<Vec<_>>().join(" "), e.text, "{e:?} in {text:?}");
            assert_eq!(
                chars(&text, e.start_char, e.start_char + 1),
                words[e.start].chars().take(1).collect::<String>()
            );
        }
        n_entities += entities.len();
    }
    assert!(n_entities > 0, "the seeded head finds no entity, so the offsets are not checked: {batch:?}");
}

#[test]
fn qa_batch_answers_as_each_question_alone_with_the_answer_at_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    save_model(dir.path(), Head::Span, &[], false);
    let cfg = TextConfig { task: TextTaskKind::Qa, max_len: 48, doc_stride: 16, ..TextConfig::default() };
    let p = predictor(dir.path(), cfg);
    assert_eq!((p.task_name(), p.labels().len()), ("qa", 0));
    let q = |question: &str, context: &str| TextInput::Question { question: question.into(), context: context.into() };
    let inputs = [
        q("Where was Lena born?", "Lena was born in Lima in 1999."),
        // Several 48-token windows, and characters of several bytes before the answer.
        q(
            "What did Yuki work as?",
            "The old harbour of the town — rebuilt many times over the centuries, first by traders, then by the \
             navy and finally by the city council — is famous. Yuki was born in Cairo in 1987. Later Yuki worked \
             as a baker for many years in a small shop near the harbour of Zürich.",
        ),
        q("  Who?", "Maria."),
    ];
    let batch = p.predict(&inputs, 1).unwrap();
    let alone = one_at_a_time(&p, &inputs, 1);
    for ((input, b), a) in inputs.iter().zip(&batch).zip(&alone) {
        let TextInput::Question { context, .. } = input else { unreachable!() };
        let (
            TextPrediction::Answer { answer, score, start, end },
            TextPrediction::Answer { answer: a_answer, score: a_score, start: a_start, end: a_end },
        ) = (b, a)
        else {
            panic!("{b:?} / {a:?}")
        };
        assert_eq!((answer, start, end), (a_answer, a_start, a_end), "batched vs alone");
        assert!((score - a_score).abs() <= SCORE_TOL, "score {score} batched, {a_score} alone");
        assert!(!answer.is_empty() && start < end, "{b:?}");
        assert_eq!(&chars(context, *start, *end), answer, "the offsets name the answer");
    }
}

#[test]
fn inputs_that_do_not_suit_the_task_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    save_model(&dir.path().join("ner"), Head::Tokens { num_labels: 3 }, &["O", "B-PER", "I-PER"], false);
    save_model(&dir.path().join("qa"), Head::Span, &[], false);
    save_model(&dir.path().join("cls"), Head::Classify { num_labels: 2 }, &["no", "yes"], false);
    let ner = predictor(&dir.path().join("ner"), TextConfig { task: TextTaskKind::Ner, ..TextConfig::default() });
    let cfg = TextConfig { task: TextTaskKind::Qa, max_len: 16, doc_stride: 4, ..TextConfig::default() };
    let qa = predictor(&dir.path().join("qa"), cfg);
    let cls = predictor(&dir.path().join("cls"), TextConfig::default());
    let question = TextInput::Question { question: "Who?".into(), context: "Maria.".into() };
    let err = |p: &TextPredictor, i: &TextInput| format!("{:#}", p.check(i).unwrap_err());
    assert!(err(&cls, &question).contains("question answering"));
    assert!(err(&ner, &question).contains("\"tokens\""));
    assert!(err(&ner, &TextInput::Text { text: "a".into(), pair: Some("b".into()) }).contains("text_pair"));
    assert!(err(&ner, &TextInput::text(" \t ")).contains("at least one word"));
    assert!(err(&ner, &TextInput::Tokens(Vec::new())).contains("at least one word"));
    assert!(err(&qa, &TextInput::text("hello")).contains("\"question\" and a \"context\""));
    let empty = TextInput::Question { question: "Who?".into(), context: " ".into() };
    assert!(err(&qa, &empty).contains("context"));
    let long = TextInput::Question { question: "why ".repeat(20), context: "Because.".into() };
    assert!(err(&qa, &long).contains("too long"), "{}", err(&qa, &long));
    // predict refuses the same inputs, naming which one.
    let e = format!("{:#}", qa.predict(&[question.clone(), long], 1).unwrap_err());
    assert!(e.contains("input 1") && e.contains("too long"), "{e}");
    for ok in [TextInput::text("hi"), TextInput::Text { text: "a".into(), pair: Some("b".into()) }] {
        cls.check(&ok).unwrap();
    }
    qa.check(&question).unwrap();
}

#[test]
fn inputs_read_from_json() {
    let j = |s: &str| TextInput::from_json(&serde_json::from_str(s).unwrap());
    assert_eq!(j(r#""hi""#).unwrap(), TextInput::text("hi"));
    assert_eq!(
        j(r#"{"text": "a", "text_pair": "b"}"#).unwrap(),
        TextInput::Text { text: "a".into(), pair: Some("b".into()) }
    );
    assert_eq!(j(r#"{"tokens": ["a", "b"]}"#).unwrap(), TextInput::Tokens(vec!["a".into(), "b".into()]));
    let qa = TextInput::Question { question: "q".into(), context: "c".into() };
    assert_eq!(j(r#"{"question": "q", "context": "c"}"#).unwrap(), qa);
    for (bad, needle) in [
        ("3", "a number"),
        (r#"{"text": 3}"#, "\"text\" must be a string"),
        (r#"{"tokens": "a b"}"#, "\"tokens\" must be an array"),
        (r#"{"tokens": ["a", 1]}"#, "\"tokens\"[1]"),
        (r#"{"question": "q"}"#, "\"context\""),
        (r#"{"label": "x"}"#, "expected a \"text\""),
    ] {
        let e = format!("{:#}", j(bad).unwrap_err());
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn a_run_folder_loads_with_its_recorded_settings() {
    let run = tempfile::tempdir().unwrap();
    save_model(&run.path().join("best"), Head::Tokens { num_labels: 3 }, &["O", "B-PER", "I-PER"], false);
    std::fs::write(run.path().join("config.toml"), "[train]\nepochs = 1\n\n[text]\ntask = \"ner\"\nmax_len = 16\n")
        .unwrap();
    let p = TextPredictor::load_run(run.path(), "best", Device::Cpu).unwrap();
    assert_eq!((p.task_name(), p.max_len), ("ner", 16));
    let err = |which: &str| format!("{:#}", TextPredictor::load_run(run.path(), which, Device::Cpu).err().unwrap());
    assert!(err("final").contains("no saved model"), "{}", err("final"));
    assert!(err("worst").contains("expected best or final"), "{}", err("worst"));
    std::fs::write(run.path().join("config.toml"), "[vision]\nmodel = \"resnet18\"\n").unwrap();
    assert!(err("best").contains("not a text run"), "{}", err("best"));
}
