//! Crash safety of training runs (issue 14): a vision run and a text run are each SIGKILLed at 10 seeded random
//! moments, several of them while a checkpoint (or `best/`, `final/`) is being written, and resumed with `--resume`
//! after every kill until they finish; their models must equal an uninterrupted run's bit for bit. Then a checkpoint
//! that cannot be written — a file-size limit (`RLIMIT_FSIZE`) standing in for a full disk — must stop the run with
//! one error line, keep the previous checkpoint byte for byte as the newest, and a resume without the limit must
//! still end with the uninterrupted run's weights.
//!
//! Runs are tiny (a few images or sentences, one libtorch thread) and the kill moments are calibrated on the
//! uninterrupted run, so the campaign takes the same share of a run on a fast or a slow machine.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng};
use tch::Tensor;

mod common;
use common::serve::write_image;
use common::*;

/// Kills per run.
const KILLS: usize = 10;

/// Flags of every training run: one libtorch thread and one loader worker (the harness runs two tests at a time
/// on CI's two cores), a fixed seed, the CPU.
const COMMON: &[&str] = &["--threads", "1", "--workers", "1", "--seed", "0", "--device", "cpu"];

/// A longer wait than any of these runs needs: past it the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness

/// A seeded generator, so a failing campaign replays with the same kill moments.
type Rng = rand::rngs::StdRng;

/// Uniform in `[0, max]`.
fn duration(rng: &mut Rng, max: Duration) -> Duration {
    max.mul_f64(rng.random::<f64>())
}

// ---------------------------------------------------------------------------------------------------------------
// Data

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// An image-folder root with `train/` (2 images per class) and `val/` (1 per class).
fn image_data(root: &Path) -> PathBuf {
    for (c, name) in CLASSES.iter().enumerate() {
        for i in 0..2 {
            write_image(&root.join("train").join(name).join(format!("t{i}.png")), c, 100 * c + i);
        }
        write_image(&root.join("val").join(name).join("v0.png"), c, 10_000 + 100 * c);
    }
    root.to_path_buf()
}

