//! Runs on an MLflow tracking server, over its REST API (`/api/2.0/mlflow/…`): one MLflow run per suite run
//! (named after the run folder), its parameters, every metric record, the model folder as artifacts (through the
//! server's artifact proxy, `/api/2.0/mlflow-artifacts/…`) and its final status.
//!
//! The server is a guest of the run: the first failure (unreachable, an error answer) is reported once on stderr
//! with the URL and the reason, and the run trains on without tracking.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{now_s, scalars};
use crate::runs::{MetricRecord, RunDir};
use crate::train::{FitObserver, FitSummary, TrainConfig};

/// The most `log-batch` accepts in one request (MLflow's limits: 100 params, 1000 metrics).
const MAX_PARAMS_PER_BATCH: usize = 100;
/// MLflow's longest parameter value (`MAX_PARAM_VAL_LENGTH`).
const MAX_PARAM_LEN: usize = 6000;

/// A blocking client of one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    agent: ureq::Agent,
}

impl MlflowClient {
    /// A client of the server at `uri` (`http://host:port`, as `MLFLOW_TRACKING_URI`).
    pub fn new(uri: &str) -> Result<Self> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("MLFLOW_TRACKING_URI={uri}: suite logs to a tracking server, so it takes an http:// or https:// URL");
        }
        // Short connect timeout: a server that is not there must not hold the run up.
        let agent =
            ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(Duration::from_secs(120)).build();
        Ok(Self { base, agent })
    }

    /// The server's URL.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn call(&self, method: &str, endpoint: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let req = self.agent.request(method, &url);
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        answer(res).with_context(|| format!("{method} {url}"))
    }

    /// The id of the experiment named `name`, created when missing.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        match self.agent.get(&url).query("experiment_name", name).call() {
            Ok(r) => {
                let v: Value = r.into_json().context("reading the experiment")?;
                return field(&v, &["experiment", "experiment_id"]);
            }
            Err(ureq::Error::Status(404, _)) => {}
            Err(e) => return answer(Err(e)).with_context(|| format!("GET {url}")).map(|_| String::new()),
        }
        let v = self.call("POST", "experiments/create", Some(json!({ "name": name })))?;
        field(&v, &["experiment_id"])
    }

    /// Starts a run named `name` in `experiment_id`; its id and artifact URI.
    pub fn create_run(&self, experiment_id: &str, name: &str, tags: &[(String, String)]) -> Result<(String, String)> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": name,
            "start_time": millis(now_s()),
            "tags": tags,
        });
        let v = self.call("POST", "runs/create", Some(body))?;
        Ok((field(&v, &["run", "info", "run_id"])?, field(&v, &["run", "info", "artifact_uri"])?))
    }

    /// Logs parameters (in batches of MLflow's limit; values cut to its longest) to `run_id`.
    pub fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<()> {
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            let params: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({ "key": k, "value": v.chars().take(MAX_PARAM_LEN).collect::<String>() }))
                .collect();
            self.call("POST", "runs/log-batch", Some(json!({ "run_id": run_id, "params": params })))?;
        }
        Ok(())
    }

    /// Logs `(key, value)` metrics at `step`. JSON has no NaN, so non-finite values are left out.
    pub fn log_metrics(&self, run_id: &str, step: u64, metrics: &[(String, f64)]) -> Result<()> {
        let timestamp = millis(now_s());
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": timestamp, "step": step }))
            .collect();
        if metrics.is_empty() {
            return Ok(());
        }
        self.call("POST", "runs/log-batch", Some(json!({ "run_id": run_id, "metrics": metrics })))?;
        Ok(())
    }

    /// Sets a tag on `run_id`.
    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        self.call("POST", "runs/set-tag", Some(json!({ "run_id": run_id, "key": key, "value": value })))?;
        Ok(())
    }

    /// Ends (`FINISHED`, `FAILED`, `KILLED`) or reopens (`RUNNING`) `run_id`.
    pub fn set_status(&self, run_id: &str, status: &str) -> Result<()> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if status != "RUNNING" {
            body["end_time"] = json!(millis(now_s()));
        }
        self.call("POST", "runs/update", Some(body))?;
        Ok(())
    }

    /// Uploads `file` as the artifact `artifact_path` of the run whose artifact URI is `artifact_uri`, through the
    /// server's artifact proxy. Only `mlflow-artifacts:` URIs (a server started with artifact serving, the default)
    /// go through it; others are refused with the reason.
    pub fn upload_artifact(&self, artifact_uri: &str, artifact_path: &str, file: &Path) -> Result<()> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            bail!(
                "the server stores artifacts at {artifact_uri} without serving them (start it with --serve-artifacts)"
            );
        };
        // `mlflow-artifacts:/1/<run>/artifacts` or `mlflow-artifacts://host:port/1/<run>/artifacts`.
        let path = match rest.strip_prefix("//") {
            Some(r) => r.find('/').map_or("", |i| &r[i..]),
            None => rest,
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            self.base,
            encode_path(path.trim_matches('/')),
            encode_path(artifact_path)
        );
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        answer(self.agent.put(&url).send_bytes(&bytes)).with_context(|| format!("PUT {url}"))?;
        Ok(())
    }
}

