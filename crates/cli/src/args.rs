//! Command-line definitions. Training flags override the `[train]` table of `--config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use suite_core::optim::ScheduleKind;
use suite_core::train::{Precision, TrainConfig};

pub mod explain;

/// Fine-tune pretrained models for text, vision and speech on one libtorch trainer.
#[derive(Debug, Parser)]
#[command(name = "suite", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a pretrained model and write a run folder.
    Finetune(Box<FinetuneArgs>),
    /// Evaluate a run's model (best, or final with --which final) on labelled data.
    Eval(EvalArgs),
    /// Predict with a run's model.
    Predict(PredictArgs),
    /// Export a run's model in hub layout.
    Export(ExportArgs),
    /// Prepare the offline data sets used by the demo and tests.
    Data(DataArgs),
    /// Benchmark suite against the same job in PyTorch eager on this machine.
    Bench(BenchArgs),
    /// Transcribe (or translate) audio files with Whisper or a speech run's model.
    Transcribe(TranscribeArgs),
    /// Serve models over HTTP: prediction for vision and text runs, OpenAI's audio API for Whisper, its chat and
    /// completion APIs for language models.
    Serve(ServeArgs),
    /// Continue prompts with a language model (a run's or a model folder).
    Generate(GenerateArgs),
    /// Talk with a language model on the terminal (/reset starts over, /exit or end of input quits).
    Chat(ChatArgs),
    /// Check a data-parallel launch: join the process group that torchrun (or RANK/WORLD_SIZE/MASTER_ADDR/
    /// MASTER_PORT) describes, all-reduce and broadcast a tensor, and print what each rank got.
    DistCheck(DistCheckArgs),
    /// Check a data set before training: class balance, duplicates and leakage across splits, unreadable files,
    /// sizes and lengths, and with --run the examples whose labels look wrong (confident learning).
    Inspect(InspectArgs),
    /// Explain a run's predictions: Grad-CAM and integrated gradients for images, token attributions for text,
    /// word timing and confidence for speech.
    Explain(explain::ExplainArgs),
    /// Search hyperparameters: run trials of a recipe (TPE or random sampling, ASHA early termination), write a
    /// leaderboard and the best configuration as a recipe.
    Tune(Box<TuneArgs>),
}

/// `suite inspect`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Reads the data through the same readers as `suite finetune` and writes report.json (every number and listed item)
and a self-contained report.html (charts inline) into --out, printing a summary with what to do about each finding.

Duplicates: exact (same bytes, same decoded audio, same normalised text) and near (images by perceptual hash within
--near-distance bits, texts by MinHash over character 5-grams at Jaccard >= --near-jaccard), within each split and
across splits (leakage).

Label issues (--run): every example is scored by a logistic regression on the run model's features, fitted on the
other --folds folds (out-of-sample probabilities, as cleanlab recommends), then ranked by confident learning exactly
as cleanlab.filter.find_label_issues ranks them.")]
pub struct InspectArgs {
    /// Domain of the data.
    pub domain: Domain,
    /// Training data: an image folder, a CSV/JSONL manifest… (what `suite finetune --data` takes).
    #[arg(long)]
    pub data: PathBuf,
    /// Validation data.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Test data.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// A run trained on this kind of data: its model ranks label-issue candidates (classification), and its
    /// tokenizer and settings are used for length checks.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// `best` (default) or `final` model of --run.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// Task recipe (TOML) whose data settings to use (task, columns, max length, model).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tokenizer source for length checks (text, speech): a registry name, hub id or local folder (default: the
    /// run's, the recipe's, or the domain's default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Text task: `classify` (default), `ner` or `qa`.
    #[arg(long)]
    pub task: Option<String>,
    /// Tokens per sequence the model will see (text): longer examples are counted as truncated.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Classification: name of the text column.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Classification: name of the second text column of sentence pairs.
    #[arg(long)]
    pub pair_column: Option<String>,
    /// Classification: name of the label column.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Classification: several labels per text.
    #[arg(long)]
    pub multi_label: bool,
    /// Speech: language code for manifest rows without one.
    #[arg(long)]
    pub language: Option<String>,
    /// Images: largest Hamming distance (of 64 bits) between perceptual hashes of near duplicates.
    #[arg(long, default_value_t = 4)]
    pub near_distance: u32,
    /// Texts: smallest Jaccard similarity of character 5-gram sets of near duplicates.
    #[arg(long, default_value_t = 0.8)]
    pub near_jaccard: f64,
    /// Cross-validation folds of the label-issue scores.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Folder for report.json and report.html (default: reports/inspect-<domain>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print report.json to stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Device for --run's model: `cpu`, `cuda`, `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `suite dist-check`.
#[derive(Debug, Args)]
pub struct DistCheckArgs {
    /// Seconds to wait for the other ranks.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Let `--nproc N` local workers run the check (as `suite finetune --nproc`).
    #[arg(long)]
    pub nproc: Option<usize>,
}

/// A domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Image classification (ResNet, EfficientNet-Lite).
    Vision,
    /// BERT-family encoders: classification, NER, extractive QA.
    Text,
    /// Whisper speech recognition and translation.
    Speech,
}

