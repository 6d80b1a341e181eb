//! End-to-end tests of `suite serve`: the real binary on a free port, called by real clients (OpenAI's Python
//! client for the audio API, httpx for the rest; `tests/py/serve_clients.py`). Answers must equal what `suite
//! predict` and `suite transcribe` print for the same inputs; bad requests get the documented status and a JSON
//! error and the server goes on; concurrent clients are batched and none is lost; the API key, the queue limit and
//! a graceful shutdown behave as documented.
//!
//! Models: a tiny vision run and a tiny text run these tests train, and the offline whisper-base.

mod common;

use std::path::{Path, PathBuf};

use common::serve::{text_run, vision_run, Server, CLASSES};
use common::*;
use serde_json::{json, Value};

/// Probabilities served vs printed by `suite predict` (the tolerance).
const TOL: f64 = 1e-5;

/// "he might even have been made amiable himself"
const AMIABLE: &str = "sense_and_sensibility_01_austen_64kb-0930";
/// The longest LibriVox utterance of the set.
const LONGEST: &str = "sense_and_sensibility_01_austen_64kb-0870";

fn json_lines(out: &Out) -> Vec<Value> {
    out.stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[track_caller]
fn assert_top_close(what: &str, served: &Value, reference: &Value) {
    let (a, b) = (served.as_array().unwrap(), reference.as_array().unwrap());
    assert_eq!(a.len(), b.len(), "{what}: served {served} vs reference {reference}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["label"], y["label"], "{what}: served {served} vs reference {reference}");
        let d = (x["prob"].as_f64().unwrap() - y["prob"].as_f64().unwrap()).abs();
        assert!(d <= TOL, "{what}: |Δprob| {d} > {TOL}: served {served} vs reference {reference}");
    }
}

/// `suite predict vision --json` of each image, in order.
fn predict_vision(dir: &Path, run: &Path, images: &[PathBuf]) -> Vec<Value> {
    let mut args = vec!["predict", "vision", "--run", s(run), "--json", "--top-k", "5", "--device", "cpu"];
    args.extend(images.iter().map(|p| s(p)));
    let out = suite(dir, &args);
    out.assert_ok();
    json_lines(&out)
}

/// `suite predict text --json` of each line.
fn predict_text(dir: &Path, run: &Path, texts: &[&str]) -> Vec<Value> {
    let out =
        suite_with_stdin(dir, &["predict", "text", "--run", s(run), "--json", "--device", "cpu"], &texts.join("\n"));
    out.assert_ok();
    json_lines(&out)
}

/// `suite transcribe --format verbose_json --language en` of one file.
fn transcribe(dir: &Path, wav: &Path) -> Value {
    let out = suite(dir, &["transcribe", "--format", "verbose_json", "--language", "en", "--device", "cpu", s(wav)]);
    out.assert_ok();
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.show()))
}

