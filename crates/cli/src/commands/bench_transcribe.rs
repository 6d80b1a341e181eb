//! `suite bench transcribe`: `suite transcribe` against faster-whisper (CTranslate2) on the same CT2 whisper-base
//! folder and the same audio — the five LibriVox WAVs one after another, and one recording of about 2.5 minutes
//! made by joining them six times — greedy and beam 5, fp32 and int8 (`--precision int8` against
//! `compute_type="int8"`). Each run is a fresh process: whole-process wall time and peak resident memory (the
//! child's `ru_maxrss`) and, as each side reports it, model loading apart from compute. Both sides get the same
//! number of CPU threads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::args::BenchArgs;

const FW_PY: &str = include_str!("../../bench/transcribe_fw.py");

/// One side of one configuration.
#[derive(Debug, Clone, Copy, Serialize, Default)]
struct Measure {
    wall_s: f64,
    load_s: f64,
    compute_s: f64,
    peak_rss_mib: f64,
}

/// One configuration, both sides (medians over the repetitions).
#[derive(Debug, Serialize)]
struct Row {
    input: &'static str,
    beam: usize,
    precision: &'static str,
    suite: Measure,
    faster_whisper: Measure,
    /// faster-whisper's wall time over suite's (above 1: suite is faster).
    speed_ratio: f64,
    /// The same for compute alone.
    compute_ratio: f64,
    /// suite's peak memory over faster-whisper's.
    memory_ratio: f64,
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let reps = args.iters.unwrap_or(1).max(1);
    let tmp = tempfile::tempdir()?;
    let ct2 = super::serve::ct2_folder(&tmp.path().join("whisper-base-ct2"))?;
    let wavs = super::serve::librivox_wavs()?;
    let long = tmp.path().join("joined.wav");
    let seconds = join_wavs(&wavs, 6, &long)?;
    let script = tmp.path().join("transcribe_fw.py");
    std::fs::write(&script, FW_PY)?;
    let threads = tch::get_num_threads().max(1) as usize;
    let inputs: [(&'static str, Vec<PathBuf>); 2] =
        [("5 LibriVox WAVs (24.7 s)", wavs.clone()), ("joined (long)", vec![long])];
    eprintln!("joined recording: {seconds:.1} s; {threads} threads on both sides; {reps} repetition(s)");
    let mut rows = Vec::new();
    for (input, files) in &inputs {
        for beam in [1usize, 5] {
            for (precision, compute_type) in [("fp32", "float32"), ("int8", "int8")] {
                eprintln!("{input}, beam {beam}, {precision}…");
                let mut ours = Vec::new();
                let mut theirs = Vec::new();
                for _ in 0..reps {
                    ours.push(suite_side(&ct2, files, beam, precision)?);
                    theirs.push(fw_side(&script, &ct2, files, beam, compute_type, threads)?);
                }
                let (s, f) = (median(&ours), median(&theirs));
                rows.push(Row {
                    input,
                    beam,
                    precision,
                    suite: s,
                    faster_whisper: f,
                    speed_ratio: f.wall_s / s.wall_s,
                    compute_ratio: f.compute_s / s.compute_s,
                    memory_ratio: s.peak_rss_mib / f.peak_rss_mib,
                });
            }
        }
    }
    println!("suite transcribe vs faster-whisper {} (CT2 whisper-base, CPU, {threads} threads)", fw_version());
    println!(
        "{:<26} {:>4} {:>5} | {:>8} {:>8} {:>6} | {:>9} {:>9} {:>6} | {:>8} {:>8} {:>6}",
        "input", "beam", "prec", "suite s", "fw s", "speed", "suite cmp", "fw cmp", "cmp", "suite MiB", "fw MiB", "mem"
    );
    for r in &rows {
        println!(
            "{:<26} {:>4} {:>5} | {:>8.2} {:>8.2} {:>5.2}× | {:>9.2} {:>9.2} {:>5.2}× | {:>8.0} {:>8.0} {:>5.2}×",
            r.input,
            r.beam,
            r.precision,
            r.suite.wall_s,
            r.faster_whisper.wall_s,
            r.speed_ratio,
            r.suite.compute_s,
            r.faster_whisper.compute_s,
            r.compute_ratio,
            r.suite.peak_rss_mib,
            r.faster_whisper.peak_rss_mib,
            r.memory_ratio
        );
    }
    println!(
        "speed = faster-whisper time / suite time (above 1: suite is faster); mem = suite peak / faster-whisper peak"
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("written {}", path.display());
    }
    Ok(())
}

fn median(xs: &[Measure]) -> Measure {
    let pick = |f: fn(&Measure) -> f64| {
        let mut v: Vec<f64> = xs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Measure {
        wall_s: pick(|m| m.wall_s),
        load_s: pick(|m| m.load_s),
        compute_s: pick(|m| m.compute_s),
        peak_rss_mib: pick(|m| m.peak_rss_mib),
    }
}

/// Runs `cmd` to the end: its stdout and stderr, wall seconds and peak resident MiB (`wait4`'s `ru_maxrss`).
fn measured(mut cmd: Command) -> Result<(String, String, f64, f64)> {
    let out_file = tempfile::NamedTempFile::new()?;
    let err_file = tempfile::NamedTempFile::new()?;
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out_file.reopen()?)
        .stderr(err_file.reopen()?)
        .spawn()
        .context("starting a transcription process")?;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter; wait4 reaps exactly this child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    if rc < 0 {
        bail!("waiting for the transcription process failed");
    }
    let stdout = std::fs::read_to_string(out_file.path())?;
    let stderr = std::fs::read_to_string(err_file.path())?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("a transcription process failed:\n{stderr}");
    }
    Ok((stdout, stderr, wall, usage.ru_maxrss as f64 / 1024.0))
}

fn suite_side(ct2: &Path, files: &[PathBuf], beam: usize, precision: &str) -> Result<Measure> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("transcribe").args(files).arg("--model").arg(ct2);
    cmd.args(["--beam", &beam.to_string(), "--precision", precision, "--device", "cpu", "--timings"]);
    let (_, stderr, wall, rss) = measured(cmd)?;
    let line = stderr.lines().rev().find_map(|l| l.strip_prefix("timings: ")).context("suite printed no timings")?;
    measure(wall, rss, line)
}

