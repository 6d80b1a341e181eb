//! End-to-end tests of `suite tune`: a study of a tiny vision job (ResNet-18 from random weights on a few generated
//! 32-pixel images, CPU, one thread), its leaderboard, ASHA pruning, best.toml reproducing the best trial, and a
//! study killed mid-trial that resumes into the same trials as an uninterrupted one.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// A `size`×`size` PNG of class `class` with 7 bits of noise: a hard enough task that trials differ.
fn write_image(path: &Path, class: usize, seed: usize, size: u32) {
    striped_image(path, class, seed, size, 7);
}

/// `root/train` (4 per class) and `root/val` (2 per class).
fn data(root: &Path) -> (PathBuf, PathBuf) {
    for (split, n, off) in [("train", 4, 0), ("val", 2, 10_000)] {
        for (c, name) in CLASSES.iter().enumerate() {
            for i in 0..n {
                write_image(&root.join(split).join(name).join(format!("{i}.png")), c, off + 100 * c + i, 32);
            }
        }
    }
    (root.join("train"), root.join("val"))
}

/// The base recipe: 4 epochs of 3 steps, an evaluation per epoch (rungs at evaluations 1 and 3).
const RECIPE: &str = r#"
[vision]
model = "resnet18"
init = "random"
input_size = 32
augment = "none"

[train]
epochs = 4
batch_size = 4
metric = "loss"
device = "cpu"
threads = 1
workers = 1
seed = 0
keep_checkpoints = 1
log_steps = 1
"#;

const SPACE: &str = r#"
[train]
lr = { type = "log_uniform", low = 1e-4, high = 3e-1 }
weight_decay = { type = "uniform", low = 0.0, high = 0.1 }
[vision]
tune = { type = "choice", values = ["last:1", "full"] }
"#;

struct Setup {
    dir: tempfile::TempDir,
    recipe: PathBuf,
    space: PathBuf,
    train: PathBuf,
    val: PathBuf,
}

fn setup() -> Setup {
    let dir = tmp();
    let (train, val) = data(&dir.path().join("data"));
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let space = dir.path().join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    Setup { dir, recipe, space, train, val }
}

