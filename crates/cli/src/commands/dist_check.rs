//! `suite dist-check`: proves that a launch reaches c10d — each rank all-reduces `[rank + 1; 4]` (every rank must
//! get `world × (world + 1) / 2`) and receives rank 0's broadcast of `[7, 8, 9, 10]` — and prints one JSON line per
//! rank. The same two collectives in `torch.distributed` join it, so mixed suite/PyTorch groups can be checked.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use suite_core::dist::{self, DistEnv};
use tch::Tensor;

use crate::args::DistCheckArgs;

/// What one rank saw.
#[derive(Debug, Serialize)]
struct CheckReport {
    rank: usize,
    world_size: usize,
    all_reduce: Vec<f32>,
    expected_all_reduce: f32,
    broadcast: Vec<f32>,
    ok: bool,
}

/// Entry point.
pub fn run(args: DistCheckArgs) -> Result<()> {
    let env = DistEnv::from_env()?;
    if let Some(n) = args.nproc {
        if env.is_some() {
            bail!("--nproc starts its own workers; leave it out under torchrun or another launcher");
        }
        return super::finetune::launch(n);
    }
    let Some(env) = env else {
        bail!(
            "no data-parallel launch found: run under torchrun (torchrun --nproc-per-node 2 --no-python suite \
             dist-check), with --nproc N, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
        );
    };
    let world = env.world_size;
    let mut reduce = [Tensor::full([4], (env.rank + 1) as f64, (tch::Kind::Float, tch::Device::Cpu))];
    let mut bcast = [if env.rank == 0 {
        Tensor::from_slice(&[7.0f32, 8.0, 9.0, 10.0])
    } else {
        Tensor::zeros([4], (tch::Kind::Float, tch::Device::Cpu))
    }];
    if let Some(g) = dist::init(&env, Duration::from_secs(args.timeout))? {
        g.all_reduce_sum(&mut reduce)?;
        g.broadcast(&mut bcast, 0)?;
        g.barrier()?;
    }
    let all_reduce: Vec<f32> = Vec::try_from(&reduce[0]).context("reading the all-reduce result")?;
    let broadcast: Vec<f32> = Vec::try_from(&bcast[0]).context("reading the broadcast result")?;
    let expected = (world * (world + 1) / 2) as f32;
    let ok = all_reduce.iter().all(|&v| v == expected) && broadcast == [7.0, 8.0, 9.0, 10.0];
    let report =
        CheckReport { rank: env.rank, world_size: world, all_reduce, expected_all_reduce: expected, broadcast, ok };
    println!("{}", serde_json::to_string(&report)?);
    if !ok {
        bail!("rank {}: the collectives returned wrong values", env.rank);
    }
    Ok(())
}
