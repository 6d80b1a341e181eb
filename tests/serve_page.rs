//! The try-it page of `suite serve` (`GET /`) in a real headless browser: Debian's Chromium, driven over the
//! DevTools protocol by `tests/py/page_driver.py` as a person would use it — enter the API key, pick an image, type
//! a text, pick an audio file, press the buttons — against the real binary serving one model of each domain (a tiny
//! vision run and a tiny text run this test trains, and whisper-base). What the page shows must be what `suite
//! predict` and `suite transcribe` print for the same inputs, and the server's JSON errors must reach the page.
//!
//! Needs `/usr/bin/chromium` (`scripts/setup_browser.sh` installs it) and `websocket-client` in the reference
//! Python (scripts/requirements.txt).

mod common;

use std::path::Path;
use std::process::Command;

use common::serve::{text_run, vision_run, Server, CLASSES};
use common::*;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/page_driver.py");
const KEY: &str = "page-test-key-0123";
/// Probabilities shown by the page vs printed by `suite predict` (the tolerance).
const TOL: f64 = 1e-5;

const LABELS: [&str; 2] = ["food", "sport"];

// ---------------------------------------------------------------------------------------------------------------
// References

/// `suite predict vision --json` of one image: (label, probability), highest first.
fn predict_vision(dir: &Path, run: &Path, image: &Path) -> Vec<(String, f64)> {
    let out =
        suite(dir, &["predict", "vision", "--run", s(run), "--json", "--top-k", "5", "--device", "cpu", s(image)]);
    out.assert_ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.show()));
    pairs(&v["top"])
}

/// `suite predict text --json` of one text.
fn predict_text(dir: &Path, run: &Path, text: &str) -> Vec<(String, f64)> {
    let out = suite_with_stdin(dir, &["predict", "text", "--run", s(run), "--json", "--device", "cpu"], text);
    out.assert_ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.show()));
    pairs(&v["top"])
}

fn pairs(top: &Value) -> Vec<(String, f64)> {
    let top = top.as_array().unwrap_or_else(|| panic!("no top list: {top}"));
    top.iter().map(|t| (t["label"].as_str().unwrap().to_string(), t["prob"].as_f64().unwrap())).collect()
}