/// `suite finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Domain of the job.
    pub domain: Domain,
    /// Task recipe (TOML); flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder to write (default: runs/<domain>-<model>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its newest checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Data parallel on this machine: start N worker processes (as `torchrun --standalone --nproc-per-node N`).
    /// `--batch-size` is per process, so the global batch is batch size × N × accumulation. Under torchrun or
    /// another launcher that sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, leave it out.
    #[arg(long)]
    pub nproc: Option<usize>,
    /// Model name from the registry (e.g. resnet50, efficientnet_lite0).
    #[arg(long)]
    pub model: Option<String>,
    /// Pretrained weights: a local file or folder, or a hub id `org/name[@revision]`.
    #[arg(long)]
    pub weights: Option<String>,
    /// `pretrained` (default) or `random` to train from scratch on purpose (vision); `scratch` for a language
    /// model built from its folder's config.json (text, `--task sft`).
    #[arg(long)]
    pub init: Option<String>,
    /// Training data: an image folder, a CSV/JSONL manifest…
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Separate validation data.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Hold out this fraction of the training data for validation (stratified, seeded).
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f64>,
    /// Tuning strategy: `head`, `last:N` or `full`.
    #[arg(long)]
    pub tune: Option<String>,
    /// Learning-rate multiplier of the pretrained backbone relative to the new head.
    #[arg(long, allow_negative_numbers = true)]
    pub backbone_lr_mult: Option<f64>,
    /// Label smoothing of the cross-entropy.
    #[arg(long, allow_negative_numbers = true)]
    pub label_smoothing: Option<f64>,
    /// Training-time augmentation: `none`, `light` (flip + crop) or `strong` (adds TrivialAugment and erasing).
    #[arg(long)]
    pub augment: Option<String>,
    /// Mixup alpha (0 disables).
    #[arg(long, allow_negative_numbers = true)]
    pub mixup: Option<f64>,
    /// CutMix alpha (0 disables).
    #[arg(long, allow_negative_numbers = true)]
    pub cutmix: Option<f64>,
    /// Input side in pixels, overriding the model's default.
    #[arg(long)]
    pub input_size: Option<u32>,
    /// Skip unreadable images (listed in the run report) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Keep every batch norm's pretrained statistics, also in the stages that train (vision; their affine weights
    /// still train). A data-parallel run then matches one process with the same global batch.
    #[arg(long)]
    pub freeze_bn: bool,
    /// Text settings.
    #[command(flatten)]
    pub text: TextArgs,
    /// Speech settings.
    #[command(flatten)]
    pub speech: SpeechArgs,
    /// Parameter-efficient fine-tuning.
    #[command(flatten)]
    pub peft: PeftArgs,
    /// Training-loop settings.
    #[command(flatten)]
    pub train: TrainArgs,
    /// Experiment trackers, comma-separated: `tensorboard` (event files in RUN/tensorboard/), `mlflow` (the
    /// tracking server of MLFLOW_TRACKING_URI, experiment MLFLOW_EXPERIMENT_NAME or `suite`), or `none`.
    #[arg(long, value_delimiter = ',', default_value = "tensorboard")]
    pub report_to: Vec<ReportTo>,
    /// `suite tune` internals: the study folder whose journal this trial reports its rungs to.
    #[arg(long, hide = true, requires = "tune_trial")]
    pub tune_study: Option<PathBuf>,
    /// `suite tune` internals: this trial's number in the study.
    #[arg(long, hide = true, requires = "tune_study")]
    pub tune_trial: Option<u64>,
}

/// An experiment tracker of `--report-to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportTo {
    /// TensorBoard event files in the run folder.
    Tensorboard,
    /// An MLflow tracking server.
    Mlflow,
    /// No tracking.
    None,
}