/// `train.csv` (12 texts per label) and `val.csv` (3 per label) of a two-label classification in `dir`.
fn text_data(dir: &Path) -> (PathBuf, PathBuf) {
    const SPORT: [&str; 8] = ["football", "goal", "match", "team", "stadium", "referee", "player", "tennis"];
    const FOOD: [&str; 8] = ["soup", "bread", "oven", "recipe", "flour", "sugar", "cheese", "butter"];
    let write = |path: &Path, n: usize, offset: usize| {
        let mut csv = String::from("text,label\n");
        for k in offset..offset + n {
            csv.push_str(&format!("the {} and the {},sport\n", SPORT[k % 8], SPORT[(k * 3 + 1) % 8]));
            csv.push_str(&format!("a {} with {},food\n", FOOD[k % 8], FOOD[(k * 5 + 2) % 8]));
        }
        std::fs::write(path, csv).unwrap();
    };
    let (train, val) = (dir.join("train.csv"), dir.join("val.csv"));
    write(&train, 12, 0);
    write(&val, 3, 40);
    (train, val)
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs

/// A training job: its `suite` arguments without `--out`, and the domain `--resume` needs.
#[derive(Clone)]
struct Job {
    domain: &'static str,
    flags: Vec<String>,
}

impl Job {
    fn new(domain: &'static str, flags: &str, paths: &[(&str, &Path)]) -> Self {
        let mut f: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
        f.extend(flags.split_whitespace().map(String::from));
        for (flag, p) in paths {
            f.extend([flag.to_string(), s(p).to_string()]);
        }
        Job { domain, flags: f }
    }

    /// The arguments of a fresh run into `out`.
    fn fresh(&self, out: &Path) -> Vec<String> {
        let mut a = vec!["finetune".to_string(), self.domain.to_string()];
        a.extend(self.flags.iter().cloned());
        a.extend(["--out".to_string(), s(out).to_string()]);
        a
    }

    /// The arguments that continue the run in `out`.
    fn resume(&self, out: &Path) -> Vec<String> {
        ["finetune", self.domain, "--resume", s(out)].iter().map(|s| s.to_string()).collect()
    }
}

/// ResNet-18 from random weights on cached activations (only its last stage and head train, so steps are cheap),
/// 4 epochs of 3 steps, a checkpoint after every step (each one also prunes an older one) and an evaluation, with
/// its `best/` save, after every epoch: 12 checkpoints to kill runs in.
fn vision_job(data: &Path) -> Job {
    let flags = "--model resnet18 --init random --tune last:1 --epochs 4 --batch-size 2 --save-steps 1 --input-size 64";
    Job::new("vision", flags, &[("--data", data)])
}

/// all-MiniLM-L6-v2 classifying 24 texts in batches of 4: 12 steps, a checkpoint every 2 (model and AdamW state)
/// and an evaluation every 4.
fn text_job(train: &Path, val: &Path) -> Job {
    let flags = "--max-steps 12 --save-steps 2 --eval-steps 4 --max-len 32 --batch-size 4 --lr 3e-4";
    Job::new("text", flags, &[("--data", train), ("--val-data", val)])
}

/// Starts `suite ARGS` in `cwd`, its stderr going to `log` (a file outside the run folder), with a file-size limit
/// of `limit_bytes` (`RLIMIT_FSIZE`, set in the child before `exec`) when given.
fn spawn(cwd: &Path, args: &[String], log: &Path, limit_bytes: Option<u64>) -> Child {
    let mut cmd = Command::new(SUITE);
    cmd.args(args).current_dir(cwd).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap());
    if let Some(bytes) = limit_bytes {
        // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    cmd.spawn().expect("starting suite")
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// What a run folder shows

/// The steps of the complete checkpoints under `run/checkpoints` (renamed into place, trainer state inside).
fn complete_checkpoints(run: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) else { return Vec::new() };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("trainer_state.json").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort();
    steps
}

fn newest_checkpoint(run: &Path) -> Option<u64> {
    complete_checkpoints(run).last().copied()
}

/// The folders being written right now: hidden `.<name>.partial` staging folders of a checkpoint, `best/` or
/// `final/`.
fn staging_folders(run: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [run.to_path_buf(), run.join("checkpoints")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".partial") {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Hidden folders a crash can leave mid-write or mid-replace (`.x.partial`, `.x.replaced`).
fn leftovers(run: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [run.to_path_buf(), run.join("checkpoints")] {
        for e in std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") || name.ends_with(".replaced") {
                out.push(name);
            }
        }
    }
    out
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).into_iter().collect()
}

/// Panics unless the two safetensors files hold the same tensors, bit for bit.
#[track_caller]
fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    let mut names: Vec<&String> = ta.keys().collect();
    names.sort();
    let mut nb: Vec<&String> = tb.keys().collect();
    nb.sort();
    assert_eq!(names, nb, "{} and {} hold different tensors", a.display(), b.display());
    let differ: Vec<&String> = names
        .into_iter()
        .filter(|n| {
            let (x, y) = (&ta[*n], &tb[*n]);
            !(x.size() == y.size() && x.kind() == y.kind() && x.equal(y))
        })
        .collect();
    assert!(differ.is_empty(), "{} and {} differ in {differ:?}", a.display(), b.display());
}

/// The evaluation records of `run/metrics.jsonl` and the steps of all its records, in order: what a resumed run
/// must log exactly as an uninterrupted one (timings aside).
fn logged(run: &Path) -> (Vec<serde_json::Value>, Vec<(String, u64)>) {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let evals = records.iter().filter(|r| r["kind"] == "eval").cloned().collect();
    let steps =
        records.iter().map(|r| (r["kind"].as_str().unwrap().to_string(), r["step"].as_u64().unwrap())).collect();
    (evals, steps)
}

// ---------------------------------------------------------------------------------------------------------------
// The uninterrupted run, timed

/// How an uninterrupted run paced itself, to place kill moments within a run on any machine.
struct Pace {
    /// The steps of every checkpoint the run wrote, in order.
    steps: Vec<u64>,
    /// Longest time between two consecutive complete checkpoints.
    gap: Duration,
    /// Longest time a checkpoint's staging folder was seen (its files written, then renamed into place).
    write: Duration,
    /// How long `final/`'s staging folder was seen.
    final_write: Duration,
}

