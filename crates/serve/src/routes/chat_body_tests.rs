//! Reading the chat and completion bodies: OpenAI's defaults, the shapes its clients send, and a 400 naming the
//! field for everything else.

use serde_json::{json, Value};

use super::*;

/// The `param` and message of a refused body.
#[track_caller]
fn refused(r: Result<impl std::fmt::Debug, AppError>) -> (String, String) {
    match r {
        Err(AppError::BadRequest { message, param }) => (param.unwrap_or_default(), message),
        other => panic!("expected a 400, got {other:?}"),
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[test]
fn defaults_are_openais() {
    let c = parse_chat(chat(json!({}))).unwrap();
    assert_eq!(c.fields.model, "m");
    assert_eq!(c.fields.sampling, SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0 });
    assert_eq!(
        (c.fields.seed, c.fields.max_tokens, c.fields.stream, c.fields.include_usage),
        (None, None, false, false)
    );
    assert_eq!(c.messages, vec![ChatMessage::new("user", "hi")]);
    // Completions default to 16 new tokens.
    let p = parse_completion(json!({"model": "m", "prompt": "x"})).unwrap();
    assert_eq!(p.fields.max_tokens, Some((16, "max_tokens")));
    assert_eq!(p.prompts, vec!["x".to_string()]);
}

#[test]
fn every_field_openais_clients_send_is_read() {
    let c = parse_chat(chat(json!({
        "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 7, "stop": ["\n", "END"], "seed": -1,
        "n": 1, "stream": true, "stream_options": {"include_usage": true}, "frequency_penalty": 0,
        "presence_penalty": 0.0, "repetition_penalty": 1.3, "top_k": 40, "user": "u1", "logprobs": false,
        "tools": null, "response_format": {"type": "text"}
    })))
    .unwrap();
    let f = &c.fields;
    assert_eq!(f.sampling, SamplingParams { temperature: 0.5, top_k: 40, top_p: 0.9, repetition_penalty: 1.3 });
    assert_eq!(f.max_tokens, Some((7, "max_completion_tokens")));
    assert_eq!(f.stop, vec!["\n".to_string(), "END".to_string()]);
    assert_eq!(f.seed, Some(u64::MAX));
    assert!(f.stream && f.include_usage);
    // A list of text parts is joined by newlines; developer is system; other message fields reach the template.
    let c = parse_chat(json!({"model": "m", "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "q", "name": "ann"},
        {"role": "assistant", "content": null},
    ]}))
    .unwrap();
    assert_eq!((c.messages[0].role.as_str(), c.messages[0].content.as_str()), ("system", "a\nb"));
    assert_eq!(c.messages[1].extra.get("name"), Some(&json!("ann")));
    assert_eq!(c.messages[2].content, "");
    let p = parse_completion(json!({"model": "m", "prompt": ["a", "b"], "max_tokens": 3, "echo": false})).unwrap();
    assert_eq!((p.prompts.len(), p.fields.max_tokens), (2, Some((3, "max_tokens"))));
}

#[test]
fn bad_fields_are_400s_naming_them() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"messages": [{"role": "user", "content": "hi"}]}), "model", "no `model`"),
        (json!({"model": "m"}), "messages", "no `messages`"),
        (chat(json!({"messages": []})), "messages", "empty list"),
        (chat(json!({"messages": "hi"})), "messages", "expected a list"),
        (chat(json!({"messages": [{"content": "hi"}]})), "messages[0].role", "no `role`"),
        (
            chat(json!({"messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}]})),
            "messages[1].role",
            "\"wizard\"",
        ),
        (chat(json!({"messages": [{"role": "user"}]})), "messages[0].content", "no `content`"),
        (
            chat(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})),
            "messages[0].content[0]",
            "\"image_url\"",
        ),
        (chat(json!({"temperature": 3})), "temperature", "0..2"),
        (chat(json!({"temperature": "hot"})), "temperature", "\"hot\""),
        (chat(json!({"top_p": 0})), "top_p", "(0, 1]"),
        (chat(json!({"n": 2})), "n", "n = 1"),
        (chat(json!({"frequency_penalty": 0.5})), "frequency_penalty", "0.5"),
        (chat(json!({"presence_penalty": -1})), "presence_penalty", "-1"),
        (chat(json!({"repetition_penalty": 0})), "repetition_penalty", "> 0"),
        (chat(json!({"max_tokens": 0})), "max_tokens", "≥ 1"),
        (chat(json!({"max_tokens": 5, "max_completion_tokens": 6})), "max_tokens", "one of them"),
        (chat(json!({"stop": 7})), "stop", "a string or a list"),
        (chat(json!({"stop": ["a", 1]})), "stop[1]", "expected a string"),
        (chat(json!({"stop": ""})), "stop", "empty string"),
        (chat(json!({"seed": 1.5})), "seed", "whole number"),
        (chat(json!({"stream": "yes"})), "stream", "true or false"),
        (chat(json!({"stream_options": {"include_usage": true}})), "stream_options", "stream = true"),
        (chat(json!({"logprobs": true})), "logprobs", "not served"),
        (chat(json!({"tools": [{"type": "function"}]})), "tools", "not served"),
        (chat(json!({"response_format": {"type": "json_object"}})), "response_format", "JSON mode"),
        (chat(json!({"temprature": 0})), "temprature", "unrecognised"),
        (json!(["not", "an", "object"]), "body", "JSON object"),
    ];
    for (body, param, needle) in cases {
        let (p, message) = refused(parse_chat(body.clone()));
        assert_eq!(p, param, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message:?} does not contain {needle:?}");
    }
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"model": "m"}), "prompt", "no `prompt`"),
        (json!({"model": "m", "prompt": []}), "prompt", "empty list"),
        (json!({"model": "m", "prompt": [1, 2, 3]}), "prompt[0]", "token ids"),
        (json!({"model": "m", "prompt": 5}), "prompt", "a string or a list"),
        (json!({"model": "m", "prompt": "x", "echo": true}), "echo", "not served"),
        (json!({"model": "m", "prompt": "x", "best_of": 3}), "best_of", "best_of = 1"),
        (json!({"model": "m", "prompt": "x", "logprobs": 2}), "logprobs", "not served"),
        (json!({"model": "m", "prompt": "x", "suffix": "y"}), "suffix", "not served"),
    ];
    for (body, param, needle) in cases {
        let (p, message) = refused(parse_completion(body.clone()));
        assert_eq!(p, param, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message:?} does not contain {needle:?}");
    }
}
