//! End-to-end tests of data-parallel training on c10d (Gloo, CPU): two processes against one with the same global
//! batch (text under the real `torchrun`, vision under `--nproc 2`), a `suite` rank and a PyTorch rank in one
//! group, and the failure paths — a killed rank, a frozen rank, a resume with another world size, SIGTERM to the
//! launcher.
//!
//! Every run uses one libtorch thread per process, the real all-MiniLM-L6-v2 (copied with its dropout set to 0, so
//! that two processes can draw no different masks from one) or a random ResNet-18 on 64-px images, and a few steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

mod common;
use common::*;

/// Weights of a 2-process run against a 1-process run with the same global batch: the same examples are summed in
/// another order, so only float rounding differs.
const TOL: f64 = 1e-5;

/// Flags of every run: one libtorch thread and one loader worker per process, seed 0, CPU.
const COMMON: &str = "--threads 1 --workers 1 --seed 0 --device cpu";

/// Whitespace-separated words as arguments.
fn argv(words: &str) -> Vec<String> {
    words.split_whitespace().map(String::from).collect()
}

/// A free TCP port for a rendezvous store.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// The largest absolute difference between the `final/` weights of two runs (every tensor of both must exist).
fn max_diff(a: &Path, b: &Path) -> f64 {
    let (ta, tb) = (tensors(&a.join("final/model.safetensors")), tensors(&b.join("final/model.safetensors")));
    assert_eq!(ta.len(), tb.len());
    ta.iter()
        .map(|(k, x)| {
            let y = tb.get(k).unwrap_or_else(|| panic!("{k} missing"));
            (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double)).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// all-MiniLM-L6-v2 with dropout 0 (symlinks to the asset's files, a changed `config.json`) in `dir/minilm`.
fn minilm_without_dropout(dir: &Path) -> PathBuf {
    let src = suite_text::models::minilm_asset_dir().expect("the all-MiniLM-L6-v2 asset: run scripts/setup.sh");
    let dst = dir.join("minilm");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "config.json" && p.is_file() {
            std::os::unix::fs::symlink(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut config = read_json(&src.join("config.json"));
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    dst
}

/// 16 texts per label (32 in all, so global batches of 8 split evenly) and a small validation set.
fn text_data(dir: &Path) -> (PathBuf, PathBuf) {
    let sport = ["football", "goal", "match", "team", "stadium", "referee", "player", "tennis"];
    let food = ["soup", "bread", "oven", "recipe", "flour", "sugar", "cheese", "butter"];
    let write = |path: &Path, n: usize, off: usize| {
        let mut csv = String::from("text,label\n");
        for k in off..off + n {
            csv.push_str(&format!("the {} and the {},sport\n", sport[k % 8], sport[(k * 3 + 1) % 8]));
            csv.push_str(&format!("a {} with {},food\n", food[k % 8], food[(k * 5 + 2) % 8]));
        }
        std::fs::write(path, csv).unwrap();
    };
    let (train, val) = (dir.join("train.csv"), dir.join("val.csv"));
    write(&train, 16, 0);
    write(&val, 3, 40);
    (train, val)
}

/// `suite finetune text` arguments of the text runs: `batch` per process, `steps` optimizer steps, into `out`.
fn text_args(dir: &Path, batch: usize, steps: usize, out: &Path, more: &[&str]) -> Vec<String> {
    let model = minilm_without_dropout_once(dir);
    let (train, val) = (dir.join("train.csv"), dir.join("val.csv"));
    if !train.exists() {
        text_data(dir);
    }
    let mut a = argv(&format!("finetune text {COMMON} --max-len 32 --lr 1e-4 --epochs 20"));
    a.extend(["--model", s(&model), "--data", s(&train), "--val-data", s(&val), "--out", s(out)].map(String::from));
    a.extend(["--batch-size".into(), batch.to_string(), "--max-steps".into(), steps.to_string()]);
    a.extend(more.iter().map(|x| x.to_string()));
    a
}

fn minilm_without_dropout_once(dir: &Path) -> PathBuf {
    let m = dir.join("minilm");
    if m.join("config.json").exists() {
        m
    } else {
        minilm_without_dropout(dir)
    }
}

fn run(cwd: &Path, args: &[String]) -> Out {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    suite(cwd, &refs)
}

/// Starts `suite ARGS` as rank `rank` of `world` with the env:// variables, as a cluster launcher would.
fn spawn_rank(cwd: &Path, args: &[String], rank: usize, world: usize, port: u16, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(SUITE)
        .args(args)
        .current_dir(cwd)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("starting suite")
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn torchrun() -> PathBuf {
    let py = suite_core::python::python_exe().unwrap();
    let exe = py.parent().unwrap().join("torchrun");
    assert!(exe.exists(), "{} missing: run scripts/setup.sh", exe.display());
    exe
}

#[test]
fn text_under_torchrun_matches_one_process_with_the_same_global_batch() {
    let dir = tmp();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    run(dir.path(), &text_args(dir.path(), 8, 6, &one, &[])).assert_ok();
    let out = Command::new(torchrun())
        .args(["--nproc-per-node", "2", "--master-port", &free_port().to_string(), "--no-python", SUITE])
        .args(text_args(dir.path(), 4, 6, &two, &[]))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "torchrun failed:\n{stderr}");
    assert!(stderr.contains("data parallel: 2 processes, global batch 8 (4 per rank × 2"), "{stderr}");
    let diff = max_diff(&one, &two);
    assert!(diff < TOL, "2 processes end {diff} away from 1 process");
    // The weights moved (else equality proves nothing), and rank 0 alone wrote the run folder's logs.
    let base = tensors(&dir.path().join("minilm/model.safetensors"));
    let trained = tensors(&two.join("final/model.safetensors"));
    let moved = base
        .iter()
        .filter_map(|(k, v)| trained.get(&format!("bert.{k}")).map(|t| (t - v).abs().max()))
        .map(|d| d.double_value(&[]))
        .fold(0.0, f64::max);
    assert!(moved > 1e-4, "training did not change the encoder ({moved})");
    let train_losses = |run: &Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] == "train")
            .map(|r| r["loss"].as_f64().unwrap())
            .collect()
    };
    let (l1, l2) = (train_losses(&one), train_losses(&two));
    assert_eq!(l1.len(), l2.len(), "one process logged {l1:?}, two {l2:?}");
    for (a, b) in l1.iter().zip(&l2) {
        assert!((a - b).abs() < 1e-5, "logged training loss: one process {a}, two {b} (the mean over both ranks)");
    }
}

/// ResNet-18 (random init, 64 px) on 8 images per class of three classes.
fn vision_data(dir: &Path) -> PathBuf {
    for (c, name) in serve::CLASSES.iter().enumerate() {
        for i in 0..8 {
            serve::write_image(&dir.join("shapes/train").join(name).join(format!("{i}.png")), c, 100 * c + i);
        }
        for i in 0..2 {
            serve::write_image(&dir.join("shapes/val").join(name).join(format!("{i}.png")), c, 5000 + 100 * c + i);
        }
    }
    dir.join("shapes")
}

fn vision_args(data: &Path, tune: &str, batch: usize, out: &Path, more: &[&str]) -> Vec<String> {
    let model = "--model resnet18 --init random --input-size 64 --augment none --max-steps 4 --epochs 4 --lr 0.01";
    let mut a = argv(&format!("finetune vision {COMMON} {model} --tune {tune}"));
    a.extend(["--data", s(data), "--out", s(out)].map(String::from));
    a.extend(["--batch-size".into(), batch.to_string()]);
    a.extend(more.iter().map(|x| x.to_string()));
    a
}

#[test]
fn vision_with_frozen_batch_norms_under_nproc_matches_one_process() {
    let dir = tmp();
    let data = vision_data(dir.path());
    // Head only (cached features) and the last stage with --freeze-bn: nothing depends on the per-rank batch.
    for (tune, more) in [("head", &[][..]), ("last:1", &["--freeze-bn"][..])] {
        let tag = tune.replace(':', "");
        let (one, two) = (dir.path().join(format!("{tag}-1")), dir.path().join(format!("{tag}-2")));
        run(dir.path(), &vision_args(&data, tune, 12, &one, more)).assert_ok();
        let mut args = vision_args(&data, tune, 6, &two, more);
        args.extend(["--nproc".into(), "2".into()]);
        let out = run(dir.path(), &args);
        out.assert_ok();
        assert!(out.stderr.contains("launched 2 workers"), "{}", out.show());
        let diff = max_diff(&one, &two);
        assert!(diff < TOL, "--tune {tune}: 2 processes end {diff} away from 1 process");
        assert!(two.join("eval/metrics.json").exists(), "rank 0 writes the report");
    }
    // Without --freeze-bn the trained stage's batch norms normalise with each rank's own batch statistics (DDP
    // without SyncBatchNorm), so the runs part ways: what the README says about full tuning.
    let (one, two) = (dir.path().join("bn-1"), dir.path().join("bn-2"));
    run(dir.path(), &vision_args(&data, "last:1", 12, &one, &[])).assert_ok();
    let mut args = vision_args(&data, "last:1", 6, &two, &[]);
    args.extend(["--nproc".into(), "2".into()]);
    run(dir.path(), &args).assert_ok();
    assert!(max_diff(&one, &two) > 1e-4, "per-rank batch statistics should make a visible difference");
}

#[test]
fn a_suite_rank_and_a_pytorch_rank_all_reduce_in_one_group() {
    let dir = tmp();
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/py/dist_peer.py");
    let python = suite_core::python::python_exe().unwrap();
    // Either side may host the store (rank 0).
    for suite_rank in [0usize, 1] {
        let port = free_port();
        let env = |c: &mut Command, rank: usize| {
            c.env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("WORLD_SIZE", "2")
                .env("RANK", rank.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        };
        let mut ours = Command::new(SUITE);
        ours.args(["dist-check", "--timeout", "60"]).current_dir(dir.path());
        env(&mut ours, suite_rank);
        let mut theirs = Command::new(&python);
        theirs.arg(&peer);
        env(&mut theirs, 1 - suite_rank);
        let (a, b) = (ours.spawn().unwrap(), theirs.spawn().unwrap());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success(), "suite: {}", String::from_utf8_lossy(&a.stderr));
        assert!(b.status.success(), "torch: {}", String::from_utf8_lossy(&b.stderr));
        for out in [&a.stdout, &b.stdout] {
            let v: serde_json::Value = serde_json::from_slice(out).unwrap();
            assert_eq!(v["world_size"], 2);
            assert_eq!(v["all_reduce"], serde_json::json!([3.0, 3.0, 3.0, 3.0]), "1 + 2 on every rank: {v}");
            assert_eq!(v["broadcast"], serde_json::json!([7.0, 8.0, 9.0, 10.0]), "rank 0's tensor: {v}");
        }
    }
}

#[test]
fn a_killed_rank_is_named_and_the_run_resumes_to_the_uninterrupted_weights() {
    let dir = tmp();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let flags = ["--save-steps", "2", "--dist-timeout", "30"];
    let mut args = text_args(dir.path(), 4, 12, &whole, &flags);
    args.extend(["--nproc".into(), "2".into()]);
    run(dir.path(), &args).assert_ok();

    let args = text_args(dir.path(), 4, 12, &killed, &flags);
    let port = free_port();
    let mut r0 = spawn_rank(dir.path(), &args, 0, 2, port, &dir.path().join("rank0.log"));
    let mut r1 = spawn_rank(dir.path(), &args, 1, 2, port, &dir.path().join("rank1.log"));
    wait_for(&killed.join("checkpoints/step-00000004/trainer_state.json"), Duration::from_secs(120));
    r1.kill().unwrap();
    let killed_at = Instant::now();
    r1.wait().unwrap();
    let status = r0.wait().unwrap();
    let took = killed_at.elapsed();
    let log = std::fs::read_to_string(dir.path().join("rank0.log")).unwrap();
    assert!(!status.success(), "rank 0 must fail when rank 1 dies:\n{log}");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("lost rank 1"), "the error names the lost rank:\n{log}");
    assert!(took < Duration::from_secs(30), "rank 0 took {took:?} to notice (timeout 30 s)");

    // Another world size is refused with what would change; the same one continues to the very same weights.
    let resume_one = run(dir.path(), &["finetune".into(), "text".into(), "--resume".into(), s(&killed).into()]);
    resume_one.assert_error_after_progress(&["trained by 2 process(es) and this run has 1", "global batch (8 → 4"]);
    let out = run(
        dir.path(),
        &["finetune", "text", "--resume", s(&killed), "--nproc", "2", "--threads", "1"].map(String::from),
    );
    out.assert_ok();
    assert!(out.stderr.contains("resumed from"), "{}", out.show());
    let diff = max_diff(&whole, &killed);
    assert!(diff < 1e-6, "resumed 2-process run ends {diff} away from the uninterrupted one");
}

