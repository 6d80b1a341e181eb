//! End-to-end tests of the `suite` binary on speech: `suite transcribe` on real LibriVox speech and on bad or
//! unusual files, and tiny Whisper fine-tuning runs (full and LoRA) on synthetic espeak-ng clips whose saved models
//! transformers and `suite transcribe --run` load. CPU only, the offline whisper-base asset, each test in its own
//! temporary folder.
//!
//! Costs are whisper-base's encoder (a few seconds per 30-s window on a CPU): runs use the frozen encoder, greedy
//! evaluation and two optimizer steps, and the long recording is 2 minutes (4 windows) rather than 10.

use std::path::{Path, PathBuf};

mod common;
use common::*;

/// "he might even have been made amiable himself"
const AMIABLE: &str = "sense_and_sensibility_01_austen_64kb-0930";

/// Writes an 8 kHz stereo MP3 of a LibriVox clip (decimated by two, the two channels equal) with soundfile; an OGG
/// Vorbis file when this libsndfile cannot write MP3.
const WRITE_LOWRATE: &str = r#"
import sys, wave, numpy as np, soundfile as sf
src, out_base = sys.argv[1:3]
w = wave.open(src)
x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
x = x[::2]
stereo = np.stack([x, x], axis=1)
try:
    sf.write(out_base + ".mp3", stereo, 8000, format="MP3")
    print(out_base + ".mp3")
except Exception:
    sf.write(out_base + ".ogg", stereo, 8000, format="OGG", subtype="VORBIS")
    print(out_base + ".ogg")
"#;

#[test]
fn transcribe_reports_bad_files_and_continues_with_the_others() {
    let dir = tmp();
    let d = dir.path();
    let fake = d.join("notes.wav");
    std::fs::write(&fake, "this is a text file, not audio\n").unwrap();
    let empty = d.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let lowrate = python(WRITE_LOWRATE, &[s(&librivox(AMIABLE)), s(&d.join("lowrate"))]);
    let lowrate = PathBuf::from(lowrate.lines().last().unwrap().trim());
    assert!(lowrate.is_file());
    let good = librivox(AMIABLE);
    let out = suite(d, &["transcribe", "--language", "en", s(&good), s(&fake), s(&empty), s(&lowrate)]);
    out.assert_error(&["notes.wav: not a recognised audio format", "empty.wav: empty file", "2 of 4 file(s)"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.show());
    for (line, file) in lines.iter().zip([&good, &lowrate]) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[..2], [s(file), "en"], "{}", out.show());
        let text = cols[2].to_lowercase();
        assert!(text.contains("amiable") && text.contains("himself"), "{}", out.show());
    }

    // JSON lines, language detected.
    let out = suite(d, &["transcribe", "--json", s(&good)]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["language"], "en");
    assert!(v["text"].as_str().unwrap().contains("amiable"), "{v}");
}

#[test]
fn unknown_language_and_bad_options_are_refused() {
    let dir = tmp();
    let good = librivox(AMIABLE);
    suite(dir.path(), &["transcribe", "--language", "xx", s(&good)])
        .assert_error(&["--language xx", "\"xx\" is not a Whisper language"]);
    suite(dir.path(), &["transcribe", "--task", "summarise", s(&good)]).assert_error(&["--task", "summarise"]);
    suite(dir.path(), &["transcribe", "--beam", "0", s(&good)]).assert_error(&["--beam 0"]);
    suite(dir.path(), &["transcribe", "--run", s(dir.path()), s(&good)]).assert_error(&["no saved model"]);
}

/// Two minutes: the five LibriVox utterances with a second of silence after each, repeated.
const WRITE_LONG: &str = r#"
import sys, wave, numpy as np
out, minutes = sys.argv[1], float(sys.argv[2])
parts = []
for f in sys.argv[3:]:
    w = wave.open(f)
    parts.append(np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16))
    parts.append(np.zeros(16000, dtype=np.int16))