/// `suite tune`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Each trial is an ordinary run folder OUT/trials/NNNN (its recipe OUT/trials/NNNN.toml, its log NNNN.log) that suite
eval and predict accept. The study journal OUT/study.jsonl records settings, proposals, rung results and trial ends:
rerunning the same command (or adding --resume) continues a stopped study without redoing finished trials.
Writes OUT/leaderboard.csv, OUT/leaderboard.html and OUT/best.toml (a recipe for suite finetune --config).")]
pub struct TuneArgs {
    /// Domain of the job.
    pub domain: Domain,
    /// Base recipe (TOML); the search space's keys replace its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Separate validation data.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Search space (TOML); default: the domain's (written to OUT/space.toml).
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Trials to run in all (default 20 without --budget).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Wall-time budget (`90s`, `30m`, `2h`): no trial starts after it.
    #[arg(long)]
    pub budget: Option<String>,
    /// Metric to optimise (default: the recipe's train.metric).
    #[arg(long)]
    pub objective: Option<String>,
    /// `max` or `min` (default: inferred from the objective's name).
    #[arg(long)]
    pub direction: Option<String>,
    /// `tpe` or `random`.
    #[arg(long, default_value = "tpe")]
    pub sampler: String,
    /// Seed of the sampler (each trial's recipe keeps its own train.seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// TPE: random trials before the estimators take over.
    #[arg(long, default_value_t = 10)]
    pub startup_trials: usize,
    /// Trials run side by side (CPU threads or CUDA devices are split among them).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// ASHA: evaluations before the first rung (0 turns early termination off).
    #[arg(long, default_value_t = 1)]
    pub min_resource: usize,
    /// ASHA: reduction factor η (the top 1/η of a rung go on).
    #[arg(long, default_value_t = 3)]
    pub reduction_factor: usize,
    /// Continue the study in --out (rerunning the same command does too).
    #[arg(long)]
    pub resume: bool,
    /// Device of the trials (`auto`, `cpu`, `cuda`).
    #[arg(long)]
    pub device: Option<String>,
    /// libtorch CPU threads of the whole study (split among parallel trials).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data-loading worker threads per trial.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Study folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags that override `[text]`.
#[derive(Debug, Args, Default)]
pub struct TextArgs {
    /// Text task: `classify`, `ner`, `qa` or `sft` (supervised fine-tuning of a language model).
    #[arg(long)]
    pub task: Option<String>,
    /// Tokens per sequence (QA: per window), special tokens included.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Classification: several labels per text (`a|b` in CSV, a list in JSONL).
    #[arg(long)]
    pub multi_label: bool,
    /// Classification: name of the text column.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Classification: name of the second text column of sentence pairs.
    #[arg(long)]
    pub pair_column: Option<String>,
    /// Classification: name of the label column.
    #[arg(long)]
    pub label_column: Option<String>,
    /// NER: `first` sub-word carries the label (default) or `all` do.
    #[arg(long)]
    pub subword_labels: Option<String>,
    /// NER: seqeval strict mode with the data's tag scheme.
    #[arg(long)]
    pub strict: bool,
    /// QA: token overlap of consecutive context windows.
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// QA: longest answer in tokens.
    #[arg(long)]
    pub max_answer_len: Option<usize>,
    /// QA: SQuAD v2 (questions may have no answer).
    #[arg(long)]
    pub version_2: bool,
    /// Learning-rate multiplier of the pretrained encoder relative to the head.
    #[arg(long, allow_negative_numbers = true)]
    pub encoder_lr_mult: Option<f64>,
    /// SFT: one example per row, right padded, instead of packing several examples into each row.
    #[arg(long)]
    pub no_packing: bool,
    /// SFT: held-out prompts answered greedily at each evaluation for exact match and ROUGE-L (0: none).
    #[arg(long)]
    pub eval_generate: Option<usize>,
    /// SFT: a system message put in front of every conversation that has none.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// SFT: recompute each decoder layer in the backward pass instead of keeping its activations (less memory,
    /// about a third more compute).
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// Flags that override `[speech]` (`--task transcribe|translate` is shared with text).
#[derive(Debug, Args, Default)]
pub struct SpeechArgs {
    /// Language code (e.g. de) for manifest rows without one, and for decoding at evaluation.
    #[arg(long)]
    pub language: Option<String>,
    /// Train only the decoder.
    #[arg(long)]
    pub freeze_encoder: bool,
    /// SpecAugment (time and frequency masking) on the training features.
    #[arg(long)]
    pub spec_augment: bool,
    /// Beam size of the decoding at evaluation (1 = greedy).
    #[arg(long)]
    pub eval_beam: Option<usize>,
}

/// Flags that override `[peft]`.
#[derive(Debug, Args, Default)]
pub struct PeftArgs {
    /// `none`, `lora`, `dora`, `ia3`, `prefix`, `ptuning2`, `adapter` (Houlsby), `pfeiffer` or `bitfit`.
    #[arg(long)]
    pub peft: Option<String>,
    /// LoRA/DoRA rank.
    #[arg(long)]
    pub lora_r: Option<i64>,
    /// LoRA/DoRA alpha (scale = alpha / r).
    #[arg(long, allow_negative_numbers = true)]
    pub lora_alpha: Option<f64>,
    /// LoRA/DoRA dropout on the adapter's input.
    #[arg(long, allow_negative_numbers = true)]
    pub lora_dropout: Option<f64>,
    /// LoRA/DoRA target layers: `all-linear` or names such as `query,value`.
    #[arg(long)]
    pub lora_targets: Option<String>,
    /// rsLoRA scaling (alpha / sqrt(r)).
    #[arg(long)]
    pub rslora: bool,
    /// (IA)³ target layers.
    #[arg(long)]
    pub ia3_targets: Option<String>,
    /// (IA)³ feed-forward layers (their input is scaled).
    #[arg(long)]
    pub ia3_feedforward: Option<String>,
    /// Prefix tuning / P-tuning v2: virtual tokens per layer.
    #[arg(long)]
    pub prefix_tokens: Option<i64>,
    /// Prefix tuning: hidden width of the reparameterisation MLP.
    #[arg(long)]
    pub prefix_projection: Option<i64>,
    /// Bottleneck adapters: `houlsby` or `pfeiffer`.
    #[arg(long)]
    pub adapter_kind: Option<String>,
    /// Bottleneck adapters: hidden width / bottleneck width.
    #[arg(long)]
    pub adapter_reduction: Option<i64>,
}

/// Flags that override `[train]`.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Examples per forward pass.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Forward passes per optimizer step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Decoupled weight decay.
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// `adamw` or `sgd`.
    #[arg(long)]
    pub optimizer: Option<OptimizerName>,
    /// SGD momentum.
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// `constant`, `linear` or `cosine`.
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// Warmup in optimizer steps.
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Warmup as a fraction of all steps.
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_ratio: Option<f64>,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, allow_negative_numbers = true)]
    pub clip_grad_norm: Option<f64>,
    /// Evaluate every N steps (default: every epoch).
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Checkpoint every N steps (default: every epoch).
    #[arg(long)]
    pub save_steps: Option<usize>,
    /// Metric that selects the best model (e.g. accuracy, loss).
    #[arg(long)]
    pub metric: Option<String>,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    /// Smallest improvement that resets the patience.
    #[arg(long, allow_negative_numbers = true)]
    pub early_stopping_min_delta: Option<f64>,
    /// Seed of everything random.
    #[arg(long)]
    pub seed: Option<u64>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long)]
    pub device: Option<String>,
    /// libtorch CPU threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data-loading worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// `auto`, `fp32` or `bf16`.
    #[arg(long)]
    pub precision: Option<PrecisionName>,
    /// Log the training loss (and throughput) every N optimizer steps.
    #[arg(long)]
    pub log_steps: Option<usize>,
    /// Data parallel: seconds a rank waits for the others in a collective before the run fails naming the rank it
    /// lost (default 1800; it must outlast rank 0's evaluation and checkpoint writes).
    #[arg(long)]
    pub dist_timeout: Option<u64>,
}

