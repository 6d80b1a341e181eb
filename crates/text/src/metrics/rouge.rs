//! ROUGE-L as Google's `rouge-score` package computes it (`rouge_scorer.RougeScorer(["rougeL"])`, no stemming):
//! lowercase, every run of characters other than `a-z0-9` is a separator, and the score is the F-measure of the
//! longest common subsequence of the two token lists.

/// `rouge-score`'s default tokenization: lowercase, non-alphanumeric (ASCII) characters as separators.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Length of the longest common subsequence of `a` and `b`.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L precision, recall and F-measure of `prediction` against `target`; all zero when either has no token.
pub fn rouge_l(target: &str, prediction: &str) -> (f64, f64, f64) {
    let (t, p) = (rouge_tokens(target), rouge_tokens(prediction));
    if t.is_empty() || p.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let lcs = lcs_len(&t, &p) as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / t.len() as f64;
    let f = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    (precision, recall, f)
}
