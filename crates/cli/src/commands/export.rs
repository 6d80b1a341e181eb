//! `suite export --run runs/NAME --out DIR`: the run's model in hub layout (timm/torchvision names + config.json for
//! vision; transformers names, config.json and tokenizer files for text). Language models (`--run` of an SFT run,
//! or `--model DIR`) export as a hub folder with PEFT merged, a peft adapter folder, or a GGUF file
//! (`--format hub|peft|gguf`). `--precision fp16|bf16` casts the exported weights; `--precision int8` writes a
//! language model as GGUF Q8_0.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use suite_core::runs::model_dir;
use suite_text::export::{export_gguf, export_hub, export_peft, GgufType, LmCheckpoint, WeightDtype};

use crate::args::{ExportArgs, ExportPrecision};

/// Entry point.
pub fn run(args: ExportArgs) -> Result<()> {
    let src = match (&args.run, &args.model) {
        (Some(run), _) => model_dir(run, &args.which)?,
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("give --run RUN or --model DIR"),
    };
    if args.format.is_some() || is_causal_lm(&src) {
        return export_lm(&args, &src);
    }
    if args.precision == Some(ExportPrecision::Int8) {
        bail!(
            "--precision int8: {} is not a language model; its int8 form is made when it is loaded (`--precision \
             int8` on predict, eval, transcribe and serve), as PyTorch's dynamic quantization does, because \
             transformers and timm read no int8 checkpoint of it; export fp32, fp16 or bf16",
            src.display()
        );
    }
    let Some(run) = &args.run else {
        bail!("--model {}: not a causal language model folder (for encoders, export a run with --run)", src.display())
    };
    let is_adapter = src.join("adapter.safetensors").is_file();
    if args.merge {
        if !is_adapter {
            anyhow::bail!("--merge: {} holds a full model, not an adapter; export it without --merge", src.display());
        }
        merge(&args, run, &src)?;
        return cast_export(&args);
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
    let classes = run.join("classes.json");
    if classes.exists() {
        std::fs::copy(&classes, args.out.join("classes.json"))?;
    }
    println!("exported {} to {}", src.display(), args.out.display());
    cast_export(&args)
}

/// `--precision fp16|bf16`: every floating-point tensor of the exported `*.safetensors` files in that type (their
/// metadata kept), and the size on disk before and after.
fn cast_export(args: &ExportArgs) -> Result<()> {
    let (kind, name) = match args.precision {
        None | Some(ExportPrecision::Fp32) => return Ok(()),
        Some(ExportPrecision::Fp16) => (tch::Kind::Half, "fp16"),
        Some(ExportPrecision::Bf16) => (tch::Kind::BFloat16, "bf16"),
        Some(ExportPrecision::Int8) => unreachable!("refused before exporting"),
    };
    let (mut before, mut after) = (0u64, 0u64);
    for entry in std::fs::read_dir(&args.out).with_context(|| format!("reading {}", args.out.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        before += std::fs::metadata(&path)?.len();
        let meta = suite_core::weights::read_safetensors_metadata(&path)?;
        let tensors: Vec<(String, tch::Tensor)> = suite_core::weights::read_safetensors(&path)?
            .into_iter()
            .map(|(n, t)| if t.is_floating_point() { (n, t.to_kind(kind)) } else { (n, t) })
            .collect();
        suite_core::weights::save_safetensors(&path, &tensors, (!meta.is_empty()).then_some(&meta))?;
        after += std::fs::metadata(&path)?.len();
    }
    println!("weights in {name}: {:.1} MB → {:.1} MB on disk", before as f64 / 1e6, after as f64 / 1e6);
    Ok(())
}

/// Folds a LoRA/DoRA adapter into its base model and writes the plain model in hub layout.
fn merge(args: &ExportArgs, run: &Path, src: &Path) -> Result<()> {
    let job: crate::job::JobFile = suite_core::config::load_toml(&run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", run.display()))?;
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

/// Whether `dir` holds a causal LM (or an adapter of one): its `config.json` names a decoder-only `model_type`.
fn is_causal_lm(dir: &Path) -> bool {
    suite_text::models::causal_model_type(&dir.join("config.json")).is_ok()
}

/// `--format hub|peft|gguf` of a causal LM folder, full or PEFT.
fn export_lm(args: &ExportArgs, src: &Path) -> Result<()> {
    let format = args.format.as_deref().unwrap_or("hub");
    if !matches!(format, "hub" | "peft" | "gguf") {
        bail!("--format {format:?}: expected hub, peft or gguf");
    }
    if args.merge {
        bail!("--merge is for encoder runs; a language model's --format hub always merges its adapter");
    }
    let mut dtype = WeightDtype::parse(&args.dtype)?;
    let mut gguf_type = GgufType::parse(&args.gguf_type)?;
    let mut format = format;
    match args.precision {
        None => {}
        Some(ExportPrecision::Int8) => {
            if args.format.is_some() && format != "gguf" {
                bail!("--precision int8: a language model's int8 export is GGUF (Q8_0); use --format gguf");
            }
            format = "gguf";
            gguf_type = GgufType::Q8_0;
        }
        Some(p) if format == "gguf" => {
            gguf_type = match p {
                ExportPrecision::Fp16 => GgufType::F16,
                _ => bail!("--format gguf --precision {p:?}: GGUF is written as f16 or int8 (Q8_0)"),
            }
        }
        Some(p) => {
            dtype = match p {
                ExportPrecision::Fp32 => WeightDtype::F32,
                ExportPrecision::Fp16 => WeightDtype::F16,
                _ => WeightDtype::Bf16,
            }
        }
    }
    if !src.join("config.json").is_file() && !src.join("adapter.safetensors").is_file() {
        bail!("{}: not a model folder (no config.json or adapter.safetensors)", src.display());
    }
    eprintln!("loading {}", src.display());
    let mut ckpt = LmCheckpoint::load(src)?;
    match format {
        "hub" => {
            export_hub(&ckpt, &args.out, dtype)?;
            let how = if ckpt.is_peft() { format!(" ({} merged)", ckpt.peft.method_name()) } else { String::new() };
            println!("exported {}{how} to {} (hub layout, {})", src.display(), args.out.display(), dtype.torch_name());
        }
        "peft" => {
            export_peft(&mut ckpt, &args.out, args.base.as_deref())?;
            println!(
                "exported the {} adapter of {} to {} (peft layout)",
                ckpt.peft.method_name(),
                src.display(),
                args.out.display()
            );
        }
        _ => {
            let path = gguf_path(&args.out, gguf_type)?;
            export_gguf(&ckpt, &path, gguf_type)?;
            println!("exported {} to {} (GGUF, {})", src.display(), path.display(), gguf_type.name());
        }
    }
    Ok(())
}

/// `out` itself when it names a `.gguf` file, else `out/model-<type>.gguf` (the folder is created).
fn gguf_path(out: &Path, ty: GgufType) -> Result<PathBuf> {
    if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        return Ok(out.to_path_buf());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out.join(format!("model-{}.gguf", ty.name())))
}
