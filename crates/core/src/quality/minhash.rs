//! Near-duplicate strings: normalise (Unicode lowercase, punctuation removed, whitespace collapsed), cut into
//! character n-gram shingles, sketch each string with MinHash, find candidate pairs by LSH banding, and keep the
//! candidates whose exact Jaccard similarity over the shingle sets reaches a threshold.
//!
//! MinHash estimates Jaccard similarity without comparing every pair; banding turns the signatures into buckets so
//! that only strings sharing a whole band are compared. With `b` bands of `r` rows a pair of similarity `s` becomes a
//! candidate with probability `1 - (1 - s^r)^b`: the default 32 x 4 catches a pair at 0.8 with probability
//! 1 - 5e-8, and the exact Jaccard check removes the false candidates that so low an S-curve lets through.
//!
//! Everything is deterministic: shingles are hashed with FNV-1a (not Rust's randomly keyed `DefaultHasher`), and the
//! permutations come from a seeded ChaCha8 generator.

use std::collections::HashMap;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use unicode_general_category::get_general_category;

/// The Mersenne prime 2^61 - 1: the modulus of the universal hash family `(a x + b) mod p`.
const MERSENNE_61: u64 = (1 << 61) - 1;

/// Settings of the near-duplicate search.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MinHashConfig {
    /// Shingle length in characters (of the normalised string).
    pub ngram: usize,
    /// Number of hash permutations, the signature length.
    pub num_perm: usize,
    /// LSH bands; must divide `num_perm` (rows per band = `num_perm / bands`).
    pub bands: usize,
    /// Seed of the permutations: equal seeds give equal signatures.
    pub seed: u64,
    /// Minimum exact Jaccard similarity of a reported pair.
    pub threshold: f64,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        MinHashConfig { ngram: 5, num_perm: 128, bands: 32, seed: 0x0005_eed0_fd0c, threshold: 0.8 }
    }
}

/// Two strings that are near-duplicates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NearDuplicatePair {
    /// Index of the first string (the smaller index).
    pub a: usize,
    /// Index of the second string.
    pub b: usize,
    /// Exact Jaccard similarity of their shingle sets.
    pub jaccard: f64,
}

/// The result of [`find_near_duplicates`].
#[derive(Clone, Debug, Serialize)]
pub struct NearDuplicates {
    /// Every confirmed pair, ordered by (a, b).
    pub pairs: Vec<NearDuplicatePair>,
    /// Groups of strings linked by confirmed pairs (connected components), each sorted, ordered by first member.
    pub groups: Vec<Vec<usize>>,
    /// How many candidate pairs LSH proposed (the exact comparisons made).
    pub candidates: usize,
}

/// Unicode lowercase, punctuation (general category P*) removed, runs of whitespace collapsed to one space and
/// trimmed; so "Hello,   World!" and "hello world" normalise alike.
pub fn normalize(text: &str) -> String {
    let lowered = text.to_lowercase();
    let kept: String = lowered.chars().filter(|&c| !get_general_category(c).abbreviation().starts_with('P')).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The set of character `n`-gram shingles of an already normalised string, as sorted distinct 64-bit hashes. A
/// string shorter than `n` (but not empty) is one shingle; an empty string has none.
pub fn shingles(normalized: &str, n: usize) -> Vec<u64> {
    let n = n.max(1);
    let bounds: Vec<usize> = normalized.char_indices().map(|(i, _)| i).chain([normalized.len()]).collect();
    let chars = bounds.len() - 1;
    let mut out: Vec<u64> = if chars == 0 {
        Vec::new()
    } else if chars <= n {
        vec![fnv1a(normalized.as_bytes())]
    } else {
        (0..=chars - n).map(|i| fnv1a(&normalized.as_bytes()[bounds[i]..bounds[i + n]])).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Exact Jaccard similarity of two sorted, distinct shingle sets (1 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both as f64 / (a.len() + b.len() - both) as f64
}

/// A seeded family of `num_perm` hash permutations `x -> (a x + b) mod (2^61 - 1)`.
#[derive(Clone, Debug)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    /// `num_perm` permutations drawn from ChaCha8 seeded with `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = (0..num_perm).map(|_| rng.random_range(1..MERSENNE_61)).collect();
        let b = (0..num_perm).map(|_| rng.random_range(0..MERSENNE_61)).collect();
        MinHasher { a, b }
    }

    /// The MinHash signature of a shingle set: per permutation, the least image of any shingle (`u64::MAX` for all
    /// of them when the set is empty). The share of equal positions in two signatures estimates their Jaccard.
    pub fn signature(&self, shingles: &[u64]) -> Vec<u64> {
        let mut sig = vec![u64::MAX; self.a.len()];
        for &s in shingles {
            let x = s % MERSENNE_61;
            for (slot, (&a, &b)) in sig.iter_mut().zip(self.a.iter().zip(&self.b)) {
                let h = ((u128::from(a) * u128::from(x) + u128::from(b)) % u128::from(MERSENNE_61)) as u64;
                if h < *slot {
                    *slot = h;
                }
            }
        }
        sig
    }
}

/// Finds the near-duplicate pairs among `texts` (see the module documentation). Strings that normalise to nothing
/// are never reported.
pub fn find_near_duplicates<S: AsRef<str>>(texts: &[S], config: &MinHashConfig) -> Result<NearDuplicates> {
    if config.num_perm == 0 || config.bands == 0 || !config.num_perm.is_multiple_of(config.bands) {
        bail!("MinHash bands ({}) must divide the number of permutations ({})", config.bands, config.num_perm);
    }
    if config.ngram == 0 {
        bail!("the shingle length must be at least 1");
    }
    let rows = config.num_perm / config.bands;
    let hasher = MinHasher::new(config.num_perm, config.seed);
    let sets: Vec<Vec<u64>> = texts.iter().map(|t| shingles(&normalize(t.as_ref()), config.ngram)).collect();
    let sigs: Vec<Vec<u64>> = sets.iter().map(|s| hasher.signature(s)).collect();

    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for band in 0..config.bands {
        let span = band * rows..(band + 1) * rows;
        let mut buckets: HashMap<&[u64], Vec<usize>> = HashMap::new();
        for (i, sig) in sigs.iter().enumerate() {
            if !sets[i].is_empty() {
                buckets.entry(&sig[span.clone()]).or_default().push(i);
            }
        }
        for members in buckets.values() {
            for (x, &i) in members.iter().enumerate() {
                candidates.extend(members[x + 1..].iter().map(|&j| (i, j)));
            }
        }
    }
    candidates.sort_unstable();
    candidates.dedup();

    let pairs: Vec<NearDuplicatePair> = candidates
        .iter()
        .filter_map(|&(a, b)| {
            let j = jaccard(&sets[a], &sets[b]);
            (j >= config.threshold).then_some(NearDuplicatePair { a, b, jaccard: j })
        })
        .collect();
    Ok(NearDuplicates { groups: components(texts.len(), &pairs), candidates: candidates.len(), pairs })
}

/// Connected components of size 2 or more (union-find with path halving).
fn components(n: usize, pairs: &[NearDuplicatePair]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for p in pairs {
        let (ra, rb) = (root(&mut parent, p.a), root(&mut parent, p.b));
        // The smaller index becomes the root, so groups come out keyed by their first member.
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort_unstable_by_key(|g| g[0]);
    out
}

/// 64-bit FNV-1a: a fixed, portable hash, so shingle hashes (and signatures) are equal across runs and machines.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
#[path = "minhash_tests.rs"]
mod tests;
