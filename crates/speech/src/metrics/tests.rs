//! WER/CER against jiwer 4.0.0 and the normalisers against transformers' copies of Whisper's, on inputs written
//! here and sent to the reference as JSON.

use anyhow::{ensure, Context, Result};
use rand::{Rng as _, SeedableRng};
use suite_core::python::run_python;

use super::*;

/// A seeded generator, so the cases are the same on every run.
type Rng = rand_chacha::ChaCha8Rng;

const VOCAB: &[&str] = &[
    "the", "a", "cat", "sat", "on", "mat", "red", "blue", "green", "three", "seven", "apple", "über", "café", "naïve",
    "日本", "straße", "don't", "it's", "ok", "x", "y", "z", "z", "the", "the",
];

fn sentence(rng: &mut Rng, max_words: usize) -> Vec<String> {
    let n = rng.random_range(0..max_words + 1);
    (0..n).map(|_| VOCAB[rng.random_range(0..VOCAB.len())].to_string()).collect()
}

/// A hypothesis made from the reference by random substitutions, deletions and insertions.
fn corrupt(rng: &mut Rng, words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for w in words {
        match rng.random_range(0..10) {
            0 => {}
            1 => out.push(VOCAB[rng.random_range(0..VOCAB.len())].to_string()),
            2 => {
                out.push(w.clone());
                out.push(VOCAB[rng.random_range(0..VOCAB.len())].to_string());
            }
            3 => out.push(w.chars().rev().collect()),
            _ => out.push(w.clone()),
        }
    }
    out
}

/// Joins words with varied whitespace: single and double spaces, a tab, leading/trailing blanks.
fn join(rng: &mut Rng, words: &[String]) -> String {
    let mut s = String::new();
    if rng.random_range(0..6) == 0 {
        s.push_str("  ");
    }
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            s.push_str(match rng.random_range(0..12) {
                0 => "  ",
                1 => "\t",
                2 => " \n ",
                _ => " ",
            });
        }
        s.push_str(w);
    }
    if rng.random_range(0..6) == 0 {
        s.push(' ');
    }
    s
}

/// jiwer's counts per pair (words and characters) and over the corpus.
const JIWER: &str = r#"
import sys, json, jiwer
pairs = json.load(open(sys.argv[1]))
refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
def counts(o): return [o.substitutions, o.deletions, o.insertions, o.hits]
out = {"wer_pairs": [counts(jiwer.process_words(r, h)) for r, h in pairs],
       "cer_pairs": [counts(jiwer.process_characters(r, h)) for r, h in pairs],
       "wer": counts(jiwer.process_words(refs, hyps)), "cer": counts(jiwer.process_characters(refs, hyps)),
       "wer_rate": jiwer.wer(refs, hyps), "cer_rate": jiwer.cer(refs, hyps)}
print(json.dumps(out))
"#;

fn as_counts(v: &serde_json::Value) -> Result<ErrorCounts> {
    let a: Vec<usize> = serde_json::from_value(v.clone())?;
    Ok(ErrorCounts { substitutions: a[0], deletions: a[1], insertions: a[2], hits: a[3] })
}

#[test]
fn wer_and_cer_match_jiwer() -> Result<()> {
    let mut rng = Rng::seed_from_u64(2024);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for i in 0..400 {
        // Mostly sentence-length pairs; every 50th is long (hundreds of words, over a thousand characters).
        let max = if i % 50 == 7 { 300 } else { 25 };
        let reference = sentence(&mut rng, max);
        let hypothesis =
            if rng.random_range(0..15) == 0 { sentence(&mut rng, 5) } else { corrupt(&mut rng, &reference) };
        let r = if reference.is_empty() && i % 2 == 0 { String::new() } else { join(&mut rng, &reference) };
        pairs.push((r, join(&mut rng, &hypothesis)));
    }
    pairs.push(("a b".into(), "b c".into()));
    pairs.push(("".into(), "".into()));
    pairs.push(("same words here".into(), "same words here".into()));
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pairs.json");
    std::fs::write(&file, serde_json::to_string(&pairs)?)?;
    let out: serde_json::Value = serde_json::from_str(run_python(JIWER, &[file.to_str().context("path")?])?.trim())?;

    let (refs, hyps): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    let mut mismatches = Vec::new();
    for (i, (r, h)) in pairs.iter().enumerate() {
        let w = wer(std::slice::from_ref(r), std::slice::from_ref(h))?;
        let c = cer(std::slice::from_ref(r), std::slice::from_ref(h))?;
        if w != as_counts(&out["wer_pairs"][i])? || c != as_counts(&out["cer_pairs"][i])? {
            mismatches.push(format!("pair {i}: {r:?} / {h:?}: ours {w:?} {c:?}"));
        }
    }
    ensure!(mismatches.is_empty(), "{} of {} pairs differ from jiwer:\n{}", mismatches.len(), pairs.len(), {
        mismatches.truncate(5);
        mismatches.join("\n")
    });
    let w = wer(&refs, &hyps)?;
    let c = cer(&refs, &hyps)?;
    assert_eq!(w, as_counts(&out["wer"])?);
    assert_eq!(c, as_counts(&out["cer"])?);
    assert_eq!(w.rate(), out["wer_rate"].as_f64().context("wer")?);
    assert_eq!(c.rate(), out["cer_rate"].as_f64().context("cer")?);
    println!(
        "{} pairs: corpus WER {:.6} {w:?}, CER {:.6} {c:?}: all counts equal to jiwer",
        pairs.len(),
        w.rate(),
        c.rate()
    );

    assert!(wer(&refs[..2], &hyps[..1]).is_err());
    assert_eq!(wer(&[], &[])?, ErrorCounts::default());
    Ok(())
}

