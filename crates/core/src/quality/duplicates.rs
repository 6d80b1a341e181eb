//! Duplicate groups among the items of several splits and how a report lists them. Domains supply the keys (content
//! hashes, perceptual hashes, normalised texts, MinHash pairs); this module groups them, separates duplicates within
//! a split from duplicates across splits (leakage: the same example in train and test inflates the test score), and
//! writes the findings and the pair table of a report section.

use std::collections::HashMap;
use std::hash::Hash;

use super::report::{Section, Severity, Table};

/// Groups of items with equal keys (two or more members each, members ascending, groups by first member).
pub fn exact_groups<K: Eq + Hash>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut by_key: HashMap<&K, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by_key.entry(k).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_key.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    groups
}

/// Every pair of 64-bit hashes at Hamming distance `max_distance` or less, as `(a, b, distance)` with `a < b`. All
/// pairs are compared (a popcount each: 50 M pairs a second), exact for any threshold.
pub fn hamming_pairs(hashes: &[u64], max_distance: u32) -> Vec<(usize, usize, u32)> {
    let mut out = vec![];
    for (a, &ha) in hashes.iter().enumerate() {
        for (b, &hb) in hashes.iter().enumerate().skip(a + 1) {
            let d = (ha ^ hb).count_ones();
            if d <= max_distance {
                out.push((a, b, d));
            }
        }
    }
    out
}

/// Connected components of `pairs` over `n` items (two or more members each), as [`exact_groups`] orders them.
pub fn groups_from_pairs(n: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Vec<Vec<usize>> {
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..n).collect();
    for (a, b) in pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        by_root.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_root.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    groups
}

/// The items of a report across splits: item `i` belongs to split `split_of[i]` and is shown as `names[i]` (a path,
/// or "line 12: first words…").
pub struct Items<'a> {
    /// Split names (`train`, `val`, `test`), indexed by `split_of`.
    pub splits: &'a [String],
    /// The split of each item.
    pub split_of: &'a [usize],
    /// How each item is shown.
    pub names: &'a [String],
}

/// How many duplicates a kind of check found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DuplicateCounts {
    /// Groups whose members all lie in one split.
    pub groups_within: usize,
    /// Groups with members in two or more splits.
    pub groups_across: usize,
    /// Items beyond the first of each group (what removing the copies would remove).
    pub extra_copies: usize,
    /// Pairs of members in different splits (what a leakage check counts).
    pub pairs_across: usize,
}

/// Adds `groups` (from [`exact_groups`] or [`groups_from_pairs`]) of kind `kind` ("exact", "near") to `section`:
/// the counts as stats `{kind}_…`, a finding for duplicates within splits (a warning) and one for duplicates across
/// splits (a problem: leakage), and a table of the pairs across splits then within, each member with its split.
/// `similarity(a, b)` describes how alike two members are ("identical bytes", "Hamming 3", "Jaccard 0.91").
pub fn report_groups(
    section: &mut Section,
    kind: &str,
    items: &Items,
    groups: &[Vec<usize>],
    similarity: &dyn Fn(usize, usize) -> String,
) -> DuplicateCounts {
    let mut counts = DuplicateCounts::default();
    let mut across_rows = vec![];
    let mut within_rows = vec![];
    // Extra copies of the groups that stay within one split, for that finding's message.
    let mut extra_within = 0;
    for (g, members) in groups.iter().enumerate() {
        counts.extra_copies += members.len() - 1;
        let first_split = items.split_of[members[0]];
        let across = members.iter().any(|&m| items.split_of[m] != first_split);
        if across {
            counts.groups_across += 1;
        } else {
            counts.groups_within += 1;
            extra_within += members.len() - 1;
        }
        // Every pair of the group is listed when it is small; a large group lists each member against the first.
        let pairs: Vec<(usize, usize)> = if members.len() <= 6 {
            members.iter().enumerate().flat_map(|(i, &a)| members[i + 1..].iter().map(move |&b| (a, b))).collect()
        } else {
            members[1..].iter().map(|&b| (members[0], b)).collect()
        };
        for (a, b) in pairs {
            let (sa, sb) = (items.split_of[a], items.split_of[b]);
            let row = vec![
                (g + 1).to_string(),
                items.splits[sa].clone(),
                items.names[a].clone(),
                items.splits[sb].clone(),
                items.names[b].clone(),
                similarity(a, b),
            ];
            if sa != sb {
                counts.pairs_across += 1;
                across_rows.push(row);
            } else {
                within_rows.push(row);
            }
        }
    }
    section.stat(&format!("{kind}_groups_within_splits"), counts.groups_within);
    section.stat(&format!("{kind}_groups_across_splits"), counts.groups_across);
    section.stat(&format!("{kind}_pairs_across_splits"), counts.pairs_across);
    section.stat(&format!("{kind}_extra_copies"), counts.extra_copies);
    if counts.groups_across > 0 {
        section.advise(
            Severity::Problem,
            format!(
                "{} {kind}-duplicate group(s) span splits ({} pair(s) across splits): the same example is trained on \
                 and evaluated on, so held-out scores are inflated",
                counts.groups_across, counts.pairs_across
            ),
            "remove the copies from the validation and test splits (or split by source, so that copies stay together)",
        );
    }
    if counts.groups_within > 0 {
        section.advise(
            Severity::Warning,
            format!("{} {kind}-duplicate group(s) within a split ({extra_within} extra copies)", counts.groups_within),
            "drop the extra copies unless the repetition is intended (it weights those examples more)",
        );
    }
    if !across_rows.is_empty() || !within_rows.is_empty() {
        let mut rows = across_rows;
        rows.extend(within_rows);
        section.tables.push(Table {
            title: format!("{kind} duplicates (pairs across splits first)"),
            columns: ["group", "split", "item", "split", "duplicate", "similarity"].map(String::from).to_vec(),
            rows,
        });
    }
    counts
}
