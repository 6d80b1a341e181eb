//! Whisper's text normalisers (OpenAI's `whisper/normalizers`, as copied into transformers'
//! `models/whisper/english_normalizer.py`), used before WER so that casing, punctuation and spelling variants are
//! not counted as errors.
//!
//! Both are ports line by line; the regular expressions are the same patterns under Rust's `regex` crate, whose
//! Unicode `\b`, `\d` and `\s` match Python's `re` for all practical text. Known differences, none of which
//! appear in ordinary transcripts:
//! - Unicode tables: Python 3.11's `unicodedata` is Unicode 14.0; the Rust crates carry Unicode 16–17, so
//!   characters assigned after 14.0 are categorised (and possibly replaced by a space) here but kept by Python.
//! - `\b` and `\w`: Rust counts combining marks (category M) as word characters, Python does not; this only
//!   matters for a pattern boundary right next to a combining mark.
//! - The English number normaliser treats only ASCII digits as digits when it parses numbers (Python's
//!   `Fraction` also accepts e.g. Arabic-Indic digits), and works in 128-bit integers: numbers beyond 10^38
//!   (which Python handles as big integers) are passed through as written.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use unicode_general_category::get_general_category;
use unicode_normalization::UnicodeNormalization;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("normaliser patterns are fixed and valid")
}

/// Python's `\s` and `str.isspace`: Unicode White_Space plus the ASCII separators U+001C–U+001F.
const PY_SPACE: &str = r"[\s\x1c-\x1f]";

static BRACKETS: LazyLock<Regex> = LazyLock::new(|| re(r"[<\[][^>\]]*[>\]]"));
static PARENS: LazyLock<Regex> = LazyLock::new(|| re(r"\(([^)]+?)\)"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(&format!("{PY_SPACE}+")));

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The first letter of the Unicode general category: 'M' (marks), 'S' (symbols), 'P' (punctuation), …
fn category_class(c: char) -> char {
    get_general_category(c).abbreviation().chars().next().unwrap_or('C')
}

/// `remove_symbols`: NFKC, then every mark, symbol and punctuation character becomes a space.
fn remove_symbols(s: &str) -> String {
    s.nfkc().map(|c| if matches!(category_class(c), 'M' | 'S' | 'P') { ' ' } else { c }).collect()
}

/// Whisper's `BasicTextNormalizer()` (no diacritic removal, no letter splitting): lower-case, drop `[…]`/`<…>`
/// and `(…)` spans, NFKC, replace marks/symbols/punctuation by spaces, lower-case again, collapse whitespace runs
/// into one space. Like the original it does not strip: `"Hello, world!"` → `"hello world "`.
pub fn normalize_basic(s: &str) -> String {
    let s = s.to_lowercase();
    let s = BRACKETS.replace_all(&s, "");
    let s = PARENS.replace_all(&s, "");
    let s = remove_symbols(&s).to_lowercase();
    SPACES.replace_all(&s, " ").into_owned()
}

/// Letters that NFKD does not split into base + diacritic.
fn additional_diacritic(c: char) -> Option<&'static str> {
    Some(match c {
        'œ' => "oe",
        'Œ' => "OE",
        'ø' => "o",
        'Ø' => "O",
        'æ' => "ae",
        'Æ' => "AE",
        'ß' => "ss",
        'ẞ' => "SS",
        'đ' => "d",
        'Đ' => "D",
        'ð' => "d",
        'Ð' => "D",
        'þ' => "th",
        'Þ' => "th",
        'ł' => "l",
        'Ł' => "L",
        _ => return None,
    })
}

/// `remove_symbols_and_diacritics`: NFKD, drop nonspacing marks, map the letters above, and replace other marks,
/// symbols and punctuation by spaces, except the characters in `keep`.
fn remove_symbols_and_diacritics(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if keep.contains(c) {
            out.push(c);
        } else if let Some(r) = additional_diacritic(c) {
            out.push_str(r);
        } else if get_general_category(c).abbreviation() == "Mn" {
            // Diacritics separated by NFKD are dropped.
            continue;
        } else if matches!(category_class(c), 'M' | 'S' | 'P') {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// OpenAI's British → American spelling list (`whisper/normalizers/english.json`, MIT licence).
static SPELLINGS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("english_spelling.json")).expect("the embedded spelling list is valid JSON")
});

static ENGLISH_RULES: LazyLock<EnglishRules> = LazyLock::new(EnglishRules::new);

