//! `suite explain vision|text|speech`: each domain's explanation lives in its crate and returns `Serialize`
//! structs; this command writes the files and prints a summary.

mod speech;
mod text;
mod vision;

use anyhow::Result;

use crate::args::explain::{ExplainArgs, ExplainCommand};

/// Entry point.
pub fn run(args: ExplainArgs) -> Result<()> {
    match args.what {
        ExplainCommand::Vision(a) => vision::run(a),
        ExplainCommand::Text(a) => text::run(a),
        ExplainCommand::Speech(a) => speech::run(a),
    }
}
