//! `suite inspect text`: the arguments handed to [`suite_text::inspect`], with the recipe's or the run's `[text]`
//! table filling what the flags leave out, as `suite finetune text` would.

use std::path::Path;

use anyhow::{bail, Context, Result};
use suite_core::device::parse_device;
use suite_core::quality::report::Report;
use suite_text::data::ClassifyColumns;
use suite_text::inspect::InspectOptions;
use suite_text::models::DEFAULT_TEXT_MODEL;
use suite_text::task::{TextConfig, TextTaskKind};

use crate::args::InspectArgs;
use crate::job::JobFile;

/// Inspects text data.
pub fn inspect(args: &InspectArgs) -> Result<Report> {
    if args.language.is_some() {
        bail!("--language is not used by suite inspect text (it applies to speech)");
    }
    if args.run.is_some() && args.model.is_some() {
        bail!("--run and --model both choose the tokenizer: pass one of them");
    }
    // The recipe (--config) or else the run's recorded job gives what the flags do not.
    let recipe = match (&args.config, &args.run) {
        (Some(c), _) => Some(text_table(c, "--config")?),
        (None, Some(run)) => Some(text_table(&run.join("config.toml"), "--run")?),
        _ => None,
    };
    let defaults = recipe.clone().unwrap_or_default();
    let task: TextTaskKind = match &args.task {
        Some(t) => t.parse().map_err(anyhow::Error::msg).context("--task")?,
        None => defaults.task,
    };
    let tokenizer = match (&args.model, &args.run) {
        (Some(m), _) => m.clone(),
        (None, Some(run)) => suite_core::runs::model_dir(run, &args.which)?.display().to_string(),
        (None, None) => recipe.as_ref().map_or_else(|| DEFAULT_TEXT_MODEL.to_string(), |r| r.model.clone()),
    };
    let max_len = args.max_len.unwrap_or(defaults.max_len);
    let mut doc_stride = defaults.doc_stride;
    if recipe.is_none() && doc_stride >= max_len {
        // No recipe names a stride: keep finetune's default where it fits, else a quarter of the window.
        doc_stride = (max_len / 4).max(1);
    }
    let columns = ClassifyColumns {
        text: args.text_column.clone().unwrap_or(defaults.columns.text),
        text_pair: args.pair_column.clone().or(defaults.columns.text_pair),
        label: args.label_column.clone().unwrap_or(defaults.columns.label),
    };
    let opts = InspectOptions {
        columns,
        multi_label: args.multi_label || defaults.multi_label,
        tokenizer,
        max_len,
        doc_stride,
        near_jaccard: args.near_jaccard,
        run: args.run.clone(),
        which: args.which.clone(),
        folds: args.folds,
        device: parse_device(&args.device)?,
        ..InspectOptions::new(super::splits(args), task)
    };
    suite_text::inspect::inspect(&opts)
}

/// The `[text]` table of a recipe or a run's `config.toml`.
fn text_table(file: &Path, flag: &str) -> Result<TextConfig> {
    let job: JobFile = suite_core::config::load_toml(file).with_context(|| format!("{flag} {}", file.display()))?;
    job.text.with_context(|| format!("{flag} {}: no [text] table (not a text recipe or run)", file.display()))
}
