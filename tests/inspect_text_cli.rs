//! End-to-end tests of `suite inspect text`: small hand-made classification CSV, CoNLL and SQuAD files with planted
//! problems (duplicates across splits, a conflicting label, an over-long text, an IOB2 violation, answers no window
//! holds or that miss their context), checked in report.json; user errors; and label issues with a tiny run.
//! Lengths are measured with the offline all-MiniLM-L6-v2 tokenizer (finetune's default model).

use std::path::Path;

use serde_json::Value;

mod common;
use common::serve::text_run;
use common::*;

/// The section `id` of a report.
fn section<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no section {id} in {report:#}"))
}

/// Every finding message of a section with the given severity.
fn findings(section: &Value, severity: &str) -> Vec<String> {
    section["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect()
}

/// Every cell of every table row of a section, one string per row.
fn rows(section: &Value) -> Vec<String> {
    section["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["rows"].as_array().unwrap().iter())
        .map(|r| r.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>().join(" | "))
        .collect()
}

fn inspect(dir: &Path, args: &[&str]) -> Value {
    let out = dir.join("report");
    let mut a = vec!["inspect", "text", "--out", s(&out)];
    a.extend_from_slice(args);
    let run = suite(dir, &a);
    run.assert_ok();
    assert!(run.stdout.contains("report:"), "{}", run.show());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("<svg"), "a chart is drawn inline");
    read_json(&out.join("report.json"))
}

const LONG: &str = "the committee met on tuesday to discuss the new budget for the public library and decided after a \
                    long debate that the reading room will stay open late on weekdays";

#[test]
fn classification_report_finds_planted_problems() {
    let dir = tmp();
    let d = dir.path();
    let mut train = String::from("text,label\n");
    for i in 0..6 {
        train.push_str(&format!("the team won match number {i},sport\n"));
        train.push_str(&format!("bake bread loaf number {i} in the oven,food\n"));
    }
    // line 14: near-duplicated in val; line 15: copied exactly into test; lines 16-17: one text, two labels.
    train.push_str(&format!("{LONG},food\n"));
    train.push_str("The referee stopped the game early,sport\n");
    train.push_str("A bowl of hot soup,food\n");
    train.push_str("a bowl of hot soup!,sport\n");
    let long_text = (0..80).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    train.push_str(&format!("{long_text},sport\n"));
    let val = format!(
        "text,label\n{},food\nfresh butter and cheese,food\nthe goal keeper saved it,sport\n",
        LONG.replace("weekdays", "weekends")
    );
    let test = "text,label\nfresh soup and bread,food\n\"the referee stopped the game, early\",sport\nthe tennis final,tennis\n";
    for (name, body) in [("train.csv", train.as_str()), ("val.csv", val.as_str()), ("test.csv", test)] {
        std::fs::write(d.join(name), body).unwrap();
    }
    let r = inspect(d, &["--data", "train.csv", "--val-data", "val.csv", "--test-data", "test.csv", "--max-len", "48"]);
    assert_eq!(r["domain"], "text");
    assert_eq!(r["task"], "classification");
    let counts: Vec<u64> = r["inputs"].as_array().unwrap().iter().map(|i| i["examples"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![17, 3, 3]);

    let labels = section(&r, "labels");
    assert_eq!(labels["stats"]["counts"]["sport"]["train"], 9);
    assert_eq!(labels["stats"]["counts"]["tennis"]["test"], 1);
    assert!(findings(labels, "problem").iter().any(|m| m.contains("`tennis`") && m.contains("test")), "{labels:#}");
    assert!(!labels["charts"].as_array().unwrap().is_empty());

    let lengths = section(&r, "lengths");
    assert_eq!(lengths["stats"]["over_max_len"], 1, "only the 80-word text exceeds 48 tokens: {lengths:#}");
    assert_eq!(lengths["stats"]["max_len"], 48);
    assert!(lengths["stats"]["tokenizer"].as_str().unwrap().ends_with("tokenizer.json"));

    let dups = section(&r, "duplicates");
    assert_eq!(dups["stats"]["exact_pairs_across_splits"], 1, "{dups:#}");
    assert_eq!(dups["stats"]["near_pairs_across_splits"], 1, "{dups:#}");
    assert!(!findings(dups, "problem").is_empty());
    let listed = rows(dups);
    assert!(listed.iter().any(|r| r.contains("train.csv:15: The referee") && r.contains("test.csv:3:")), "{listed:#?}");
    assert!(
        listed.iter().any(|r| r.contains("train.csv:14: the committee") && r.contains("val.csv:2:")),
        "{listed:#?}"
    );

    let conflicts = section(&r, "label_conflicts");
    assert_eq!(conflicts["stats"]["conflicting_groups"], 1);
    assert_eq!(findings(conflicts, "problem").len(), 1);
    let listed = rows(conflicts);
    assert!(listed.iter().any(|r| r.contains("train.csv:17: a bowl of hot soup!") && r.ends_with("sport")));
    assert!(r["sections"].as_array().unwrap().iter().all(|s| s["id"] != "label_issues"), "no --run, no ranking");
}

#[test]
fn ner_report_lists_tag_violations_by_line() {
    let dir = tmp();
    let d = dir.path();
    // Line 6: I-LOC after O (IOB2 wants B-LOC); line 9: a malformed tag.
    let train = "-DOCSTART- O\n\nAnn B-PER\nSmith I-PER\nvisited O\nParis I-LOC\n\nBob B-PER\nran X\n\nThe O\nend O\n";
    let val = "ann B-PER\nsmith I-PER\nvisited O\nparis I-LOC\n\nBerlin B-MISC\n";
    std::fs::write(d.join("train.conll"), train).unwrap();
    std::fs::write(d.join("val.conll"), val).unwrap();
    let r = inspect(d, &["--task", "ner", "--data", "train.conll", "--val-data", "val.conll"]);
    assert_eq!(r["task"], "ner");
    let tags = section(&r, "tags");
    assert_eq!(tags["stats"]["iob2_violations"], 2, "train line 6 and val line 4: {tags:#}");
    assert_eq!(tags["stats"]["unknown_tags"], 1);
    let listed = rows(tags);
    assert!(listed.iter().any(|r| r.contains("train.conll:6") && r.contains("I-LOC")), "{listed:#?}");
    assert!(listed.iter().any(|r| r.contains("train.conll:9") && r.contains(" X ")), "{listed:#?}");
    assert!(findings(tags, "problem").iter().any(|m| m.contains("`B-MISC`")), "val's tag train lacks: {tags:#}");
    let entities = section(&r, "entities");
    assert_eq!(entities["stats"]["counts"]["PER"]["train"], 2);
    assert_eq!(entities["stats"]["counts"]["LOC"]["val"], 1);
    let dups = section(&r, "duplicates");
    assert_eq!(dups["stats"]["exact_pairs_across_splits"], 1, "the same words in both splits: {dups:#}");
    // Same words, different tags (I-LOC vs … the val copy has the same tags): no conflict.
    assert_eq!(section(&r, "label_conflicts")["stats"]["conflicting_groups"], 0);
}

/// A question: id, question, answer text, answer_start (characters).
type Question<'a> = (&'a str, &'a str, &'a str, usize);

/// SQuAD JSON of one article with these paragraphs.
fn squad(paragraphs: &[(&str, &[Question])]) -> String {
    let ps: Vec<Value> = paragraphs
        .iter()
        .map(|(context, qas)| {
            let qas: Vec<Value> = qas
                .iter()
                .map(|(id, q, a, start)| {
                    serde_json::json!({"id": id, "question": q, "answers": [{"text": a, "answer_start": start}]})
                })
                .collect();
            serde_json::json!({"context": context, "qas": qas})
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"data": [{"title": "t", "paragraphs": ps}]})).unwrap()
}

