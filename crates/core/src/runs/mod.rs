//! Run folders: resolved config, metrics log, checkpoints and plots.
//!
//! ```text
//! runs/<name>/config.toml      resolved config
//! runs/<name>/metrics.jsonl    one MetricRecord per line
//! runs/<name>/checkpoints/     step-NNNNNNNN/ folders
//! runs/<name>/best/  final/    model folders
//! runs/<name>/curves.png       loss and metric curves
//! ```
//!
//! Folders that must never be half-written (checkpoints, `best/`, `final/`) are written to a staging folder and
//! moved into place with [`atomic_replace_dir`]; single files go through [`atomic_write`].

mod atomic;
mod bar_chart;
mod model_dir;
mod plot;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use crate::metrics::Metrics;

pub use atomic::{atomic_replace_dir, atomic_write, recover_replaced_dir, staging_dir};
pub use bar_chart::bar_chart_svg;
pub use model_dir::model_dir;
pub use plot::{plot_confusion, plot_curves, CURVE_PANEL_SIZE};

/// One line of `metrics.jsonl`, tagged by `"kind"`. Non-finite numbers (a diverged loss) are written as `null`,
/// since JSON has no NaN, and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRecord {
    /// A training log line: `{"kind":"train","step":10,"epoch":0,"loss":0.52,"lr":0.001,…}`.
    Train(TrainRecord),
    /// An evaluation result: `{"kind":"eval","step":10,"epoch":1,"metrics":{"accuracy":0.91,"loss":0.3}}`.
    Eval(EvalRecord),
}

impl MetricRecord {
    /// The optimizer step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            MetricRecord::Train(r) => r.step,
            MetricRecord::Eval(r) => r.step,
        }
    }
}

/// Training progress at one logging step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epoch the step belongs to, from 0.
    pub epoch: u64,
    /// Training loss, averaged over the steps since the previous record.
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    /// Learning rate at this step.
    #[serde(deserialize_with = "f64_or_nan")]
    pub lr: f64,
    /// Training throughput since the previous record.
    #[serde(deserialize_with = "f64_or_nan")]
    pub samples_per_sec: f64,
    /// Seconds since the run (or the resumed run) started.
    #[serde(deserialize_with = "f64_or_nan")]
    pub elapsed_s: f64,
}

/// An evaluation at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimizer steps taken when the evaluation ran.
    pub step: u64,
    /// Epoch the step belongs to.
    pub epoch: u64,
    /// Metric values.
    #[serde(deserialize_with = "metrics_or_nan")]
    pub metrics: Metrics,
}

fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn metrics_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
    let m = std::collections::BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// Appends [`MetricRecord`]s to a `metrics.jsonl`, one JSON object per line.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, creating it when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening metrics log {}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Appends one record. The line goes out in a single write, so a crash leaves at most a torn last line,
    /// which [`truncate_metrics_after`] drops.
    pub fn append(&mut self, record: &MetricRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).context("serialising a metrics record")?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).with_context(|| format!("appending to {}", self.path.display()))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a `metrics.jsonl`; blank lines are skipped and a malformed line is an error naming the
/// file and line number.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRecord>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading metrics log {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a metrics record", path.display(), i + 1))?;
        out.push(rec);
    }
    Ok(out)
}

/// Drops every record of `path` whose step is past `step`, rewriting the file atomically, so that a run resumed
/// from the checkpoint of `step` logs the same records as an uninterrupted run. A torn last line (no newline,
/// not parseable: a crash mid-write) is dropped too; any other bad line is an error. Returns how many records
/// were dropped. A missing file is left missing.
///
/// Call it before opening the log with [`MetricsLog::open`]: the rewrite replaces the file, and a handle opened
/// earlier would keep appending to the replaced one.
pub fn truncate_metrics_after(path: &Path, step: u64) -> Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading metrics log {}", path.display()))?;
    let n_lines = text.lines().count();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let mut kept = String::new();
    let mut dropped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: MetricRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if torn_tail && i + 1 == n_lines => {
                dropped += 1;
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("{} line {}: not a metrics record", path.display(), i + 1))
            }
        };
        if rec.step() <= step {
            // Kept verbatim, so fields this version does not know survive the rewrite.
            kept.push_str(line);
            kept.push('\n');
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 || torn_tail {
        atomic_write(path, kept.as_bytes())?;
    }
    Ok(dropped)
}

