//! Duplicates and conflicting labels. Exact duplicates share their normalised text (Unicode lowercase, punctuation
//! removed, whitespace collapsed: pairs both texts, NER the word sequence, QA question and context); near
//! duplicates reach `--near-jaccard` over character 5-grams (MinHash, confirmed exactly; QA: questions about the
//! same context). Both are reported within and across splits; the same normalised text given different labels is
//! a conflict.

use std::collections::HashMap;

use anyhow::Result;
use suite_core::quality::duplicates::{exact_groups, groups_from_pairs, report_groups, Items};
use suite_core::quality::minhash::{find_near_duplicates, jaccard, normalize, shingles, MinHashConfig};
use suite_core::quality::report::{Section, Severity, Table};

use super::read::{Body, Data, Example};

/// Separates the parts of a key (a pair's two texts), so that ("a b", "c") and ("a", "b c") differ.
const PART: char = '\u{1}';

/// The normalised text an exact duplicate shares; empty when the example has no text.
pub fn exact_key(e: &Example) -> String {
    match &e.body {
        Body::Classify(c) => match &c.text_pair {
            Some(p) => format!("{}{PART}{}", normalize(&c.text), normalize(p)),
            None => normalize(&c.text),
        },
        Body::Ner(s, _) => normalize(&s.tokens.join(" ")),
        Body::Qa(q) => format!("{}{PART}{}", normalize(&q.question), normalize(&q.context)),
    }
}

/// The text near duplicates are measured on (QA: the question; pairs: both texts).
pub fn near_text(e: &Example) -> String {
    match &e.body {
        Body::Classify(c) => match &c.text_pair {
            Some(p) => format!("{} {PART} {p}", c.text),
            None => c.text.clone(),
        },
        Body::Ner(s, _) => s.tokens.join(" "),
        Body::Qa(q) => q.question.clone(),
    }
}

/// The "duplicates" section, and the "label_conflicts" section for labelled tasks.
pub fn sections(data: &Data, near_jaccard: f64) -> Result<(Section, Option<Section>)> {
    let mut s = Section::new("duplicates", "Duplicates");
    let n = data.examples.len();
    let keys: Vec<String> = data.examples.iter().map(exact_key).collect();
    // Examples without text are reported as empty, not as copies of each other.
    let unique_if_empty: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| if k.replace(PART, "").is_empty() { format!("{PART}{PART}{i}") } else { k.clone() })
        .collect();
    let exact = exact_groups(&unique_if_empty);
    let split_of: Vec<usize> = data.examples.iter().map(|e| e.split).collect();
    let names: Vec<String> = (0..n).map(|i| data.name(i)).collect();
    let items = Items { splits: &data.splits, split_of: &split_of, names: &names };
    let exact_counts = report_groups(&mut s, "exact", &items, &exact, &|_, _| "same normalised text".to_string());

    let texts: Vec<String> = data.examples.iter().map(near_text).collect();
    let config = MinHashConfig { threshold: near_jaccard, ..MinHashConfig::default() };
    let near = find_near_duplicates(&texts, &config)?;
    s.stat("near_candidates_compared", near.candidates);
    let contexts: Option<Vec<String>> = data
        .examples
        .iter()
        .map(|e| match &e.body {
            Body::Qa(q) => Some(normalize(&q.context)),
            _ => None,
        })
        .collect();
    let mut similarity: HashMap<(usize, usize), f64> = HashMap::new();
    for p in &near.pairs {
        // Exact copies are already listed; QA questions are near duplicates only about the same context.
        let same_context = contexts.as_ref().is_none_or(|c| c[p.a] == c[p.b]);
        if unique_if_empty[p.a] != unique_if_empty[p.b] && same_context {
            similarity.insert((p.a, p.b), p.jaccard);
        }
    }
    let near_groups = groups_from_pairs(n, similarity.keys().copied());
    let jaccard_of = |a: usize, b: usize| {
        let (a, b) = (a.min(b), a.max(b));
        let j = similarity.get(&(a, b)).copied().unwrap_or_else(|| {
            jaccard(&shingles(&normalize(&texts[a]), config.ngram), &shingles(&normalize(&texts[b]), config.ngram))
        });
        format!("Jaccard {j:.3}")
    };
    let near_counts = report_groups(&mut s, "near", &items, &near_groups, &jaccard_of);
    s.stat("near_jaccard", near_jaccard);
    if let Some(c) = &contexts {
        shared_contexts(&mut s, data, c);
    }
    if exact_counts.groups_across + exact_counts.groups_within + near_counts.groups_across + near_counts.groups_within
        == 0
    {
        s.note(Severity::Ok, format!("no exact or near duplicates (Jaccard ≥ {near_jaccard})"));
    }
    let conflicts = match data.examples.first().map(|e| &e.body) {
        Some(Body::Qa(_)) | None => None,
        Some(_) => Some(conflict_section(data, &exact, &names)),
    };
    Ok((s, conflicts))
}

/// QA: paragraphs that occur in several splits (the model reads a test context it trained on).
fn shared_contexts(s: &mut Section, data: &Data, contexts: &[String]) {
    let mut splits_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for (e, c) in data.examples.iter().zip(contexts) {
        let v = splits_of.entry(c.as_str()).or_default();
        if !v.contains(&e.split) {
            v.push(e.split);
        }
    }
    let shared = splits_of.values().filter(|v| v.len() > 1).count();
    s.stat("contexts_across_splits", shared);
    if shared > 0 {
        s.advise(
            Severity::Warning,
            format!("{shared} context paragraph(s) occur in more than one split"),
            "questions about a paragraph seen in training are easier: split by paragraph (or article) for an honest \
             held-out score",
        );
    }
}

/// Texts that are the same after normalisation but carry different labels.
fn conflict_section(data: &Data, exact: &[Vec<usize>], names: &[String]) -> Section {
    let mut s = Section::new("label_conflicts", "Conflicting labels");
    let label_key = |i: usize| {
        let mut l = data.examples[i].labels();
        if matches!(data.examples[i].body, Body::Classify(_)) {
            l.sort();
        }
        l.join(if matches!(data.examples[i].body, Body::Ner(..)) { " " } else { "|" })
    };
    let mut rows = vec![];
    let mut groups = 0;
    let mut examples = 0;
    for members in exact {
        let first = label_key(members[0]);
        if members.iter().all(|&m| label_key(m) == first) {
            continue;
        }
        groups += 1;
        examples += members.len();
        for &m in members {
            rows.push(vec![
                groups.to_string(),
                data.splits[data.examples[m].split].clone(),
                names[m].clone(),
                label_key(m),
            ]);
        }
    }
    s.stat("conflicting_groups", groups);
    s.stat("conflicting_examples", examples);
    if groups > 0 {
        s.advise(
            Severity::Problem,
            format!("{groups} text(s) occur with different labels ({examples} examples)"),
            "decide the right label for each and fix the others (or drop the copies): the model is trained towards \
             both answers and scored against one",
        );
        s.tables.push(Table {
            title: "texts with conflicting labels".into(),
            columns: ["group", "split", "item", "labels"].map(String::from).to_vec(),
            rows,
        });
    } else {
        s.note(Severity::Ok, "no text occurs with different labels");
    }
    s
}