/// Inference precision on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum InferPrecision {
    /// fp32 weights and activations.
    #[default]
    Fp32,
    /// int8 linear layers (weights quantized once per output channel, activations per call), fp32 elsewhere.
    Int8,
}

impl InferPrecision {
    /// Runs `quantize` for `int8` (refused off the CPU) and says what it did; nothing for `fp32`.
    pub fn apply(
        self,
        device: tch::Device,
        quantize: impl FnOnce() -> anyhow::Result<suite_core::quant::QuantSummary>,
    ) -> anyhow::Result<()> {
        if self == Self::Fp32 {
            return Ok(());
        }
        if device != tch::Device::Cpu {
            anyhow::bail!("--precision int8 runs on the CPU (libtorch's int8 kernels); add --device cpu");
        }
        let s = quantize()?;
        eprintln!(
            "int8: {} linear layers, {:.1} M weights: {:.1} MB in fp32 → {:.1} MB in int8",
            s.layers,
            s.weights as f64 / 1e6,
            s.fp32_bytes as f64 / 1e6,
            s.int8_bytes as f64 / 1e6
        );
        Ok(())
    }
}

/// Optimizer names on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerName {
    /// AdamW.
    Adamw,
    /// SGD.
    Sgd,
}

/// Precision names on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionName {
    /// bf16 on CUDA, fp32 on CPU.
    Auto,
    /// fp32.
    Fp32,
    /// bf16 autocast (CUDA).
    Bf16,
}

