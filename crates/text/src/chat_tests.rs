//! Chat templates against transformers: the real templates of four model families rendered on several
//! conversations, byte for byte as `render_jinja_template` (what `apply_chat_template(..., tokenize=False)` calls,
//! with the tokenizer's special tokens as keyword arguments) renders them in the reference Python.

use super::*;
use serde_json::json;
use suite_core::python::run_python;

// The `chat_template` strings of the models' `tokenizer_config.json` on the Hugging Face hub, verbatim:
// meta-llama/Llama-3.2-1B-Instruct (Llama 3.2), Qwen/Qwen2.5-0.5B-Instruct, HuggingFaceTB/SmolLM2-360M-Instruct and
// TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr's template).
const LLAMA3_2: &str = r####"{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}"####;

const QWEN2_5: &str = r####"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"####;

const SMOLLM2: &str = r####"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}"####;

const TINYLLAMA: &str = r####"{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"####;

/// A template beyond the four families: Python string methods (pycompat), slicing, `tojson` with and without
/// `indent`, loop controls and whitespace control under `trim_blocks`/`lstrip_blocks`.
const PYCOMPAT: &str = r####"{% for m in messages %}
    {% if m.content.startswith('!') %}
{{ m.role.upper() }}: {{ m.content[1:].strip() }}
    {% elif m.content.endswith('?') %}
{{ m.content.replace('?', '!') | trim }} {{ m.content.split(' ') | length }}
    {% else %}
{{- m['content'].strip().lower() -}}
    {% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
{% endfor %}
{{ messages | tojson }}
{{ messages[0] | tojson(indent=2) }}
{% if add_generation_prompt %}>>{% endif %}"####;

struct Family {
    name: &'static str,
    template: &'static str,
    /// The tokenizer config's special tokens, as the hub files write them.
    special: serde_json::Value,
}

fn families() -> Vec<Family> {
    vec![
        Family {
            name: "llama-3.2",
            template: LLAMA3_2,
            special: json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
        },
        Family {
            name: "qwen2.5",
            template: QWEN2_5,
            special: json!({"bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
        },
        Family {
            name: "smollm2",
            template: SMOLLM2,
            special: json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>"}),
        },
        Family {
            name: "tinyllama",
            template: TINYLLAMA,
            // TinyLlama's config writes them as AddedToken objects.
            special: json!({
                "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
                "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
                "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
                "pad_token": null
            }),
        },
    ]
}

fn conversations() -> Vec<serde_json::Value> {
    vec![
        json!([{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "What is 2+2?"}]),
        json!([{"role": "user", "content": "Hello!"}]),
        json!([
            {"role": "system", "content": "  Answer in French.\n"},
            {"role": "user", "content": "Good morning"},
            {"role": "assistant", "content": "Bonjour !"},
            {"role": "user", "content": "And good night?"}
        ]),
        json!([
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "  Another one, with \"quotes\" and unicode: héllo ☃ 日本\n\n"},
            {"role": "assistant", "content": "Green.\n"}
        ]),
    ]
}

/// transformers' own rendering of each case: `[template, special tokens, messages, add_generation_prompt, kwargs]`.
const REFERENCE: &str = r#"
import json, sys
from transformers.utils.chat_template_utils import render_jinja_template
cases = json.load(open(sys.argv[1]))
out = []
for template, special, messages, gen, kwargs in cases:
    tokens = {k: (v["content"] if isinstance(v, dict) else v) for k, v in special.items() if v is not None}
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=gen, **tokens, **kwargs)
    out.append(rendered[0])
print(json.dumps(out))
"#;

fn reference(cases: &[serde_json::Value]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_string(cases).unwrap()).unwrap();
    let out = run_python(REFERENCE, &[path.to_str().unwrap()]).expect("reference Python with transformers");
    serde_json::from_str(out.trim()).unwrap()
}

/// Writes a `tokenizer_config.json` with the template and special tokens into `dir` and reads it back.
fn load(dir: &Path, template: &serde_json::Value, special: &serde_json::Value) -> ChatTemplate {
    let mut config = special.as_object().unwrap().clone();
    config.insert("chat_template".into(), template.clone());
    config.insert("model_max_length".into(), json!(131072));
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    ChatTemplate::from_tokenizer_config(dir).unwrap()
}

#[test]
fn real_templates_render_as_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    let mut labels = Vec::new();
    for family in families() {
        let template = load(dir.path(), &json!(family.template), &family.special);
        for (c, messages) in conversations().into_iter().enumerate() {
            for gen in [false, true] {
                // Llama 3.2 prints today's date unless given one: fix it on both sides.
                let kwargs = if family.name == "llama-3.2" { json!({"date_string": "26 Jul 2024"}) } else { json!({}) };
                ours.push(template.render_json(&messages, gen, kwargs.as_object().unwrap()).unwrap());
                cases.push(json!([family.template, family.special, messages, gen, kwargs]));
                labels.push(format!("{} conversation {c} add_generation_prompt={gen}", family.name));
            }
        }
    }
    // The typed entry point renders as the JSON one.
    let smol = load(dir.path(), &json!(SMOLLM2), &families()[2].special);
    let typed = smol.render(&[ChatMessage::new("user", "Hello!")], true).unwrap();
    assert_eq!(typed, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");

    let expected = reference(&cases);
    assert_eq!(expected.len(), ours.len());
    for ((ours, theirs), label) in ours.iter().zip(&expected).zip(&labels) {
        assert_eq!(ours, theirs, "{label}");
    }
    eprintln!("{} renderings equal transformers' byte for byte", ours.len());
}

