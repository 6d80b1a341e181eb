use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::checkpoint::{latest_checkpoint, list_checkpoints, Checkpoint, TrainerState};
use super::config::{Precision, TrainConfig};
use super::early_stop::BestTracker;
use super::model::TrainModel;
use super::observer::{FitObserver, Verdict};
use super::progress::ProgressView;
use crate::data::{DataLoader, Dataset};
use crate::device::mix_seed;
use crate::dist::{GradSync, DEFAULT_BUCKET_BYTES};
use crate::metrics::Metrics;
use crate::optim::{clip_grad_norm, param_groups, GroupRule, Optimizer, Schedule};
use crate::runs::{self, EvalRecord, MetricRecord, RunDir, TrainRecord};

/// What a finished (or early-stopped) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    /// Optimizer steps done in all.
    pub steps: usize,
    /// Step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
    /// Whether early stopping (or an observer) ended the run.
    pub stopped_early: bool,
    /// The observer that ended the run after an evaluation ([`FitObserver::name`]), if one did.
    pub stopped_by: Option<String>,
    /// Best value of the selection metric and its step.
    pub best: Option<(f64, usize)>,
    /// Metrics of the last evaluation.
    pub last_eval: Option<Metrics>,
    /// Mean training loss over the last logging window.
    pub last_train_loss: Option<f64>,
    /// Training throughput of the job (every data-parallel rank together), in examples per second.
    pub samples_per_sec: f64,
    /// Wall time of this process's training, in seconds.
    pub elapsed_s: f64,
    /// Trainable and total parameter counts.
    pub trainable_params: i64,
    /// All parameter and buffer elements of the model.
    pub total_params: i64,
}

/// What [`Trainer::fit`] works out before the first step.
struct Plan {
    optimizer: Box<dyn Optimizer>,
    schedule: Schedule,
    batches: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    epochs: usize,
    trainable: i64,
    total: i64,
    autocast: bool,
    world: usize,
    rank: usize,
    sync: Option<GradSync>,
    dist: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
    last_eval_step: Option<usize>,
}

/// Runs the training loop of a [`TrainModel`] into a run folder.
pub struct Trainer {
    config: TrainConfig,
    run: RunDir,
    rules: Vec<GroupRule>,
    interrupt_after: Option<usize>,
    quiet: bool,
    /// Behind a mutex because `fit` takes `&self`; only the training thread locks it.
    observers: Mutex<Vec<Box<dyn FitObserver>>>,
}

