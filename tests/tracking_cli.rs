//! End-to-end tests of experiment tracking (`suite finetune --report-to`): a tiny vision run logs to a real MLflow
//! tracking server started from the reference Python, and what arrived is read back with MLflow's own client; the
//! run folder's TensorBoard file is read with TensorBoard's own reader. CPU only, one libtorch thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Flags of every run: a ResNet-18 from random weights on 32-pixel inputs, one epoch, a record per step and an
/// evaluation every two steps.
const FLAGS: &[&str] = &[
    "finetune",
    "vision",
    "--model",
    "resnet18",
    "--init",
    "random",
    "--input-size",
    "32",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--workers",
    "1",
    "--seed",
    "0",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--log-steps",
    "1",
    "--eval-steps",
    "2",
];

/// `root/{train,val}/<class>/i.png`: 4 training and 2 validation images of 3 classes.
fn write_data(root: &Path) -> PathBuf {
    for (split, n) in [("train", 4u32), ("val", 2)] {
        for (c, name) in ["cat", "dog", "fox"].iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let v = ((x * 7 + y * 13 + i * 31) % 64) as u8;
                    let mut p = [v; 3];
                    p[c] = 200;
                    image::Rgb(p)
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    root.to_path_buf()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real `mlflow server` (SQLite store, served artifacts) in its own process group, ended with all its workers
/// when the guard is dropped, also when a test fails.
struct MlflowServer {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl MlflowServer {
    fn start(dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let log = dir.join("mlflow-server.log");
        let exe = suite_core::python::python_exe().unwrap();
        let child = Command::new(exe)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            // The server's background job runner (a huey pool) is not needed to log runs.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("mlflow-server.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("starting mlflow server");
        let server = Self { child, uri: format!("http://127.0.0.1:{port}"), log };
        server.wait_healthy(Duration::from_secs(240));
        server
    }

    /// Waits for `/health` (the server takes several seconds, a minute or more on a busy machine).
    fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        let addr = self.uri.trim_start_matches("http://").to_string();
        while start.elapsed() < limit {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(s, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let err = std::fs::read_to_string(self.log.with_file_name("mlflow-server.err")).unwrap_or_default();
        panic!("mlflow server at {} not healthy after {limit:?}:\n{err}", self.uri);
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // The server runs uvicorn and a job runner as children: end the whole group.
        let pgid = self.child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// What MLflow's own client sees of the experiment's runs: name, status, params, every metric's history and the
/// artifact files with their sizes.
fn mlflow_view(uri: &str, experiment: &str) -> serde_json::Value {
    let code = r#"
import json, sys
import mlflow
c = mlflow.MlflowClient(sys.argv[1])
exp = c.get_experiment_by_name(sys.argv[2])
out = []
for r in c.search_runs([exp.experiment_id]):
    run = c.get_run(r.info.run_id)
    hist = {k: [[m.step, m.value] for m in sorted(c.get_metric_history(r.info.run_id, k), key=lambda m: m.step)]
            for k in run.data.metrics}
    files = {}
    def walk(path):
        for f in c.list_artifacts(r.info.run_id, path):
            if f.is_dir:
                walk(f.path)
            else:
                files[f.path] = f.file_size
    walk(None)
    out.append({"name": run.info.run_name, "status": run.info.status, "params": run.data.params,
                "tags": run.data.tags, "metrics": hist, "artifacts": files})
print(json.dumps(out))
"#;
    serde_json::from_str(python(code, &[uri, experiment]).trim()).unwrap()
}

/// TensorBoard's view of the event files under `dir`: `{tag: [[step, value], …]}`.
fn tensorboard_view(dir: &Path) -> serde_json::Value {
    let code = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;
    serde_json::from_str(python(code, &[s(dir)]).trim()).unwrap()
}

/// The run's `metrics.jsonl` as `{tag: [(step, value)]}` with the trackers' tag names.
fn logged(run: &Path) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut out: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for line in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = r["step"].as_u64().unwrap();
        if r["kind"] == "train" {
            for k in ["loss", "lr", "samples_per_sec"] {
                out.entry(format!("train/{k}")).or_default().push((step, r[k].as_f64().unwrap()));
            }
        } else {
            for (k, v) in r["metrics"].as_object().unwrap() {
                out.entry(format!("eval/{k}")).or_default().push((step, v.as_f64().unwrap()));
            }
        }
    }
    out
}

fn pairs(v: &serde_json::Value) -> Vec<(u64, f64)> {
    v.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect()
}

#[test]
fn a_run_reports_params_metrics_and_model_to_mlflow_and_tensorboard() {
    let dir = tmp();
    let data = write_data(&dir.path().join("data"));
    let server = MlflowServer::start(dir.path());
    let run = dir.path().join("tracked-run");
    let mut args: Vec<&str> = FLAGS.to_vec();
    args.extend(["--data", s(&data), "--out", s(&run), "--report-to", "tensorboard,mlflow"]);
    let env = [
        ("MLFLOW_TRACKING_URI".to_string(), server.uri.clone()),
        ("MLFLOW_EXPERIMENT_NAME".to_string(), "tracking-test".to_string()),
    ];
    let out = suite_env(dir.path(), &args, "", &env);
    out.assert_ok();
    assert!(!out.stderr.contains("warning: mlflow"), "{}", out.show());
    let want = logged(&run);
    assert!(want["train/loss"].len() >= 3 && want.contains_key("eval/accuracy"), "{want:?}");

    let runs = mlflow_view(&server.uri, "tracking-test");
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let r = &runs[0];
    assert_eq!(r["name"], "tracked-run");
    assert_eq!(r["status"], "FINISHED");
    let p = &r["params"];
    assert_eq!(p["domain"], "vision");
    assert_eq!(p["model"], "resnet18");
    assert_eq!(p["train.batch_size"], "4");
    assert_eq!(p["train.epochs"], "1");
    assert_eq!(p["train.seed"], "0");
    assert_eq!(p["vision.input_size"], "32");
    assert!(p.as_object().unwrap().keys().any(|k| k.starts_with("peft.")), "{p}");
    // Every metric history equals metrics.jsonl, step for step (MLflow keeps doubles).
    let got: BTreeMap<String, Vec<(u64, f64)>> =
        r["metrics"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), pairs(v))).collect();
    assert_eq!(got, want);
    // The model folder, byte for byte in size.
    let model = ["best", "final"].into_iter().map(|m| run.join(m)).find(|d| d.is_dir()).unwrap();
    let folder = model.file_name().unwrap().to_str().unwrap();
    let artifacts = r["artifacts"].as_object().unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(&model).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let key = format!("{folder}/{}", path.file_name().unwrap().to_str().unwrap());
            assert_eq!(artifacts[&key].as_u64(), Some(path.metadata().unwrap().len()), "{key}: {artifacts:?}");
            files += 1;
        }
    }
    assert!(files >= 2 && artifacts.contains_key(&format!("{folder}/model.safetensors")), "{artifacts:?}");

    // TensorBoard: the event file in the run folder holds the same series (as float32).
    let tb_dir = run.join("tensorboard");
    let names: Vec<String> =
        std::fs::read_dir(&tb_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.len() == 1 && names[0].starts_with("events.out.tfevents."), "{names:?}");
    let tb = tensorboard_view(&tb_dir);
    for (tag, series) in &want {
        let got = pairs(&tb[tag]);
        let as_f32: Vec<(u64, f64)> = series.iter().map(|(s, v)| (*s, *v as f32 as f64)).collect();
        assert_eq!(got, as_f32, "{tag}");
    }
    drop(server);
}

