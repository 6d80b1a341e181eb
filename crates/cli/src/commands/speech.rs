//! The speech job (Whisper fine-tuning), `suite transcribe`, and speech evaluation from a run folder.

use std::path::PathBuf;

use anyhow::Result;

use super::not_yet;
use crate::args::{Domain, TranscribeArgs};
use crate::job::JobFile;

/// Trains the job into `out` (a new run, or an existing one with `resume`).
pub fn finetune(_job: JobFile, _out: PathBuf, _resume: bool) -> Result<()> {
    Err(not_yet(Domain::Speech))
}

/// `suite transcribe`.
pub fn transcribe(_args: TranscribeArgs) -> Result<()> {
    Err(not_yet(Domain::Speech))
}
