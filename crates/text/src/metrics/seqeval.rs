//! Entity-level precision, recall and F1 for sequence labelling (NER), equal to seqeval 1.2.2.
//!
//! Entities are compared exactly (type, first and last token); a type is scored when it occurs in the truth or the
//! predictions. Tags carry their prefix first (`B-PER`, seqeval's `suffix=False`).

mod conll;
mod scheme;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use suite_core::metrics::Metrics;

use super::numeric::{np_mean, np_weighted_average, ratio};

/// How entities are read from tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// seqeval's default, compatible with conlleval: lenient chunking in which an `I-` without a `B-` starts an
    /// entity, a type change ends one, and `E-`/`S-` tags are understood whatever the scheme. The scheme is ignored.
    #[default]
    Default,
    /// seqeval's `mode="strict"`: an entity counts only when it starts and ends as the scheme prescribes, and a tag
    /// with a prefix the scheme does not allow is an error.
    Strict,
}

/// A tagging scheme of seqeval (`seqeval.scheme`), used by [`Mode::Strict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `I-` inside, `B-` only where an entity follows another of the same type.
    Iob1,
    /// `B-` begins every entity, `I-` continues it (CoNLL-2003 as usually distributed).
    Iob2,
    /// `I-` inside, `E-` only where an entity precedes another of the same type.
    Ioe1,
    /// `E-` ends every entity.
    Ioe2,
    /// `B-`, `I-`, `E-` and `S-` (single-token entities).
    Iobes,
    /// `B-`, `I-`, `L-` (last) and `U-` (unit).
    Bilou,
}

impl Scheme {
    /// Every scheme, in seqeval's order.
    pub const ALL: [Scheme; 6] = [Scheme::Iob1, Scheme::Ioe1, Scheme::Iob2, Scheme::Ioe2, Scheme::Iobes, Scheme::Bilou];

    /// seqeval's class name (`IOB2`, `BILOU`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Iob1 => "IOB1",
            Scheme::Iob2 => "IOB2",
            Scheme::Ioe1 => "IOE1",
            Scheme::Ioe2 => "IOE2",
            Scheme::Iobes => "IOBES",
            Scheme::Bilou => "BILOU",
        }
    }

    /// The scheme seqeval's strict `classification_report` picks when given none (`seqeval.scheme.auto_detect`):
    /// IOB2, IOE2, IOBES or BILOU from the set of prefixes in `sequences`. Fails on an empty tag, an unknown prefix
    /// or a mix no scheme allows, naming the offending tag or the prefixes found.
    pub fn detect<S: AsRef<str>>(sequences: &[Vec<S>]) -> Result<Scheme> {
        let mut found = BTreeSet::new();
        for (i, sent) in sequences.iter().enumerate() {
            for (j, tag) in sent.iter().enumerate() {
                let tag = tag.as_ref();
                match tag.chars().next() {
                    Some(c @ ('I' | 'O' | 'B' | 'E' | 'S' | 'U' | 'L')) => {
                        found.insert(c);
                    }
                    _ => bail!("sentence {i}, token {j}: tag `{tag}` has no prefix I, O, B, E, S, U or L"),
                }
            }
        }
        let set: String = found.iter().collect();
        // seqeval's allowed prefix sets, each a set of letters sorted as `found` is.
        let fits = |allowed: &[&str]| allowed.contains(&set.as_str());
        if fits(&["BIO", "BI", "BO", "B"]) {
            Ok(Scheme::Iob2)
        } else if fits(&["EIO", "EI", "EO", "E"]) {
            Ok(Scheme::Ioe2)
        } else if fits(&["BEIOS", "BEIS", "BEIO", "BEOS", "BEI", "BES", "BEO", "BE", "S"]) {
            Ok(Scheme::Iobes)
        } else if fits(&["BILOU", "BILU", "BILO", "BLOU", "BIL", "BLU", "BLO", "BL", "U"]) {
            Ok(Scheme::Bilou)
        } else {
            bail!("no tagging scheme (IOB2, IOE2, IOBES, BILOU) uses exactly the prefixes {{{set}}} found in the tags")
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = anyhow::Error;

    /// Case-insensitive seqeval class name: `iob1`, `iob2`, `ioe1`, `ioe2`, `iobes`, `bilou`.
    fn from_str(s: &str) -> Result<Self> {
        Scheme::ALL.into_iter().find(|sch| sch.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            anyhow::anyhow!("unknown tagging scheme `{s}`, expected one of IOB1, IOB2, IOE1, IOE2, IOBES, BILOU")
        })
    }
}

