//! BERT (and MiniLM) and RoBERTa/XLM-RoBERTa: transformers' `BertModel` and `RobertaModel`, with their tensor
//! names. RoBERTa is BERT whose positions are counted from the padding id ([`Positions::FromPadding`]).

use suite_core::nn::{path_name, AttentionSlots, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Kind, Tensor};

use super::config::{Activation, EncoderConfig};
use super::layers::{
    additive_mask, dense, dropout, merge_heads, push_linear, split_heads, Embedding, LayerNorm, Named,
};

/// How an encoder numbers its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// BERT: `0..len` for every row.
    Absolute,
    /// RoBERTa and XLM-RoBERTa: counted from the padding id over non-padding tokens ([`roberta_position_ids`]);
    /// the position table's padding row stays zero.
    FromPadding {
        /// The padding token id.
        padding_idx: i64,
    },
}

/// The position ids RoBERTa gives `input_ids`: `padding_idx` for padding tokens, and `padding_idx + k` for the
/// k-th non-padding token of the row (transformers' `create_position_ids_from_input_ids`, fairseq's
/// `make_positions`).
pub fn roberta_position_ids(input_ids: &Tensor, padding_idx: i64) -> Tensor {
    let mask = input_ids.ne(padding_idx).to_kind(Kind::Int64);
    mask.cumsum(1, Kind::Int64) * &mask + padding_idx
}

/// `embeddings.*`: word + token type + position embeddings, LayerNorm, dropout.
#[derive(Debug)]
pub struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
    positions: Positions,
}

impl BertEmbeddings {
    fn new(p: nn::Path, c: &EncoderConfig, positions: Positions) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let position_padding = match positions {
            Positions::Absolute => None,
            Positions::FromPadding { padding_idx } => Some(padding_idx),
        };
        Self {
            word_embeddings: Embedding::new(&p / "word_embeddings", c.vocab_size, h, Some(c.pad_token_id), std),
            position_embeddings: Embedding::new(
                &p / "position_embeddings",
                c.max_position_embeddings,
                h,
                position_padding,
                std,
            ),
            token_type_embeddings: Embedding::new(&p / "token_type_embeddings", c.type_vocab_size, h, None, std),
            layer_norm: LayerNorm::new(&p / "LayerNorm", h, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
            positions,
        }
    }

    /// `word`, when given, replaces the output of `word_embeddings` (integrated gradients interpolate it);
    /// positions still come from `input_ids`.
    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, word: Option<&Tensor>, train: bool) -> Tensor {
        let (positions, types) = match self.positions {
            Positions::Absolute => (
                Tensor::arange(input_ids.size()[1], (Kind::Int64, input_ids.device())),
                self.token_type_embeddings.forward(token_type_ids),
            ),
            Positions::FromPadding { padding_idx } => {
                // RoBERTa checkpoints have a single token type: its row is added everywhere, whatever ids a
                // tokenizer made for sentence pairs (transformers uses the same all-zero ids when none are passed).
                let types = if self.token_type_embeddings.weight.size()[0] == 1 {
                    self.token_type_embeddings.weight.get(0)
                } else {
                    self.token_type_embeddings.forward(token_type_ids)
                };
                (roberta_position_ids(input_ids, padding_idx), types)
            }
        };
        let word = word.map_or_else(|| self.word_embeddings.forward(input_ids), Tensor::shallow_clone);
        let x = word + types + self.position_embeddings.forward(&positions);
        dropout(self.layer_norm.forward(&x), self.dropout, train)
    }

    fn push(&self, out: &mut Named) {
        self.word_embeddings.push(out);
        self.position_embeddings.push(out);
        self.token_type_embeddings.push(out);
        self.layer_norm.push(out);
    }
}

/// `encoder.layer.N`: self-attention (`attention.self.{query,key,value}`), its output projection with residual
/// and LayerNorm (`attention.output.{dense,LayerNorm}`), and the feed-forward block (`intermediate.dense`,
/// `output.{dense,LayerNorm}`).
#[derive(Debug)]
pub struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    slots: AttentionSlots,
    attention_output: Linear,
    attention_layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_layer_norm: LayerNorm,
    act: Activation,
    dropout: f64,
}

impl BertLayer {
    fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let attn = &p / "attention";
        let this = &attn / "self";
        Self {
            query: dense(&this / "query", h, h, std),
            key: dense(&this / "key", h, h, std),
            value: dense(&this / "value", h, h, std),
            slots: AttentionSlots::new(path_name(&this), c.num_attention_heads, c.head_dim())
                .with_dropout(c.attention_probs_dropout_prob),
            attention_output: dense(&attn / "output" / "dense", h, h, std),
            attention_layer_norm: LayerNorm::new(&attn / "output" / "LayerNorm", h, c.layer_norm_eps),
            intermediate: dense(&p / "intermediate" / "dense", h, c.intermediate_size, std),
            output: dense(&p / "output" / "dense", c.intermediate_size, h, std),
            output_layer_norm: LayerNorm::new(&p / "output" / "LayerNorm", h, c.layer_norm_eps),
            act: c.hidden_act,
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let (heads, hd) = (self.slots.heads, self.slots.head_dim);
        let q = split_heads(&self.query.forward_t(x, train), heads, hd);
        let k = split_heads(&self.key.forward_t(x, train), heads, hd);
        let v = split_heads(&self.value.forward_t(x, train), heads, hd);
        let context = merge_heads(&self.slots.attend(&q, &k, &v, mask, false, train));
        // Residual and LayerNorm come after the output projections, so adapters on `attention.output.dense` and
        // `output.dense` see exactly what transformers' adapter layers see.
        let a = self.attention_output.forward_t(&context, train);
        let a = self.attention_layer_norm.forward(&(dropout(a, self.dropout, train) + x));
        let i = self.act.apply(&self.intermediate.forward_t(&a, train));
        let o = self.output.forward_t(&i, train);
        self.output_layer_norm.forward(&(dropout(o, self.dropout, train) + a))
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.query);
        v.linear(&mut self.key);
        v.linear(&mut self.value);
        v.attention(&mut self.slots);
        v.linear(&mut self.attention_output);
        v.linear(&mut self.intermediate);
        v.linear(&mut self.output);
    }

    fn push(&self, out: &mut Named) {
        push_linear(out, &self.query);
        push_linear(out, &self.key);
        push_linear(out, &self.value);
        push_linear(out, &self.attention_output);
        self.attention_layer_norm.push(out);
        push_linear(out, &self.intermediate);
        push_linear(out, &self.output);
        self.output_layer_norm.push(out);
    }
}

