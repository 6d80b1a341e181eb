//! Tests of the text inspection's parts on hand-made data.

use std::path::PathBuf;

use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

use super::classes::entity_types;
use super::duplicates::sections;
use super::label_issues::pooled_features;
use super::read::{id_lines, read_qa, Body, Data, Example};
use super::tags::sentence_issues;
use crate::data::{read_classify_lines, ClassifyColumns, ClassifyExample, NerSentence, TextBatch};
use crate::models::{EncoderConfig, Head, TextModel};

fn sentence(words: &str, tags: &str) -> NerSentence {
    NerSentence {
        tokens: words.split(' ').map(String::from).collect(),
        tags: tags.split(' ').map(String::from).collect(),
    }
}

#[test]
fn iob2_violations_and_unknown_tags_are_found_by_word() {
    let s = sentence("Ann met Bob in Rome today now", "B-PER O I-PER B-LOC I-PER PER O");
    let issues = sentence_issues(&s);
    let found: Vec<(usize, bool)> = issues.iter().map(|i| (i.word, i.unknown)).collect();
    assert_eq!(found, vec![(2, false), (4, false), (5, true)], "{issues:?}");
    assert!(issues[0].reason.contains("after `O`"), "{}", issues[0].reason);
    assert!(issues[1].reason.contains("`B-PER`"), "{}", issues[1].reason);
    // Well-formed IOB2 and BIOES have none.
    assert!(sentence_issues(&sentence("New York City is big", "B-LOC I-LOC I-LOC O O")).is_empty());
    assert!(sentence_issues(&sentence("New York City is big", "B-LOC I-LOC E-LOC O S-MISC")).is_empty());
    // An entity at the start of a sentence that starts with I- is a violation too.
    assert_eq!(sentence_issues(&sentence("York is", "I-LOC O")).len(), 1);
}

#[test]
fn entities_are_counted_as_seqeval_reads_them() {
    let tags: Vec<String> = "B-PER I-PER O I-LOC I-LOC B-LOC O S-ORG".split(' ').map(String::from).collect();
    assert_eq!(entity_types(&tags), vec!["PER", "LOC", "LOC", "ORG"]);
}

#[test]
fn squad_ids_are_found_by_line_and_bad_answers_listed() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"data\": [{\"paragraphs\": [{\n  \"context\": \"Paris is in France.\",\n  \"qas\": [\n    \
                {\"id\": \"q1\", \"question\": \"Where?\", \"answers\": [{\"text\": \"France\", \"answer_start\": 12}]},\n    \
                {\"id\": \"q2\", \"question\": \"What?\", \"answers\": [{\"text\": \"Paris\", \"answer_start\": 3}]}\n  ]}]}]}\n";
    assert_eq!(id_lines(text).get("q2"), Some(&5));
    let path = dir.path().join("qa.json");
    std::fs::write(&path, text).unwrap();
    let (examples, refused) = read_qa(&path).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].1, 4);
    assert_eq!(examples[0].0.answers.len(), 1);
    assert!(examples[1].0.answers.is_empty(), "the mismatched answer is dropped");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 5);
    assert!(refused[0].1.contains("`q2`") && refused[0].1.contains("answer_start 3"), "{}", refused[0].1);
    // Not SQuAD at all: the training reader's error.
    std::fs::write(&path, "[1, 2]").unwrap();
    assert!(format!("{:#}", read_qa(&path).unwrap_err()).contains("not SQuAD JSON"));
}

#[test]
fn csv_lines_are_right_with_crlf_and_quoted_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(&path, "text,label\r\n\"two\nlines\",a\r\nthird,b\r\n\r\nfifth,a\r\n").unwrap();
    let rows = read_classify_lines(&path, &ClassifyColumns::default(), true).unwrap();
    let lines: Vec<u64> = rows.iter().map(|(_, l)| *l).collect();
    assert_eq!(lines, vec![2, 4, 6]);
}

fn classify(split: usize, line: u64, text: &str, label: &str) -> Example {
    Example {
        split,
        line,
        body: Body::Classify(ClassifyExample { text: text.into(), text_pair: None, labels: vec![label.into()] }),
    }
}

#[test]
fn duplicates_across_splits_and_conflicting_labels_are_reported() {
    let long = "the quick brown fox jumps over the lazy dog near the river bank today";
    let data = Data {
        splits: vec!["train".into(), "test".into()],
        files: vec!["train.csv".into(), "test.csv".into()],
        examples: vec![
            classify(0, 2, "Hello, World!", "a"),
            classify(0, 3, long, "b"),
            classify(0, 4, "something else entirely different", "a"),
            classify(0, 5, "hello world", "b"),
            classify(1, 2, "HELLO WORLD", "a"),
            classify(1, 3, &long.replace("today", "today!!").replace("quick", "quick,"), "b"),
            classify(1, 4, &format!("{long} again"), "b"),
        ],
        refused: vec![],
    };
    let (dups, conflicts) = sections(&data, 0.8).unwrap();
    assert_eq!(dups.stats["exact_groups_across_splits"], json!(2), "{:?}", dups.stats);
    assert_eq!(dups.stats["exact_pairs_across_splits"], json!(3));
    assert_eq!(dups.stats["near_groups_across_splits"], json!(1));
    let near = dups.tables.iter().find(|t| t.title.starts_with("near")).unwrap();
    assert!(near.rows.iter().all(|r| r[5].starts_with("Jaccard")), "{:?}", near.rows);
    assert!(near.rows.iter().any(|r| r[2].starts_with("train.csv:3: the quick") || r[4].starts_with("train.csv:3")));
    let conflicts = conflicts.unwrap();
    assert_eq!(conflicts.stats["conflicting_groups"], json!(1));
    assert_eq!(conflicts.stats["conflicting_examples"], json!(3));
    assert!(conflicts.tables[0].rows.iter().any(|r| r[2] == "train.csv:5: hello world" && r[3] == "b"));
}

#[test]
fn pooled_features_are_what_the_bert_head_reads() {
    tch::manual_seed(0);
    let config = EncoderConfig::from_value(
        json!({"model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 24, "max_position_embeddings": 20,
               "type_vocab_size": 2, "pad_token_id": 0}),
        "tiny",
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Classify { num_labels: 3 }).unwrap();
    let ids = Tensor::from_slice(&[2i64, 7, 9, 3, 0, 2, 11, 3, 0, 0]).view([2, 5]);
    let batch = TextBatch {
        attention_mask: ids.ne(0).to_kind(Kind::Int64),
        token_type_ids: ids.zeros_like(),
        input_ids: ids,
        labels: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        index: vec![0, 1],
    };
    let feats = pooled_features(&model, &batch, Device::Cpu);
    assert_eq!(feats.size(), vec![2, 16]);
    let vars = vs.variables();
    let logits = feats.matmul(&vars["classifier.weight"].tr()) + &vars["classifier.bias"];
    let expected =
        tch::no_grad(|| model.forward(&batch.input_ids, &batch.token_type_ids, &batch.attention_mask, false));
    assert!(logits.allclose(&expected, 1e-5, 1e-6, false), "{logits} vs {expected}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let opts = super::InspectOptions::new(
        vec![("train".into(), PathBuf::from("/nonexistent/train.csv"))],
        crate::task::TextTaskKind::Classify,
    );
    let err = format!("{:#}", super::inspect(&opts).unwrap_err());
    assert!(err.contains("/nonexistent/train.csv") && err.contains("no such file"), "{err}");
}
