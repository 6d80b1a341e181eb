//! [`TextModel`]: an encoder under its transformers prefix (`bert.`, `roberta.`, `distilbert.`) and a task head
//! at the top level, so that the `VarStore` names are those of `BertForSequenceClassification` and its siblings.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use suite_core::nn::{path_name, LayerVisitor, VisitLayers};
use suite_core::weights::LoadReport;
use tch::{nn, Tensor};

use super::bert::BertModel;
use super::config::{EncoderConfig, ModelType};
use super::distilbert::DistilBertModel;
use super::heads::{Head, HeadLayers};
use super::layers::Named;

#[derive(Debug)]
enum Encoder {
    Bert(BertModel),
    Roberta(BertModel),
    DistilBert(DistilBertModel),
}

/// A BERT-family encoder with a task head, named as transformers' `…ForSequenceClassification`,
/// `…ForTokenClassification` or `…ForQuestionAnswering`.
#[derive(Debug)]
pub struct TextModel {
    /// The encoder's configuration.
    pub config: EncoderConfig,
    /// The task head.
    pub head: Head,
    encoder: Encoder,
    head_layers: HeadLayers,
    /// Dotted name of the root path the model was built under, with a trailing dot (empty for `vs.root()`).
    root_prefix: String,
}

impl TextModel {
    /// Registers every tensor under `root` (normally `vs.root()`), initialised as transformers does (normal with
    /// `initializer_range`, zero biases, unit LayerNorms, zero padding rows).
    pub fn new(root: &nn::Path, config: &EncoderConfig, head: Head) -> Result<Self> {
        if let Head::Classify { num_labels } | Head::Tokens { num_labels } = head {
            if num_labels < 1 {
                bail!("a {head:?} head needs at least one label");
            }
        }
        let p = root / config.model_type.encoder_prefix();
        let pooler = head.uses_pooler(config.model_type);
        let encoder = match config.model_type {
            ModelType::Bert => Encoder::Bert(BertModel::new(p, config, pooler)),
            ModelType::Roberta | ModelType::XlmRoberta => Encoder::Roberta(BertModel::roberta(p, config, pooler)),
            ModelType::DistilBert => Encoder::DistilBert(DistilBertModel::new(p, config)),
        };
        let root_name = path_name(root);
        let root_prefix = if root_name.is_empty() { String::new() } else { format!("{root_name}.") };
        Ok(Self {
            config: config.clone(),
            head,
            encoder,
            head_layers: HeadLayers::new(root, config, head),
            root_prefix,
        })
    }