/// Runs `job` into `out` without interruption while watching its folder.
fn timed_run(cwd: &Path, job: &Job, out: &Path) -> Pace {
    let log = cwd.join(format!("{}.log", out.file_name().unwrap().to_string_lossy()));
    let mut child = spawn(cwd, &job.fresh(out), &log, None);
    let start = Instant::now();
    let mut steps: Vec<u64> = Vec::new();
    let mut last_new = None;
    let (mut gap, mut write, mut final_write) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // When each staging folder now present was first seen.
    let mut staged: HashMap<String, Instant> = HashMap::new();
    loop {
        let done = child.try_wait().unwrap();
        let new: Vec<u64> = complete_checkpoints(out).into_iter().filter(|s| !steps.contains(s)).collect();
        let now = Instant::now();
        if !new.is_empty() {
            steps.extend(new);
            if let Some(t) = last_new {
                gap = gap.max(now - t);
            }
            last_new = Some(now);
        }
        let present = staging_folders(out);
        for name in &present {
            staged.entry(name.clone()).or_insert(now);
        }
        for (name, since) in staged.iter().filter(|(n, _)| !present.contains(n)) {
            if name.starts_with(".step-") {
                write = write.max(now - *since);
            } else if name == ".final.partial" {
                final_write = now - *since;
            }
        }
        staged.retain(|n, _| present.contains(n));
        if let Some(status) = done {
            assert!(status.success(), "the uninterrupted run failed ({status}): {}", read_log(&log));
            break;
        }
        assert!(start.elapsed() < PATIENCE, "the uninterrupted run takes over {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!steps.is_empty(), "the uninterrupted run wrote no checkpoint");
    assert!(out.join("final/model.safetensors").is_file());
    // Floors keep the moments meaningful if a poll missed a short write.
    let floor = Duration::from_millis(2);
    Pace { steps, gap: gap.max(floor), write: write.max(floor), final_write: final_write.max(floor) }
}

// ---------------------------------------------------------------------------------------------------------------
// The campaign

/// When an attempt is killed, relative to its target checkpoint (the first one of the run it has not written
/// yet, or a later one).
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the process started: in its start-up or the first steps, no later than the target's
    /// staging folder appears.
    Start(Duration),
    /// This long after the target's staging folder appeared: while its files are written, or just after the
    /// rename.
    Writing(Duration),
    /// This long after the target completed: in the steps, evaluations and pruning that follow it, no later than
    /// the next staging folder (a checkpoint, `best/`, `final/`) appears.
    After(Duration),
    /// This long after `final/`'s staging folder appeared (all checkpoints written, the run finished).
    Final(Duration),
}

/// One planned kill: a moment around checkpoint `target` (an index into [`Pace::steps`]; one past the last is
/// the end of the run).
#[derive(Debug, Clone, Copy)]
struct Plan {
    target: usize,
    moment: Moment,
}

/// `KILLS` seeded kills spread over the whole run: targets drawn over every checkpoint and the end, sorted so that
/// the run moves forward between kills, each with a moment of a random kind and delay.
fn plan_kills(rng: &mut Rng, pace: &Pace) -> Vec<Plan> {
    let n = pace.steps.len();
    let mut plans: Vec<Plan> = (0..KILLS)
        .map(|_| {
            let target = rng.random_range(0..=n);
            let moment = if target == n {
                // Half the write at most: the run ends soon after it.
                Moment::Final(duration(rng, pace.final_write / 2))
            } else {
                match rng.random_range(0..5) {
                    0 => Moment::Start(duration(rng, pace.gap * 2)),
                    1 | 2 => Moment::Writing(duration(rng, pace.write)),
                    _ => Moment::After(duration(rng, pace.gap)),
                }
            };
            Plan { target, moment }
        })
        .collect();
    plans.sort_by_key(|p| p.target);
    plans
}

/// What happened to one attempt of the campaign.
struct Killed {
    plan: Plan,
    /// Staging folders present just before the kill.
    writing: Vec<String>,
    /// Newest complete checkpoint before and after the attempt.
    from: Option<u64>,
    to: Option<u64>,
}

/// Starts `job` into `out`, kills it as `plans` say, resuming it after each kill, then lets it finish.
fn campaign(cwd: &Path, job: &Job, out: &Path, pace: &Pace, plans: &[Plan]) -> Vec<Killed> {
    let mut kills = Vec::new();
    for (attempt, &planned) in plans.iter().enumerate() {
        let log = cwd.join(format!("attempt-{attempt}.log"));
        let args = if out.join("config.toml").exists() { job.resume(out) } else { job.fresh(out) };
        let from = newest_checkpoint(out);
        // A target the run has passed (an earlier kill came after it) moves to the next checkpoint to write.
        let next = pace.steps.iter().position(|&s| Some(s) > from).unwrap_or(pace.steps.len());
        let plan = if planned.target >= next {
            planned
        } else if next < pace.steps.len() {
            Plan { target: next, moment: planned.moment }
        } else {
            Plan { target: next, moment: Moment::Final(Duration::ZERO) }
        };
        let target = pace.steps.get(plan.target).map(|s| format!(".step-{s:08}.partial"));
        let mut child = spawn(cwd, &args, &log, None);
        let start = Instant::now();
        let (mut staged_at, mut completed_at, mut next_staged) = (None, None, false);
        let killed = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "attempt {attempt} ({plan:?}) failed ({status}): {}", read_log(&log));
                break None;
            }
            let now = Instant::now();
            let writing = staging_folders(out);
            let target_staged = match &target {
                Some(t) => writing.contains(t),
                None => writing.iter().any(|n| n == ".final.partial"),
            };
            if target_staged && staged_at.is_none() {
                staged_at = Some(now);
            }
            if let Some(&step) = pace.steps.get(plan.target) {
                if completed_at.is_none() && newest_checkpoint(out) >= Some(step) {
                    completed_at = Some(now);
                }
            }
            // Another folder (a later checkpoint, `best/`, `final/`) being written after the target completed: the
            // attempt went as far as it may.
            if completed_at.is_some() && writing.iter().any(|n| Some(n) != target.as_ref()) {
                next_staged = true;
            }
            let due = match plan.moment {
                Moment::Start(d) => now - start >= d || staged_at.is_some(),
                Moment::Writing(d) | Moment::Final(d) => staged_at.is_some_and(|t| now - t >= d),
                Moment::After(d) => completed_at.is_some_and(|t| now - t >= d) || next_staged,
            };
            // Only a run folder with its config can be resumed; before that a kill is a failed start, not a
            // crash of a run.
            if (due || next_staged) && out.join("config.toml").exists() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break Some(writing);
            }
            assert!(start.elapsed() < PATIENCE, "attempt {attempt} ({plan:?}) runs over {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(1));
        };
        let to = newest_checkpoint(out);
        match killed {
            Some(writing) => kills.push(Killed { plan, writing, from, to }),
            None => {
                let story: Vec<String> =
                    kills.iter().map(|k| format!("{:?} {:?}->{:?}", k.plan, k.from, k.to)).collect();
                panic!("attempt {attempt} ({plan:?}) finished before its kill; earlier kills: {story:?}");
            }
        }
    }
    let last = suite(cwd, &job.resume(out).iter().map(String::as_str).collect::<Vec<_>>());
    last.assert_ok();
    kills
}

