//! The text sections: languages per split, and transcripts against the Whisper tokenizer (length, faithful
//! encoding, emptiness) and against their audio (speaking rate).

use std::collections::{BTreeMap, BTreeSet};

use suite_core::quality::minhash::normalize;
use suite_core::quality::report::{Section, Severity};

use super::audio::{clip_table, split_counts, split_histogram};
use super::{pct, Scanned};
use crate::tokenizer::Task;

/// Label used for rows without a language.
const NO_LANGUAGE: &str = "(none)";
/// Least number of rated clips (per language, else overall) before speaking-rate outliers are judged.
const MIN_RATED: usize = 8;
/// A clip's speaking rate must differ from the median by at least this factor to be listed, however uniform the
/// data set (synthetic speech varies little).
const MIN_RATE_FACTOR: f64 = 1.5;
/// …and by this many robust standard deviations (1.4826 · MAD) of log rates.
const RATE_SIGMAS: f64 = 4.0;

/// Examples per language and split; rows finetune would refuse (no language, unknown language); languages
/// evaluated but never trained on.
pub(super) fn languages_section(data: &Scanned) -> Section {
    let mut s = Section::new("languages", "Languages");
    let tok = &data.tokenizer;
    let keys: Vec<(usize, String)> =
        data.clips.iter().map(|c| (c.split, c.language.clone().unwrap_or_else(|| NO_LANGUAGE.into()))).collect();
    let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (sp, lang) in &keys {
        *counts.entry(lang.as_str()).or_default().entry(data.splits[*sp].as_str()).or_default() += 1;
    }
    s.stat("examples", &counts).stat("languages", counts.len());
    let missing: Vec<(usize, Vec<String>)> =
        data.clips.iter().enumerate().filter(|(_, c)| c.language.is_none()).map(|(i, _)| (i, vec![])).collect();
    let unknown: Vec<(usize, Vec<String>)> = data
        .clips
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let lang = c.language.as_deref()?;
            let err = tok.prompt(lang, Task::Transcribe).err()?;
            // The tokenizer's message lists every known code; the language itself is enough here.
            let why = format!("{err:#}");
            let why = why.split("; known:").next().unwrap_or(&why).to_string();
            Some((i, vec![lang.to_string(), why]))
        })
        .collect();
    s.stat("rows_without_language", missing.len()).stat("rows_with_unknown_language", unknown.len());
    if !missing.is_empty() {
        s.advise(
            Severity::Problem,
            format!("{} row(s) have no language and no --language was given", missing.len()),
            "add a \"language\" field to these rows or pass --language CODE: `suite finetune speech` refuses rows \
             without one",
        );
        s.tables.push(clip_table(data, "rows without a language", &[], missing));
    }
    if !unknown.is_empty() {
        s.advise(
            Severity::Problem,
            format!("{} row(s) name a language the Whisper tokenizer does not know", unknown.len()),
            "use Whisper's codes (ISO 639-1 such as en, de, fr; `suite finetune speech` refuses other codes)",
        );
        s.tables.push(clip_table(data, "rows with an unknown language", &["language", "reason"], unknown));
    }
    if data.splits.len() > 1 {
        let train = data.splits[0].as_str();
        let untrained: Vec<&str> =
            counts.iter().filter(|(l, by)| **l != NO_LANGUAGE && !by.contains_key(train)).map(|(l, _)| *l).collect();
        if !untrained.is_empty() {
            s.advise(
                Severity::Warning,
                format!("language(s) {} are evaluated but absent from {train}", untrained.join(", ")),
                "add training examples of these languages, or expect their held-out error to show the base model only",
            );
        }
    }
    let listed: Vec<String> = counts
        .iter()
        .take(12)
        .map(|(l, by)| {
            let per: Vec<String> =
                data.splits.iter().map(|sp| format!("{sp} {}", by.get(sp.as_str()).unwrap_or(&0))).collect();
            format!("{l} ({})", per.join(", "))
        })
        .collect();
    let more = if counts.len() > 12 { format!(" and {} more", counts.len() - 12) } else { String::new() };
    s.note(Severity::Info, format!("{} language(s): {}{more}", counts.len(), listed.join("; ")));
    s.charts.push(split_counts(data, &keys, "examples per language", "language", "examples"));
    s
}

/// What the tokenizer made of one transcript.
struct Encoded {
    /// Decoder row length: prompt + text tokens + `<|endoftext|>`.
    tokens: usize,
    /// How encode → decode changed the text, when it did.
    changed: Option<String>,
    /// Characters of the text missing from its round trip.
    lost: Vec<char>,
}