/// Precision, recall, F1 and support of one entity type or one average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntityScores {
    /// Correct predicted entities over predicted entities; 0 when nothing was predicted.
    pub precision: f64,
    /// Correct predicted entities over true entities; 0 when there are none.
    pub recall: f64,
    /// `2PR / (P + R)` from the precision and recall above (seqeval's formula, not the count form); 0 when both
    /// are 0. For the macro and weighted rows, the average of the per-type F1.
    pub f1: f64,
    /// Number of true entities (of this type, or in all for the averages).
    pub support: usize,
}

/// seqeval's `classification_report(output_dict=True, zero_division=0)` and `accuracy_score`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeqevalReport {
    /// Scores of the pooled counts (`micro avg`; what seqeval's `precision_score`/`recall_score`/`f1_score` return
    /// by default).
    pub micro: EntityScores,
    /// Unweighted mean over the entity types (`macro avg`).
    pub macro_avg: EntityScores,
    /// Mean over the entity types weighted by their support (`weighted avg`).
    pub weighted: EntityScores,
    /// One row per entity type found in the truth or the predictions, sorted by name.
    pub per_type: BTreeMap<String, EntityScores>,
    /// Token accuracy over all tags, `O` included (seqeval's `accuracy_score`).
    pub accuracy: f64,
}

impl SeqevalReport {
    /// The report as run metrics: `precision`, `recall`, `f1` (micro, seqeval's default average), `accuracy`, and
    /// `macro_*` and `weighted_*` precision, recall and F1. Per-type rows are left out (their names are the data's).
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        for (prefix, s) in [("", &self.micro), ("macro_", &self.macro_avg), ("weighted_", &self.weighted)] {
            m.insert(format!("{prefix}precision"), s.precision);
            m.insert(format!("{prefix}recall"), s.recall);
            m.insert(format!("{prefix}f1"), s.f1);
        }
        m.insert("accuracy".into(), self.accuracy);
        m
    }
}

/// An entity as `(type, start, end_exclusive)`, token indices within its sentence.
pub type Entity = (String, usize, usize);

/// Entities of one tag sequence as `(type, start, end_exclusive)`, in seqeval's order: `get_entities` in
/// [`Mode::Default`], the scheme's `Tokens.entities` in [`Mode::Strict`].
///
/// Lenient on bad tags where seqeval raises: an empty tag, or in strict mode a tag whose prefix the scheme does not
/// allow, is read as `O`. Use [`try_entities`] to get an error instead.
pub fn entities<S: AsRef<str>>(tags: &[S], mode: Mode, scheme: Scheme) -> Vec<Entity> {
    match mode {
        Mode::Default => conll::chunks(tags.iter().map(AsRef::as_ref)),
        Mode::Strict => {
            let cleaned: Vec<&str> =
                tags.iter().map(|t| if scheme::entities(&[t], scheme).is_ok() { t.as_ref() } else { "O" }).collect();
            scheme::entities(&cleaned, scheme).unwrap_or_default()
        }
    }
}

/// [`entities`], but an empty tag, or in strict mode a tag the scheme does not allow, is an error naming its
/// position and the allowed prefixes.
pub fn try_entities<S: AsRef<str>>(tags: &[S], mode: Mode, scheme: Scheme) -> Result<Vec<Entity>> {
    if let Some(j) = tags.iter().position(|t| t.as_ref().is_empty()) {
        bail!("token {j}: empty tag");
    }
    match mode {
        Mode::Default => Ok(conll::chunks(tags.iter().map(AsRef::as_ref))),
        Mode::Strict => scheme::entities(tags, scheme).map_err(|(j, msg)| anyhow::anyhow!("token {j}: {msg}")),
    }
}

/// One side's entities: per type, the set of `(sentence, start, end)` (sentence 0 and global offsets in default
/// mode, where seqeval flattens the sentences).
type EntitySets = BTreeMap<String, BTreeSet<(usize, usize, usize)>>;

