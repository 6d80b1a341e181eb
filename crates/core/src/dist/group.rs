//! A joined c10d process group: collectives with errors that name the lost rank, and the rendezvous store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tch::Tensor;

use super::env::DistEnv;
use super::ffi::Handle;

/// How often each rank writes its heartbeat into the store.
const BEAT: Duration = Duration::from_millis(500);

/// The default process group of this process (what `torch.distributed.init_process_group` makes): Gloo over a
/// TCPStore rendezvous, keyed as PyTorch keys it, so PyTorch ranks can join.
pub struct ProcessGroup {
    env: DistEnv,
    handle: Handle,
    timeout: Duration,
    step: Arc<AtomicU64>,
    heartbeat: Option<Heartbeat>,
}

struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ProcessGroup {
    /// Joins the group described by `env`; collectives and the rendezvous give up after `timeout`.
    pub fn init(env: &DistEnv, timeout: Duration) -> Result<Self> {
        let handle = Handle::init(
            &env.master_addr,
            env.master_port,
            env.rank,
            env.world_size,
            env.hosts_store(),
            timeout.as_millis() as u64,
            false,
        )
        .with_context(|| {
            format!(
                "rank {} of {}: joining the process group through the store at {}:{} (MASTER_ADDR:MASTER_PORT) \
                 within {} s",
                env.rank,
                env.world_size,
                env.master_addr,
                env.master_port,
                timeout.as_secs()
            )
        })?;
        let mut pg = Self { env: env.clone(), handle, timeout, step: Arc::new(AtomicU64::new(0)), heartbeat: None };
        pg.heartbeat = Some(pg.start_heartbeat()?);
        Ok(pg)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.env.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.env.world_size
    }

    /// The launch environment.
    pub fn env(&self) -> &DistEnv {
        &self.env
    }

    /// Whether this is rank 0, the one that writes run folders and prints progress.
    pub fn is_main(&self) -> bool {
        self.env.rank == 0
    }

    /// Collective timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records the optimizer step this rank has reached; it travels with the heartbeat, so a failure report says
    /// where each rank stood.
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// Sums each of `tensors` elementwise across ranks, in place (one collective per tensor, all in flight at once).
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<()> {
        self.collective("all-reduce", || self.handle.all_reduce_sum(tensors))
    }

    /// Overwrites `tensors` on every rank with rank `root`'s.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        self.collective("broadcast", || self.handle.broadcast(tensors, root))
    }

    /// Waits until every rank has reached this point.
    pub fn barrier(&self) -> Result<()> {
        self.collective("barrier", || self.handle.barrier())
    }

    /// Rank 0's `value`, on every rank (through the store, under `key`).
    pub fn share_from_main(&self, key: &str, value: Option<&[u8]>) -> Result<Vec<u8>> {
        if self.is_main() {
            let v = value.context("rank 0 must give the shared value")?;
            self.handle.store_set(&format!("share/{key}"), v)?;
            return Ok(v.to_vec());
        }
        self.handle
            .store_get(&format!("share/{key}"), self.timeout.as_millis() as u64)
            .map_err(|e| anyhow!("{}", self.diagnose(&format!("waiting for rank 0's {key}"), &e)))
    }

    fn collective(&self, what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        f().map_err(|e| anyhow!("{}", self.diagnose(what, &e)))
    }

    fn start_heartbeat(&self) -> Result<Heartbeat> {
        let store = self.handle.store_clone().context("opening the heartbeat connection to the store")?;
        let (stop, step, rank) = (Arc::new(AtomicBool::new(false)), self.step.clone(), self.env.rank);
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("suite-heartbeat".into()).spawn(move || {
            let mut beat = 0u64;
            while !flag.load(Ordering::Relaxed) {
                beat += 1;
                let value = format!("{beat} {}", step.load(Ordering::Relaxed));
                // A store that went away is reported by the collective that notices it, not here.
                if store.store_set(&format!("hb/{rank}"), value.as_bytes()).is_err() {
                    break;
                }
                std::thread::sleep(BEAT);
            }
        })?;
        Ok(Heartbeat { stop, thread: Some(thread) })
    }

    /// Why a collective failed, in terms of ranks: which ones stopped beating (dead or frozen), or which one is
    /// behind (hung while alive), or that the store itself went away with the rank hosting it.
    fn diagnose(&self, what: &str, err: &anyhow::Error) -> String {
        let env = &self.env;
        let head = format!("rank {} of {}: {what} failed", env.rank, env.world_size);
        let c10d = format!("c10d: {}", first_line(&format!("{err:#}")));
        let Ok(probe) = self.handle.store_clone() else {
            return self.store_gone(&head, &c10d);
        };
        let read = |r: usize| -> Option<(u64, u64)> {
            let v = probe.store_get(&format!("hb/{r}"), 1000).ok()?;
            let s = String::from_utf8(v).ok()?;
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        };
        let others: Vec<usize> = (0..env.world_size).filter(|&r| r != env.rank).collect();
        // A live store answers a write; a dead one means the rank hosting it is gone.
        if probe.store_set("probe", b"1").is_err() {
            return self.store_gone(&head, &c10d);
        }
        let first: Vec<Option<(u64, u64)>> = others.iter().map(|&r| read(r)).collect();
        // Heartbeat counters that do not move over several beats belong to ranks that died or froze; comparing
        // counters, not clocks, works across machines whose clocks differ.
        std::thread::sleep(BEAT * 5);
        let mut lost = Vec::new();
        let mut steps = Vec::new();
        for (i, &r) in others.iter().enumerate() {
            match (first[i], read(r)) {
                (Some((b1, s)), Some((b2, _))) if b1 == b2 => lost.push(format!("rank {r} (last at step {s})")),
                (_, None) => lost.push(format!("rank {r} (no heartbeat)")),
                (_, Some((_, s))) => steps.push((r, s)),
            }
        }
        if probe.store_set("probe", b"1").is_err() {
            return self.store_gone(&head, &c10d);
        }
        if !lost.is_empty() {
            return format!(
                "{head}: lost {}: the process died or froze (no heartbeat for {:.1} s); {c10d}",
                lost.join(", "),
                (BEAT * 5).as_secs_f64()
            );
        }
        let mine = self.step.load(Ordering::Relaxed);
        if let Some(&(r, s)) = steps.iter().min_by_key(|(_, s)| *s).filter(|(_, s)| *s < mine) {
            return format!(
                "{head}: rank {r} is alive but stuck at step {s} while this rank is at step {mine} (timeout {} s); \
                 {c10d}",
                self.timeout.as_secs()
            );
        }
        format!("{head}: every rank still answers its heartbeat; {c10d}")
    }

    fn store_gone(&self, head: &str, c10d: &str) -> String {
        let host = if self.env.agent_store { "the launcher's agent" } else { "rank 0" };
        format!(
            "{head}: lost the rendezvous store at {}:{}, which {host} hosts: {host} is gone; {c10d}",
            self.env.master_addr, self.env.master_port
        )
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let mut out: String = line.chars().take(300).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}
