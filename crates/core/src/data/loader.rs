use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use crossbeam_channel::{bounded, Receiver};
use rand::SeedableRng;

use super::{BatchSampler, Dataset, SampleRng, Sequential, Shuffled};
use crate::device::mix_seed;

/// How a [`DataLoader`] batches and prefetches.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Examples per batch.
    pub batch_size: usize,
    /// Drop the last, smaller batch of an epoch.
    pub drop_last: bool,
    /// Worker threads building batches; 0 builds them on the caller's thread.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
    /// Seed of the epoch order and of the per-sample augmentation RNGs.
    pub seed: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 32, drop_last: false, workers: 2, prefetch: 2, seed: 0 }
    }
}

/// Builds batches of a [`Dataset`] on worker threads, in the order its [`BatchSampler`] gives.
pub struct DataLoader<D: Dataset> {
    dataset: Arc<D>,
    sampler: Arc<dyn BatchSampler>,
    config: LoaderConfig,
}

impl<D: Dataset> DataLoader<D> {
    /// A loader with a custom sampler (for example [`super::LengthBuckets`]).
    pub fn new(dataset: Arc<D>, sampler: Arc<dyn BatchSampler>, config: LoaderConfig) -> Self {
        Self { dataset, sampler, config }
    }

    /// A training loader: reshuffled every epoch.
    pub fn shuffled(dataset: Arc<D>, config: LoaderConfig) -> Self {
        Self::new(dataset, Arc::new(Shuffled), config)
    }

    /// An evaluation loader: file order, nothing dropped.
    pub fn sequential(dataset: Arc<D>, config: LoaderConfig) -> Self {
        Self::new(dataset, Arc::new(Sequential), LoaderConfig { drop_last: false, ..config })
    }

    /// This rank's share of the loader under data parallelism: the same dataset and per-rank batch size, each
    /// epoch's global batches (`batch_size × world`) split by rank (see [`super::Sharded`]).
    pub fn sharded(&self, rank: usize, world: usize) -> Self {
        Self {
            dataset: self.dataset.clone(),
            sampler: Arc::new(super::Sharded { inner: self.sampler.clone(), rank, world }),
            config: self.config.clone(),
        }
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// The loader's settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The index batches of `epoch`.
    pub fn plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        let c = &self.config;
        self.sampler.batches(self.dataset.len(), c.batch_size, c.drop_last, c.seed, epoch)
    }

    /// Number of batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.plan(0).len()
    }

    /// Iterates the batches of `epoch`, starting at batch `start` (for resuming mid-epoch).
    pub fn iter_epoch(&self, epoch: usize, start: usize) -> BatchIter<D::Batch> {
        let plan: Vec<Vec<usize>> = self.plan(epoch).into_iter().skip(start).collect();
        let seed = self.config.seed;
        let total = plan.len();
        let build = {
            let dataset = self.dataset.clone();
            move |batch: &[usize]| -> Result<D::Batch> {
                let mut items = Vec::with_capacity(batch.len());
                for &i in batch {
                    let mut rng = SampleRng::seed_from_u64(mix_seed(&[seed, epoch as u64, i as u64]));
                    items.push(dataset.get(i, &mut rng)?);
                }
                dataset.collate(items)
            }
        };
        if self.config.workers == 0 {
            let mut plan = plan.into_iter();
            return BatchIter { total, inner: Inner::Inline(Box::new(move || plan.next().map(|b| build(&b)))) };
        }
        let plan = Arc::new(plan);
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = self.config.workers.min(total.max(1));
        let (tx, rx) = bounded(workers * self.config.prefetch.max(1));
        let build = Arc::new(build);
        let handles = (0..workers)
            .map(|_| {
                let (plan, next, stop, tx, build) =
                    (plan.clone(), next.clone(), stop.clone(), tx.clone(), build.clone());
                std::thread::spawn(move || loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= plan.len() {
                        break;
                    }
                    let result = build(&plan[j]);
                    if tx.send((j, result)).is_err() {
                        break;
                    }
                })
            })
            .collect();
        BatchIter { total, inner: Inner::Threads { rx, pending: BTreeMap::new(), next: 0, stop, handles } }
    }
}

