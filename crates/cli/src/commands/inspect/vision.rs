//! `suite inspect vision`: the arguments handed to [`suite_vision::inspect`].

use anyhow::Result;
use suite_core::device::parse_device;
use suite_core::quality::report::Report;
use suite_vision::inspect::InspectOptions;

use crate::args::InspectArgs;

/// Inspects vision data.
pub fn inspect(args: &InspectArgs) -> Result<Report> {
    // Options of the other domains would be silently ignored here: refuse them, naming the flag.
    let foreign = [
        ("--config", args.config.is_some()),
        ("--model", args.model.is_some()),
        ("--task", args.task.is_some()),
        ("--max-len", args.max_len.is_some()),
        ("--text-column", args.text_column.is_some()),
        ("--pair-column", args.pair_column.is_some()),
        ("--label-column", args.label_column.is_some()),
        ("--multi-label", args.multi_label),
        ("--language", args.language.is_some()),
    ];
    super::refuse_foreign(
        "vision",
        &foreign,
        "images are read as suite finetune vision reads them; --run gives the model",
    )?;
    let opts = InspectOptions {
        near_distance: args.near_distance,
        run: args.run.clone(),
        which: args.which.clone(),
        folds: args.folds,
        device: parse_device(&args.device)?,
        ..InspectOptions::new(super::splits(args))
    };
    suite_vision::inspect::inspect(&opts)
}
