//! The "label_issues" section of `--run` (classification): the run's encoder turns every example of every split
//! into the pooled features its classification head reads, a logistic regression fitted on the other folds scores
//! each example (out-of-sample probabilities, as cleanlab recommends: the fine-tuned head itself has memorised its
//! training labels, wrong ones included), and confident learning ranks the examples whose given label the scores
//! confidently disagree with.

use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::json;
use suite_core::data::{Dataset, SampleRng};
use suite_core::quality::label_issues::find_label_issues;
use suite_core::quality::probe::{out_of_fold_probs, ProbeConfig};
use suite_core::quality::report::{Chart, ChartSeries, Section, Severity, Table};
use tch::{Device, Kind, Tensor};

use super::read::{shorten, Body, Data};
use crate::data::{ClassifyDataset, ClassifyExample, LabelSet, TextBatch, TextTokenizer};
use crate::models::TextModel;
use crate::task::{load_trained, TextConfig, TextTaskKind};

/// Out-of-fold accuracy of the probe below which its ranking says little.
pub const WEAK_PROBE: f64 = 0.5;

/// A run's classification model, its tokenizer and sequence length.
pub struct RunModel {
    _vs: tch::nn::VarStore,
    model: TextModel,
    tok: TextTokenizer,
    max_len: usize,
    device: Device,
}

impl RunModel {
    /// Loads the `which` model of a classification run.
    pub fn load(run: &Path, which: &str, device: Device) -> Result<Self> {
        #[derive(Deserialize)]
        struct RunConfig {
            text: Option<TextConfig>,
        }
        let cfg: RunConfig = suite_core::config::load_toml(&run.join("config.toml"))
            .with_context(|| format!("--run {}: not a run folder", run.display()))?;
        let cfg = cfg.text.with_context(|| format!("--run {}: not a text run (no [text] table)", run.display()))?;
        if cfg.task != TextTaskKind::Classify {
            bail!("--run {}: a {:?} run; label issues are ranked with a classification run", run.display(), cfg.task);
        }
        let dir = suite_core::runs::model_dir(run, which)?;
        let (vs, model, _, _) = load_trained(&dir, TextTaskKind::Classify, device)?;
        let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        Ok(RunModel { _vs: vs, model, tok, max_len: cfg.max_len, device })
    }

    /// The pooled features `[n, hidden]` of `examples` (as evaluation tokenizes them).
    pub fn features(&self, examples: &[ClassifyExample]) -> Result<Tensor> {
        let ds = ClassifyDataset::new(examples, &self.tok, None, self.max_len, false)?;
        let mut rng = SampleRng::seed_from_u64(0);
        let items = (0..ds.len()).map(|i| ds.get(i, &mut rng)).collect::<Result<Vec<_>>>()?;
        let batch = ds.collate(items)?;
        Ok(pooled_features(&self.model, &batch, self.device))
    }
}

/// What the classification head reads: BERT's pooled output, else the first token's last hidden state (RoBERTa's
/// and DistilBERT's heads start from it), as Float on the CPU.
pub fn pooled_features(model: &TextModel, batch: &TextBatch, device: Device) -> Tensor {
    tch::no_grad(|| {
        let (hidden, pooled) = model.encode(
            &batch.input_ids.to_device(device),
            &batch.token_type_ids.to_device(device),
            &batch.attention_mask.to_device(device),
            false,
        );
        pooled.unwrap_or_else(|| hidden.select(1, 0)).to_kind(Kind::Float).to_device(Device::Cpu)
    })
}

/// The section when `--run` is given but nothing can be ranked (NER, QA, multi-label).
pub fn not_ranked(run: &Path, task: TextTaskKind, multi_label: bool) -> Section {
    let mut s = Section::new("label_issues", "Label issues");
    let what = if multi_label { "multi-label classification".to_string() } else { format!("{task:?}") };
    s.note(
        Severity::Info,
        format!("label issues are ranked for single-label classification; {} is {what} data", run.display()),
    );
    s
}

