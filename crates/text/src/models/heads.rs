//! Task heads with transformers' names and forward passes: sequence classification (BERT's `classifier` over the
//! pooler, RoBERTa's `classifier.{dense,out_proj}` over `<s>`, DistilBERT's `pre_classifier` + ReLU +
//! `classifier`), token classification (`classifier`) and extractive QA (`qa_outputs`).

use suite_core::nn::{LayerVisitor, Linear};
use tch::{nn, Tensor};

use super::config::{EncoderConfig, ModelType};
use super::layers::{dense, dropout, push_linear, Named};

/// The task a [`super::TextModel`] is built for, with its output width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// One label (or a multi-label vector) per sequence: logits `[batch, num_labels]`.
    Classify {
        /// Number of classes.
        num_labels: i64,
    },
    /// One label per token (NER): logits `[batch, len, num_labels]`.
    Tokens {
        /// Number of tags.
        num_labels: i64,
    },
    /// Extractive question answering: start and end logits `[batch, len, 2]`.
    Span,
}

impl Head {
    /// The number of outputs per sequence or token.
    pub fn num_labels(&self) -> i64 {
        match *self {
            Head::Classify { num_labels } | Head::Tokens { num_labels } => num_labels,
            Head::Span => 2,
        }
    }

    /// transformers' class-name suffix (`ForSequenceClassification`…).
    pub fn class_suffix(&self) -> &'static str {
        match self {
            Head::Classify { .. } => "ForSequenceClassification",
            Head::Tokens { .. } => "ForTokenClassification",
            Head::Span => "ForQuestionAnswering",
        }
    }

    /// Whether the encoder needs its pooler (only BERT's sequence classification uses it).
    pub(crate) fn uses_pooler(&self, model_type: ModelType) -> bool {
        matches!(self, Head::Classify { .. }) && model_type == ModelType::Bert
    }
}

/// The head's layers; each variant reads the encoder output the way its transformers class does.
#[derive(Debug)]
pub(crate) enum HeadLayers {
    /// BERT: `classifier` over the dropped-out pooled output.
    Pooled { classifier: Linear, dropout: f64 },
    /// RoBERTa/XLM-R: `classifier.dense` → tanh → `classifier.out_proj` over `<s>`, dropout before each.
    RobertaClassifier { dense: Linear, out_proj: Linear, dropout: f64 },
    /// DistilBERT: `pre_classifier` → ReLU → dropout → `classifier` over the first token.
    DistilClassifier { pre_classifier: Linear, classifier: Linear, dropout: f64 },
    /// `classifier` over every token.
    Tokens { classifier: Linear, dropout: f64 },
    /// `qa_outputs` over every token.
    Span { qa_outputs: Linear, dropout: f64 },
}

impl HeadLayers {
    pub(crate) fn new(root: &nn::Path, c: &EncoderConfig, head: Head) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        match head {
            Head::Classify { num_labels } => match c.model_type {
                ModelType::Bert => Self::Pooled {
                    classifier: dense(root / "classifier", h, num_labels, std),
                    dropout: c.classifier_dropout,
                },
                ModelType::Roberta | ModelType::XlmRoberta => Self::RobertaClassifier {
                    dense: dense(root / "classifier" / "dense", h, h, std),
                    out_proj: dense(root / "classifier" / "out_proj", h, num_labels, std),
                    dropout: c.classifier_dropout,
                },
                ModelType::DistilBert => Self::DistilClassifier {
                    pre_classifier: dense(root / "pre_classifier", h, h, std),
                    classifier: dense(root / "classifier", h, num_labels, std),
                    dropout: c.classifier_dropout,
                },
            },
            Head::Tokens { num_labels } => Self::Tokens {
                classifier: dense(root / "classifier", h, num_labels, std),
                dropout: c.token_classifier_dropout,
            },
            Head::Span => Self::Span { qa_outputs: dense(root / "qa_outputs", h, 2, std), dropout: c.qa_dropout },
        }
    }

    /// Logits from the last hidden states and, for BERT classification, the pooled output.
    pub(crate) fn forward(&self, hidden: &Tensor, pooled: Option<&Tensor>, train: bool) -> Tensor {
        match self {
            Self::Pooled { classifier, dropout: p } => {
                let pooled = pooled.expect("BERT classification is built with a pooler");
                classifier.forward_t(&dropout(pooled.shallow_clone(), *p, train), train)
            }
            Self::RobertaClassifier { dense, out_proj, dropout: p } => {
                let x = dropout(hidden.select(1, 0), *p, train);
                let x = dense.forward_t(&x, train).tanh();
                out_proj.forward_t(&dropout(x, *p, train), train)
            }
            Self::DistilClassifier { pre_classifier, classifier, dropout: p } => {
                let x = pre_classifier.forward_t(&hidden.select(1, 0), train).relu();
                classifier.forward_t(&dropout(x, *p, train), train)
            }
            Self::Tokens { classifier, dropout: p } => {
                classifier.forward_t(&dropout(hidden.shallow_clone(), *p, train), train)
            }
            Self::Span { qa_outputs, dropout: p } => {
                qa_outputs.forward_t(&dropout(hidden.shallow_clone(), *p, train), train)
            }
        }
    }

    pub(crate) fn visit(&mut self, v: &mut dyn LayerVisitor) {
        match self {
            Self::Pooled { classifier, .. } | Self::Tokens { classifier, .. } => v.linear(classifier),
            Self::RobertaClassifier { dense, out_proj, .. } => {
                v.linear(dense);
                v.linear(out_proj);
            }
            Self::DistilClassifier { pre_classifier, classifier, .. } => {
                v.linear(pre_classifier);
                v.linear(classifier);
            }
            Self::Span { qa_outputs, .. } => v.linear(qa_outputs),
        }
    }

    pub(crate) fn push(&self, out: &mut Named) {
        match self {
            Self::Pooled { classifier, .. } | Self::Tokens { classifier, .. } => push_linear(out, classifier),
            Self::RobertaClassifier { dense, out_proj, .. } => {
                push_linear(out, dense);
                push_linear(out, out_proj);
            }
            Self::DistilClassifier { pre_classifier, classifier, .. } => {
                push_linear(out, pre_classifier);
                push_linear(out, classifier);
            }
            Self::Span { qa_outputs, .. } => push_linear(out, qa_outputs),
        }
    }

    /// Top-level name prefixes of the head (relative to the model root), without the encoder's pooler.
    pub(crate) fn prefixes(&self) -> &'static [&'static str] {
        match self {
            Self::Pooled { .. } | Self::Tokens { .. } | Self::RobertaClassifier { .. } => &["classifier."],
            Self::DistilClassifier { .. } => &["pre_classifier.", "classifier."],
            Self::Span { .. } => &["qa_outputs."],
        }
    }
}