impl TrainArgs {
    /// Applies every flag that was given onto `cfg`.
    pub fn apply(&self, cfg: &mut TrainConfig) {
        use suite_core::optim::OptimizerConfig;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { cfg.$f = v; } )* };
        }
        set!(epochs, batch_size, grad_accum, lr, weight_decay, metric, seed, device, threads, workers, log_steps);
        if let Some(t) = self.dist_timeout {
            cfg.dist_timeout_s = t;
        }
        if self.max_steps.is_some() {
            cfg.max_steps = self.max_steps;
        }
        if self.eval_steps.is_some() {
            cfg.eval_steps = self.eval_steps;
        }
        if self.save_steps.is_some() {
            cfg.save_steps = self.save_steps;
        }
        if let Some(c) = self.clip_grad_norm {
            cfg.clip_grad_norm = (c > 0.0).then_some(c);
        }
        match self.optimizer {
            Some(OptimizerName::Adamw) if !matches!(cfg.optimizer, OptimizerConfig::Adamw { .. }) => {
                cfg.optimizer = OptimizerConfig::default()
            }
            Some(OptimizerName::Sgd) if !matches!(cfg.optimizer, OptimizerConfig::Sgd { .. }) => {
                cfg.optimizer = OptimizerConfig::Sgd { momentum: 0.9, nesterov: false }
            }
            _ => {}
        }
        if let OptimizerConfig::Sgd { momentum, nesterov } = &mut cfg.optimizer {
            if let Some(m) = self.momentum {
                *momentum = m;
            }
            *nesterov |= self.nesterov;
        }
        if let Some(k) = self.schedule {
            cfg.schedule.kind = k;
        }
        if self.warmup_steps.is_some() {
            cfg.schedule.warmup_steps = self.warmup_steps;
        }
        if let Some(r) = self.warmup_ratio {
            cfg.schedule.warmup_ratio = r;
        }
        if let Some(p) = self.early_stopping_patience {
            let min_delta = self.early_stopping_min_delta.unwrap_or(0.0);
            cfg.early_stopping = Some(suite_core::train::EarlyStoppingConfig { patience: p, min_delta });
        } else if let (Some(es), Some(d)) = (cfg.early_stopping.as_mut(), self.early_stopping_min_delta) {
            es.min_delta = d;
        }
        if let Some(p) = self.precision {
            cfg.precision = match p {
                PrecisionName::Auto => Precision::Auto,
                PrecisionName::Fp32 => Precision::Fp32,
                PrecisionName::Bf16 => Precision::Bf16,
            };
        }
    }
}

/// `suite eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Labelled data to evaluate on (default: the run's validation data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `best` (default) or `final`.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Examples per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// SFT runs: held-out prompts answered greedily for exact match and ROUGE-L (default: the run's setting; a
    /// pretraining run's "before" score on an instruction set needs it).
    #[arg(long)]
    pub eval_generate: Option<usize>,
    /// `fp32`, or `int8`: linear layers in int8 (libtorch's dynamic quantization, per-channel weights; CPU), to
    /// see what int8 costs in quality.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: InferPrecision,
}

/// `suite predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Domain of the run.
    pub domain: Domain,
    /// Run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Inputs: image files (vision); a text/JSONL file or `-` for stdin (text, default stdin).
    pub inputs: Vec<PathBuf>,
    /// Labels to show per input.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// `best` (default) or `final`.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// `fp32`, or `int8`: linear layers in int8 (libtorch's dynamic quantization, per-channel weights; CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: InferPrecision,
}

