//! `suite bench NAME`: times a job in suite and the same job in PyTorch eager on this machine, in one run, and
//! prints both with the ratio of suite's throughput to PyTorch's. The PyTorch side is a script from
//! `crates/cli/bench/`, run with suite's reference Python; both sides use libtorch's default thread counts (the
//! script is told ours), on the same device.
//!
//! - `resnet50-step`: full fine-tuning steps of a ResNet-50 (random init, 10-class head, batch 8 of 3×224×224,
//!   cross-entropy, backward, AdamW, zero_grad); 2 warm-up steps, then `--iters` timed steps.
//! - `head-only`: a head-only fine-tuning job of EfficientNet-Lite0 (pretrained) on 200 + 50 generated images, end to
//!   end: suite's real pipeline with its feature cache against the plain PyTorch loop that runs the frozen backbone
//!   every epoch; `--iters` epochs.
//! - `minilm-step`: full fine-tuning steps of all-MiniLM-L6-v2 with a 2-label classification head (batch 16 of 128
//!   random tokens, dropout on, AdamW) against transformers' BertForSequenceClassification.
//! - `whisper-step`: full fine-tuning steps of whisper-base (batch 2 of LibriVox log-mels with their transcripts,
//!   AdamW fused) against transformers' WhisperForConditionalGeneration on the same exported weights, plus the
//!   real-time factor of greedy transcription on both sides; 3 timed steps by default.
//!
//! - `sft-step`, `generate`: a LoRA SFT step and greedy generation of a random 40 M-parameter Llama against
//!   transformers (+ peft); see [`lm`].
//! - `serve`: `suite serve` against FastAPI + uvicorn (text, vision) and faster-whisper (speech); see
//!   [`serve`].
//! - `ddp`: data-parallel fine-tuning in 1 and 2 processes against PyTorch DDP under torchrun; see [`ddp`].
//! - `transcribe`: `suite transcribe` against faster-whisper, fp32 and int8, greedy and beam 5; see
//!   [`transcribe`].
//!
//! The step benchmarks (`resnet50-step`, `minilm-step`, `whisper-step`, `sft-step`) and `generate` also report
//! `peak_rss_mib` for each side: the peak resident memory the side's model and timed work added, from Linux's
//! `/proc/self/status` (see [`RssWatch`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use suite_core::optim::{param_groups, OptimizerConfig, ScheduleKind};
use suite_core::python::run_python;
use suite_core::runs::RunDir;
use suite_core::train::{Precision, TrainConfig, Trainer};
use suite_vision::models::lookup;
use suite_vision::task::{prepare, Augment, JobData, Tune, VisionConfig};
use tch::{nn::VarStore, Device, Kind, Reduction, Tensor};

use crate::args::BenchArgs;

#[path = "bench_ddp.rs"]
mod ddp;
#[path = "bench_lm.rs"]
mod lm;
#[path = "bench_serve.rs"]
mod serve;
#[path = "bench_transcribe.rs"]
mod transcribe;

// The step scripts share bench/rss.py's memory helpers, prepended to each.
const RESNET50_STEP_PY: &str =
    concat!(include_str!("../../bench/rss.py"), include_str!("../../bench/resnet50_step.py"));
const HEAD_ONLY_PY: &str = include_str!("../../bench/head_only.py");
const MINILM_STEP_PY: &str = concat!(include_str!("../../bench/rss.py"), include_str!("../../bench/minilm_step.py"));
const WHISPER_STEP_PY: &str = concat!(include_str!("../../bench/rss.py"), include_str!("../../bench/whisper_step.py"));

/// The benchmarks `suite bench` runs.
const BENCHMARKS: &[&str] = &[
    "resnet50-step",
    "head-only",
    "minilm-step",
    "whisper-step",
    "sft-step",
    "generate",
    "serve",
    "ddp",
    "transcribe",
];

const RESNET_BATCH: i64 = 8;
const RESNET_CLASSES: i64 = 10;
const RESNET_WARMUP: usize = 2;
const LR: f64 = 1e-3;
const WEIGHT_DECAY: f64 = 0.01;

/// Images of the head-only job: per class, in `train/` and `val/`.
const HEAD_TRAIN_PER_CLASS: usize = 20;
const HEAD_VAL_PER_CLASS: usize = 5;
const HEAD_BATCH: usize = 32;
const HEAD_WORKERS: usize = 2;