#[test]
fn llama_date_and_python_methods_render_as_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let special = json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"});
    let conv = json!([
        {"role": "user", "content": "!  shout this  "},
        {"role": "assistant", "content": "  Why not? Sure?"},
        {"role": "user", "content": "Plain TEXT  "},
        {"role": "tool", "content": "{\"a\": [1, 2.5, \"<b>&\"]}", "name": "calc", "score": 3.0},
        {"role": "user", "content": "after the break"}
    ]);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for gen in [false, true] {
        let t = load(dir.path(), &json!(PYCOMPAT), &special);
        ours.push(t.render_json(&conv, gen, &serde_json::Map::new()).unwrap());
        cases.push(json!([PYCOMPAT, special, conv, gen, {}]));
    }
    // Without `date_string` Llama 3.2 calls `strftime_now("%d %b %Y")`: today's date on both sides (UTC here).
    let llama = load(dir.path(), &json!(LLAMA3_2), &special);
    let first = conversations()[0].clone();
    ours.push(llama.render_json(&first, true, &serde_json::Map::new()).unwrap());
    cases.push(json!([LLAMA3_2, special, first, true, {}]));
    let expected = reference(&cases);
    for (i, (ours, theirs)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(ours, theirs, "case {i}");
    }
}

#[test]
fn named_templates_and_chat_template_jinja() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS{{ messages | length }}"},
            {"name": "default", "template": "DEFAULT{{ messages[0].content }}{{ eos_token }}"}
        ],
        "eos_token": {"content": "</s>", "lstrip": false}
    });
    let path = dir.path().join("tokenizer_config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let msgs = [ChatMessage::new("user", "hi")];
    assert_eq!(ChatTemplate::from_tokenizer_config(&path).unwrap().render(&msgs, false).unwrap(), "DEFAULThi</s>");
    let tool = ChatTemplate::from_tokenizer_config_named(&path, Some("tool_use")).unwrap();
    assert_eq!(tool.render(&msgs, false).unwrap(), "TOOLS1");
    let err = ChatTemplate::from_tokenizer_config_named(&path, Some("rag")).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json")
            && err.contains("no template named `rag`")
            && err.contains("tool_use, default"),
        "{err}"
    );

    // transformers ≥ 4.43 saves the template beside the config.
    std::fs::write(&path, json!({"eos_token": "<|im_end|>"}).to_string()).unwrap();
    std::fs::write(dir.path().join("chat_template.jinja"), "{% for m in messages %}[{{ m.role }}]{% endfor %}\n")
        .unwrap();
    let t = ChatTemplate::from_tokenizer_config(dir.path()).unwrap();
    assert!(t.origin().ends_with("chat_template.jinja"));
    assert_eq!(t.render(&msgs, true).unwrap(), "[user]");
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");

    std::fs::write(&path, json!({"eos_token": "</s>"}).to_string()).unwrap();
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()) && err.contains("no `chat_template`"), "{err}");

    std::fs::write(&path, json!({"chat_template": 3}).to_string()).unwrap();
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err().to_string();
    assert!(err.contains("should be a string or a list"), "{err}");

    std::fs::write(&path, "{\"chat_template\": ").unwrap();
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err().to_string();
    assert!(err.contains("not valid JSON"), "{err}");

    // A syntax error on the template's third line.
    let broken = "{% for m in messages %}\n{{ m.content }}\n{% if m.role %}\n{% endfor %}";
    std::fs::write(&path, json!({"chat_template": broken}).to_string()).unwrap();
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("does not compile") && err.contains("line 4"),
        "{err}"
    );

    // raise_exception: the template's own message and its line.
    let strict = "{% for m in messages %}\n{% if m.role not in ['user', 'assistant'] %}\n{{ raise_exception('Only user and assistant roles are supported!') }}\n{% endif %}{{ m.content }}{% endfor %}";
    std::fs::write(&path, json!({"chat_template": strict}).to_string()).unwrap();
    let t = ChatTemplate::from_tokenizer_config(&path).unwrap();
    let err = t.render(&[ChatMessage::new("system", "x")], false).unwrap_err().to_string();
    assert!(
        err.contains("refused the conversation: Only user and assistant roles are supported! (template line 3)"),
        "{err}"
    );

    // A runtime error (calling an undefined function).
    std::fs::write(&path, json!({"chat_template": "ok\n{{ nope(1) }}"}).to_string()).unwrap();
    let t = ChatTemplate::from_tokenizer_config(&path).unwrap();
    let err = t.render(&[ChatMessage::new("user", "x")], false).unwrap_err().to_string();
    assert!(err.contains("failed to render") && err.contains("line 2"), "{err}");

    // Messages that are not messages.
    let t = ChatTemplate::new("{{ messages | length }}", vec![], "inline").unwrap();
    let err = t.render_json(&json!([{"content": "x"}]), false, &serde_json::Map::new()).unwrap_err().to_string();
    assert!(err.contains("messages[0]: a message without a `role`"), "{err}");
    let err =
        t.render_json(&json!([{"role": "user"}, {"role": 1}]), false, &serde_json::Map::new()).unwrap_err().to_string();
    assert!(err.contains("messages[1]: `role` should be a string"), "{err}");
    let err = t.render_json(&json!({"role": "user"}), false, &serde_json::Map::new()).unwrap_err().to_string();
    assert!(err.contains("should be a list"), "{err}");
}

