//! The trainer on a small synthetic task that the tests generate: three Gaussian blobs in 8-D, an MLP with dropout.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use tch::{nn, nn::VarStore, Device, Kind, Tensor};

use super::*;
use crate::data::{DataLoader, Dataset, LoaderConfig, SampleRng};
use crate::metrics::Metrics;
use crate::nn::Linear;
use crate::runs::RunDir;

const DIM: usize = 8;

struct Blobs {
    n: usize,
    seed: u64,
}

impl Dataset for Blobs {
    type Item = (Vec<f32>, i64);
    type Batch = (Tensor, Tensor);
    fn len(&self) -> usize {
        self.n
    }
    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<Self::Item> {
        // The example itself is fixed by (seed, index), not by the augmentation RNG.
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed * 1_000_003 + index as u64);
        let class = index % 3;
        let x = (0..DIM).map(|d| if d % 3 == class { 1.5 } else { 0.0 } + r.random_range(-1.0f32..1.0)).collect();
        Ok((x, class as i64))
    }
    fn collate(&self, items: Vec<Self::Item>) -> Result<Self::Batch> {
        let n = items.len() as i64;
        let xs: Vec<f32> = items.iter().flat_map(|(x, _)| x.iter().copied()).collect();
        let ys: Vec<i64> = items.iter().map(|(_, y)| *y).collect();
        Ok((Tensor::from_slice(&xs).view([n, DIM as i64]), Tensor::from_slice(&ys)))
    }
}

struct Mlp {
    vs: VarStore,
    l1: Linear,
    l2: Linear,
    nan_after: Option<usize>,
    calls: usize,
}

impl Mlp {
    fn new(seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let l1 = Linear::new(vs.root() / "l1", DIM as i64, 32, true);
        let l2 = Linear::new(vs.root() / "l2", 32, 3, true);
        Self { vs, l1, l2, nan_after: None, calls: 0 }
    }
    fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.l2.forward_t(&self.l1.forward_t(x, train).relu().dropout(0.2, train), train)
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl TrainModel for Mlp {
    type Batch = (Tensor, Tensor);
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn batch_len(&self, batch: &Self::Batch) -> usize {
        batch.1.size()[0] as usize
    }
    fn loss(&mut self, (x, y): &Self::Batch, train: bool) -> Result<Tensor> {
        self.calls += 1;
        let loss = self.logits(x, train).cross_entropy_for_logits(y);
        Ok(match self.nan_after {
            Some(n) if self.calls > n => loss * f64::NAN,
            _ => loss,
        })
    }
    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<Self::Batch>>) -> Result<Metrics> {
        let (mut correct, mut n, mut loss) = (0i64, 0i64, 0.0);
        for b in batches {
            let (x, y) = b?;
            let logits = self.logits(&x, false);
            loss += logits.cross_entropy_for_logits(&y).double_value(&[]) * y.size()[0] as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            n += y.size()[0];
        }
        Ok(Metrics::from([("accuracy".into(), correct as f64 / n as f64), ("loss".into(), loss / n as f64)]))
    }
    fn save_model(&self, dir: &Path) -> Result<()> {
        Tensor::write_safetensors(&self.weights(), dir.join("model.safetensors"))?;
        Ok(())
    }
}

fn loaders(batch: usize, workers: usize) -> (DataLoader<Blobs>, DataLoader<Blobs>) {
    let cfg = LoaderConfig { batch_size: batch, workers, prefetch: 2, seed: 5, drop_last: false };
    (
        DataLoader::shuffled(Arc::new(Blobs { n: 96, seed: 1 }), cfg.clone()),
        DataLoader::sequential(Arc::new(Blobs { n: 60, seed: 2 }), cfg),
    )
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 8,
        lr: 0.01,
        metric: "accuracy".into(),
        device: "cpu".into(),
        log_steps: 2,
        ..Default::default()
    }
}