/// One side's measurement.
#[derive(Debug, Serialize)]
struct Side {
    /// Wall time of the timed part.
    seconds: f64,
    /// Items ([`Report::unit`]: images, samples, sequences, tokens) processed per second in the timed part.
    images_per_sec: f64,
    /// Items per second of the median step, robust to other processes on a shared machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    median_images_per_sec: Option<f64>,
    /// Mean milliseconds per step in forward (with the loss), backward and optimizer (step and zero_grad); CPU only,
    /// where timing between phases needs no synchronisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    phase_ms: Option<Phases>,
    /// Anything else the side reports (final loss, accuracy…).
    extra: Value,
}

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
struct Phases {
    forward: f64,
    backward: f64,
    optimizer: f64,
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
struct Report {
    benchmark: String,
    description: String,
    device: String,
    threads: i32,
    interop_threads: i32,
    iters: usize,
    /// What the throughputs count: images, samples, sequences or tokens (the table's labels say it; the
    /// `*images_per_sec` field names are kept for the JSON's readers and count this unit).
    unit: &'static str,
    suite: Side,
    pytorch: Side,
    /// suite's throughput over PyTorch's (above 1: suite is faster); for resnet50-step, of the median steps.
    ratio: f64,
    /// The same from mean throughputs, when `ratio` is from median steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_of_means: Option<f64>,
    /// The ratio the benchmark aims for.
    aim: f64,
}

/// Runs `suite bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.name == "serve" {
        return serve::run(&args);
    }
    if args.name == "ddp" {
        return ddp::run(&args);
    }
    if args.name == "transcribe" {
        return transcribe::run(&args);
    }
    let iters = args.iters.unwrap_or(match args.name.as_str() {
        "whisper-step" => 3,
        "sft-step" | "generate" => 5,
        _ => 10,
    });
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let device = Device::cuda_if_available();
    let profile = match (&args.profile, args.name.as_str()) {
        (None, _) => None,
        (Some(dir), "resnet50-step" | "minilm-step" | "whisper-step") => {
            std::fs::create_dir_all(dir).with_context(|| format!("--profile: creating {}", dir.display()))?;
            Some(Profile { dir: dir.clone() })
        }
        (Some(_), other) => bail!("--profile is for resnet50-step, minilm-step and whisper-step, not {other}"),
    };
    let p = profile.as_ref();
    let report = match args.name.as_str() {
        "resnet50-step" => resnet50_step(iters, device, p)?,
        "head-only" => head_only(iters, device)?,
        "minilm-step" => minilm_step(iters, device, p)?,
        "whisper-step" => whisper_step(iters, device, p)?,
        "sft-step" => lm::sft_step(iters, device)?,
        "generate" => lm::generate(iters, device)?,
        other => bail!("unknown benchmark {other:?}; known: {}", BENCHMARKS.join(", ")),
    };
    print_table(&report);
    if let Some(p) = &profile {
        p.compare(&report.benchmark)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("written {}", path.display());
    }
    Ok(())
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Runs a PyTorch side script and parses the JSON object on the last line of its output (libraries may print
/// before it).
fn run_reference(what: &str, code: &str, args: &[String]) -> Result<Value> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python(code, &args).with_context(|| format!("PyTorch side of {what}"))?;
    let line = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("PyTorch side of {what}: expected a JSON line, got:\n{out}"))
}

/// The PyTorch side of a training-step benchmark from its script's JSON line (`seconds`, `images_per_sec`,
/// `median_step_s`, `phase_ms`), keeping `extra_keys` as reported.
fn step_side(v: &Value, batch: usize, extra_keys: &[&str]) -> Result<Side> {
    let extra: serde_json::Map<String, Value> =
        extra_keys.iter().map(|k| (k.to_string(), v.get(*k).cloned().unwrap_or(Value::Null))).collect();
    Ok(Side {
        seconds: field(v, "seconds")?,
        images_per_sec: field(v, "images_per_sec")?,
        median_images_per_sec: Some(batch as f64 / field(v, "median_step_s")?),
        phase_ms: v.get("phase_ms").and_then(|p| serde_json::from_value(p.clone()).ok()),
        extra: Value::Object(extra),
    })
}

fn field(v: &Value, key: &str) -> Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("the PyTorch side reported no {key:?}: {v}"))
}

fn thread_args(device: Device) -> Vec<String> {
    vec![
        "--threads".into(),
        tch::get_num_threads().to_string(),
        "--interop-threads".into(),
        tch::get_num_interop_threads().to_string(),
        "--device".into(),
        device_name(device),
    ]
}

/// The peak resident memory a part of a benchmark adds to this process, from Linux's `/proc/self/status`.
///
/// `VmHWM` (the high-water mark of the resident set) is process-wide and remembers earlier work — the other side's
/// output parsing is nothing, but whisper-step's transcription or a previous model is — so [`RssWatch::start`]
/// first resets the mark to the current resident set (`/proc/self/clear_refs` 5, Linux 4.0 and later; where that
/// is refused the mark stays process-wide and the figure can only be larger) and notes `VmRSS`;
/// [`RssWatch::peak_added_mib`] is `VmHWM` then minus that: the memory the model, its optimizer state and the timed
/// steps' activations added at their peak. The PyTorch scripts measure the same way in their own process.
pub(crate) struct RssWatch {
    base_mib: f64,
}

