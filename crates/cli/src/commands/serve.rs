//! `suite serve`: the command line of the inference server in `suite-serve`.

use std::time::Duration;

use anyhow::{bail, Result};
use suite_serve::worker::BatchConfig;
use suite_serve::{ModelSpec, ServeConfig};

use crate::args::ServeArgs;

/// Entry point.
pub fn run(args: ServeArgs) -> Result<()> {
    if args.which != "best" && args.which != "final" {
        bail!("--which {:?}: expected best or final", args.which);
    }
    let mut models = Vec::new();
    for r in &args.runs {
        models.push(ModelSpec::from_run_arg(r, &args.which)?);
    }
    for m in &args.models {
        models.push(ModelSpec::from_model_arg(m)?);
    }
    let api_key = match (&args.api_key_file, std::env::var("SUITE_API_KEY")) {
        (Some(f), _) => Some(suite_serve::config::read_api_key(f)?),
        (None, Ok(k)) if !k.trim().is_empty() => Some(k.trim().to_string()),
        _ => None,
    };
    if !(args.max_body_mb.is_finite() && args.max_body_mb > 0.0) {
        bail!("--max-body-mb {}: expected a positive size", args.max_body_mb);
    }
    suite_serve::serve(ServeConfig {
        models,
        host: args.host,
        port: args.port,
        batch: BatchConfig {
            max_batch: args.max_batch,
            max_wait: Duration::from_millis(args.max_wait_ms),
            max_queue: args.max_queue,
        },
        max_body_bytes: (args.max_body_mb * 1024.0 * 1024.0) as usize,
        api_key,
        device: args.device,
        threads: args.threads,
        beam_size: args.beam,
        drain: Duration::from_secs(args.drain_s),
        int8: args.precision == crate::args::InferPrecision::Int8,
    })
}
