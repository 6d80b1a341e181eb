//! Experiment tracking of `suite finetune`: the observers ([`FitObserver`]) that follow a run as it trains.

use anyhow::Result;
use suite_core::train::FitObserver;

use crate::args::FinetuneArgs;

/// The trackers the command line asks for.
pub fn observers(_args: &FinetuneArgs) -> Result<Vec<Box<dyn FitObserver>>> {
    Ok(Vec::new())
}
