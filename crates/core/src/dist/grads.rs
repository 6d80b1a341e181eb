//! Gradient averaging across ranks in buckets, as DDP's Reducer: trainable gradients are flattened into buckets of
//! about 25 MB, every bucket's all-reduce is in flight at once (Gloo's worker threads overlap them), then each is
//! divided by the world size and copied back. Unlike the Reducer this starts after the backward pass, not during it.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::ProcessGroup;

/// DDP's default bucket size (`bucket_cap_mb=25`).
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The trainable parameters of a model, grouped into buckets, in a fixed order every rank shares.
pub struct GradSync {
    buckets: Vec<Vec<Tensor>>,
    params: usize,
}

impl GradSync {
    /// Buckets `params` (trainable parameters, in the same order on every rank) into groups of at most
    /// `bucket_bytes` of gradient (a larger parameter gets a bucket of its own).
    pub fn new(params: Vec<Tensor>, bucket_bytes: usize) -> Self {
        let n = params.len();
        let mut buckets: Vec<Vec<Tensor>> = Vec::new();
        let mut size = 0usize;
        for p in params {
            let bytes = p.numel() * p.kind().elt_size_in_bytes();
            let full = buckets.last().is_none_or(|b| b.is_empty() || size + bytes > bucket_bytes);
            if full {
                buckets.push(Vec::new());
                size = 0;
            }
            size += bytes;
            buckets.last_mut().expect("pushed").push(p);
        }
        Self { buckets, params: n }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Averages every gradient across ranks and returns the mean of `loss` across ranks.
    ///
    /// A parameter that got no gradient on some rank counts as zero there; one that got none anywhere keeps no
    /// gradient, so the optimizer skips it on every rank alike. The loss travels in the same collective, so a
    /// non-finite loss on any rank is seen by all of them at once.
    pub fn average(&self, pg: &ProcessGroup, loss: f64) -> Result<f64> {
        let world = pg.world_size() as f64;
        let all: Vec<&Tensor> = self.buckets.iter().flatten().collect();
        let device = all.first().map_or(tch::Device::Cpu, |p| p.device());
        // One slot per parameter says whether it has a gradient here, and one more carries the loss (fp32, as the
        // buckets: a coalesced collective takes one dtype).
        let mut flags: Vec<f32> = all.iter().map(|p| f32::from(u8::from(p.grad().defined()))).collect();
        flags.push(loss as f32);
        let mut flat: Vec<Tensor> = Vec::with_capacity(self.buckets.len() + 1);
        flat.push(Tensor::from_slice(&flags).to_device(device));
        for bucket in &self.buckets {
            let parts: Vec<Tensor> = bucket
                .iter()
                .map(|p| {
                    let g = p.grad();
                    if g.defined() {
                        g.reshape([-1]).to_kind(Kind::Float)
                    } else {
                        Tensor::zeros([p.numel() as i64], (Kind::Float, p.device()))
                    }
                })
                .collect();
            flat.push(Tensor::cat(&parts, 0));
        }
        pg.all_reduce_sum(&mut flat)?;
        let counts: Vec<f64> = Vec::<f64>::try_from(&flat[0].to_device(tch::Device::Cpu).to_kind(Kind::Double))?;
        debug_assert_eq!(counts.len(), self.params + 1);
        let mut i = 0usize;
        for (bucket, sum) in self.buckets.iter().zip(flat[1..].iter_mut()) {
            let _ = sum.g_div_scalar_(world);
            let mean = &*sum;
            let mut offset = 0i64;
            for p in bucket {
                let n = p.numel() as i64;
                if counts[i] > 0.0 {
                    let avg = mean.narrow(0, offset, n).view_as(p).to_kind(p.kind());
                    let mut g = p.grad();
                    if g.defined() {
                        g.copy_(&avg);
                    } else {
                        super::ffi::set_grad(p, &avg)?;
                    }
                }
                offset += n;
                i += 1;
            }
        }
        Ok(counts[self.params] / world)
    }
}