struct EnglishRules {
    ignore: Regex,
    space_apostrophe: Regex,
    replacers: Vec<(Regex, &'static str)>,
    digit_commas: Regex,
    periods: Regex,
    lone_prefix_symbols: Regex,
    lone_percent: Regex,
}

impl EnglishRules {
    fn new() -> Self {
        // The replacement order matters (specific contractions before the general ones), as in the original dict.
        const REPLACERS: &[(&str, &str)] = &[
            (r"\bwon't\b", "will not"),
            (r"\bcan't\b", "can not"),
            (r"\blet's\b", "let us"),
            (r"\bain't\b", "aint"),
            (r"\by'all\b", "you all"),
            (r"\bwanna\b", "want to"),
            (r"\bgotta\b", "got to"),
            (r"\bgonna\b", "going to"),
            (r"\bi'ma\b", "i am going to"),
            (r"\bimma\b", "i am going to"),
            (r"\bwoulda\b", "would have"),
            (r"\bcoulda\b", "could have"),
            (r"\bshoulda\b", "should have"),
            (r"\bma'am\b", "madam"),
            (r"\bmr\b", "mister "),
            (r"\bmrs\b", "missus "),
            (r"\bst\b", "saint "),
            (r"\bdr\b", "doctor "),
            (r"\bprof\b", "professor "),
            (r"\bcapt\b", "captain "),
            (r"\bgov\b", "governor "),
            (r"\bald\b", "alderman "),
            (r"\bgen\b", "general "),
            (r"\bsen\b", "senator "),
            (r"\brep\b", "representative "),
            (r"\bpres\b", "president "),
            (r"\brev\b", "reverend "),
            (r"\bhon\b", "honorable "),
            (r"\basst\b", "assistant "),
            (r"\bassoc\b", "associate "),
            (r"\blt\b", "lieutenant "),
            (r"\bcol\b", "colonel "),
            (r"\bjr\b", "junior "),
            (r"\bsr\b", "senior "),
            (r"\besq\b", "esquire "),
            (r"'d been\b", " had been"),
            (r"'s been\b", " has been"),
            (r"'d gone\b", " had gone"),
            (r"'s gone\b", " has gone"),
            (r"'d done\b", " had done"),
            (r"'s got\b", " has got"),
            (r"n't\b", " not"),
            (r"'re\b", " are"),
            (r"'s\b", " is"),
            (r"'d\b", " would"),
            (r"'ll\b", " will"),
            (r"'t\b", " not"),
            (r"'ve\b", " have"),
            (r"'m\b", " am"),
        ];
        EnglishRules {
            ignore: re(r"\b(hmm|mm|mhm|mmm|uh|um)\b"),
            space_apostrophe: re(&format!("{PY_SPACE}+'")),
            replacers: REPLACERS.iter().map(|(p, r)| (re(p), *r)).collect(),
            digit_commas: re(r"(\d),(\d)"),
            periods: re(r"\.([^0-9]|$)"),
            lone_prefix_symbols: re(r"[.$¢€£]([^0-9])"),
            lone_percent: re(r"([^0-9])%"),
        }
    }
}

/// Whisper's `EnglishTextNormalizer` with OpenAI's full spelling list: lower-case; drop bracketed and
/// parenthesised spans and the fillers "hmm", "mm", "mhm", "mmm", "uh", "um"; expand contractions and titles
/// ("won't" → "will not", "dr" → "doctor"); strip diacritics and symbols except `.%$¢€£`; spelled-out numbers to
/// digits ("twenty one" → "21", "two point five" → "2.5", "five dollars" → "$5", "ten percent" → "10%",
/// "1960s", "21st"); British → American spellings; collapse whitespace. See the module notes for the few
/// differences from the Python original.
pub fn normalize_english(s: &str) -> String {
    let rules = &*ENGLISH_RULES;
    let s = s.to_lowercase();
    let s = BRACKETS.replace_all(&s, "");
    let s = PARENS.replace_all(&s, "");
    let s = rules.ignore.replace_all(&s, "");
    let mut s = rules.space_apostrophe.replace_all(&s, "'").into_owned();
    for (pattern, replacement) in &rules.replacers {
        s = pattern.replace_all(&s, regex::NoExpand(replacement)).into_owned();
    }
    let s = rules.digit_commas.replace_all(&s, "${1}${2}");
    let s = rules.periods.replace_all(&s, " ${1}");
    let s = remove_symbols_and_diacritics(&s, ".%$¢€£");
    let s = super::numbers::normalize_numbers(&s);
    let s =
        s.split(is_py_space).filter(|w| !w.is_empty()).map(|w| SPELLINGS.get(w).map_or(w, |v| v)).collect::<Vec<_>>();
    let s = s.join(" ");
    let s = rules.lone_prefix_symbols.replace_all(&s, " ${1}");
    let s = rules.lone_percent.replace_all(&s, "${1} ");
    SPACES.replace_all(&s, " ").into_owned()
}

/// Replaces each match of `re` by what `f` returns for its captures (Python's `re.sub` with a function).
pub(super) fn replace_with(re: &Regex, s: &str, f: impl Fn(&Captures) -> String) -> String {
    re.replace_all(s, |c: &Captures| f(c)).into_owned()
}