#[test]
fn qa_report_finds_answers_no_window_holds_and_answers_off_their_context() {
    let dir = tmp();
    let d = dir.path();
    let filler = (0..40).map(|i| format!("item{i}")).collect::<Vec<_>>().join(" ");
    let answer = (0..30).map(|i| format!("part{i}")).collect::<Vec<_>>().join(" ");
    let context = format!("{filler} {answer} end.");
    let long_start = filler.chars().count() + 1;
    let short = "Paris is the capital of France.";
    let train = squad(&[
        (context.as_str(), &[("long", "Which parts?", answer.as_str(), long_start)]),
        (short, &[("ok", "What is the capital?", "Paris", 0), ("bad", "Which country?", "Spain", 24)]),
    ]);
    let val = squad(&[(short, &[("v1", "What is the capital?", "Paris", 0)])]);
    std::fs::write(d.join("train.json"), train).unwrap();
    std::fs::write(d.join("val.json"), val).unwrap();
    std::fs::write(d.join("qa.toml"), "[text]\ntask = \"qa\"\nmax_len = 48\ndoc_stride = 8\n\n[train]\n").unwrap();
    let r = inspect(d, &["--config", "qa.toml", "--data", "train.json", "--val-data", "val.json"]);
    assert_eq!(r["task"], "qa");
    let answers = section(&r, "answers");
    assert_eq!(answers["stats"]["doc_stride"], 8);
    assert_eq!(answers["stats"]["answers_lost"], 1, "{answers:#}");
    assert_eq!(answers["stats"]["answers_not_in_context"], 1);
    let listed = rows(answers);
    assert!(listed.iter().any(|r| r.contains("train.json:") && r.contains("Which parts?") && r.contains("part0")));
    assert!(listed.iter().any(|r| r.contains("`bad`") && r.contains("Spain")), "{listed:#?}");
    assert!(!findings(answers, "problem").is_empty());
    let dups = section(&r, "duplicates");
    assert_eq!(dups["stats"]["exact_pairs_across_splits"], 1, "{dups:#}");
    assert_eq!(dups["stats"]["contexts_across_splits"], 1);
    assert!(r["sections"].as_array().unwrap().iter().all(|s| s["id"] != "label_conflicts"));
}