#[test]
fn served_answers_equal_predict_and_transcribe_and_bad_requests_do_not_stop_the_server() {
    let dir = tmp();
    let dir = dir.path();
    let vision = vision_run(dir);
    let text = text_run(dir);
    let images: Vec<PathBuf> = CLASSES.iter().map(|c| dir.join("shapes/val").join(c).join("0.png")).collect();
    let texts = ["the referee and the goal", "a soup with butter", "tennis bread", "nothing at all"];
    let wavs = [librivox(AMIABLE), librivox(LONGEST)];

    // References, one process each, before the server takes the cores.
    let ref_vision = predict_vision(dir, &vision, &images);
    let ref_text = predict_text(dir, &text, &texts);
    let ref_speech: Vec<Value> = wavs.iter().map(|w| transcribe(dir, w)).collect();

    let server = Server::start(
        dir,
        &[
            "--run",
            &format!("{}=shapes", s(&vision)),
            "--run",
            &format!("{}=topics", s(&text)),
            "--model",
            "whisper-base",
            "--max-batch",
            "8",
            "--max-wait-ms",
            "50",
            "--max-body-mb",
            "2",
            "--threads",
            "2",
            "--device",
            "cpu",
        ],
    );
    server.wait_ready();

    // Vision three ways, text as one list: the same JSON as `suite predict --json`.
    let got = server.clients(
        "predict",
        &json!({"vision": "shapes", "text": "topics", "images": images.iter().map(|p| s(p)).collect::<Vec<_>>(),
                "texts": texts}),
    );
    for (i, r) in ref_vision.iter().enumerate() {
        for how in ["raw", "multipart", "base64"] {
            let served = &got["vision"][i][how];
            assert_eq!(served["model"], "shapes", "{served}");
            assert_top_close(&format!("image {i} ({how})"), &served["top"], &r["top"]);
        }
    }
    let predictions = got["text"]["predictions"].as_array().unwrap_or_else(|| panic!("{}", got["text"]));
    assert_eq!(predictions.len(), texts.len());
    for (i, (p, r)) in predictions.iter().zip(&ref_text).enumerate() {
        assert_top_close(&format!("text {i}"), &p["top"], &r["top"]);
    }

    // OpenAI's client, every response format, on real speech: the same text and segments as `suite transcribe`.
    let audio = server.clients("audio", &json!({"wavs": wavs.iter().map(|p| s(p)).collect::<Vec<_>>()}));
    for (row, reference) in audio.as_array().unwrap().iter().zip(&ref_speech) {
        let text = reference["text"].as_str().unwrap();
        assert!(!text.is_empty());
        assert_eq!(row["json"], text, "{row}");
        assert_eq!(row["text"].as_str().unwrap().trim(), text, "{row}");
        let verbose = &row["verbose_json"];
        assert_eq!(verbose["text"], text);
        assert_eq!(verbose["language"], "english");
        let (segs, ref_segs) = (verbose["segments"].as_array().unwrap(), reference["segments"].as_array().unwrap());
        assert_eq!(segs.len(), ref_segs.len(), "{verbose} vs {reference}");
        for (a, b) in segs.iter().zip(ref_segs) {
            assert_eq!(a["text"], b["text"]);
            for k in ["start", "end"] {
                assert!((a[k].as_f64().unwrap() - b[k].as_f64().unwrap()).abs() < 1e-6, "{a} vs {b}");
            }
        }
        // Subtitles: one cue per segment, with the segment's text.
        let srt = row["srt"].as_str().unwrap();
        let vtt = row["vtt"].as_str().unwrap();
        assert!(vtt.starts_with("WEBVTT"), "{vtt}");
        assert_eq!(srt.matches(" --> ").count(), ref_segs.len(), "{srt}");
        assert_eq!(vtt.matches(" --> ").count(), ref_segs.len(), "{vtt}");
        for seg in ref_segs {
            let t = seg["text"].as_str().unwrap().trim();
            assert!(srt.contains(t) && vtt.contains(t), "{t:?} missing from\n{srt}\n{vtt}");
        }
        assert!(srt.contains("00:00:00,000 --> "), "{srt}");
        assert!(!row["translation"].as_str().unwrap().trim().is_empty(), "{row}");
    }

    // 64 concurrent clients on the three models: each answer equals its one-at-a-time answer, none is lost, and
    // the batcher put several requests into one forward.
    let mut distinct = Vec::new();
    for p in &images {
        distinct.push(json!({"kind": "vision", "model": "shapes", "path": s(p)}));
    }
    for t in &texts {
        distinct.push(json!({"kind": "text", "model": "topics", "text": t}));
    }
    for w in &wavs {
        distinct.push(json!({"kind": "speech", "model": "whisper-base", "path": s(w)}));
    }
    let requests: Vec<Value> = (0..64)
        .map(|i| {
            // Mostly vision and text (cheap), every eighth a transcription.
            if i % 8 == 7 {
                distinct[images.len() + texts.len() + (i / 8) % wavs.len()].clone()
            } else {
                distinct[i % (images.len() + texts.len())].clone()
            }
        })
        .collect();
    let conc = server.clients("concurrent", &json!({"distinct": distinct, "requests": requests}));
    let alone = conc["alone"].as_array().unwrap();
    for (i, (req, answer)) in requests.iter().zip(conc["together"].as_array().unwrap()).enumerate() {
        let which = distinct.iter().position(|d| d == req).unwrap();
        let (status, body) = (&answer[0], &answer[1]);
        assert_eq!(status, 200, "request {i} ({req}): {body}");
        let expected = &alone[which][1];
        match req["kind"].as_str().unwrap() {
            "vision" => assert_top_close(&format!("concurrent {i}"), &body["top"], &expected["top"]),
            "text" => assert_top_close(
                &format!("concurrent {i}"),
                &body["predictions"][0]["top"],
                &expected["predictions"][0]["top"],
            ),
            _ => assert_eq!(body["text"], expected["text"], "concurrent {i}"),
        }
    }
    let metrics = conc["metrics"].as_str().unwrap();
    let bucket = |model: &str, le: &str| -> f64 {
        let key = format!("suite_batch_size_bucket{{model=\"{model}\",le=\"{le}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key}\n{metrics}"));
        line[key.len()..].trim().parse().unwrap()
    };
    let larger: f64 = ["shapes", "topics"].iter().map(|m| bucket(m, "+Inf") - bucket(m, "1")).sum();
    assert!(larger > 0.0, "no batch larger than 1:\n{metrics}");
    for needle in [
        "suite_requests_total{model=\"topics\",route=\"/v1/models/{id}/predict\",status=\"200\"}",
        "suite_request_duration_seconds_bucket{model=\"whisper-base\",route=\"/v1/audio/transcriptions\"",
        "suite_queue_depth{model=\"shapes\"}",
        "suite_model_load_seconds{model=\"whisper-base\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }

    // Bad requests of many kinds: the documented status, a JSON error in OpenAI's shape, and the next good
    // request is answered.
    let bad = server.clients(
        "bad",
        &json!({"vision": "shapes", "text": "topics", "wav": s(&wavs[0]), "image": s(&images[0]), "max_body_mb": 2}),
    );
    let expected: &[(&str, u16, &str)] = &[
        ("empty body (vision)", 400, "empty"),
        ("text file as image", 400, "image"),
        ("truncated PNG", 400, "image"),
        ("bad base64", 400, "base64"),
        ("wrong content type (vision)", 415, "text/csv"),
        ("unknown model", 404, "no-such-model"),
        ("unknown route", 404, "/v2/everything"),
        ("wrong method", 405, "GET"),
        ("body over the limit", 413, ""),
        ("text: not JSON", 400, "JSON"),
        ("text: wrong JSON type", 400, "inputs"),
        ("text: missing inputs", 400, "input"),
        ("text: top_k not a number", 400, "top_k"),
        ("text: form instead of JSON", 415, "application/json"),
        ("text: empty list", 400, "empty"),
        ("audio: 0-byte file", 400, "empty"),
        ("audio: text file", 400, "file"),
        ("audio: sample rate 0", 400, "file"),
        ("audio: unknown response_format", 400, "response_format"),
        ("audio: unknown language", 400, "language"),
        ("audio: temperature out of range", 400, "temperature"),
        ("audio: no file field", 400, "file"),
        ("audio: cut multipart", 400, ""),
        ("audio: JSON instead of a form", 415, "multipart"),
        ("audio: unknown model", 404, "whisper-huge-9"),
        ("audio to a vision model", 400, "not a speech model"),
    ];
    let rows = bad.as_array().unwrap();
    assert!(rows.len() >= 15);
    for ((name, status, needle), row) in expected.iter().zip(rows) {
        assert_eq!(row["case"], *name);
        assert_eq!(row["status"], *status, "{name}: {row}");
        assert!(row["content_type"].as_str().unwrap().starts_with("application/json"), "{name}: {row}");
        let err = &row["body"]["error"];
        let message = err["message"].as_str().unwrap_or_else(|| panic!("{name}: no error.message: {row}"));
        assert!(message.contains(needle), "{name}: {message:?} does not name {needle:?}");
        assert!(err["type"].is_string() && err.get("param").is_some() && err.get("code").is_some(), "{name}: {row}");
        assert_eq!(row["next_ok"], true, "{name}: the next good request failed");
    }
    assert_eq!(rows.len(), expected.len());
    let log = server.log();
    assert!(!log.contains("panicked") && !log.contains("internal failure"), "{log}");
}

