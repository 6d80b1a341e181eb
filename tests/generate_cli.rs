//! End to end: `suite generate` and `suite chat` on a tiny random Llama made by `tests/py/tiny_lm.py` (byte-level
//! BPE, ChatML template, eos `<|im_end|>`), against transformers' greedy `generate` on the same folder: a streamed
//! prompt, a batch printed as JSON, a chat-templated prompt, and two chat turns over piped stdin. Bad input
//! (missing folder, negative temperature, prompt over the context) exits 2 with one clear line.

mod common;

use std::path::Path;

use common::{python, python_file, s, suite, suite_with_stdin, tmp};
use serde_json::Value;

const TINY_LM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/tiny_lm.py");

/// transformers' greedy answers (12 new tokens at most, eos from generation_config.json, decoded with
/// `skip_special_tokens=True`): `plain` for the prompts alone; `chat` for each prompt as the user message after a
/// system message; `turns` for a two-turn chat without system message, the first reply put back into the
/// conversation as the assistant's message.
const REFERENCE: &str = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d, prompts, system, turns = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(d).eval()
tok = AutoTokenizer.from_pretrained(d)
def greedy(text):
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=12)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
def chat(messages):
    return greedy(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
conversation, replies = [], []
for t in turns:
    conversation.append({"role": "user", "content": t})
    replies.append(chat(conversation))
    conversation.append({"role": "assistant", "content": replies[-1]})
print(json.dumps({
    "plain": [greedy(p) for p in prompts],
    "chat": [chat([{"role": "system", "content": system}, {"role": "user", "content": p}]) for p in prompts],
    "turns": replies,
}))
"#;

const PROMPTS: [&str; 2] = ["The quick brown fox", "To be or not to be, that is"];
const SYSTEM: &str = "Be brief.";
const TURNS: [&str; 2] = ["Hello! How are you?", "What is your name?"];

fn reference(model: &Path) -> Value {
    let prompts = serde_json::to_string(&PROMPTS).unwrap();
    let turns = serde_json::to_string(&TURNS).unwrap();
    let out = python(REFERENCE, &[s(model), &prompts, SYSTEM, &turns]);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

#[test]
fn generate_and_chat_answer_as_transformers_greedy() {
    let dir = tmp();
    let model = dir.path().join("tiny");
    python_file(TINY_LM, &[s(&model), "--arch", "llama"]);
    let r = reference(&model);
    let flags = ["--model", s(&model), "--device", "cpu", "--max-new-tokens", "12"];

    // One prompt: streamed to stdout, then a newline.
    let out = suite(dir.path(), &[&["generate"], &flags[..], &[PROMPTS[0]]].concat());
    out.assert_ok();
    println!("generate {:?} -> {:?}", PROMPTS[0], out.stdout);
    assert_eq!(out.stdout, format!("{}\n", r["plain"][0].as_str().unwrap()));

    // The same model as a run's best/ folder.
    let best = dir.path().join("run/best");
    std::fs::create_dir_all(&best).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, best.join(path.file_name().unwrap())).unwrap();
    }
    let run_flags = ["--run", "run", "--device", "cpu", "--max-new-tokens", "12", PROMPTS[0]];
    let out = suite(dir.path(), &[&["generate"], &run_flags[..]].concat());
    out.assert_ok();
    assert_eq!(out.stdout, format!("{}\n", r["plain"][0].as_str().unwrap()));

    // Two prompts batched, as JSON lines.
    let out = suite(dir.path(), &[&["generate", "--json"], &flags[..], &PROMPTS[..]].concat());
    out.assert_ok();
    let lines: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["text"], r["plain"][i], "prompt {i}");
        assert_eq!(line["completion_tokens"].as_u64().unwrap() as usize, line["token_ids"].as_array().unwrap().len());
        assert!(["stop", "length"].contains(&line["finish_reason"].as_str().unwrap()));
        assert!(line["prompt_tokens"].as_u64().unwrap() > 0);
    }

    // --chat --system: each prompt as the user's message in the template.
    let out =
        suite(dir.path(), &[&["generate", "--json", "--chat", "--system", SYSTEM], &flags[..], &PROMPTS[..]].concat());
    out.assert_ok();
    for (i, line) in out.stdout.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["text"], r["chat"][i], "chat prompt {i}");
    }

    // Two turns over piped stdin, greedy; end of input ends the session.
    let input = format!("{}\n{}\n", TURNS[0], TURNS[1]);
    let out = suite_with_stdin(dir.path(), &[&["chat", "--temperature", "0"], &flags[..]].concat(), &input);
    out.assert_ok();
    println!("chat -> {:?}", out.stdout);
    let want = format!("{}\n{}\n", r["turns"][0].as_str().unwrap(), r["turns"][1].as_str().unwrap());
    assert_eq!(out.stdout, want);

    // /reset forgets the first turn: the second question is then answered as a first one.
    let input = format!("{}\n/reset\n{}\n/exit\nnot read\n", TURNS[0], TURNS[0]);
    let out = suite_with_stdin(dir.path(), &[&["chat", "--temperature", "0"], &flags[..]].concat(), &input);
    out.assert_ok();
    let first = r["turns"][0].as_str().unwrap();
    assert_eq!(out.stdout, format!("{first}\n{first}\n"));
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    let dir = tmp();
    let model = dir.path().join("tiny");
    python_file(TINY_LM, &[s(&model), "--arch", "llama"]);

    let out = suite(dir.path(), &["generate", "--model", "nowhere", "--device", "cpu", "Hi"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    out.assert_error(&["nowhere: no such model folder"]);

    let out = suite(dir.path(), &["generate", "--model", s(&model), "--temperature", "-1", "Hi"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    out.assert_error(&["--temperature", "≥ 0", "-1"]);

    let long = "The quick brown fox jumps over the lazy dog. ".repeat(30);
    let out = suite(dir.path(), &["generate", "--model", s(&model), "--device", "cpu", &long]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    let e = out.assert_error(&["prompt has", "more than the model's context of 128 tokens"]);
    assert_eq!(e.lines().count(), 1, "{e}");

    let out = suite(dir.path(), &["chat", "--run", s(dir.path()), "--device", "cpu"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    out.assert_error(&["best", "no saved model"]);

    let out = suite(dir.path(), &["generate", "Hi"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("--model"), "{}", out.show());
}