#[test]
fn end_of_turn_tokens_from_eos_and_vocabulary() {
    let llama = ChatTemplate::new("", vec![("eos_token", "<|end_of_text|>".into())], "x").unwrap();
    let added = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|start_header_id|>"];
    assert_eq!(llama.end_of_turn_tokens(&added), ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"]);
    let qwen = ChatTemplate::new("", vec![("eos_token", "<|im_end|>".into())], "x").unwrap();
    assert_eq!(qwen.end_of_turn_tokens(&["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), ["<|im_end|>"]);
    let none = ChatTemplate::new("", vec![], "x").unwrap();
    assert!(none.end_of_turn_tokens::<&str>(&[]).is_empty());
}

#[test]
fn strftime_formats_as_python() {
    // 2024-07-26 13:05:09 UTC, a Friday.
    let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
    assert_eq!(strftime("%d %b %Y", t).unwrap(), "26 Jul 2024");
    assert_eq!(strftime("%A %d %B %y %H:%M:%S %% %a %m", t).unwrap(), "Friday 26 July 24 13:05:09 % Fri 07");
    assert_eq!(strftime("%d %b %Y", 0).unwrap(), "01 Jan 1970");
    assert_eq!(strftime("%Y-%m-%d", 951_782_400).unwrap(), "2000-02-29");
    assert!(strftime("%Q", 0).is_err());
}

#[test]
fn tojson_writes_what_json_dumps_writes() {
    let v = json!({"b": [1, 2.5, 3.0, null, true], "a": "<é\n\"", "c": {}, "d": []});
    let mut out = String::new();
    python_json(&v, None, false, 0, &mut out);
    // serde_json's map is ordered by key here; Python would keep insertion order (see the report on preserve_order).
    assert_eq!(out, r#"{"a": "<é\n\"", "b": [1, 2.5, 3.0, null, true], "c": {}, "d": []}"#);
    let mut out = String::new();
    python_json(&json!({"x": [1, {"y": 2}]}), Some(2), false, 0, &mut out);
    assert_eq!(out, "{\n  \"x\": [\n    1,\n    {\n      \"y\": 2\n    }\n  ]\n}");
}

/// transformers' `apply_chat_template(..., tokenize=False)` on a tokenizer loaded from each case's folder:
/// `[folder, messages, add_generation_prompt, kwargs]`.
const APPLY_REFERENCE: &str = r#"
import json, sys
from transformers import PreTrainedTokenizerFast
cases = json.load(open(sys.argv[1]))
tokenizers = {}
out = []
for folder, messages, gen, kwargs in cases:
    if folder not in tokenizers:
        tokenizers[folder] = PreTrainedTokenizerFast.from_pretrained(folder)
    out.append(tokenizers[folder].apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **kwargs))
print(json.dumps(out))
"#;

/// The same files, read by both sides: a model folder with a minimal `tokenizer.json` (a word-level vocabulary of
/// the special tokens) and the family's `tokenizer_config.json`; transformers loads it as a tokenizer and applies
/// the template with the special tokens it parsed, we read the config.
#[test]
fn apply_chat_template_on_tokenizers_from_the_same_files() {
    let root = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for family in families() {
        let dir = root.path().join(family.name);
        std::fs::create_dir(&dir).unwrap();
        let mut vocab = serde_json::Map::new();
        vocab.insert("<unk>".into(), json!(0));
        for token in family.special.as_object().unwrap().values() {
            let content = token.get("content").unwrap_or(token);
            if let Some(s) = content.as_str() {
                let next = vocab.len();
                vocab.entry(s.to_string()).or_insert(json!(next));
            }
        }
        let tokenizer = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        let template = load(&dir, &json!(family.template), &family.special);
        for messages in conversations() {
            for gen in [false, true] {
                let kwargs = if family.name == "llama-3.2" { json!({"date_string": "26 Jul 2024"}) } else { json!({}) };
                ours.push(template.render_json(&messages, gen, kwargs.as_object().unwrap()).unwrap());
                cases.push(json!([dir.to_str().unwrap(), messages, gen, kwargs]));
            }
        }
    }
    let path = root.path().join("cases.json");
    std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = run_python(APPLY_REFERENCE, &[path.to_str().unwrap()]).expect("reference Python with transformers");
    let expected: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(expected.len(), ours.len());
    for (i, (ours, theirs)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(ours, theirs, "case {i}: {}", cases[i]);
    }
}