/// A run folder `runs/<name>/` and the paths inside it.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates (`fresh`) or reopens (`!fresh`, to resume) the run folder `root`, making `checkpoints/`.
    ///
    /// A fresh run refuses a folder that exists and is not empty, so an earlier run is never overwritten; a
    /// resumed run requires the folder to exist, and repairs checkpoint folders left mid-replace by a crash.
    ///
    /// In a data-parallel job rank 0 creates (or repairs) the folder while the other ranks wait, then they open it
    /// as it is: they read checkpoints from it but never write.
    pub fn create(root: &Path, fresh: bool) -> Result<Self> {
        let Some(group) = crate::dist::group() else { return Self::create_here(root, fresh) };
        if group.is_main() {
            let run = Self::create_here(root, fresh)?;
            group.barrier().context("waiting for the other ranks after creating the run folder")?;
            return Ok(run);
        }
        group.barrier().context("waiting for rank 0 to create the run folder")?;
        if !root.is_dir() {
            bail!(
                "rank {}: the run folder {} that rank 0 created is not visible here: data-parallel ranks on several \
                 machines need --out on a shared file system",
                group.rank(),
                root.display()
            );
        }
        Ok(Self { root: root.to_path_buf() })
    }

    fn create_here(root: &Path, fresh: bool) -> Result<Self> {
        if root.exists() && !root.is_dir() {
            bail!("run folder {} exists and is not a folder; choose another --out", root.display());
        }
        if fresh {
            if root.exists() {
                let mut entries = fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "run folder {} already exists and is not empty: pass --resume to continue that run, or \
                         choose another --out",
                        root.display()
                    );
                }
            }
            fs::create_dir_all(root).with_context(|| format!("creating run folder {}", root.display()))?;
        } else if !root.is_dir() {
            bail!("cannot resume: there is no run folder {} (start a fresh run without --resume)", root.display());
        }
        let run = Self { root: root.to_path_buf() };
        let ckpts = run.checkpoints_dir();
        fs::create_dir_all(&ckpts).with_context(|| format!("creating {}", ckpts.display()))?;
        if !fresh {
            run.recover()?;
        }
        Ok(run)
    }

    /// Repairs interrupted folder replaces of `best/`, `final/` and every checkpoint.
    fn recover(&self) -> Result<()> {
        let mut finals = vec![self.best_dir(), self.final_dir()];
        for entry in fs::read_dir(self.checkpoints_dir())? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            // Hidden siblings are named `.<final>.replaced` / `.<final>.partial`; recover via the final name.
            if let Some(base) = name.strip_prefix('.') {
                if let Some(final_name) = base.strip_suffix(".replaced").or_else(|| base.strip_suffix(".partial")) {
                    finals.push(self.checkpoints_dir().join(final_name));
                }
            }
        }
        for f in finals {
            recover_replaced_dir(&f)?;
        }
        Ok(())
    }

    /// The run folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`, the resolved config.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `metrics.jsonl`, the metrics log.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `checkpoints/`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `checkpoints/step-NNNNNNNN/`, the checkpoint after `step` optimizer steps.
    pub fn checkpoint_dir(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("step-{step:08}"))
    }

    /// The checkpoints present, as (step, folder), in increasing step order; staging and hidden folders are
    /// skipped.
    pub fn checkpoints(&self) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.checkpoints_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(step) = name.to_str().and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse().ok()) else {
                continue;
            };
            if entry.path().is_dir() {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The checkpoint with the highest step, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        Ok(self.checkpoints()?.pop())
    }

    /// `best/`, the model with the best evaluation metric.
    pub fn best_dir(&self) -> PathBuf {
        self.root.join("best")
    }

    /// `final/`, the model at the end of training.
    pub fn final_dir(&self) -> PathBuf {
        self.root.join("final")
    }

    /// `curves.png`, the loss and metric curves.
    pub fn curves_path(&self) -> PathBuf {
        self.root.join("curves.png")
    }

    /// Writes the resolved config as TOML to `config.toml`, atomically.
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<()> {
        let text = toml::to_string_pretty(config).context("serialising the resolved config as TOML")?;
        atomic_write(&self.config_path(), text.as_bytes())
            .with_context(|| format!("writing {}", self.config_path().display()))
    }

    /// Opens `metrics.jsonl` for appending.
    pub fn metrics_log(&self) -> Result<MetricsLog> {
        MetricsLog::open(&self.metrics_path())
    }

    /// Reads `metrics.jsonl` (empty when it does not exist yet).
    pub fn read_metrics(&self) -> Result<Vec<MetricRecord>> {
        let p = self.metrics_path();
        if p.exists() {
            read_metrics(&p)
        } else {
            Ok(Vec::new())
        }
    }

    /// [`truncate_metrics_after`] on this run's log; call it on resume before [`Self::metrics_log`].
    pub fn truncate_metrics_after(&self, step: u64) -> Result<usize> {
        truncate_metrics_after(&self.metrics_path(), step)
    }

    /// Renders `curves.png` from `metrics.jsonl`.
    pub fn plot_curves(&self) -> Result<()> {
        plot_curves(&self.read_metrics()?, &self.curves_path())
    }
}

/// A two-column plain-text table for the end-of-run summary: names left-aligned and padded to the longest,
/// values after two spaces; each row ends with a newline.
pub fn summary_table(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let pad = width - k.chars().count();
        let line = format!("{k}{}  {v}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
