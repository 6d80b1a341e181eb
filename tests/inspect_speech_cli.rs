//! End-to-end tests of `suite inspect speech`: small WAVs written here (a tone, silence, a clipped sine, a 31-s
//! clip, a stereo 44.1 kHz clip, a corrupt file, a cut WAV, an exact copy across train and test…), one manifest per
//! split, and report.json checked for each; bad manifests are user errors. The tokenizer is the offline
//! whisper-base asset's.

use std::path::Path;

use serde_json::Value;

mod common;
use common::*;

/// A 16-bit PCM WAV of `frames` frames per channel from `f(channel, t)` in [-1, 1] (clamped).
fn write_wav(path: &Path, rate: u32, channels: u16, frames: usize, f: impl Fn(usize, f64) -> f64) {
    let samples = (0..frames)
        .flat_map(|i| (0..channels as usize).map(move |c| (c, i)))
        .map(|(c, i)| f(c, i as f64 / f64::from(rate)));
    let data = suite_speech::audio::pcm16(samples.collect::<Vec<_>>());
    std::fs::write(
        path,
        suite_speech::audio::wav_bytes(suite_speech::audio::WavSpec::pcm16(channels, rate), &data, None),
    )
    .unwrap();
}

/// A tone of `hz` at amplitude `amp`, shaped like syllables (on 150 ms, off 50 ms) so it is not one flat block.
fn tone(hz: f64, amp: f64) -> impl Fn(usize, f64) -> f64 {
    move |_, t| if (t * 5.0).fract() < 0.75 { amp * (std::f64::consts::TAU * hz * t).sin() } else { 0.0 }
}

fn section<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sections"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no section {id}"))
}

fn stat(report: &Value, id: &str, key: &str) -> Value {
    section(report, id)["stats"][key].clone()
}

/// Every row of the tables of a section whose title contains `title`, as text.
fn table_rows(report: &Value, id: &str, title: &str) -> Vec<String> {
    section(report, id)["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["title"].as_str().unwrap().contains(title))
        .flat_map(|t| t["rows"].as_array().unwrap().iter().map(|r| r.to_string()))
        .collect()
}

fn severities(report: &Value, id: &str) -> Vec<String> {
    section(report, id)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap().to_string())
        .collect()
}

