//! The study journal `OUT/study.jsonl`: one JSON record per line, appended under an exclusive file lock (flock) by
//! the study and by its trials' ASHA observers.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Settings a study keeps for its whole life: a resumed study must be given the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub domain: String,
    pub seed: u64,
    pub sampler: String,
    pub startup_trials: usize,
    pub objective: String,
    /// `max` or `min`.
    pub direction: String,
    pub min_resource: usize,
    pub reduction_factor: usize,
    /// The search space, as TOML.
    pub space: String,
    /// The base recipe every trial starts from, as TOML.
    pub recipe: String,
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Complete,
    Pruned,
    /// Stopped because the study's `--budget` ran out while it trained (ranked by its evaluations so far).
    Stopped,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Pruned => "pruned",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// The study's settings (first line).
    Study(Settings),
    /// A trial proposed: its number, the seed its proposal drew from, its parameters, and the seconds of the
    /// study's `--budget` spent when it started, over every session of the study (absent in journals written
    /// before the budget was carried over).
    Propose {
        trial: u64,
        seed: u64,
        params: BTreeMap<String, toml::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spent: Option<f64>,
    },
    /// A trial's value at a rung and ASHA's decision, with the seconds since the trial (or its resumption)
    /// started.
    Rung {
        trial: u64,
        rung: usize,
        evals: usize,
        step: usize,
        value: Option<f64>,
        promoted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
    },
    /// The study's `--budget` ran out while trials trained.
    #[serde(rename = "budget_spent")]
    BudgetSpent { spent: f64 },
    /// A trial stopped (killed) because the budget ran out; its evaluations so far count.
    #[serde(rename = "budget_stop")]
    BudgetStop { trial: u64 },
    /// A trial's end, with the study's budget seconds spent at that moment (as in `Propose`).
    End {
        trial: u64,
        status: Status,
        objective: Option<f64>,
        evals: usize,
        seconds: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spent: Option<f64>,
    },
}

/// The seconds of the study's budget its earlier sessions spent: the latest `spent` of any record. A session killed
/// mid-trial loses the time since its last proposal or end, which the resumed trial spends again.
pub fn budget_spent(records: &[Record]) -> f64 {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Propose { spent, .. } | Record::End { spent, .. } => *spent,
            _ => None,
        })
        .fold(0.0, f64::max)
}

/// The median seconds the trials took to their first rung (their first evaluation at the default
/// `--min-resource 1`): what a new trial needs before it can report anything.
pub fn seconds_to_first_rung(records: &[Record]) -> Option<f64> {
    let mut v: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Rung { rung: 0, seconds, .. } => *seconds,
            _ => None,
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(study: &Path) -> Self {
        Self { path: study.join("study.jsonl") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the records while holding the lock; the records it returns are appended before the lock goes.
    pub fn transact<T>(&self, f: impl FnOnce(&[Record]) -> Result<(T, Vec<Record>)>) -> Result<T> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("opening the study journal {}", self.path.display()))?;
        let _lock = Lock::exclusive(&file).with_context(|| format!("locking {}", self.path.display()))?;
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text).with_context(|| format!("reading {}", self.path.display()))?;
        let records = parse(&text);
        let (out, new) = f(&records)?;
        if !new.is_empty() {
            let mut buf = String::new();
            // A line torn by a killed writer is ended first, so the new record starts on its own line.
            if !text.is_empty() && !text.ends_with('\n') {
                buf.push('\n');
            }
            for r in &new {
                buf.push_str(&serde_json::to_string(r)?);
                buf.push('\n');
            }
            file.write_all(buf.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
            file.sync_data().ok();
        }
        Ok(out)
    }

    /// Every readable record.
    pub fn read(&self) -> Result<Vec<Record>> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        self.transact(|r| Ok((r.to_vec(), Vec::new())))
    }

    /// Appends records.
    pub fn append(&self, records: Vec<Record>) -> Result<()> {
        self.transact(|_| Ok(((), records)))
    }
}

/// The records of a journal's text; a line that does not parse (torn by a kill) is skipped.
fn parse(text: &str) -> Vec<Record> {
    text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// An flock held until dropped (the file must outlive it).
struct Lock(std::os::fd::RawFd);

impl Lock {
    fn exclusive(f: &File) -> std::io::Result<Self> {
        loop {
            // SAFETY: flock on a file descriptor this File owns for the lifetime of the lock.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(Self(f.as_raw_fd()));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is still open: the lock is dropped before its file.
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        let mut params = BTreeMap::new();
        params.insert("train.lr".to_string(), toml::Value::Float(1e-3));
        params.insert("train.epochs".to_string(), toml::Value::Integer(3));
        params.insert("vision.tune".to_string(), toml::Value::from("full"));
        let recs = vec![
            Record::Propose { trial: 0, seed: 1, params, spent: Some(0.25) },
            Record::Rung { trial: 0, rung: 0, evals: 1, step: 4, value: Some(0.5), promoted: true, seconds: Some(2.0) },
            Record::End { trial: 0, status: Status::Pruned, objective: None, evals: 1, seconds: 1.5, spent: None },
        ];
        j.append(recs[..2].to_vec()).unwrap();
        // A writer killed mid-line.
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"kind\":\"end\",\"tri").unwrap();
        j.append(recs[2..].to_vec()).unwrap();
        assert_eq!(j.read().unwrap(), recs);
    }
}
