//! `suite inspect vision`: checks an image-classification data set before training and fills a
//! [`Report`]: examples per class and split ([`classes`]), files that cannot be decoded, image sizes and colour
//! modes ([`images`]), exact and near duplicates within and across splits ([`duplicates`]) and, with a trained run,
//! likely label errors ([`labels`]). Data is read with the readers of `suite finetune vision` and decoded with its
//! decoder, so what is inspected is what training reads; bad images are findings, not errors.

pub mod classes;
pub mod duplicates;
pub mod images;
pub mod labels;
pub mod scan;
pub mod splits;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::{bail, Result};
use suite_core::quality::report::{Report, SplitInput};
use tch::Device;

use crate::predict::VisionPredictor;

/// What to inspect and how.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// The data as `(split, path)`, train first: `--data` (a folder of class folders, a `train/` `val/` `test/`
    /// root, or a CSV/JSONL manifest), then `--val-data` and `--test-data` if given.
    pub splits: Vec<(String, PathBuf)>,
    /// Largest Hamming distance between the perceptual hashes of near duplicates (of 64 bits).
    pub near_distance: u32,
    /// A run whose model scores label issues.
    pub run: Option<PathBuf>,
    /// `best` or `final` model of the run.
    pub which: String,
    /// Cross-validation folds of the label-issue probe.
    pub folds: usize,
    /// Device of the run's model.
    pub device: Device,
    /// Threads decoding images (0: one per core).
    pub workers: usize,
    /// Images per forward pass of the run's model.
    pub batch_size: usize,
}

impl InspectOptions {
    /// Options with the command line's defaults for the data `splits`.
    pub fn new(splits: Vec<(String, PathBuf)>) -> Self {
        InspectOptions {
            splits,
            near_distance: 4,
            run: None,
            which: "best".into(),
            folds: 5,
            device: Device::Cpu,
            workers: 0,
            batch_size: 64,
        }
    }
}

/// Inspects the data and returns the report (sections `classes`, `files`, `sizes`, `colour`, `duplicates`, and
/// `label_issues` with a run). A missing path, a manifest or folder the training readers refuse, a bad option or a
/// run without a model is an error; anything wrong inside the data is a finding.
pub fn inspect(opts: &InspectOptions) -> Result<Report> {
    if opts.near_distance > 64 {
        bail!("--near-distance {}: a perceptual hash has 64 bits (expected 0 to 64)", opts.near_distance);
    }
    if opts.run.is_some() && opts.folds < 2 {
        bail!("--folds {}: cross-validation needs at least 2 folds", opts.folds);
    }
    // The run is loaded first, so that a wrong --run fails before the long file pass.
    let model = match &opts.run {
        Some(run) => Some(VisionPredictor::load_run(run, &opts.which, opts.device)?),
        None => None,
    };
    let data = splits::read(&opts.splits)?;
    let facts = scan::scan(&data.examples, opts.workers);
    let mut report = Report::new("vision", "classification");
    report.inputs = data
        .splits
        .iter()
        .enumerate()
        .map(|(si, sp)| SplitInput {
            split: sp.clone(),
            path: data.paths[si].display().to_string(),
            examples: data.examples.iter().filter(|e| e.split == si).count(),
        })
        .collect();
    report.sections.push(classes::section(&data));
    report.sections.push(images::files(&data, &facts));
    report.sections.push(images::sizes(&data, &facts));
    report.sections.push(images::colour(&data, &facts));
    report.sections.push(duplicates::section(&data, &facts, opts.near_distance).0);
    if let (Some(run), Some(model)) = (&opts.run, &model) {
        report.run = Some(run.display().to_string());
        report.sections.push(labels::section(&data, &facts, model, opts.folds, opts.batch_size, opts.workers)?);
    }
    Ok(report)
}