#[test]
fn api_key_queue_limit_and_graceful_shutdown() {
    let dir = tmp();
    let dir = dir.path();
    let key_file = dir.join("key.txt");
    let key = "sk-test-0123456789";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let wav = librivox(AMIABLE);
    let server = Server::start(
        dir,
        &[
            "--model",
            "whisper-base",
            "--api-key-file",
            s(&key_file),
            "--max-batch",
            "1",
            "--max-queue",
            "1",
            "--threads",
            "2",
            "--device",
            "cpu",
        ],
    );
    server.wait_ready();

    let auth = server.clients("auth", &json!({"key": key, "wav": s(&wav)}));
    assert_eq!(auth["health"], 200, "{auth}");
    assert_eq!(auth["none"][0], 401, "{auth}");
    assert_eq!(auth["none"][1]["error"]["code"], "invalid_api_key", "{auth}");
    assert_eq!(auth["wrong"], 401, "{auth}");
    assert_eq!(auth["right"], 200, "{auth}");
    assert_eq!(auth["metrics_none"], 401, "{auth}");
    assert_eq!(auth["openai_wrong"], 401, "{auth}");
    assert!(auth["openai"].as_str().unwrap().to_lowercase().contains("amiable"), "{auth}");

    // One running and one waiting fill a queue of one: of 8 at once, some are refused at once with 503.
    let flood = server.clients("flood", &json!({"n": 8, "key": key, "wav": s(&wav)}));
    let rows = flood.as_array().unwrap();
    let refused: Vec<&Value> = rows.iter().filter(|r| r["status"] == 503).collect();
    let served = rows.iter().filter(|r| r["status"] == 200).count();
    assert!(!refused.is_empty() && served >= 1, "{flood}");
    assert_eq!(refused.len() + served, 8, "{flood}");
    for r in refused {
        assert_eq!(r["retry_after"], "1", "{r}");
        assert_eq!(r["body"]["error"]["code"], "overloaded", "{r}");
    }

    // SIGTERM while a transcription is in flight: it is answered, then the server exits 0.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/serve_clients.py");
    let python = suite_core::python::python_exe().unwrap();
    let args = json!({"key": key, "wav": s(&librivox(LONGEST))}).to_string();
    let client = std::process::Command::new(python)
        .args([script, server.base.as_str(), "inflight", args.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SIGTERM once the server is answering the request (the client's start-up takes a while on a busy machine).
    server.wait_in_flight("/v1/audio/transcriptions", Some(key));
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let answered = client.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&answered.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answered.stderr)));
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(answer["body"]["text"].as_str().is_some_and(|t| !t.is_empty()), "{answer}");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("shutting down"), "{}", server.log());
}

#[test]
fn bad_serve_arguments_are_clear_errors() {
    let dir = tmp();
    let dir = dir.path();
    suite(dir, &["serve"]).assert_error(&["nothing to serve"]);
    suite(dir, &["serve", "--run", s(&dir.join("missing"))]).assert_error(&["not a run folder"]);
    suite(dir, &["serve", "--model", "resnet50"]).assert_error(&["--run runs/NAME"]);
    suite(dir, &["serve", "--model", "whisper-base", "--max-batch", "0"]).assert_error(&["--max-batch 0"]);
    let empty = dir.join("empty-key");
    std::fs::write(&empty, "\n").unwrap();
    suite(dir, &["serve", "--model", "whisper-base", "--api-key-file", s(&empty)]).assert_error(&["empty"]);
    suite(dir, &["serve", "--model", "whisper-base", "--model", "whisper-base"]).assert_error(&["two models"]);
    // A run folder whose model never got saved: the server stops with the load error, exit 2.
    let fake = dir.join("fake-run");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("config.toml"), "[text]\nmodel = \"x\"\n").unwrap();
    let out = suite(dir, &["serve", "--run", s(&fake), "--port", "0"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    out.assert_error_after_progress(&["model fake-run", "no saved model"]);
}