impl RssWatch {
    /// Resets the high-water mark where the kernel allows it and notes the resident memory now.
    pub(crate) fn start() -> Self {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self { base_mib: status_mib("VmRSS:") }
    }

    /// MiB the resident memory peaked above what it was at [`RssWatch::start`] (NaN where `/proc` is missing).
    pub(crate) fn peak_added_mib(&self) -> f64 {
        status_mib("VmHWM:") - self.base_mib
    }
}

/// A memory line of `/proc/self/status` (`VmRSS:`, `VmHWM:`), in MiB; NaN where it cannot be read.
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

// ---------------------------------------------------------------------------------------------------------------
// resnet50-step

fn resnet50_step(iters: usize, device: Device, profile: Option<&Profile>) -> Result<Report> {
    eprintln!("suite: {RESNET_WARMUP} warm-up + {iters} ResNet-50 training steps…");
    let suite = resnet50_step_suite(iters, device, profile)?;
    eprintln!("PyTorch eager: the same…");
    let mut py_args = thread_args(device);
    py_args.extend(profile.map(Profile::python_args).unwrap_or_default());
    for (k, v) in [
        ("--batch", RESNET_BATCH.to_string()),
        ("--classes", RESNET_CLASSES.to_string()),
        ("--warmup", RESNET_WARMUP.to_string()),
        ("--iters", iters.to_string()),
        ("--lr", LR.to_string()),
        ("--weight-decay", WEIGHT_DECAY.to_string()),
    ] {
        py_args.extend([k.to_string(), v]);
    }
    let v = run_reference("resnet50-step", RESNET50_STEP_PY, &py_args)?;
    let pytorch = step_side(
        &v,
        RESNET_BATCH as usize,
        &["loss", "peak_rss_mib", "optimizer_impl", "threads", "interop_threads", "torch"],
    )?;
    Ok(Report {
        benchmark: "resnet50-step".into(),
        description: format!(
            "ResNet-50 full fine-tuning step: batch {RESNET_BATCH} of 3x224x224 random images, {RESNET_CLASSES}-class \
             head, random init, train mode, cross-entropy, backward, AdamW (lr {LR}, weight decay {WEIGHT_DECAY} \
             except biases and norms), zero_grad; {RESNET_WARMUP} warm-up steps, then {iters} timed"
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters,
        unit: "images",
        ratio: suite.median_images_per_sec.unwrap_or(f64::NAN) / pytorch.median_images_per_sec.unwrap_or(f64::NAN),
        ratio_of_means: Some(suite.images_per_sec / pytorch.images_per_sec),
        suite,
        pytorch,
        aim: 1.1,
    })
}

/// suite's side: the registry's ResNet-50 on a VarStore, suite's parameter groups and AdamW, the step the trainer
/// does (forward, loss, backward, optimizer step, zero_grad, reading the loss).
fn resnet50_step_suite(iters: usize, device: Device, profile: Option<&Profile>) -> Result<Side> {
    tch::manual_seed(0);
    let rss = RssWatch::start();
    let vs = VarStore::new(device);
    let model = lookup("resnet50")?.build(&vs.root(), RESNET_CLASSES)?;
    let mut optimizer = OptimizerConfig::default().build(param_groups(&vs, &[], WEIGHT_DECAY));
    let x = Tensor::randn([RESNET_BATCH, 3, 224, 224], (Kind::Float, device));
    let y = Tensor::randint(RESNET_CLASSES, [RESNET_BATCH], (Kind::Int64, device));
    let mut forward = || model.forward_t(&x, true).cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
    let mut side =
        time_training(iters, RESNET_WARMUP, RESNET_BATCH as usize, device, &mut forward, optimizer.as_mut(), LR);
    if let Some(p) = profile {
        p.steps(device, &mut forward, optimizer.as_mut(), LR)?;
    }
    side.extra["optimizer_impl"] = "suite_core::optim::AdamW (libtorch fused kernel)".into();
    side.extra["peak_rss_mib"] = rss.peak_added_mib().into();
    Ok(side)
}

/// `--profile DIR`: both sides profile [`PROFILE_STEPS`] steps after their timed ones, with libtorch's profiler
/// (the same Kineto recorder on both sides), into `DIR/suite.json` and `DIR/pytorch.json`; then the op-by-op table.
struct Profile {
    dir: PathBuf,
}

/// Steps each side profiles.
const PROFILE_STEPS: usize = 3;

impl Profile {
    fn suite_trace(&self) -> PathBuf {
        self.dir.join("suite.json")
    }

    fn pytorch_trace(&self) -> PathBuf {
        self.dir.join("pytorch.json")
    }

    fn python_args(&self) -> Vec<String> {
        vec![
            "--profile".into(),
            self.pytorch_trace().display().to_string(),
            "--profile-steps".into(),
            PROFILE_STEPS.to_string(),
        ]
    }

    /// Runs and profiles [`PROFILE_STEPS`] training steps as [`time_training`] runs them.
    fn steps(
        &self,
        device: Device,
        forward: &mut dyn FnMut() -> Tensor,
        optimizer: &mut dyn suite_core::optim::Optimizer,
        lr: f64,
    ) -> Result<()> {
        let profiler = suite_core::profile::Profiler::start(device.is_cuda())?;
        for _ in 0..PROFILE_STEPS {
            let loss = forward();
            loss.backward();
            optimizer.step(lr);
            optimizer.zero_grad();
            loss.double_value(&[]);
        }
        profiler.save(&self.suite_trace())
    }

    /// Prints the operators whose self time per step differs most between the sides, and writes the whole table.
    fn compare(&self, benchmark: &str) -> Result<()> {
        use suite_core::profile::{compare, OpTable};
        let a = OpTable::from_trace(&self.suite_trace())?;
        let b = OpTable::from_trace(&self.pytorch_trace())?;
        let rows = compare(&a, PROFILE_STEPS, &b, PROFILE_STEPS);
        let n = PROFILE_STEPS as f64;
        let mut md = format!(
            "# `suite bench {benchmark} --profile`: self time per step by operator ({PROFILE_STEPS} profiled \
             steps per side)\n\noperators in all: suite {:.1} ms/step, PyTorch {:.1} ms/step\n\n\
             | operator | suite ms | PyTorch ms | suite − PyTorch | suite calls | PyTorch calls |\n\
             |---|---:|---:|---:|---:|---:|\n",
            a.op_us / 1e3 / n,
            b.op_us / 1e3 / n
        );
        for r in &rows {
            md += &format!(
                "| `{}` | {:.2} | {:.2} | {:+.2} | {} | {} |\n",
                r.name,
                r.a_ms,
                r.b_ms,
                r.a_ms - r.b_ms,
                r.a_calls,
                r.b_calls
            );
        }
        std::fs::write(self.dir.join("ops.md"), md)?;
        std::fs::write(self.dir.join("ops.json"), serde_json::to_string_pretty(&rows)? + "\n")?;
        println!();
        println!(
            "profile ({PROFILE_STEPS} steps per side): time in operators {:.1} ms/step in suite, {:.1} in PyTorch; \
             largest differences in self time:",
            a.op_us / 1e3 / n,
            b.op_us / 1e3 / n
        );
        println!("{:<60}{:>10}{:>10}{:>9}{:>9}", "operator", "suite ms", "torch ms", "calls", "calls");
        for r in rows.iter().take(20) {
            let name: String = r.name.chars().take(58).collect();
            println!("{name:<60}{:>10.2}{:>10.2}{:>9}{:>9}", r.a_ms, r.b_ms, r.a_calls, r.b_calls);
        }
        println!(
            "written {} (the whole table), the Chrome traces suite.json and pytorch.json",
            self.dir.join("ops.md").display()
        );
        Ok(())
    }
}

/// Times training steps as the trainer runs them (forward with the loss, backward, optimizer step, zero_grad,
/// reading the loss): `warmup` untimed steps, then `iters` timed ones; `batch` examples per step.
fn time_training(
    iters: usize,
    warmup: usize,
    batch: usize,
    device: Device,
    forward: &mut dyn FnMut() -> Tensor,
    optimizer: &mut dyn suite_core::optim::Optimizer,
    lr: f64,
) -> Side {
    let mut phases = Phases::default();
    let mut steps = Vec::with_capacity(iters);
    let mut step = |phases: &mut Phases, steps: &mut Vec<f64>| -> f64 {
        let t0 = Instant::now();
        let loss = forward();
        let t1 = Instant::now();
        loss.backward();
        let t2 = Instant::now();
        optimizer.step(lr);
        optimizer.zero_grad();
        let t3 = Instant::now();
        let value = loss.double_value(&[]);
        phases.forward += (t1 - t0).as_secs_f64() * 1e3;
        phases.backward += (t2 - t1).as_secs_f64() * 1e3;
        phases.optimizer += (t3 - t2).as_secs_f64() * 1e3;
        steps.push(t0.elapsed().as_secs_f64());
        value
    };
    for _ in 0..warmup {
        step(&mut phases, &mut steps);
    }
    sync(device);
    let mut phases = Phases::default();
    steps.clear();
    let start = Instant::now();
    let mut loss = 0.0;
    for _ in 0..iters {
        loss = step(&mut phases, &mut steps);
    }
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    let n = iters as f64;
    let phase_ms = (!device.is_cuda()).then(|| Phases {
        forward: phases.forward / n,
        backward: phases.backward / n,
        optimizer: phases.optimizer / n,
    });
    // The loss is read every step, which waits for the device: step times are wall times on CUDA too.
    steps.sort_by(f64::total_cmp);
    Side {
        seconds,
        images_per_sec: (batch * iters) as f64 / seconds,
        median_images_per_sec: Some(batch as f64 / steps[steps.len() / 2]),
        phase_ms,
        extra: serde_json::json!({ "loss": loss }),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// minilm-step

const MINILM_BATCH: i64 = 16;
const MINILM_SEQ: i64 = 128;
const MINILM_LABELS: i64 = 2;
const MINILM_LR: f64 = 5e-5;

fn minilm_step(iters: usize, device: Device, profile: Option<&Profile>) -> Result<Report> {
    let files = suite_text::models::resolve_text_model(suite_text::models::DEFAULT_TEXT_MODEL)?;
    eprintln!("suite: {RESNET_WARMUP} warm-up + {iters} all-MiniLM-L6-v2 classification training steps…");
    let suite = minilm_step_suite(&files, iters, device, profile)?;
    eprintln!("PyTorch eager (transformers): the same…");
    let mut py_args = thread_args(device);
    py_args.extend(profile.map(Profile::python_args).unwrap_or_default());
    for (k, v) in [
        ("--model", files.dir.display().to_string()),
        ("--batch", MINILM_BATCH.to_string()),
        ("--seq", MINILM_SEQ.to_string()),
        ("--labels", MINILM_LABELS.to_string()),
        ("--warmup", RESNET_WARMUP.to_string()),
        ("--iters", iters.to_string()),
        ("--lr", MINILM_LR.to_string()),
        ("--weight-decay", WEIGHT_DECAY.to_string()),
        // transformers' Trainer default optimizer for torch >= 2.8 is adamw_torch_fused.
        ("--fused", "1".to_string()),
    ] {
        py_args.extend([k.to_string(), v]);
    }
    let v = run_reference("minilm-step", MINILM_STEP_PY, &py_args)?;
    let pytorch =
        step_side(&v, MINILM_BATCH as usize, &["loss", "peak_rss_mib", "optimizer_impl", "attention", "torch"])?;
    Ok(Report {
        benchmark: "minilm-step".into(),
        description: format!(
            "all-MiniLM-L6-v2 (pretrained) + new {MINILM_LABELS}-label classification head, full fine-tuning step: \
             batch {MINILM_BATCH} x {MINILM_SEQ} tokens, train mode (dropout 0.1), cross-entropy, backward, AdamW \
             (lr {MINILM_LR}, weight decay {WEIGHT_DECAY} except biases and norms; fused kernel on both sides), \
             zero_grad; PyTorch side is transformers' BertForSequenceClassification; {RESNET_WARMUP} warm-up steps, \
             then {iters} timed"
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters,
        unit: "samples",
        ratio: suite.median_images_per_sec.unwrap_or(f64::NAN) / pytorch.median_images_per_sec.unwrap_or(f64::NAN),
        ratio_of_means: Some(suite.images_per_sec / pytorch.images_per_sec),
        suite,
        pytorch,
        aim: 1.1,
    })
}

fn minilm_step_suite(
    files: &suite_text::models::TextModelFiles,
    iters: usize,
    device: Device,
    profile: Option<&Profile>,
) -> Result<Side> {
    use suite_text::models::{EncoderConfig, Head, TextModel};
    tch::manual_seed(0);
    let rss = RssWatch::start();
    let cfg = EncoderConfig::from_file(&files.config)?;
    let mut vs = VarStore::new(device);
    let model = TextModel::new(&vs.root(), &cfg, Head::Classify { num_labels: MINILM_LABELS })?;
    model.load_pretrained(&mut vs, &files.weights)?;
    let mut optimizer = OptimizerConfig::default().build(param_groups(&vs, &[], WEIGHT_DECAY));
    let vocab = cfg.vocab_size;
    let ids = Tensor::randint_low(1000, vocab, [MINILM_BATCH, MINILM_SEQ], (Kind::Int64, device));
    let mask = Tensor::ones([MINILM_BATCH, MINILM_SEQ], (Kind::Int64, device));
    let types = Tensor::zeros([MINILM_BATCH, MINILM_SEQ], (Kind::Int64, device));
    let y = Tensor::randint(MINILM_LABELS, [MINILM_BATCH], (Kind::Int64, device));
    let mut forward =
        || model.forward(&ids, &types, &mask, true).cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
    let mut side =
        time_training(iters, RESNET_WARMUP, MINILM_BATCH as usize, device, &mut forward, optimizer.as_mut(), MINILM_LR);
    if let Some(p) = profile {
        p.steps(device, &mut forward, optimizer.as_mut(), MINILM_LR)?;
    }
    side.extra["optimizer_impl"] = "suite_core::optim::AdamW (libtorch fused kernel)".into();
    side.extra["peak_rss_mib"] = rss.peak_added_mib().into();
    Ok(side)
}

// ---------------------------------------------------------------------------------------------------------------
// whisper-step

const WHISPER_LR: f64 = 1e-5;

fn whisper_step(iters: usize, device: Device, profile: Option<&Profile>) -> Result<Report> {
    use suite_speech::task::SpeechBatch;
    let tmp = TempDir::new()?;
    let (batch, wavs) = super::speech::bench_batch()?;
    let n = batch.index.len();
    let hub = tmp.0.join("hub");
    eprintln!("suite: greedy transcription of {} LibriVox files, then {RESNET_WARMUP} warm-up + {iters} whisper-base training steps…", wavs.len());
    let rtf = super::speech::bench_rtf(&wavs, &hub, device)?;
    let batch_file = tmp.0.join("batch.safetensors");
    Tensor::write_safetensors(
        &[("mel", &batch.mel), ("tokens", &batch.tokens), ("labels", &batch.labels)],
        &batch_file,
    )?;
    // The training's peak, after the transcription (which loaded its own model) is over.
    let rss = RssWatch::start();
    let mut suite = {
        let files = suite_speech::models::resolve_whisper("whisper-base")?;
        let mut vs = VarStore::new(device);
        let model = suite_speech::models::load_whisper(&mut vs, &files)?;
        let mut optimizer = OptimizerConfig::default().build(param_groups(&vs, &[], 0.0));
        let SpeechBatch { mel, tokens, labels, .. } = &batch;
        let (mel, tokens, labels) = (mel.to_device(device), tokens.to_device(device), labels.to_device(device));
        let mut forward = || {
            let logits = model.decode(&tokens, &model.encode(&mel, true), true);
            let v = logits.size()[2];
            logits.reshape([-1, v]).cross_entropy_loss::<Tensor>(
                &labels.reshape([-1]),
                None,
                Reduction::Mean,
                -100,
                0.0,
            )
        };
        let side = time_training(iters, RESNET_WARMUP, n, device, &mut forward, optimizer.as_mut(), WHISPER_LR);
        if let Some(p) = profile {
            p.steps(device, &mut forward, optimizer.as_mut(), WHISPER_LR)?;
        }
        side
    };
    suite.extra["rtf"] = rtf.into();
    suite.extra["peak_rss_mib"] = rss.peak_added_mib().into();
    suite.extra["optimizer_impl"] = "suite_core::optim::AdamW (libtorch fused kernel)".into();
    eprintln!("PyTorch eager (transformers): the same…");
    let mut py_args = thread_args(device);
    py_args.extend(profile.map(Profile::python_args).unwrap_or_default());
    let wav_list = wavs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    for (k, v) in [
        ("--model", hub.display().to_string()),
        ("--batch-file", batch_file.display().to_string()),
        ("--wavs", wav_list),
        ("--warmup", RESNET_WARMUP.to_string()),
        ("--iters", iters.to_string()),
        ("--lr", WHISPER_LR.to_string()),
    ] {
        py_args.extend([k.to_string(), v]);
    }
    let v = run_reference("whisper-step", WHISPER_STEP_PY, &py_args)?;
    let pytorch = step_side(&v, n, &["loss", "rtf", "peak_rss_mib", "optimizer_impl", "attention", "torch"])?;
    Ok(Report {
        benchmark: "whisper-step".into(),
        description: format!(
            "whisper-base full fine-tuning step: batch {n} of 30-s log-mels of LibriVox speech (pocketsphinx test \
             data) with their transcripts as labels (prompt masked), train mode, teacher-forced cross-entropy, \
             backward, AdamW (lr {WHISPER_LR}, fused kernel on both sides), zero_grad; PyTorch side is \
             transformers' WhisperForConditionalGeneration on the same weights; {RESNET_WARMUP} warm-up steps, then \
             {iters} timed. Also the real-time factor of greedy English transcription of {} LibriVox files \
             (seconds of compute per second of audio, features included; lower is faster)",
            wavs.len()
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters,
        unit: "samples",
        ratio: suite.median_images_per_sec.unwrap_or(f64::NAN) / pytorch.median_images_per_sec.unwrap_or(f64::NAN),
        ratio_of_means: Some(suite.images_per_sec / pytorch.images_per_sec),
        suite,
        pytorch,
        aim: 1.1,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// head-only

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("suite-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ten colours, one per class.
const PALETTE: [[f64; 3]; 10] = [
    [230., 25., 75.],
    [60., 180., 75.],
    [255., 225., 25.],
    [0., 130., 200.],
    [245., 130., 48.],
    [145., 30., 180.],
    [70., 240., 240.],
    [240., 50., 230.],
    [128., 128., 0.],
    [0., 0., 128.],
];

/// Writes an ImageFolder of synthetic 320×240 JPEGs under `root` (`train/classK/NNN.jpg`, `val/…`): a coloured
/// rectangle of random size and place, the class's colour, on a noisy grey background. Returns the image count.
fn write_shapes(root: &Path) -> Result<usize> {
    tch::manual_seed(7);
    let cpu = (Kind::Float, Device::Cpu);
    let uniform = |lo: i64, hi: i64| Tensor::randint_low(lo, hi, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    let (h, w) = (240i64, 320i64);
    let mut count = 0;
    for (split, per_class) in [("train", HEAD_TRAIN_PER_CLASS), ("val", HEAD_VAL_PER_CLASS)] {
        for (k, colour) in PALETTE.iter().enumerate() {
            let dir = root.join(split).join(format!("class{k}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for i in 0..per_class {
                let img = Tensor::rand([3, h, w], cpu) * 96.0 + 80.0;
                let (rh, rw) = (uniform(h / 3, 2 * h / 3), uniform(w / 3, 2 * w / 3));
                let (y0, x0) = (uniform(0, h - rh), uniform(0, w - rw));
                let fill = Tensor::from_slice(colour).to_kind(Kind::Float).view([3, 1, 1])
                    + Tensor::rand([3, rh, rw], cpu) * 40.0
                    - 20.0;
                img.narrow(1, y0, rh).narrow(2, x0, rw).copy_(&fill);
                let file = dir.join(format!("{i:03}.jpg"));
                tch::vision::image::save(&img.clamp(0.0, 255.0), &file)
                    .with_context(|| format!("writing {}", file.display()))?;
                count += 1;
            }
        }
    }
    Ok(count)
}

fn head_only(epochs: usize, device: Device) -> Result<Report> {
    let tmp = TempDir::new()?;
    let data = tmp.0.join("data");
    let images = write_shapes(&data)?;
    let train_images = PALETTE.len() * HEAD_TRAIN_PER_CLASS;
    let spec = lookup("efficientnet_lite0")?;
    let weights = spec.asset_path().context("efficientnet_lite0's weights are an asset")?;
    if !weights.exists() {
        bail!("{}: EfficientNet-Lite0 weights not found; run scripts/setup.sh", weights.display());
    }

    eprintln!("suite: {epochs} epochs of head-only tuning with the feature cache on {images} images…");
    let suite = head_only_suite(&data, &tmp.0.join("run"), epochs, device, train_images)?;
    eprintln!("PyTorch eager: the same job, backbone forward every epoch…");
    let out = tmp.0.join("torch");
    std::fs::create_dir_all(&out)?;
    let mut py_args = thread_args(device);
    for (k, v) in [
        ("--data", data.display().to_string()),
        ("--weights", weights.display().to_string()),
        ("--out", out.display().to_string()),
        ("--epochs", epochs.to_string()),
        ("--batch", HEAD_BATCH.to_string()),
        ("--lr", LR.to_string()),
        ("--weight-decay", WEIGHT_DECAY.to_string()),
        ("--workers", HEAD_WORKERS.to_string()),
    ] {
        py_args.extend([k.to_string(), v]);
    }
    let v = run_reference("head-only", HEAD_ONLY_PY, &py_args)?;
    let seconds = field(&v, "seconds")?;
    let pytorch = Side {
        seconds,
        images_per_sec: (train_images * epochs) as f64 / seconds,
        median_images_per_sec: None,
        phase_ms: None,
        extra: serde_json::json!({
            "val_accuracy": v.get("val_accuracy"),
            "threads": v.get("threads"),
            "interop_threads": v.get("interop_threads"),
            "torch": v.get("torch"),
        }),
    };
    Ok(Report {
        benchmark: "head-only".into(),
        description: format!(
            "head-only fine-tuning of EfficientNet-Lite0 (pretrained) end to end, {epochs} epochs, {train_images} \
             training + {} validation 320x240 JPEGs in 10 classes, 224x224 input, batch {HEAD_BATCH}, AdamW, \
             validation every epoch, {HEAD_WORKERS} data workers, timed from loading the data and weights to the \
             saved model (not PyTorch's imports); suite caches the backbone features, PyTorch runs the frozen \
             backbone every epoch",
            images - train_images
        ),
        device: device_name(device),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        iters: epochs,
        unit: "images",
        ratio: pytorch.seconds / suite.seconds,
        ratio_of_means: None,
        suite,
        pytorch,
        aim: 8.0,
    })
}

/// suite's side: the real pipeline (`prepare` with the feature cache, then the trainer with its evaluation,
/// checkpoints and saved models), timed from loading the data to the saved model.
fn head_only_suite(data: &Path, run: &Path, epochs: usize, device: Device, train_images: usize) -> Result<Side> {
    let vision = VisionConfig {
        model: "efficientnet_lite0".into(),
        data: Some(data.to_path_buf()),
        tune: Tune::Head,
        augment: Augment::None,
        cache_features: true,
        ..VisionConfig::default()
    };
    let mut train = TrainConfig {
        epochs,
        batch_size: HEAD_BATCH,
        lr: LR,
        weight_decay: WEIGHT_DECAY,
        clip_grad_norm: None,
        device: device_name(device),
        workers: HEAD_WORKERS,
        // fp32 as the PyTorch side (auto would mean bf16 autocast on CUDA).
        precision: Precision::Fp32,
        ..TrainConfig::default()
    };
    train.schedule.kind = ScheduleKind::Constant;
    let start = Instant::now();
    let job = prepare(&vision, &suite_core::peft::PeftConfig::None, &train, device, false)?;
    let JobData::Features { train: train_data, val } = job.data else {
        bail!("head-only tuning without augmentation should use the feature cache");
    };
    let mut task = job.task;
    let summary = Trainer::new(train, RunDir::create(run, true)?)?.with_group_rules(job.rules).quiet(true).fit(
        &mut task,
        &train_data,
        Some(&val),
        false,
    )?;
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    Ok(Side {
        seconds,
        images_per_sec: (train_images * epochs) as f64 / seconds,
        median_images_per_sec: None,
        phase_ms: None,
        extra: serde_json::json!({
            "val_accuracy": summary.last_eval.as_ref().and_then(|m| m.get("accuracy")),
            "train_loop_s": summary.elapsed_s,
        }),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// output

fn print_table(r: &Report) {
    println!("suite bench {}: {}", r.benchmark, r.description);
    println!("device {}, libtorch threads {} (inter-op {}) on both sides", r.device, r.threads, r.interop_threads);
    println!();
    println!("{:<22}{:>14}{:>16}", "", "suite", "PyTorch eager");
    let row = |label: &str, a: f64, b: f64| println!("{label:<22}{a:>14.2}{b:>16.2}");
    row("time (s)", r.suite.seconds, r.pytorch.seconds);
    row(&format!("{}/s", r.unit), r.suite.images_per_sec, r.pytorch.images_per_sec);
    if let (Some(a), Some(b)) = (r.suite.median_images_per_sec, r.pytorch.median_images_per_sec) {
        row(&format!("{}/s, median step", r.unit), a, b);
    }
    if let (Some(a), Some(b)) = (r.suite.phase_ms, r.pytorch.phase_ms) {
        row("forward (ms/step)", a.forward, b.forward);
        row("backward (ms/step)", a.backward, b.backward);
        row("optimizer (ms/step)", a.optimizer, b.optimizer);
    }
    let acc = |s: &Side| s.extra.get("val_accuracy").and_then(Value::as_f64);
    if let (Some(a), Some(b)) = (acc(&r.suite), acc(&r.pytorch)) {
        row("val accuracy", a, b);
    }
    let peak = |s: &Side| s.extra.get("peak_rss_mib").and_then(Value::as_f64);
    if let (Some(a), Some(b)) = (peak(&r.suite), peak(&r.pytorch)) {
        println!("{:<22}{a:>14.0}{b:>16.0}", "peak RSS added (MiB)");
    }
    let rtf = |s: &Side| s.extra.get("rtf").and_then(Value::as_f64);
    if let (Some(a), Some(b)) = (rtf(&r.suite), rtf(&r.pytorch)) {
        println!("{:<22}{a:>14.3}{b:>16.3}", "real-time factor");
    }
    println!();
    let verdict = if r.ratio >= r.aim { "meets" } else { "below" };
    let of = if r.ratio_of_means.is_some() { ", median steps" } else { "" };
    println!("ratio (suite / PyTorch throughput{of}): {:.2}x ({verdict} the aim of {:.1}x)", r.ratio, r.aim);
    if let Some(m) = r.ratio_of_means {
        println!("ratio of mean throughputs: {m:.2}x");
    }
}
