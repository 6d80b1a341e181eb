//! Lengths in tokens of the model's tokenizer, special tokens included, without truncation, against the sequence
//! length training will cut to: the histogram per split, how many examples lose their end, and empty texts.

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use suite_core::quality::report::{histogram, Chart, ChartSeries, Section, Severity, Table};
use tokenizers::{EncodeInput, InputSequence};

use super::read::{Body, Data, Example};
use crate::data::TextTokenizer;

/// Share of truncated examples from which a warning is given.
pub const TRUNCATION_WARNING: f64 = 0.05;

/// Tokens of an example as training would see it before truncation (QA: question and context in one sequence).
pub fn untruncated_len(tok: &TextTokenizer, e: &Example) -> Result<usize> {
    let input: EncodeInput = match &e.body {
        Body::Classify(c) => match c.text_pair.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => EncodeInput::Dual(c.text.as_str().into(), p.into()),
            None => EncodeInput::Single(c.text.as_str().into()),
        },
        Body::Ner(s, _) => EncodeInput::Single(InputSequence::from(s.tokens.as_slice())),
        Body::Qa(q) => EncodeInput::Dual(q.question.trim_start().into(), q.context.as_str().into()),
    };
    Ok(tok.inner().encode_char_offsets(input, true).map_err(|e| anyhow!("tokenizing: {e}"))?.len())
}

/// Whether an example has nothing to read: an empty text (or pair text of a pair column), question or context.
pub fn is_empty(e: &Example) -> bool {
    match &e.body {
        Body::Classify(c) => c.text.trim().is_empty() || c.text_pair.as_deref().is_some_and(|p| p.trim().is_empty()),
        Body::Ner(s, _) => s.tokens.is_empty(),
        Body::Qa(q) => q.question.trim().is_empty() || q.context.trim().is_empty(),
    }
}

/// The value at quantile `q` of sorted values (nearest rank).
fn quantile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Builds the section.
pub fn section(data: &Data, tok: &TextTokenizer, max_len: usize) -> Result<Section> {
    let mut s = Section::new("lengths", "Lengths in tokens");
    let qa = data.examples.iter().any(|e| matches!(e.body, Body::Qa(_)));
    let lens: Vec<usize> = data
        .examples
        .iter()
        .enumerate()
        .map(|(i, e)| untruncated_len(tok, e).with_context(|| data.place(i)))
        .collect::<Result<_>>()?;
    s.stat("max_len", max_len);
    let m = max_len as f64;
    let edges = [0.0, m / 4.0, m / 2.0, 3.0 * m / 4.0, m + 1.0, 2.0 * m + 1.0, 4.0 * m + 1.0, 8.0 * m + 1.0];
    let mut labels = vec![];
    let mut series = vec![];
    let mut per_split = serde_json::Map::new();
    let mut truncated_total = 0;
    let mut worst: Option<(String, f64, usize)> = None;
    for (sp, split) in data.splits.iter().enumerate() {
        let mut v: Vec<usize> = (0..lens.len()).filter(|&i| data.examples[i].split == sp).map(|i| lens[i]).collect();
        v.sort_unstable();
        let (l, counts) = histogram(&v.iter().map(|&x| x as f64).collect::<Vec<_>>(), &edges);
        labels = l;
        series.push(ChartSeries { name: split.clone(), values: counts });
        let truncated = v.iter().filter(|&&x| x > max_len).count();
        truncated_total += truncated;
        let rate = if v.is_empty() { 0.0 } else { truncated as f64 / v.len() as f64 };
        let p95 = quantile(&v, 0.95);
        per_split.insert(
            split.clone(),
            json!({
                "examples": v.len(),
                "mean": if v.is_empty() { 0.0 } else { v.iter().sum::<usize>() as f64 / v.len() as f64 },
                "median": quantile(&v, 0.5),
                "p95": p95,
                "max": v.last().copied().unwrap_or(0),
                "over_max_len": truncated,
                "over_max_len_rate": rate,
            }),
        );
        if truncated > 0 && worst.as_ref().is_none_or(|w| rate > w.1) {
            worst = Some((split.clone(), rate, p95));
        }
    }
    // Bins are [a, b): the bin that starts at max_len + 1 holds the examples that are cut.
    s.charts.push(Chart {
        title: format!("Tokens per example (max_len {max_len}; bins from {} on are cut)", max_len + 1),
        x_label: "tokens".into(),
        y_label: "examples".into(),
        labels,
        series,
    });
    s.stat("per_split", per_split);
    s.stat("over_max_len", truncated_total);
    let rate = truncated_total as f64 / lens.len().max(1) as f64;
    s.stat("over_max_len_rate", rate);
    match worst {
        Some((split, split_rate, _)) if qa => s.advise(
            Severity::Info,
            format!(
                "{truncated_total} question(s) with their context ({:.1} %) exceed max_len {max_len} tokens and are \
                 cut into overlapping windows ({split}: {:.1} %)",
                rate * 100.0,
                split_rate * 100.0
            ),
            "windows keep every answer that fits one of them; answers no window holds are listed under Answers",
        ),
        Some((split, split_rate, p95)) => {
            let sev = if split_rate >= TRUNCATION_WARNING { Severity::Warning } else { Severity::Info };
            let suggest = p95.div_ceil(32) * 32;
            s.advise(
                sev,
                format!(
                    "{truncated_total} example(s) ({:.1} %) are longer than max_len {max_len} tokens and lose their \
                     end ({split}: {:.1} %; 95 % of {split} fits in {p95})",
                    rate * 100.0,
                    split_rate * 100.0
                ),
                format!(
                    "raise --max-len to about {suggest} (longer sequences cost time and memory), or make sure the \
                     label can be read from the beginning of each text"
                ),
            )
        }
        None => s.note(Severity::Ok, format!("every example fits in max_len {max_len} tokens")),
    };
    let empty: Vec<usize> = (0..data.examples.len()).filter(|&i| is_empty(&data.examples[i])).collect();
    s.stat("empty", empty.len());
    if !empty.is_empty() {
        s.advise(
            Severity::Warning,
            format!("{} example(s) have an empty text", empty.len()),
            "an empty text teaches nothing but its label's prior: fill in the text or drop the row",
        );
        s.tables.push(Table {
            title: "empty texts".into(),
            columns: vec!["split".into(), "item".into()],
            rows: empty.iter().map(|&i| vec![data.splits[data.examples[i].split].clone(), data.name(i)]).collect(),
        });
    }
    Ok(s)
}