/// `encoder.layer.*`, shared by BERT and RoBERTa.
#[derive(Debug)]
pub struct BertEncoder {
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    pub(crate) fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let l = &p / "layer";
        Self { layers: (0..c.num_hidden_layers).map(|i| BertLayer::new(&l / i, c)).collect() }
    }

    /// Runs every layer over `x` with the 0/1 `attention_mask`.
    pub(crate) fn forward(&self, x: Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let mask = additive_mask(attention_mask, x.kind());
        self.layers.iter().fold(x, |x, layer| layer.forward(&x, mask.as_ref(), train))
    }

    pub(crate) fn visit(&mut self, v: &mut dyn LayerVisitor) {
        self.layers.iter_mut().for_each(|l| l.visit(v));
    }

    pub(crate) fn push(&self, out: &mut Named) {
        self.layers.iter().for_each(|l| l.push(out));
    }
}

/// `pooler.dense`: tanh of a dense layer over the first ([CLS]) token.
#[derive(Debug)]
pub struct BertPooler {
    dense: Linear,
}

impl BertPooler {
    pub(crate) fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        Self { dense: dense(&p / "dense", c.hidden_size, c.hidden_size, c.initializer_range) }
    }

    pub(crate) fn forward(&self, hidden: &Tensor, train: bool) -> Tensor {
        self.dense.forward_t(&hidden.select(1, 0), train).tanh()
    }

    pub(crate) fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.dense);
    }

    pub(crate) fn push(&self, out: &mut Named) {
        push_linear(out, &self.dense);
    }
}

/// transformers' `BertModel` (and, built by [`BertModel::roberta`], `RobertaModel`/`XLMRobertaModel`):
/// embeddings, encoder and (optionally) the pooler.
#[derive(Debug)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    encoder: BertEncoder,
    /// `pooler.dense`, present when the task uses it (sequence classification).
    pub pooler: Option<BertPooler>,
}

impl BertModel {
    /// Registers the model's tensors under `p` (`p / "embeddings"`, `p / "encoder"`, `p / "pooler"`).
    pub fn new(p: nn::Path, c: &EncoderConfig, add_pooling_layer: bool) -> Self {
        Self::with_positions(p, c, add_pooling_layer, Positions::Absolute)
    }

    /// transformers' `RobertaModel` (and `XLMRobertaModel`); their task heads do not use the pooler, so it is
    /// built only on request.
    pub fn roberta(p: nn::Path, c: &EncoderConfig, add_pooling_layer: bool) -> Self {
        Self::with_positions(p, c, add_pooling_layer, Positions::FromPadding { padding_idx: c.pad_token_id })
    }

    fn with_positions(p: nn::Path, c: &EncoderConfig, add_pooling_layer: bool, positions: Positions) -> Self {
        Self {
            embeddings: BertEmbeddings::new(&p / "embeddings", c, positions),
            encoder: BertEncoder::new(&p / "encoder", c),
            pooler: add_pooling_layer.then(|| BertPooler::new(&p / "pooler", c)),
        }
    }

    /// The last hidden states `[batch, len, hidden]` and, with a pooler, the pooled output `[batch, hidden]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        self.forward_with(input_ids, token_type_ids, attention_mask, None, train)
    }

    /// The output of `embeddings.word_embeddings` for `input_ids`: `[batch, len, hidden]`.
    pub fn word_embeddings(&self, input_ids: &Tensor) -> Tensor {
        self.embeddings.word_embeddings.forward(input_ids)
    }

    /// [`forward`](Self::forward) with `word` (`[batch, len, hidden]`), when given, in place of the output of
    /// `embeddings.word_embeddings`; positions and token types still come from `input_ids`/`token_type_ids`.
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        word: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        let x = self.embeddings.forward(input_ids, token_type_ids, word, train);
        let hidden = self.encoder.forward(x, attention_mask, train);
        let pooled = self.pooler.as_ref().map(|p| p.forward(&hidden, train));
        (hidden, pooled)
    }

    pub(crate) fn push(&self, out: &mut Named) {
        self.embeddings.push(out);
        self.encoder.push(out);
        if let Some(p) = &self.pooler {
            p.push(out);
        }
    }
}

impl VisitLayers for BertModel {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        self.encoder.visit(visitor);
        if let Some(p) = &mut self.pooler {
            p.visit(visitor);
        }
    }
}