fn collect<S: AsRef<str>>(sentences: &[Vec<S>], mode: Mode, scheme: Scheme, side: &str) -> Result<EntitySets> {
    let mut sets = EntitySets::new();
    match mode {
        Mode::Default => {
            // seqeval joins the sentences with an `O` after each and chunks the whole stream once.
            let flat = sentences.iter().flat_map(|s| s.iter().map(AsRef::as_ref).chain(std::iter::once("O")));
            for (kind, start, end) in conll::chunks(flat) {
                sets.entry(kind).or_default().insert((0, start, end));
            }
        }
        Mode::Strict => {
            for (i, sent) in sentences.iter().enumerate() {
                let found = scheme::entities(sent, scheme)
                    .map_err(|(j, msg)| anyhow::anyhow!("seqeval: {side} sentence {i}, token {j}: {msg}"))?;
                for (kind, start, end) in found {
                    sets.entry(kind).or_default().insert((i, start, end));
                }
            }
        }
    }
    Ok(sets)
}

/// Per-type counts in type order: (type, true positives, predicted, true).
fn counts(truth: &EntitySets, pred: &EntitySets) -> Vec<(String, usize, usize, usize)> {
    let empty = BTreeSet::new();
    let names: BTreeSet<&String> = truth.keys().chain(pred.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let t = truth.get(name).unwrap_or(&empty);
            let p = pred.get(name).unwrap_or(&empty);
            (name.clone(), t.intersection(p).count(), p.len(), t.len())
        })
        .collect()
}

/// seqeval's F1 from precision and recall: `2·P·R / (P + R)`, with a zero denominator replaced by 1.
fn f1_of(p: f64, r: f64) -> f64 {
    let denom = p + r;
    2.0 * p * r / if denom == 0.0 { 1.0 } else { denom }
}

fn scores(tp: usize, predicted: usize, actual: usize) -> EntityScores {
    let precision = ratio(tp as f64, predicted as f64);
    let recall = ratio(tp as f64, actual as f64);
    EntityScores { precision, recall, f1: f1_of(precision, recall), support: actual }
}