fn run_dir(dir: &Path) -> RunDir {
    RunDir::create(dir, true).unwrap()
}

#[test]
fn loss_falls_and_accuracy_passes_threshold() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = loaders(8, 2);
    let mut model = Mlp::new(0);
    let mut before = eval.iter_epoch(0, 0);
    let start = tch::no_grad(|| model.evaluate(&mut before)).unwrap();
    let trainer = Trainer::new(config(), run_dir(tmp.path())).unwrap().quiet(true);
    let s = trainer.fit(&mut model, &train, Some(&eval), false).unwrap();
    let end = s.last_eval.clone().unwrap();
    assert!(end["loss"] < 0.5 * start["loss"], "held-out loss {} → {}", start["loss"], end["loss"]);
    assert!(end["accuracy"] >= 0.9, "held-out accuracy {}", end["accuracy"]);
    assert_eq!(s.steps, 4 * 12);
    for f in ["metrics.jsonl", "curves.png", "best/model.safetensors", "final/model.safetensors"] {
        assert!(tmp.path().join(f).exists(), "{f} missing");
    }
    assert!(crate::train::latest_checkpoint(&tmp.path().join("checkpoints")).unwrap().is_some());
}

#[test]
fn four_accumulated_batches_of_8_equal_one_batch_of_32() {
    let _rng = crate::device::torch_rng_lock();
    let mut results = Vec::new();
    for (batch, accum) in [(32, 1), (8, 4)] {
        let tmp = tempfile::tempdir().unwrap();
        let (train, _) = loaders(batch, 0);
        let mut model = Mlp::new(0);
        // No dropout randomness in this comparison: the two runs draw masks for different shapes.
        let cfg = TrainConfig { batch_size: batch, grad_accum: accum, epochs: 2, weight_decay: 0.0, ..config() };
        let trainer = Trainer::new(cfg, run_dir(tmp.path())).unwrap().quiet(true);
        let mut eval_free = NoDropout(model);
        trainer.fit::<_, Blobs, Blobs>(&mut eval_free, &train, None, false).unwrap();
        model = eval_free.0;
        results.push(model.weights());
    }
    for ((n, a), (_, b)) in results[0].iter().zip(&results[1]) {
        let d = (a - b).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{n}: max |Δ| = {d}");
    }
}

/// The MLP with dropout off, so gradients depend only on the examples.
struct NoDropout(Mlp);

impl TrainModel for NoDropout {
    type Batch = (Tensor, Tensor);
    fn var_store(&self) -> &VarStore {
        &self.0.vs
    }
    fn batch_len(&self, b: &Self::Batch) -> usize {
        self.0.batch_len(b)
    }
    fn loss(&mut self, (x, y): &Self::Batch, _train: bool) -> Result<Tensor> {
        Ok(self.0.logits(x, false).cross_entropy_for_logits(y))
    }
    fn evaluate(&mut self, b: &mut dyn Iterator<Item = Result<Self::Batch>>) -> Result<Metrics> {
        self.0.evaluate(b)
    }
    fn save_model(&self, dir: &Path) -> Result<()> {
        self.0.save_model(dir)
    }
}

