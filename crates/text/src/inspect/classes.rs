//! Examples per label (classification) or entities per type (NER), per split: the bar chart, the imbalance of the
//! training split, labels that one split has and another lacks, and rows the single-label trainer would refuse.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use suite_core::quality::report::{Chart, ChartSeries, Section, Severity, Table};

use super::read::{Body, Data};
use crate::task::TextTaskKind;

/// Imbalance (largest over smallest training count) from which a warning is given.
pub const IMBALANCE_WARNING: f64 = 10.0;
/// Imbalance from which it is worth a note.
pub const IMBALANCE_INFO: f64 = 3.0;
/// Fewer training examples than this of a label are too few to learn it.
pub const FEW_EXAMPLES: usize = 10;

/// The entity spans of NER tags as their types, in order: an entity starts at `B-X`/`S-X`, or at an `I-X`/`E-X`
/// that does not continue an entity of type X (seqeval's lenient reading).
pub fn entity_types(tags: &[String]) -> Vec<String> {
    let mut out = vec![];
    let mut previous: Option<(char, &str)> = None;
    for tag in tags {
        let parsed = tag.split_once('-').and_then(|(p, t)| {
            let p = p.chars().next().filter(|c| p.len() == 1 && "BIES".contains(*c))?;
            (!t.is_empty()).then_some((p, t))
        });
        if let Some((p, t)) = parsed {
            let continues = matches!(previous, Some((q, u)) if u == t && (q == 'B' || q == 'I'));
            if p == 'B' || p == 'S' || !continues {
                out.push(t.to_string());
            }
        }
        previous = parsed;
    }
    out
}

/// Builds the section.
pub fn section(data: &Data, task: TextTaskKind, multi_label: bool) -> Section {
    let ner = task == TextTaskKind::Ner;
    let (id, title, what) =
        if ner { ("entities", "Entities per type", "entity type") } else { ("labels", "Examples per label", "label") };
    let mut s = Section::new(id, title);
    let n_splits = data.splits.len();
    // label -> count per split
    let mut counts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut several = vec![];
    for (i, e) in data.examples.iter().enumerate() {
        let labels = match &e.body {
            Body::Classify(c) => {
                if c.labels.len() > 1 && !multi_label {
                    several.push(i);
                }
                c.labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect()
            }
            Body::Ner(sentence, _) => entity_types(&sentence.tags),
            Body::Qa(_) => vec![],
        };
        for l in labels {
            counts.entry(l).or_insert_with(|| vec![0; n_splits])[e.split] += 1;
        }
    }
    // Largest training count first, so the chart reads from common to rare.
    let mut order: Vec<(&String, &Vec<usize>)> = counts.iter().collect();
    order.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(b.0)));
    s.charts.push(Chart {
        title: format!("{} per {what} and split", if ner { "Entities" } else { "Examples" }),
        x_label: what.into(),
        y_label: if ner { "entities" } else { "examples" }.into(),
        labels: order.iter().map(|(l, _)| (*l).clone()).collect(),
        series: (0..n_splits)
            .map(|sp| ChartSeries {
                name: data.splits[sp].clone(),
                values: order.iter().map(|(_, c)| c[sp] as f64).collect(),
            })
            .collect(),
    });
    let per_label: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(l, c)| {
            (l.clone(), json!((0..n_splits).map(|sp| (data.splits[sp].clone(), c[sp])).collect::<BTreeMap<_, _>>()))
        })
        .collect();
    s.stat(if ner { "types" } else { "labels" }, counts.len());
    s.stat("counts", per_label);
    if counts.is_empty() {
        if ner {
            s.advise(
                Severity::Warning,
                "no entities in any split: every tag is O",
                "check the tag column of the files",
            );
        }
        return s;
    }

    let train: Vec<(&String, usize)> = order.iter().map(|(l, c)| (*l, c[0])).filter(|(_, n)| *n > 0).collect();
    if let (Some(max), Some(min)) = (train.first(), train.last()) {
        let ratio = max.1 as f64 / min.1.max(1) as f64;
        s.stat("imbalance_ratio", ratio);
        let msg =
            format!("the training split is imbalanced {ratio:.1}:1 ({} `{}` vs {} `{}`)", max.1, max.0, min.1, min.0);
        let advice = "judge the model by macro-F1 (per-label scores) rather than accuracy; collect more examples of \
                      the rare labels, or oversample them";
        if ratio >= IMBALANCE_WARNING {
            s.advise(Severity::Warning, msg, advice);
        } else if ratio >= IMBALANCE_INFO {
            s.advise(Severity::Info, msg, advice);
        } else {
            s.note(
                Severity::Ok,
                format!("the training split is balanced within {ratio:.1}:1 over {} {what}s", train.len()),
            );
        }
        let few: Vec<String> =
            train.iter().filter(|(_, n)| *n < FEW_EXAMPLES).map(|(l, n)| format!("`{l}` ({n})")).collect();
        if !few.is_empty() {
            s.advise(
                Severity::Warning,
                format!("{} {what}(s) have fewer than {FEW_EXAMPLES} training examples: {}", few.len(), few.join(", ")),
                "a model rarely learns a label from a handful of examples: collect more, or merge the label into a \
                 related one",
            );
        }
    }
    for sp in 1..n_splits {
        let unseen: Vec<&String> = counts.iter().filter(|(_, c)| c[sp] > 0 && c[0] == 0).map(|(l, _)| l).collect();
        if !unseen.is_empty() {
            s.advise(
                Severity::Problem,
                format!(
                    "{} {what}(s) of the {} split never occur in train: {}",
                    unseen.len(),
                    data.splits[sp],
                    list(&unseen)
                ),
                "the model can only predict what it was trained on (suite finetune text refuses unknown labels): \
                 add training examples of them, or fix their spelling",
            );
        }
        let missing: Vec<&String> = counts.iter().filter(|(_, c)| c[0] > 0 && c[sp] == 0).map(|(l, _)| l).collect();
        if !missing.is_empty() {
            s.advise(
                Severity::Warning,
                format!(
                    "{} {what}(s) of train are missing from the {} split: {}",
                    missing.len(),
                    data.splits[sp],
                    list(&missing)
                ),
                format!("the {} scores say nothing about them: add examples of them to that split", data.splits[sp]),
            );
        }
    }
    if !several.is_empty() {
        s.stat("rows_with_several_labels", several.len());
        s.advise(
            Severity::Problem,
            format!("{} row(s) carry several labels but the task is single-label", several.len()),
            "suite finetune text refuses them: pass --multi-label, or keep one label per row",
        );
        s.tables.push(Table {
            title: "rows with several labels".into(),
            columns: vec!["split".into(), "item".into(), "labels".into()],
            rows: several
                .iter()
                .map(|&i| {
                    vec![data.splits[data.examples[i].split].clone(), data.name(i), data.examples[i].labels().join("|")]
                })
                .collect(),
        });
    }
    s
}

/// Up to 20 names in backquotes.
fn list(names: &[&String]) -> String {
    let mut shown: Vec<String> = names.iter().take(20).map(|n| format!("`{n}`")).collect();
    if names.len() > 20 {
        shown.push(format!("… {} more", names.len() - 20));
    }
    shown.join(", ")
}