type InlineNext<B> = Box<dyn FnMut() -> Option<Result<B>>>;

enum Inner<B> {
    Inline(InlineNext<B>),
    Threads {
        rx: Receiver<(usize, Result<B>)>,
        pending: BTreeMap<usize, Result<B>>,
        next: usize,
        stop: Arc<AtomicBool>,
        handles: Vec<JoinHandle<()>>,
    },
}

/// The batches of one epoch, in plan order; an error names the failing example through the dataset's message.
pub struct BatchIter<B> {
    total: usize,
    inner: Inner<B>,
}

impl<B> BatchIter<B> {
    /// Number of batches this iterator yields in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl<B> Iterator for BatchIter<B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Result<B>> {
        match &mut self.inner {
            Inner::Inline(f) => f(),
            Inner::Threads { rx, pending, next, .. } => {
                if *next >= self.total {
                    return None;
                }
                loop {
                    if let Some(b) = pending.remove(next) {
                        *next += 1;
                        return Some(b);
                    }
                    match rx.recv() {
                        Ok((j, b)) => {
                            pending.insert(j, b);
                        }
                        Err(_) => {
                            *next = self.total;
                            return Some(Err(anyhow!("data loader workers stopped before the epoch ended")));
                        }
                    }
                }
            }
        }
    }
}

impl<B> Drop for BatchIter<B> {
    fn drop(&mut self) {
        if let Inner::Threads { rx, stop, handles, .. } = &mut self.inner {
            stop.store(true, Ordering::Relaxed);
            // Unblock workers waiting on a full channel, then wait for them.
            while rx.try_recv().is_ok() {}
            for h in handles.drain(..) {
                while !h.is_finished() {
                    while rx.try_recv().is_ok() {}
                    std::thread::yield_now();
                }
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    struct Numbers(usize);

    impl Dataset for Numbers {
        type Item = (usize, u32);
        type Batch = Vec<(usize, u32)>;
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, index: usize, rng: &mut SampleRng) -> Result<Self::Item> {
            if index == 13 && self.0 == 14 {
                anyhow::bail!("example 13 is corrupt");
            }
            Ok((index, rng.random()))
        }
        fn collate(&self, items: Vec<Self::Item>) -> Result<Self::Batch> {
            Ok(items)
        }
    }

    fn collect(workers: usize, start: usize) -> Vec<Vec<(usize, u32)>> {
        let cfg = LoaderConfig { batch_size: 3, workers, prefetch: 2, seed: 11, drop_last: false };
        DataLoader::shuffled(Arc::new(Numbers(20)), cfg).iter_epoch(2, start).map(|b| b.unwrap()).collect()
    }

    #[test]
    fn threaded_equals_inline_and_resumes_mid_epoch() {
        let inline = collect(0, 0);
        assert_eq!(inline.len(), 7);
        assert_eq!(collect(3, 0), inline, "worker threads must not change order or augmentation draws");
        assert_eq!(collect(2, 4), inline[4..].to_vec(), "starting at batch 4 gives the rest of the epoch");
    }

    #[test]
    fn errors_surface_and_early_drop_does_not_hang() {
        let cfg = LoaderConfig { batch_size: 2, workers: 2, prefetch: 1, seed: 0, drop_last: false };
        let loader = DataLoader::sequential(Arc::new(Numbers(14)), cfg);
        let results: Vec<_> = loader.iter_epoch(0, 0).collect();
        assert!(results[6].as_ref().unwrap_err().to_string().contains("example 13"));
        let mut it = loader.iter_epoch(0, 0);
        assert!(it.next().unwrap().is_ok());
        drop(it);
    }
}