/// seqeval 1.2.2's `classification_report(truth, pred, output_dict=True, zero_division=0, mode=…, scheme=…)` and
/// `accuracy_score(truth, pred)`: the same numbers, bit for bit (numpy's pairwise sums are reproduced).
///
/// One deviation: with no entity at all in either side seqeval's macro average is NaN (numpy's mean of nothing);
/// here it is 0, like the micro and weighted rows, so that model selection on it stays well defined.
///
/// Fails when the sentence counts or a sentence's lengths differ (naming the sentence), on an empty tag, in strict
/// mode on a tag the scheme does not allow (naming side, sentence, token and the allowed prefixes), and when there
/// is no token at all.
pub fn seqeval_report<S: AsRef<str>>(
    truth: &[Vec<S>],
    pred: &[Vec<S>],
    mode: Mode,
    scheme: Scheme,
) -> Result<SeqevalReport> {
    ensure!(
        truth.len() == pred.len(),
        "seqeval: {} true sentences but {} predicted sentences",
        truth.len(),
        pred.len()
    );
    let mut tokens = 0usize;
    let mut correct = 0usize;
    for (i, (t, p)) in truth.iter().zip(pred).enumerate() {
        ensure!(t.len() == p.len(), "seqeval: sentence {i} has {} true tags but {} predicted tags", t.len(), p.len());
        for (side, sent) in [("true", t), ("predicted", p)] {
            if let Some(j) = sent.iter().position(|tag| tag.as_ref().is_empty()) {
                bail!(
                    "seqeval: {side} sentence {i}, token {j}: empty tag (expected `O` or a prefixed tag like `B-PER`)"
                );
            }
        }
        tokens += t.len();
        correct += t.iter().zip(p).filter(|(a, b)| a.as_ref() == b.as_ref()).count();
    }
    ensure!(tokens > 0, "seqeval: no tokens to score ({} sentences, all empty)", truth.len());

    let truth_sets = collect(truth, mode, scheme, "true")?;
    let pred_sets = collect(pred, mode, scheme, "predicted")?;
    let rows = counts(&truth_sets, &pred_sets);

    let per_type: BTreeMap<String, EntityScores> =
        rows.iter().map(|(name, tp, p, t)| (name.clone(), scores(*tp, *p, *t))).collect();
    let (tp, predicted, actual) = rows.iter().fold((0, 0, 0), |(a, b, c), (_, tp, p, t)| (a + tp, b + p, c + t));
    let micro = scores(tp, predicted, actual);

    // per_type iterates in type order, the order of seqeval's arrays, so the pairwise sums round alike.
    let column = |f: fn(&EntityScores) -> f64| per_type.values().map(f).collect::<Vec<f64>>();
    let (ps, rs, fs) = (column(|s| s.precision), column(|s| s.recall), column(|s| s.f1));
    let mean = |v: &[f64]| np_mean(v).unwrap_or(0.0);
    let macro_avg = EntityScores { precision: mean(&ps), recall: mean(&rs), f1: mean(&fs), support: actual };
    let weights: Vec<f64> = per_type.values().map(|s| s.support as f64).collect();
    // No true entity: seqeval returns zero_division (0) for all three rather than averaging.
    let wavg = |v: &[f64]| np_weighted_average(v, &weights).unwrap_or(0.0);
    let weighted = EntityScores { precision: wavg(&ps), recall: wavg(&rs), f1: wavg(&fs), support: actual };

    Ok(SeqevalReport { micro, macro_avg, weighted, per_type, accuracy: correct as f64 / tokens as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sents(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|s| s.iter().map(|t| t.to_string()).collect()).collect()
    }

    #[test]
    fn docstring_example_of_seqeval() {
        let t = sents(&[&["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], &["B-PER", "I-PER", "O"]]);
        let p = sents(&[&["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], &["B-PER", "I-PER", "O"]]);
        let r = seqeval_report(&t, &p, Mode::Default, Scheme::Iob2).unwrap();
        assert_eq!(r.micro, EntityScores { precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
        assert_eq!(r.per_type["MISC"].f1, 0.0);
        assert_eq!(r.per_type["PER"].f1, 1.0);
        assert_eq!(r.accuracy, 0.8);
        assert_eq!(r.metrics()["f1"], 0.5);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_place() {
        let t = sents(&[&["O"], &["B-PER", "O"]]);
        let err = |p: &[&[&str]], mode| seqeval_report(&t, &sents(p), mode, Scheme::Iob2).unwrap_err().to_string();
        assert!(err(&[&["O"]], Mode::Default).contains("2 true sentences but 1 predicted"));
        assert!(err(&[&["O"], &["O"]], Mode::Default).contains("sentence 1 has 2 true tags but 1 predicted"));
        assert!(err(&[&["O"], &["", "O"]], Mode::Default).contains("predicted sentence 1, token 0: empty tag"));
        let e = err(&[&["O"], &["O", "S-PER"]], Mode::Strict);
        assert!(e.contains("predicted sentence 1, token 1") && e.contains("`S-PER`"), "{e}");
        let none: Vec<Vec<String>> = vec![vec![]];
        assert!(seqeval_report(&none, &none, Mode::Default, Scheme::Iob2)
            .unwrap_err()
            .to_string()
            .contains("no tokens"));
    }

    #[test]
    fn no_entities_score_zero_everywhere() {
        let t = sents(&[&["O", "O"]]);
        let r = seqeval_report(&t, &t, Mode::Default, Scheme::Iob2).unwrap();
        let zero = EntityScores { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 };
        assert_eq!((r.micro, r.macro_avg, r.weighted), (zero, zero, zero));
        assert!(r.per_type.is_empty());
        assert_eq!(r.accuracy, 1.0);
    }

    #[test]
    fn schemes_parse_and_detect() {
        assert_eq!("bilou".parse::<Scheme>().unwrap(), Scheme::Bilou);
        assert!("bio".parse::<Scheme>().unwrap_err().to_string().contains("IOBES"));
        assert_eq!(Scheme::detect(&sents(&[&["B-A", "I-A", "O"]])).unwrap(), Scheme::Iob2);
        assert_eq!(Scheme::detect(&sents(&[&["S-A", "O"], &["B-A", "E-A"]])).unwrap(), Scheme::Iobes);
        assert_eq!(Scheme::detect(&sents(&[&["U-A"]])).unwrap(), Scheme::Bilou);
        assert!(Scheme::detect(&sents(&[&["B-A", "L-A", "E-A"]])).is_err());
        assert!(Scheme::detect(&sents(&[&["X"]])).unwrap_err().to_string().contains("sentence 0, token 0"));
    }
}