/// Builds the section from the run's model.
pub fn section(data: &Data, model: &RunModel, folds: usize, batch_size: usize) -> Result<Section> {
    let mut s = Section::new("label_issues", "Label issues");
    let examples: Vec<&ClassifyExample> = data
        .examples
        .iter()
        .filter_map(|e| match &e.body {
            Body::Classify(c) => Some(c),
            _ => None,
        })
        .collect();
    let classes = LabelSet::collect(examples.iter().filter_map(|e| e.labels.first().map(String::as_str)));
    let labels: Vec<usize> =
        examples.iter().map(|e| e.labels.first().and_then(|l| classes.index(l).ok()).unwrap_or(0)).collect();
    s.stat("examples_scored", labels.len());
    s.stat("folds", folds);
    if classes.len() < 2 || labels.len() < folds * 2 {
        s.advise(
            Severity::Warning,
            format!("{} examples of {} label(s) are too few to score with {folds} folds", labels.len(), classes.len()),
            "inspect more data, or pass a smaller --folds",
        );
        return Ok(s);
    }
    let bar = ProgressBar::with_draw_target(Some(labels.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("features {bar:30} {pos}/{len} texts [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut parts = vec![];
    for chunk in examples.chunks(batch_size.max(1)) {
        let owned: Vec<ClassifyExample> = chunk.iter().map(|&e| e.clone()).collect();
        parts.push(model.features(&owned)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let feats = Tensor::cat(&parts, 0);
    s.stat("features_seconds", started.elapsed().as_secs_f64());
    let started = std::time::Instant::now();
    s.stat("feature_dim", feats.size().get(1).copied().unwrap_or(0));
    let k = classes.len();
    let probs = out_of_fold_probs(&feats, &labels, k, &ProbeConfig { folds, ..ProbeConfig::default() })?;
    let argmax =
        |r: usize| (0..k).max_by(|&a, &b| probs[[r, a]].total_cmp(&probs[[r, b]]).then(b.cmp(&a))).unwrap_or(0);
    let correct = (0..labels.len()).filter(|&r| argmax(r) == labels[r]).count();
    let probe_accuracy = correct as f64 / labels.len() as f64;
    s.stat("probe_seconds", started.elapsed().as_secs_f64());
    s.stat("probe_accuracy", probe_accuracy);
    let issues = find_label_issues(&labels, probs.view())?;
    let n = issues.ranked.len();
    s.stat("label_issue_count", n);
    s.stat("label_issue_rate", n as f64 / labels.len() as f64);
    // Classification examples are all the data's examples, in order.
    let ex = |r: usize| &data.examples[r];
    let candidates: Vec<serde_json::Value> = issues
        .ranked
        .iter()
        .zip(&issues.self_confidence)
        .map(|(&r, &c)| {
            json!({"split": data.splits[ex(r).split], "file": data.files[ex(r).split], "line": ex(r).line,
                   "text": shorten(&ex(r).shown(), 60), "given": classes.names[labels[r]],
                   "suggested": classes.names[argmax(r)], "self_confidence": c,
                   "suggested_prob": probs[[r, argmax(r)]]})
        })
        .collect();
    s.stat("candidates", candidates);
    s.tables.push(Table {
        title: "label-issue candidates, most likely first".into(),
        columns: ["rank", "split", "item", "given", "suggested", "self-confidence"].map(String::from).to_vec(),
        rows: issues
            .ranked
            .iter()
            .zip(&issues.self_confidence)
            .enumerate()
            .map(|(rank, (&r, &c))| {
                vec![
                    (rank + 1).to_string(),
                    data.splits[ex(r).split].clone(),
                    data.name(r),
                    classes.names[labels[r]].clone(),
                    classes.names[argmax(r)].clone(),
                    format!("{c:.4}"),
                ]
            })
            .collect(),
    });
    let per_class: Vec<serde_json::Value> = issues
        .classes
        .iter()
        .map(|c| {
            json!({"label": classes.names[c.class], "given": c.count, "flagged": c.flagged,
                   "flagged_rate": c.flagged as f64 / c.count.max(1) as f64,
                   "confident_row": c.confident_row, "threshold": issues.thresholds[c.class]})
        })
        .collect();
    s.stat("per_class", per_class);
    s.charts.push(Chart {
        title: "Label-issue candidates per given label".into(),
        x_label: "given label".into(),
        y_label: "examples".into(),
        labels: classes.names.clone(),
        series: vec![
            ChartSeries { name: "given".into(), values: issues.classes.iter().map(|c| c.count as f64).collect() },
            ChartSeries { name: "flagged".into(), values: issues.classes.iter().map(|c| c.flagged as f64).collect() },
        ],
    });
    let joint_header: Vec<String> =
        std::iter::once("given \\ likely".to_string()).chain(classes.names.iter().cloned()).collect();
    s.tables.push(Table {
        title: "confident joint: examples given a label (rows) that likely belong to each label (columns)".into(),
        columns: joint_header,
        rows: issues
            .classes
            .iter()
            .map(|c| {
                std::iter::once(classes.names[c.class].clone())
                    .chain(c.confident_row.iter().map(|v| v.to_string()))
                    .collect()
            })
            .collect(),
    });
    if n > 0 {
        s.advise(
            Severity::Warning,
            format!(
                "{n} example(s) ({:.1} %) look mislabelled: the run's features put them confidently in another label",
                n as f64 / labels.len() as f64 * 100.0
            ),
            "review the candidates from the top of the table (lowest self-confidence first): relabel the wrong ones, \
             drop the ambiguous ones, then train again",
        );
    } else {
        s.note(Severity::Ok, "no example's label is confidently contradicted by the run's features");
    }
    if probe_accuracy < WEAK_PROBE {
        s.advise(
            Severity::Info,
            format!(
                "the probe on the run's features reaches only {:.0} % out-of-fold accuracy",
                probe_accuracy * 100.0
            ),
            "the ranking is weak: use a run trained longer, or on more data",
        );
    } else {
        s.note(Severity::Info, format!("probe accuracy out of fold: {:.1} %", probe_accuracy * 100.0));
    }
    Ok(s)
}