fn jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_report_lists_each_planted_problem() {
    let dir = tmp();
    let d = dir.path();
    let clips = d.join("clips");
    std::fs::create_dir(&clips).unwrap();
    let c = |name: &str| clips.join(name);
    write_wav(&c("ok.wav"), 16_000, 1, 32_000, tone(220.0, 0.3));
    write_wav(&c("silent.wav"), 16_000, 1, 32_000, |_, _| 0.0);
    write_wav(&c("clipped.wav"), 16_000, 1, 32_000, tone(330.0, 1.6));
    write_wav(&c("long.wav"), 16_000, 1, 31 * 16_000, tone(180.0, 0.3));
    write_wav(&c("short.wav"), 16_000, 1, 3_200, tone(250.0, 0.3));
    // Stereo at 44.1 kHz: the left channel a tone, the right one quieter.
    write_wav(&c("stereo.wav"), 44_100, 2, 44_100, |ch, t| tone(300.0, 0.3 / (ch + 1) as f64)(0, t));
    std::fs::write(c("corrupt.wav"), b"RIFF\x24\x00\x00\x00WAVEfmt this is not really audio at all").unwrap();
    write_wav(&c("dup_train.wav"), 16_000, 1, 24_000, tone(523.0, 0.25));
    std::fs::copy(c("dup_train.wav"), c("dup_test.wav")).unwrap();
    write_wav(&c("held.wav"), 16_000, 1, 24_000, tone(660.0, 0.25));
    // A WAV cut after half its data: the header still declares 2 s.
    write_wav(&c("cut.wav"), 16_000, 1, 32_000, tone(400.0, 0.3));
    let bytes = std::fs::read(c("cut.wav")).unwrap();
    std::fs::write(c("cut.wav"), &bytes[..44 + 32_000]).unwrap();

    let long_text = "word ".repeat(460);
    let row = |audio: &str, text: &str| serde_json::json!({"audio": format!("clips/{audio}"), "text": text, "language": "en"});
    jsonl(
        &d.join("train.jsonl"),
        &[
            row("ok.wav", "a normal sentence"),
            row("silent.wav", "words over silence"),
            row("clipped.wav", "too loud"),
            row("long.wav", "a clip longer than the window"),
            row("short.wav", "hi"),
            row("stereo.wav", "two channels"),
            row("corrupt.wav", "broken file"),
            row("missing.wav", "no such file"),
            row("dup_train.wav", "A shared sentence."),
            row("cut.wav", "cut short"),
            row("ok.wav", &long_text),
            row("ok.wav", ""),
            row("ok.wav", "hello <|endoftext|> world"),
            serde_json::json!({"audio": "clips/ok.wav", "text": "no language here"}),
        ],
    );
    jsonl(&d.join("test.jsonl"), &[row("dup_test.wav", "a shared sentence"), row("held.wav", "something else")]);

    let out = suite(d, &["inspect", "speech", "--data", "train.jsonl", "--test-data", "test.jsonl", "--out", "rep"]);
    out.assert_ok();
    assert!(out.stdout.contains("suite inspect speech"), "{}", out.show());
    let r = read_json(&d.join("rep/report.json"));
    assert!(d.join("rep/report.html").is_file());
    assert_eq!(r["domain"], "speech");
    assert_eq!(r["inputs"][0]["examples"], 14);
    assert_eq!(r["inputs"][1]["examples"], 2);

    // Unreadable: the corrupt file and the missing one, each with its reason; a Problem.
    assert_eq!(stat(&r, "files", "unreadable"), 2);
    let bad = table_rows(&r, "files", "unreadable");
    assert!(bad.iter().any(|t| t.contains("corrupt.wav")) && bad.iter().any(|t| t.contains("missing.wav")), "{bad:?}");
    assert!(bad.iter().all(|t| t.split(',').count() >= 4 && !t.contains(",\"\"]")), "reasons: {bad:?}");
    assert!(severities(&r, "files").contains(&"problem".to_string()));
    // The cut WAV, the stereo 44.1 kHz clip.
    assert_eq!(stat(&r, "files", "truncated_wav"), 1);
    assert!(table_rows(&r, "files", "shorter than their header").iter().any(|t| t.contains("cut.wav")));
    assert_eq!(stat(&r, "files", "sample_rates")["44100"], 1);
    assert_eq!(stat(&r, "files", "channels")["2"], 1);

    // Durations: the 31-s clip (a Warning with advice) and the 0.2-s one.
    assert_eq!(stat(&r, "durations", "over_30s"), 1);
    assert!(table_rows(&r, "durations", "longer than 30 s")
        .iter()
        .any(|t| t.contains("long.wav") && t.contains("31.00")));
    let long = section(&r, "durations")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("30-s window"))
        .cloned();
    assert!(
        long.is_some_and(|f| f["severity"] == "warning" && f["advice"].as_str().is_some_and(|a| a.contains("split")))
    );
    assert_eq!(stat(&r, "durations", "under_0_5s"), 1);
    assert!(table_rows(&r, "durations", "very short").iter().any(|t| t.contains("short.wav")));

    // Silence and clipping.
    assert_eq!(stat(&r, "signal", "silent_with_transcript"), 1);
    assert!(table_rows(&r, "signal", "mostly silent").iter().any(|t| t.contains("silent.wav")));
    assert_eq!(stat(&r, "signal", "clipped"), 1);
    assert!(table_rows(&r, "signal", "clipped").iter().any(|t| t.contains("clipped.wav")));

    // Languages: one row has none (finetune would refuse it), the rest are English in both splits.
    assert_eq!(stat(&r, "languages", "rows_without_language"), 1);
    assert_eq!(stat(&r, "languages", "examples")["en"]["train"], 13);
    assert_eq!(stat(&r, "languages", "examples")["en"]["test"], 2);

    // Transcripts: the 460-word one is over the decoder's 448 tokens, one is empty, the special-token text does not
    // survive the round trip and its characters are named.
    assert_eq!(stat(&r, "transcripts", "max_tokens"), 448);
    assert_eq!(stat(&r, "transcripts", "over_token_limit"), 1);
    assert_eq!(stat(&r, "transcripts", "empty"), 1);
    assert_eq!(stat(&r, "transcripts", "not_round_tripped"), 1);
    let lost = stat(&r, "transcripts", "characters_not_round_tripped");
    assert!(lost.as_array().unwrap().iter().any(|c| c == "|"), "{lost}");

    // Duplicates: the byte copy across train and test, as audio and as (normalised) transcript.
    assert_eq!(stat(&r, "duplicates", "exact_groups_across_splits"), 1);
    assert_eq!(stat(&r, "duplicates", "transcript_groups_across_splits"), 1);
    let pairs = table_rows(&r, "duplicates", "exact duplicates");
    assert!(pairs.iter().any(|t| t.contains("dup_train.wav") && t.contains("dup_test.wav")), "{pairs:?}");
    // ok.wav is listed four times in train: the same file within a split, not across.
    assert_eq!(stat(&r, "duplicates", "exact_groups_within_splits"), 1);
    assert!(severities(&r, "duplicates").contains(&"problem".to_string()));
}

