//! Data loading: datasets, seeded epoch plans (shuffling, drop-last, length bucketing) and a loader that builds
//! batches on worker threads and hands them over in order, prefetched.
//!
//! Every random draw is a pure function of its position: the epoch's order comes from (seed, epoch) and each
//! sample's augmentation RNG from (seed, epoch, index). A resumed run therefore sees exactly the batches an
//! uninterrupted run would have seen, with no RNG state to save.

mod loader;
mod sampler;
mod split;

pub use loader::{BatchIter, DataLoader, LoaderConfig};
pub use sampler::{BatchSampler, LengthBuckets, Sequential, Sharded, Shuffled};
pub use split::{stratified_split, stratified_split_mask};

/// The RNG handed to [`Dataset::get`] for augmentation; seeded per sample, so reproducible on any thread.
pub type SampleRng = rand_chacha::ChaCha8Rng;

/// A indexable collection of training or evaluation examples, shared by the loader's worker threads.
pub trait Dataset: Send + Sync + 'static {
    /// One decoded, transformed example.
    type Item: Send + 'static;
    /// A collated batch, usually a struct of tensors.
    type Batch: Send + 'static;

    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether the dataset has no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes and transforms example `index`; `rng` drives random augmentation.
    fn get(&self, index: usize, rng: &mut SampleRng) -> anyhow::Result<Self::Item>;

    /// Stacks examples into a batch.
    fn collate(&self, items: Vec<Self::Item>) -> anyhow::Result<Self::Batch>;
}
