//! Python's `str.lower`, `str.isspace` and `re`'s `\w` against ours for every Unicode scalar value, the three
//! primitives of SQuAD's `normalize_answer`.

use std::collections::{HashMap, HashSet};

use super::oracle;
use crate::metrics::squad::pystr;

const UNICODE: &str = r#"
import json, re, sys, unicodedata
word = re.compile(r"\w")
def ranges(pred):
    out, start = [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and not (0xD800 <= cp < 0xE000) and pred(chr(cp))
        if inside and start is None: start = cp
        if not inside and start is not None: out.append([start, cp]); start = None
    return out
lower = [[cp, chr(cp).lower()] for cp in range(0x110000) if not (0xD800 <= cp < 0xE000) and chr(cp).lower() != chr(cp)]
print(json.dumps({"unidata": unicodedata.unidata_version, "lower": lower,
                  "space": ranges(str.isspace), "word": ranges(lambda c: word.match(c) is not None),
                  "unassigned": ranges(lambda c: unicodedata.category(c) == "Cn")}))
"#;

fn set_of(ranges: &serde_json::Value) -> HashSet<u32> {
    ranges
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r[0].as_u64().unwrap() as u32..r[1].as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn python_str_rules_hold_for_every_assigned_code_point() {
    let out = oracle(UNICODE, &[]);
    let lower: HashMap<u32, String> = out["lower"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_str().unwrap().to_string()))
        .collect();
    let (space, word, unassigned) = (set_of(&out["space"]), set_of(&out["word"]), set_of(&out["unassigned"]));
    let mut newer = [0usize; 3];
    let mut wrong: Vec<String> = Vec::new();
    for c in (0..0x110000u32).filter_map(char::from_u32) {
        let cp = c as u32;
        let s = c.to_string();
        let want_lower = lower.get(&cp).cloned().unwrap_or_else(|| s.clone());
        let checks = [
            ("lower", pystr::lower(&s) == want_lower),
            ("isspace", pystr::is_space(c) == space.contains(&cp)),
            ("\\w", pystr::is_word(c) == word.contains(&cp)),
        ];
        for (k, (what, agrees)) in checks.into_iter().enumerate() {
            if agrees {
                continue;
            }
            // Python 3.11 knows Unicode 14; code points assigned since then may differ, nothing else may.
            if unassigned.contains(&cp) {
                newer[k] += 1;
            } else {
                wrong.push(format!("U+{cp:04X} {what}"));
            }
        }
    }
    eprintln!(
        "unicode: every scalar value compared with Python (Unicode {}); differences only on code points Python's \
         database leaves unassigned: lower {}, isspace {}, \\w {}",
        out["unidata"], newer[0], newer[1], newer[2]
    );
    assert!(wrong.is_empty(), "{} code points differ from Python: {:?}", wrong.len(), &wrong[..wrong.len().min(40)]);
}
