//! End to end: `suite serve` answering OpenAI's chat and completion APIs for a tiny random Llama made by
//! `tests/py/tiny_lm.py`, served as a model folder (`--model DIR=ID`) and as a run whose `best/` holds it
//! (`--run DIR=ID`). OpenAI's own Python client (`tests/py/chat_clients.py`), streaming and not, must get
//! transformers' greedy answer (`tests/py/chat_reference.py`) character for character; while a stream is held
//! open, bad requests get JSON 400s and the server answers the next good request.

mod common;

use std::path::Path;

use common::serve::Server;
use common::*;
use serde_json::{json, Value};

const TINY_LM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/tiny_lm.py");
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/chat_reference.py");
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/chat_clients.py");

/// A copy of the files of `from` in `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn openais_client_gets_transformers_greedy_answers_and_bad_requests_do_not_stop_the_server() {
    let dir = tmp();
    let dir = dir.path();
    let model = dir.join("tiny-llama");
    python_file(TINY_LM, &[s(&model), "--arch", "llama", "--seed", "0"]);
    // A run folder whose best model is the same Llama (what an SFT run leaves).
    copy_dir(&model, &dir.join("sft-run/best"));

    let messages = json!([{"role": "system", "content": "Love is patient."},
                          {"role": "user", "content": "Tell me about the fox."}]);
    let prompt = "The quick brown fox";
    let (chat_max, completion_max) = (24, 12);
    let cases =
        json!([{"messages": messages, "max_tokens": chat_max}, {"prompt": prompt, "max_tokens": completion_max}]);
    let reference: Vec<Value> =
        serde_json::from_str(python_file(REFERENCE, &[s(&model), &cases.to_string()]).trim()).unwrap();
    let (chat_ref, completion_ref) = (&reference[0], &reference[1]);
    assert!(!chat_ref["text"].as_str().unwrap().is_empty(), "{chat_ref}");

    let server = Server::start(
        dir,
        &[
            "--model",
            &format!("{}=tiny", s(&model)),
            "--run",
            &format!("{}=sft", s(&dir.join("sft-run"))),
            "--max-wait-ms",
            "20",
            "--threads",
            "2",
            "--device",
            "cpu",
        ],
    );
    server.wait_ready();

    let usage = |r: &Value| {
        let (p, c) = (r["prompt_tokens"].as_u64().unwrap(), r["completion_tokens"].as_u64().unwrap());
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    };
    for id in ["tiny", "sft"] {
        let args = json!({"model": id, "messages": messages, "prompt": prompt, "chat_max_tokens": chat_max,
                          "completion_max_tokens": completion_max});
        let out = python_file(CLIENTS, &[&server.base, "answers", &args.to_string()]);
        let got: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{}", server.log()));
        let chat = &got["chat"];
        assert_eq!(chat["text"], chat_ref["text"], "{id}: {got}");
        assert_eq!((&chat["role"], &chat["object"]), (&json!("assistant"), &json!("chat.completion")));
        assert_eq!(chat["finish_reason"], chat_ref["finish_reason"], "{got}");
        assert_eq!(chat["usage"]["prompt_tokens"], chat_ref["prompt_tokens"], "{got}");
        assert_eq!(chat["usage"]["completion_tokens"], chat_ref["completion_tokens"], "{got}");
        let stream = &got["chat_stream"];
        assert_eq!(stream["text"], chat_ref["text"], "{id} streamed: {got}");
        assert_eq!(stream["roles"], json!(["assistant"]), "{got}");
        assert_eq!(stream["finish_reason"], chat_ref["finish_reason"], "{got}");
        assert_eq!(stream["usage"], usage(chat_ref), "{got}");
        assert!(stream["chunks"].as_u64().unwrap() >= 3, "{got}");
        assert_eq!(got["completion"]["text"], completion_ref["text"], "{id}: {got}");
        assert_eq!(got["completion"]["finish_reason"], completion_ref["finish_reason"], "{got}");
        assert_eq!(got["completion"]["usage"], usage(completion_ref), "{got}");
        assert_eq!(got["completion_stream"]["text"], completion_ref["text"], "{id} streamed: {got}");
        assert_eq!(got["completion_stream"]["finish_reason"], completion_ref["finish_reason"], "{got}");
        let listed = got["models"]["data"].as_array().unwrap().iter().find(|m| m["id"] == id).cloned();
        let listed = listed.unwrap_or_else(|| panic!("{id} not in {}", got["models"]));
        assert_eq!((&listed["domain"], &listed["task"]), (&json!("text"), &json!("text-generation")), "{listed}");
    }

    // A stream held open while bad requests come: each a JSON 400/404 naming its field, then a good answer, then
    // the stream's own text.
    let args = json!({"model": "tiny", "messages": messages, "chat_max_tokens": chat_max});
    let out = python_file(CLIENTS, &[&server.base, "inflight", &args.to_string()]);
    let got: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{}", server.log()));
    let expected = [("n=2", 400, Some("n")), ("no role", 400, Some("messages[0].role")), ("unknown model", 404, None)];
    for (row, (case, status, param)) in got["bad"].as_array().unwrap().iter().zip(expected) {
        assert_eq!((row["case"].as_str(), row["status"].as_u64()), (Some(case), Some(status)), "{row}");
        assert!(row["content_type"].as_str().unwrap().starts_with("application/json"), "{row}");
        assert!(row["body"]["error"]["message"].is_string(), "{row}");
        if let Some(p) = param {
            assert_eq!(row["body"]["error"]["param"], p, "{row}");
        }
    }
    assert_eq!(got["openai_bad"], json!({"status": 400, "param": "presence_penalty"}), "{got}");
    assert_eq!(got["good_text"], chat_ref["text"], "{got}");
    assert_eq!(got["stream_text"], chat_ref["text"], "{got}\n{}", server.log());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
