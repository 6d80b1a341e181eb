//! Prediction with a trained text model, as a library: load a run's model (hub layout, or base model + PEFT
//! adapter) with its task settings, check that an input suits the task, and answer a batch of inputs in one
//! forward pass, padded to the batch's longest sequence. `suite predict text` and `suite serve` both answer through
//! this module, so their JSON is the same.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use suite_core::data::Dataset;
use suite_core::predict::{above, top_k, LabelScore};
use tch::{Device, Kind};

use crate::data::{
    ClassifyDataset, ClassifyExample, LabelSet, NerDataset, NerSentence, QaDataset, QaExample, SubwordLabels,
    TextTokenizer,
};
use crate::metrics::{entities, Mode, Scheme};
use crate::task::{load_trained, span_settings, HubSaver, SequenceTask, SpanTask, TextConfig, TextTaskKind};

/// Probability from which a multi-label classifier answers with a label (sigmoid ≥ 0.5, i.e. a logit ≥ 0).
pub const MULTI_LABEL_THRESHOLD: f32 = 0.5;

/// One input of a text model.
#[derive(Debug, Clone, PartialEq)]
pub enum TextInput {
    /// A text, or a text pair (classification only), as the model's tokenizer splits it.
    Text {
        /// The text.
        text: String,
        /// The second text of a pair.
        pair: Option<String>,
    },
    /// Words already split (NER labels each word; classification joins them with spaces).
    Tokens(Vec<String>),
    /// A question about a context (extractive question answering).
    Question {
        /// The question.
        question: String,
        /// The text the answer is taken from.
        context: String,
    },
}

impl TextInput {
    /// A plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into(), pair: None }
    }

    /// Reads one input from JSON: a string (a text), or an object with `question` + `context`, `tokens` (an array
    /// of strings), or `text` with an optional `text_pair`. Errors name the field and what was expected.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let obj = match v {
            serde_json::Value::String(s) => return Ok(Self::text(s.clone())),
            serde_json::Value::Object(o) => o,
            other => bail!("expected a string or an object, got {}", json_kind(other)),
        };
        let string = |k: &str| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => bail!("\"{k}\" must be a string, got {}", json_kind(other)),
            }
        };
        if let Some(question) = string("question")? {
            let Some(context) = string("context")?.or(string("text")?) else {
                bail!("a \"question\" needs a \"context\" (the text to answer from)");
            };
            return Ok(Self::Question { question, context });
        }
        if let Some(tokens) = obj.get("tokens") {
            let Some(words) = tokens.as_array() else {
                bail!("\"tokens\" must be an array of strings, got {}", json_kind(tokens));
            };
            let words = words
                .iter()
                .enumerate()
                .map(|(i, w)| match w {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => bail!("\"tokens\"[{i}] must be a string, got {}", json_kind(other)),
                })
                .collect::<Result<Vec<String>>>()?;
            return Ok(Self::Tokens(words));
        }
        let Some(text) = string("text")?.or(string("context")?) else {
            bail!("expected a \"text\", \"tokens\" or \"question\" + \"context\" field");
        };
        Ok(Self::Text { text, pair: string("text_pair")? })
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The answer for one input; its JSON has no tag (the fields say which task answered).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TextPrediction {
    /// Classification: the `top_k` labels by probability (multi-label: every label with probability ≥ 0.5).
    Labels {
        /// Labels, most probable first.
        top: Vec<LabelScore>,
    },
    /// NER: the words, their tags and the entities they form.
    Entities {
        /// The words tagged (the input's tokens, or its text split at whitespace).
        tokens: Vec<String>,
        /// One IOB tag per word.
        tags: Vec<String>,
        /// The entities, in text order.
        entities: Vec<Entity>,
    },
    /// Extractive QA: the best span of the context.
    Answer {
        /// The answer text, a slice of the context ("" when a SQuAD v2 model predicts no answer).
        answer: String,
        /// Start logit + end logit of the answer.
        score: f32,
        /// Character (Unicode scalar) offset of the answer's start in the context.
        start: usize,
        /// Character offset just past the answer's end.
        end: usize,
    },
}

/// A named entity found by an NER model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The entity type (`PER`, `LOC`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its words, joined by single spaces.
    pub text: String,
    /// Index of its first word.
    pub start: usize,
    /// Index just past its last word.
    pub end: usize,
    /// Character (Unicode scalar) offset of its first character in the input text (for a `tokens` input, in the
    /// words joined by single spaces).
    pub start_char: usize,
    /// Character offset just past its last character.
    pub end_char: usize,
}