#[test]
fn killed_and_resumed_run_ends_bitwise_equal() {
    let _rng = crate::device::torch_rng_lock();
    let cfg = TrainConfig { save_steps: Some(5), eval_steps: Some(6), ..config() };
    let (train, eval) = loaders(8, 2);

    let a = tempfile::tempdir().unwrap();
    let mut straight = Mlp::new(0);
    Trainer::new(cfg.clone(), run_dir(a.path()))
        .unwrap()
        .quiet(true)
        .fit(&mut straight, &train, Some(&eval), false)
        .unwrap();

    let b = tempfile::tempdir().unwrap();
    let mut first = Mlp::new(0);
    let err = Trainer::new(cfg.clone(), run_dir(b.path()))
        .unwrap()
        .quiet(true)
        .interrupt_after(23)
        .fit(&mut first, &train, Some(&eval), false)
        .unwrap_err();
    assert!(err.to_string().contains("interrupted"));
    drop(first);
    // A new process: fresh model with other initial weights, state comes from the checkpoint at step 20.
    let mut resumed = Mlp::new(99);
    let s = Trainer::new(cfg, RunDir::create(b.path(), false).unwrap())
        .unwrap()
        .quiet(true)
        .fit(&mut resumed, &train, Some(&eval), true)
        .unwrap();
    assert_eq!(s.resumed_from, Some(20));
    for ((n, x), (_, y)) in straight.weights().iter().zip(resumed.weights().iter()) {
        assert!(x.equal(y), "{n} differs after resume");
    }
    let steps = |dir: &Path| -> Vec<u64> {
        crate::runs::read_metrics(&dir.join("metrics.jsonl")).unwrap().iter().map(|r| r.step()).collect()
    };
    assert_eq!(steps(a.path()), steps(b.path()), "metrics log after resume equals the uninterrupted one");
}

#[test]
fn early_stopping_fires() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = loaders(8, 2);
    let mut model = Mlp::new(0);
    // A learning rate this small cannot improve accuracy by min_delta between evaluations.
    let cfg = TrainConfig {
        epochs: 50,
        lr: 1e-7,
        eval_steps: Some(2),
        early_stopping: Some(EarlyStoppingConfig { patience: 3, min_delta: 0.05 }),
        ..config()
    };
    let s = Trainer::new(cfg, run_dir(tmp.path()))
        .unwrap()
        .quiet(true)
        .fit(&mut model, &train, Some(&eval), false)
        .unwrap();
    assert!(s.stopped_early);
    assert_eq!(s.steps, 8, "first eval sets the best, three more without improvement stop the run");
}

/// Sees every record and stops the run after its second evaluation, as a tuner's early termination does.
struct Watcher {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    evals: usize,
}

impl FitObserver for Watcher {
    fn name(&self) -> &str {
        "watcher"
    }
    fn on_start(&mut self, _run: &RunDir, config: &TrainConfig) -> Result<()> {
        self.seen.lock().unwrap().push(format!("start lr={}", config.lr));
        Ok(())
    }
    fn on_record(&mut self, record: &crate::runs::MetricRecord) -> Result<()> {
        let kind = if matches!(record, crate::runs::MetricRecord::Eval(_)) { "eval" } else { "train" };
        self.seen.lock().unwrap().push(format!("{kind} {}", record.step()));
        Ok(())
    }
    fn on_eval(&mut self, step: usize, metrics: &Metrics, last: bool) -> Result<Verdict> {
        assert!(metrics.contains_key("accuracy"));
        self.evals += 1;
        self.seen.lock().unwrap().push(format!("verdict {step}{}", if last { " last" } else { "" }));
        Ok(if self.evals == 2 { Verdict::Stop } else { Verdict::Continue })
    }
    fn on_end(&mut self, _run: &RunDir, summary: &FitSummary) -> Result<()> {
        self.seen.lock().unwrap().push(format!("end {}", summary.steps));
        Ok(())
    }
}

/// Fits the test model for up to 10 epochs with an evaluation every 3 steps, `max_steps` and a [`Watcher`] that
/// asks to stop at its second evaluation: the summary and what the watcher saw.
fn fit_watched(dir: &Path, max_steps: Option<usize>) -> (FitSummary, Vec<String>) {
    let (train, eval) = loaders(8, 2);
    let mut model = Mlp::new(0);
    let cfg = TrainConfig { epochs: 10, max_steps, eval_steps: Some(3), log_steps: 3, ..config() };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Trainer::new(cfg, run_dir(dir))
        .unwrap()
        .quiet(true)
        .with_observer(Box::new(Watcher { seen: seen.clone(), evals: 0 }))
        .fit(&mut model, &train, Some(&eval), false)
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    (s, seen)
}

