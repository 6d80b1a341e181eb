//! Readers on the allennlp format samples, and every kind of bad input giving an error that names the file, the
//! line and the field.

use std::path::{Path, PathBuf};

use super::fixtures_dir;
use crate::data::labels::LabelSet;
use crate::data::sources::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn err_text(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// Asserts that `err` names the file and holds every fragment.
fn assert_names(err: &str, path: &Path, fragments: &[&str]) {
    assert!(err.contains(&path.display().to_string()), "error does not name the file: {err}");
    for f in fragments {
        assert!(err.contains(f), "error lacks {f:?}: {err}");
    }
}

#[test]
fn squad_sample_reads_five_questions_with_char_offsets() {
    let examples = read_squad(&fixtures_dir().join("squad.json")).unwrap();
    assert_eq!(examples.len(), 5);
    assert_eq!(examples[0].id, "5733be284776f41900661182");
    assert_eq!(examples[0].answers, [QaAnswer { text: "Saint Bernadette Soubirous".into(), start: 515 }]);
    assert_eq!(examples[1].answers.len(), 3);
    assert!(examples.iter().all(|e| !e.is_impossible));
    for e in &examples {
        for a in &e.answers {
            let found: String = e.context.chars().skip(a.start).take(a.text.chars().count()).collect();
            assert_eq!(found, a.text);
        }
    }
}

#[test]
fn squad_offsets_count_characters_and_v2_impossible_questions_read() {
    let dir = tempfile::tempdir().unwrap();
    // "é" is 2 bytes: a byte offset would be 7, the character offset is 6.
    let json = r#"{"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Café à Paris.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 7}]},
        {"id": "q2", "question": "Who?", "answers": [], "plausible_answers": [{"text": "Café", "answer_start": 0}],
         "is_impossible": true}]}]}]}"#;
    let path = write(dir.path(), "v2.json", json.as_bytes());
    let examples = read_squad(&path).unwrap();
    assert_eq!(examples.len(), 2);
    assert!(examples[1].is_impossible && examples[1].answers.is_empty());

    let bad = write(dir.path(), "bad.json", json.replace("\"answer_start\": 7", "\"answer_start\": 8").as_bytes());
    assert_names(&err_text(read_squad(&bad)), &bad, &["question `q1`", "answer_start 8", "found `aris.`"]);
    let past = write(dir.path(), "past.json", json.replace("\"answer_start\": 7", "\"answer_start\": 70").as_bytes());
    assert_names(&err_text(read_squad(&past)), &past, &["question `q1`", "end of the context"]);
    let dup = write(dir.path(), "dup.json", json.replace("\"q2\"", "\"q1\"").as_bytes());
    assert_names(&err_text(read_squad(&dup)), &dup, &["`q1` appears twice"]);
    let missing = write(dir.path(), "missing.json", json.replace("\"context\"", "\"contxt\"").as_bytes());
    assert_names(&err_text(read_squad(&missing)), &missing, &["missing field `context`", "at line"]);
    let empty = write(dir.path(), "empty.json", b"  \n");
    assert_names(&err_text(read_squad(&empty)), &empty, &["empty"]);
    let none = write(dir.path(), "none.json", br#"{"data": []}"#);
    assert_names(&err_text(read_squad(&none)), &none, &["no questions"]);
}

#[test]
fn conll_sample_reads_two_sentences_and_skips_docstart() {
    let sentences = read_ner(&fixtures_dir().join("conll2003.txt")).unwrap();
    assert_eq!(sentences.len(), 2);
    assert_eq!(sentences[0].tokens, ["U.N.", "official", "Ekeus", "heads", "for", "Baghdad", "."]);
    assert_eq!(sentences[0].tags, ["I-ORG", "O", "I-PER", "O", "O", "I-LOC", "O"]);
    assert_eq!(sentences[1].tokens[0], "AI2");
}

#[test]
fn ner_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "cols.conll",
        b"-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nGerman JJ I-NP B-MISC\n",
    );
    assert_names(&err_text(read_ner(&bad)), &bad, &["line 6", "4 columns, expected 3", "line 3"]);
    let one = write(dir.path(), "one.txt", b"word\n");
    assert_names(&err_text(read_ner(&one)), &one, &["line 1", "1 column"]);
    let empty = write(dir.path(), "empty.txt", b"-DOCSTART- -X- -X- O\n\n\n");
    assert_names(&err_text(read_ner(&empty)), &empty, &["no sentences"]);
    let bytes = write(dir.path(), "latin1.txt", b"EU B-ORG\nM\xfcnchen B-LOC\n");
    assert_names(&err_text(read_ner(&bytes)), &bytes, &["line 2", "not UTF-8", "0xFC"]);

    let jsonl = write(
        dir.path(),
        "ner.jsonl",
        b"{\"tokens\": [\"EU\", \"rejects\"], \"tags\": [\"B-ORG\", \"O\"]}\n\n{\"tokens\": [\"Paris\"], \"ner_tags\": [\"B-LOC\"]}\n",
    );
    let sentences = read_ner(&jsonl).unwrap();
    assert_eq!(sentences[1], NerSentence { tokens: vec!["Paris".into()], tags: vec!["B-LOC".into()] });
    let labels = LabelSet::collect(["O", "B-ORG"]);
    assert_names(
        &err_text(read_ner_checked(&jsonl, &labels)),
        &jsonl,
        &["line 3", "label `B-LOC` is not in the label set [O, B-ORG]"],
    );
    let cases: [(&str, &[u8], &[&str]); 4] = [
        (
            "malformed.jsonl",
            b"{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"a\"\n",
            &["line 2", "malformed JSON"],
        ),
        ("ints.jsonl", b"{\"tokens\": [\"a\"], \"ner_tags\": [3]}\n", &["line 1", "field `ner_tags`", "tag indices"]),
        (
            "count.jsonl",
            b"{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n",
            &["line 1", "field `tags`", "1 tags for 2 tokens"],
        ),
        ("notags.jsonl", b"{\"tokens\": [\"a\"]}\n", &["line 1", "field `tags`"]),
    ];
    for (name, bytes, fragments) in cases {
        let path = write(dir.path(), name, bytes);
        assert_names(&err_text(read_ner(&path)), &path, fragments);
    }
}