/// The task model: a sequence (classification or NER) or a span (QA) head on the encoder.
enum Model {
    Sequence(SequenceTask),
    Span(SpanTask),
}

/// A loaded text model ready to answer, with the task settings it was trained with. Built and used on one thread.
pub struct TextPredictor {
    model: Model,
    tok: TextTokenizer,
    labels: Vec<String>,
    multi_label: bool,
    max_len: usize,
    doc_stride: usize,
}

impl TextPredictor {
    /// Loads the `which` (`best` or `final`) model of the run folder `run`, with the task settings of the run's
    /// `config.toml` (`[text]`: task, `max_len`, QA windows and span selection).
    pub fn load_run(run: &Path, which: &str, device: Device) -> Result<Self> {
        let cfg = run_text_config(run)?;
        Self::load(&suite_core::runs::model_dir(run, which)?, &cfg, device)
    }

    /// Loads the model folder `model_dir` (hub layout, or a PEFT adapter over the base model it names) for the
    /// task and settings of `cfg`.
    pub fn load(model_dir: &Path, cfg: &TextConfig, device: Device) -> Result<Self> {
        let (vs, model, labels, multi_label) = load_trained(model_dir, cfg.task, device)?;
        let tok = TextTokenizer::from_file(&model_dir.join("tokenizer.json"))?;
        let model = match cfg.task {
            TextTaskKind::Classify | TextTaskKind::Ner => {
                if labels.is_empty() {
                    bail!("{}: config.json has no id2label: not a classification or NER model", model_dir.display());
                }
                Model::Sequence(SequenceTask {
                    vs,
                    model,
                    kind: cfg.task,
                    labels: LabelSet::from_names(labels.clone()),
                    multi_label,
                    label_smoothing: 0.0,
                    ner_mode: (Mode::Default, Scheme::Iob2),
                    eval_ner: None,
                    tokenizer_dir: model_dir.to_path_buf(),
                    saver: Box::new(HubSaver),
                    last_report: None,
                })
            }
            // A QA config's id2label is the base model's leftover (LABEL_0, LABEL_1), not outputs of the span head.
            TextTaskKind::Sft => unreachable!("load_trained refuses language models"),
            TextTaskKind::Qa => Model::Span(SpanTask {
                vs,
                model,
                settings: span_settings(cfg),
                eval: None,
                tokenizer_dir: model_dir.to_path_buf(),
                saver: Box::new(HubSaver),
                last_predictions: Vec::new(),
            }),
        };
        let labels = if cfg.task == TextTaskKind::Qa { Vec::new() } else { labels };
        Ok(Self { model, tok, labels, multi_label, max_len: cfg.max_len, doc_stride: cfg.doc_stride })
    }

    /// The task: classification, NER or QA.
    pub fn task(&self) -> TextTaskKind {
        match &self.model {
            Model::Sequence(t) => t.kind,
            Model::Span(_) => TextTaskKind::Qa,
        }
    }

