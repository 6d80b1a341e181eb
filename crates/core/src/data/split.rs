use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::device::mix_seed;

/// Chooses the validation items of a seeded stratified split: `val_fraction` of every stratum (rounded, at least
/// one item of a stratum with two or more, never its last one), by a seeded shuffle per stratum so the split of
/// one stratum does not depend on the others. `strata[i]` is item `i`'s class (use one stratum for a plain random
/// split). Returns `is_val` per item.
pub fn stratified_split_mask(strata: &[usize], val_fraction: f64, seed: u64) -> Vec<bool> {
    let n_strata = strata.iter().map(|s| s + 1).max().unwrap_or(0);
    let mut by_stratum: Vec<Vec<usize>> = vec![Vec::new(); n_strata];
    for (i, &s) in strata.iter().enumerate() {
        by_stratum[s].push(i);
    }
    let mut is_val = vec![false; strata.len()];
    for (c, mut idx) in by_stratum.into_iter().enumerate() {
        let n = idx.len();
        if n < 2 {
            continue;
        }
        let k = ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[seed, c as u64, 0x5641_4C53]));
        idx.shuffle(&mut rng);
        for &i in &idx[..k] {
            is_val[i] = true;
        }
    }
    is_val
}

/// Splits `items` by [`stratified_split_mask`]; both halves keep the input order.
pub fn stratified_split<T: Clone>(items: &[T], strata: &[usize], val_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (s, v) in items.iter().zip(stratified_split_mask(strata, val_fraction, seed)) {
        if v {
            val.push(s.clone());
        } else {
            train.push(s.clone());
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stratum_is_split_and_the_split_is_seeded() {
        let strata: Vec<usize> = (0..100).map(|i| if i < 90 { 0 } else { 1 + (i % 2) }).collect();
        let m = stratified_split_mask(&strata, 0.2, 7);
        assert_eq!(m.iter().zip(&strata).filter(|(v, s)| **v && **s == 0).count(), 18);
        assert_eq!(m.iter().zip(&strata).filter(|(v, s)| **v && **s == 1).count(), 1);
        assert_eq!(m, stratified_split_mask(&strata, 0.2, 7));
        assert_ne!(m, stratified_split_mask(&strata, 0.2, 8));
        let (t, v) = stratified_split(&(0..100).collect::<Vec<_>>(), &strata, 0.2, 7);
        assert_eq!(t.len() + v.len(), 100);
        assert!(v.windows(2).all(|w| w[0] < w[1]), "order kept");
    }
}