#[test]
fn imdb_sample_reads_as_json_lines() {
    let path = fixtures_dir().join("text_classification_json/imdb_corpus.jsonl");
    let examples = read_classify(&path, &ClassifyColumns::default(), true).unwrap();
    assert_eq!(examples.len(), 3);
    let labels: Vec<&str> = examples.iter().map(|e| e.labels[0].as_str()).collect();
    assert_eq!(labels, ["neg", "pos", "neg"]);
    assert!(examples[0].text.starts_with("...And I never thought a movie deserved"));
    assert_eq!(examples[0].text.chars().count(), 670);
    assert!(examples.iter().all(|e| e.text_pair.is_none()));
    // Integer labels (allennlp's integer_labels.jsonl) become their decimal names.
    let ints = read_classify(
        &fixtures_dir().join("text_classification_json/integer_labels.jsonl"),
        &ClassifyColumns::default(),
        true,
    )
    .unwrap();
    assert_eq!(ints.iter().map(|e| e.labels[0].as_str()).collect::<Vec<_>>(), ["0", "1"]);
}

#[test]
fn csv_and_tsv_columns_pairs_and_multi_labels() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "d.csv",
        "\u{feff}id,text,text_pair,label\n1,\"A, quoted \"\"text\"\"\",second,pos\n2,\"multi\nline\",x,neg|pos\n"
            .as_bytes(),
    );
    let ex = read_classify(&csv, &ClassifyColumns::default(), true).unwrap();
    assert_eq!(
        ex[0],
        ClassifyExample {
            text: "A, quoted \"text\"".into(),
            text_pair: Some("second".into()),
            labels: vec!["pos".into()]
        }
    );
    assert_eq!(ex[1].text, "multi\nline");
    assert_eq!(ex[1].labels, ["neg", "pos"]);

    // TSV: no quoting (GLUE texts hold unbalanced quotes); custom column names.
    let tsv = write(dir.path(), "glue.tsv", b"sentence1\tsentence2\tgold\nHe said \"hi\tShe \"left\tentailment\n");
    let cols = ClassifyColumns { text: "sentence1".into(), text_pair: Some("sentence2".into()), label: "gold".into() };
    let ex = read_classify(&tsv, &cols, true).unwrap();
    assert_eq!(ex[0].text, "He said \"hi");
    assert_eq!(ex[0].text_pair.as_deref(), Some("She \"left"));

    // Prediction: no label column needed.
    let unlabelled = write(dir.path(), "u.csv", b"text\nhello\n");
    let ex = read_classify(&unlabelled, &ClassifyColumns::default(), false).unwrap();
    assert!(ex[0].labels.is_empty());
}

#[test]
fn classify_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cols = ClassifyColumns::default();
    let cases: [(&str, &[u8], &[&str]); 11] = [
        ("missing.csv", b"text,lbl\nhi,pos\n", &["line 1", "no column `label`", "[\"text\", \"lbl\"]"]),
        ("fields.csv", b"text,label\nhi,pos\nthere,neg,extra\n", &["line 3", "3 fields, expected 2"]),
        ("nolabel.csv", b"text,label\nhi,pos\nthere,\n", &["line 3", "field `label` is empty"]),
        ("emptylabel.csv", b"text,label\nhi,pos||neg\n", &["line 2", "field `label`", "empty label"]),
        ("empty.csv", b"", &["empty"]),
        ("header.csv", b"text,label\n", &["no examples"]),
        ("bytes.csv", b"text,label\nok,pos\nbad \xff\xfe,neg\n", &["line 3", "not UTF-8", "0xFF"]),
        (
            "malformed.jsonl",
            b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": }\n",
            &["line 2", "malformed JSON"],
        ),
        ("type.jsonl", b"{\"text\": \"a\", \"label\": 1.5}\n", &["line 1", "field `label`", "1.5"]),
        ("notext.jsonl", b"\n{\"label\": \"x\"}\n", &["line 2", "missing field `text`"]),
        ("data.xlsx", b"whatever", &["unsupported extension `.xlsx`"]),
    ];
    for (name, bytes, fragments) in cases {
        let path = write(dir.path(), name, bytes);
        assert_names(&err_text(read_classify(&path, &cols, true)), &path, fragments);
    }
    let labels = LabelSet::collect(["neg", "pos"]);
    let val = write(
        dir.path(),
        "val.jsonl",
        b"{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": \"neutral\"}\n",
    );
    assert_names(
        &err_text(read_classify_checked(&val, &cols, &labels)),
        &val,
        &["line 2", "field `label`", "label `neutral` is not in the label set [neg, pos]"],
    );
    let missing = Path::new("/nonexistent/data.csv");
    assert_names(&err_text(read_classify(missing, &cols, true)), missing, &["reading"]);
}

#[test]
fn squad_predictions_write_as_an_id_to_text_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.json");
    let pred = |id: &str, text: &str| crate::data::QaPrediction {
        id: id.into(),
        text: text.into(),
        span: None,
        score: 1.0,
        n_best: vec![],
        null_score_diff: None,
    };
    write_squad_predictions(&path, &[pred("b", ""), pred("a", "Paris")]).unwrap();
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, serde_json::json!({"a": "Paris", "b": ""}));
}