    /// The task's name, as recipes and `suite finetune text --task` spell it: `classify`, `ner` or `qa`.
    pub fn task_name(&self) -> &'static str {
        match self.task() {
            TextTaskKind::Classify => "classify",
            TextTaskKind::Ner => "ner",
            TextTaskKind::Qa => "qa",
            TextTaskKind::Sft => "sft",
        }
    }

    /// Puts every linear layer of the encoder and head in int8 for CPU inference (libtorch's dynamic
    /// quantization, per-channel weights; see [`suite_core::quant`]).
    pub fn quantize_int8(&mut self) -> Result<suite_core::quant::QuantSummary> {
        let model: &mut dyn suite_core::nn::VisitLayers = match &mut self.model {
            Model::Sequence(t) => &mut t.model,
            Model::Span(t) => &mut t.model,
        };
        suite_core::quant::quantize_dynamic(model, suite_core::quant::WeightScheme::PerChannel)
    }

    /// The encoder and head, for explanations that take gradients through them.
    pub(crate) fn text_model(&self) -> &crate::models::TextModel {
        match &self.model {
            Model::Sequence(t) => &t.model,
            Model::Span(t) => &t.model,
        }
    }

    /// The device the model's tensors are on.
    pub(crate) fn device(&self) -> Device {
        match &self.model {
            Model::Sequence(t) => t.vs.device(),
            Model::Span(t) => t.vs.device(),
        }
    }

    /// The tokenizer of the model folder.
    pub(crate) fn tokenizer(&self) -> &TextTokenizer {
        &self.tok
    }

    /// Tokens per sequence (QA: per window) and the overlap of QA windows, as the run was trained with.
    pub(crate) fn lengths(&self) -> (usize, usize) {
        (self.max_len, self.doc_stride)
    }

    /// QA span selection settings (`None` for classification and NER).
    pub(crate) fn span_settings(&self) -> Option<crate::task::SpanSettings> {
        match &self.model {
            Model::Sequence(_) => None,
            Model::Span(t) => Some(t.settings),
        }
    }

    /// Class or tag names in the order of the model's outputs (empty for QA).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether the classifier gives several labels per text.
    pub fn multi_label(&self) -> bool {
        self.multi_label
    }

    /// Whether `input` suits the task: classification takes a text (a pair too) or words, NER a text or words,
    /// QA a question with a non-empty context. The error is a message for whoever sent the input.
    pub fn check(&self, input: &TextInput) -> Result<()> {
        match (self.task(), input) {
            (TextTaskKind::Classify, TextInput::Text { .. } | TextInput::Tokens(_)) => Ok(()),
            (TextTaskKind::Ner, TextInput::Text { pair: None, .. } | TextInput::Tokens(_)) => {
                if ner_words(input).is_empty() {
                    bail!("named-entity recognition needs at least one word; the input has none");
                }
                Ok(())
            }
            (TextTaskKind::Ner, TextInput::Text { pair: Some(_), .. }) => {
                bail!("named-entity recognition tags one text: \"text_pair\" applies to classification only")
            }
            (TextTaskKind::Qa, TextInput::Question { question, context }) => {
                if question.trim().is_empty() {
                    bail!("the \"question\" is empty");
                }
                if context.trim().is_empty() {
                    bail!("the \"context\" is empty");
                }
                // The question must leave room in every window for more context than the windows overlap.
                self.tok
                    .encode_windows(question.trim_start(), "", self.max_len, self.doc_stride)
                    .map(|_| ())
                    .context("the question is too long for this model's windows")
            }
            (TextTaskKind::Qa, _) => bail!("question answering needs a \"question\" and a \"context\""),
            (TextTaskKind::Sft, _) => bail!("a language model answers chat requests, not predictions"),
            (task, TextInput::Question { .. }) => bail!(
                "a \"question\" input is for question answering; this is a {} model (send \"text\"{})",
                if task == TextTaskKind::Ner { "named-entity" } else { "classification" },
                if task == TextTaskKind::Ner { " or \"tokens\"" } else { "" }
            ),
        }
    }

    /// Answers `inputs`, in order, with one forward pass over the whole batch (QA: over every window of every
    /// context). Each input must pass [`TextPredictor::check`]; `top_k` (clamped to `1..=labels`) applies to
    /// single-label classification.
    pub fn predict(&self, inputs: &[TextInput], top_k_: usize) -> Result<Vec<TextPrediction>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        for (i, input) in inputs.iter().enumerate() {
            self.check(input).with_context(|| format!("input {i}"))?;
        }
        match &self.model {
            Model::Sequence(task) if task.kind == TextTaskKind::Classify => self.classify(task, inputs, top_k_),
            Model::Sequence(task) => self.ner(task, inputs),
            Model::Span(task) => self.answer(task, inputs),
        }
    }

    fn classify(&self, task: &SequenceTask, inputs: &[TextInput], k: usize) -> Result<Vec<TextPrediction>> {
        let examples: Vec<ClassifyExample> = inputs
            .iter()
            .map(|input| {
                let (text, text_pair) = match input {
                    TextInput::Text { text, pair } => (text.clone(), pair.clone()),
                    TextInput::Tokens(words) => (words.join(" "), None),
                    TextInput::Question { .. } => unreachable!("refused by check"),
                };
                ClassifyExample { text, text_pair, labels: Vec::new() }
            })
            .collect();
        let ds = ClassifyDataset::new(&examples, &self.tok, None, self.max_len, self.multi_label)?;
        let batch = ds.collate((0..examples.len()).collect())?;
        let logits = tch::no_grad(|| task.logits(&batch, false)).to_device(Device::Cpu);
        let probs = if self.multi_label { logits.sigmoid() } else { logits.softmax(-1, Kind::Float) };
        let n = self.labels.len();
        let flat = Vec::<f32>::try_from(probs.to_kind(Kind::Float).contiguous().view([-1]))?;
        let k = k.clamp(1, n);
        Ok(flat
            .chunks(n)
            .map(|p| TextPrediction::Labels {
                top: if self.multi_label {
                    above(p, &self.labels, MULTI_LABEL_THRESHOLD)
                } else {
                    top_k(p, &self.labels, k)
                },
            })
            .collect())
    }

    fn ner(&self, task: &SequenceTask, inputs: &[TextInput]) -> Result<Vec<TextPrediction>> {
        let words: Vec<Vec<(String, (usize, usize))>> = inputs.iter().map(ner_words).collect();
        let sents: Vec<NerSentence> = words
            .iter()
            .map(|w| NerSentence {
                tokens: w.iter().map(|(t, _)| t.clone()).collect(),
                tags: vec!["O".into(); w.len()],
            })
            .collect();
        let ds = NerDataset::new(&sents, &self.tok, None, self.max_len, SubwordLabels::First)?;
        let batch = ds.collate((0..sents.len()).collect())?;
        let argmax = tch::no_grad(|| task.logits(&batch, false)).argmax(-1, false).to_device(Device::Cpu);
        let mut out = Vec::with_capacity(inputs.len());
        for (row, (sent, spans)) in sents.into_iter().zip(&words).enumerate() {
            let preds = Vec::<i64>::try_from(argmax.get(row as i64))?;
            let tags = ds.word_predictions(row, &preds, &task.labels);
            let found = entities(&tags, Mode::Default, Scheme::Iob2)
                .into_iter()
                .map(|(kind, s, e)| Entity {
                    kind,
                    text: sent.tokens[s..e].join(" "),
                    start: s,
                    end: e,
                    start_char: spans[s].1 .0,
                    end_char: spans[e - 1].1 .1,
                })
                .collect();
            out.push(TextPrediction::Entities { tokens: sent.tokens, tags, entities: found });
        }
        Ok(out)
    }

    fn answer(&self, task: &SpanTask, inputs: &[TextInput]) -> Result<Vec<TextPrediction>> {
        let examples: Vec<QaExample> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| match input {
                TextInput::Question { question, context } => QaExample {
                    id: i.to_string(),
                    question: question.clone(),
                    context: context.clone(),
                    answers: Vec::new(),
                    is_impossible: false,
                },
                _ => unreachable!("refused by check"),
            })
            .collect();
        let ds = QaDataset::new(&examples, &self.tok, self.max_len, self.doc_stride)?;
        let batch = ds.collate((0..ds.n_features()).collect())?;
        let preds = task.predict(&ds, &mut std::iter::once(Ok(batch)))?;
        if preds.len() != examples.len() {
            bail!("internal error: {} answers for {} questions", preds.len(), examples.len());
        }
        Ok(preds
            .into_iter()
            .map(|p| {
                let (start, end) = p.span.unwrap_or((0, 0));
                TextPrediction::Answer { answer: p.text, score: p.score, start, end }
            })
            .collect())
    }
}