/// `suite export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder (its `best/` or `final/` model is exported).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// A model folder to export instead of a run's: a causal LM in hub layout, or an SFT adapter folder
    /// (`adapter.safetensors` + `suite_adapter.json`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output folder (for `--format gguf`: a `.gguf` file, or a folder to write `model-<type>.gguf` in).
    #[arg(long)]
    pub out: PathBuf,
    /// `best` (default) or `final`.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// For a LoRA/DoRA run: fold the adapter into the base weights and write a plain model in hub layout
    /// (without it, a PEFT run exports its adapter folder).
    #[arg(long)]
    pub merge: bool,
    /// Language models: `hub` (transformers layout, PEFT merged; the default), `peft` (a peft adapter folder) or
    /// `gguf` (one file for llama.cpp and Ollama).
    #[arg(long)]
    pub format: Option<String>,
    /// `--format hub`: weight type, `f32` (default), `f16` or `bf16`.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// `--format gguf`: `f16` (default) or `q8_0`.
    #[arg(long, default_value = "f16")]
    pub gguf_type: String,
    /// `--format peft`: the `base_model_name_or_path` to record (default: the base model the adapter names).
    #[arg(long)]
    pub base: Option<String>,
    /// Weight precision of the export, for any run: `fp32`, `fp16` or `bf16` (floating-point tensors cast on
    /// writing); `int8` for a language model is a GGUF file with ggml's 8-bit blocks (Q8_0). Overrides `--dtype` and
    /// `--gguf-type`.
    #[arg(long, value_enum)]
    pub precision: Option<ExportPrecision>,
}

/// `suite export --precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportPrecision {
    Fp32,
    Fp16,
    Bf16,
    Int8,
}

/// `suite data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Data set to prepare: `mnist5k` (vision), `fortunes4`, `reuters2`, `ner-synth`, `qa-synth` (text).
    pub name: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Held-out fraction.
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
}

/// `suite transcribe`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Long recordings are transcribed as openai-whisper's transcribe() does: 30-s windows read from where the last
timestamp left off, each window decoded again at a higher temperature when its text is too repetitive or too
unlikely, silent windows skipped, each window prompted with the text before it.

