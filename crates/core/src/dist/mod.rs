//! Distributed data parallel on PyTorch's c10d: the `env://` launch conventions ([`DistEnv`]), the default process
//! group ([`ProcessGroup`], Gloo over a TCPStore rendezvous, through the C++ shim in csrc/dist.cpp), bucketed
//! gradient averaging ([`GradSync`]) and a local launcher ([`launch_local`], as `torchrun --standalone`).
//!
//! The trainer asks [`group`] whether this process is part of a job: under torchrun, or any launcher that sets
//! `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT`, the command line joins the group with [`init`] first. Data
//! sharding lives with the samplers ([`crate::data::Sharded`]).

mod env;
mod ffi;
mod grads;
mod group;
mod launch;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Result};

pub use env::DistEnv;
pub use grads::{GradSync, DEFAULT_BUCKET_BYTES};
pub use group::ProcessGroup;
pub use launch::{launch_local, LaunchSpec};

static GROUP: OnceLock<Arc<ProcessGroup>> = OnceLock::new();

/// Default collective timeout, as PyTorch's for Gloo (30 minutes): evaluation on rank 0 and checkpoint writes
/// happen while the other ranks wait in a collective, so it must outlast them.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Joins the default process group of a launch with more than one process (a world of one needs no group).
/// Returns the group, or `None` for a single process. Joining twice is an error.
pub fn init(env: &DistEnv, timeout: Duration) -> Result<Option<Arc<ProcessGroup>>> {
    if env.world_size < 2 {
        return Ok(None);
    }
    if GROUP.get().is_some() {
        bail!("the process group is already initialised");
    }
    let pg = Arc::new(ProcessGroup::init(env, timeout)?);
    let _ = GROUP.set(pg.clone());
    Ok(Some(pg))
}

/// The default process group, once [`init`] joined one.
pub fn group() -> Option<Arc<ProcessGroup>> {
    GROUP.get().cloned()
}

/// Whether this process writes shared outputs (run folders, reports, progress): rank 0, or a single process.
pub fn is_main() -> bool {
    group().is_none_or(|g| g.is_main())
}