fn encode(data: &Scanned, text: &str, language: Option<&str>) -> Result<Encoded, String> {
    let tok = &data.tokenizer;
    let prompt = tok
        .prompt(language.unwrap_or("en"), Task::Transcribe)
        .map(|p| p.len())
        .unwrap_or(if tok.is_multilingual() { 4 } else { 2 });
    // As `labelled_clips` builds the label row: the trimmed text, after a space.
    let text = text.trim();
    let ids = tok.encode_text(text).map_err(|e| format!("{e:#}"))?;
    let back = tok.decode_text(&ids).map_err(|e| format!("{e:#}"))?;
    let back = back.strip_prefix(' ').unwrap_or(&back);
    let changed = (back != text).then(|| changed_chars(text, back));
    let kept: BTreeSet<char> = back.chars().collect();
    let lost = text.chars().filter(|c| !kept.contains(c)).collect::<BTreeSet<char>>().into_iter().collect();
    Ok(Encoded { tokens: prompt + ids.len() + 1, changed, lost })
}

/// The characters that differ between a text and its round trip, as `'x' U+0078`; whitespace or order changes
/// when the character sets agree.
pub(super) fn changed_chars(original: &str, back: &str) -> String {
    let a: BTreeSet<char> = original.chars().collect();
    let b: BTreeSet<char> = back.chars().collect();
    let show = |c: &char| format!("{c:?} U+{:04X}", u32::from(*c));
    let lost: Vec<String> = a.difference(&b).map(show).collect();
    let added: Vec<String> = b.difference(&a).map(show).collect();
    match (lost.is_empty(), added.is_empty()) {
        (true, true) => "same characters, different order or spacing".into(),
        (false, true) => format!("lost {}", lost.join(", ")),
        (true, false) => format!("added {}", added.join(", ")),
        (false, false) => format!("lost {}; added {}", lost.join(", "), added.join(", ")),
    }
}

/// Token lengths against the decoder's limit, characters the tokenizer does not round-trip, empty transcripts and
/// speaking-rate outliers.
pub(super) fn transcripts_section(data: &Scanned) -> Section {
    let mut s = Section::new("transcripts", "Transcripts");
    let max = data.max_tokens;
    let mut lengths: Vec<(usize, f64)> = vec![];
    let (mut over, mut changed, mut empty) = (vec![], vec![], vec![]);
    let mut lost_chars: BTreeMap<char, usize> = BTreeMap::new();
    for (i, c) in data.clips.iter().enumerate() {
        let text = &c.example.text;
        if text.trim().is_empty() {
            empty.push((i, vec![]));
            continue;
        }
        match encode(data, text, c.language.as_deref()) {
            Ok(e) => {
                lengths.push((c.split, e.tokens as f64));
                if e.tokens > max {
                    over.push((i, vec![e.tokens.to_string()]));
                }
                if let Some(why) = e.changed {
                    for ch in e.lost {
                        *lost_chars.entry(ch).or_default() += 1;
                    }
                    changed.push((i, vec![why]));
                }
            }
            Err(why) => changed.push((i, vec![format!("cannot encode: {why}")])),
        }
    }
    let n = data.clips.len();
    let mut sorted: Vec<f64> = lengths.iter().map(|(_, l)| *l).collect();
    sorted.sort_by(f64::total_cmp);
    s.stat("tokenizer", data.tokenizer.path().display().to_string())
        .stat("max_tokens", max)
        .stat("empty", empty.len())
        .stat("over_token_limit", over.len())
        .stat("not_round_tripped", changed.len())
        .stat("characters_not_round_tripped", lost_chars.keys().map(|c| c.to_string()).collect::<Vec<_>>());
    if let (Some(lo), Some(hi)) = (sorted.first(), sorted.last()) {
        s.stat("tokens_min", lo)
            .stat("tokens_median", sorted[sorted.len() / 2])
            .stat("tokens_p95", sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)])
            .stat("tokens_max", hi);
    }
    if !empty.is_empty() {
        s.advise(
            Severity::Warning,
            format!("{} of {n} transcripts are empty ({})", empty.len(), pct(empty.len(), n)),
            "fill them in, or drop the rows unless the clips really hold no speech (then they teach Whisper to \
             write nothing, which is only wanted for non-speech audio)",
        );
        s.tables.push(clip_table(data, "empty transcripts", &[], empty));
    }
    if !over.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} transcript(s) need more than the decoder's {max} tokens (prompt and end token included)",
                over.len()
            ),
            "`suite finetune speech` cuts these label rows at 448 tokens, so their end is never learned: split the \
             clip and its transcript into shorter segments",
        );
        s.tables.push(clip_table(data, "transcripts over the token limit", &["tokens"], over));
    }
    if !changed.is_empty() {
        let chars: Vec<String> =
            lost_chars.iter().map(|(c, k)| format!("{c:?} U+{:04X} ({k}×)", u32::from(*c))).collect();
        s.advise(
            Severity::Warning,
            format!(
                "{} transcript(s) do not survive the tokenizer's encode → decode round trip{}",
                changed.len(),
                if chars.is_empty() { String::new() } else { format!(": {}", chars.join(", ")) }
            ),
            "the model is taught something other than the text: replace these characters (normalise Unicode, \
             spell out symbols) or remove text that looks like special tokens (<|…|>)",
        );
        s.tables.push(clip_table(data, "transcripts the tokenizer changes", &["difference"], changed));
    }
    if let (Some(lo), Some(hi)) = (sorted.first(), sorted.last()) {
        s.note(
            Severity::Info,
            format!(
                "decoder rows take {lo}-{hi} tokens (median {}) of the {max} the decoder allows, prompt and end token \
                 included",
                sorted[sorted.len() / 2]
            ),
        );
    }
    speaking_rate(data, &mut s);
    let mut edges = vec![0.0, 16.0, 32.0, 64.0, 128.0, 256.0, max as f64];
    if sorted.last().is_some_and(|&m| m > max as f64) {
        edges.push(sorted[sorted.len() - 1] + 1.0);
    }
    s.charts.push(split_histogram(data, &lengths, &edges, "decoder row length (Whisper tokens)", "tokens", "examples"));
    s
}

