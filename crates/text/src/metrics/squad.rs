//! SQuAD exact match and F1, equal to the official evaluation scripts `evaluate-v1.1.py` and `evaluate-v2.0.py`
//! (Rajpurkar et al.; transformers 5 no longer ships their `squad_metrics` copy).

pub(crate) mod pystr;

use std::collections::{HashMap, HashSet};

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use suite_core::metrics::Metrics;

/// The official `normalize_answer`: lower-case, remove ASCII punctuation (`string.punctuation`), remove the
/// articles `a`, `an`, `the` as whole words (Python `re`'s Unicode `\b`), and collapse whitespace to single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lowered = pystr::lower(s);
    let no_punc: String = lowered.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = remove_articles(&no_punc);
    pystr::split(&no_articles).collect::<Vec<_>>().join(" ")
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`: the pattern matches exactly a maximal run of word characters that is one
/// of the three articles, so every such run becomes one space.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let run_len = rest.char_indices().find(|&(_, c)| !pystr::is_word(c)).map_or(rest.len(), |(i, _)| i);
        if run_len == 0 {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..run_len];
        out.push_str(if matches!(word, "a" | "an" | "the") { " " } else { word });
        rest = &rest[run_len..];
    }
    out
}

fn tokens(s: &str) -> Vec<String> {
    pystr::split(&normalize_answer(s)).map(str::to_string).collect()
}

/// Tokens the two sides share, counted with multiplicity (`sum((Counter(a) & Counter(b)).values())`).
fn common(a: &[String], b: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in a {
        *counts.entry(t).or_default() += 1;
    }
    b.iter()
        .filter(|t| match counts.get_mut(t.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

/// Token F1 once there is a common token, in the scripts' order of operations.
fn token_f1(num_same: usize, n_pred: usize, n_truth: usize) -> f64 {
    let precision = num_same as f64 / n_pred as f64;
    let recall = num_same as f64 / n_truth as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// 1 when the normalised strings are equal, else 0 (`exact_match_score` / `compute_exact`).
pub fn exact_match(prediction: &str, truth: &str) -> f64 {
    f64::from(u8::from(normalize_answer(prediction) == normalize_answer(truth)))
}

/// Token-level F1 of evaluate-v2.0.py (`compute_f1`): when either side normalises to no token, 1 if both do and 0
/// otherwise, so an empty prediction for an unanswerable question scores 1.
pub fn f1(prediction: &str, truth: &str) -> f64 {
    let (p, t) = (tokens(prediction), tokens(truth));
    if p.is_empty() || t.is_empty() {
        return f64::from(u8::from(p.is_empty() && t.is_empty()));
    }
    match common(&p, &t) {
        0 => 0.0,
        n => token_f1(n, p.len(), t.len()),
    }
}

/// Token-level F1 of evaluate-v1.1.py (`f1_score`): 0 whenever no token is shared, empty sides included (so two
/// empty answers score 0 here but 1 in [`f1`]).
pub fn f1_v1(prediction: &str, truth: &str) -> f64 {
    let (p, t) = (tokens(prediction), tokens(truth));
    match common(&p, &t) {
        0 => 0.0,
        n => token_f1(n, p.len(), t.len()),
    }
}

/// The official scripts' summary, in percent (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SquadScores {
    /// Exact match over all questions (`exact_match` in v1.1, `exact` in v2.0).
    pub exact: f64,
    /// Token F1 over all questions.
    pub f1: f64,
    /// Number of questions.
    pub total: usize,
    /// v2.0 only, when some question has answers: exact match over those (`HasAns_exact`).
    pub has_ans_exact: Option<f64>,
    /// v2.0 only: F1 over the questions with answers (`HasAns_f1`).
    pub has_ans_f1: Option<f64>,
    /// v2.0 only, when some question has no answer: exact match over those (`NoAns_exact`).
    pub no_ans_exact: Option<f64>,
    /// v2.0 only: F1 over the questions without answers (`NoAns_f1`).
    pub no_ans_f1: Option<f64>,
}

impl SquadScores {
    /// The scores as run metrics: `exact`, `f1`, and `has_ans_exact`, `has_ans_f1`, `no_ans_exact`, `no_ans_f1`
    /// where present (percentages, as the scripts print them).
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.insert("exact".into(), self.exact);
        m.insert("f1".into(), self.f1);
        for (k, v) in [
            ("has_ans_exact", self.has_ans_exact),
            ("has_ans_f1", self.has_ans_f1),
            ("no_ans_exact", self.no_ans_exact),
            ("no_ans_f1", self.no_ans_f1),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        m
    }
}

/// Predictions by id, rejecting an id given twice (the scripts read a JSON object, whose last duplicate would win
/// silently).
fn prediction_map(preds: &[(String, String)]) -> Result<HashMap<&str, &str>> {
    let mut map = HashMap::with_capacity(preds.len());
    for (i, (id, text)) in preds.iter().enumerate() {
        if map.insert(id.as_str(), text.as_str()).is_some() {
            bail!("SQuAD predictions: id `{id}` appears twice (again at entry {i})");
        }
    }
    Ok(map)
}

/// Rejects an empty gold set and a question id given twice (the official scripts would count such a question
/// twice in v1.1 and once in v2.0).
fn check_gold(gold: &[(String, Vec<String>)]) -> Result<()> {
    ensure!(!gold.is_empty(), "SQuAD gold answers: no questions");
    let mut seen = HashSet::with_capacity(gold.len());
    for (i, (id, _)) in gold.iter().enumerate() {
        ensure!(seen.insert(id.as_str()), "SQuAD gold answers: question id `{id}` appears twice (again at entry {i})");
    }
    Ok(())
}

fn max_over(golds: &[String], metric: impl Fn(&str) -> f64) -> f64 {
    golds.iter().map(|g| metric(g)).fold(f64::NEG_INFINITY, f64::max)
}

/// evaluate-v1.1.py's `evaluate`: per question the best exact match and F1 over its gold answers, averaged over
/// the questions of `gold` as percentages. A question without prediction scores 0 (the script warns and counts
/// it); predictions for unknown ids are ignored, as in the script.
///
/// Fails on no questions, a duplicate id on either side, or a question without any gold answer (the script's
/// `max()` raises there; SQuAD v1.1 has none).
pub fn squad_v1(preds: &[(String, String)], gold: &[(String, Vec<String>)]) -> Result<SquadScores> {
    check_gold(gold)?;
    let preds = prediction_map(preds)?;
    let (mut exact, mut f1_sum) = (0.0f64, 0.0f64);
    for (id, answers) in gold {
        ensure!(
            !answers.is_empty(),
            "SQuAD v1.1 gold answers: question `{id}` has no answer (v1.1 needs at least one)"
        );
        let Some(pred) = preds.get(id.as_str()) else { continue };
        exact += max_over(answers, |g| exact_match(pred, g));
        f1_sum += max_over(answers, |g| f1_v1(pred, g));
    }
    let total = gold.len();
    Ok(SquadScores {
        exact: 100.0 * exact / total as f64,
        f1: 100.0 * f1_sum / total as f64,
        total,
        has_ans_exact: None,
        has_ans_f1: None,
        no_ans_exact: None,
        no_ans_f1: None,
    })
}

/// evaluate-v2.0.py without a no-answer probability file (every question is answered as predicted; no threshold
/// search): gold answers that normalise to nothing are dropped and a question left with none has `""` as its only
/// answer; per question the best exact match and [`f1`] over them; averages in percent over all questions and over
/// the questions with (`has_ans_*`) and without (`no_ans_*`) gold answers, where any.
///
/// Fails on no questions, a duplicate id on either side, or a question without prediction (the script's subset
/// averages raise `KeyError` there). Predictions for unknown ids are ignored, as in the script.
pub fn squad_v2(preds: &[(String, String)], gold: &[(String, Vec<String>)]) -> Result<SquadScores> {
    check_gold(gold)?;
    let preds = prediction_map(preds)?;
    // (has answers, exact, f1) per question, in gold order, which is the order the script sums in.
    let mut rows = Vec::with_capacity(gold.len());
    for (id, answers) in gold {
        let Some(pred) = preds.get(id.as_str()) else {
            bail!("SQuAD v2.0 predictions: no prediction for question `{id}` (give \"\" to predict no answer)");
        };
        let mut golds: Vec<String> = answers.iter().filter(|a| !normalize_answer(a).is_empty()).cloned().collect();
        if golds.is_empty() {
            golds.push(String::new());
        }
        // `qid_to_has_ans` looks at the raw answers: an answer like "the" still makes the question answerable.
        rows.push((!answers.is_empty(), max_over(&golds, |g| exact_match(pred, g)), max_over(&golds, |g| f1(pred, g))));
    }
    let average = |keep: &dyn Fn(bool) -> bool| -> Option<(f64, f64)> {
        let picked: Vec<_> = rows.iter().filter(|r| keep(r.0)).collect();
        if picked.is_empty() {
            return None;
        }
        let (e, f) = picked.iter().fold((0.0, 0.0), |(e, f), r| (e + r.1, f + r.2));
        let n = picked.len() as f64;
        Some((100.0 * e / n, 100.0 * f / n))
    };
    let (exact, f1_all) = average(&|_| true).unwrap_or((0.0, 0.0));
    let has = average(&|h| h);
    let no = average(&|h| !h);
    Ok(SquadScores {
        exact,
        f1: f1_all,
        total: rows.len(),
        has_ans_exact: has.map(|s| s.0),
        has_ans_f1: has.map(|s| s.1),
        no_ans_exact: no.map(|s| s.0),
        no_ans_f1: no.map(|s| s.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold(v: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        v.iter().map(|(id, a)| (id.to_string(), a.iter().map(|s| s.to_string()).collect())).collect()
    }
    fn preds(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn normalisation_and_pair_scores() {
        assert_eq!(normalize_answer("  The Eiffel\tTower!  "), "eiffel tower");
        assert_eq!(normalize_answer("an apple, a pear"), "apple pear");
        // Articles only as whole words, with Python's Unicode \b: é is a word character, a combining accent is not.
        assert_eq!(normalize_answer("Theater théa the\u{301}"), "theater théa \u{301}");
        assert_eq!(exact_match("The cat.", "cat"), 1.0);
        assert_eq!(f1("the big cat", "a cat"), 2.0 / 3.0);
        assert_eq!((f1("", "the"), f1_v1("", "the")), (1.0, 0.0));
        assert_eq!(f1("x", ""), 0.0);
    }

    #[test]
    fn aggregation_and_its_errors() {
        let g = gold(&[("q1", &["Paris", "paris city"]), ("q2", &[]), ("q3", &["the"])]);
        let s = squad_v2(&preds(&[("q1", "Paris"), ("q2", ""), ("q3", "x")]), &g).unwrap();
        assert_eq!((s.exact, s.total, s.has_ans_exact, s.no_ans_exact), (200.0 / 3.0, 3, Some(50.0), Some(100.0)));
        let err = squad_v2(&preds(&[("q1", "Paris")]), &g).unwrap_err().to_string();
        assert!(err.contains("no prediction for question `q2`"), "{err}");
        assert!(squad_v1(&preds(&[]), &g).unwrap_err().to_string().contains("`q2` has no answer"));
        let v1 = squad_v1(&preds(&[("q1", "paris")]), &gold(&[("q1", &["Paris"]), ("q9", &["x"])])).unwrap();
        assert_eq!((v1.exact, v1.f1, v1.total, v1.has_ans_f1), (50.0, 50.0, 2, None));
        assert!(squad_v1(&preds(&[("a", "x"), ("a", "y")]), &g).unwrap_err().to_string().contains("twice"));
        assert!(squad_v1(&preds(&[]), &gold(&[("a", &["x"]), ("a", &["y"])])).is_err());
        assert!(squad_v2(&preds(&[]), &[]).unwrap_err().to_string().contains("no questions"));
    }
}
