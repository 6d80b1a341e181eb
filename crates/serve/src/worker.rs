//! Dynamic batching on dedicated inference threads.
//!
//! Each model has one bounded queue and one OS thread that owns the model (libtorch work never runs on the async
//! runtime's threads). The thread takes the first waiting request, then gathers more until it has `max_batch` or
//! `max_wait` has passed, answers them with one [`Engine::run`] call, and sends each request its own result. A
//! full queue refuses at once (503 with `Retry-After`) instead of piling up. A panic inside `run` (libtorch
//! reports some failures by panicking) fails that batch with 500s; the thread goes on with the next one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::error::AppError;
use crate::metrics::Metrics;

/// A model's inference: answers a batch of requests, one result per request, in order.
pub trait Engine {
    /// What one HTTP request asks of the model.
    type Request: Send + 'static;
    /// What it gets back.
    type Response: Send + 'static;

    /// Answers `batch` (at least one request); the result has one entry per request, in order.
    fn run(&mut self, batch: Vec<Self::Request>) -> Vec<Result<Self::Response, AppError>>;
}

/// How the batcher gathers requests.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most requests answered by one forward pass.
    pub max_batch: usize,
    /// Longest wait for more requests once one is there.
    pub max_wait: Duration,
    /// Most requests waiting; one more is refused with 503.
    pub max_queue: usize,
}

struct Job<Req, Resp> {
    request: Req,
    reply: oneshot::Sender<Result<Resp, AppError>>,
}

