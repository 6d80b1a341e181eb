//! From per-window start/end logits to answer texts, as Hugging Face's `postprocess_qa_predictions`
//! (`examples/pytorch/question-answering/utils_qa.py`).

use std::cmp::Ordering;

use super::qa::QaDataset;

/// The answer predicted for one question.
#[derive(Debug, Clone, PartialEq)]
pub struct QaPrediction {
    /// The question id.
    pub id: String,
    /// The answer text (a slice of the context); "" when SQuAD v2 post-processing predicts no answer.
    pub text: String,
    /// Where `text` is in the context: character (Unicode scalar) offsets `[start, end)`; `None` when there is no
    /// answer (the SQuAD v2 null answer, or HF's "empty" placeholder when no span was valid).
    pub span: Option<(usize, usize)>,
    /// Score of the chosen answer: start logit + end logit (the null score when `text` is "").
    pub score: f32,
    /// The n best candidates, best first, with their softmax probability over the n best. The null answer
    /// appears as "" (SQuAD v2); "empty" is HF's placeholder when no span was valid.
    pub n_best: Vec<(String, f32)>,
    /// SQuAD v2: best null score minus the best non-null span's score (`null_odds` of HF's evaluation).
    pub null_score_diff: Option<f32>,
}

#[derive(Clone)]
struct Candidate {
    /// Character span in the context; `None` for the null answer.
    span: Option<(usize, usize)>,
    score: f32,
    start_logit: f32,
    end_logit: f32,
}

/// The `n` largest indices of `logits`, largest first; ties go to the higher index, as `np.argsort(x)[::-1]`
/// with a stable sort.
fn top_indices(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(b.cmp(&a)));
    idx.truncate(n);
    idx
}

/// Character range → substring, clamped to the text (offsets come from the tokenizer, so they are in range).
fn char_slice(text: &str, (start, end): (usize, usize)) -> String {
    text.chars().skip(start).take(end.saturating_sub(start)).collect()
}

impl QaDataset {
    /// HF postprocess_qa_predictions: per example, n-best start/end pairs over all its features (only context
    /// tokens, end ≥ start, length ≤ max_answer_len), mapped back to context text by offsets; SQuAD v2
    /// (`with_null`): predict "" when the best null score (CLS) exceeds the best span by more than `null_threshold`.
    ///
    /// `start_logits[f]` and `end_logits[f]` are the logits of feature `f` (its length, or padded longer; padded
    /// positions are never chosen). Features with no logits are skipped. Scores add `f32` logits as numpy does.
    pub fn postprocess(
        &self,
        start_logits: &[Vec<f32>],
        end_logits: &[Vec<f32>],
        n_best: usize,
        max_answer_len: usize,
        with_null: bool,
        null_threshold: f32,
    ) -> Vec<QaPrediction> {
        self.examples
            .iter()
            .map(|example| {
                let mut null: Option<Candidate> = None;
                let mut candidates = Vec::new();
                for &f in &example.features {
                    let (Some(starts), Some(ends)) = (start_logits.get(f), end_logits.get(f)) else { continue };
                    let (Some(&s0), Some(&e0)) = (starts.first(), ends.first()) else { continue };
                    let offsets = &self.features[f].offsets;
                    let null_score = s0 + e0;
                    if null.as_ref().is_none_or(|n| n.score > null_score) {
                        null = Some(Candidate { span: None, score: null_score, start_logit: s0, end_logit: e0 });
                    }
                    let ends_top = top_indices(ends, n_best);
                    for s in top_indices(starts, n_best) {
                        for &e in &ends_top {
                            let (Some(Some(so)), Some(Some(eo))) = (offsets.get(s), offsets.get(e)) else { continue };
                            if e < s || e - s + 1 > max_answer_len {
                                continue;
                            }
                            candidates.push(Candidate {
                                span: Some((so.0, eo.1)),
                                score: starts[s] + ends[e],
                                start_logit: starts[s],
                                end_logit: ends[e],
                            });
                        }
                    }
                }
                let null_score = null.as_ref().map(|n| n.score);
                if with_null {
                    candidates.extend(null.clone());
                }
                // Stable, like Python's `sorted(..., reverse=True)` on equal scores.
                candidates.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
                candidates.truncate(n_best);
                if with_null && !candidates.iter().any(|c| c.span.is_none() || c.span == Some((0, 0))) {
                    candidates.extend(null);
                }
                let mut texts: Vec<String> = candidates
                    .iter()
                    .map(|c| c.span.map_or(String::new(), |sp| char_slice(&example.context, sp)))
                    .collect();
                if candidates.is_empty() || (candidates.len() == 1 && texts[0].is_empty()) {
                    candidates.insert(0, Candidate { span: None, score: 0.0, start_logit: 0.0, end_logit: 0.0 });
                    texts.insert(0, "empty".into());
                }
                let max = candidates.iter().map(|c| c.score as f64).fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = candidates.iter().map(|c| (c.score as f64 - max).exp()).collect();
                let total: f64 = exp.iter().sum();
                let n_best_list: Vec<(String, f32)> =
                    texts.iter().zip(&exp).map(|(t, x)| (t.clone(), (x / total) as f32)).collect();
                if !with_null {
                    return QaPrediction {
                        id: example.id.clone(),
                        text: texts[0].clone(),
                        span: candidates[0].span,
                        score: candidates[0].score,
                        n_best: n_best_list,
                        null_score_diff: None,
                    };
                }
                let best = texts.iter().position(|t| !t.is_empty()).unwrap_or(0);
                let null_score = null_score.unwrap_or(0.0);
                let diff = null_score - candidates[best].start_logit - candidates[best].end_logit;
                let (text, span, score) = if diff > null_threshold {
                    (String::new(), None, null_score)
                } else {
                    (texts[best].clone(), candidates[best].span, candidates[best].score)
                };
                QaPrediction {
                    id: example.id.clone(),
                    text,
                    span,
                    score,
                    n_best: n_best_list,
                    null_score_diff: Some(diff),
                }
            })
            .collect()
    }
}
