//! A local launcher, as `torchrun --standalone --nproc-per-node N`: starts N copies of a program with the
//! `env://` variables set, forwards Ctrl-C and SIGTERM to them, and when one fails gives the others time to report
//! which rank they lost before stopping them.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Worker processes on this machine.
    pub nproc: usize,
    /// The program every worker runs.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// After a worker fails, how long the others may take to notice and exit on their own before they are stopped.
    pub grace: Duration,
}

/// Runs the workers to the end and returns the exit code the launcher should exit with: 0 when all succeeded,
/// else the first failure's (128 + signal for a killed worker, 130 after Ctrl-C).
pub fn launch_local(spec: &LaunchSpec) -> Result<i32> {
    if spec.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the rendezvous store")?
        .port();
    // As torchrun: each worker gets its share of the cores unless the user chose.
    let threads = std::env::var("OMP_NUM_THREADS").ok().unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / spec.nproc).max(1).to_string()
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone()).context("installing the signal handler")?;
    }
    let mut children: Vec<Option<Child>> = Vec::with_capacity(spec.nproc);
    for rank in 0..spec.nproc {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("WORLD_SIZE", spec.nproc.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", spec.nproc.to_string())
            .env("GROUP_RANK", "0")
            .env("OMP_NUM_THREADS", &threads)
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        // SAFETY: prctl is async-signal-safe; a worker whose launcher died gets SIGTERM instead of living on.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                stop_all(&mut children, Duration::from_secs(5));
                return Err(e).with_context(|| format!("starting worker {rank}: {}", spec.program.display()));
            }
        }
    }
    eprintln!("launched {} workers (rendezvous 127.0.0.1:{port}, {threads} thread(s) each)", spec.nproc);
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; spec.nproc];
    let mut first_failure: Option<(usize, ExitStatus, Instant)> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            if let Some(child) = slot {
                if let Some(status) = child.try_wait()? {
                    statuses[rank] = Some(status);
                    *slot = None;
                    if !status.success() && first_failure.is_none() {
                        eprintln!("launcher: rank {rank} {}", describe(status));
                        first_failure = Some((rank, status, Instant::now()));
                    }
                }
            }
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        if interrupted.load(Ordering::Relaxed) {
            eprintln!("launcher: interrupted: stopping {} worker(s)", children.iter().flatten().count());
            stop_all(&mut children, Duration::from_secs(10));
            return Ok(130);
        }
        if let Some((_, _, at)) = first_failure {
            if at.elapsed() > spec.grace {
                eprintln!("launcher: stopping the workers still running {} s after the failure", spec.grace.as_secs());
                stop_all(&mut children, Duration::from_secs(10));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(match first_failure {
        None => 0,
        Some((_, status, _)) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(1)),
    })
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".to_string(),
    }
}

/// SIGTERM to every running worker, SIGKILL to those still running after `wait`.
fn stop_all(children: &mut [Option<Child>], wait: Duration) {
    for c in children.iter().flatten() {
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    let start = Instant::now();
    while start.elapsed() < wait {
        for slot in children.iter_mut() {
            if slot.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                *slot = None;
            }
        }
        if children.iter().all(Option::is_none) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in children.iter_mut().flatten() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
