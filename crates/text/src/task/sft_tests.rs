//! SFT tests: the data readers and their errors, the loss mask of a chat example, the loss against transformers'
//! `model(input_ids, labels=...)` on the tiny random Llama of `tests/py/tiny_lm.py`, packed against unpacked
//! loss, and ROUGE-L against Google's `rouge-score`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use suite_core::data::Dataset;
use suite_core::python::run_python;
use tch::{Device, Reduction};

use super::sft::causal_lm_loss;
use crate::chat::ChatMessage;
use crate::data::{build_rows, read_sft, SftContent, SftDataset, SftExample, SftTokenizer, SftTokens};
use crate::metrics::rouge_l;
use crate::models::load_causal_lm;

const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");

/// A tiny random Llama folder (2 layers, hidden 32, ChatML template), made once per test process.
fn tiny_llama() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("llama");
        run_python(TINY_LM, &[out.to_str().unwrap(), "--arch", "llama", "--seed", "3"]).expect("tiny_lm.py");
        (dir, out)
    })
    .1
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn example(content: SftContent) -> SftExample {
    SftExample { content, file: PathBuf::from("mem.jsonl"), line: 1 }
}

#[test]
fn reads_each_format_and_text_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let chat = write(
        dir.path(),
        "chat.jsonl",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"},\
         {\"role\":\"assistant\",\"content\":\"A\"}]}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"Q2\"},\
         {\"role\":\"assistant\",\"content\":\"A2\",\"name\":\"bot\"}]}\n",
    );
    let ex = read_sft(&chat).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[1].line, 3);
    let SftContent::Chat(m) = &ex[1].content else { panic!("{:?}", ex[1]) };
    assert_eq!(m[1].role, "assistant");
    assert_eq!(m[1].extra.get("name").and_then(|v| v.as_str()), Some("bot"));

    let pc = write(dir.path(), "pc.jsonl", "{\"prompt\":\"2+2=\",\"completion\":\" 4\"}\n");
    assert_eq!(
        read_sft(&pc).unwrap()[0].content,
        SftContent::Completion { prompt: "2+2=".into(), completion: " 4".into() }
    );
    let alpaca = write(
        dir.path(),
        "a.jsonl",
        "{\"instruction\":\"Add\",\"input\":\"2 2\",\"output\":\"4\"}\n{\"instruction\":\"Hi\",\"output\":\"Hello\"}\n",
    );
    let ex = read_sft(&alpaca).unwrap();
    assert_eq!(
        ex[1].content,
        SftContent::Alpaca { instruction: "Hi".into(), input: String::new(), output: "Hello".into() }
    );
    let text = write(dir.path(), "t.jsonl", "{\"text\":\"hello world\"}\n");
    assert_eq!(read_sft(&text).unwrap()[0].content, SftContent::Text("hello world".into()));

    let txt = write(dir.path(), "docs.txt", "first line\nsecond line\n\n\n  \nthird\r\n");
    let ex = read_sft(&txt).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].line, ex[1].line), (1, 6));
    assert_eq!(ex[0].content, SftContent::Text("first line\nsecond line".into()));
    assert_eq!(ex[1].content, SftContent::Text("third".into()));
}

#[test]
fn bad_lines_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}";
    let cases: [(&str, &[&str]); 9] = [
        ("{\"messages\":[{\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}", &["messages[0]", "role"]),
        (
            "{\"messages\":[{\"role\":\"robot\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}",
            &["messages[0].role", "\"robot\"", "unknown role"],
        ),
        ("{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"}]}", &["messages", "no assistant turn"]),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\" \"}]}",
            &["messages[1].content", "empty"],
        ),
        ("{\"prompt\":\"Q\",\"completion\":\"\"}", &["completion", "empty"]),
        ("{\"prompt\":\"Q\"}", &["completion", "missing"]),
        ("{\"messages\": [", &["invalid JSON"]),
        ("{\"text\":\"plain\"}", &["plain text", "chat", "line 1", "one format per file"]),
        ("{\"foo\":1}", &["unknown example shape", "foo"]),
    ];
    for (i, (line, needles)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.jsonl"), &format!("{ok}\n{line}\n"));
        let err = format!("{:#}", read_sft(&path).unwrap_err());
        assert!(err.contains(&format!("{}:2", path.display())), "case {i}: no file:line in {err}");
        for n in *needles {
            assert!(err.contains(n), "case {i}: {n:?} not in {err}");
        }
    }
    let empty = write(dir.path(), "empty.jsonl", "\n\n");
    assert!(format!("{:#}", read_sft(&empty).unwrap_err()).contains("no examples"));
    let csv = write(dir.path(), "x.csv", "a,b\n");
    assert!(format!("{:#}", read_sft(&csv).unwrap_err()).contains(".jsonl"));
}

fn tokenizer(max_len: usize) -> SftTokenizer {
    SftTokenizer::from_dir(tiny_llama(), &[], None, max_len).unwrap()
}

