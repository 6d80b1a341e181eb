//! The hub's `config.json` of a BERT-family encoder, normalised into one struct for BERT/MiniLM, RoBERTa,
//! XLM-RoBERTa and DistilBERT (whose config spells the same things `dim`, `n_layers`, `n_heads`, `hidden_dim`…).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The architectures this module builds, by their `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// `bert` (also MiniLM and other BERT-architecture checkpoints).
    Bert,
    /// `roberta`.
    Roberta,
    /// `xlm-roberta` (RoBERTa's architecture with a larger vocabulary).
    XlmRoberta,
    /// `distilbert`.
    DistilBert,
}

/// Every supported `model_type`, as written in `config.json`.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert", "roberta", "xlm-roberta", "distilbert"];

impl ModelType {
    /// Parses a `model_type` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bert" => Self::Bert,
            "roberta" => Self::Roberta,
            "xlm-roberta" => Self::XlmRoberta,
            "distilbert" => Self::DistilBert,
            _ => return None,
        })
    }

    /// The `model_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::DistilBert => "distilbert",
        }
    }

    /// The attribute transformers' task models keep the encoder under (`base_model_prefix`).
    pub fn encoder_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta | Self::XlmRoberta => "roberta",
            Self::DistilBert => "distilbert",
        }
    }

    /// The class-name stem of transformers' models (`Bert` in `BertForSequenceClassification`).
    pub fn class_stem(self) -> &'static str {
        match self {
            Self::Bert => "Bert",
            Self::Roberta => "Roberta",
            Self::XlmRoberta => "XLMRoberta",
            Self::DistilBert => "DistilBert",
        }
    }
}

/// The feed-forward non-linearity (`hidden_act`, DistilBERT's `activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The config names [`Activation::parse`] accepts, for error messages.
    pub(crate) const NAMES: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, relu";

    /// The activation a config names, or `None` when it is not supported.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "relu" => Self::Relu,
            _ => return None,
        })
    }

    /// Applies the activation.
    pub fn apply(self, x: &tch::Tensor) -> tch::Tensor {
        match self {
            Self::Gelu => x.gelu("none"),
            Self::GeluTanh => x.gelu("tanh"),
            Self::Relu => x.relu(),
        }
    }
}

/// A BERT-family encoder configuration, with the raw JSON kept so that an export can write it back with changes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// The architecture.
    pub model_type: ModelType,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the hidden states (DistilBERT `dim`).
    pub hidden_size: i64,
    /// Number of transformer layers (DistilBERT `n_layers`).
    pub num_hidden_layers: i64,
    /// Attention heads per layer (DistilBERT `n_heads`).
    pub num_attention_heads: i64,
    /// Width of the feed-forward block (DistilBERT `hidden_dim`).
    pub intermediate_size: i64,
    /// Feed-forward activation (DistilBERT `activation`).
    pub hidden_act: Activation,
    /// Dropout on embeddings and residual branches (DistilBERT `dropout`).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (DistilBERT `attention_dropout`).
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the sequence-classification head: `classifier_dropout` (falls back to
    /// `hidden_dropout_prob`), DistilBERT `seq_classif_dropout`.
    pub classifier_dropout: f64,
    /// Dropout before the token-classification head (as transformers: `classifier_dropout`, else
    /// `hidden_dropout_prob`; DistilBERT `dropout`).
    pub token_classifier_dropout: f64,
    /// Dropout before the span (QA) head: DistilBERT `qa_dropout`; BERT and RoBERTa have none.
    pub qa_dropout: f64,
    /// Number of position embeddings.
    pub max_position_embeddings: i64,
    /// Number of token types (segments); 0 for DistilBERT, which has no token-type embedding.
    pub type_vocab_size: i64,
    /// LayerNorm epsilon (fixed at 1e-12 in DistilBERT).
    pub layer_norm_eps: f64,
    /// Id of the padding token; RoBERTa also counts positions from it.
    pub pad_token_id: i64,
    /// Standard deviation of the normal initialisation of new weights.
    pub initializer_range: f64,
    /// DistilBERT's fixed sinusoidal position embeddings (`sinusoidal_pos_embds`).
    pub sinusoidal_pos_embds: bool,
    /// The `config.json` as read.
    pub raw: Value,
}

/// Reads fields of one JSON object, naming the source, field and line in errors.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    source: &'a str,
    text: Option<&'a str>,
}