/// Characters per second of non-silent audio, compared with the median of the clip's language: a clip far off is
/// most often a wrong sample rate in its header (the audio plays too fast or too slow), audio cut short, or the
/// transcript of another clip.
fn speaking_rate(data: &Scanned, s: &mut Section) {
    let rated: Vec<(usize, String, f64)> = data
        .readable()
        .filter_map(|(i, c, a)| {
            let chars = normalize(&c.example.text).chars().filter(|ch| !ch.is_whitespace()).count();
            let voiced = a.duration_s * (1.0 - a.silence);
            (chars > 0 && voiced > 0.0)
                .then(|| (i, c.language.clone().unwrap_or_default(), chars as f64 / voiced.max(0.1)))
        })
        .collect();
    if rated.len() < MIN_RATED {
        return;
    }
    let stats = |logs: &mut Vec<f64>| -> (f64, f64) {
        logs.sort_by(f64::total_cmp);
        let med = logs[logs.len() / 2];
        let mut dev: Vec<f64> = logs.iter().map(|l| (l - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        (med, dev[dev.len() / 2] * 1.4826)
    };
    let mut all: Vec<f64> = rated.iter().map(|(_, _, r)| r.ln()).collect();
    let overall = stats(&mut all);
    let mut by_lang: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (_, l, r) in &rated {
        by_lang.entry(l.as_str()).or_default().push(r.ln());
    }
    let centre: BTreeMap<&str, (f64, f64)> = by_lang
        .into_iter()
        .map(|(l, mut logs)| (l, if logs.len() >= MIN_RATED { stats(&mut logs) } else { overall }))
        .collect();
    let mut outliers = vec![];
    for (i, l, r) in &rated {
        let (med, sigma) = centre.get(l.as_str()).copied().unwrap_or(overall);
        let limit = (RATE_SIGMAS * sigma).max(MIN_RATE_FACTOR.ln());
        if (r.ln() - med).abs() > limit {
            outliers.push((*i, vec![format!("{r:.1}"), format!("{:.1}", med.exp())]));
        }
    }
    s.stat("median_chars_per_second", overall.0.exp()).stat("speaking_rate_outliers", outliers.len());
    if !outliers.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} clip(s) have a speaking rate far from their language's median ({:.1} characters per second of \
                 non-silent audio overall)",
                outliers.len(),
                overall.0.exp()
            ),
            "listen to them: a header with the wrong sample rate (audio too fast or slow), audio cut short, or the \
             transcript of another clip",
        );
        s.tables.push(clip_table(data, "speaking-rate outliers", &["chars/s", "median chars/s"], outliers));
    }
}