/// Runs the campaign on `job` and compares the survivor with an uninterrupted run.
fn killed_runs_match_an_uninterrupted_run(dir: &Path, job: &Job, seed: u64) {
    let straight = dir.join("straight");
    let pace = timed_run(dir, job, &straight);
    let killed = dir.join("killed");
    let plans = plan_kills(&mut Rng::seed_from_u64(seed), &pace);
    let started = Instant::now();
    let kills = campaign(dir, job, &killed, &pace, &plans);

    let story: Vec<String> =
        kills.iter().map(|k| format!("{:?} from {:?} to {:?} writing {:?}", k.plan, k.from, k.to, k.writing)).collect();
    let story = story.join("\n  ");
    eprintln!(
        "{} campaign over checkpoints {:?} (gap {:?}, checkpoint write {:?}, final write {:?}), {:?}:\n  {story}",
        job.domain,
        pace.steps,
        pace.gap,
        pace.write,
        pace.final_write,
        started.elapsed()
    );
    // The kills landed where they should: several while a folder was being written, all over the run.
    assert_eq!(kills.len(), KILLS);
    assert!(kills.iter().filter(|k| !k.writing.is_empty()).count() >= 2, "too few kills mid-write:\n  {story}");
    // Where the kills land depends on this machine's pace against the planning run's; a campaign that did not
    // reach the second half still checked ten resumptions, so it is reported rather than failed (it was flaky).
    let middle = pace.steps[pace.steps.len() / 2];
    if !kills.iter().any(|k| k.from >= Some(middle)) {
        eprintln!("note: no kill landed in the second half of the run this time");
    }

    for which in ["final", "best"] {
        assert_same_tensors(
            &killed.join(which).join("model.safetensors"),
            &straight.join(which).join("model.safetensors"),
        );
    }
    assert_eq!(
        logged(&killed),
        logged(&straight),
        "the killed run logged other evaluations or steps than the uninterrupted one"
    );
    let left = leftovers(&killed);
    assert!(left.is_empty(), "half-written folders left behind: {left:?}");
}