fn decode(tok: &SftTokenizer, ids: &[i64]) -> String {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    tok.tokenizer().decode(&ids, false).unwrap()
}

/// The labelled tokens, as runs of consecutive positions, decoded.
fn labelled_runs(tok: &SftTokenizer, t: &SftTokens) -> Vec<String> {
    let mut runs: Vec<Vec<i64>> = Vec::new();
    let mut prev = false;
    for &l in &t.labels {
        let on = l != -100;
        if on && !prev {
            runs.push(Vec::new());
        }
        if on {
            runs.last_mut().unwrap().push(l);
        }
        prev = on;
    }
    runs.iter().map(|r| decode(tok, r)).collect()
}

fn chat_example() -> SftExample {
    example(SftContent::Chat(vec![
        ChatMessage::new("system", "You are terse."),
        ChatMessage::new("user", "Hello! How are you today?"),
        ChatMessage::new("assistant", "I am fine, thank you."),
        ChatMessage::new("user", "What is your name?"),
        ChatMessage::new("assistant", "The quick brown fox 🙂."),
    ]))
}

#[test]
fn chat_labels_are_the_assistant_turns_and_their_end_of_turn_token() {
    let tok = tokenizer(128);
    let t = tok.encode(&chat_example()).unwrap();
    assert_eq!(labelled_runs(&tok, &t), ["I am fine, thank you.<|im_end|>", "The quick brown fox 🙂.<|im_end|>"]);
    // The ids are those of the whole rendered conversation, as apply_chat_template(tokenize=True) gives them.
    let messages = match &chat_example().content {
        SftContent::Chat(m) => serde_json::to_string(m).unwrap(),
        _ => unreachable!(),
    };
    let py = run_python(
        "import sys, json\nfrom transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained(sys.argv[1])\n\
         print(json.dumps(list(t.apply_chat_template(json.loads(sys.argv[2]), tokenize=True, return_dict=True)['input_ids'])))",
        &[tiny_llama().to_str().unwrap(), &messages],
    )
    .unwrap();
    let want: Vec<i64> = serde_json::from_str(py.trim()).unwrap();
    assert_eq!(t.ids, want);

    // Completion and Alpaca examples go through the template as a user and an assistant turn.
    let pc = tok.encode(&example(SftContent::Completion { prompt: "2+2=".into(), completion: "4".into() })).unwrap();
    assert_eq!(labelled_runs(&tok, &pc), ["4<|im_end|>"]);
    // Plain text learns every token after the first, then eos.
    let text = tok.encode(&example(SftContent::Text("To be or not to be".into()))).unwrap();
    assert_eq!(text.label_count(), text.ids.len() - 1);
    assert_eq!(decode(&tok, &text.ids), "To be or not to be<|im_end|>");
}

#[test]
fn without_a_template_completions_are_plain_text_then_eos() {
    let with = tokenizer(128);
    let eos = with.eos_id();
    let tok = SftTokenizer::new(with.tokenizer().clone(), None, &[eos], None, 128).unwrap();
    let ex =
        example(SftContent::Alpaca { instruction: "Say hello".into(), input: String::new(), output: "Hello!".into() });
    let t = tok.encode(&ex).unwrap();
    assert_eq!(labelled_runs(&tok, &t), ["Hello!<|im_end|>"]);
    assert_eq!(decode(&tok, &t.ids), format!("{}Hello!<|im_end|>", crate::data::alpaca_prompt("Say hello", "")));
    let prompt = tok.prompt(&ex).unwrap().unwrap();
    assert_eq!(decode(&tok, &prompt.ids), crate::data::alpaca_prompt("Say hello", ""));
    assert_eq!(prompt.reference, "Hello!");
    // A chat example needs a template.
    let err = format!("{:#}", tok.encode(&chat_example()).unwrap_err());
    assert!(err.contains("mem.jsonl:1") && err.contains("chat_template"), "{err}");
}

#[test]
fn a_template_that_refuses_the_conversation_names_the_config_and_the_line() {
    let with = tokenizer(128);
    let source = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}\
                  {% endif %}{{ m['content'] }}{% endfor %}";
    let origin = tiny_llama().join("tokenizer_config.json");
    let template = crate::chat::ChatTemplate::new(source, Vec::new(), &origin.display().to_string()).unwrap();
    let tok = SftTokenizer::new(with.tokenizer().clone(), Some(template), &[with.eos_id()], None, 128).unwrap();
    let err = format!("{:#}", tok.encode(&chat_example()).unwrap_err());
    assert!(
        err.contains("mem.jsonl:1") && err.contains("tokenizer_config.json") && err.contains("no system role"),
        "{err}"
    );
}

