//! `suite eval --run runs/NAME [--data DIR]`: metrics of a run's model on labelled data.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use suite_core::data::{DataLoader, LoaderConfig};
use suite_core::device::parse_device;
use suite_core::runs::model_dir;
use suite_vision::data::{load_manifest, scan_class_folders, ImageDataset, Transform};
use suite_vision::task::{load_splits, load_timm_layout, transform_config, Augment, Inputs};

use super::vision::evaluate;
use crate::args::EvalArgs;
use crate::job::JobFile;

/// Entry point.
pub fn run(args: EvalArgs) -> Result<()> {
    let job: JobFile = suite_core::config::load_toml(&args.run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", args.run.display()))?;
    if job.text.is_some() {
        return super::text::eval(&args);
    }
    if job.speech.is_some() {
        return super::speech::eval(&args);
    }
    let vcfg = job.vision.context("this run has no [vision] or [text] table")?;
    let device = parse_device(&args.device)?;
    let mut task = load_timm_layout(&model_dir(&args.run, &args.which)?, device)?;
    task.inputs = Inputs::Pixels;
    args.precision.apply(device, || {
        suite_core::quant::quantize_dynamic(task.model.as_mut(), suite_core::quant::WeightScheme::PerChannel)
    })?;
    let samples = match &args.data {
        Some(d) if d.is_file() => load_manifest(d, Some(&task.classes))?.1,
        Some(d) if d.join("val").is_dir() || d.join("test").is_dir() => {
            let sub = if d.join("test").is_dir() { d.join("test") } else { d.join("val") };
            scan_class_folders(&sub, Some(&task.classes))?.1
        }
        Some(d) => scan_class_folders(d, Some(&task.classes))?.1,
        None => {
            // The run's own validation split, recomputed from its recorded data and seed as training made it.
            let (classes, _, val) = load_splits(&vcfg, job.train.seed)?;
            if classes.names() != task.classes.names() {
                bail!(
                    "the run's data now holds classes {:?}, its model {:?}: pass --data",
                    classes.names(),
                    task.classes.names()
                );
            }
            val
        }
    };
    let transform = Transform::eval(transform_config(&task.preprocess, Augment::None))?;
    let ds = Arc::new(ImageDataset::new(samples, transform));
    let loader = DataLoader::sequential(ds, LoaderConfig { batch_size: args.batch_size, ..LoaderConfig::default() });
    let metrics = evaluate(&mut task, &loader)?;
    for (k, v) in &metrics {
        println!("{k:>12}  {v:.4}");
    }
    Ok(())
}