fn fw_side(
    script: &Path,
    ct2: &Path,
    files: &[PathBuf],
    beam: usize,
    compute: &str,
    threads: usize,
) -> Result<Measure> {
    let mut cmd = Command::new(suite_core::python::python_exe()?);
    cmd.arg(script).arg("--model").arg(ct2).arg("--audio").args(files);
    cmd.args(["--beam", &beam.to_string(), "--compute-type", compute, "--threads", &threads.to_string()]);
    cmd.env("OMP_NUM_THREADS", threads.to_string());
    let (stdout, _, wall, rss) = measured(cmd)?;
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("faster-whisper printed no JSON")?;
    measure(wall, rss, line)
}

/// A measurement from the process's wall time and peak memory and the `{"load_s", "compute_s"}` it printed.
fn measure(wall_s: f64, peak_rss_mib: f64, timings: &str) -> Result<Measure> {
    let t: Value = serde_json::from_str(timings).with_context(|| format!("timings: {timings}"))?;
    let get = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    Ok(Measure { wall_s, load_s: get("load_s"), compute_s: get("compute_s"), peak_rss_mib })
}

fn fw_version() -> String {
    suite_core::python::run_python("import faster_whisper; print(faster_whisper.__version__)", &[])
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Joins the WAVs `times` times over into one 16 kHz mono 16-bit WAV at `out`; returns its seconds.
fn join_wavs(wavs: &[PathBuf], times: usize, out: &Path) -> Result<f64> {
    let mut all: Vec<f32> = Vec::new();
    let clips: Vec<Vec<f32>> = wavs.iter().map(|w| suite_speech::audio::load_audio(w)).collect::<Result<_>>()?;
    for _ in 0..times {
        for c in &clips {
            all.extend_from_slice(c);
        }
    }
    let data = suite_speech::audio::pcm16(all.iter().map(|&x| f64::from(x)));
    let wav = suite_speech::audio::wav_bytes(suite_speech::audio::WavSpec::pcm16(1, 16000), &data, None);
    std::fs::write(out, wav).with_context(|| format!("writing {}", out.display()))?;
    Ok(all.len() as f64 / 16000.0)
}