/// The sending side of a model's queue, shared by the request handlers.
pub struct Queue<Req, Resp> {
    model: String,
    tx: Sender<Job<Req, Resp>>,
    metrics: Arc<Metrics>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Queue<Req, Resp> {
    /// Queues `request` and waits for its answer; a full queue is a 503 at once.
    pub async fn submit(&self, request: Req) -> Result<Resp, AppError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Job { request, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(AppError::Unavailable {
                    message: format!(
                        "the queue of model {:?} is full ({} requests waiting); retry later",
                        self.model,
                        self.tx.len()
                    ),
                    retry_after_s: 1,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(AppError::Internal(format!("the inference thread of model {:?} has stopped", self.model)))
            }
        }
        self.metrics.queue_depth.with_label_values(&[&self.model]).set(self.tx.len() as i64);
        answer.await.unwrap_or_else(|_| {
            Err(AppError::Internal(format!("the inference thread of model {:?} dropped the request", self.model)))
        })
    }
}

/// What a worker thread reports once its model is loaded (or failed to load).
pub type Loaded<Info> = oneshot::Receiver<Result<Info, String>>;

/// A started inference thread: its queue, the news of its load, and the thread itself.
pub struct Started<E: Engine, Info> {
    pub queue: Queue<E::Request, E::Response>,
    pub loaded: Loaded<Info>,
    pub thread: JoinHandle<()>,
}

/// Starts the inference thread of `model`: it runs `load` (which builds the engine on that thread, so the engine
/// need not be `Send`), reports the outcome through the returned receiver, then serves the queue until every
/// [`Queue`] is dropped.
pub fn spawn<E, Info, L>(
    model: &str,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    load: L,
) -> std::io::Result<Started<E, Info>>
where
    E: Engine,
    Info: Send + 'static,
    L: FnOnce() -> anyhow::Result<(E, Info)> + Send + 'static,
{
    let (tx, rx) = bounded(config.max_queue.max(1));
    let (loaded_tx, loaded_rx) = oneshot::channel();
    let name = model.to_string();
    let thread_metrics = metrics.clone();
    let handle = std::thread::Builder::new().name(format!("infer-{model}")).spawn(move || {
        let started = Instant::now();
        let engine = match catch_unwind(AssertUnwindSafe(load)) {
            Ok(Ok((engine, info))) => {
                thread_metrics.load_seconds.with_label_values(&[&name]).set(started.elapsed().as_secs_f64());
                let _ = loaded_tx.send(Ok(info));
                engine
            }
            Ok(Err(e)) => {
                let _ = loaded_tx.send(Err(format!("{e:#}")));
                return;
            }
            Err(_) => {
                let _ = loaded_tx.send(Err(format!("loading model {name:?} failed inside libtorch")));
                return;
            }
        };
        serve_queue(engine, &name, config, &rx, &thread_metrics);
    })?;
    Ok(Started { queue: Queue { model: model.to_string(), tx, metrics }, loaded: loaded_rx, thread: handle })
}

/// The batching loop of one inference thread.
fn serve_queue<E: Engine>(
    mut engine: E,
    model: &str,
    config: BatchConfig,
    rx: &Receiver<Job<E::Request, E::Response>>,
    metrics: &Metrics,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while jobs.len() < config.max_batch {
            match rx.recv_deadline(deadline) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queue_depth.with_label_values(&[model]).set(rx.len() as i64);
        metrics.batch_size.with_label_values(&[model]).observe(jobs.len() as f64);
        let (requests, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        let n = replies.len();
        let results = match catch_unwind(AssertUnwindSafe(|| engine.run(requests))) {
            Ok(results) if results.len() == n => results,
            Ok(results) => {
                let msg = format!("model {model:?} answered {} of {n} requests", results.len());
                (0..n).map(|_| Err(AppError::Internal(msg.clone()))).collect()
            }
            Err(_) => {
                let msg = format!("model {model:?} failed inside libtorch on this batch of {n}; the server goes on");
                (0..n).map(|_| Err(AppError::Internal(msg.clone()))).collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The client may have gone away; its answer is dropped.
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles numbers; panics on a negative one (as libtorch may on a bad tensor); records batch sizes.
    struct Doubler {
        seen: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Engine for Doubler {
        type Request = i64;
        type Response = i64;
        fn run(&mut self, batch: Vec<i64>) -> Vec<Result<i64, AppError>> {
            self.seen.lock().unwrap().push(batch.len());
            assert!(batch.iter().all(|&x| x >= 0), "negative input");
            std::thread::sleep(Duration::from_millis(20));
            batch.into_iter().map(|x| Ok(2 * x)).collect()
        }
    }

    type Seen = Arc<std::sync::Mutex<Vec<usize>>>;

    fn start(max_batch: usize, max_queue: usize) -> (Arc<Queue<i64, i64>>, Seen) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let engine_seen = seen.clone();
        let config = BatchConfig { max_batch, max_wait: Duration::from_millis(50), max_queue };
        let started =
            spawn("doubler", config, Arc::new(Metrics::new()), move || Ok((Doubler { seen: engine_seen }, ())))
                .unwrap();
        (Arc::new(started.queue), seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_batched_and_each_gets_its_own_answer() {
        let (queue, seen) = start(8, 64);
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { (i, q.submit(i).await) })
            })
            .collect();
        for t in tasks {
            let (i, answer) = t.await.unwrap();
            assert_eq!(answer.unwrap(), 2 * i);
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().sum::<usize>(), 16);
        assert!(seen.iter().all(|&b| b <= 8), "{seen:?}");
        assert!(seen.iter().any(|&b| b > 1), "no batch larger than 1: {seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_its_batch_and_the_thread_serves_the_next() {
        let (queue, _) = start(1, 8);
        let err = queue.submit(-1).await.unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(err.to_string().contains("the server goes on"), "{err}");
        assert_eq!(queue.submit(21).await.unwrap(), 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_503_at_once() {
        let (queue, _) = start(1, 1);
        // One request runs (20 ms), one waits in the queue of one; the rest are refused.
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { q.submit(i).await })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => {}
                Err(AppError::Unavailable { retry_after_s, .. }) => {
                    assert_eq!(retry_after_s, 1);
                    refused += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(refused >= 1, "no request was refused");
    }
}
