//! `suite bench ddp`: data-parallel fine-tuning of all-MiniLM-L6-v2 (2-label head, sequences of 64 tokens, AdamW,
//! gradient clipping) in 1 and 2 processes on this machine, suite (`suite finetune text --nproc N`, c10d Gloo)
//! against PyTorch DDP (`torchrun` + `DistributedDataParallel`, gloo) on the same global batch. Throughput is
//! global samples per second of the median optimizer step after two warm-up steps; a single process uses every
//! core, N processes a share each (as torchrun).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::args::BenchArgs;

const DDP_STEP_PY: &str = include_str!("../../bench/ddp_step.py");
/// Global batch: 16 sequences per optimizer step, split among the processes.
const GLOBAL_BATCH: usize = 16;
const SEQ: usize = 64;
const WARMUP: usize = 2;

/// One world size's measurement.
#[derive(Debug, Serialize)]
struct Row {
    processes: usize,
    threads_per_process: usize,
    suite_samples_per_sec: f64,
    pytorch_samples_per_sec: f64,
    /// suite over PyTorch DDP at this world size.
    ratio: f64,
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
struct DdpReport {
    benchmark: &'static str,
    description: String,
    iters: usize,
    rows: Vec<Row>,
    /// Throughput of 2 processes over 1, per side.
    suite_scaling: f64,
    pytorch_scaling: f64,
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let iters = args.iters.unwrap_or(10);
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let model = suite_text::models::minilm_asset_dir()
        .context("the all-MiniLM-L6-v2 asset is missing: run scripts/setup.sh")?;
    let work = tempfile::tempdir()?;
    let data = write_data(work.path(), (WARMUP + iters) * GLOBAL_BATCH)?;
    let script = work.path().join("ddp_step.py");
    std::fs::write(&script, DDP_STEP_PY)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for procs in [1usize, 2] {
        let threads = (cores / procs).max(1);
        eprintln!("suite: {procs} process(es) × {threads} thread(s), {} + {iters} steps…", WARMUP);
        let ours = suite_side(work.path(), &model, &data, procs, threads, iters)?;
        eprintln!("PyTorch DDP: the same…");
        let theirs = pytorch_side(&script, &model, procs, threads, iters)?;
        rows.push(Row {
            processes: procs,
            threads_per_process: threads,
            suite_samples_per_sec: ours,
            pytorch_samples_per_sec: theirs,
            ratio: ours / theirs,
        });
    }
    let report = DdpReport {
        benchmark: "ddp",
        description: format!(
            "all-MiniLM-L6-v2 classification fine-tuning, global batch {GLOBAL_BATCH} × {SEQ} tokens, {cores} cores"
        ),
        iters,
        suite_scaling: rows[1].suite_samples_per_sec / rows[0].suite_samples_per_sec,
        pytorch_scaling: rows[1].pytorch_samples_per_sec / rows[0].pytorch_samples_per_sec,
        rows,
    };
    println!("{}", report.description);
    println!("{:>9} {:>8} {:>14} {:>16} {:>7}", "processes", "threads", "suite samp/s", "PyTorch samp/s", "ratio");
    for r in &report.rows {
        println!(
            "{:>9} {:>8} {:>14.2} {:>16.2} {:>6.2}×",
            r.processes, r.threads_per_process, r.suite_samples_per_sec, r.pytorch_samples_per_sec, r.ratio
        );
    }
    println!("2 processes over 1: suite {:.2}×, PyTorch DDP {:.2}×", report.suite_scaling, report.pytorch_scaling);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("written {}", path.display());
    }
    Ok(())
}

/// Training texts long enough to fill `SEQ` tokens, and a two-row validation file.
fn write_data(dir: &Path, rows: usize) -> Result<std::path::PathBuf> {
    let words = ["market", "river", "engine", "garden", "signal", "harbor", "violin", "planet", "copper", "lantern"];
    let mut csv = String::from("text,label\n");
    for i in 0..rows {
        let text: Vec<&str> = (0..80).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        csv.push_str(&format!("{},{}\n", text.join(" "), ["a", "b"][i % 2]));
    }
    std::fs::write(dir.join("train.csv"), csv)?;
    std::fs::write(dir.join("val.csv"), "text,label\nmarket river,a\nengine garden,b\n")?;
    Ok(dir.join("train.csv"))
}

/// Median global samples per second of suite's optimizer steps (the per-step rates rank 0 logs).
fn suite_side(work: &Path, model: &Path, data: &Path, procs: usize, threads: usize, iters: usize) -> Result<f64> {
    let out = work.join(format!("run-{procs}"));
    let exe = std::env::current_exe()?;
    let status = Command::new(exe)
        .args(["finetune", "text", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--val-data")
        .arg(work.join("val.csv"))
        .args(["--batch-size", &(GLOBAL_BATCH / procs).to_string()])
        .args(["--max-steps", &(WARMUP + iters).to_string(), "--epochs", "1", "--log-steps", "1"])
        .args(["--max-len", &SEQ.to_string(), "--threads", &threads.to_string(), "--workers", "1"])
        .args(["--lr", "5e-5", "--seed", "0", "--nproc", &procs.to_string(), "--out"])
        .arg(&out)
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running suite finetune")?;
    if !status.success() {
        bail!("suite finetune --nproc {procs} failed ({status})");
    }
    let mut rates: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "train" && r["step"].as_u64().is_some_and(|s| s as usize > WARMUP))
        .filter_map(|r| r["samples_per_sec"].as_f64())
        .collect();
    if rates.is_empty() {
        bail!("suite logged no training steps after the warm-up");
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn pytorch_side(script: &Path, model: &Path, procs: usize, threads: usize, iters: usize) -> Result<f64> {
    let python = suite_core::python::python_exe()?;
    let torchrun = python.with_file_name("torchrun");
    let out = Command::new(&torchrun)
        .args(["--standalone", "--nproc-per-node", &procs.to_string()])
        .arg(script)
        .arg("--model")
        .arg(model)
        .args(["--batch", &(GLOBAL_BATCH / procs).to_string(), "--seq", &SEQ.to_string()])
        .args(["--warmup", &WARMUP.to_string(), "--iters", &iters.to_string(), "--threads", &threads.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .with_context(|| format!("running {}", torchrun.display()))?;
    if !out.status.success() {
        bail!("PyTorch DDP side failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    let v: Value = serde_json::from_str(line).with_context(|| format!("PyTorch DDP side printed:\n{stdout}"))?;
    v["samples_per_sec"].as_f64().context("the PyTorch side reported no samples_per_sec")
}
