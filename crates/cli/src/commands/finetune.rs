//! `suite finetune <domain>`: resolve the job (recipe + flags, or a run's saved config on --resume), then train.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use suite_core::dist::{self, DistEnv, LaunchSpec};
use suite_core::runs::RunDir;

use super::{speech, text, vision};
use crate::args::{Domain, FinetuneArgs};
use crate::job::{load_recipe, JobFile};

/// Entry point.
pub fn run(args: FinetuneArgs) -> Result<()> {
    // A tracker that cannot work is refused before any worker starts or any folder appears.
    super::tracking::check(&args)?;
    let env = DistEnv::from_env()?;
    if let Some(n) = args.nproc {
        if env.is_some() {
            bail!(
                "--nproc starts its own workers, but this process was already launched as one (RANK and WORLD_SIZE \
                 are set): leave --nproc out under torchrun or another launcher"
            );
        }
        if n == 0 {
            bail!("--nproc must be at least 1");
        }
        if n > 1 {
            return launch(n);
        }
    }
    let main = env.as_ref().is_none_or(|e| e.rank == 0);
    let (mut job, out, resume) = resolve(&args, main)?;
    if let Some(e) = &env {
        // As torchrun's convention: each process of a machine takes the GPU of its local rank.
        let d = job.train.device.as_str();
        if (d == "cuda" || d == "auto") && tch::Cuda::is_available() {
            job.train.device = format!("cuda:{}", e.local_rank);
        }
    }
    let single = env.is_none();
    let out = match env {
        Some(e) => match dist::init(&e, Duration::from_secs(job.train.dist_timeout_s))? {
            // Every rank writes into (and resumes from) the folder rank 0 chose.
            Some(g) => {
                let mine = out.to_string_lossy().into_owned();
                let shared = g.share_from_main("run-folder", main.then_some(mine.as_bytes()))?;
                PathBuf::from(String::from_utf8(shared).context("rank 0's run folder")?)
            }
            None => out,
        },
        None => out,
    };
    // A fresh single-process run that fails before its first checkpoint removes the run folder it created, so that
    // no half-written run (config.toml and an empty checkpoints/) is left at --out and the corrected command can
    // reuse it. Jobs are checked before the folder appears; this covers what only training finds.
    let created = (!resume && single && !out.exists()).then(|| out.clone());
    // Only rank 0 writes the run, so only it tracks it.
    let mut observers = if main { super::tracking::observers(&args, &job)? } else { Vec::new() };
    observers.extend(super::tune::trial_observer(&args, main)?);
    let result = match args.domain {
        Domain::Vision => vision::finetune(job, out, resume, observers),
        Domain::Text => text::finetune(job, out, resume, observers),
        Domain::Speech => speech::finetune(job, out, resume, observers),
    };
    if let (Err(_), Some(dir)) = (&result, created) {
        remove_if_no_checkpoint(&dir);
    }
    result
}

/// Removes the run folder `dir` when it holds no checkpoint and no saved model; keeps it (it can be resumed or
/// used) otherwise.
fn remove_if_no_checkpoint(dir: &std::path::Path) {
    // Anything under checkpoints/, even a staging folder, counts as a checkpoint: only a run that never began one
    // is removed.
    let no_checkpoint = std::fs::read_dir(dir.join("checkpoints")).is_ok_and(|mut d| d.next().is_none());
    let no_model = !dir.join("best").exists() && !dir.join("final").exists();
    if no_checkpoint && no_model && std::fs::remove_dir_all(dir).is_ok() {
        eprintln!("removed the run folder {}: the job failed before its first checkpoint", dir.display());
    }
}

/// Creates (or reopens, to resume) the run folder and, on rank 0 of a data-parallel job or a single process, writes
/// the job's config into a new one. Returns the folder and whether this process writes it: ranks other than 0
/// train and leave the run folder to rank 0.
pub(crate) fn open_run(out: &std::path::Path, resume: bool, job: &JobFile) -> Result<(RunDir, bool)> {
    let run = RunDir::create(out, !resume)?;
    let main = dist::is_main();
    if main {
        eprintln!("run folder: {}", run.root().display());
        if !resume {
            run.write_config(job)?;
        }
    }
    Ok((run, main))
}

/// `--nproc N`: runs this same command line in N local worker processes and exits as they do.
pub(crate) fn launch(nproc: usize) -> Result<()> {
    let mut args: Vec<OsString> = Vec::new();
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        if a == "--nproc" {
            it.next();
        } else if !a.to_string_lossy().starts_with("--nproc=") {
            args.push(a);
        }
    }
    let program = std::env::current_exe().context("locating the suite executable")?;
    let code = dist::launch_local(&LaunchSpec { nproc, program, args, grace: Duration::from_secs(30) })?;
    if code != 0 {
        // The workers printed their errors; exit as the first one that failed.
        std::process::exit(code);
    }
    Ok(())
}

