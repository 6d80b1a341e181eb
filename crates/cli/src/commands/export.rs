//! `suite export --run runs/NAME --out DIR`: the run's model in hub layout (timm/torchvision names + config.json for
//! vision; transformers names, config.json and tokenizer files for text).

use anyhow::{Context, Result};
use suite_core::runs::model_dir;

use crate::args::ExportArgs;

/// Entry point.
pub fn run(args: ExportArgs) -> Result<()> {
    let src = model_dir(&args.run, &args.which)?;
    let is_adapter = src.join("adapter.safetensors").is_file();
    if args.merge {
        if !is_adapter {
            anyhow::bail!("--merge: {} holds a full model, not an adapter; export it without --merge", src.display());
        }
        return merge(&args, &src);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // Everything the saved model folder holds: weights, config, and for text the tokenizer files.
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().expect("a file has a name");
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            suite_core::runs::atomic_write(&args.out.join(name), &bytes)?;
        }
    }
    let classes = args.run.join("classes.json");
    if classes.exists() {
        std::fs::copy(&classes, args.out.join("classes.json"))?;
    }
    println!("exported {} to {}", src.display(), args.out.display());
    Ok(())
}

/// Folds a LoRA/DoRA adapter into its base model and writes the plain model in hub layout.
fn merge(args: &ExportArgs, src: &std::path::Path) -> Result<()> {
    let job: crate::job::JobFile = suite_core::config::load_toml(&args.run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", args.run.display()))?;
    let Some(text) = &job.text else {
        anyhow::bail!("--merge is available for text runs in this version");
    };
    if !matches!(job.peft, suite_core::peft::PeftConfig::Lora(_) | suite_core::peft::PeftConfig::Dora(_)) {
        anyhow::bail!(
            "--merge: the run used {}, which has no weights to fold into the base model (only LoRA and DoRA do); \
             export the adapter folder without --merge",
            job.peft.method_name()
        );
    }
    let (vs, mut model, labels, multi_label) = suite_text::task::load_trained(src, text.task, tch::Device::Cpu)?;
    let n = suite_core::peft::merge_lora(&mut model)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    model.export(&vs, &args.out, &labels, multi_label, src)?;
    println!("merged {n} LoRA layer(s) of {} into {} (hub layout)", src.display(), args.out.display());
    Ok(())
}