fn compare_with_python(code: &str, cases: &[&str], ours: impl Fn(&str) -> String) -> Result<usize> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_string(cases)?)?;
    let expected: Vec<String> = serde_json::from_str(run_python(code, &[file.to_str().context("path")?])?.trim())?;
    let mut bad = Vec::new();
    for (case, want) in cases.iter().zip(&expected) {
        let got = ours(case);
        if &got != want {
            bad.push(format!("{case:?}: ours {got:?}, reference {want:?}"));
        }
    }
    ensure!(bad.is_empty(), "{} of {} cases differ:\n{}", bad.len(), cases.len(), bad.join("\n"));
    Ok(cases.len())
}

const BASIC: &str = r#"
import sys, json
from transformers.models.whisper.english_normalizer import BasicTextNormalizer
n = BasicTextNormalizer()
print(json.dumps([n(s) for s in json.load(open(sys.argv[1]))]))
"#;

#[test]
fn basic_normalizer_matches_whisper() -> Result<()> {
    let cases = [
        "Hello, World!",
        "  Mixed   CASE\tand\nnewlines  ",
        "Ça va? Très bien — merci!",
        "Grüße aus Köln (leise) [Musik] <unk> weiter",
        "¿Dónde está la biblioteca? ¡Aquí!",
        "Он сказал: «Привет, мир!»",
        "日本語のテキスト、句読点。",
        "ﬁnance ½ ² ℃ ™ ①",
        "co-operate; e.g. it's 5% (approx.) $3.50 & more...",
        "emoji 🙂 are symbols 👍🏽",
        "naïve café résumé",
        "ΣΊΣΥΦΟΣ ΟΔΟΣ",
        "tabs\u{a0}nbsp\u{2003}em\u{3000}ideographic",
        "unbalanced ( bracket and [ square",
        "nested (a (b) c) and [x [y] z]",
        "",
        "a\u{301}e\u{308} combining",
        "हिन्दी में वाक्य।",
        "مرحبا بالعالم، كيف حالك؟",
        "x\u{1c}y\u{1f}z",
    ];
    let n = compare_with_python(BASIC, &cases, normalize_basic)?;
    println!("normalize_basic: {n} cases equal to BasicTextNormalizer");
    Ok(())
}

/// transformers' class needs the spelling map that Whisper checkpoints ship as `normalizer.json`; it is the same
/// list we embed (OpenAI's `english.json`), passed in here.
const ENGLISH: &str = r#"
import sys, json
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
spelling = json.load(open(sys.argv[2]))
n = EnglishTextNormalizer(spelling)
print(json.dumps([n(s) for s in json.load(open(sys.argv[1]))]))
"#;

#[test]
fn english_normalizer_matches_whisper() -> Result<()> {
    let cases = [
        "Hello, World!",
        "I won't go, can't stop, let's see; y'all wanna dance? We're gonna!",
        "Mr. Smith and Dr. Jones met St. John's Capt. Hook.",
        "He'd been there; she's gone; they'd done it; it's got nothing.",
        "Um, I think, uh, hmm, it's fine. Mhm.",
        "twenty one",
        "one hundred and five",
        "two thousand and twenty three",
        "nineteen eighty four",
        "one oh one",
        "double seven",
        "triple zero",
        "three point one four",
        "two and a half",
        "one and a half million",
        "five dollars and twenty cents",
        "twenty five percent",
        "fifty per cent",
        "minus seven degrees",
        "the first, second and third place",
        "the twenty first century",
        "the nineteen sixties",
        "sixes and sevens",
        "one two three four",
        "it costs $20 million",
        "a 1960s car",
        "32nd street",
        "$1.50 or £3",
        "$0.05",
        "3,000,000 people and 1,234.5 units",
        "version 1.2.3 of the app",
        "one",
        "ones and twos",
        "a hundred",
        "a thousand points of light",
        "Catalogue of the colour grey, organised by theatre.",
        "The labour party's defence of the centre",
        "naïve café ﬁnance",
        "(inaudible) [laughter] okay <noise>",
        "point five",
        "zero",
        "hundreds of thousands",
        "five hundredths",
        "it's eleven o'clock",
        "Rev. Dr. Martin Luther King Jr.",
        "I'ma go, imma stay, shoulda coulda woulda",
        "ma'am",
        "room 101, suite 2b, 3rd floor",
        "forty two",
        "seventy seven thousand",
        "ninety ninth",
    ];
    let dir = tempfile::tempdir()?;
    let spelling = dir.path().join("english.json");
    std::fs::write(&spelling, include_str!("english_spelling.json"))?;
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_string(&cases[..])?)?;
    let args = [file.to_str().context("path")?, spelling.to_str().context("path")?];
    let expected: Vec<String> = serde_json::from_str(run_python(ENGLISH, &args)?.trim())?;
    let mut bad = Vec::new();
    for (case, want) in cases.iter().zip(&expected) {
        let got = normalize_english(case);
        if &got != want {
            bad.push(format!("{case:?}: ours {got:?}, reference {want:?}"));
        }
    }
    ensure!(bad.is_empty(), "{} of {} cases differ:\n{}", bad.len(), cases.len(), bad.join("\n"));
    println!("normalize_english: {} cases equal to EnglishTextNormalizer", cases.len());
    Ok(())
}