#[test]
fn vision_run_killed_ten_times_ends_with_the_uninterrupted_weights() {
    let dir = tmp();
    let data = image_data(&dir.path().join("data"));
    killed_runs_match_an_uninterrupted_run(dir.path(), &vision_job(&data), 14);
}

#[test]
fn text_run_killed_ten_times_ends_with_the_uninterrupted_weights() {
    let dir = tmp();
    let (train, val) = text_data(dir.path());
    killed_runs_match_an_uninterrupted_run(dir.path(), &text_job(&train, &val), 41);
}

// ---------------------------------------------------------------------------------------------------------------
// A full disk

/// Every file of a checkpoint folder with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

/// A file-size limit between the size of the model (ResNet-18, 45 MB) and that of its AdamW state (twice as
/// much): `best/` can still be saved, every checkpoint's optimizer file cannot.
const FSIZE_LIMIT: u64 = 64 << 20;

#[test]
fn a_checkpoint_that_does_not_fit_on_disk_fails_cleanly_and_keeps_the_previous_one() {
    let dir = tmp();
    let cwd = dir.path();
    let data = image_data(&cwd.join("data"));
    // The whole network trains, so the optimizer state outweighs the model; 3 steps, a checkpoint after each.
    let flags = "--model resnet18 --init random --tune full --epochs 1 --batch-size 2 --save-steps 1 --input-size 64";
    let job = Job::new("vision", flags, &[("--data", &data)]);
    let run = cwd.join("full");

    // A run with room to write its first checkpoint, stopped there.
    let log = cwd.join("first.log");
    let mut child = spawn(cwd, &job.fresh(&run), &log, None);
    let start = Instant::now();
    while newest_checkpoint(&run).is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint: {}", read_log(&log));
        }
        assert!(start.elapsed() < PATIENCE, "no checkpoint after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let previous = newest_checkpoint(&run).unwrap();
    assert!(previous < 3, "the run finished before it was stopped");
    let previous_dir = run.join(format!("checkpoints/step-{previous:08}"));
    let before = snapshot(&previous_dir);

    // Resumed on a "full disk": the next checkpoint cannot be written.
    let log = cwd.join("full.log");
    let status = spawn(cwd, &job.resume(&run), &log, Some(FSIZE_LIMIT)).wait().unwrap();
    let out = Out { code: status.code(), stdout: String::new(), stderr: read_log(&log) };
    let line = out.assert_user_error(&["checkpoint", "optimizer.safetensors", "File too large"]);
    assert!(line.contains(s(&previous_dir)), "the error does not say which checkpoint is kept: {line}");

    // The previous checkpoint is still the newest, byte for byte, and loads; nothing half-written is left.
    assert_eq!(complete_checkpoints(&run).last(), Some(&previous), "{:?}", complete_checkpoints(&run));
    assert!(snapshot(&previous_dir) == before, "the previous checkpoint changed");
    assert!(!tensors(&previous_dir.join("model.safetensors")).is_empty());
    assert!(!tensors(&previous_dir.join("optimizer.safetensors")).is_empty());
    let left = leftovers(&run);
    assert!(left.is_empty(), "the failed write left {left:?}");
    assert!(!run.join("final").exists());

    // With room again, the resumed run ends with the weights of an uninterrupted one.
    let out = suite(cwd, &job.resume(&run).iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_ok();
    assert!(out.stderr.contains(&format!("resumed from {}", previous_dir.display())), "{}", out.show());
    let straight = cwd.join("straight");
    suite(cwd, &job.fresh(&straight).iter().map(String::as_str).collect::<Vec<_>>()).assert_ok();
    for which in ["final", "best"] {
        assert_same_tensors(
            &run.join(which).join("model.safetensors"),
            &straight.join(which).join("model.safetensors"),
        );
    }
}
