//! One module per subcommand.

mod bench;
mod chat;
mod data;
mod dist_check;
mod eval;
mod explain;
mod export;
mod finetune;
mod generate;
mod inspect;
mod predict;
mod report;
mod serve;
mod speech;
mod text;
mod tracking;
mod tune;
mod vision;

use anyhow::Result;

use crate::args::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Finetune(a) => finetune::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Export(a) => export::run(a),
        Command::Data(a) => data::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Transcribe(a) => speech::transcribe(a),
        Command::Serve(a) => serve::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Chat(a) => chat::run(a),
        Command::DistCheck(a) => dist_check::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Tune(a) => tune::run(*a),
    }
}
