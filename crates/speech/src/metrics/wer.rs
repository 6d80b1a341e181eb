//! Word and character error rates, computed exactly as jiwer 4.0.0: the same default transforms and the same
//! alignment as its rapidfuzz `Levenshtein.opcodes` (common prefix and suffix removed, then Hyyrö's bit-parallel
//! matrix traced back from the end preferring deletion, then insertion, then substitution), so the split between
//! substitutions, deletions and insertions is jiwer's, not merely the total.

use anyhow::{ensure, Result};

/// Edit counts over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Reference tokens replaced by another token.
    pub substitutions: usize,
    /// Reference tokens missing from the hypothesis.
    pub deletions: usize,
    /// Hypothesis tokens with no reference counterpart.
    pub insertions: usize,
    /// Tokens that match.
    pub hits: usize,
}

impl ErrorCounts {
    /// (S + D + I) / (S + D + H). With no reference tokens at all this is the number of insertions, as jiwer
    /// returns it (0 for empty against empty).
    pub fn rate(&self) -> f64 {
        let reference = self.substitutions + self.deletions + self.hits;
        let errors = self.substitutions + self.deletions + self.insertions;
        if reference == 0 {
            return self.insertions as f64;
        }
        errors as f64 / reference as f64
    }

    /// Number of reference tokens (S + D + H).
    pub fn reference_len(&self) -> usize {
        self.substitutions + self.deletions + self.hits
    }

    fn add(&mut self, other: ErrorCounts) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.hits += other.hits;
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators U+001C–U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Token sequences of a corpus as integers, shared between references and hypotheses (jiwer's `_word2int`).
struct Interner {
    ids: std::collections::HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, token: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(token.to_string()).or_insert(next)
    }
}

fn check_lengths(references: &[String], hypotheses: &[String]) -> Result<()> {
    ensure!(
        references.len() == hypotheses.len(),
        "WER/CER need one hypothesis per reference: got {} references and {} hypotheses",
        references.len(),
        hypotheses.len()
    );
    Ok(())
}

/// Corpus word error counts, as jiwer 4.0.0's `wer()`/`process_words()` with its default transforms: all pairs are
/// aligned separately and the counts summed, so `rate()` is the corpus WER.
pub fn wer(references: &[String], hypotheses: &[String]) -> Result<ErrorCounts> {
    check_lengths(references, hypotheses)?;
    let mut interner = Interner { ids: Default::default() };
    let mut total = ErrorCounts::default();
    for (r, h) in references.iter().zip(hypotheses) {
        let r: Vec<u32> = word_tokens(r).iter().map(|w| interner.id(w)).collect();
        let h: Vec<u32> = word_tokens(h).iter().map(|w| interner.id(w)).collect();
        total.add(align_counts(&r, &h));
    }
    Ok(total)
}

/// Corpus character error counts, as jiwer 4.0.0's `cer()`: each sentence is stripped of leading and trailing
/// whitespace, then compared character by character (Unicode scalar values, spaces included, inner runs of
/// spaces kept).
pub fn cer(references: &[String], hypotheses: &[String]) -> Result<ErrorCounts> {
    check_lengths(references, hypotheses)?;
    let mut total = ErrorCounts::default();
    for (r, h) in references.iter().zip(hypotheses) {
        let r: Vec<u32> = r.trim_matches(is_py_space).chars().map(u32::from).collect();
        let h: Vec<u32> = h.trim_matches(is_py_space).chars().map(u32::from).collect();
        total.add(align_counts(&r, &h));
    }
    Ok(total)
}

/// The words of one sentence under jiwer's `wer_default`.
fn word_tokens(s: &str) -> Vec<String> {
    let mut collapsed = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars() {
        if is_py_space(c) {
            run.push(c);
            continue;
        }
        flush_run(&mut run, &mut collapsed);
        collapsed.push(c);
    }
    flush_run(&mut run, &mut collapsed);
    collapsed.trim_matches(is_py_space).split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// `re.sub(r"\s\s+", " ", …)`: a run of two or more whitespace characters becomes one space; one stays as is.
fn flush_run(run: &mut String, out: &mut String) {
    if run.chars().count() >= 2 {
        out.push(' ');
    } else {
        out.push_str(run);
    }
    run.clear();
}

/// Counts of rapidfuzz's `Levenshtein.opcodes(r, h)`.
fn align_counts(r: &[u32], h: &[u32]) -> ErrorCounts {
    let prefix = r.iter().zip(h).take_while(|(a, b)| a == b).count();
    let (r_rest, h_rest) = (&r[prefix..], &h[prefix..]);
    let suffix = r_rest.iter().rev().zip(h_rest.iter().rev()).take_while(|(a, b)| a == b).count();
    let s1 = &r_rest[..r_rest.len() - suffix];
    let s2 = &h_rest[..h_rest.len() - suffix];
    let (n, m) = (s1.len(), s2.len());
    let mut counts = ErrorCounts { hits: prefix + suffix, ..Default::default() };

    // Vertical deltas D[i][j] - D[i-1][j] for every column j ≥ 1 (after reading s2[j-1]): the VP/VN bit matrices of
    // Hyyrö's algorithm, here from a plain dynamic-programming column so any length works.
    let mut vp = BitMatrix::new(m, n);
    let mut vn = BitMatrix::new(m, n);
    let mut prev: Vec<usize> = (0..=n).collect();
    let mut cur = vec![0usize; n + 1];
    for j in 1..=m {
        cur[0] = j;
        for i in 1..=n {
            let sub = prev[i - 1] + usize::from(s1[i - 1] != s2[j - 1]);
            cur[i] = sub.min(prev[i] + 1).min(cur[i - 1] + 1);
            if cur[i] > cur[i - 1] {
                vp.set(j - 1, i - 1);
            } else if cur[i] < cur[i - 1] {
                vn.set(j - 1, i - 1);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }

    let (mut col, mut row) = (n, m);
    while row != 0 && col != 0 {
        if vp.get(row - 1, col - 1) {
            col -= 1;
            counts.deletions += 1;
        } else {
            row -= 1;
            if row != 0 && vn.get(row - 1, col - 1) {
                counts.insertions += 1;
            } else {
                col -= 1;
                if s1[col] != s2[row] {
                    counts.substitutions += 1;
                } else {
                    counts.hits += 1;
                }
            }
        }
    }
    counts.deletions += col;
    counts.insertions += row;
    counts
}

/// A dense bit matrix, rows × cols.
struct BitMatrix {
    words_per_row: usize,
    bits: Vec<u64>,
}

impl BitMatrix {
    fn new(rows: usize, cols: usize) -> Self {
        let words_per_row = cols.div_ceil(64);
        BitMatrix { words_per_row, bits: vec![0; rows * words_per_row] }
    }
    fn set(&mut self, row: usize, col: usize) {
        self.bits[row * self.words_per_row + col / 64] |= 1 << (col % 64);
    }
    fn get(&self, row: usize, col: usize) -> bool {
        self.bits[row * self.words_per_row + col / 64] & (1 << (col % 64)) != 0
    }
}
