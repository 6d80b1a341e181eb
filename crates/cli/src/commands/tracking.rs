//! Experiment tracking of `suite finetune`: the observers ([`FitObserver`]) that follow a run as it trains, as
//! `--report-to` asks (TensorBoard event files by default, an MLflow tracking server on request).

use anyhow::{bail, Result};
use suite_core::tracking::{MlflowObserver, MlflowSettings, TensorBoardObserver};
use suite_core::train::FitObserver;

use crate::args::{FinetuneArgs, ReportTo};
use crate::job::JobFile;

/// Model files bigger than this many MB are not uploaded to MLflow unless `SUITE_MLFLOW_MAX_ARTIFACT_MB` says
/// otherwise: a tracking server is no place for a multi-gigabyte checkpoint the run folder already holds.
const DEFAULT_MAX_ARTIFACT_MB: f64 = 200.0;

/// Refuses a `--report-to` that cannot work, before any work: `none` with a tracker, or `mlflow` without
/// `MLFLOW_TRACKING_URI`.
pub fn check(args: &FinetuneArgs) -> Result<()> {
    let r = &args.report_to;
    if r.contains(&ReportTo::None) && r.len() > 1 {
        bail!("--report-to none cannot be combined with a tracker");
    }
    if r.contains(&ReportTo::Mlflow) {
        match std::env::var("MLFLOW_TRACKING_URI") {
            Ok(u) if !u.trim().is_empty() => {
                suite_core::tracking::MlflowClient::new(u.trim())?;
            }
            _ => bail!(
                "--report-to mlflow: set MLFLOW_TRACKING_URI to the tracking server's URL (e.g. http://127.0.0.1:5000)"
            ),
        }
        max_artifact_bytes()?;
    }
    Ok(())
}

/// The trackers the command line asks for, following the run of `job`.
pub fn observers(args: &FinetuneArgs, job: &JobFile) -> Result<Vec<Box<dyn FitObserver>>> {
    check(args)?;
    let mut out: Vec<Box<dyn FitObserver>> = Vec::new();
    if args.report_to.contains(&ReportTo::Tensorboard) {
        out.push(Box::new(TensorBoardObserver::new()));
    }
    if args.report_to.contains(&ReportTo::Mlflow) {
        let settings = MlflowSettings {
            tracking_uri: std::env::var("MLFLOW_TRACKING_URI").unwrap_or_default().trim().to_string(),
            experiment: std::env::var("MLFLOW_EXPERIMENT_NAME")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "suite".into()),
            params: params(args, job)?,
            max_artifact_bytes: max_artifact_bytes()?,
        };
        out.push(Box::new(MlflowObserver::new(settings)?));
    }
    Ok(out)
}

/// `SUITE_MLFLOW_MAX_ARTIFACT_MB` (default [`DEFAULT_MAX_ARTIFACT_MB`]) in bytes.
fn max_artifact_bytes() -> Result<u64> {
    let mb = match std::env::var("SUITE_MLFLOW_MAX_ARTIFACT_MB") {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(mb) if mb >= 0.0 && mb.is_finite() => mb,
            _ => bail!("SUITE_MLFLOW_MAX_ARTIFACT_MB={v}: expected a size in MB (e.g. 500)"),
        },
        Err(_) => DEFAULT_MAX_ARTIFACT_MB,
    };
    Ok((mb * 1e6) as u64)
}

/// The run's parameters for MLflow: the domain, the model, and the recipe flattened to dotted keys (`train.lr`,
/// `peft.method`, `vision.input_size`…; `task.name` when the recipe has one).
fn params(args: &FinetuneArgs, job: &JobFile) -> Result<Vec<(String, String)>> {
    let domain = format!("{:?}", args.domain).to_lowercase();
    let mut out = vec![("domain".to_string(), domain.clone())];
    let model = match (&job.vision, &job.text, &job.speech) {
        (Some(v), _, _) => Some(v.model.clone()),
        (_, Some(t), _) => Some(t.model.clone()),
        (_, _, Some(s)) => Some(s.model.clone()),
        _ => None,
    };
    out.extend(model.map(|m| ("model".to_string(), m)));
    if let Some(name) = &job.task.name {
        out.push(("task.name".into(), name.clone()));
    }
    let table = toml::Table::try_from(job)?;
    for key in [domain.as_str(), "train", "peft"] {
        if let Some(v) = table.get(key) {
            flatten(key, v, &mut out);
        }
    }
    Ok(out)
}

/// `value` as `(dotted.key, text)` pairs: tables are walked, everything else (arrays included) is one value.
fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
