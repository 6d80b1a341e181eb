//! The vision job: prepare data and model, train, then write the evaluation report of the best model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use suite_core::data::{DataLoader, Dataset};
use suite_core::device::{parse_device, seed_torch};
use suite_core::metrics::Metrics;
use suite_core::runs::{plot_confusion, summary_table, RunDir};
use suite_core::train::TrainModel;
use suite_core::train::{FitObserver, FitSummary, Trainer};
use suite_vision::data::ImageBatch;
use suite_vision::task::{load_timm_layout, prepare, ClassifierTask, JobData, VisionJob};

use crate::job::JobFile;

/// Trains the job into `out` (a new run, or an existing one with `resume`).
pub fn finetune(job: JobFile, out: PathBuf, resume: bool, observers: Vec<Box<dyn FitObserver>>) -> Result<()> {
    let vcfg = job.vision.clone().context("the job has no [vision] table")?;
    job.train.validate()?;
    let device = parse_device(&job.train.device)?;
    suite_core::device::set_threads(job.train.threads);
    seed_torch(job.train.seed);
    // The run folder appears only once the job is known to be valid.
    let mut prepared = prepare(&vcfg, &job.peft, &job.train, device, resume)?;
    let (run, main) = super::finetune::open_run(&out, resume, &job)?;
    if main {
        write_job_notes(&run, &prepared, &vcfg.model)?;
    }
    let trainer =
        Trainer::new(job.train.clone(), run)?.with_observers(observers).with_group_rules(prepared.rules.clone());
    let summary = match &prepared.data {
        JobData::Pixels { train, val } => trainer.fit(&mut prepared.task, train, Some(val), resume)?,
        JobData::Features { train, val } => trainer.fit(&mut prepared.task, train, Some(val), resume)?,
    };
    if !main {
        return Ok(());
    }
    report(trainer.run(), &prepared, &summary, device)
}

fn write_job_notes(run: &RunDir, job: &VisionJob, model: &str) -> Result<()> {
    job.task.classes.save(&run.root().join("classes.json"))?;
    let mut notes = format!("model: {model}\nweights: {}\n", job.weights_from);
    if let Some(r) = &job.load_report {
        notes.push_str(&format!("weight load: {r}\n"));
        eprintln!("weights from {}: {r}", job.weights_from);
    }
    if !job.skipped.is_empty() {
        notes.push_str(&format!("skipped {} unreadable image(s):\n", job.skipped.len()));
        for b in &job.skipped {
            notes.push_str(&format!("  {b}\n"));
        }
        eprintln!(
            "skipped {} unreadable image(s), listed in {}",
            job.skipped.len(),
            run.root().join("report.txt").display()
        );
    }
    suite_core::runs::atomic_write(&run.root().join("report.txt"), notes.as_bytes())
}

/// Re-evaluates the best model on the validation set (through the cached features when the job used them) and
/// writes the confusion matrix (CSV and PNG), the per-class scores and a summary.
fn report(run: &RunDir, job: &VisionJob, summary: &FitSummary, device: tch::Device) -> Result<()> {
    let mut task = load_timm_layout(&run.best_dir(), device)?;
    task.inputs = job.task.inputs;
    let metrics = match &job.data {
        JobData::Pixels { val, .. } => evaluate(&mut task, val)?,
        JobData::Features { val, .. } => evaluate(&mut task, val)?,
    };
    write_report(run, &task, &metrics, summary)
}

/// Evaluates `task` over one pass of `loader`.
pub fn evaluate<D: Dataset<Batch = ImageBatch>>(task: &mut ClassifierTask, loader: &DataLoader<D>) -> Result<Metrics> {
    let mut it = loader.iter_epoch(0, 0);
    tch::no_grad(|| task.evaluate(&mut it))
}

/// Writes `eval/` (confusion matrix CSV and PNG, per-class scores, metrics) and prints the summary table.
pub fn write_report(run: &RunDir, task: &ClassifierTask, metrics: &Metrics, summary: &FitSummary) -> Result<()> {
    let dir = run.root().join("eval");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = task.last_report.as_ref().context("evaluation produced no report")?;
    report.write_confusion_csv(&dir.join("confusion.csv"))?;
    plot_confusion(&report.confusion, task.classes.names(), &dir.join("confusion.png"))?;
    let mut per_class = String::from("class,precision,recall,f1,support\n");
    for (name, s) in task.classes.names().iter().zip(report.per_class()) {
        per_class.push_str(&format!("{name},{:.6},{:.6},{:.6},{}\n", s.precision, s.recall, s.f1, s.support));
    }
    suite_core::runs::atomic_write(&dir.join("per_class.csv"), per_class.as_bytes())?;
    suite_core::runs::atomic_write(&dir.join("metrics.json"), serde_json::to_string_pretty(metrics)?.as_bytes())?;
    let mut rows = super::report::summary_rows(run, summary, metrics);
    rows.push(("confusion matrix".into(), dir.join("confusion.png").display().to_string()));
    rows.push(("curves".into(), run.curves_path().display().to_string()));
    println!("{}", summary_table(&rows));
    Ok(())
}
