//! Whisper's `EnglishNumberNormalizer`: spelled-out English numbers to digits, ported branch by branch from
//! OpenAI's `whisper/normalizers/english.py` so that its quirks (e.g. "one oh one" → "101", "and" dropped after
//! "hundred", "point" dropped before a non-decimal number word) are kept.
//!
//! Python mixes `int` and `str` in one `value` variable and switches behaviour on its type; [`Value`] keeps that
//! distinction explicit.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::normalize::replace_with;

const ONES: [&str; 19] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, i128); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];
const MULTIPLIERS: [(&str, u32); 12] = [
    ("hundred", 2),
    ("thousand", 3),
    ("million", 6),
    ("billion", 9),
    ("trillion", 12),
    ("quadrillion", 15),
    ("quintillion", 18),
    ("sextillion", 21),
    ("septillion", 24),
    ("octillion", 27),
    ("nonillion", 30),
    ("decillion", 33),
];

/// The word tables of the Python class.
struct Tables {
    zeros: Vec<&'static str>,
    ones: HashMap<String, i128>,
    ones_suffixed: HashMap<String, (i128, &'static str)>,
    tens: HashMap<String, i128>,
    tens_suffixed: HashMap<String, (i128, &'static str)>,
    multipliers: HashMap<String, i128>,
    multipliers_suffixed: HashMap<String, (i128, &'static str)>,
    preceding_prefixers: HashMap<&'static str, &'static str>,
    following_prefixers: HashMap<&'static str, &'static str>,
    prefixes: Vec<char>,
    specials: Vec<&'static str>,
    words: std::collections::HashSet<String>,
    numeric: Regex,
    and_a_half: Regex,
    letter_digit: Regex,
    digit_letter: Regex,
    suffix_space: Regex,
    cents: Regex,
    only_cents: Regex,
    one: Regex,
}

impl Tables {
    fn new() -> Self {
        let ones: HashMap<String, i128> =
            ONES.iter().enumerate().map(|(i, n)| (n.to_string(), i as i128 + 1)).collect();
        let mut ones_suffixed: HashMap<String, (i128, &'static str)> = HashMap::new();
        for (name, &value) in &ones {
            let plural = if name == "six" { "sixes".to_string() } else { format!("{name}s") };
            ones_suffixed.insert(plural, (value, "s"));
        }
        for (name, value, suffix) in
            [("zeroth", 0, "th"), ("first", 1, "st"), ("second", 2, "nd"), ("third", 3, "rd"), ("fifth", 5, "th")]
        {
            ones_suffixed.insert(name.into(), (value, suffix));
        }
        ones_suffixed.insert("twelfth".into(), (12, "th"));
        for (name, &value) in &ones {
            if value > 3 && value != 5 && value != 12 {
                let ordinal = if name.ends_with('t') { format!("{name}h") } else { format!("{name}th") };
                ones_suffixed.insert(ordinal, (value, "th"));
            }
        }
        let tens: HashMap<String, i128> = TENS.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let mut tens_suffixed = HashMap::new();
        for (name, value) in TENS {
            tens_suffixed.insert(name.replace('y', "ies"), (value, "s"));
            tens_suffixed.insert(name.replace('y', "ieth"), (value, "th"));
        }
        let multipliers: HashMap<String, i128> =
            MULTIPLIERS.iter().map(|(n, e)| (n.to_string(), 10i128.pow(*e))).collect();
        let mut multipliers_suffixed = HashMap::new();
        for (name, &value) in &multipliers {
            multipliers_suffixed.insert(format!("{name}s"), (value, "s"));
            multipliers_suffixed.insert(format!("{name}th"), (value, "th"));
        }
        let preceding_prefixers: HashMap<_, _> =
            [("minus", "-"), ("negative", "-"), ("plus", "+"), ("positive", "+")].into_iter().collect();
        let following_prefixers: HashMap<_, _> = [
            ("pound", "£"),
            ("pounds", "£"),
            ("euro", "€"),
            ("euros", "€"),
            ("dollar", "$"),
            ("dollars", "$"),
            ("cent", "¢"),
            ("cents", "¢"),
        ]
        .into_iter()
        .collect();
        let prefixes =
            preceding_prefixers.values().chain(following_prefixers.values()).filter_map(|p| p.chars().next()).collect();
        let zeros = vec!["o", "oh", "zero"];
        let specials = vec!["and", "double", "triple", "point"];
        let mut words = std::collections::HashSet::new();
        words.extend(zeros.iter().map(|w| w.to_string()));
        words.extend(ones.keys().cloned());
        words.extend(ones_suffixed.keys().cloned());
        words.extend(tens.keys().cloned());
        words.extend(tens_suffixed.keys().cloned());
        words.extend(multipliers.keys().cloned());
        words.extend(multipliers_suffixed.keys().cloned());
        words.extend(preceding_prefixers.keys().map(|w| w.to_string()));
        words.extend(following_prefixers.keys().map(|w| w.to_string()));
        words.extend(["per", "percent"].map(String::from));
        words.extend(specials.iter().map(|w| w.to_string()));
        let re = |p: &str| Regex::new(p).expect("number patterns are fixed and valid");
        Tables {
            zeros,
            ones,
            ones_suffixed,
            tens,
            tens_suffixed,
            multipliers,
            multipliers_suffixed,
            preceding_prefixers,
            following_prefixers,
            prefixes,
            specials,
            words,
            numeric: re(r"^\d+(\.\d+)?$"),
            and_a_half: re(r"\band[\s\x1c-\x1f]+a[\s\x1c-\x1f]+half\b"),
            letter_digit: re(r"([a-z])([0-9])"),
            digit_letter: re(r"([0-9])([a-z])"),
            suffix_space: re(r"([0-9])[\s\x1c-\x1f]+(st|nd|rd|th|s)\b"),
            cents: re(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b"),
            only_cents: re(r"[€£$]0.([0-9]{1,2})\b"),
            one: re(r"\b1(s?)\b"),
        }
    }

    fn is_decimal(&self, w: &str) -> bool {
        self.ones.contains_key(w) || self.tens.contains_key(w) || self.zeros.contains(&w)
    }
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::new);

/// Python's `value`: an `int` while the words still form one number, a `str` once digits were concatenated
/// ("one oh one" → "101") or a decimal point was written.
#[derive(Debug, Clone)]
enum Value {
    Int(i128),
    Str(String),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
    /// `str(value or "")`: 0 and "" are falsy.
    fn text_or_empty(v: &Option<Value>) -> String {
        match v {
            None | Some(Value::Int(0)) => String::new(),
            Some(v) => v.text(),
        }
    }
}

/// `Fraction(s) * multiplier` when it is an integer: `Some(Some(n))`; `Some(None)` when the product is not an
/// integer; `None` when `s` is not a decimal number (Python's `to_fraction` returning None).
fn scaled_integer(s: &str, multiplier: i128) -> Option<Option<i128>> {
    let s = s.trim_matches(|c: char| c.is_whitespace());
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(int_part) || !digits_ok(frac_part) || (int_part.is_empty() && frac_part.is_empty()) {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let numerator: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let denominator = 10i128.checked_pow(frac_part.len() as u32)?;
    let product = numerator.checked_mul(multiplier)?;
    Some((product % denominator == 0).then_some(product / denominator))
}

/// `Fraction(s)` for a numeric token (`^\d+(\.\d+)?$`): an integer, or `None` for a true fraction.
fn token_integer(s: &str) -> Option<i128> {
    scaled_integer(s, 1).flatten()
}

struct State {
    prefix: Option<String>,
    value: Option<Value>,
    out: Vec<String>,
}

impl State {
    /// Python's `output()`: the prefix is applied and both the prefix and the value are cleared.
    fn output(&mut self, result: String) {
        let result = match self.prefix.take() {
            Some(p) => p + &result,
            None => result,
        };
        self.value = None;
        self.out.push(result);
    }

    fn flush_value(&mut self) {
        if let Some(v) = self.value.take() {
            self.output(v.text());
        }
    }
}

fn process_words(words: &[&str]) -> Vec<String> {
    let t = &*TABLES;
    let mut st = State { prefix: None, value: None, out: Vec::new() };
    let mut skip = false;
    for (i, &current) in words.iter().enumerate() {
        let prev = if i > 0 { Some(words[i - 1]) } else { None };
        let next = words.get(i + 1).copied();
        if skip {
            skip = false;
            continue;
        }
        let next_is_numeric = next.is_some_and(|n| t.numeric.is_match(n));
        let next_is_word = next.is_some_and(|n| t.words.contains(n));
        let prev_in_ones = prev.is_some_and(|p| t.ones.contains_key(p));
        let prev_in_tens = prev.is_some_and(|p| t.tens.contains_key(p));
        let first = current.chars().next();
        let has_prefix = first.is_some_and(|c| t.prefixes.contains(&c));
        let without_prefix = if has_prefix { &current[first.map_or(0, char::len_utf8)..] } else { current };

        if t.numeric.is_match(without_prefix) && without_prefix.is_ascii() {
            if let Some(Value::Str(v)) = &mut st.value {
                if v.ends_with('.') {
                    // Decimals and IP-address parts are concatenated as written, prefix included.
                    v.push_str(current);
                    continue;
                }
            }
            st.flush_value();
            if has_prefix {
                st.prefix = first.map(String::from);
            }
            st.value = Some(match token_integer(without_prefix) {
                Some(n) => Value::Int(n),
                None => Value::Str(without_prefix.to_string()),
            });
        } else if !t.words.contains(current) {
            st.flush_value();
            st.output(current.to_string());
        } else if t.zeros.contains(&current) {
            st.value = Some(Value::Str(Value::text_or_empty(&st.value) + "0"));
        } else if let Some(&ones) = t.ones.get(current) {
            st.value = Some(match st.value.take() {
                None => Value::Int(ones),
                Some(Value::Str(v)) if prev_in_tens && ones < 10 => Value::Str(drop_last(&v) + &ones.to_string()),
                Some(v @ Value::Str(_)) => Value::Str(v.text() + &ones.to_string()),
                Some(v) if prev_in_ones => Value::Str(v.text() + &ones.to_string()),
                Some(Value::Int(v)) if ones < 10 => {
                    if v % 10 == 0 {
                        Value::Int(v + ones)
                    } else {
                        Value::Str(v.to_string() + &ones.to_string())
                    }
                }
                Some(Value::Int(v)) => {
                    if v % 100 == 0 {
                        Value::Int(v + ones)
                    } else {
                        Value::Str(v.to_string() + &ones.to_string())
                    }
                }
            });
        } else if let Some(&(ones, suffix)) = t.ones_suffixed.get(current) {
            let text = match st.value.take() {
                None => format!("{ones}{suffix}"),
                Some(Value::Str(v)) if prev_in_tens && ones < 10 => format!("{}{ones}{suffix}", drop_last(&v)),
                Some(v @ Value::Str(_)) => format!("{}{ones}{suffix}", v.text()),
                Some(v) if prev_in_ones => format!("{}{ones}{suffix}", v.text()),
                Some(Value::Int(v)) => {
                    let round = if ones < 10 { v % 10 == 0 } else { v % 100 == 0 };
                    if round {
                        format!("{}{suffix}", v + ones)
                    } else {
                        format!("{v}{ones}{suffix}")
                    }
                }
            };
            st.output(text);
        } else if let Some(&tens) = t.tens.get(current) {
            st.value = Some(match st.value.take() {
                None => Value::Int(tens),
                Some(Value::Str(v)) => Value::Str(v + &tens.to_string()),
                Some(Value::Int(v)) if v % 100 == 0 => Value::Int(v + tens),
                Some(Value::Int(v)) => Value::Str(v.to_string() + &tens.to_string()),
            });
        } else if let Some(&(tens, suffix)) = t.tens_suffixed.get(current) {
            let text = match st.value.take() {
                None => format!("{tens}{suffix}"),
                Some(Value::Str(v)) => format!("{v}{tens}{suffix}"),
                Some(Value::Int(v)) if v % 100 == 0 => format!("{}{suffix}", v + tens),
                Some(Value::Int(v)) => format!("{v}{tens}{suffix}"),
            };
            st.output(text);
        } else if let Some(&multiplier) = t.multipliers.get(current) {
            match st.value.take() {
                None => st.value = Some(Value::Int(multiplier)),
                Some(v @ (Value::Str(_) | Value::Int(0))) => match scaled_integer(&v.text(), multiplier) {
                    Some(Some(n)) => st.value = Some(Value::Int(n)),
                    _ => {
                        st.output(v.text());
                        st.value = Some(Value::Int(multiplier));
                    }
                },
                Some(Value::Int(v)) => st.value = Some(Value::Int(scale_last_group(v, multiplier))),
            }
        } else if let Some(&(multiplier, suffix)) = t.multipliers_suffixed.get(current) {
            match st.value.take() {
                None => st.output(format!("{multiplier}{suffix}")),
                Some(Value::Str(v)) => match scaled_integer(&v, multiplier) {
                    Some(Some(n)) => st.output(format!("{n}{suffix}")),
                    _ => {
                        st.output(v);
                        st.output(format!("{multiplier}{suffix}"));
                    }
                },
                Some(Value::Int(v)) => st.output(format!("{}{suffix}", scale_last_group(v, multiplier))),
            }
            st.value = None;
        } else if let Some(&sign) = t.preceding_prefixers.get(current) {
            st.flush_value();
            if next_is_word || next_is_numeric {
                st.prefix = Some(sign.to_string());
            } else {
                st.output(current.to_string());
            }
        } else if let Some(&symbol) = t.following_prefixers.get(current) {
            match st.value.take() {
                Some(v) => {
                    st.prefix = Some(symbol.to_string());
                    st.output(v.text());
                }
                None => st.output(current.to_string()),
            }
        } else if current == "per" || current == "percent" {
            match st.value.take() {
                Some(v) if current == "percent" => st.output(v.text() + "%"),
                Some(v) if next == Some("cent") => {
                    st.output(v.text() + "%");
                    skip = true;
                }
                Some(v) => {
                    st.output(v.text());
                    st.output(current.to_string());
                }
                None => st.output(current.to_string()),
            }
        } else if t.specials.contains(&current) {
            if !next_is_word && !next_is_numeric {
                st.flush_value();
                st.output(current.to_string());
            } else if current == "and" {
                // "and" after hundred/thousand/… belongs to the number ("one hundred and five").
                if !prev.is_some_and(|p| t.multipliers.contains_key(p)) {
                    st.flush_value();
                    st.output(current.to_string());
                }
            } else if current == "double" || current == "triple" {
                let next_word = next.unwrap_or("");
                if t.ones.contains_key(next_word) || t.zeros.contains(&next_word) {
                    let repeats = if current == "double" { 2 } else { 3 };
                    let digit = t.ones.get(next_word).copied().unwrap_or(0).to_string();
                    st.value = Some(Value::Str(Value::text_or_empty(&st.value) + &digit.repeat(repeats)));
                    skip = true;
                } else {
                    st.flush_value();
                    st.output(current.to_string());
                }
            } else if next.is_some_and(|n| t.is_decimal(n)) || next_is_numeric {
                // "point" before a digit word or number starts the decimals; before any other number word the
                // original drops it.
                st.value = Some(Value::Str(Value::text_or_empty(&st.value) + "."));
            }
        }
    }
    st.flush_value();
    st.out
}

/// `value // 1000 * 1000 + (value % 1000) * multiplier`: the multiplier applies to the last three-digit group.
/// On 128-bit overflow the value is kept (Python's integers would not overflow; see the module notes).
fn scale_last_group(value: i128, multiplier: i128) -> i128 {
    let before = value / 1000 * 1000;
    (value % 1000).checked_mul(multiplier).and_then(|r| before.checked_add(r)).unwrap_or(value)
}

fn drop_last(s: &str) -> String {
    let mut s = s.to_string();
    s.pop();
    s
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `preprocess`: "<number> and a half" → "<number> point five", spaces at letter/digit boundaries except before
/// ordinal and plural suffixes.
fn preprocess(s: &str) -> String {
    let t = &*TABLES;
    let segments: Vec<&str> = t.and_a_half.split(s).collect();
    let mut results: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.trim_matches(is_py_space).is_empty() {
            continue;
        }
        results.push(segment);
        if i != segments.len() - 1 {
            let last_word = segment.split(is_py_space).rfind(|w| !w.is_empty()).unwrap_or("");
            if t.is_decimal(last_word) || t.multipliers.contains_key(last_word) {
                results.push("point five");
            } else {
                results.push("and a half");
            }
        }
    }
    let s = results.join(" ");
    let s = t.letter_digit.replace_all(&s, "${1} ${2}");
    let s = t.digit_letter.replace_all(&s, "${1} ${2}");
    t.suffix_space.replace_all(&s, "${1}${2}").into_owned()
}

/// `postprocess`: "$2 and ¢7" → "$2.07", "$0.07" → "¢7", and "1"/"1s" written back as "one"/"ones".
fn postprocess(s: &str) -> String {
    let t = &*TABLES;
    let s = replace_with(&t.cents, s, |c| {
        let cents: u32 = c[3].parse().unwrap_or(0);
        format!("{}{}.{cents:02}", &c[1], &c[2])
    });
    let s = replace_with(&t.only_cents, &s, |c| format!("¢{}", c[1].parse::<u32>().unwrap_or(0)));
    t.one.replace_all(&s, "one${1}").into_owned()
}

/// The whole `EnglishNumberNormalizer.__call__`.
pub(super) fn normalize_numbers(s: &str) -> String {
    let s = preprocess(s);
    let words: Vec<&str> = s.split(is_py_space).filter(|w| !w.is_empty()).collect();
    postprocess(&process_words(&words).join(" "))
}
