//! `TextTokenizer` against `transformers.AutoTokenizer` (fast) on the MiniLM tokenizer: singles, pairs truncated
//! longest-first, pre-tokenized words with word ids, char offsets and decoding.

use serde_json::Value;
use suite_core::python::run_python;

use super::{minilm, minilm_dir};
use crate::data::tokenize::Encoded;

/// Varied inputs: accents, CJK (split per character by BERT), emoji and unknown symbols, control characters,
/// odd whitespace, punctuation runs, long words, numbers, an empty string.
const TEXTS: [&str; 32] = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld — naïve café, Zürich, São Paulo, Ærøskøbing",
    "東京は日本の首都です。",
    "北京欢迎你 and 서울 is in 한국",
    "I ❤️ emoji 🤗🚀👩‍👩‍👧 so much",
    "",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "control\u{0007}chars\u{200b}zero\u{00a0}width",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "e-mail: someone@example.com, url https://example.org/path?q=1&x=2",
    "Numbers 3.14159, 1,000,000 and 2024-06-01 at 10:30pm",
    "ALL CAPS SENTENCE WITH ACRONYMS LIKE NASA AND U.S.A.",
    "Punctuation!!! ??? ... ;;; --- ((( ))) [[[ ]]] {{{ }}}",
    "Ελληνικά και Русский текст",
    "عربى النص",
    "हिन्दी पाठ",
    "Ça va? Œuvre, façade, coöperate, résumé",
    "don't won't can't y'all'd've",
    "a",
    "₂ ½ ① ﬁ ℌ",
    "C++ & C# are languages; so is F*",
    "The Virgin Mary reputedly appeared to Saint Bernadette Soubirous in 1858.",
    "Saint Bernadette",
    "multiple     spaces    between    words",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ｌｅｔｔｅｒｓ",
    "emoji at end 😀",
    "🙂",
    "mixed東京text",
    "a very long sentence that will certainly need truncation because it keeps going and going with many \
     words one after another until the limit is far exceeded by the number of tokens",
    "ﷺ ﷽ long ligatures",
];

const ORACLE: &str = r#"
import sys, json
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
assert tok.is_fast
spec = json.load(open(sys.argv[2]))
def enc(e):
    return {"ids": e.input_ids, "type_ids": e.token_type_ids, "offsets": e.offset_mapping,
            "word_ids": e.word_ids(), "sequence_ids": e.sequence_ids()}
out = {"single": [], "pair": [], "words": [], "decode": []}
for text, max_len in spec["single"]:
    out["single"].append(enc(tok(text, truncation=True, max_length=max_len, return_offsets_mapping=True)))
for a, b, max_len in spec["pair"]:
    out["pair"].append(enc(tok(a, b, truncation="longest_first", max_length=max_len, return_offsets_mapping=True)))
for words, max_len in spec["words"]:
    out["words"].append(enc(tok(words, is_split_into_words=True, truncation=True, max_length=max_len,
                                return_offsets_mapping=True)))
for text in spec["single_texts"]:
    out["decode"].append(tok.decode(tok(text).input_ids, skip_special_tokens=True))
print(json.dumps(out))
"#;

fn from_json(v: &Value) -> Encoded {
    let ints = |k: &str| -> Vec<i64> { v[k].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let opts = |k: &str| -> Vec<Option<usize>> {
        v[k].as_array().unwrap().iter().map(|x| x.as_u64().map(|x| x as usize)).collect()
    };
    Encoded {
        ids: ints("ids"),
        type_ids: ints("type_ids"),
        offsets: v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
            .collect(),
        sequence_ids: opts("sequence_ids"),
        word_ids: opts("word_ids"),
    }
}

#[test]
fn tokenizer_matches_transformers_fast() {
    let tok = minilm();
    let single: Vec<(&str, usize)> = TEXTS.iter().flat_map(|&t| [(t, 512), (t, 7)]).collect();
    let mut pair: Vec<(&str, &str, usize)> = Vec::new();
    for (i, &a) in TEXTS.iter().enumerate() {
        let b = TEXTS[(i * 7 + 3) % TEXTS.len()];
        // 512 never truncates; 12 and 21 cut one or both sides (longest-first, odd and even budgets).
        pair.extend([(a, b, 512), (a, b, 12), (b, a, 21)]);
    }
    let words: Vec<(Vec<String>, usize)> = TEXTS
        .iter()
        .map(|t| t.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .flat_map(|w| [(w.clone(), 512), (w, 9)])
        .collect();
    let spec = serde_json::json!({"single": single, "pair": pair, "words": words, "single_texts": TEXTS});
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = run_python(ORACLE, &[minilm_dir().to_str().unwrap(), spec_path.to_str().unwrap()]).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();

    let mut checked = 0;
    for (i, &(text, max_len)) in single.iter().enumerate() {
        let ours = tok.encode(text, None, max_len).unwrap();
        assert_eq!(ours, from_json(&out["single"][i]), "single {text:?} max_len {max_len}");
        assert!(ours.len() <= max_len);
        checked += 1;
    }
    for (i, &(a, b, max_len)) in pair.iter().enumerate() {
        let ours = tok.encode(a, Some(b), max_len).unwrap();
        assert_eq!(ours, from_json(&out["pair"][i]), "pair {a:?} / {b:?} max_len {max_len}");
        checked += 1;
    }
    for (i, (w, max_len)) in words.iter().enumerate() {
        let ours = tok.encode_words(w, *max_len).unwrap();
        assert_eq!(ours, from_json(&out["words"][i]), "words {w:?} max_len {max_len}");
        checked += 1;
    }
    for (i, text) in TEXTS.iter().enumerate() {
        let ids = tok.encode(text, None, 512).unwrap().ids;
        assert_eq!(tok.decode(&ids).unwrap(), out["decode"][i].as_str().unwrap(), "decode {text:?}");
    }
    println!("{checked} encodings and {} decodings equal to transformers' fast tokenizer", TEXTS.len());
}

#[test]
fn offsets_are_characters_and_pad_comes_from_the_vocabulary() {
    let tok = minilm();
    assert_eq!(tok.pad_id(), 0);
    assert_eq!(tok.cls_id(), Some(101));
    let text = "東京 café 🤗 x";
    let enc = tok.encode(text, None, 64).unwrap();
    let chars: Vec<char> = text.chars().collect();
    let pieces: Vec<String> =
        enc.offsets[1..enc.len() - 1].iter().map(|&(s, e)| chars[s..e].iter().collect()).collect();
    assert_eq!(pieces, ["東", "京", "café", "🤗", "x"]);
}

#[test]
fn impossible_lengths_are_errors_not_panics() {
    let tok = minilm();
    let err = tok.encode("hello", Some("world"), 3).unwrap_err().to_string();
    assert!(err.contains("max_len 3 is too small"), "{err}");
    assert!(tok.encode("hello", None, 1).is_err());
    let err = tok.encode_windows("a long question with many words", "context", 8, 2).unwrap_err().to_string();
    assert!(err.contains("leaves 0 of max_len 8"), "{err}");
    assert!(tok.decode(&[-1]).is_err());
    let missing = std::path::Path::new("/nonexistent/tokenizer.json");
    let err = format!("{:#}", crate::data::tokenize::TextTokenizer::from_file(missing).err().unwrap());
    assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
}