/// The words an NER model tags, with their character spans `[start, end)`: a `tokens` input's words (spans in
/// the words joined by single spaces), or a text split at whitespace (spans in the text).
pub(crate) fn ner_words(input: &TextInput) -> Vec<(String, (usize, usize))> {
    match input {
        TextInput::Tokens(words) => {
            let mut at = 0;
            words
                .iter()
                .map(|w| {
                    let n = w.chars().count();
                    let span = (at, at + n);
                    at += n + 1;
                    (w.clone(), span)
                })
                .collect()
        }
        TextInput::Text { text, .. } | TextInput::Question { context: text, .. } => {
            // As `split_whitespace`, keeping where each word starts (in characters).
            let mut out = Vec::new();
            let mut current: Option<(String, usize)> = None;
            for (i, c) in text.chars().enumerate() {
                if c.is_whitespace() {
                    out.extend(current.take());
                } else {
                    current.get_or_insert_with(|| (String::new(), i)).0.push(c);
                }
            }
            out.extend(current);
            out.into_iter()
                .map(|(w, start)| {
                    let n = w.chars().count();
                    (w, (start, start + n))
                })
                .collect()
        }
    }
}

/// The `[text]` table of a run's `config.toml`.
fn run_text_config(run: &Path) -> Result<TextConfig> {
    /// Only the table this module needs; the other tables of the recorded job are the CLI's.
    #[derive(Deserialize)]
    struct RunConfig {
        text: Option<TextConfig>,
    }
    let config: RunConfig = suite_core::config::load_toml(&run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", run.display()))?;
    config
        .text
        .with_context(|| format!("--run {}: not a text run (its config.toml has no [text] table)", run.display()))
}

#[cfg(test)]
#[path = "predict_tests.rs"]
mod tests;