#[test]
fn an_observer_sees_every_record_and_can_stop_the_run() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (s, seen) = fit_watched(tmp.path(), None);
    assert!(s.stopped_early);
    assert_eq!(s.stopped_by.as_deref(), Some("watcher"));
    assert_eq!(s.steps, 6, "stopped right after the second evaluation");
    assert_eq!(seen.first().map(String::as_str), Some("start lr=0.01"));
    assert_eq!(seen.last().map(String::as_str), Some("end 6"));
    // The observer saw exactly what metrics.jsonl holds, in order.
    let logged: Vec<String> = crate::runs::read_metrics(&tmp.path().join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| {
            let kind = if matches!(r, crate::runs::MetricRecord::Eval(_)) { "eval" } else { "train" };
            format!("{kind} {}", r.step())
        })
        .collect();
    let records: Vec<String> = seen[1..seen.len() - 1].iter().filter(|x| !x.starts_with("verdict")).cloned().collect();
    assert_eq!(records, logged);
    let verdicts: Vec<&String> = seen.iter().filter(|x| x.starts_with("verdict")).collect();
    assert_eq!(verdicts, ["verdict 3", "verdict 6"], "asked after each evaluation, neither the run's last");
    assert!(tmp.path().join("final").exists(), "a stopped run still writes its final model");
}

/// A stop asked at the evaluation of the final step is not an early stop: the run ends as it would have.
#[test]
fn a_stop_at_the_final_evaluation_is_not_an_early_stop() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (s, seen) = fit_watched(tmp.path(), Some(6));
    assert_eq!(s.steps, 6);
    assert!(!s.stopped_early);
    assert_eq!(s.stopped_by, None);
    let verdicts: Vec<&String> = seen.iter().filter(|x| x.starts_with("verdict")).collect();
    assert_eq!(verdicts, ["verdict 3", "verdict 6 last"]);
}

#[test]
fn nan_guard_stops_and_keeps_the_last_good_checkpoint() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = loaders(8, 0);
    let mut model = Mlp::new(0);
    model.nan_after = Some(15);
    let cfg = TrainConfig { save_steps: Some(4), ..config() };
    let err = Trainer::new(cfg, run_dir(tmp.path()))
        .unwrap()
        .quiet(true)
        .fit(&mut model, &train, Some(&eval), false)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("NaN") && msg.contains("step 16"), "{msg}");
    assert!(msg.contains("step-00000012"), "names the last good checkpoint: {msg}");
    assert!(tmp.path().join("checkpoints/step-00000012/model.safetensors").exists());
}

#[test]
fn bad_config_values_are_named() {
    let _rng = crate::device::torch_rng_lock();
    let e = TrainConfig { batch_size: 0, ..config() }.validate().unwrap_err().to_string();
    assert!(e.contains("batch_size"), "{e}");
    let e = TrainConfig { lr: -1.0, ..config() }.validate().unwrap_err().to_string();
    assert!(e.contains("train.lr"), "{e}");
    let e = TrainConfig { device: "gpu7".into(), ..config() }.validate().unwrap_err().to_string();
    assert!(e.contains("gpu7"), "{e}");
    let _ = nn::Init::Const(0.0);
}

/// A process killed between the last checkpoint (marked finished) and `final/`: resuming writes `final/` (and the
/// curves) from the checkpoint, the same bytes as the uninterrupted run's.
#[test]
fn resuming_a_finished_run_writes_a_missing_final_model() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = loaders(8, 0);
    let cfg = TrainConfig { epochs: 1, ..config() };
    let mut model = Mlp::new(0);
    Trainer::new(cfg.clone(), run_dir(tmp.path()))
        .unwrap()
        .quiet(true)
        .fit(&mut model, &train, Some(&eval), false)
        .unwrap();
    let final_model = tmp.path().join("final/model.safetensors");
    let written = std::fs::read(&final_model).unwrap();
    std::fs::remove_dir_all(tmp.path().join("final")).unwrap();
    std::fs::remove_file(tmp.path().join("curves.png")).unwrap();

    let mut resumed = Mlp::new(99);
    let s = Trainer::new(cfg, RunDir::create(tmp.path(), false).unwrap())
        .unwrap()
        .quiet(true)
        .fit(&mut resumed, &train, Some(&eval), true)
        .unwrap();
    assert_eq!(s.resumed_from, Some(12));
    assert_eq!(std::fs::read(&final_model).unwrap(), written, "final/ differs from the uninterrupted run's");
    assert!(tmp.path().join("curves.png").is_file());
}