/// The JSON body of a success, or the server's own error message.
fn answer(res: std::result::Result<ureq::Response, ureq::Error>) -> Result<Value> {
    match res {
        Ok(r) => {
            let text = r.into_string().context("reading the answer")?;
            Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) })
        }
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(300).collect());
            Err(anyhow!("HTTP {code}: {msg}"))
        }
        Err(ureq::Error::Transport(t)) => Err(anyhow!("{t}")),
    }
}

fn field(v: &Value, path: &[&str]) -> Result<String> {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_str().map(str::to_string).ok_or_else(|| anyhow!("the answer has no {}: {v}", path.join(".")))
}

fn millis(secs: f64) -> i64 {
    (secs * 1000.0) as i64
}

/// Percent-encodes a slash-separated path for a URL (slashes kept).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an [`MlflowObserver`] logs to, and what it logs besides the records.
#[derive(Debug, Clone)]
pub struct MlflowSettings {
    /// The tracking server (`MLFLOW_TRACKING_URI`).
    pub tracking_uri: String,
    /// The experiment (`MLFLOW_EXPERIMENT_NAME`; created when missing).
    pub experiment: String,
    /// Parameters of the run (the flattened recipe), logged when it starts.
    pub params: Vec<(String, String)>,
    /// Model files larger than this are not uploaded (their names are listed in the tag `suite.skipped_artifacts`).
    pub max_artifact_bytes: u64,
}

/// Where a run folder's MLflow run is, so that a resumed run logs into the same MLflow run.
const STATE_FILE: &str = "mlflow_run.json";

/// Follows a run on an MLflow tracking server: creates the run at the start (or reopens the one of a resumed run
/// folder), logs every record as metrics (the tags of [`scalars`]), uploads the model folder (`best/`, else
/// `final/`) at the end and marks the run `FINISHED`. A run that fails is marked `FAILED` when the observer is
/// dropped without having seen the end.
#[derive(Debug)]
pub struct MlflowObserver {
    settings: MlflowSettings,
    client: MlflowClient,
    /// The MLflow run: its id and artifact URI, while tracking works.
    run: Option<(String, String)>,
    ended: bool,
    failed: bool,
}

impl MlflowObserver {
    /// An observer of `settings` (nothing is sent before the run starts).
    pub fn new(settings: MlflowSettings) -> Result<Self> {
        let client = MlflowClient::new(&settings.tracking_uri)?;
        Ok(Self { settings, client, run: None, ended: false, failed: false })
    }

    /// Reports the first failure (with the server's URL and the reason) and stops tracking.
    fn fail(&mut self, e: anyhow::Error) {
        if !self.failed {
            eprintln!(
                "warning: mlflow: tracking server {}: {e:#}; training goes on without MLflow tracking",
                self.client.uri()
            );
        }
        self.failed = true;
        self.run = None;
    }