Output: without --output-dir, txt prints `FILE<TAB>LANGUAGE<TAB>TEXT` per file, json and verbose_json one JSON
object per file and line (with a \"file\" field), and srt/vtt the subtitles — of several files, each after a
`==> FILE <==` line. With --output-dir DIR, each file's result is written to DIR/NAME.txt, .json, .srt, .vtt or
.verbose.json (NAME: the audio file's name without its extension), as the whisper CLI does, and stdout lists the
files written.")]
pub struct TranscribeArgs {
    /// Audio files (WAV, FLAC, MP3, OGG); longer than 30 s is transcribed window by window.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Whisper model: `whisper-base` (default, offline), a hub id or a local folder.
    #[arg(long, conflicts_with = "run")]
    pub model: Option<String>,
    /// A speech run folder whose fine-tuned model to use.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// `best` (default) or `final` model of --run.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// Language code; detected from the audio when not given.
    #[arg(long)]
    pub language: Option<String>,
    /// `transcribe` (default) or `translate` (to English).
    #[arg(long, default_value = "transcribe")]
    pub task: String,
    /// Beam size (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Output format: `txt` (default), `json`, `srt`, `vtt` or `verbose_json` (segments with times).
    #[arg(long, default_value = "txt")]
    pub format: String,
    /// Same as `--format json`: one JSON object per file instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Write each file's result to DIR/NAME.EXT instead of printing it.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Sampling temperature: one number starts the fallback ladder there (rising by 0.2 up to 1.0, default 0), a
    /// comma-separated list (`0,0.4,0.8`) is the ladder itself.
    #[arg(long, default_value = "0")]
    pub temperature: String,
    /// Text that prompts the first window (names, spelling, style).
    #[arg(long)]
    pub initial_prompt: Option<String>,
    /// Decode each window without the previous text as its prompt.
    #[arg(long)]
    pub no_condition_on_previous_text: bool,
    /// Word-level timestamps and probabilities from the cross-attention alignment (openai-whisper's and
    /// faster-whisper's `word_timestamps`): `words` in `json` and `verbose_json` (per segment and OpenAI's top-level
    /// list), one cue per word (the segment's text with the word underlined) in `srt` and `vtt`.
    #[arg(long)]
    pub word_timestamps: bool,
    /// `fp32`, or `int8`: every linear layer in int8 (libtorch's dynamic quantization, per-channel weights; CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: InferPrecision,
    /// Print `timings: {"load_s", "compute_s"}` on stderr at the end (model loading vs decoding and
    /// transcription), for `suite bench transcribe`.
    #[arg(long, hide = true)]
    pub timings: bool,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `suite bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark: `resnet50-step`, `head-only`, `minilm-step`, `whisper-step`, `sft-step`, `generate`, `serve`,
    /// `ddp` or `transcribe`.
    pub name: String,
    /// Timed iterations (default 10; whisper-step 3, sft-step and generate 5, whose steps take seconds on a CPU).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// `serve`: a short smoke version (fewer requests, one repetition), not for the record.
    #[arg(long)]
    pub quick: bool,
    /// `serve`: the text classification run to serve (default: a short fine-tune on fortunes4).
    #[arg(long)]
    pub text_run: Option<PathBuf>,
    /// `serve`: the vision run to serve (default: a head-only EfficientNet-Lite0 fine-tune on generated images).
    #[arg(long)]
    pub vision_run: Option<PathBuf>,
    /// `resnet50-step`, `minilm-step`, `whisper-step`: after the timed steps, profile 3 more on each side with
    /// libtorch's profiler and write both Chrome traces and the op-by-op comparison (`ops.md`, `ops.json`) here.
    #[arg(long, value_name = "DIR")]
    pub profile: Option<PathBuf>,
}

/// `suite serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A run folder to serve (any domain, with or without a PEFT adapter); `DIR=ID` names it (default: the
    /// folder's name). Repeat for more models.
    #[arg(long = "run", value_name = "DIR[=ID]")]
    pub runs: Vec<String>,
    /// A language model folder (hub layout or SFT output), or a base Whisper model by registry name
    /// (`whisper-base`), hub id or folder; `NAME=ID` names it. Repeatable.
    #[arg(long = "model", value_name = "NAME[=ID]")]
    pub models: Vec<String>,
    /// Which model of each run: best or final.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// Address to listen on (127.0.0.1 keeps the server to this machine; 0.0.0.0 opens it to the network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the address is printed once bound).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most requests answered by one forward pass.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Longest wait, in milliseconds, for more requests once one is queued.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Most requests waiting per model; one more gets 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Largest request body, in MB (OpenAI's audio API allows 25).
    #[arg(long, default_value_t = 25.0)]
    pub max_body_mb: f64,
    /// A file whose first line is the API key; every route but /health and the page then needs
    /// `Authorization: Bearer KEY`. The SUITE_API_KEY environment variable does the same.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Beam size of Whisper decoding (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in flight.
    #[arg(long, default_value_t = 30)]
    pub drain_s: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch threads (default: libtorch's own choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `int8`: every model's linear layers in int8 (libtorch's dynamic quantization; CPU).
    #[arg(long, value_enum, default_value_t)]
    pub precision: InferPrecision,
}

/// Which language model `suite generate` and `suite chat` use: a run's model or a model folder (one of them).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("lm_source").required(true).args(["run", "model"])))]
pub struct LmModelArgs {
    /// An SFT run folder whose model to use (its `best/` or `final/` folder).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// `best` (default) or `final` model of --run.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// A model folder: hub layout (config.json, model.safetensors, tokenizer.json) or a PEFT folder saved by SFT.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// How `suite generate` and `suite chat` choose tokens.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// The most tokens to generate per answer.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding (default: 0 for generate, 0.7 for chat).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Sample only among the K most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: only the most likely tokens whose probabilities add up to P, in (0, 1].
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f64,
    /// Penalty on tokens already in the text (1: off), as transformers' `repetition_penalty`.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f64,
    /// Seed of the sampler: the same seed gives the same answer.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `suite generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Prompts to continue; several are generated as one batch.
    #[arg(required = true)]
    pub prompts: Vec<String>,
    /// The model.
    #[command(flatten)]
    pub model: LmModelArgs,
    /// Token choice.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A string that ends the answer (not printed); repeatable.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Wrap each prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message before each prompt.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// One JSON object per prompt (text, token_ids, finish_reason, token counts) instead of the text.
    #[arg(long)]
    pub json: bool,
}

/// `suite chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The model.
    #[command(flatten)]
    pub model: LmModelArgs,
    /// Token choice.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message that starts the conversation (kept by /reset).
    #[arg(long)]
    pub system: Option<String>,
}