one = np.concatenate(parts)
n = int(minutes * 60 * 16000)
x = np.tile(one, n // len(one) + 1)[:n]
w = wave.open(out, "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(x.tobytes())
w.close()
"#;

#[test]
fn a_long_recording_is_transcribed_window_by_window() {
    let dir = tmp();
    let long = dir.path().join("long.wav");
    let ids = ["0870", "0880", "0890", "0920", "0930"];
    let wavs: Vec<PathBuf> =
        ids.iter().map(|i| librivox(&format!("sense_and_sensibility_01_austen_64kb-{i}"))).collect();
    let mut args = vec![s(&long).to_string(), "2".to_string()];
    args.extend(wavs.iter().map(|p| s(p).to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    python(WRITE_LONG, &refs);
    let out = suite(dir.path(), &["transcribe", "--json", "--language", "en", s(&long)]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!((v["duration_s"].as_f64().unwrap() - 120.0).abs() < 0.01, "{v}");
    let text = v["text"].as_str().unwrap().to_lowercase();
    // Every window contributes: the utterances recur about four times in two minutes.
    let words = text.split_whitespace().count();
    assert!(words > 150, "{words} words from 2 minutes of speech: {text}");
    for w in ["dashwood", "disposed", "selfish", "respectable", "amiable"] {
        assert!(text.contains(w), "{w:?} missing from {text}");
    }
    assert!(text.matches("amiable").count() >= 3, "{text}");
}

/// A manifest of `n` synthetic English clips (and a held-out one) made by scripts/synth_speech.py.
fn synth(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/synth_speech.py");
    let out = dir.join("synth");
    let code = std::fs::read_to_string(&script).unwrap();
    python(
        &code,
        &["--out", s(&out), "--per-lang", &n.to_string(), "--heldout-per-lang", "1", "--langs", "en", "--jobs", "1"],
    );
    (out.join("train.jsonl"), out.join("heldout.jsonl"))
}

const TINY: &[&str] = &[
    "finetune",
    "speech",
    "--max-steps",
    "2",
    "--batch-size",
    "2",
    "--eval-beam",
    "1",
    "--freeze-encoder",
    "--threads",
    "1",
    "--workers",
    "1",
    "--device",
    "cpu",
    "--language",
    "en",
];

fn tiny_finetune(cwd: &Path, train: &Path, val: &Path, out: &Path, more: &[&str]) -> Out {
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--data", s(train), "--val-data", s(val), "--out", s(out)]);
    args.extend(more);
    suite(cwd, &args)
}

const LOAD_IN_TRANSFORMERS: &str = r#"
import sys
from transformers import WhisperForConditionalGeneration
model, info = WhisperForConditionalGeneration.from_pretrained(sys.argv[1], output_loading_info=True)
bad = {k: v for k, v in info.items() if v}
assert not bad, bad
assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
print("loaded", sum(p.numel() for p in model.parameters()))
"#;

#[test]
fn tiny_finetune_writes_a_hub_model_that_transformers_and_transcribe_load() {
    let dir = tmp();
    let d = dir.path();
    let (train, val) = synth(d, 4);
    let run = d.join("run");
    let out = tiny_finetune(d, &train, &val, &run, &[]);
    out.assert_ok();
    for f in
        ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "preprocessor_config.json"]
    {
        assert!(run.join("best").join(f).is_file(), "best/{f} missing: {}", out.show());
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/metrics.json")).unwrap()).unwrap();
    for k in ["wer", "cer", "loss"] {
        assert!(metrics[k].as_f64().is_some_and(f64::is_finite), "{metrics}");
    }
    let preds = std::fs::read_to_string(run.join("eval/predictions.jsonl")).unwrap();
    let p: serde_json::Value = serde_json::from_str(preds.lines().next().unwrap()).unwrap();
    for k in ["audio", "reference", "hypothesis", "wer"] {
        assert!(p.get(k).is_some(), "{p}");
    }
    assert!(python(LOAD_IN_TRANSFORMERS, &[s(&run.join("best"))]).contains("loaded"));

    let clip = p["audio"].as_str().unwrap();
    let out = suite(d, &["transcribe", "--run", s(&run), "--language", "en", clip]);
    out.assert_ok();
    assert!(out.stdout.starts_with(clip), "{}", out.show());
    let out = suite(d, &["eval", "--run", s(&run), "--data", s(&val)]);
    out.assert_ok();
    assert!(out.stdout.contains("wer") && out.stdout.contains("cer"), "{}", out.show());
}

#[test]
fn lora_finetune_writes_a_small_adapter_that_transcribe_loads() {
    let dir = tmp();
    let d = dir.path();
    let (train, val) = synth(d, 2);
    let run = d.join("run");
    let out = tiny_finetune(d, &train, &val, &run, &["--peft", "lora"]);
    out.assert_ok();
    assert!(out.stderr.contains("lora on 24 layers"), "decoder q_proj/v_proj only: {}", out.show());
    let adapter = run.join("best/adapter.safetensors");
    let size = std::fs::metadata(&adapter).unwrap_or_else(|_| panic!("no adapter: {}", out.show())).len();
    // whisper-base is 72.6 M parameters (290 MB in fp32); LoRA r 8 on 24 layers of 512 is 196,608 (0.8 MB).
    assert!(size < 1_000_000, "adapter of {size} bytes");
    assert!(!run.join("best/model.safetensors").exists());
    let manifest = std::fs::read_to_string(run.join("best/suite_adapter.json")).unwrap();
    assert!(manifest.contains("\"method\": \"lora\"") && manifest.contains("whisper-base"), "{manifest}");
    let clip = librivox(AMIABLE);
    let out = suite(d, &["transcribe", "--run", s(&run), "--language", "en", s(&clip)]);
    out.assert_ok();
    assert!(out.stdout.to_lowercase().contains("amiable"), "{}", out.show());
}

#[test]
fn manifest_rows_with_a_missing_file_or_no_language_are_named() {
    let dir = tmp();
    let d = dir.path();
    let good = librivox(AMIABLE);
    let m = d.join("m.jsonl");
    let rows = format!(
        "{{\"audio\": \"{}\", \"text\": \"he might even have been made amiable himself\"}}\n{{\"audio\": \"gone.wav\", \"text\": \"x\"}}\n",
        s(&good)
    );
    std::fs::write(&m, rows).unwrap();
    let out = suite(d, &["finetune", "speech", "--data", s(&m), "--out", s(&d.join("run"))]);
    out.assert_error(&["m.jsonl: line 2", "gone.wav", "not found"]);
    assert!(!d.join("run").exists(), "a refused job leaves no run folder");

    std::fs::write(&m, format!("{{\"audio\": \"{}\", \"text\": \"he might\"}}\n", s(&good))).unwrap();
    let out = suite(d, &["finetune", "speech", "--data", s(&m), "--val-data", s(&m), "--out", s(&d.join("run"))]);
    out.assert_error(&["m.jsonl: row 1", "no language", "--language"]);
    let out = suite(
        d,
        &["finetune", "speech", "--data", s(&m), "--val-data", s(&m), "--language", "xx", "--out", s(&d.join("run"))],
    );
    out.assert_error(&["m.jsonl: row 1", "\"xx\" is not a Whisper language"]);
}

/// `HH:MM:SS,mmm` / `HH:MM:SS.mmm` as openai-whisper's subtitle writers format a time.
fn subtitle_time(seconds: f64, marker: char) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}{marker}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// `--format verbose_json` carries OpenAI's fields (language by name, the file's duration as Python's `wave`
/// reads it, timed segments); `--format srt` and `vtt` are those segments in openai-whisper's subtitle layout;
/// with `--output-dir` each file gets its own subtitle file.
#[test]
fn transcribe_writes_subtitles_and_verbose_json() {
    let dir = tmp();
    let d = dir.path();
    let good = librivox(AMIABLE);
    let out = suite(d, &["transcribe", "--format", "verbose_json", s(&good)]);
    out.assert_ok();
    let v: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.show()));
    assert_eq!(v["file"], s(&good));
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    let frames =
        python("import sys, wave\nw = wave.open(sys.argv[1])\nprint(w.getnframes() / w.getframerate())", &[s(&good)]);
    let seconds: f64 = frames.trim().parse().unwrap();
    assert!((v["duration"].as_f64().unwrap() - seconds).abs() < 1e-9, "{v}");
    assert!(v["text"].as_str().unwrap().to_lowercase().contains("amiable"), "{v}");
    let segments = v["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{v}");
    let (mut srt, mut vtt) = (String::new(), String::from("WEBVTT\n\n"));
    for (i, seg) in segments.iter().enumerate() {
        let (start, end) = (seg["start"].as_f64().unwrap(), seg["end"].as_f64().unwrap());
        assert!(0.0 <= start && start < end && end <= seconds + 0.02, "{seg}");
        let text = seg["text"].as_str().unwrap().trim();
        srt.push_str(&format!("{}\n{} --> {}\n{text}\n\n", i + 1, subtitle_time(start, ','), subtitle_time(end, ',')));
        vtt.push_str(&format!("{} --> {}\n{text}\n\n", subtitle_time(start, '.'), subtitle_time(end, '.')));
    }
    let out = suite(d, &["transcribe", "--format", "srt", s(&good)]);
    out.assert_ok();
    assert_eq!(out.stdout, srt);
    assert!(out.stdout.starts_with("1\n00:00:00,000 --> 00:00:0"), "{}", out.show());

    let other = librivox("sense_and_sensibility_01_austen_64kb-0880");
    let subs = d.join("subs");
    let out = suite(d, &["transcribe", "--format", "vtt", "--output-dir", s(&subs), s(&good), s(&other)]);
    out.assert_ok();
    let written: Vec<&str> = out.stdout.lines().collect();
    let expected = [subs.join(format!("{AMIABLE}.vtt")), subs.join("sense_and_sensibility_01_austen_64kb-0880.vtt")];
    assert_eq!(written, expected.iter().map(|p| s(p)).collect::<Vec<_>>(), "{}", out.show());
    assert_eq!(std::fs::read_to_string(&expected[0]).unwrap(), vtt);
    let second = std::fs::read_to_string(&expected[1]).unwrap();
    assert!(second.starts_with("WEBVTT\n\n00:00:0") && second.to_lowercase().contains("disposed"), "{second}");
}

/// A WAV header that declares a sample rate of 0 makes symphonia panic; suite refuses it first, naming the file.
#[test]
fn a_wav_with_sample_rate_zero_is_a_clean_error() {
    let dir = tmp();
    let d = dir.path();
    let bad = d.join("rate0.wav");
    let mut wav = std::fs::read(librivox(AMIABLE)).unwrap();
    // The sample-rate field of the canonical 44-byte header.
    assert_eq!(&wav[12..16], b"fmt ");
    wav[24..28].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(&bad, wav).unwrap();
    let out = suite(d, &["transcribe", "--format", "srt", s(&bad)]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    out.assert_error(&["rate0.wav", "sample rate of 0 Hz", "1 of 1 file(s)"]);
    let out = suite(d, &["transcribe", "--format", "xml", s(&bad)]);
    out.assert_error(&["--format xml", "txt, json, srt, vtt or verbose_json"]);
    let out = suite(d, &["transcribe", "--temperature", "hot", s(&bad)]);
    out.assert_error(&["--temperature hot"]);
}