impl Fields<'_> {
    fn at(&self, key: &str) -> String {
        let line = self.text.and_then(|t| {
            let needle = format!("\"{key}\"");
            t.lines().position(|l| l.contains(&needle)).map(|i| format!(" (line {})", i + 1))
        });
        format!("{}: field `{key}`{}", self.source, line.unwrap_or_default())
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| anyhow!("{}: expected an integer, found {v}", self.at(key))),
        }
    }

    fn positive(&self, key: &str, default: i64) -> Result<i64> {
        let n = self.int(key, default)?;
        if n <= 0 {
            bail!("{}: expected a positive integer, found {n}", self.at(key));
        }
        Ok(n)
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| anyhow!("{}: expected a number, found {v}", self.at(key))),
        }
    }

    fn probability(&self, key: &str, default: f64) -> Result<f64> {
        let p = self.float(key, default)?;
        if !(0.0..1.0).contains(&p) {
            bail!("{}: expected a dropout probability in [0, 1), found {p}", self.at(key));
        }
        Ok(p)
    }

    fn opt_probability(&self, key: &str) -> Result<Option<f64>> {
        self.present(key).map(|_| self.probability(key, 0.0)).transpose()
    }

    fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| anyhow!("{}: expected a string, found {v}", self.at(key))),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool> {
        match self.present(key) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| anyhow!("{}: expected true or false, found {v}", self.at(key))),
        }
    }

    fn activation(&self, key: &str) -> Result<Activation> {
        let name = self.string(key)?.unwrap_or("gelu");
        Activation::parse(name).ok_or_else(|| {
            anyhow!("{}: unsupported activation {name:?}, expected one of {}", self.at(key), Activation::NAMES)
        })
    }
}

