//! `suite inspect vision|text|speech`: each domain's inspection (in its crate) fills a
//! [`suite_core::quality::report::Report`]; this command writes it and prints its summary.

mod speech;
mod text;
mod vision;

use std::path::PathBuf;

use anyhow::Result;

use crate::args::{Domain, InspectArgs};

/// Entry point.
pub fn run(args: InspectArgs) -> Result<()> {
    let mut report = match args.domain {
        Domain::Vision => vision::inspect(&args)?,
        Domain::Text => text::inspect(&args)?,
        Domain::Speech => speech::inspect(&args)?,
    };
    report.finish();
    let out = args.out.clone().unwrap_or_else(|| default_out(args.domain));
    let (json, html) = report.write(&out)?;
    if args.json {
        print!("{}", std::fs::read_to_string(&json)?);
    } else {
        print!("{}", report.summary());
        println!("\nreport: {} and {}", html.display(), json.display());
    }
    Ok(())
}

/// `reports/inspect-<domain>-<unix seconds>` (as `suite finetune` names its default run folders).
fn default_out(domain: Domain) -> PathBuf {
    let name = match domain {
        Domain::Vision => "vision",
        Domain::Text => "text",
        Domain::Speech => "speech",
    };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    PathBuf::from("reports").join(format!("inspect-{name}-{stamp}"))
}

/// The splits given on the command line, as (name, path), train first.
pub(crate) fn splits(args: &InspectArgs) -> Vec<(String, PathBuf)> {
    let mut s = vec![("train".to_string(), args.data.clone())];
    if let Some(v) = &args.val_data {
        s.push(("val".into(), v.clone()));
    }
    if let Some(t) = &args.test_data {
        s.push(("test".into(), t.clone()));
    }
    s
}

/// Refuses the first flag of `flags` (name, given) that was given: options of another domain would otherwise be
/// silently ignored. `why` says how this domain reads its data.
pub(crate) fn refuse_foreign(domain: &str, flags: &[(&str, bool)], why: &str) -> Result<()> {
    match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => anyhow::bail!("{flag} is not used by suite inspect {domain} ({why})"),
        None => Ok(()),
    }
}