/// Asserts that the bars the page shows are `reference`: same labels in the same order, probabilities within
/// [`TOL`], each shown as a percentage with one decimal.
#[track_caller]
fn assert_bars(what: &str, shown: &Value, reference: &[(String, f64)]) {
    let bars = shown.as_array().unwrap_or_else(|| panic!("{what}: no bars: {shown}"));
    assert_eq!(bars.len(), reference.len(), "{what}: page {shown} vs reference {reference:?}");
    for (bar, (label, prob)) in bars.iter().zip(reference) {
        assert_eq!(bar["label"], label.as_str(), "{what}: page {shown} vs reference {reference:?}");
        assert_eq!(bar["name"], label.as_str(), "{what}: the visible label: {bar}");
        let p = bar["prob"].as_f64().unwrap();
        assert!((p - prob).abs() <= TOL, "{what}: {label}: page {p}, reference {prob}");
        assert_eq!(bar["shown"], format!("{:.1}%", 100.0 * p), "{what}: the visible percentage: {bar}");
    }
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn the_page_shows_what_predict_and_transcribe_print_in_a_headless_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup_browser.sh (installs Debian's chromium)"
    );
    let dir = tmp();
    let vision = vision_run(dir.path());
    let text = text_run(dir.path());
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let image = dir.path().join("shapes/val/stripes/0.png");
    let sentence = "the referee stopped the football match";
    let wav = librivox("sense_and_sensibility_01_austen_64kb-0880");

    // The references, before the server takes the cores.
    let vision_ref = predict_vision(dir.path(), &vision, &image);
    let text_ref = predict_text(dir.path(), &text, sentence);
    let out = suite(dir.path(), &["transcribe", s(&wav), "--json", "--device", "cpu"]);
    out.assert_ok();
    let transcribed: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.show()));
    let speech_ref = transcribed["text"].as_str().expect("transcribe --json has text").trim().to_string();
    let duration = transcribed["duration_s"].as_f64().expect("transcribe --json has duration_s");

    let vision_arg = format!("{}=shapes", s(&vision));
    let text_arg = format!("{}=topics", s(&text));
    let mut args: Vec<&str> = "--model whisper-base --host 127.0.0.1 --device cpu --threads 1".split(' ').collect();
    args.extend(["--run", &vision_arg, "--run", &text_arg, "--api-key-file", s(&key_file)]);
    let server = Server::start(dir.path(), &args);

    let screenshot = dir.path().join("page.png");
    let python = suite_core::python::python_exe().expect("the reference Python");
    let driver = Command::new(python)
        .arg(DRIVER)
        .args(["--url", &server.base, "--api-key", KEY, "--timeout", "600", "--screenshot", s(&screenshot)])
        .args(["--vision", &format!("shapes={}", s(&image))])
        .args(["--text", &format!("topics={sentence}")])
        .args(["--speech", &format!("whisper-base={}", s(&wav))])
        .output()
        .expect("starting the page driver");
    let stdout = String::from_utf8_lossy(&driver.stdout);
    let show = || {
        format!(
            "driver {}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server\n{}",
            driver.status,
            String::from_utf8_lossy(&driver.stderr),
            server.log()
        )
    };
    assert!(driver.status.success(), "the page driver failed: {}", show());
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let page: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", show()));

    // Without the key the model list is refused, and the page shows the server's own message.
    let (status, body) = server.request("GET", "/v1/models", None);
    assert_eq!(status, 401, "{body}");
    let message = body["error"]["message"].as_str().expect("an OpenAI-shaped error");
    let without = &page["without_key"];
    assert_eq!(without["models"], "error", "{without}");
    let shown = without["error"].as_str().unwrap_or_default();
    assert!(shown.starts_with("401: ") && shown.contains(message), "page shows {shown:?}, server says {message:?}");
    assert_eq!(page["key_stored"], true, "the key is kept in sessionStorage");

    // With it, the page lists exactly the server's models, with their domain, task and labels.
    let (status, list) = server.request("GET", "/v1/models", Some(KEY));
    assert_eq!(status, 200, "{list}");
    let served: Vec<Value> = list["data"]
        .as_array()
        .expect("a model list")
        .iter()
        .map(|m| serde_json::json!({"id": m["id"], "domain": m["domain"], "task": m["task"], "labels": m["labels"]}))
        .collect();
    assert_eq!(page["models"], Value::Array(served), "page vs GET /v1/models");
    let find = |id: &str| served_model(&page["models"], id);
    assert_eq!(find("shapes")["domain"], "vision");
    assert_eq!(find("shapes")["labels"], serde_json::json!(CLASSES));
    assert_eq!(find("topics")["domain"], "text");
    assert_eq!(find("topics")["labels"], serde_json::json!(LABELS));
    assert_eq!(find("whisper-base")["domain"], "speech");

    // A text file named like an image: refused by the server, and the page shows the same message.
    let refused = &page["refused"];
    assert_eq!(refused["state"], "error", "{refused}");
    let direct_status = refused["direct"]["status"].as_u64().unwrap_or(0);
    assert!(direct_status == 400 || direct_status == 415, "{refused}");
    let direct_msg = refused["direct"]["body"]["error"]["message"].as_str().expect("an OpenAI-shaped error");
    assert_eq!(refused["error"], format!("{direct_status}: {direct_msg}"), "{refused}");

    // Vision: the picked image is shown, and its bars are suite predict's.
    let v = &page["vision"]["shapes"];
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["preview"], serde_json::json!([40, 40]), "{v}");
    assert_bars("vision", &v["top"], &vision_ref);

    // Text: the typed sentence's bars are suite predict's.
    let t = &page["text"]["topics"];
    assert_eq!(t["state"], "done", "{t}");
    assert_bars("text", &t["top"], &text_ref);

    // Speech: the transcript is suite transcribe's; the segments have increasing times within the clip and make
    // up the text.
    let sp = &page["speech"]["whisper-base"];
    assert_eq!(sp["state"], "done", "{sp}");
    assert_eq!(sp["text"].as_str().map(str::trim), Some(speech_ref.as_str()), "page vs suite transcribe: {sp}");
    let segments = sp["segments"].as_array().expect("segments");
    assert!(!segments.is_empty(), "verbose_json shows segments: {sp}");
    let mut last = 0.0;
    for seg in segments {
        let (start, end) = (seg["start"].as_f64().unwrap(), seg["end"].as_f64().unwrap());
        assert!(last <= start && start < end && end <= duration + 0.5, "segment times: {sp}");
        last = end;
    }
    let joined: Vec<&str> = segments.iter().map(|seg| seg["text"].as_str().unwrap().trim()).collect();
    let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(&joined.join(" ")), words(&speech_ref), "segments vs text: {sp}");

    assert_eq!(page["console_errors"], serde_json::json!([]), "the page logged errors: {}", show());
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG");
}

fn served_model<'a>(models: &'a Value, id: &str) -> &'a Value {
    models.as_array().and_then(|a| a.iter().find(|m| m["id"] == id)).unwrap_or_else(|| panic!("no {id}: {models}"))
}
