//! Token attributions of a text model: integrated gradients on the output of the word-embedding layer
//! (Captum's `LayerIntegratedGradients` on `<encoder>.embeddings.word_embeddings`, Gauss-Legendre quadrature),
//! from a baseline that keeps the special tokens (`[CLS]`/`[SEP]`, `<s>`/`</s>`) and puts the padding token
//! everywhere else.
//!
//! What is explained: classification, the target class's logit (default: the predicted class); NER, for each
//! predicted entity, the sum over its words of the logit of the word's predicted tag at the word's first
//! sub-token (the token whose prediction tags the word); QA, the start logit at the predicted start token and the
//! end logit at the predicted end token of the window the answer was taken from. Each explanation reports how far
//! the scores' sum is from F(input) − F(baseline) (the completeness axiom; the gap is the quadrature error).
//!
//! The model is loaded as predictions load it ([`TextPredictor`], hub layout or base model + PEFT adapter), and
//! the results are `Serialize` structs; [`html`] renders them as one self-contained page.

pub mod html;
pub mod integrated_gradients;
mod tasks;

#[cfg(test)]
mod tests;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::predict::{TextInput, TextPredictor};
use crate::task::TextTaskKind;

pub use integrated_gradients::{gauss_legendre, MAX_STEPS};

/// Default number of integration steps (Captum's default `n_steps`).
pub const DEFAULT_STEPS: usize = 50;

/// The attributions of one input: its tokens (the sequence the model read, or for QA the window the answer came
/// from) and one [`Attribution`] per explained output.
#[derive(Debug, Clone, Serialize)]
pub struct TextExplanation {
    /// `classify`, `ner` or `qa`.
    pub task: &'static str,
    /// What the model predicted, in words (`sport 93.1%`, `John Smith [PER]`, `"Paris"`).
    pub prediction: String,
    /// The tokens, as the tokenizer's vocabulary spells them, special tokens included.
    pub tokens: Vec<String>,
    /// Their ids.
    pub token_ids: Vec<i64>,
    /// Their token types (segment ids).
    pub type_ids: Vec<i64>,
    /// The baseline's ids: the special tokens kept, every other token the padding token.
    pub baseline_ids: Vec<i64>,
    /// QA: the index of the window (of a context longer than the model's length) the tokens are from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// One per explained output: the class; each entity; the answer's start and end. Empty when there is nothing
    /// to explain (an NER input with no entity).
    pub attributions: Vec<Attribution>,
}

/// The attribution of one output of the model to the input's tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Attribution {
    /// `class`, `entity`, `start` or `end`.
    pub kind: &'static str,
    /// The class, the entity type, or `start`/`end`.
    pub label: String,
    /// The class's probability (softmax, or sigmoid for multi-label); an entity's mean tag probability over its
    /// words; the softmax probability of the start (end) position over the window.
    pub probability: f64,
    /// Whether `label` is the predicted class (classification with `--target` may explain another).
    pub predicted: bool,
    /// The entity's words, or the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The token positions whose logits make the explained output (the entity's first sub-tokens, the answer's
    /// start or end token); empty for classification.
    pub positions: Vec<usize>,
    /// One score per token, aligned with [`TextExplanation::tokens`].
    pub scores: Vec<f32>,
    /// The explained output (a logit, or a sum of logits) at the input: F(x).
    pub output: f64,
    /// The same output at the baseline: F(x′).
    pub baseline_output: f64,
    /// Sum of the scores.
    pub sum: f64,
    /// |sum − (F(x) − F(x′))|.
    pub completeness_error: f64,
    /// `completeness_error` / max(|F(x) − F(x′)|, 1e-6).
    pub relative_error: f64,
}

impl Attribution {
    /// Builds an attribution from its scores and ends, computing the completeness errors.
    fn new(kind: &'static str, label: String, probability: f64, path: integrated_gradients::PathAttribution) -> Self {
        let sum: f64 = path.scores.iter().map(|&s| s as f64).sum();
        let delta = path.output - path.baseline_output;
        let completeness_error = (sum - delta).abs();
        Self {
            kind,
            label,
            probability,
            predicted: true,
            text: None,
            positions: Vec::new(),
            scores: path.scores,
            output: path.output,
            baseline_output: path.baseline_output,
            sum,
            completeness_error,
            relative_error: completeness_error / delta.abs().max(1e-6),
        }
    }
}

/// Settings of an explanation.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// Gauss-Legendre integration steps (1 to [`MAX_STEPS`]).
    pub steps: usize,
    /// Classification: the class to explain, by index into the labels (default: the predicted class).
    pub target: Option<usize>,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self { steps: DEFAULT_STEPS, target: None }
    }
}

/// The class `--target` names: a label of the model, or an index into its labels. Refused for NER and QA, whose
/// explained outputs follow from the prediction.
pub fn resolve_target(predictor: &TextPredictor, target: &str) -> Result<usize> {
    if predictor.task() != TextTaskKind::Classify {
        bail!(
            "--target applies to classification; this {} model is explained at what it predicts",
            predictor.task_name()
        );
    }
    let labels = predictor.labels();
    if let Some(i) = labels.iter().position(|l| l == target) {
        return Ok(i);
    }
    match target.parse::<usize>() {
        Ok(i) if i < labels.len() => Ok(i),
        _ => {
            let mut shown = labels.iter().take(20).map(String::as_str).collect::<Vec<_>>().join(", ");
            if labels.len() > 20 {
                shown.push_str(", …");
            }
            let target: String = target.chars().take(80).collect();
            bail!(
                "--target {target:?} is not a class of this model: expected one of {shown} (or 0 to {})",
                labels.len() - 1
            )
        }
    }
}

/// Explains one input (which must pass [`TextPredictor::check`]).
pub fn explain(predictor: &TextPredictor, input: &TextInput, opts: &ExplainOptions) -> Result<TextExplanation> {
    predictor.check(input)?;
    if opts.target.is_some_and(|t| predictor.task() != TextTaskKind::Classify || t >= predictor.labels().len()) {
        bail!("the target class is not one of this model's classes");
    }
    match predictor.task() {
        TextTaskKind::Classify => tasks::classify(predictor, input, opts),
        TextTaskKind::Ner => tasks::ner(predictor, input, opts),
        TextTaskKind::Qa => tasks::qa(predictor, input, opts),
        TextTaskKind::Sft => bail!("a language model is not explained by token attributions"),
    }
}