/// The resolved job, its run folder and whether it resumes. `main` is false on data-parallel ranks other than 0,
/// which take rank 0's run folder and so skip its checks.
fn resolve(args: &FinetuneArgs, main: bool) -> Result<(JobFile, PathBuf, bool)> {
    if let Some(run) = &args.resume {
        let path = run.join("config.toml");
        if !path.exists() {
            bail!("--resume {}: not a run folder (no config.toml)", run.display());
        }
        let mut job: JobFile = suite_core::config::load_toml(&path)?;
        // A resumed run keeps its recipe; only where it runs may change.
        let t = &args.train;
        if let Some(d) = &t.device {
            job.train.device = d.clone();
        }
        if let Some(n) = t.threads {
            job.train.threads = n;
        }
        if let Some(n) = t.workers {
            job.train.workers = n;
        }
        if let Some(n) = t.dist_timeout {
            job.train.dist_timeout_s = n;
        }
        return Ok((job, run.clone(), true));
    }
    let mut job = match &args.config {
        Some(p) => load_recipe(p, args.domain)?,
        None => JobFile::defaults(args.domain),
    };
    if let Some(d) = job.task.domain {
        if d != args.domain {
            bail!(
                "{}: the recipe is for the {d:?} domain, not {:?}",
                args.config.as_ref().unwrap().display(),
                args.domain
            );
        }
    }
    args.train.apply(&mut job.train);
    apply_peft_flags(&args.peft, &mut job)?;
    if let Some(v) = job.vision.as_mut() {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(x) = args.$f.clone() { v.$f = x; } )* };
        }
        set!(model, backbone_lr_mult, label_smoothing, mixup, cutmix);
        if args.weights.is_some() {
            v.weights = args.weights.clone();
        }
        if args.data.is_some() {
            v.data = args.data.clone();
        }
        if args.val_data.is_some() {
            v.val_data = args.val_data.clone();
        }
        if args.input_size.is_some() {
            v.input_size = args.input_size;
        }
        if let Some(s) = args.val_split {
            v.val_split = s;
        }
        if let Some(t) = &args.tune {
            v.tune = t.parse().map_err(anyhow::Error::msg).context("--tune")?;
        }
        if let Some(i) = &args.init {
            v.init = match i.as_str() {
                "pretrained" => suite_vision::task::Init::Pretrained,
                "random" => suite_vision::task::Init::Random,
                _ => bail!("--init {i:?}: expected pretrained or random"),
            };
        }
        if let Some(a) = &args.augment {
            v.augment = match a.as_str() {
                "none" => suite_vision::task::Augment::None,
                "light" => suite_vision::task::Augment::Light,
                "strong" => suite_vision::task::Augment::Strong,
                _ => bail!("--augment {a:?}: expected none, light or strong"),
            };
        }
        v.skip_bad |= args.skip_bad;
        v.freeze_bn |= args.freeze_bn;
    }
    if let Some(s) = job.speech.as_mut() {
        apply_speech_flags(args, s)?;
        s.data = s.data.take().map(absolute);
        s.val_data = s.val_data.take().map(absolute);
        if std::path::Path::new(&s.model).exists() {
            s.model = absolute(PathBuf::from(&s.model)).display().to_string();
        }
    }
    if let Some(t) = job.text.as_mut() {
        apply_text_flags(args, t)?;
        t.data = t.data.take().map(absolute);
        t.val_data = t.val_data.take().map(absolute);
        if std::path::Path::new(&t.model).exists() {
            t.model = absolute(PathBuf::from(&t.model)).display().to_string();
        }
    } else if args.text.task.is_some() && args.domain == Domain::Vision {
        bail!("--task applies to text and speech jobs");
    }
    if args.freeze_bn && job.vision.is_none() {
        bail!("--freeze-bn applies to vision jobs (batch norms)");
    }
    if let Some(v) = job.vision.as_mut() {
        // The run records absolute paths, so `suite eval` and `--resume` work from any folder.
        v.data = v.data.take().map(absolute);
        v.val_data = v.val_data.take().map(absolute);
        if let Some(w) = &v.weights {
            if std::path::Path::new(w).exists() {
                v.weights = Some(absolute(PathBuf::from(w)).display().to_string());
            }
        }
    }
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let model = match (&job.vision, &job.text) {
                (Some(v), _) => v.model.clone(),
                (_, Some(t)) => format!("{:?}-{}", t.task, t.model.rsplit(['/', '\\']).next().unwrap_or("model")),
                _ if job.speech.is_some() => {
                    let s = job.speech.as_ref().expect("checked");
                    s.model.rsplit(['/', '\\']).next().unwrap_or("model").to_string()
                }
                _ => String::new(),
            };
            let stamp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            PathBuf::from("runs").join(format!("{:?}-{model}-{stamp}", args.domain).to_lowercase())
        }
    };
    if main && out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!(
            "--out {}: the folder exists and is not empty; choose another --out, or continue it with --resume",
            out.display()
        );
    }
    Ok((job, out, false))
}