fn tune_args(st: &Setup, out: &Path) -> Vec<String> {
    [
        "tune",
        "vision",
        "--config",
        s(&st.recipe),
        "--space",
        s(&st.space),
        "--data",
        s(&st.train),
        "--val-data",
        s(&st.val),
        "--trials",
        "5",
        "--sampler",
        "tpe",
        "--startup-trials",
        "3",
        "--seed",
        "3",
        "--objective",
        "loss",
        "--out",
        s(out),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn journal(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("study.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Per trial: (trial, params, status, objective) from the journal, in trial order.
fn trial_summary(out: &Path) -> Vec<(u64, serde_json::Value, String, Option<f64>)> {
    let recs = journal(out);
    let mut v: Vec<_> = recs
        .iter()
        .filter(|r| r["kind"] == "propose")
        .map(|p| {
            let t = p["trial"].as_u64().unwrap();
            let end = recs.iter().find(|r| r["kind"] == "end" && r["trial"] == t).expect("every trial ended");
            (t, p["params"].clone(), end["status"].as_str().unwrap().to_string(), end["objective"].as_f64())
        })
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

/// The best loss of a run folder's evaluations.
fn best_loss(run: &Path) -> f64 {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "eval")
        .filter_map(|r| r["metrics"]["loss"].as_f64())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn study_prunes_writes_a_leaderboard_and_best_toml_reproduces_and_a_killed_study_resumes_the_same() {
    let st = setup();
    let cwd = st.dir.path();
    // (a) An uninterrupted study.
    let a = cwd.join("study-a");
    let args = tune_args(&st, &a);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let out = suite(cwd, &refs);
    out.assert_ok();
    eprintln!("study of 5 trials: {:.1}s\n{}", t0.elapsed().as_secs_f64(), out.stdout);
    let trials = trial_summary(&a);
    assert_eq!(trials.len(), 5, "{}", out.show());
    assert!(trials.iter().all(|t| t.2 != "failed"), "{trials:?}");
    let pruned: Vec<_> = trials.iter().filter(|t| t.2 == "pruned").collect();
    assert!(!pruned.is_empty(), "no trial stopped at a rung: {trials:?}");
    // A pruned trial stopped at its rung: fewer evaluations than a complete one (4), and a run folder that eval
    // accepts.
    let recs = journal(&a);
    let p = pruned[0].0;
    let end = recs.iter().find(|r| r["kind"] == "end" && r["trial"] == p).unwrap();
    assert!(end["evals"].as_u64().unwrap() < 4, "{end}");
    assert!(recs.iter().any(|r| r["kind"] == "rung" && r["trial"] == p && r["promoted"] == false));
    let pruned_run = a.join("trials").join(format!("{p:04}"));
    assert!(pruned_run.join("final/model.safetensors").exists());
    suite(cwd, &["eval", "--run", s(&pruned_run), "--data", s(&st.val), "--device", "cpu"]).assert_ok();
    // Leaderboard files.
    let csv = std::fs::read_to_string(a.join("leaderboard.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.starts_with("rank,trial,status,loss,evaluations,stopped_at_rung,seconds,train.lr"), "{csv}");
    assert!(csv.contains(",pruned,"), "{csv}");
    let html = std::fs::read_to_string(a.join("leaderboard.html")).unwrap();
    for needle in ["<svg", "polyline", "Parallel coordinates", "trial-seconds", "train.lr", "vision.tune"] {
        assert!(html.contains(needle), "leaderboard.html lacks {needle:?}");
    }
    assert!(!html.contains("<script src") && !html.contains("http://cdn"), "self-contained");
    assert!(out.stdout.contains("pruned@"), "{}", out.stdout);
    // best.toml is the best complete trial's recipe; suite finetune reproduces its objective.
    let best = trials
        .iter()
        .filter(|t| t.2 == "complete")
        .min_by(|x, y| x.3.unwrap().total_cmp(&y.3.unwrap()))
        .expect("a complete trial");
    let best_toml = std::fs::read_to_string(a.join("best.toml")).unwrap();
    assert!(best_toml.contains(&format!("trial ({:04}", best.0)), "{best_toml}");
    let repro = cwd.join("repro");
    suite(cwd, &["finetune", "vision", "--config", s(&a.join("best.toml")), "--out", s(&repro)]).assert_ok();
    let got = best_loss(&repro);
    assert!((got - best.3.unwrap()).abs() < 1e-9, "best.toml gives {got}, the trial had {:?}", best.3);

    // (b) The same study killed once its journal shows a finished trial and the next one has begun, then rerun.
    let b = cwd.join("study-b");
    let args = tune_args(&st, &b);
    let mut child = Command::new(SUITE)
        .args(&args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the study did not finish a trial in time");
        assert!(child.try_wait().unwrap().is_none(), "the study ended before it could be killed");
        if b.join("study.jsonl").exists() {
            let recs = journal(&b);
            let ended = recs.iter().filter(|r| r["kind"] == "end").count();
            // Mid-trial: the next trial has written an evaluation (its first rung) but not ended.
            let started = recs.iter().filter(|r| r["kind"] == "rung" && r["trial"] == ended as u64).count();
            if ended >= 1 && started >= 1 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let before = trial_summary_partial(&b);
    assert!(before < 5, "killed too late: {before} trials ended");
    // Rerunning the same command resumes the study.
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    suite(cwd, &refs).assert_ok();
    let resumed = trial_summary(&b);
    assert_eq!(resumed, trials, "a killed and resumed study ends as the uninterrupted one");
    // Nothing was redone: one proposal and one end per trial.
    let recs = journal(&b);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "propose").count(), 5);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "end").count(), 5);
    // A finished study rerun does nothing new; another seed on the same folder is refused.
    suite(cwd, &refs).assert_ok();
    assert_eq!(journal(&b).len(), recs.len());
    let mut other = args.clone();
    let i = other.iter().position(|a| a == "--seed").unwrap();
    other[i + 1] = "4".into();
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    suite(cwd, &refs).assert_user_error(&["study.jsonl", "seed"]);
}

fn trial_summary_partial(out: &Path) -> usize {
    journal(out).iter().filter(|r| r["kind"] == "end").count()
}

#[test]
fn bad_space_files_are_refused_naming_file_and_key() {
    let st = setup();
    let cwd = st.dir.path();
    let cases = [
        ("[train]\nlr = { type = \"log_uniform\", low = 0, high = 1 }\n", "train.lr", "low > 0"),
        ("[train]\nlr = 0.01\n", "train.lr", "expected a distribution"),
        ("[train]\nlrate = { type = \"uniform\", low = 0.1, high = 0.2 }\n", "train.lrate", "lrate"),
        ("[vision]\ntune = { type = \"choice\", values = [\"most\"] }\n", "vision.tune", "most"),
    ];
    for (i, (text, key, why)) in cases.iter().enumerate() {
        let space = cwd.join(format!("bad{i}.toml"));
        std::fs::write(&space, text).unwrap();
        let out = cwd.join(format!("out{i}"));
        let mut args = tune_args(&st, &out);
        let at = args.iter().position(|a| a == "--space").unwrap();
        args[at + 1] = s(&space).to_string();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        suite(cwd, &refs).assert_user_error(&[&format!("bad{i}.toml"), key, why]);
    }
}

/// `--parallel 2` runs two trials side by side (the second starts before the first ends), splits `--threads` between
/// them, and every trial ends; when a study's `--budget` runs out, the running trial stops at its next evaluation
/// (status `stopped`), and a rerun starts nothing new, because the budget counts every session of the study.
#[test]
fn parallel_trials_overlap_and_a_spent_budget_carries_over_to_a_rerun() {
    let st = setup();
    let cwd = st.dir.path();
    let p = cwd.join("study-parallel");
    let mut args = tune_args(&st, &p);
    let at = args.iter().position(|a| a == "--trials").unwrap();
    args[at + 1] = "4".into();
    let at = args.iter().position(|a| a == "--sampler").unwrap();
    args[at + 1] = "random".into();
    args.extend(["--parallel", "2", "--threads", "2"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    suite(cwd, &refs).assert_ok();
    eprintln!("parallel study of 4 trials: {:.1}s", t0.elapsed().as_secs_f64());
    let trials = trial_summary(&p);
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t.2 != "failed"), "{trials:?}");
    // Journal order: trial 1 was proposed before trial 0 ended.
    let recs = journal(&p);
    let pos = |kind: &str, t: u64| recs.iter().position(|r| r["kind"] == kind && r["trial"] == t).unwrap();
    assert!(pos("propose", 1) < pos("end", 0), "the trials ran one after the other: {recs:?}");
    for t in 0..4 {
        let recipe = std::fs::read_to_string(p.join("trials").join(format!("{t:04}.toml"))).unwrap();
        assert!(recipe.contains("threads = 1"), "trial {t} did not get half of --threads 2:\n{recipe}");
    }

    // A budget of 1 s is spent by the first trial; the study then stops proposing.
    let b = cwd.join("study-budget");
    let mut args = tune_args(&st, &b);
    let at = args.iter().position(|a| a == "--trials").unwrap();
    args[at] = "--budget".into();
    args[at + 1] = "1s".into();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    suite(cwd, &refs).assert_ok();
    let first = trial_summary(&b);
    assert!(!first.is_empty() && first.len() < 5, "a 1 s budget ran {} trials", first.len());
    let recs = journal(&b);
    let spent = recs.iter().filter_map(|r| r["spent"].as_f64()).fold(0.0, f64::max);
    assert!(spent >= 1.0, "the journal records {spent} s spent");
    // The trial running when the budget ran out stopped at its next evaluation instead of training on.
    assert!(recs.iter().any(|r| r["kind"] == "budget_spent"), "{recs:?}");
    let last = recs.iter().rev().find(|r| r["kind"] == "end").unwrap();
    assert_eq!(last["status"], "stopped", "{last}");
    assert!(last["evals"].as_u64().unwrap() < 4, "{last}");
    let csv = std::fs::read_to_string(b.join("leaderboard.csv")).unwrap();
    assert!(csv.contains(",stopped,"), "{csv}");
    // Rerun: the budget is already spent, so nothing new starts.
    suite(cwd, &refs).assert_ok();
    assert_eq!(trial_summary(&b).len(), first.len(), "a rerun of a spent study started new trials");
}
