//! The `env://` conventions of `torch.distributed`, as torchrun, `accelerate launch`, Slurm and Kubernetes
//! launchers set them.

use anyhow::{bail, Context, Result};

/// Where this process stands in a distributed job, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size` (`RANK`).
    pub rank: usize,
    /// Number of processes in the job (`WORLD_SIZE`).
    pub world_size: usize,
    /// Rank on this machine (`LOCAL_RANK`; defaults to `RANK`).
    pub local_rank: usize,
    /// Processes on this machine (`LOCAL_WORLD_SIZE`; defaults to `WORLD_SIZE`).
    pub local_world_size: usize,
    /// Host of the rendezvous store (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of the rendezvous store (`MASTER_PORT`).
    pub master_port: u16,
    /// torchrun's agent hosts the store, so every rank connects as a client (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
}

impl DistEnv {
    /// The job this process belongs to, or `None` when no launcher set `WORLD_SIZE` (a plain single-process run).
    ///
    /// A launcher that set some variables but not others, or set them to nonsense, is an error naming the variable.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`DistEnv::from_env`], over any variable lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else {
            if get("RANK").is_some() {
                bail!("RANK is set but WORLD_SIZE is not: a distributed launch needs both (the env:// convention)");
            }
            return Ok(None);
        };
        let num = |k: &str, v: &str| -> Result<usize> {
            v.trim().parse::<usize>().with_context(|| format!("{k}={v:?}: expected a non-negative integer"))
        };
        let world_size = num("WORLD_SIZE", &world)?;
        if world_size == 0 {
            bail!("WORLD_SIZE=0: expected at least 1 process");
        }
        let rank = match get("RANK") {
            Some(v) => num("RANK", &v)?,
            None => bail!("WORLD_SIZE is set but RANK is not: a distributed launch needs both (the env:// convention)"),
        };
        if rank >= world_size {
            bail!("RANK={rank} is out of range for WORLD_SIZE={world_size} (ranks are 0..{})", world_size - 1);
        }
        let local_rank = get("LOCAL_RANK").map(|v| num("LOCAL_RANK", &v)).transpose()?.unwrap_or(rank);
        let local_world_size =
            get("LOCAL_WORLD_SIZE").map(|v| num("LOCAL_WORLD_SIZE", &v)).transpose()?.unwrap_or(world_size);
        let master_addr = get("MASTER_ADDR").unwrap_or_default();
        let port = get("MASTER_PORT").unwrap_or_default();
        if world_size > 1 && (master_addr.is_empty() || port.is_empty()) {
            bail!(
                "WORLD_SIZE={world_size} but MASTER_ADDR or MASTER_PORT is not set: every rank needs the address of \
                 the rendezvous store (rank 0's host and a free port)"
            );
        }
        let master_port = if port.is_empty() {
            0
        } else {
            port.trim().parse::<u16>().with_context(|| format!("MASTER_PORT={port:?}: expected a port number"))?
        };
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        Ok(Some(Self { rank, world_size, local_rank, local_world_size, master_addr, master_port, agent_store }))
    }

    /// Whether this process runs the TCPStore server: rank 0, unless torchrun's agent already does.
    pub fn hosts_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DistEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn torchrun_variables_are_read() {
        let e = env(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank, e.local_world_size), (3, 4, 1, 2));
        assert_eq!((e.master_addr.as_str(), e.master_port, e.agent_store), ("node0", 29500, true));
        assert!(!e.hosts_store());
    }

    #[test]
    fn no_launcher_means_single_process_and_bad_values_name_the_variable() {
        assert_eq!(env(&[]).unwrap(), None);
        let err = |p: &[(&str, &str)]| format!("{:#}", env(p).unwrap_err());
        assert!(err(&[("RANK", "0")]).contains("WORLD_SIZE"));
        assert!(err(&[("WORLD_SIZE", "two"), ("RANK", "0")]).contains("WORLD_SIZE=\"two\""));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")])
            .contains("RANK=2 is out of range"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0")]).contains("MASTER_ADDR"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "99999")])
            .contains("MASTER_PORT"));
        let one = env(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap().unwrap();
        assert!(one.hosts_store());
    }
}