    /// Creates the MLflow run of `run` (or reopens the one its folder names, on resume) and logs its params.
    fn start(&mut self, run: &RunDir) -> Result<(String, String)> {
        let state = run.root().join(STATE_FILE);
        if let Some((id, uri)) = self.previous_run(&state) {
            self.client.set_status(&id, "RUNNING")?;
            return Ok((id, uri));
        }
        let experiment = self.client.experiment_id(&self.settings.experiment)?;
        let root = std::path::absolute(run.root()).unwrap_or_else(|_| run.root().to_path_buf());
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        let tags = [
            ("mlflow.source.name".to_string(), "suite".to_string()),
            ("suite.run_dir".to_string(), root.display().to_string()),
        ];
        let (id, uri) = self.client.create_run(&experiment, &name, &tags)?;
        let saved = json!({ "tracking_uri": self.client.uri(), "run_id": id, "artifact_uri": uri });
        crate::runs::atomic_write(&state, saved.to_string().as_bytes())?;
        self.client.log_params(&id, &self.settings.params)?;
        Ok((id, uri))
    }

    /// The MLflow run an earlier start of this run folder created on the same server, if any.
    fn previous_run(&self, state: &Path) -> Option<(String, String)> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(state).ok()?).ok()?;
        (v["tracking_uri"].as_str()? == self.client.uri())
            .then(|| Some((v["run_id"].as_str()?.to_string(), v["artifact_uri"].as_str()?.to_string())))?
    }

    /// Uploads the model folder, skipping files over the size cap (named in a tag).
    fn upload_model(&self, run_id: &str, artifact_uri: &str, dir: &Path) -> Result<()> {
        let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let mut skipped = Vec::new();
        for (rel, file) in files_under(dir)? {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let name = format!("{folder}/{rel}");
            if size > self.settings.max_artifact_bytes {
                eprintln!(
                    "mlflow: not uploading {name} ({:.1} MB, over the {:.1} MB cap of SUITE_MLFLOW_MAX_ARTIFACT_MB)",
                    size as f64 / 1e6,
                    self.settings.max_artifact_bytes as f64 / 1e6
                );
                skipped.push(name);
                continue;
            }
            self.client.upload_artifact(artifact_uri, &name, &file)?;
        }
        if !skipped.is_empty() {
            self.client.set_tag(run_id, "suite.skipped_artifacts", &skipped.join(","))?;
        }
        Ok(())
    }
}

/// Every file under `dir` as (path relative to `dir` with `/`, path), sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl FitObserver for MlflowObserver {
    fn name(&self) -> &str {
        "mlflow"
    }

    fn on_start(&mut self, run: &RunDir, _config: &TrainConfig) -> Result<()> {
        if run.final_dir().is_dir() {
            // Resuming a run that had finished: its MLflow run is complete already.
            self.ended = true;
            return Ok(());
        }
        match self.start(run) {
            Ok(r) => self.run = Some(r),
            Err(e) => self.fail(e),
        }
        Ok(())
    }

    fn on_record(&mut self, record: &MetricRecord) -> Result<()> {
        if let Some((id, _)) = &self.run {
            if let Err(e) = self.client.log_metrics(id, record.step(), &scalars(record)) {
                self.fail(e);
            }
        }
        Ok(())
    }

    fn on_end(&mut self, run: &RunDir, _summary: &FitSummary) -> Result<()> {
        self.ended = true;
        let Some((id, uri)) = self.run.clone() else { return Ok(()) };
        let model = [run.best_dir(), run.final_dir()].into_iter().find(|d| d.is_dir());
        let result = model
            .map_or(Ok(()), |dir| self.upload_model(&id, &uri, &dir))
            .and_then(|()| self.client.set_status(&id, "FINISHED"));
        if let Err(e) = result {
            self.fail(e);
        }
        Ok(())
    }
}

impl Drop for MlflowObserver {
    fn drop(&mut self) {
        // Dropped without an end: the run failed (or was interrupted) before finishing.
        if let (false, Some((id, _))) = (self.ended, &self.run) {
            let _ = self.client.set_status(id, "FAILED");
        }
    }
}
