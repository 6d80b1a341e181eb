//! Which saved model of a run folder to load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The best (`which = "best"`) or final (`"final"`) model folder of the run folder `run`: a folder holding a
/// `model.safetensors` or a PEFT `adapter.safetensors`. Errors name the `--which` value or the missing folder.
pub fn model_dir(run: &Path, which: &str) -> Result<PathBuf> {
    let dir = match which {
        "best" => run.join("best"),
        "final" => run.join("final"),
        _ => bail!("--which {which:?}: expected best or final"),
    };
    if !dir.join("model.safetensors").exists() && !dir.join("adapter.safetensors").exists() {
        bail!("{}: no saved model (has the run finished an evaluation?)", dir.display());
    }
    Ok(dir)
}
