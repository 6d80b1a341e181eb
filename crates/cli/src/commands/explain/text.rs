//! `suite explain text`.

use anyhow::Result;

use crate::args::explain::ExplainTextArgs;

/// Entry point.
pub fn run(_args: ExplainTextArgs) -> Result<()> {
    anyhow::bail!("suite explain text is being built")
}