#[test]
fn truncation_is_counted_and_a_prompt_filling_the_context_is_an_error() {
    let tok = tokenizer(12);
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(4);
    let t = tok.encode(&example(SftContent::Text(long))).unwrap();
    assert_eq!(t.ids.len(), 12);
    assert!(t.dropped > 0);
    let (_, stats) = build_rows(&[t.clone(), t], 12, true);
    assert_eq!(stats.truncated, 2);
    let prompt = SftExample {
        content: SftContent::Completion { prompt: "A journey of a thousand miles ".repeat(3), completion: "ok".into() },
        file: PathBuf::from("data.jsonl"),
        line: 7,
    };
    let err = format!("{:#}", tok.encode(&prompt).unwrap_err());
    assert!(err.contains("data.jsonl:7") && err.contains("max_len = 12"), "{err}");
}

fn examples() -> Vec<SftExample> {
    let mut out = vec![chat_example()];
    out.push(example(SftContent::Completion { prompt: "Computers are".into(), completion: " useless.".into() }));
    out.push(example(SftContent::Alpaca {
        instruction: "Say hello".into(),
        input: "politely".into(),
        output: "Hello! How are you?".into(),
    }));
    out.push(example(SftContent::Text("All that glitters is not gold; numbers 0 1 2 3.".into())));
    out.push(example(SftContent::Text("Love is patient, love is kind.".into())));
    out
}

fn batch_of(rows: &SftDataset) -> crate::data::SftBatch {
    rows.collate((0..rows.len()).collect()).unwrap()
}

#[test]
fn loss_equals_transformers_and_packing_keeps_it() {
    let tok = tokenizer(128);
    let tokens: Vec<SftTokens> = examples().iter().map(|e| tok.encode(e).unwrap()).collect();
    let (vs, model, _) = load_causal_lm(tiny_llama(), Device::Cpu).unwrap();
    let _keep = vs;
    let pad = tok.eos_id();

    let (rows, _) = build_rows(&tokens, 128, false);
    let padded = Arc::new(SftDataset::new(rows, pad, false));
    let batch = batch_of(&padded);
    let logits = model.forward_layout(&batch.input_ids, &batch.layout(Device::Cpu), None, false);
    let loss = causal_lm_loss(&logits, &batch.labels, Reduction::Mean).double_value(&[]);

    let ids: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&batch.input_ids).unwrap();
    let labels: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&batch.labels).unwrap();
    let py = run_python(
        "import sys, json, torch\nfrom transformers import AutoModelForCausalLM\n\
         m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()\n\
         ids, labels = torch.tensor(json.loads(sys.argv[2])), torch.tensor(json.loads(sys.argv[3]))\n\
         with torch.no_grad():\n    print(m(input_ids=ids, labels=labels).loss.item())",
        &[
            tiny_llama().to_str().unwrap(),
            &serde_json::to_string(&ids).unwrap(),
            &serde_json::to_string(&labels).unwrap(),
        ],
    )
    .unwrap();
    let want: f64 = py.trim().parse().unwrap();
    assert!((loss - want).abs() < 1e-5, "loss {loss} vs transformers {want}");

    // Every example packed into rows of 128 (several per row) gives the same token-weighted loss.
    let (rows, stats) = build_rows(&tokens, 128, true);
    assert!(stats.rows < tokens.len(), "{stats}");
    let packed = Arc::new(SftDataset::new(rows, pad, true));
    let batch = batch_of(&packed);
    let logits = model.forward_layout(&batch.input_ids, &batch.layout(Device::Cpu), None, false);
    let packed_loss = causal_lm_loss(&logits, &batch.labels, Reduction::Mean).double_value(&[]);
    assert!((packed_loss - loss).abs() < 1e-5, "packed {packed_loss} vs unpacked {loss}");
    eprintln!("loss {loss:.7} transformers {want:.7} packed {packed_loss:.7} ({stats})");
}

#[test]
fn rouge_l_equals_rouge_score() {
    let pairs = [
        ("The cat sat on the mat.", "the cat is on the mat"),
        ("A journey of a thousand miles", "a thousand miles journey"),
        ("Numbers 1 2 3, and 42!", "numbers 42 1 2"),
        ("café naïve über", "cafe naive uber"),
        ("", "something"),
        ("identical text here", "Identical TEXT here"),
        ("to be or not to be that is the question", "be not to the question is that"),
    ];
    let json = serde_json::to_string(&pairs).unwrap();
    let py = run_python(
        "import sys, json\nfrom rouge_score import rouge_scorer\ns = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=False)\n\
         print(json.dumps([list(s.score(t, p)['rougeL']) for t, p in json.loads(sys.argv[1])]))",
        &[&json],
    )
    .unwrap();
    let want: Vec<[f64; 3]> = serde_json::from_str(py.trim()).unwrap();
    for ((t, p), w) in pairs.iter().zip(&want) {
        let (pr, re, f) = rouge_l(t, p);
        for (a, b) in [pr, re, f].iter().zip(w) {
            assert!((a - b).abs() < 1e-9, "{t:?} / {p:?}: {:?} vs {w:?}", (pr, re, f));
        }
    }
}
