//! The "duplicates" section: exact copies (the same bytes under another name) and near copies (re-encoded, resized
//! or lightly edited images), each within a split and across splits, where a copy leaks training examples into
//! evaluation.
//!
//! Near copies are pairs whose perceptual hashes are within `near_distance` bits, confirmed on the 32 x 32
//! greyscale thumbnails the hashes come from: their pixel correlation must reach [`NEAR_MIN_CORRELATION`]. The
//! hash alone is too coarse for small, plain images: on MNIST-5k, 1 090 pairs of different digits across train and
//! val are within 4 bits (every planted copy was too), and the correlation check keeps the copies (all above 0.994)
//! and drops all but 2 of those.

use suite_core::quality::duplicates::{exact_groups, groups_from_pairs, hamming_pairs, report_groups, Items};
use suite_core::quality::report::{Section, Severity};

use super::scan::FileFacts;
use super::splits::Data;

/// Smallest Pearson correlation of the 32 x 32 thumbnails of a near-duplicate pair (brightness and contrast
/// changes keep it; a different picture with a similar coarse layout does not reach it).
pub const NEAR_MIN_CORRELATION: f64 = 0.98;

/// What the duplicate search found, for callers that score it.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Exact-copy groups (example indices).
    pub exact: Vec<Vec<usize>>,
    /// Near-copy groups, from pairs that are not byte-identical.
    pub near: Vec<Vec<usize>>,
    /// Pairs within the hash distance (not byte-identical) that the thumbnail check rejected.
    pub near_rejected: usize,
}

/// Groups of byte-identical files and of perceptually near images (pairs of identical files left out of the latter,
/// so that each copy is counted once, as exact).
pub fn find(facts: &[FileFacts], near_distance: u32) -> Found {
    // Files that cannot be read get a key of their own: they are nobody's copy.
    let keys: Vec<String> =
        facts.iter().enumerate().map(|(i, f)| f.hash.clone().unwrap_or_else(|| format!("unread:{i}"))).collect();
    let exact = exact_groups(&keys);
    let decoded: Vec<usize> = (0..facts.len()).filter(|&i| facts[i].image.is_ok()).collect();
    let hashes: Vec<u64> = decoded.iter().map(|&i| phash_of(facts, i)).collect();
    let candidates: Vec<(usize, usize)> = hamming_pairs(&hashes, near_distance)
        .into_iter()
        .map(|(a, b, _)| (decoded[a], decoded[b]))
        .filter(|&(a, b)| keys[a] != keys[b])
        .collect();
    let pairs: Vec<(usize, usize)> =
        candidates.iter().copied().filter(|&(a, b)| correlation(facts, a, b) >= NEAR_MIN_CORRELATION).collect();
    let near_rejected = candidates.len() - pairs.len();
    let near = groups_from_pairs(facts.len(), pairs);
    Found { exact, near, near_rejected }
}

fn phash_of(facts: &[FileFacts], i: usize) -> u64 {
    facts[i].image.as_ref().map_or(0, |f| f.phash)
}

/// Pearson correlation of two images' thumbnails. A flat thumbnail has none: two flat ones of about the same
/// level count as identical (1), a flat and a textured one as unrelated (0).
pub fn correlation(facts: &[FileFacts], a: usize, b: usize) -> f64 {
    let (Ok(fa), Ok(fb)) = (&facts[a].image, &facts[b].image) else { return 0.0 };
    thumb_correlation(&fa.thumb, &fb.thumb)
}

/// See [`correlation`].
pub fn thumb_correlation(x: &[u8], y: &[u8]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = |v: &[u8]| v.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&p, &q) in x.iter().zip(y) {
        let (dp, dq) = (f64::from(p) - mx, f64::from(q) - my);
        sxy += dp * dq;
        sxx += dp * dp;
        syy += dq * dq;
    }
    // Standard deviation under one grey level: flat.
    let (flat_x, flat_y) = (sxx / n < 1.0, syy / n < 1.0);
    match (flat_x, flat_y) {
        (true, true) => f64::from(u8::from((mx - my).abs() <= 2.0)),
        (false, false) => sxy / (sxx * syy).sqrt(),
        _ => 0.0,
    }
}

/// Builds the section; returns it with what was found.
pub fn section(data: &Data, facts: &[FileFacts], near_distance: u32) -> (Section, Found) {
    let mut s = Section::new("duplicates", "Duplicates");
    let found = find(facts, near_distance);
    let names: Vec<String> = (0..data.examples.len()).map(|i| data.name(i)).collect();
    let split_of: Vec<usize> = data.examples.iter().map(|e| e.split).collect();
    let items = Items { splits: &data.splits, split_of: &split_of, names: &names };
    s.stat("near_distance", near_distance);
    s.stat("near_min_correlation", NEAR_MIN_CORRELATION);
    s.stat("near_candidates_rejected", found.near_rejected);
    let exact = report_groups(&mut s, "exact", &items, &found.exact, &|_, _| "identical bytes".to_string());
    let near = report_groups(&mut s, "near", &items, &found.near, &|a, b| {
        let d = (phash_of(facts, a) ^ phash_of(facts, b)).count_ones();
        format!("hash {d} bits apart, correlation {:.3}", correlation(facts, a, b))
    });
    // Labels disagreeing within a group: at least one copy is mislabelled (or the classes overlap).
    let conflicting = found
        .exact
        .iter()
        .chain(&found.near)
        .filter(|g| g.iter().any(|&m| data.examples[m].label != data.examples[g[0]].label))
        .count();
    s.stat("groups_with_conflicting_labels", conflicting);
    if conflicting > 0 {
        s.advise(
            Severity::Warning,
            format!("{conflicting} duplicate group(s) carry different labels on their copies"),
            "at most one label of each such group can be right: check them in the table and relabel or remove",
        );
    }
    if exact.groups_across + exact.groups_within == 0 {
        s.note(Severity::Ok, "no byte-identical files");
    }
    if near.groups_across + near.groups_within == 0 {
        s.note(
            Severity::Ok,
            format!(
                "no near-duplicate images (perceptual hashes within {near_distance} bits and thumbnails correlated \
                 {NEAR_MIN_CORRELATION} or more)"
            ),
        );
    }
    (s, found)
}
