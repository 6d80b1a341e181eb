use serde::{Deserialize, Serialize};

use crate::optim::{OptimizerConfig, ScheduleKind};

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Smaller is better (losses, error rates).
    Min,
    /// Larger is better (accuracy, F1).
    Max,
}

impl MetricMode {
    /// The natural direction for a metric name: `min` for losses and error rates, else `max`.
    pub fn for_metric(name: &str) -> Self {
        let n = name.to_ascii_lowercase();
        if n.contains("loss") || n.contains("wer") || n.contains("cer") || n.contains("error") {
            MetricMode::Min
        } else {
            MetricMode::Max
        }
    }
}

/// Numeric precision of the forward and backward passes. Master weights and optimizer state are always fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 autocast on CUDA, fp32 on CPU.
    #[default]
    Auto,
    /// fp32 everywhere.
    Fp32,
    /// bf16 autocast (CUDA only).
    Bf16,
}

/// Learning-rate schedule settings (`[schedule]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Curve after warmup.
    pub kind: ScheduleKind,
    /// Warmup in optimizer steps (takes precedence over `warmup_ratio`).
    pub warmup_steps: Option<usize>,
    /// Warmup as a fraction of all optimizer steps.
    pub warmup_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { kind: ScheduleKind::Linear, warmup_steps: None, warmup_ratio: 0.0 }
    }
}

/// Early stopping on an evaluation metric (`[early_stopping]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Everything the trainer needs to know, as a typed struct that a task TOML (`[train]`) deserializes into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Stop after this many optimizer steps, even mid-epoch.
    pub max_steps: Option<usize>,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Forward passes per optimizer step (effective batch = batch_size × grad_accum).
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (not applied to biases and norm weights).
    pub weight_decay: f64,
    /// Optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Evaluate every N optimizer steps; unset = at the end of every epoch.
    pub eval_steps: Option<usize>,
    /// Checkpoint every N optimizer steps; unset = at the end of every epoch.
    pub save_steps: Option<usize>,
    /// Step checkpoints kept on disk (the newest are kept).
    pub keep_checkpoints: usize,
    /// Metric that selects the best model and drives early stopping (`loss`, `accuracy`, `f1`…).
    pub metric: String,
    /// Whether larger or smaller `metric` is better; unset = inferred from its name.
    pub metric_mode: Option<MetricMode>,
    /// Stop when `metric` stops improving.
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Seed of data order, augmentation, dropout and initialisation.
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Intra-op CPU threads for libtorch (0 = libtorch's default).
    pub threads: usize,
    /// Data-loading worker threads.
    pub workers: usize,
    /// Forward/backward precision.
    pub precision: Precision,
    /// Log training loss every N optimizer steps.
    pub log_steps: usize,
    /// Data-parallel runs: seconds a collective may wait for the other ranks before the run fails naming the rank
    /// it lost. Rank 0 evaluates and writes checkpoints while the others wait, so it must outlast both.
    pub dist_timeout_s: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            max_steps: None,
            batch_size: 32,
            grad_accum: 1,
            lr: 1e-3,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            clip_grad_norm: Some(1.0),
            eval_steps: None,
            save_steps: None,
            keep_checkpoints: 2,
            metric: "loss".into(),
            metric_mode: None,
            early_stopping: None,
            seed: 42,
            device: "auto".into(),
            threads: 0,
            workers: 2,
            precision: Precision::Auto,
            log_steps: 10,
            dist_timeout_s: 1800,
        }
    }
}

impl TrainConfig {
    /// Checks values that serde cannot: each error names the field and what was expected.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.batch_size == 0 {
            bail!("train.batch_size must be at least 1");
        }
        if self.grad_accum == 0 {
            bail!("train.grad_accum must be at least 1");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            bail!("train.epochs must be at least 1 (or set train.max_steps)");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("train.lr must be a positive number, got {}", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("train.weight_decay must be ≥ 0, got {}", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.schedule.warmup_ratio) {
            bail!("schedule.warmup_ratio must be in [0, 1), got {}", self.schedule.warmup_ratio);
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                bail!("train.clip_grad_norm must be positive, got {c}");
            }
        }
        if self.eval_steps == Some(0) || self.save_steps == Some(0) || self.log_steps == 0 {
            bail!("train.eval_steps, train.save_steps and train.log_steps must be at least 1");
        }
        if self.dist_timeout_s == 0 {
            bail!("train.dist_timeout_s must be at least 1 second");
        }
        crate::device::parse_device(&self.device)?;
        Ok(())
    }

    /// The direction of `metric`.
    pub fn mode(&self) -> MetricMode {
        self.metric_mode.unwrap_or_else(|| MetricMode::for_metric(&self.metric))
    }
}
