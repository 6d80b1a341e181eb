use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::early_stop::BestTracker;

/// Where the loop stood when a checkpoint was taken (`trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch to continue in.
    pub epoch: usize,
    /// Next batch of that epoch (batches before it are done).
    pub batch_in_epoch: usize,
    /// Examples trained on so far.
    pub samples_seen: u64,
    /// Best-model and early-stopping state.
    pub best: BestTracker,
    /// Whether training had finished.
    pub finished: bool,
    /// Data-parallel processes that trained the run (1 for a single process; absent in older checkpoints).
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

/// One checkpoint folder `checkpoints/step-NNNNNNNN/`: `model.safetensors` (every tensor of the model's
/// VarStore), `optimizer.safetensors` and `trainer_state.json`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The folder.
    pub dir: PathBuf,
}

const MODEL: &str = "model.safetensors";
const OPTIM: &str = "optimizer.safetensors";
const STATE: &str = "trainer_state.json";

impl Checkpoint {
    /// Name of the folder of the checkpoint at `step`.
    pub fn folder_name(step: usize) -> String {
        format!("step-{step:08}")
    }

    /// Writes a checkpoint into `staging` (an empty folder; the caller renames it into place when complete).
    ///
    /// Each file is flushed to disk before the caller's rename, so a checkpoint in place is whole even after a
    /// power cut, and a failed write (a full disk) names the file and the system's reason.
    pub fn write(staging: &Path, vs: &VarStore, optimizer: Vec<(String, Tensor)>, state: &TrainerState) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let vars: Vec<(String, Tensor)> =
            vars.into_iter().map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu))).collect();
        crate::weights::save_safetensors(&staging.join(MODEL), &vars, None)?;
        let optimizer: Vec<(String, Tensor)> =
            optimizer.into_iter().map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu))).collect();
        if !optimizer.is_empty() {
            crate::weights::save_safetensors(&staging.join(OPTIM), &optimizer, None)?;
        }
        let path = staging.join(STATE);
        crate::runs::atomic_write(&path, &serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The saved loop state.
    pub fn state(&self) -> Result<TrainerState> {
        let path = self.dir.join(STATE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a trainer state", path.display()))
    }

    /// Copies the saved tensors into `vs`; every variable must be present with its shape.
    pub fn load_model(&self, vs: &VarStore) -> Result<()> {
        let path = self.dir.join(MODEL);
        let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .into_iter()
            .collect();
        let vars = vs.variables();
        let mut missing = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                match saved.get(name) {
                    Some(t) if t.size() == var.size() => {
                        var.shallow_clone().f_copy_(t)?;
                    }
                    Some(t) => bail!("{}: {name} has shape {:?}, the model {:?}", path.display(), t.size(), var.size()),
                    None => missing.push(name.clone()),
                }
            }
            Ok(())
        })?;
        if !missing.is_empty() {
            missing.sort();
            bail!(
                "{} lacks {} tensor(s) of this model, e.g. {:?}: it was saved for another model or configuration",
                path.display(),
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        Ok(())
    }

    /// The saved optimizer tensors (empty when the optimizer had no state yet).
    pub fn optimizer_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let path = self.dir.join(OPTIM);
        if !path.exists() {
            return Ok(Vec::new());
        }
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// All complete checkpoints under `dir`, oldest first (a folder counts once its trainer state is written).
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(usize, Checkpoint)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<usize>().ok()) {
            if entry.path().join(STATE).exists() {
                out.push((step, Checkpoint { dir: entry.path() }));
            }
        }
    }
    out.sort_by_key(|(s, _)| *s);
    Ok(out)
}

/// The newest complete checkpoint under `dir`.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<Checkpoint>> {
    Ok(list_checkpoints(dir)?.pop().map(|(_, c)| c))
}
