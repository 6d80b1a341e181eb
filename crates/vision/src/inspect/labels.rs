//! The "label_issues" section of `--run`: the run's model turns every decodable example of every split into its
//! pooled features (the head's input), a logistic regression fitted on the other folds scores each example
//! (out-of-sample probabilities, as cleanlab recommends), and confident learning ranks the examples whose given
//! label the scores confidently disagree with.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use suite_core::quality::label_issues::find_label_issues;
use suite_core::quality::probe::{out_of_fold_probs, ProbeConfig};
use suite_core::quality::report::{Chart, ChartSeries, Section, Severity, Table};
use tch::Tensor;

use super::scan::FileFacts;
use super::splits::Data;
use crate::data::decode_image;
use crate::predict::VisionPredictor;

/// Out-of-fold accuracy of the probe below which its ranking says little.
pub const WEAK_PROBE: f64 = 0.5;

/// Pooled features `[n, d]` of the images at `paths`, computed in batches of `batch_size` (decoded and
/// preprocessed as evaluation does, on `workers` threads), with a progress bar.
pub fn features(
    model: &VisionPredictor,
    paths: &[&std::path::Path],
    batch_size: usize,
    workers: usize,
) -> Result<Tensor> {
    let workers = if workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { workers };
    let bar = ProgressBar::new(paths.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30.green/blue}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix("features");
    let mut out = vec![];
    for chunk in paths.chunks(batch_size.max(1)) {
        let next = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<Result<Tensor>>>> = Mutex::new((0..chunk.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..workers.min(chunk.len()) {
                let pre = model.preprocessor();
                let (next, slots) = (&next, &slots);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = chunk.get(i) else { break };
                    let x = decode_image(p).map(|img| pre.preprocess(&img));
                    slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(x);
                });
            }
        });
        let images = slots
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|x| x.unwrap_or_else(|| Err(anyhow!("an image was not decoded"))))
            .collect::<Result<Vec<Tensor>>>()?;
        out.push(model.features(&images)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Tensor::cat(&out, 0))
}

/// Builds the section from the run's model.
pub fn section(
    data: &Data,
    facts: &[FileFacts],
    model: &VisionPredictor,
    folds: usize,
    batch_size: usize,
    workers: usize,
) -> Result<Section> {
    let mut s = Section::new("label_issues", "Label issues");
    let idx: Vec<usize> = (0..facts.len()).filter(|&i| facts[i].image.is_ok()).collect();
    s.stat("examples_scored", idx.len());
    s.stat("folds", folds);
    if model.labels() != data.classes.as_slice() {
        s.note(
            Severity::Info,
            format!(
                "the run's model knows the classes {:?}, the data has {:?}: only its features are used, the labels \
                 are the data's",
                model.labels(),
                data.classes
            ),
        );
    }
    let labels: Vec<usize> = idx.iter().map(|&i| data.examples[i].label).collect();
    if idx.len() < folds.max(2) * 2 {
        s.advise(
            Severity::Warning,
            format!("{} decodable examples are too few to score with {folds} folds", idx.len()),
            "inspect more data, or pass a smaller --folds",
        );
        return Ok(s);
    }
    let paths: Vec<&std::path::Path> = idx.iter().map(|&i| data.examples[i].path.as_path()).collect();
    let feats = features(model, &paths, batch_size, workers)?;
    s.stat("feature_dim", feats.size().get(1).copied().unwrap_or(0));
    let k = data.classes.len();
    let probs = out_of_fold_probs(&feats, &labels, k, &ProbeConfig { folds, ..ProbeConfig::default() })?;
    let argmax = |r: usize| (0..k).max_by(|&a, &b| probs[[r, a]].total_cmp(&probs[[r, b]])).unwrap_or(0);
    let correct = (0..labels.len()).filter(|&r| argmax(r) == labels[r]).count();
    let probe_accuracy = correct as f64 / labels.len() as f64;
    s.stat("probe_accuracy", probe_accuracy);
    let issues = find_label_issues(&labels, probs.view())?;
    let n = issues.ranked.len();
    s.stat("label_issue_count", n);
    s.stat("label_issue_rate", n as f64 / labels.len() as f64);

    let split = |r: usize| data.splits[data.examples[idx[r]].split].clone();
    let rows: Vec<Vec<String>> = issues
        .ranked
        .iter()
        .zip(&issues.self_confidence)
        .enumerate()
        .map(|(rank, (&r, &conf))| {
            let sug = argmax(r);
            vec![
                (rank + 1).to_string(),
                split(r),
                data.name(idx[r]),
                data.classes[labels[r]].clone(),
                data.classes[sug].clone(),
                format!("{conf:.4}"),
                format!("{:.4}", probs[[r, sug]]),
            ]
        })
        .collect();
    s.stat("flagged_paths", issues.ranked.iter().map(|&r| data.name(idx[r])).collect::<Vec<_>>());
    s.stat(
        "candidates",
        issues
            .ranked
            .iter()
            .zip(&issues.self_confidence)
            .map(|(&r, &c)| {
                json!({"split": split(r), "path": data.name(idx[r]), "given": data.classes[labels[r]],
                       "suggested": data.classes[argmax(r)], "self_confidence": c})
            })
            .collect::<Vec<_>>(),
    );
    let per_class: Vec<serde_json::Value> = issues
        .classes
        .iter()
        .map(|c| json!({"class": data.classes[c.class], "count": c.count, "flagged": c.flagged}))
        .collect();
    s.stat("per_class", per_class);

    if n > 0 {
        s.advise(
            Severity::Warning,
            format!(
                "{n} of {} examples ({:.1} %) look mislabelled: a model that never saw them confidently prefers \
                 another class",
                labels.len(),
                100.0 * n as f64 / labels.len() as f64
            ),
            "review them from the top of the table (most likely first; flagged_paths in report.json lists them all), \
             relabel or remove the wrong ones, then train again",
        );
    } else {
        s.note(Severity::Ok, format!("no label issues among {} examples", labels.len()));
    }
    if probe_accuracy < WEAK_PROBE {
        s.advise(
            Severity::Warning,
            format!(
                "the probe on the run's features is right on only {:.1} % of the examples it did not fit, so its \
                 ranking is weak",
                100.0 * probe_accuracy
            ),
            "train the run longer or from a pretrained backbone, then inspect again",
        );
    }
    s.tables.push(Table {
        title: "Label-issue candidates (most likely first)".into(),
        columns: ["rank", "split", "path", "given label", "suggested label", "self-confidence", "p(suggested)"]
            .map(String::from)
            .to_vec(),
        rows,
    });
    s.tables.push(Table {
        title: "Label issues per given class".into(),
        columns: ["class", "examples", "flagged", "flagged %"].map(String::from).to_vec(),
        rows: issues
            .classes
            .iter()
            .map(|c| {
                let pct = if c.count == 0 { 0.0 } else { 100.0 * c.flagged as f64 / c.count as f64 };
                vec![data.classes[c.class].clone(), c.count.to_string(), c.flagged.to_string(), format!("{pct:.1}")]
            })
            .collect(),
    });
    s.charts.push(Chart {
        title: "Flagged examples per given class".into(),
        x_label: "given class".into(),
        y_label: "examples".into(),
        labels: data.classes.clone(),
        series: vec![ChartSeries {
            name: "flagged".into(),
            values: issues.classes.iter().map(|c| c.flagged as f64).collect(),
        }],
    });
    Ok(s)
}