#[test]
fn a_flac_copy_of_a_wav_is_an_exact_duplicate() {
    let dir = tmp();
    let d = dir.path();
    write_wav(&d.join("a.wav"), 22_050, 1, 33_075, tone(210.0, 0.4));
    python(
        "import sys, soundfile as sf\nx, sr = sf.read(sys.argv[1], dtype='int16')\nsf.write(sys.argv[2], x, sr, subtype='PCM_16')",
        &[s(&d.join("a.wav")), s(&d.join("b.flac"))],
    );
    write_wav(&d.join("c.wav"), 22_050, 1, 33_075, tone(211.0, 0.4));
    jsonl(&d.join("train.jsonl"), &[serde_json::json!({"audio": "a.wav", "text": "one", "language": "en"})]);
    jsonl(
        &d.join("val.jsonl"),
        &[
            serde_json::json!({"audio": "b.flac", "text": "two", "language": "en"}),
            serde_json::json!({"audio": "c.wav", "text": "three", "language": "en"}),
        ],
    );
    let out =
        suite(d, &["inspect", "speech", "--data", "train.jsonl", "--val-data", "val.jsonl", "--out", "rep", "--json"]);
    out.assert_ok();
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(stat(&r, "duplicates", "exact_groups_across_splits"), 1);
    assert_eq!(stat(&r, "duplicates", "exact_extra_copies"), 1);
    let pairs = table_rows(&r, "duplicates", "exact duplicates");
    assert!(pairs.len() == 1 && pairs[0].contains("a.wav") && pairs[0].contains("b.flac"), "{pairs:?}");
}

#[test]
fn missing_or_malformed_manifests_are_user_errors() {
    let dir = tmp();
    let d = dir.path();
    let out = suite(d, &["inspect", "speech", "--data", "nope.jsonl", "--out", "rep"]);
    out.assert_user_error(&["nope.jsonl", "not found"]);
    assert!(!d.join("rep").exists());

    write_wav(&d.join("a.wav"), 16_000, 1, 16_000, tone(200.0, 0.3));
    std::fs::write(d.join("train.jsonl"), "{\"audio\": \"a.wav\", \"text\": \"fine\"}\n{\"audio\": \"a.wav\"\n")
        .unwrap();
    let out = suite(d, &["inspect", "speech", "--data", "train.jsonl", "--out", "rep"]);
    out.assert_user_error(&["train.jsonl", "line 2"]);

    std::fs::write(d.join("ok.jsonl"), "{\"audio\": \"a.wav\", \"text\": \"fine\", \"language\": \"en\"}\n").unwrap();
    let out =
        suite(d, &["inspect", "speech", "--data", "ok.jsonl", "--test-data", "missing_test.jsonl", "--out", "rep"]);
    out.assert_user_error(&["missing_test.jsonl"]);
    let out = suite(d, &["inspect", "speech", "--data", "ok.jsonl", "--max-len", "12", "--out", "rep"]);
    out.assert_user_error(&["--max-len"]);
}

#[test]
fn run_chooses_the_tokenizer_and_the_default_language() {
    let dir = tmp();
    let d = dir.path();
    write_wav(&d.join("a.wav"), 16_000, 1, 16_000, tone(200.0, 0.3));
    jsonl(&d.join("train.jsonl"), &[serde_json::json!({"audio": "a.wav", "text": "no language in the row"})]);
    // A LoRA run keeps only its adapter: the tokenizer is its base model's, the language its recorded one.
    let run = d.join("run");
    std::fs::create_dir_all(run.join("best")).unwrap();
    std::fs::write(run.join("best/adapter.safetensors"), b"").unwrap();
    std::fs::write(run.join("config.toml"), "[speech]\nmodel = \"whisper-base\"\nlanguage = \"de\"\n\n[train]\n")
        .unwrap();
    let out = suite(d, &["inspect", "speech", "--data", "train.jsonl", "--run", "run", "--out", "rep"]);
    out.assert_ok();
    let r = read_json(&d.join("rep/report.json"));
    assert_eq!(r["run"], "run");
    assert_eq!(stat(&r, "languages", "rows_without_language"), 0);
    assert_eq!(stat(&r, "languages", "examples")["de"]["train"], 1);
    assert!(stat(&r, "transcripts", "tokenizer").as_str().unwrap().ends_with("tokenizer.json"));

    let out =
        suite(d, &["inspect", "speech", "--data", "train.jsonl", "--run", "run", "--which", "final", "--out", "x"]);
    out.assert_user_error(&["final", "no saved model"]);
    let out = suite(d, &["inspect", "speech", "--data", "train.jsonl", "--run", "run", "--model", "whisper-base"]);
    out.assert_user_error(&["--run", "--model"]);
}
