//! `suite explain vision`.

use anyhow::Result;

use crate::args::explain::ExplainVisionArgs;

/// Entry point.
pub fn run(_args: ExplainVisionArgs) -> Result<()> {
    anyhow::bail!("suite explain vision is being built")
}
