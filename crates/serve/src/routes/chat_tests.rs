//! The chat and completion routes over a real language model, driven without a socket: a tiny random Llama with a
//! byte-level BPE tokenizer and a ChatML template (`tests/py/tiny_lm.py`), whose greedy answers must equal
//! transformers' `generate` on the same folder (`tests/py/chat_reference.py`) token for token — in one piece, as
//! a stream, and batched with other requests; bad requests get a JSON 400 naming the field, and a client that
//! goes away mid-stream does not break its batch.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::app;
use crate::config::Domain;
use crate::engines::ChatEngine;
use crate::metrics::Metrics;
use crate::state::{AppState, Handle, Served};
use crate::worker::{self, BatchConfig};

const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");
const REFERENCE: &str = include_str!("../../../../tests/py/chat_reference.py");

/// The served id of the tiny model, and of its copy without a chat template.
const MODEL: &str = "tiny";
const PLAIN: &str = "plain";

/// The requests compared with transformers: chat conversations and raw prompts, with token budgets that let some
/// end at the end-of-turn token and others run out.
fn cases() -> Vec<Value> {
    vec![
        json!({"messages": [{"role": "system", "content": "Love is patient."},
                            {"role": "user", "content": "Tell me about the fox."}], "max_tokens": 24}),
        json!({"messages": [{"role": "user", "content": "What is your name?"}], "max_tokens": 24}),
        json!({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 30}),
        json!({"prompt": "The quick brown fox", "max_tokens": 12}),
        json!({"prompt": "To be or not", "max_tokens": 20}),
        json!({"prompt": "Computers are useless.", "max_tokens": 12}),
    ]
}

/// The model folders and transformers' answers to [`cases`], made once per test run.
struct Fixture {
    _dir: tempfile::TempDir,
    model: PathBuf,
    plain: PathBuf,
    reference: Vec<Value>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny");
        suite_core::python::run_python(TINY_LM, &[model.to_str().unwrap(), "--arch", "llama", "--seed", "0"])
            .expect("tests/py/tiny_lm.py (scripts/setup.sh installs transformers and tokenizers)");
        // The same model without a chat template: completions work, chat is a 400.
        let plain = dir.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        for entry in std::fs::read_dir(&model).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, plain.join(path.file_name().unwrap())).unwrap();
        }
        let config_path = plain.join("tokenizer_config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("chat_template");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let cases = Value::Array(cases()).to_string();
        let out = suite_core::python::run_python(REFERENCE, &[model.to_str().unwrap(), &cases]).unwrap();
        let reference: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
        Fixture { _dir: dir, model, plain, reference }
    })
}

/// A state serving the tiny model and its template-less copy on inference threads of their own.
async fn state(max_batch: usize) -> Arc<AppState> {
    let f = fixture();
    let metrics = Arc::new(Metrics::new());
    let config = BatchConfig { max_batch, max_wait: Duration::from_millis(50), max_queue: 64 };
    let mut served = Vec::new();
    for (id, dir) in [(MODEL, &f.model), (PLAIN, &f.plain)] {
        let dir: PathBuf = dir.clone();
        let started =
            worker::spawn(id, config, metrics.clone(), move || ChatEngine::load(&dir, tch::Device::Cpu, false))
                .unwrap();
        let info = started.loaded.await.unwrap().unwrap_or_else(|e| panic!("loading {id}: {e}"));
        served.push(Served {
            id: id.into(),
            domain: Domain::Text,
            info: info.into(),
            handle: Handle::Chat(started.queue),
        });
    }
    Arc::new(AppState::new(served, metrics, None, 1 << 20, 1))
}

fn post(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

async fn call(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, String, String) {
    let res = app(state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

/// The route and body of case `case`, greedy, streamed or not.
fn request(model: &str, case: &Value, stream: bool) -> (&'static str, Value) {
    let mut body = json!({"model": model, "temperature": 0, "max_tokens": case["max_tokens"], "stream": stream});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(m) = case.get("messages") {
        body["messages"] = m.clone();
        ("/v1/chat/completions", body)
    } else {
        body["prompt"] = case["prompt"].clone();
        ("/v1/completions", body)
    }
}

/// The `data:` payloads of a server-sent event stream (keep-alive comments skipped).
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .flat_map(|event| event.lines().filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))))
        .map(str::to_string)
        .collect()
}