impl EncoderConfig {
    /// Reads and checks a `config.json`; errors name the file, the field and its line.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))?;
        Self::parse(value, &path.display().to_string(), Some(&text))
    }

    /// Builds a configuration from an already parsed `config.json`; `source` names it in errors.
    pub fn from_value(value: Value, source: &str) -> Result<Self> {
        Self::parse(value, source, None)
    }

    fn parse(value: Value, source: &str, text: Option<&str>) -> Result<Self> {
        let Some(obj) = value.as_object() else {
            bail!("{source}: expected a JSON object, found {value}");
        };
        let f = Fields { obj, source, text };
        let model_type = match f.string("model_type")? {
            None => bail!(
                "{}: missing; expected one of {} (this loader builds BERT-family encoders)",
                f.at("model_type"),
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
            Some(t) => ModelType::parse(t).ok_or_else(|| {
                anyhow!(
                    "{}: unsupported model type {t:?}, expected one of {}",
                    f.at("model_type"),
                    SUPPORTED_MODEL_TYPES.join(", ")
                )
            })?,
        };
        let config = match model_type {
            ModelType::DistilBert => Self::distilbert(&f, value.clone())?,
            _ => Self::bert_like(&f, model_type, value.clone())?,
        };
        config.check(&f)?;
        Ok(config)
    }

    /// BERT and RoBERTa share their field names; RoBERTa's defaults differ in vocabulary and padding id.
    fn bert_like(f: &Fields<'_>, model_type: ModelType, raw: Value) -> Result<Self> {
        let roberta = model_type != ModelType::Bert;
        if let Some(kind) = f.string("position_embedding_type")? {
            if kind != "absolute" {
                bail!(
                    "{}: only \"absolute\" position embeddings are supported, found {kind:?}",
                    f.at("position_embedding_type")
                );
            }
        }
        if f.boolean("is_decoder")? || f.boolean("add_cross_attention")? {
            bail!("{}: decoder configurations are not supported (this is an encoder loader)", f.source);
        }
        let hidden_dropout_prob = f.probability("hidden_dropout_prob", 0.1)?;
        let classifier_dropout = f.opt_probability("classifier_dropout")?.unwrap_or(hidden_dropout_prob);
        Ok(Self {
            model_type,
            vocab_size: f.positive("vocab_size", if roberta { 50265 } else { 30522 })?,
            hidden_size: f.positive("hidden_size", 768)?,
            num_hidden_layers: f.positive("num_hidden_layers", 12)?,
            num_attention_heads: f.positive("num_attention_heads", 12)?,
            intermediate_size: f.positive("intermediate_size", 3072)?,
            hidden_act: f.activation("hidden_act")?,
            hidden_dropout_prob,
            attention_probs_dropout_prob: f.probability("attention_probs_dropout_prob", 0.1)?,
            classifier_dropout,
            token_classifier_dropout: classifier_dropout,
            qa_dropout: 0.0,
            max_position_embeddings: f.positive("max_position_embeddings", 512)?,
            type_vocab_size: f.positive("type_vocab_size", 2)?,
            layer_norm_eps: f.float("layer_norm_eps", 1e-12)?,
            pad_token_id: f.int("pad_token_id", if roberta { 1 } else { 0 })?,
            initializer_range: f.float("initializer_range", 0.02)?,
            sinusoidal_pos_embds: false,
            raw,
        })
    }

    fn distilbert(f: &Fields<'_>, raw: Value) -> Result<Self> {
        let dim = f.positive("dim", 768)?;
        let dropout = f.probability("dropout", 0.1)?;
        Ok(Self {
            model_type: ModelType::DistilBert,
            vocab_size: f.positive("vocab_size", 30522)?,
            hidden_size: dim,
            num_hidden_layers: f.positive("n_layers", 6)?,
            num_attention_heads: f.positive("n_heads", 12)?,
            intermediate_size: f.positive("hidden_dim", 4 * dim)?,
            hidden_act: f.activation("activation")?,
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: f.probability("attention_dropout", 0.1)?,
            classifier_dropout: f.probability("seq_classif_dropout", 0.2)?,
            token_classifier_dropout: dropout,
            qa_dropout: f.probability("qa_dropout", 0.1)?,
            max_position_embeddings: f.positive("max_position_embeddings", 512)?,
            type_vocab_size: 0,
            // DistilBERT's LayerNorms are built with eps=1e-12 whatever the config says.
            layer_norm_eps: 1e-12,
            pad_token_id: f.int("pad_token_id", 0)?,
            initializer_range: f.float("initializer_range", 0.02)?,
            sinusoidal_pos_embds: f.boolean("sinusoidal_pos_embds")?,
            raw,
        })
    }

    fn check(&self, f: &Fields<'_>) -> Result<()> {
        let (hidden_key, heads_key) = match self.model_type {
            ModelType::DistilBert => ("dim", "n_heads"),
            _ => ("hidden_size", "num_attention_heads"),
        };
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "{}: {} is not a multiple of {heads_key} = {}",
                f.at(hidden_key),
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.pad_token_id < 0 || self.pad_token_id >= self.vocab_size {
            bail!(
                "{}: {} is outside the vocabulary of {} tokens",
                f.at("pad_token_id"),
                self.pad_token_id,
                self.vocab_size
            );
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            bail!("{}: expected a positive number, found {}", f.at("layer_norm_eps"), self.layer_norm_eps);
        }
        if self.initializer_range.is_nan() || self.initializer_range < 0.0 {
            bail!("{}: expected a non-negative number, found {}", f.at("initializer_range"), self.initializer_range);
        }
        if self.uses_padding_positions() && self.max_position_embeddings <= self.pad_token_id + 1 {
            bail!(
                "{}: {} leaves no position after the padding offset {} that RoBERTa counts from",
                f.at("max_position_embeddings"),
                self.max_position_embeddings,
                self.pad_token_id + 1
            );
        }
        Ok(())
    }

    /// Whether positions are counted from `pad_token_id + 1` over non-padding tokens (RoBERTa, XLM-R).
    pub fn uses_padding_positions(&self) -> bool {
        matches!(self.model_type, ModelType::Roberta | ModelType::XlmRoberta)
    }

    /// The longest input (in tokens, special tokens included) the position embeddings cover: 512 for BERT and
    /// RoBERTa-base (whose 514 positions start after the padding id).
    pub fn max_input_len(&self) -> i64 {
        if self.uses_padding_positions() {
            self.max_position_embeddings - self.pad_token_id - 1
        } else {
            self.max_position_embeddings
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// The label names of `id2label` in id order, when the config has a complete one.
    pub fn id2label(&self) -> Option<Vec<String>> {
        let map = self.raw.get("id2label")?.as_object()?;
        let mut labels = vec![None; map.len()];
        for (k, v) in map {
            let i: usize = k.parse().ok()?;
            *labels.get_mut(i)? = Some(v.as_str()?.to_string());
        }
        labels.into_iter().collect()
    }
}

impl<'de> Deserialize<'de> for EncoderConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value, "config.json").map_err(|e| serde::de::Error::custom(format!("{e:#}")))
    }
}
