//! Text metrics: seqeval entity scores and SQuAD exact match / F1.
//!
//! Each metric reproduces its Python reference exactly, numerics included (numpy's pairwise sums are mirrored),
//! and is tested against it on random cases: seqeval 1.2.2 for NER ([`seqeval_report`]), the official SQuAD
//! v1.1/v2.0 evaluation scripts for QA ([`squad_v1`], [`squad_v2`]), and scikit-learn for multi-label
//! classification ([`multilabel_scores`]).

mod multilabel;
mod numeric;
pub mod rouge;
pub mod seqeval;
pub mod squad;
#[cfg(test)]
mod tests;

pub use multilabel::multilabel_scores;
pub use rouge::{rouge_l, rouge_tokens};
pub use seqeval::{entities, seqeval_report, try_entities, Entity, EntityScores, Mode, Scheme, SeqevalReport};
pub use squad::{exact_match, f1, f1_v1, normalize_answer, squad_v1, squad_v2, SquadScores};