/// A streamed answer: the concatenated text, the finish reason, the usage, checked for OpenAI's chunk shapes.
#[track_caller]
fn read_stream(chat: bool, body: &str) -> (String, String, Value) {
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let object = if chat { "chat.completion.chunk" } else { "text_completion" };
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with(if chat { "chatcmpl-" } else { "cmpl-" }), "{id}");
    for c in &chunks {
        assert_eq!((c["object"].as_str(), c["id"].as_str()), (Some(object), Some(id)), "{c}");
    }
    if chat {
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "the first chunk names the role");
    }
    // The last chunk has no choice and the usage; the one before it the finish reason.
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]), "{usage}");
    let (finish, deltas) = rest.split_last().unwrap();
    let mut text = String::new();
    for c in deltas {
        let choice = &c["choices"][0];
        assert!(choice["finish_reason"].is_null() && c["usage"].is_null(), "{c}");
        text.push_str(if chat {
            choice["delta"]["content"].as_str().unwrap()
        } else {
            choice["text"].as_str().unwrap()
        });
    }
    let reason = finish["choices"][0]["finish_reason"].as_str().unwrap().to_string();
    (text, reason, usage["usage"].clone())
}

/// Asserts an answer equals transformers' for `case`: text, finish reason and token counts.
#[track_caller]
fn assert_reference(what: &str, reference: &Value, text: &str, reason: &str, usage: &Value) {
    assert_eq!(text, reference["text"].as_str().unwrap(), "{what}: text");
    assert_eq!(reason, reference["finish_reason"].as_str().unwrap(), "{what}: finish_reason");
    let (p, c) = (reference["prompt_tokens"].as_u64().unwrap(), reference["completion_tokens"].as_u64().unwrap());
    assert_eq!(usage, &json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}), "{what}: usage");
}

