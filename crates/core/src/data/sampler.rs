use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::device::mix_seed;

/// Splits `0..len` into the batches of one epoch. Implementations must be deterministic in `(seed, epoch)`.
pub trait BatchSampler: Send + Sync {
    /// The index batches of `epoch`.
    fn batches(&self, len: usize, batch_size: usize, drop_last: bool, seed: u64, epoch: usize) -> Vec<Vec<usize>>;
}

fn chunk(order: Vec<usize>, batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect();
    if drop_last && out.last().is_some_and(|b| b.len() < batch_size) {
        out.pop();
    }
    out
}

fn permutation(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch as u64, 0x5348_5546]));
    order.shuffle(&mut rng);
    order
}

/// Examples in file order (evaluation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl BatchSampler for Sequential {
    fn batches(&self, len: usize, batch_size: usize, drop_last: bool, _seed: u64, _epoch: usize) -> Vec<Vec<usize>> {
        chunk((0..len).collect(), batch_size, drop_last)
    }
}

/// A fresh seeded permutation every epoch (training).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shuffled;

impl BatchSampler for Shuffled {
    fn batches(&self, len: usize, batch_size: usize, drop_last: bool, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        chunk(permutation(len, seed, epoch), batch_size, drop_last)
    }
}

/// Length-bucketed batching, as Hugging Face's `group_by_length`: shuffle, cut into mega-batches of
/// `batch_size × multiplier` examples, sort each by length (longest first) and cut into batches, then shuffle the
/// batches. Batches then hold examples of similar length, so padding is small.
#[derive(Debug, Clone)]
pub struct LengthBuckets {
    /// Length of each example (tokens, audio frames…).
    pub lengths: Vec<usize>,
    /// Mega-batch size in batches.
    pub multiplier: usize,
}

impl BatchSampler for LengthBuckets {
    fn batches(&self, len: usize, batch_size: usize, drop_last: bool, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        let order = permutation(len, seed, epoch);
        let mega = batch_size.max(1) * self.multiplier.max(1);
        let mut sorted = Vec::with_capacity(len);
        for group in order.chunks(mega) {
            let mut g = group.to_vec();
            g.sort_by_key(|&i| std::cmp::Reverse(self.lengths.get(i).copied().unwrap_or(0)));
            sorted.extend(g);
        }
        let mut batches = chunk(sorted, batch_size, drop_last);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch as u64, 0x4255_434B]));
        batches.shuffle(&mut rng);
        batches
    }
}

/// One rank's share of another sampler's batches under data parallelism, as PyTorch's `DistributedSampler`.
///
/// The inner sampler plans global batches of `batch_size × world` examples (the same plan on every rank, seeded per
/// epoch); rank `r` takes positions `r, r + world, …` of each. With [`Shuffled`] this is exactly
/// `DistributedSampler`'s `indices[rank::world]`, and the union over ranks of the k-th batches is the k-th batch of
/// a single process whose batch is `batch_size × world`. A last global batch that does not split evenly is padded
/// with examples from the start of the epoch, as `DistributedSampler` pads, so every rank runs the same number of
/// equally sized batches.
#[derive(Clone)]
pub struct Sharded {
    /// The sampler every rank plans with.
    pub inner: std::sync::Arc<dyn BatchSampler>,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
}

impl BatchSampler for Sharded {
    fn batches(&self, len: usize, batch_size: usize, drop_last: bool, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        let world = self.world.max(1);
        let global = self.inner.batches(len, batch_size * world, drop_last, seed, epoch);
        let first: Vec<usize> = global.iter().flatten().copied().take(world).collect();
        global
            .into_iter()
            .map(|mut g| {
                let mut k = 0;
                while !g.len().is_multiple_of(world) && !first.is_empty() {
                    g.push(first[k % first.len()]);
                    k += 1;
                }
                g.into_iter().skip(self.rank).step_by(world).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_is_a_seeded_permutation_with_drop_last() {
        let a = Shuffled.batches(10, 4, true, 7, 0);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|b| b.len() == 4));
        let b = Shuffled.batches(10, 4, false, 7, 0);
        assert_eq!(b.len(), 3);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(Shuffled.batches(10, 4, false, 7, 0), b, "same seed and epoch, same order");
        assert_ne!(Shuffled.batches(10, 4, false, 7, 1), b, "a new epoch reshuffles");
        assert_ne!(Shuffled.batches(10, 4, false, 8, 0), b, "a new seed reshuffles");
    }

    #[test]
    fn sharded_batches_are_the_single_process_batches_split_by_rank() {
        // 10 examples, per-rank batch 2 on 2 ranks: global batches of 4, the last of 2.
        let single = Shuffled.batches(10, 4, false, 7, 3);
        let ranks: Vec<Vec<Vec<usize>>> = (0..2)
            .map(|rank| Sharded { inner: std::sync::Arc::new(Shuffled), rank, world: 2 }.batches(10, 2, false, 7, 3))
            .collect();
        assert_eq!(ranks[0].len(), single.len());
        assert_eq!(ranks[1].len(), single.len());
        for (k, g) in single.iter().enumerate() {
            let mut union: Vec<usize> = ranks[0][k].iter().chain(&ranks[1][k]).copied().collect();
            let mut want = g.clone();
            union.sort();
            want.sort();
            assert_eq!(union, want, "batch {k}");
            // DistributedSampler's stride: rank r holds positions r, r + 2, … of the global batch.
            assert_eq!(ranks[1][k], g.iter().skip(1).step_by(2).copied().collect::<Vec<_>>());
        }
        // 7 examples on 2 ranks, per-rank batch 2: the last global batch (3 examples) is padded to 4.
        let a = Sharded { inner: std::sync::Arc::new(Shuffled), rank: 0, world: 2 }.batches(7, 2, false, 1, 0);
        let b = Sharded { inner: std::sync::Arc::new(Shuffled), rank: 1, world: 2 }.batches(7, 2, false, 1, 0);
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        let mut seen: Vec<usize> = a.concat().into_iter().chain(b.concat()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, (0..7).collect::<Vec<_>>(), "every example is seen");
    }

    #[test]
    fn length_buckets_group_similar_lengths() {
        let lengths: Vec<usize> = (0..64).map(|i| (i * 37) % 64).collect();
        let s = LengthBuckets { lengths: lengths.clone(), multiplier: 8 };
        let batches = s.batches(64, 8, false, 3, 0);
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
        // Whole data fits one mega-batch, so each batch spans 8 consecutive lengths.
        for b in &batches {
            let ls: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
            assert!(ls.iter().max().unwrap() - ls.iter().min().unwrap() <= 7, "{ls:?}");
        }
    }
}
