//! Near-duplicates: planted pairs found, LSH recall checked against all pairs compared exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

#[test]
fn normalisation() {
    assert_eq!(normalize("  Hello,   World!\n\tÉTÉ — «Ça»  "), "hello world été ça");
    assert_eq!(normalize("don't STOP"), "dont stop");
    assert_eq!(normalize(""), "");
    assert_eq!(shingles("abc", 5).len(), 1);
    assert_eq!(shingles("", 5).len(), 0);
    // Multi-byte characters count as one: "ééééé" has one 5-gram.
    assert_eq!(shingles("ééééé", 5).len(), 1);
    assert_eq!(shingles("abcdefg", 5).len(), 3);
    assert_eq!(jaccard(&shingles("abcdefg", 5), &shingles("abcdefg", 5)), 1.0);
}

#[test]
fn signatures_are_deterministic_and_estimate_jaccard() {
    let h1 = MinHasher::new(128, 7);
    let h2 = MinHasher::new(128, 7);
    let a = shingles(&normalize("the quick brown fox jumps over the lazy dog again and again"), 5);
    let b = shingles(&normalize("the quick brown fox jumped over the lazy dog again and again"), 5);
    assert_eq!(h1.signature(&a), h2.signature(&a));
    assert_ne!(h1.signature(&a), MinHasher::new(128, 8).signature(&a));
    let (sa, sb) = (h1.signature(&a), h1.signature(&b));
    let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 128.0;
    let exact = jaccard(&a, &b);
    assert!((est - exact).abs() < 0.15, "MinHash estimate {est} vs exact {exact}");
}

/// Random sentences over a small vocabulary, with planted near-duplicates (a word changed, case, punctuation and
/// spacing varied) and exact duplicates.
#[test]
fn planted_near_duplicates_are_found() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    // Pseudo-words, so that unrelated sentences share few shingles, as real texts do.
    let words: Vec<String> = (0..3000)
        .map(|_| (0..rng.random_range(3..10)).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect())
        .collect();
    let mut texts: Vec<String> = (0..400)
        .map(|_| {
            (0..rng.random_range(20..40))
                .map(|_| words[rng.random_range(0..words.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut planted = Vec::new();
    for p in 0..40 {
        let src = rng.random_range(0..400);
        let mut toks: Vec<String> = texts[src].split(' ').map(String::from).collect();
        match p % 4 {
            // One word replaced.
            0 => {
                let i = rng.random_range(0..toks.len());
                toks[i] = "zebra".into();
            }
            // Case, punctuation and spacing only: identical after normalisation.
            1 => {
                toks[0] = toks[0].to_uppercase();
                toks.last_mut().unwrap().push('!');
                toks[1].push(',');
            }
            // One word dropped.
            2 => {
                let i = rng.random_range(0..toks.len());
                toks.remove(i);
            }
            // Exact copy.
            _ => {}
        }
        let sep = if p % 4 == 1 { "   " } else { " " };
        planted.push((src, texts.len()));
        texts.push(toks.join(sep));
    }
    let cfg = MinHashConfig::default();
    let found = find_near_duplicates(&texts, &cfg).unwrap();
    let sets: Vec<Vec<u64>> = texts.iter().map(|t| shingles(&normalize(t), cfg.ngram)).collect();
    // Every pair above the threshold, by brute force.
    let mut truth = Vec::new();
    for a in 0..texts.len() {
        for b in a + 1..texts.len() {
            let j = jaccard(&sets[a], &sets[b]);
            if j >= cfg.threshold {
                truth.push((a, b));
            }
        }
    }
    let got: Vec<(usize, usize)> = found.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(got, truth, "LSH missed or invented pairs");
    for (src, copy) in &planted {
        assert!(got.contains(&(*src.min(copy), *src.max(copy))), "planted pair ({src}, {copy}) not found");
    }
    assert!(found.pairs.iter().all(|p| p.jaccard >= 0.8 && p.jaccard <= 1.0));
    assert!(found.groups.iter().all(|g| g.len() >= 2 && g.windows(2).all(|w| w[0] < w[1])));
    // Banding keeps the exact comparisons far below all pairs (about 88 000 here).
    assert!(found.candidates < 5000, "{} candidates", found.candidates);
    assert!(find_near_duplicates(&texts, &MinHashConfig { bands: 30, ..cfg }).is_err());
}

#[test]
fn empty_strings_are_not_duplicates() {
    let found = find_near_duplicates(&["", "!!!", "   ", "a real sentence here"], &MinHashConfig::default()).unwrap();
    assert!(found.pairs.is_empty());
}