/// The text, finish reason and usage of a non-streamed answer.
#[track_caller]
fn read_whole(chat: bool, body: &str) -> (String, String, Value) {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["object"], if chat { "chat.completion" } else { "text_completion" }, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with(if chat { "chatcmpl-" } else { "cmpl-" }), "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1, "{v}");
    let c = &choices[0];
    let text = if chat {
        assert_eq!(c["message"]["role"], "assistant");
        c["message"]["content"].as_str().unwrap()
    } else {
        c["text"].as_str().unwrap()
    };
    (text.to_string(), c["finish_reason"].as_str().unwrap().to_string(), v["usage"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_equal_transformers_generate_whole_streamed_and_batched() {
    let f = fixture();
    // Both finish reasons are covered, and no answer is empty.
    let reasons: Vec<&str> = f.reference.iter().map(|r| r["finish_reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"stop") && reasons.contains(&"length"), "{reasons:?}");
    assert!(f.reference.iter().all(|r| !r["text"].as_str().unwrap().is_empty()), "{:?}", f.reference);
    let state = state(1).await;
    for (i, (case, reference)) in cases().iter().zip(&f.reference).enumerate() {
        let chat = case.get("messages").is_some();
        let (uri, body) = request(MODEL, case, false);
        let (s, ctype, out) = call(&state, post(uri, &body)).await;
        assert_eq!(s, StatusCode::OK, "case {i}: {out}");
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let (text, reason, usage) = read_whole(chat, &out);
        assert_reference(&format!("case {i}"), reference, &text, &reason, &usage);

        let (uri, body) = request(MODEL, case, true);
        let (s, ctype, out) = call(&state, post(uri, &body)).await;
        assert_eq!(s, StatusCode::OK, "case {i} streamed: {out}");
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        let (text, reason, usage) = read_stream(chat, &out);
        assert_reference(&format!("case {i} streamed"), reference, &text, &reason, &usage);
    }

    // All at once, streamed and not, on a batcher that takes them together: left padding changes nothing.
    let state = self::state(16).await;
    let calls = cases().into_iter().flat_map(|case| [false, true].map(|stream| (case.clone(), stream))).map(
        |(case, stream)| {
            let state = state.clone();
            tokio::spawn(async move {
                let (uri, body) = request(MODEL, &case, stream);
                (case.get("messages").is_some(), stream, call(&state, post(uri, &body)).await)
            })
        },
    );
    let calls: Vec<_> = calls.collect();
    for (k, c) in calls.into_iter().enumerate() {
        let (chat, stream, (s, _, out)) = c.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{out}");
        let (text, reason, usage) = if stream { read_stream(chat, &out) } else { read_whole(chat, &out) };
        assert_reference(&format!("batched call {k}"), &f.reference[k / 2], &text, &reason, &usage);
    }
    let metrics = state.metrics.render();
    let batched = metrics
        .lines()
        .find_map(|l| l.strip_prefix("suite_batch_size_bucket{model=\"tiny\",le=\"1\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(batched < 10, "no request shared a batch ({batched} batches of 1):\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_several_prompts_and_seeded_sampling() {
    let f = fixture();
    let state = state(8).await;
    // A stop string from inside transformers' answer cuts the text where it starts (OpenAI's rule).
    let reference = f.reference[4]["text"].as_str().unwrap();
    let stop: String = reference.chars().skip(3).take(2).collect();
    let cut = &reference[..reference.find(&stop).unwrap()];
    for stream in [false, true] {
        let body = json!({"model": MODEL, "prompt": "To be or not", "max_tokens": 20, "temperature": 0,
                          "stop": [stop.as_str()], "stream": stream});
        let (s, _, out) = call(&state, post("/v1/completions", &body)).await;
        assert_eq!(s, StatusCode::OK, "{out}");
        let (text, reason) = if stream {
            let data = sse_data(&out);
            let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
            let text: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
            (text, chunks.last().unwrap()["choices"][0]["finish_reason"].clone())
        } else {
            let v: Value = serde_json::from_str(&out).unwrap();
            (v["choices"][0]["text"].as_str().unwrap().to_string(), v["choices"][0]["finish_reason"].clone())
        };
        assert_eq!((text.as_str(), reason), (cut, json!("stop")), "stop {stop:?}, stream {stream}");
    }

    // A list of prompts: one choice each, in order, each as it is alone.
    let body = json!({"model": MODEL, "prompt": [&f.reference[3]["prompt"], &f.reference[5]["prompt"]],
                      "max_tokens": 12, "temperature": 0});
    let (s, _, out) = call(&state, post("/v1/completions", &body)).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut usage = (0, 0);
    for (k, r) in [&f.reference[3], &f.reference[5]].into_iter().enumerate() {
        let choice = &v["choices"][k];
        assert_eq!(
            (&choice["index"], &choice["text"], &choice["finish_reason"]),
            (&json!(k), &r["text"], &r["finish_reason"]),
            "{v}"
        );
        usage.0 += r["prompt_tokens"].as_u64().unwrap();
        usage.1 += r["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1})
    );

    // Sampling: the same seed gives the same text, streamed or not; other seeds other texts.
    let sample = |seed: u64, stream: bool| {
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "temperature": 1.0,
               "top_p": 0.9, "max_tokens": 20, "seed": seed, "stream": stream})
    };
    let mut texts = Vec::new();
    for seed in [7, 7, 8, 9, 10] {
        let (s, _, out) = call(&state, post("/v1/chat/completions", &sample(seed, false))).await;
        assert_eq!(s, StatusCode::OK, "{out}");
        texts.push(read_whole(true, &out).0);
    }
    let (_, _, out) = call(&state, post("/v1/chat/completions", &sample(7, true))).await;
    let streamed: String = sse_data(&out)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(texts[0], texts[1], "seed 7 twice");
    assert_eq!(texts[0], streamed, "seed 7 streamed");
    assert!(texts[2..].iter().any(|t| *t != texts[0]), "seeds 7…10 all gave {:?}", texts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_json_errors_naming_the_field_and_the_server_goes_on() {
    let f = fixture();
    let state = state(4).await;
    let hello = json!([{"role": "user", "content": "Hello!"}]);
    let long = "Hello! How are you today? ".repeat(40);
    let bad: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        ("/v1/chat/completions", json!({"model": MODEL}), StatusCode::BAD_REQUEST, "messages", "no `messages`"),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"content": "hi"}]}),
            StatusCode::BAD_REQUEST,
            "messages[0].role",
            "no `role`",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "bot", "content": "hi"}]}),
            StatusCode::BAD_REQUEST,
            "messages[0].role",
            "\"bot\"",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": hello, "n": 2}),
            StatusCode::BAD_REQUEST,
            "n",
            "n = 1",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": hello, "presence_penalty": 1}),
            StatusCode::BAD_REQUEST,
            "presence_penalty",
            "presence_penalty = 1",
        ),
        (
            "/v1/chat/completions",
            json!({"model": PLAIN, "messages": hello}),
            StatusCode::BAD_REQUEST,
            "messages",
            "template",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": long}]}),
            StatusCode::BAD_REQUEST,
            "messages",
            "context is 128 tokens",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": long}], "stream": true}),
            StatusCode::BAD_REQUEST,
            "messages",
            "context is 128 tokens",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": hello, "max_tokens": 500}),
            StatusCode::BAD_REQUEST,
            "max_tokens",
            "max_tokens = 500",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": ["fine", long], "stream": true}),
            StatusCode::BAD_REQUEST,
            "prompt[1]",
            "context is 128 tokens",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "echo": true}),
            StatusCode::BAD_REQUEST,
            "echo",
            "not served",
        ),
        ("/v1/chat/completions", json!({"model": "ghost", "messages": hello}), StatusCode::NOT_FOUND, "", "ghost"),
    ];
    for (uri, body, status, param, needle) in bad {
        let (s, ctype, out) = call(&state, post(uri, &body)).await;
        assert_eq!(s, status, "{body}: {out}");
        assert!(ctype.starts_with("application/json"), "{body}: {ctype}: {out}");
        let e: Value = serde_json::from_str(&out).unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message:?} does not contain {needle:?}");
        if !param.is_empty() {
            assert_eq!(e["error"]["param"], param, "{body}: {out}");
        }
    }
    let not_json = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"model\": "))
        .unwrap();
    let (s, _, out) = call(&state, not_json).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    let form = Request::post("/v1/completions").body(Body::from("model=tiny&prompt=x")).unwrap();
    assert_eq!(call(&state, form).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The server goes on: the template-less model still completes, the other still chats.
    let (s, _, out) = call(
        &state,
        post(
            "/v1/completions",
            &json!({"model": PLAIN, "prompt": "The quick brown fox",
                                                                   "max_tokens": 12, "temperature": 0}),
        ),
    )
    .await;
    assert_eq!((s, read_whole(false, &out).0.as_str()), (StatusCode::OK, f.reference[3]["text"].as_str().unwrap()));
    let (uri, body) = request(MODEL, &cases()[0], false);
    let (s, _, out) = call(&state, post(uri, &body)).await;
    assert_eq!((s, read_whole(true, &out).0.as_str()), (StatusCode::OK, f.reference[0]["text"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_does_not_break_its_batch() {
    let f = fixture();
    let state = state(8).await;
    // Two streams and a whole answer in one batch; the first stream is dropped after its first chunk.
    let (uri, body) = request(MODEL, &cases()[4], true);
    let leaving = {
        let state = state.clone();
        tokio::spawn(async move {
            let res = app(state).oneshot(post(uri, &body)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let mut body = res.into_body();
            let first = body.frame().await.unwrap().unwrap();
            assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
            // Dropped here, mid-stream.
        })
    };
    let staying: Vec<_> = [(3, true), (5, false)]
        .into_iter()
        .map(|(k, stream)| {
            let state = state.clone();
            tokio::spawn(async move {
                let (uri, body) = request(MODEL, &cases()[k], stream);
                (k, stream, call(&state, post(uri, &body)).await)
            })
        })
        .collect();
    leaving.await.unwrap();
    for t in staying {
        let (k, stream, (s, _, out)) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{out}");
        let (text, reason, usage) = if stream { read_stream(false, &out) } else { read_whole(false, &out) };
        assert_reference(&format!("case {k} beside a client that left"), &f.reference[k], &text, &reason, &usage);
    }
    // And the model serves the next request.
    let (uri, body) = request(MODEL, &cases()[4], false);
    let (s, _, out) = call(&state, post(uri, &body)).await;
    assert_eq!((s, read_whole(false, &out).0.as_str()), (StatusCode::OK, f.reference[4]["text"].as_str().unwrap()));
}
