//! `suite explain speech`.

use anyhow::Result;

use crate::args::explain::ExplainSpeechArgs;

/// Entry point.
pub fn run(_args: ExplainSpeechArgs) -> Result<()> {
    anyhow::bail!("suite explain speech is being built")
}
