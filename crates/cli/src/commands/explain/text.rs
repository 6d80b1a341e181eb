//! `suite explain text`: token attributions of a text run's model, computed by [`suite_text::explain`]
//! (integrated gradients on the word embeddings); this command reads the inputs as `suite predict text` does,
//! writes `attributions.jsonl` (one line per input) and `attributions.html`, and prints a summary.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use suite_core::device::parse_device;
use suite_text::explain::{explain, html, resolve_target, Attribution, ExplainOptions, TextExplanation, MAX_STEPS};
use suite_text::predict::TextPredictor;

use crate::args::explain::ExplainTextArgs;

/// One line of `attributions.jsonl`: the input's line number and its explanation.
#[derive(Serialize)]
struct Line<'a> {
    line: usize,
    #[serde(flatten)]
    explanation: &'a TextExplanation,
}

/// Entry point.
pub fn run(args: ExplainTextArgs) -> Result<()> {
    if !(1..=MAX_STEPS).contains(&args.common.steps) {
        bail!("--steps {}: expected 1 to {MAX_STEPS} integration steps", args.common.steps);
    }
    let device = parse_device(&args.common.device)?;
    let predictor = TextPredictor::load_run(&args.common.run, &args.common.which, device)?;
    let target = args.common.target.as_deref().map(|t| resolve_target(&predictor, t)).transpose()?;
    let (name, lines, inputs) = super::super::text::read_inputs(args.input.as_deref())?;
    // Every input is checked before any is explained, so a bad line stops the job before it writes anything.
    for (line, input) in lines.iter().zip(&inputs) {
        predictor.check(input).map_err(|e| anyhow!("{name}, line {line}: {e:#}"))?;
    }
    let out = args.common.out.clone().unwrap_or_else(|| default_out(&args.common.run));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let opts = ExplainOptions { steps: args.common.steps, target };
    let mut explained = Vec::with_capacity(inputs.len());
    let mut jsonl = String::new();
    for (&line, input) in lines.iter().zip(&inputs) {
        let e = explain(&predictor, input, &opts).with_context(|| format!("{name}, line {line}"))?;
        jsonl.push_str(&serde_json::to_string(&Line { line, explanation: &e })?);
        jsonl.push('\n');
        println!("{line}\t{}\t{}", e.prediction, summary(&e));
        explained.push((format!("line {line}"), e));
    }
    let jsonl_path = out.join("attributions.jsonl");
    std::fs::write(&jsonl_path, jsonl).with_context(|| format!("cannot write {}", jsonl_path.display()))?;
    let title = format!("Token attributions: {}", run_name(&args.common.run));
    let items: Vec<(String, &TextExplanation)> = explained.iter().map(|(h, e)| (h.clone(), e)).collect();
    let html_path = out.join("attributions.html");
    std::fs::write(&html_path, html::render(&title, &items))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let worst = explained.iter().flat_map(|(_, e)| &e.attributions).map(|a| a.relative_error).fold(0.0, f64::max);
    println!(
        "explained {} input(s) with {} steps; worst relative completeness error {worst:.1e}; wrote {} and {}",
        explained.len(),
        args.common.steps,
        jsonl_path.display(),
        html_path.display()
    );
    Ok(())
}

/// `explain/<run name>-text`.
fn default_out(run: &Path) -> PathBuf {
    PathBuf::from("explain").join(format!("{}-text", run_name(run)))
}

fn run_name(run: &Path) -> String {
    run.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into())
}

/// Per explained output: what it is and the three tokens that raise it most.
fn summary(e: &TextExplanation) -> String {
    if e.attributions.is_empty() {
        return "nothing to explain".into();
    }
    e.attributions.iter().map(|a| format!("{}: {}", what(a), top_tokens(e, a, 3))).collect::<Vec<_>>().join("  ")
}

fn what(a: &Attribution) -> String {
    match (&a.text, a.kind) {
        (Some(text), "entity") => format!("{text} [{}]", a.label),
        (_, "class") => a.label.clone(),
        (_, kind) => kind.to_string(),
    }
}

fn top_tokens(e: &TextExplanation, a: &Attribution, n: usize) -> String {
    let mut order: Vec<usize> = (0..a.scores.len()).filter(|&i| e.token_ids[i] != e.baseline_ids[i]).collect();
    order.sort_by(|&i, &j| a.scores[j].total_cmp(&a.scores[i]));
    order.iter().take(n).map(|&i| format!("{} {:+.2}", e.tokens[i], a.scores[i])).collect::<Vec<_>>().join(", ")
}
