//! `suite serve`: a real-time inference server for every domain.
//!
//! HTTP on axum/tokio/hyper ([`app`] builds the router over shared [`AppState`]); each served model has its own
//! inference thread with a bounded queue and a dynamic batcher ([`worker`]); the domain crates' prediction APIs do
//! the work ([`engines`]). Speech speaks OpenAI's audio API, language models its chat and completion APIs (with
//! server-sent events for streams); errors are JSON in OpenAI's shape ([`AppError`]);
//! `GET /metrics` is Prometheus text; `GET /` is a page to try the models.

pub mod config;
pub mod engines;
pub mod error;
pub mod metrics;
mod routes;
pub mod state;
pub mod worker;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

pub use config::{Domain, ModelSource, ModelSpec, ServeConfig};
pub use error::AppError;
pub use routes::app;
pub use state::AppState;

use engines::{ChatEngine, SpeechEngine, TextEngine, VisionEngine};
use state::{Handle, ModelInfo, Served};
use worker::Loaded;

/// Starts one inference thread per model (each loads its model), binds, prints `listening on http://ADDR`, and
/// serves until SIGTERM or Ctrl-C; then it stops accepting, answers what is in flight (at most `config.drain`)
/// and returns. A model that fails to load stops the server with that error.
pub fn serve(config: ServeConfig) -> Result<()> {
    config.validate()?;
    let device = match (config.int8, config.device.as_str()) {
        // libtorch's int8 kernels are CPU kernels: `auto` means the CPU then.
        (true, "auto") => tch::Device::Cpu,
        (true, _) if suite_core::device::parse_device(&config.device)? != tch::Device::Cpu => {
            bail!("--precision int8 runs on the CPU (libtorch's int8 kernels); use --device cpu")
        }
        _ => suite_core::device::parse_device(&config.device)?,
    };
    if let Some(n) = config.threads {
        suite_core::device::set_threads(n);
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let mut served = Vec::new();
    let mut loads = Vec::new();
    for spec in &config.models {
        let (handle, loaded) = start_model(spec, &config, metrics.clone(), device)?;
        served.push(Served { id: spec.id.clone(), domain: spec.domain, info: OnceLock::new(), handle });
        loads.push((spec.id.clone(), loaded));
    }
    let state =
        Arc::new(AppState::new(served, metrics, config.api_key.as_deref(), config.max_body_bytes, config.beam_size));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(state, loads, &config))
}

/// Starts the inference thread of one model.
fn start_model(
    spec: &ModelSpec,
    config: &ServeConfig,
    metrics: Arc<metrics::Metrics>,
    device: tch::Device,
) -> Result<(Handle, Loaded<ModelInfo>)> {
    let id = spec.id.as_str();
    let b = config.batch;
    let int8 = config.int8;
    let started = match (&spec.domain, &spec.source) {
        (Domain::Vision, ModelSource::Run { dir, which }) => {
            let (dir, which) = (dir.clone(), which.clone());
            let w = worker::spawn(id, b, metrics, move || VisionEngine::load(&dir, &which, device, int8))?;
            (Handle::Vision(w.queue), w.loaded)
        }
        (Domain::Text, ModelSource::Run { dir, which }) => {
            let (dir, which) = (dir.clone(), which.clone());
            let w = worker::spawn(id, b, metrics, move || TextEngine::load(&dir, &which, device, int8))?;
            (Handle::Text(w.queue), w.loaded)
        }
        (_, ModelSource::LanguageModel(dir)) => {
            let dir = dir.clone();
            let w = worker::spawn(id, b, metrics, move || ChatEngine::load(&dir, device, int8))?;
            (Handle::Chat(w.queue), w.loaded)
        }
        (Domain::Speech, ModelSource::Run { dir, which }) => {
            let spec_str = SpeechEngine::run_model_dir(dir, which)?.display().to_string();
            let w = worker::spawn(id, b, metrics, move || SpeechEngine::load(&spec_str, device, int8))?;
            (Handle::Speech(w.queue), w.loaded)
        }
        (Domain::Speech, ModelSource::Base(name)) => {
            let name = name.clone();
            let w = worker::spawn(id, b, metrics, move || SpeechEngine::load(&name, device, int8))?;
            (Handle::Speech(w.queue), w.loaded)
        }
        (domain, ModelSource::Base(name)) => bail!("{name}: a {domain:?} model is served from a run (--run)"),
    };
    Ok(started)
}

async fn run(state: Arc<AppState>, loads: Vec<(String, Loaded<ModelInfo>)>, config: &ServeConfig) -> Result<()> {
    let addr: SocketAddr = format!("{}:{}", config.host, config.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (config.host.as_str(), config.port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or(())
        })
        .map_err(|_| anyhow::anyhow!("--host {}: not an address or a resolvable name", config.host))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    eprintln!("listening on http://{bound} ({} model(s) loading)", state.models.len());

    // A failed load ends the server with its error; the others fill in each model's info as they finish.
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<String>>(None);
    let t0 = Instant::now();
    for (id, loaded) in loads {
        let state = state.clone();
        let fatal = fatal_tx.clone();
        tokio::spawn(async move {
            match loaded.await {
                Ok(Ok(info)) => {
                    eprintln!(
                        "model {id} ready ({}, {}, {:.1} s)",
                        info.task,
                        info.precision,
                        t0.elapsed().as_secs_f64()
                    );
                    if let Some(m) = state.models.get(&id) {
                        let _ = m.info.set(info);
                    }
                    if state.ready() {
                        eprintln!("ready: every model is loaded");
                    }
                }
                Ok(Err(e)) => {
                    let _ = fatal.send(Some(format!("model {id}: {e}")));
                }
                Err(_) => {
                    let _ = fatal.send(Some(format!("model {id}: its inference thread ended while loading")));
                }
            }
        });
    }
    drop(fatal_tx);

    let (stop_tx, stop_rx) = watch::channel(false);
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let failure_w = failure.clone();
    let signals = async move {
        tokio::select! {
            _ = shutdown_signal() => eprintln!("shutting down: answering requests in flight"),
            _ = async {
                loop {
                    if fatal_rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if let Some(e) = fatal_rx.borrow().clone() {
                        *failure_w.lock().unwrap() = Some(e);
                        break;
                    }
                }
            } => {}
        }
        let _ = stop_tx.send(true);
    };
    let mut stop_wait = stop_rx.clone();
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signals);
    let drain = config.drain;
    tokio::select! {
        r = server => r.context("serving HTTP")?,
        _ = async {
            // Once shutdown starts, in-flight requests get `drain` to finish.
            let _ = stop_wait.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        } => eprintln!("shutting down: drain time ({} s) over, closing the remaining connections", drain.as_secs()),
    }
    if let Some(e) = failure.lock().unwrap().take() {
        bail!("{e}");
    }
    eprintln!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what `kill`, systemd and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