/// PEFT flags onto the `[peft]` table: `--peft METHOD` replaces the recipe's method; the option flags refine it.
fn apply_peft_flags(a: &crate::args::PeftArgs, job: &mut JobFile) -> Result<()> {
    use suite_core::peft::{from_cli, PeftCliOptions};
    let opts = PeftCliOptions {
        lora_r: a.lora_r,
        lora_alpha: a.lora_alpha,
        lora_dropout: a.lora_dropout,
        lora_targets: a.lora_targets.clone(),
        rslora: a.rslora.then_some(true),
        ia3_targets: a.ia3_targets.clone(),
        ia3_feedforward: a.ia3_feedforward.clone(),
        prefix_tokens: a.prefix_tokens,
        prefix_projection: a.prefix_projection,
        adapter_kind: a.adapter_kind.clone(),
        adapter_reduction: a.adapter_reduction,
        ..PeftCliOptions::default()
    };
    job.peft = match &a.peft {
        Some(method) => from_cli(method, &opts)?,
        None => std::mem::take(&mut job.peft).with_cli_options(&opts)?,
    };
    job.peft.validate()
}

/// Speech flags onto the `[speech]` table.
fn apply_speech_flags(args: &FinetuneArgs, s: &mut suite_speech::task::SpeechConfig) -> Result<()> {
    if let Some(k) = &args.text.task {
        s.task = k.parse().map_err(anyhow::Error::msg).context("--task")?;
    }
    if let Some(m) = &args.model {
        s.model = m.clone();
    }
    if args.data.is_some() {
        s.data = args.data.clone();
    }
    if args.val_data.is_some() {
        s.val_data = args.val_data.clone();
    }
    if let Some(v) = args.val_split {
        s.val_split = v;
    }
    let a = &args.speech;
    if a.language.is_some() {
        s.language = a.language.clone();
    }
    s.freeze_encoder |= a.freeze_encoder;
    s.spec_augment |= a.spec_augment;
    if let Some(b) = a.eval_beam {
        s.eval_beam = b;
    }
    Ok(())
}

/// Text flags onto the `[text]` table.
fn apply_text_flags(args: &FinetuneArgs, t: &mut suite_text::task::TextConfig) -> Result<()> {
    let a = &args.text;
    if let Some(k) = &a.task {
        t.task = k.parse().map_err(anyhow::Error::msg).context("--task")?;
    }
    if let Some(m) = &args.model {
        t.model = m.clone();
    }
    if args.weights.is_some() {
        bail!("--weights is for vision; for text, --model takes a folder or hub id");
    }
    if args.data.is_some() {
        t.data = args.data.clone();
    }
    if args.val_data.is_some() {
        t.val_data = args.val_data.clone();
    }
    if let Some(s) = args.val_split {
        t.val_split = s;
    }
    if let Some(n) = a.max_len {
        t.max_len = n;
    }
    t.multi_label |= a.multi_label;
    t.strict |= a.strict;
    t.version_2 |= a.version_2;
    if let Some(c) = &a.text_column {
        t.columns.text = c.clone();
    }
    if let Some(c) = &a.pair_column {
        t.columns.text_pair = Some(c.clone());
    }
    if let Some(c) = &a.label_column {
        t.columns.label = c.clone();
    }
    if let Some(m) = &a.subword_labels {
        t.subword_labels = match m.as_str() {
            "first" => suite_text::task::SubwordMode::First,
            "all" => suite_text::task::SubwordMode::All,
            _ => bail!("--subword-labels {m:?}: expected first or all"),
        };
    }
    if let Some(n) = a.doc_stride {
        t.doc_stride = n;
    }
    if let Some(n) = a.max_answer_len {
        t.max_answer_len = n;
    }
    if let Some(m) = a.encoder_lr_mult {
        t.encoder_lr_mult = m;
    }
    if let Some(l) = args.label_smoothing {
        t.label_smoothing = l;
    }
    if let Some(i) = &args.init {
        t.init = i.parse().map_err(anyhow::Error::msg).context("--init")?;
    }
    if a.no_packing {
        t.packing = false;
    }
    if let Some(n) = a.eval_generate {
        t.eval_generate = n;
    }
    if a.system_prompt.is_some() {
        t.system_prompt = a.system_prompt.clone();
    }
    if a.gradient_checkpointing {
        t.gradient_checkpointing = true;
    }
    Ok(())
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}