#[test]
fn an_unreachable_tracking_server_warns_and_the_run_finishes() {
    let dir = tmp();
    let data = write_data(&dir.path().join("data"));
    let run = dir.path().join("run");
    let mut args: Vec<&str> = FLAGS.to_vec();
    args.extend(["--data", s(&data), "--out", s(&run), "--report-to", "mlflow"]);
    let uri = "http://127.0.0.1:9";
    let out = suite_env(dir.path(), &args, "", &[("MLFLOW_TRACKING_URI".to_string(), uri.to_string())]);
    out.assert_ok();
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("warning: mlflow")).collect();
    assert_eq!(warnings.len(), 1, "{}", out.show());
    assert!(warnings[0].contains(uri), "{}", out.show());
    assert!(run.join("final").is_dir() && run.join("metrics.jsonl").is_file());
    // --report-to mlflow alone: no TensorBoard file.
    assert!(!run.join("tensorboard").exists());
}

#[test]
fn report_to_mlflow_without_a_tracking_uri_is_a_user_error() {
    let dir = tmp();
    let out = Command::new(SUITE)
        .args(["finetune", "vision", "--data", "nowhere", "--out", "run", "--report-to", "mlflow"])
        .env_remove("MLFLOW_TRACKING_URI")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    out.assert_user_error(&["--report-to mlflow", "MLFLOW_TRACKING_URI"]);
    assert!(!dir.path().join("run").exists());
}