/// A process killed before its first checkpoint, after logging: the resumed run starts over and logs each step once.
#[test]
fn resuming_without_a_checkpoint_drops_what_the_killed_process_logged() {
    let _rng = crate::device::torch_rng_lock();
    let (train, eval) = loaders(8, 0);
    let cfg = TrainConfig { epochs: 1, save_steps: Some(6), log_steps: 1, ..config() };
    let a = tempfile::tempdir().unwrap();
    Trainer::new(cfg.clone(), run_dir(a.path()))
        .unwrap()
        .quiet(true)
        .fit(&mut Mlp::new(0), &train, Some(&eval), false)
        .unwrap();

    let b = tempfile::tempdir().unwrap();
    let err = Trainer::new(cfg.clone(), run_dir(b.path()))
        .unwrap()
        .quiet(true)
        .interrupt_after(3)
        .fit(&mut Mlp::new(0), &train, Some(&eval), false)
        .unwrap_err();
    assert!(err.to_string().contains("interrupted"));
    let s = Trainer::new(cfg, RunDir::create(b.path(), false).unwrap())
        .unwrap()
        .quiet(true)
        .fit(&mut Mlp::new(0), &train, Some(&eval), true)
        .unwrap();
    assert_eq!(s.resumed_from, None);
    let steps = |dir: &Path| -> Vec<u64> {
        crate::runs::read_metrics(&dir.join("metrics.jsonl")).unwrap().iter().map(|r| r.step()).collect()
    };
    assert_eq!(steps(a.path()), steps(b.path()));
}

/// A checkpoint that cannot be written fails the run naming its step and the checkpoint that is kept, which stays
/// the newest; the run then resumes from it. (The obstacle here is a file where the staging folder goes; a full
/// disk is tested end to end in tests/kill_campaign.rs.)
#[test]
fn a_checkpoint_that_cannot_be_written_names_the_one_kept() {
    let _rng = crate::device::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = loaders(8, 0);
    let cfg = TrainConfig { epochs: 1, save_steps: Some(4), ..config() };
    let run = run_dir(tmp.path());
    let ckpts = tmp.path().join("checkpoints");
    let obstacle = crate::runs::staging_dir(&ckpts.join(Checkpoint::folder_name(8))).unwrap();
    std::fs::write(&obstacle, "in the way").unwrap();
    let err = Trainer::new(cfg.clone(), run).unwrap().quiet(true).fit(&mut Mlp::new(0), &train, Some(&eval), false);
    let msg = format!("{:#}", err.unwrap_err());
    assert!(msg.contains("cannot write the checkpoint of step 8"), "{msg}");
    assert!(msg.contains(&format!("{}, is kept", ckpts.join("step-00000004").display())), "{msg}");
    assert_eq!(crate::train::latest_checkpoint(&ckpts).unwrap().unwrap().dir, ckpts.join("step-00000004"));

    std::fs::remove_file(&obstacle).unwrap();
    let s = Trainer::new(cfg, RunDir::create(tmp.path(), false).unwrap())
        .unwrap()
        .quiet(true)
        .fit(&mut Mlp::new(99), &train, Some(&eval), true)
        .unwrap();
    assert_eq!((s.resumed_from, s.steps), (Some(4), 12));
}