#[test]
fn a_frozen_rank_is_named_once_the_timeout_passes() {
    let dir = tmp();
    let run_dir = dir.path().join("frozen");
    let args = text_args(dir.path(), 4, 40, &run_dir, &["--save-steps", "2", "--dist-timeout", "6"]);
    let port = free_port();
    let mut r0 = spawn_rank(dir.path(), &args, 0, 2, port, &dir.path().join("rank0.log"));
    let mut r1 = spawn_rank(dir.path(), &args, 1, 2, port, &dir.path().join("rank1.log"));
    wait_for(&run_dir.join("checkpoints/step-00000002/trainer_state.json"), Duration::from_secs(120));
    // SIGSTOP: the process lives but neither trains nor beats, as a rank stuck in a dead NFS mount.
    unsafe { libc::kill(r1.id() as i32, libc::SIGSTOP) };
    let stopped_at = Instant::now();
    let status = r0.wait().unwrap();
    let took = stopped_at.elapsed();
    unsafe { libc::kill(r1.id() as i32, libc::SIGKILL) };
    r1.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("rank0.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("lost rank 1") && log.contains("died or froze"), "{log}");
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(25), "took {took:?} with a 6 s timeout");
    assert!(run_dir.join("checkpoints/step-00000002/model.safetensors").exists(), "the finished checkpoint stays");
}

#[test]
fn sigterm_to_the_launcher_stops_every_worker_and_keeps_the_checkpoints() {
    let dir = tmp();
    let run_dir = dir.path().join("stopped");
    let mut args = text_args(dir.path(), 4, 200, &run_dir, &["--save-steps", "2"]);
    args.extend(["--nproc".into(), "2".into()]);
    let mut launcher = Command::new(SUITE)
        .args(&args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run_dir.join("checkpoints/step-00000002/trainer_state.json"), Duration::from_secs(120));
    let workers = child_pids(launcher.id());
    assert_eq!(workers.len(), 2, "two workers under the launcher: {workers:?}");
    unsafe { libc::kill(launcher.id() as i32, libc::SIGTERM) };
    let status = launcher.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(500));
    for pid in workers {
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid), "worker {pid} still runs");
    }
    let kept = std::fs::read_dir(run_dir.join("checkpoints")).unwrap().count();
    assert!(kept >= 1, "checkpoints survive the stop");
}

fn child_pids(parent: u32) -> Vec<u32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}