    /// Logits: `[batch, num_labels]` (Classify), `[batch, len, num_labels]` (Tokens), `[batch, len, 2]` (Span:
    /// start, end). `token_type_ids` is ignored by DistilBERT (and by RoBERTa checkpoints with a single token
    /// type). All inputs are Int64 `[batch, len]`; `attention_mask` is 0/1. Inputs must fit the model: ids below
    /// `vocab_size`, token types below `type_vocab_size`, length at most [`EncoderConfig::max_input_len`]
    /// (the tokenizer's truncation guarantees it).
    pub fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let (hidden, pooled) = self.encode(input_ids, token_type_ids, attention_mask, train);
        self.head_layers.forward(&hidden, pooled.as_ref(), train)
    }

    /// Checks that a batch fits the model before [`forward`](Self::forward), which (like any libtorch call) would
    /// otherwise abort on an out-of-range id: Int64 `[batch, len]` tensors of one shape, `len` at most
    /// [`EncoderConfig::max_input_len`], ids below `vocab_size`, token types below `type_vocab_size` (when the
    /// model uses them), a 0/1 mask.
    pub fn check_inputs(&self, input_ids: &Tensor, token_type_ids: &Tensor, attention_mask: &Tensor) -> Result<()> {
        let c = &self.config;
        let shape = input_ids.size();
        for (name, t) in
            [("input_ids", input_ids), ("token_type_ids", token_type_ids), ("attention_mask", attention_mask)]
        {
            if t.kind() != tch::Kind::Int64 || t.size() != shape || shape.len() != 2 {
                bail!(
                    "{name}: expected Int64 [batch, len] like input_ids {shape:?}, found {:?} {:?}",
                    t.kind(),
                    t.size()
                );
            }
        }
        if shape[1] > c.max_input_len() {
            bail!("input of {} tokens is longer than the {} positions the model has", shape[1], c.max_input_len());
        }
        if input_ids.numel() == 0 {
            return Ok(());
        }
        let range = |t: &Tensor| (t.min().int64_value(&[]), t.max().int64_value(&[]));
        let (lo, hi) = range(input_ids);
        if lo < 0 || hi >= c.vocab_size {
            bail!("input_ids: ids range over [{lo}, {hi}], outside the vocabulary of {} tokens", c.vocab_size);
        }
        if c.type_vocab_size > 1 {
            let (lo, hi) = range(token_type_ids);
            if lo < 0 || hi >= c.type_vocab_size {
                bail!("token_type_ids: range over [{lo}, {hi}], but the model has {} token types", c.type_vocab_size);
            }
        }
        let (lo, hi) = range(attention_mask);
        if lo < 0 || hi > 1 {
            bail!("attention_mask: expected 0/1 values, found values in [{lo}, {hi}]");
        }
        Ok(())
    }

    /// The encoder's last hidden states `[batch, len, hidden]` and, for BERT classification, the pooled output.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        match &self.encoder {
            Encoder::Bert(m) => m.forward(input_ids, token_type_ids, attention_mask, train),
            Encoder::Roberta(m) => m.forward(input_ids, token_type_ids, attention_mask, train),
            Encoder::DistilBert(m) => (m.forward(input_ids, attention_mask, train), None),
        }
    }

    /// The output of the encoder's `embeddings.word_embeddings` for Int64 `input_ids` `[batch, len]`:
    /// `[batch, len, hidden]`, the layer whose output integrated gradients attribute to.
    pub fn word_embeddings(&self, input_ids: &Tensor) -> Tensor {
        match &self.encoder {
            Encoder::Bert(m) => m.word_embeddings(input_ids),
            Encoder::Roberta(m) => m.word_embeddings(input_ids),
            Encoder::DistilBert(m) => m.word_embeddings(input_ids),
        }
    }

    /// Eval-mode logits as [`forward`](Self::forward), with `word` (`[batch, len, hidden]`) in place of the output
    /// of `embeddings.word_embeddings`, as a forward hook on that layer would: positions, token types and the
    /// attention mask still come from the other inputs. Gradients flow back to `word`.
    pub fn forward_from_word_embeddings(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        word: &Tensor,
    ) -> Tensor {
        let (hidden, pooled) = match &self.encoder {
            Encoder::Bert(m) => m.forward_with(input_ids, token_type_ids, attention_mask, Some(word), false),
            Encoder::Roberta(m) => m.forward_with(input_ids, token_type_ids, attention_mask, Some(word), false),
            Encoder::DistilBert(m) => (m.forward_with(input_ids, attention_mask, Some(word), false), None),
        };
        self.head_layers.forward(&hidden, pooled.as_ref(), false)
    }

    /// The transformers prefix of the encoder (`"bert"`, `"roberta"`, `"distilbert"`).
    pub fn encoder_prefix(&self) -> &'static str {
        self.config.model_type.encoder_prefix()
    }

    /// Name prefixes of the head's tensors (always trained, always saved with an adapter), e.g.
    /// `["classifier.", "bert.pooler."]` for BERT classification.
    pub fn head_prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.head_layers.prefixes().iter().map(|p| format!("{}{p}", self.root_prefix)).collect();
        if self.head.uses_pooler(self.config.model_type) {
            out.push(format!("{}{}.pooler.", self.root_prefix, self.encoder_prefix()));
        }
        out
    }

    /// transformers' class name of this model (`BertForSequenceClassification`, `XLMRobertaForTokenClassification`…).
    pub fn architecture(&self) -> String {
        format!("{}{}", self.config.model_type.class_stem(), self.head.class_suffix())
    }

    /// The model's own tensors in module order, named as in transformers (without the root prefix).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Named = Vec::new();
        match &self.encoder {
            Encoder::Bert(m) => m.push(&mut out),
            Encoder::Roberta(m) => m.push(&mut out),
            Encoder::DistilBert(m) => m.push(&mut out),
        }
        self.head_layers.push(&mut out);
        out.into_iter().map(|(n, t)| (n.strip_prefix(&self.root_prefix).map(str::to_string).unwrap_or(n), t)).collect()
    }

    /// The root prefix (`""` for `vs.root()`, else `"name."`).
    pub(crate) fn root_prefix(&self) -> &str {
        &self.root_prefix
    }

    /// Loads pretrained encoder weights by name from safetensors files of a base model (names without a prefix,
    /// e.g. all-MiniLM-L6-v2) or of a task model (names with the prefix, with or without a head). A head whose
    /// shape differs or is absent stays freshly initialised (reported in the [`LoadReport`]); pretraining heads
    /// (`cls.`, `lm_head.`, DistilBERT's `vocab_*`), other task heads and a pooler the task does not use are left
    /// unused (reported as unexpected); any other unexpected tensor and any missing encoder tensor is an error;
    /// `position_ids`/`token_type_ids` buffers are skipped.
    pub fn load_pretrained(&self, vs: &mut nn::VarStore, weights: &[PathBuf]) -> Result<LoadReport> {
        super::load::load_pretrained(self, vs, weights)
    }

    /// Writes hub layout into `dir`: `config.json` (the raw config with `architectures`, `id2label`/`label2id`,
    /// `num_labels`, and `problem_type` "multi_label_classification" when `multi_label`), `model.safetensors`
    /// with transformers names, and whichever tokenizer files (`tokenizer.json`, `tokenizer_config.json`,
    /// `vocab.txt`, `special_tokens_map.json`, `merges.txt`, `vocab.json`, sentencepiece models…) exist in
    /// `tokenizer_dir`.
    pub fn export(
        &self,
        vs: &nn::VarStore,
        dir: &Path,
        labels: &[String],
        multi_label: bool,
        tokenizer_dir: &Path,
    ) -> Result<()> {
        super::export::export(self, vs, dir, labels, multi_label, tokenizer_dir)
    }

    /// The `config.json` an export writes: the raw config with the task's architecture and labels.
    pub fn hub_config(&self, labels: &[String], multi_label: bool) -> Result<serde_json::Value> {
        super::export::export_config(self, labels, multi_label)
    }
}

impl VisitLayers for TextModel {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        match &mut self.encoder {
            Encoder::Bert(m) => m.visit_layers(visitor),
            Encoder::Roberta(m) => m.visit_layers(visitor),
            Encoder::DistilBert(m) => m.visit_layers(visitor),
        }
        self.head_layers.visit(visitor);
    }
}