impl Trainer {
    /// A trainer writing into `run` with `config`.
    pub fn new(config: TrainConfig, run: RunDir) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            run,
            rules: Vec::new(),
            interrupt_after: None,
            quiet: false,
            observers: Mutex::new(Vec::new()),
        })
    }

    /// Learning-rate multipliers by parameter-name prefix (discriminative learning rates).
    pub fn with_group_rules(mut self, rules: Vec<GroupRule>) -> Self {
        self.rules = rules;
        self
    }

    /// Stops as if the process were killed right after optimizer step `step` (for resume tests).
    pub fn interrupt_after(mut self, step: usize) -> Self {
        self.interrupt_after = Some(step);
        self
    }

    /// Adds a watcher of the run's records ([`FitObserver`]): a tracker, or a tuner that may stop it.
    pub fn with_observer(self, observer: Box<dyn FitObserver>) -> Self {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).push(observer);
        self
    }

    /// Adds several observers ([`Trainer::with_observer`]), in order.
    pub fn with_observers(self, observers: Vec<Box<dyn FitObserver>>) -> Self {
        observers.into_iter().fold(self, Self::with_observer)
    }

    /// Prints nothing but errors.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The run folder.
    pub fn run(&self) -> &RunDir {
        &self.run
    }

    /// Trains `model` on `train`, evaluating on `eval`; with `resume`, continues from the newest checkpoint of the
    /// run folder and ends with exactly the weights an uninterrupted run would have.
    ///
    /// Inside a data-parallel job ([`crate::dist::group`]) every rank calls this with the same loaders: each trains
    /// on its shard of every global batch (`batch_size × world × grad_accum` examples per step), gradients are
    /// averaged across ranks before each optimizer step, and rank 0 alone evaluates, writes the run folder and
    /// shows progress.
    pub fn fit<M, D, E>(
        &self,
        model: &mut M,
        train: &DataLoader<D>,
        eval: Option<&DataLoader<E>>,
        resume: bool,
    ) -> Result<FitSummary>
    where
        M: TrainModel,
        D: Dataset<Batch = M::Batch>,
        E: Dataset<Batch = M::Batch>,
    {
        crate::device::set_threads(self.config.threads);
        let dist = crate::dist::group();
        let sharded;
        let train = match &dist {
            Some(g) => {
                sharded = train.sharded(g.rank(), g.world_size());
                &sharded
            }
            None => train,
        };
        let mut plan = self.plan(model, train)?;
        let mut state = TrainerState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            samples_seen: 0,
            best: BestTracker::new(
                self.config.mode(),
                self.config.early_stopping.as_ref().map_or(0.0, |e| e.min_delta),
            ),
            finished: false,
            world_size: plan.world,
        };
        let resumed_from = if resume { self.restore(model, plan.optimizer.as_mut(), &mut state)? } else { None };
        if let Some(g) = &dist {
            // As DDP's constructor: every rank starts from rank 0's weights and buffers.
            let mut vars: Vec<(String, tch::Tensor)> = model.var_store().variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            let mut tensors: Vec<tch::Tensor> = vars.into_iter().map(|(_, t)| t).collect();
            tch::no_grad(|| g.broadcast(&mut tensors, 0)).context("sharing rank 0's initial weights")?;
            self.say(format!(
                "data parallel: {} processes, global batch {} ({} per rank × {} × accumulation {})",
                plan.world,
                train.config().batch_size * plan.world * self.config.grad_accum,
                train.config().batch_size,
                plan.world,
                self.config.grad_accum
            ));
        }
        self.say(format!(
            "trainable parameters: {} of {} ({:.2} %); {} steps/epoch, {} steps",
            plan.trainable,
            plan.total,
            100.0 * plan.trainable as f64 / plan.total.max(1) as f64,
            plan.steps_per_epoch,
            plan.total_steps
        ));
        let mut summary = FitSummary {
            steps: state.step,
            resumed_from,
            stopped_early: false,
            stopped_by: None,
            best: state.best.best.zip(state.best.best_step),
            last_eval: None,
            last_train_loss: None,
            samples_per_sec: 0.0,
            elapsed_s: 0.0,
            trainable_params: plan.trainable,
            total_params: plan.total,
        };
        if plan.rank == 0 {
            self.each_observer(|o| o.on_start(&self.run, &self.config))?;
        }
        if state.finished {
            self.say("this run had already finished".to_string());
            if plan.rank == 0 {
                self.complete_finished(model, eval.is_some())?;
            }
            return Ok(summary);
        }
        let started = Instant::now();
        let process_samples = self.train_loop(model, train, eval, &mut plan, &mut state, &mut summary)?;
        self.finish(model, eval, &mut plan, &mut state, &mut summary)?;
        if let Some(g) = &dist {
            // Nobody leaves while rank 0 still writes the final model (its store serves the others).
            g.barrier().context("waiting for rank 0 to write the final model")?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        summary.steps = state.step;
        summary.best = state.best.best.zip(state.best.best_step);
        summary.elapsed_s = elapsed;
        summary.samples_per_sec = (process_samples * plan.world as u64) as f64 / elapsed.max(1e-9);
        if plan.rank == 0 {
            self.each_observer(|o| o.on_end(&self.run, &summary))?;
        }
        Ok(summary)
    }

    /// Phase 1: parameter groups, optimizer, schedule and step counts.
    fn plan<M: TrainModel, D: Dataset<Batch = M::Batch>>(&self, model: &M, train: &DataLoader<D>) -> Result<Plan> {
        let cfg = &self.config;
        let groups = param_groups(model.var_store(), &self.rules, cfg.weight_decay);
        let trainable: i64 = groups.iter().flat_map(|g| &g.params).map(|(_, t)| t.numel() as i64).sum();
        let total: i64 = model.var_store().variables().values().map(|t| t.numel() as i64).sum();
        if trainable == 0 {
            bail!("the model has no trainable parameters: check the tuning strategy");
        }
        // Only trainable parameters are reduced across ranks (frozen ones, PEFT's base weights, never change).
        let dist = crate::dist::group();
        let sync = dist.as_ref().map(|_| {
            let params: Vec<tch::Tensor> =
                groups.iter().flat_map(|g| &g.params).map(|(_, t)| t.shallow_clone()).collect();
            GradSync::new(params, DEFAULT_BUCKET_BYTES)
        });
        let optimizer = cfg.optimizer.build(groups);
        let batches = train.batches_per_epoch();
        if batches == 0 {
            bail!(
                "the training set gives no batch of {} examples (it has {}); lower batch_size or disable drop_last",
                train.config().batch_size,
                train.dataset().len()
            );
        }
        let steps_per_epoch = batches.div_ceil(cfg.grad_accum);
        let mut total_steps = steps_per_epoch * cfg.epochs;
        if let Some(m) = cfg.max_steps {
            total_steps = if cfg.epochs == 0 { m } else { total_steps.min(m) };
        }
        let epochs = if cfg.epochs == 0 { total_steps.div_ceil(steps_per_epoch) } else { cfg.epochs };
        let schedule =
            Schedule::new(cfg.schedule.kind, total_steps, cfg.schedule.warmup_steps, cfg.schedule.warmup_ratio);
        let autocast = use_autocast(cfg.precision, model.var_store().device())?;
        Ok(Plan {
            optimizer,
            schedule,
            batches,
            steps_per_epoch,
            total_steps,
            epochs,
            trainable,
            total,
            autocast,
            world: dist.as_ref().map_or(1, |g| g.world_size()),
            rank: dist.as_ref().map_or(0, |g| g.rank()),
            sync,
            dist,
            last_eval_step: None,
        })
    }

    /// Phase 2 (with `--resume`): the newest checkpoint's weights, optimizer state and loop position.
    fn restore<M: TrainModel>(
        &self,
        model: &mut M,
        optimizer: &mut dyn Optimizer,
        state: &mut TrainerState,
    ) -> Result<Option<usize>> {
        let Some(ck) = latest_checkpoint(&self.run.checkpoints_dir())? else {
            self.say("no checkpoint to resume from: starting from the beginning".to_string());
            // What a process killed before its first checkpoint logged is logged again from step 1.
            self.run.truncate_metrics_after(0)?;
            return Ok(None);
        };
        let saved = ck.state()?;
        if saved.world_size != state.world_size {
            let per_step = |w: usize| self.config.batch_size * w * self.config.grad_accum;
            bail!(
                "cannot resume {}: it was trained by {} process(es) and this run has {}. Another world size changes \
                 the global batch ({} → {} examples per step) and how each epoch's examples are split among ranks, so \
                 the run would not continue as it began. Resume with {} process(es) (torchrun --nproc-per-node {} or \
                 --nproc {})",
                ck.dir.display(),
                saved.world_size,
                state.world_size,
                per_step(saved.world_size),
                per_step(state.world_size),
                saved.world_size,
                saved.world_size,
                saved.world_size
            );
        }
        *state = saved;
        ck.load_model(model.var_store())?;
        optimizer.load_state_tensors(ck.optimizer_tensors()?).with_context(|| format!("{}", ck.dir.display()))?;
        self.run.truncate_metrics_after(state.step as u64)?;
        self.say(format!("resumed from {} (step {}, epoch {})", ck.dir.display(), state.step, state.epoch + 1));
        Ok(Some(state.step))
    }

    /// Phase 3: the optimizer steps, with evaluation, best-model tracking and checkpoints on the way. Returns the
    /// examples this process trained on.
    fn train_loop<M, D, E>(
        &self,
        model: &mut M,
        train: &DataLoader<D>,
        eval: Option<&DataLoader<E>>,
        plan: &mut Plan,
        state: &mut TrainerState,
        summary: &mut FitSummary,
    ) -> Result<u64>
    where
        M: TrainModel,
        D: Dataset<Batch = M::Batch>,
        E: Dataset<Batch = M::Batch>,
    {
        let cfg = &self.config;
        let main = plan.rank == 0;
        let mut log = if main { Some(self.run.metrics_log()?) } else { None };
        let view = (!self.quiet && main).then(|| ProgressView::new(plan.total_steps, state.step));
        let finish_view = || {
            if let Some(v) = &view {
                v.finish();
            }
        };
        let started = Instant::now();
        let mut window_loss = 0.0;
        let mut window_steps = 0usize;
        let mut window_samples = 0u64;
        let mut window_start = Instant::now();
        let mut process_samples = 0u64;
        let batches = plan.batches;

        'epochs: for epoch in state.epoch..plan.epochs {
            let start = if epoch == state.epoch { state.batch_in_epoch } else { 0 };
            let iter = train.iter_epoch(epoch, start);
            let mut step_loss = 0.0;
            let mut micro_in_window = 0usize;
            let mut b = start;
            for batch in iter {
                let batch = batch.with_context(|| format!("loading training batch {b} of epoch {}", epoch + 1))?;
                let window_start_b = b - b % cfg.grad_accum;
                let window_len = cfg.grad_accum.min(batches - window_start_b);
                // Each rank draws its own dropout masks; a single process keeps the seeds of earlier versions.
                let mut seed = vec![cfg.seed, 0x5354_4550, state.step as u64, (b - window_start_b) as u64];
                if plan.world > 1 {
                    seed.push(plan.rank as u64);
                }
                tch::manual_seed(mix_seed(&seed) as i64);
                let n = model.batch_len(&batch);
                let loss = crate::device::maybe_autocast(plan.autocast, || model.loss(&batch, true))?;
                let value = loss.double_value(&[]);
                // Under data parallelism the loss travels with the gradients, so every rank stops together.
                if !value.is_finite() && plan.sync.is_none() {
                    finish_view();
                    return Err(self.nan_error(value, state.step, epoch, b));
                }
                (loss / window_len as f64).backward();
                step_loss += value / window_len as f64;
                micro_in_window += 1;
                state.samples_seen += (n * plan.world) as u64;
                process_samples += n as u64;
                window_samples += (n * plan.world) as u64;
                b += 1;
                if micro_in_window < window_len {
                    continue;
                }
                micro_in_window = 0;
                if let (Some(sync), Some(g)) = (&plan.sync, &plan.dist) {
                    g.set_step(state.step as u64);
                    step_loss = sync.average(g, step_loss).with_context(|| {
                        format!("averaging the gradients of step {} across {} processes", state.step + 1, plan.world)
                    })?;
                    if !step_loss.is_finite() {
                        finish_view();
                        return Err(self.nan_error(step_loss, state.step, epoch, b - 1));
                    }
                }
                if let Some(max_norm) = cfg.clip_grad_norm {
                    let norm = clip_grad_norm(plan.optimizer.groups(), max_norm);
                    if !norm.is_finite() {
                        finish_view();
                        return Err(self.nan_error(norm, state.step, epoch, b - 1));
                    }
                }
                let lr = cfg.lr * plan.schedule.factor(state.step);
                plan.optimizer.step(lr);
                plan.optimizer.zero_grad();
                state.step += 1;
                state.epoch = epoch;
                state.batch_in_epoch = b;
                window_loss += step_loss;
                window_steps += 1;
                step_loss = 0.0;

                let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                let rate = window_samples as f64 / secs;
                if let Some(v) = &view {
                    v.step(state.step, epoch, window_loss / window_steps as f64, lr, rate);
                }
                if state.step.is_multiple_of(cfg.log_steps) || state.step == plan.total_steps {
                    let loss = window_loss / window_steps as f64;
                    if let Some(log) = log.as_mut() {
                        self.record(
                            log,
                            &MetricRecord::Train(TrainRecord {
                                step: state.step as u64,
                                epoch: epoch as u64,
                                loss,
                                lr,
                                samples_per_sec: rate,
                                elapsed_s: started.elapsed().as_secs_f64(),
                            }),
                        )?;
                    }
                    summary.last_train_loss = Some(loss);
                    (window_loss, window_steps, window_samples, window_start) = (0.0, 0, 0, Instant::now());
                }

                let epoch_end = b == batches;
                if epoch_end {
                    state.epoch = epoch + 1;
                    state.batch_in_epoch = 0;
                }
                let last = state.step >= plan.total_steps;
                let eval_now = match cfg.eval_steps {
                    Some(n) => state.step.is_multiple_of(n) || last,
                    None => epoch_end || last,
                };
                let mut stop = false;
                if let (true, Some(eval)) = (eval_now, eval) {
                    if let Some(log) = log.as_mut() {
                        let metrics = self.evaluate(model, eval, plan.autocast)?;
                        stop = self.after_eval(model, state, &metrics, log, view.as_ref(), epoch)?;
                        if !stop {
                            let verdict = self.observer_verdict(state.step, &metrics, last)?;
                            // At the final step the run ends anyway: that is not an early stop.
                            summary.stopped_by = verdict.filter(|_| !last);
                            stop = summary.stopped_by.is_some();
                        }
                        summary.last_eval = Some(metrics);
                    }
                    stop = self.agree(plan, stop)?;
                    plan.last_eval_step = Some(state.step);
                }
                let save_now = match cfg.save_steps {
                    Some(n) => state.step.is_multiple_of(n),
                    None => epoch_end,
                };
                if save_now || last || stop {
                    state.finished = last || stop;
                    if main {
                        self.checkpoint(model, plan.optimizer.as_ref(), state)?;
                    }
                }
                if stop {
                    summary.stopped_early = true;
                    break 'epochs;
                }
                if last {
                    break 'epochs;
                }
                if self.interrupt_after == Some(state.step) {
                    finish_view();
                    bail!("interrupted after step {} (test hook)", state.step);
                }
            }
        }
        finish_view();
        Ok(process_samples)
    }

    /// Rank 0's early-stopping decision, on every rank.
    fn agree(&self, plan: &Plan, stop: bool) -> Result<bool> {
        let Some(g) = &plan.dist else { return Ok(stop) };
        let mut flag = [tch::Tensor::from_slice(&[u8::from(stop)])];
        g.broadcast(&mut flag, 0).context("waiting for rank 0's evaluation")?;
        Ok(flag[0].int64_value(&[0]) != 0)
    }

    /// Phase 4: a last evaluation if the loop did not end with one, the final checkpoint, `final/` (and `best/`
    /// without evaluation) and the curves. Rank 0 only under data parallelism.
    fn finish<M, E>(
        &self,
        model: &mut M,
        eval: Option<&DataLoader<E>>,
        plan: &mut Plan,
        state: &mut TrainerState,
        summary: &mut FitSummary,
    ) -> Result<()>
    where
        M: TrainModel,
        E: Dataset<Batch = M::Batch>,
    {
        if plan.rank != 0 {
            return Ok(());
        }
        if let (Some(eval), false) = (eval, plan.last_eval_step == Some(state.step)) {
            let metrics = self.evaluate(model, eval, plan.autocast)?;
            let epoch = state.epoch.saturating_sub(1);
            let mut log = self.run.metrics_log()?;
            self.after_eval(model, state, &metrics, &mut log, None, epoch)?;
            summary.last_eval = Some(metrics);
        }
        if !state.finished {
            state.finished = true;
            self.checkpoint(model, plan.optimizer.as_ref(), state)?;
        }
        self.save_model_dir(model, &self.run.final_dir())?;
        if eval.is_none() {
            // Without evaluation the last weights are the best we know of.
            self.save_model_dir(model, &self.run.best_dir())?;
        }
        let records = runs::read_metrics(&self.run.metrics_path())?;
        if let Err(e) = runs::plot_curves(&records, &self.run.curves_path()) {
            self.say(format!("warning: could not draw {}: {e:#}", self.run.curves_path().display()));
        }
        Ok(())
    }

    fn evaluate<M: TrainModel, E: Dataset<Batch = M::Batch>>(
        &self,
        model: &mut M,
        eval: &DataLoader<E>,
        autocast: bool,
    ) -> Result<Metrics> {
        let mut iter = eval.iter_epoch(0, 0);
        tch::no_grad(|| crate::device::maybe_autocast(autocast, || model.evaluate(&mut iter))).context("evaluation")
    }

    /// Logs an evaluation, keeps the best model and answers whether early stopping fires.
    fn after_eval<M: TrainModel>(
        &self,
        model: &mut M,
        state: &mut TrainerState,
        metrics: &Metrics,
        log: &mut runs::MetricsLog,
        view: Option<&ProgressView>,
        epoch: usize,
    ) -> Result<bool> {
        let cfg = &self.config;
        self.record(
            log,
            &MetricRecord::Eval(EvalRecord { step: state.step as u64, epoch: epoch as u64, metrics: metrics.clone() }),
        )?;
        let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let line = format!("eval @ step {}: {}", state.step, shown.join("  "));
        match view {
            Some(v) => v.println(line),
            None => self.say(line),
        }
        let Some(&value) = metrics.get(&cfg.metric) else {
            bail!(
                "train.metric = {:?}, but evaluation reports only {:?}",
                cfg.metric,
                metrics.keys().collect::<Vec<_>>()
            );
        };
        if state.best.update(value, state.step) {
            self.save_model_dir(model, &self.run.best_dir())?;
        }
        Ok(cfg.early_stopping.as_ref().is_some_and(|e| state.best.should_stop(e.patience)))
    }

    /// Writes a checkpoint into a staging folder, moves it into place, then prunes old ones.
    ///
    /// A checkpoint that cannot be written (a full disk, most often) fails the run with an error naming it, the
    /// file and the reason, and the previous checkpoint kept; its partial files are removed, as they hold space
    /// and a resume must find the previous checkpoint as the newest.
    fn checkpoint<M: TrainModel>(&self, model: &M, optimizer: &dyn Optimizer, state: &TrainerState) -> Result<()> {
        let dir = self.run.checkpoints_dir();
        let name = Checkpoint::folder_name(state.step);
        let staging = runs::staging_dir(&dir.join(&name))?;
        let write = || -> Result<()> {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if staging.exists() {
                std::fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
            }
            std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
            Checkpoint::write(&staging, model.var_store(), optimizer.state_tensors(), state)?;
            runs::atomic_replace_dir(&staging, &dir.join(&name))
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_dir_all(&staging);
            let kept = match latest_checkpoint(&dir).ok().flatten() {
                Some(c) => format!("the last complete checkpoint, {}, is kept", c.dir.display()),
                None => "no earlier checkpoint exists".to_string(),
            };
            return Err(e.context(format!(
                "cannot write the checkpoint of step {} ({kept}; make room, then continue with --resume {})",
                state.step,
                self.run.root().display()
            )));
        }
        let all = list_checkpoints(&dir)?;
        let keep = self.config.keep_checkpoints.max(1);
        if all.len() > keep {
            for (_, old) in &all[..all.len() - keep] {
                std::fs::remove_dir_all(&old.dir).with_context(|| format!("removing {}", old.dir.display()))?;
            }
        }
        Ok(())
    }

    /// On resuming a finished run: writes what a process killed after the last checkpoint had not written yet
    /// (`final/`, `best/` of a run without evaluation, the curves). The restored weights are the final ones, so
    /// these are the files the uninterrupted run wrote.
    fn complete_finished<M: TrainModel>(&self, model: &M, evaluated: bool) -> Result<()> {
        if !self.run.final_dir().exists() {
            self.save_model_dir(model, &self.run.final_dir())?;
        }
        if !evaluated && !self.run.best_dir().exists() {
            self.save_model_dir(model, &self.run.best_dir())?;
        }
        if !self.run.curves_path().exists() {
            let records = runs::read_metrics(&self.run.metrics_path())?;
            if let Err(e) = runs::plot_curves(&records, &self.run.curves_path()) {
                self.say(format!("warning: could not draw {}: {e:#}", self.run.curves_path().display()));
            }
        }
        Ok(())
    }

    fn save_model_dir<M: TrainModel>(&self, model: &M, target: &Path) -> Result<()> {
        let staging = runs::staging_dir(target)?;
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        model.save_model(&staging).with_context(|| format!("saving the model to {}", target.display()))?;
        runs::atomic_replace_dir(&staging, target)
    }

    fn nan_error(&self, value: f64, step: usize, epoch: usize, batch: usize) -> anyhow::Error {
        let last = latest_checkpoint(&self.run.checkpoints_dir()).ok().flatten();
        let keep = match last {
            Some(c) => format!("the last good checkpoint is kept at {}", c.dir.display()),
            None => "no checkpoint had been written yet".to_string(),
        };
        anyhow::anyhow!(
            "training stopped: the loss became {value} at step {} (epoch {}, batch {batch}); {keep}. Lower train.lr \
             or enable train.clip_grad_norm, then resume with --resume {}",
            step + 1,
            epoch + 1,
            self.run.root().display()
        )
    }

    /// Appends `record` to `metrics.jsonl` and shows it to every observer.
    fn record(&self, log: &mut runs::MetricsLog, record: &MetricRecord) -> Result<()> {
        log.append(record)?;
        self.each_observer(|o| o.on_record(record))
    }

    /// Asks every observer whether to go on after an evaluation; the first that says stop is named.
    fn observer_verdict(&self, step: usize, metrics: &crate::metrics::Metrics, last: bool) -> Result<Option<String>> {
        let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        for o in observers.iter_mut() {
            let verdict = o.on_eval(step, metrics, last).with_context(|| format!("observer {}", o.name()))?;
            if verdict == Verdict::Stop && !last {
                self.say(format!("{} ended the run after the evaluation at step {step}", o.name()));
                return Ok(Some(o.name().to_string()));
            }
        }
        Ok(None)
    }

    fn each_observer(&self, mut f: impl FnMut(&mut dyn FitObserver) -> Result<()>) -> Result<()> {
        let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        for o in observers.iter_mut() {
            let name = o.name().to_string();
            f(o.as_mut()).with_context(|| format!("observer {name}"))?;
        }
        Ok(())
    }

    fn say(&self, line: String) {
        if !self.quiet && crate::dist::is_main() {
            eprintln!("{line}");
        }
    }
}

fn use_autocast(precision: Precision, device: tch::Device) -> Result<bool> {
    Ok(match (precision, device.is_cuda()) {
        (Precision::Fp32, _) => false,
        (Precision::Auto, cuda) => cuda,
        (Precision::Bf16, true) => true,
        (Precision::Bf16, false) => bail!("train.precision = \"bf16\" needs a CUDA device; use fp32 or auto on CPU"),
    })
}