#[test]
fn missing_or_unreadable_data_is_a_user_error() {
    let dir = tmp();
    let d = dir.path();
    let out = suite(d, &["inspect", "text", "--data", "nowhere/train.csv", "--out", "r"]);
    out.assert_user_error(&["nowhere/train.csv", "no such file"]);
    // Without --data at all, clap refuses the command line (exit 2, naming the flag).
    let out = suite(d, &["inspect", "text", "--out", "r"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("--data"), "{}", out.show());
    // A file the training reader refuses: its error, naming file and line.
    std::fs::write(d.join("bad.csv"), "text,label\nfine,a\nno label here,\n").unwrap();
    suite(d, &["inspect", "text", "--data", "bad.csv", "--out", "r"])
        .assert_user_error(&["bad.csv", "line 3", "label"]);
    assert!(!d.join("r").exists(), "no report for data that cannot be read");
}

#[test]
fn label_issues_with_a_tiny_run() {
    let dir = tmp();
    let d = dir.path();
    let run = text_run(d);
    // text_run's own training and validation files (20 texts, 2 labels), one training label flipped.
    let train = std::fs::read_to_string(d.join("train.csv")).unwrap();
    let flipped = train.replacen(",food\n", ",sport\n", 1);
    std::fs::write(d.join("train.csv"), flipped).unwrap();
    let r = inspect(d, &["--run", s(&run), "--data", "train.csv", "--val-data", "val.csv", "--folds", "4"]);
    assert_eq!(r["run"], s(&run));
    let issues = section(&r, "label_issues");
    assert_eq!(issues["stats"]["examples_scored"], 20);
    assert_eq!(issues["stats"]["feature_dim"], 384, "all-MiniLM-L6-v2's pooled output");
    let candidates = issues["stats"]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len() as u64, issues["stats"]["label_issue_count"].as_u64().unwrap());
    for c in candidates {
        assert_ne!(c["given"], c["suggested"], "{c}");
        assert!(c["self_confidence"].as_f64().unwrap() < 0.5);
    }
    assert_eq!(issues["stats"]["per_class"].as_array().unwrap().len(), 2);
    // The run's max_len (32) is the default of the length check.
    assert_eq!(section(&r, "lengths")["stats"]["max_len"], 32);
}
