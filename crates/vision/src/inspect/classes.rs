//! The "classes" section: examples per class and split, the imbalance of each split, classes that one split has
//! and another lacks, and very small classes.

use serde_json::json;
use suite_core::quality::report::{Chart, ChartSeries, Section, Severity, Table};

use super::splits::Data;

/// Largest / smallest class size above which a split counts as imbalanced.
pub const IMBALANCE_WARN: f64 = 3.0;
/// Training examples below which a class is too small to learn reliably.
pub const SMALL_CLASS: usize = 10;

/// Largest / smallest count among the classes present (`None` with fewer than one present class).
fn imbalance(counts: &[usize]) -> Option<(f64, usize, usize)> {
    let present: Vec<(usize, usize)> = counts.iter().copied().enumerate().filter(|&(_, n)| n > 0).collect();
    let (big, nb) = *present.iter().max_by_key(|&&(i, n)| (n, std::cmp::Reverse(i)))?;
    let (small, ns) = *present.iter().min_by_key(|&&(i, n)| (n, i))?;
    Some((nb as f64 / ns as f64, big, small))
}

/// Builds the section.
pub fn section(data: &Data) -> Section {
    let mut s = Section::new("classes", "Classes and splits");
    let counts = data.counts();
    let name = |c: usize| data.classes[c].as_str();
    s.stat("classes", data.classes.len());
    s.stat("class_names", &data.classes);
    let per_split: serde_json::Map<String, serde_json::Value> =
        data.splits.iter().zip(&counts).map(|(sp, c)| (sp.clone(), json!(c.iter().sum::<usize>()))).collect();
    s.stat("examples", per_split);
    let per_class: serde_json::Map<String, serde_json::Value> = data
        .splits
        .iter()
        .zip(&counts)
        .map(|(sp, c)| {
            (
                sp.clone(),
                json!(data
                    .classes
                    .iter()
                    .zip(c)
                    .map(|(n, v)| (n.clone(), json!(v)))
                    .collect::<serde_json::Map<_, _>>()),
            )
        })
        .collect();
    s.stat("per_class", per_class);
    s.charts.push(Chart {
        title: "Examples per class and split".into(),
        x_label: "class".into(),
        y_label: "examples".into(),
        labels: data.classes.clone(),
        series: data
            .splits
            .iter()
            .zip(&counts)
            .map(|(sp, c)| ChartSeries { name: sp.clone(), values: c.iter().map(|&v| v as f64).collect() })
            .collect(),
    });

    let mut ratios = serde_json::Map::new();
    for (i, (sp, c)) in data.splits.iter().zip(&counts).enumerate() {
        let Some((ratio, big, small)) = imbalance(c) else { continue };
        ratios.insert(sp.clone(), json!(ratio));
        if i == 0 {
            s.stat("imbalance_ratio", ratio);
            s.stat("largest_class", name(big));
            s.stat("smallest_class", name(small));
        }
        let what = format!(
            "{sp}: largest class {:?} has {} examples, smallest {:?} has {} (imbalance ratio {ratio:.1})",
            name(big),
            c[big],
            name(small),
            c[small]
        );
        if ratio > IMBALANCE_WARN && i == 0 {
            s.advise(
                Severity::Warning,
                what,
                "weight the loss or oversample the rare classes; report macro F1 (accuracy mostly measures the large \
                 classes)",
            );
        } else if ratio > IMBALANCE_WARN {
            s.advise(
                Severity::Info,
                what,
                "report macro F1 or per-class scores: accuracy on this split mostly measures the large classes",
            );
        } else if i == 0 {
            s.note(Severity::Ok, format!("{what}: balanced enough"));
        }
    }
    s.stat("imbalance_ratio_by_split", ratios);

    // A class in one split and not in another.
    let mut missing = vec![];
    let mut rows = vec![];
    for c in 0..data.classes.len() {
        let present: Vec<&str> =
            data.splits.iter().zip(&counts).filter(|(_, n)| n[c] > 0).map(|(sp, _)| sp.as_str()).collect();
        for (si, sp) in data.splits.iter().enumerate() {
            if counts[si][c] > 0 {
                continue;
            }
            missing.push(json!({"class": name(c), "missing_from": sp, "present_in": present}));
            rows.push(vec![name(c).to_string(), sp.clone(), present.join(", ")]);
            if si == 0 {
                s.advise(
                    Severity::Problem,
                    format!(
                        "class {:?} is in {} but has no training examples: the model cannot learn it (and `suite \
                         finetune` refuses such a split)",
                        name(c),
                        present.join(" and ")
                    ),
                    format!("add training examples of {:?}, or remove it from {}", name(c), present.join(" and ")),
                );
            } else {
                s.advise(
                    Severity::Warning,
                    format!("class {:?} has no examples in {sp}: its accuracy there is never measured", name(c)),
                    format!("move some examples of {:?} into {sp} (a stratified split keeps every class)", name(c)),
                );
            }
        }
    }
    s.stat("missing_classes", missing);
    if !rows.is_empty() {
        s.tables.push(Table {
            title: "Classes missing from a split".into(),
            columns: ["class", "missing from", "present in"].map(String::from).to_vec(),
            rows,
        });
    }

    let small: Vec<String> = (0..data.train_classes)
        .filter(|&c| counts[0][c] > 0 && counts[0][c] < SMALL_CLASS)
        .map(|c| format!("{:?} ({})", name(c), counts[0][c]))
        .collect();
    s.stat("small_classes", small.len());
    if !small.is_empty() {
        s.advise(
            Severity::Warning,
            format!("{} class(es) have fewer than {SMALL_CLASS} training examples: {}", small.len(), small.join(", ")),
            "collect more examples of them (a few dozen per class at least), or merge them into related classes",
        );
    }
    if data.val_is_carved {
        s.advise(
            Severity::Info,
            "no validation split given: `suite finetune` holds out a seeded, stratified val_split of the training \
             data, so copies within the training data below may end up on both sides",
            "pass --val-data (or use the train/ val/ layout) to inspect the split you will evaluate on",
        );
    }
    s
}
