//! `suite generate (--run RUN | --model DIR) PROMPT…`: continues prompts with a language model through
//! [`suite_text::generate::LanguageModel`], streaming the text of a single prompt as it is generated.

use std::io::Write;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use suite_core::device::parse_device;
use suite_core::runs::model_dir;
use suite_text::chat::ChatMessage;
use suite_text::generate::{GenerationRequest, LanguageModel, SamplingParams};

use crate::args::{GenerateArgs, LmModelArgs, SamplingArgs};

/// Entry point.
pub fn run(args: GenerateArgs) -> Result<()> {
    let sampling = sampling_params(&args.sampling, 0.0)?;
    let lm = load_model(&args.model)?;
    let mut requests = Vec::with_capacity(args.prompts.len());
    for prompt in &args.prompts {
        let prompt = if args.chat {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.as_str()));
            }
            messages.push(ChatMessage::new("user", prompt.as_str()));
            lm.render_chat(&messages, true)?
        } else {
            prompt.clone()
        };
        requests.push(GenerationRequest {
            prompt,
            sampling,
            seed: args.sampling.seed,
            max_new_tokens: args.sampling.max_new_tokens,
            stop: args.stop.clone(),
        });
    }
    let stream = requests.len() == 1 && !args.json;
    let progress = if stream { ProgressBar::hidden() } else { spinner(requests.len()) };
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let out = lm.generate(&requests, &mut |_, delta| {
        if stream {
            if let Err(e) = stdout.write_all(delta.as_bytes()).and_then(|_| stdout.flush()) {
                write_error.get_or_insert(e);
            }
        } else {
            progress.inc(1);
        }
    })?;
    progress.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    if stream {
        writeln!(stdout)?;
    } else if args.json {
        for g in &out {
            writeln!(stdout, "{}", serde_json::to_string(g)?)?;
        }
    } else {
        for (i, g) in out.iter().enumerate() {
            writeln!(stdout, "--- prompt {} ---\n{}", i + 1, g.text)?;
        }
    }
    Ok(())
}

/// The model of `--run`/`--which` or `--model`, on `--device`.
pub(super) fn load_model(args: &LmModelArgs) -> Result<LanguageModel> {
    let device = parse_device(&args.device)?;
    let dir = match (&args.run, &args.model) {
        (Some(run), _) => model_dir(run, &args.which)?,
        (None, Some(model)) => model.clone(),
        (None, None) => anyhow::bail!("give --run RUN or --model DIR"),
    };
    LanguageModel::load(&dir, device)
}

/// The sampling flags, checked; `default_temperature` when `--temperature` is not given.
pub(super) fn sampling_params(args: &SamplingArgs, default_temperature: f64) -> Result<SamplingParams> {
    let params = SamplingParams {
        temperature: args.temperature.unwrap_or(default_temperature),
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
    };
    params.validate().map_err(|e| anyhow::anyhow!("--{}", e.to_string().replacen('_', "-", 1)))?;
    if args.max_new_tokens == 0 {
        anyhow::bail!("--max-new-tokens must be at least 1");
    }
    Ok(params)
}

/// A spinner on stderr (drawn only on a terminal) counting the pieces of text generated.
fn spinner(prompts: usize) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} generating {msg}: {pos} pieces of text, {elapsed}")
            .expect("a valid template"),
    );
    bar.set_message(format!("{prompts} answers"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
