//! `suite inspect speech`: the arguments handed to [`suite_speech::inspect`].

use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use suite_core::quality::report::Report;
use suite_speech::inspect::InspectOptions;
use suite_speech::task::{is_model_dir, SpeechConfig};

use crate::args::InspectArgs;
use crate::job::JobFile;

/// Inspects speech data.
pub fn inspect(args: &InspectArgs) -> Result<Report> {
    // Options of the other domains would be silently ignored here: refuse them, naming the flag.
    let foreign = [
        ("--task", args.task.is_some()),
        ("--max-len", args.max_len.is_some()),
        ("--text-column", args.text_column.is_some()),
        ("--pair-column", args.pair_column.is_some()),
        ("--label-column", args.label_column.is_some()),
        ("--multi-label", args.multi_label),
    ];
    super::refuse_foreign("speech", &foreign, "manifests are read as suite finetune speech reads them")?;
    if args.run.is_some() && args.model.is_some() {
        bail!("--run and --model both choose the tokenizer: pass one of them");
    }
    // A recipe's or a run's [speech] table gives the model and the default language, as finetune would use them.
    let recipe = match (&args.config, &args.run) {
        (Some(c), _) => Some(speech_table(c, "--config")?),
        (None, Some(run)) => Some(speech_table(&run.join("config.toml"), "--run")?),
        _ => None,
    };
    let model = match (&args.model, &args.run) {
        (Some(m), _) => m.clone(),
        (None, Some(run)) => run_model(run, &args.which, recipe.as_ref())?,
        (None, None) => recipe.as_ref().map_or_else(|| "whisper-base".to_string(), |r| r.model.clone()),
    };
    let opts = InspectOptions {
        splits: super::splits(args),
        model,
        language: args.language.clone().or_else(|| recipe.as_ref().and_then(|r| r.language.clone())),
        run: args.run.as_ref().map(|r| r.display().to_string()),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()).min(8),
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("decoding clips {bar:30} {pos}/{len} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = suite_speech::inspect::inspect(&opts, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    report
}

/// The `[speech]` table of a recipe or a run's `config.toml`.
fn speech_table(file: &Path, flag: &str) -> Result<SpeechConfig> {
    let job: JobFile = suite_core::config::load_toml(file).with_context(|| format!("{flag} {}", file.display()))?;
    job.speech.with_context(|| format!("{flag} {}: no [speech] table (not a speech recipe or run)", file.display()))
}

/// The model whose tokenizer a run's `best`/`final` folder uses: the folder itself when it holds a whole model, the
/// base model of the run when it holds a PEFT adapter (adapters do not change the tokenizer).
fn run_model(run: &Path, which: &str, cfg: Option<&SpeechConfig>) -> Result<String> {
    let dir = match which {
        "best" | "final" => run.join(which),
        _ => bail!("--which {which:?}: expected best or final"),
    };
    if dir.join("model.safetensors").is_file() {
        return Ok(dir.display().to_string());
    }
    if !is_model_dir(&dir) {
        bail!("{}: no saved model (has the run finished an evaluation?)", dir.display());
    }
    cfg.map(|c| c.model.clone()).with_context(|| format!("--run {}: no [speech] table", run.display()))
}
