//! RoBERTa and XLM-RoBERTa: transformers' `RobertaModel`/`XLMRobertaModel`, which are BERT with positions counted
//! from the padding id over non-padding tokens (fairseq's `make_positions`).

use suite_core::nn::{LayerVisitor, VisitLayers};
use tch::{nn, Kind, Tensor};

use super::bert::{BertEncoder, BertPooler};
use super::config::EncoderConfig;
use super::layers::{dropout, Embedding, LayerNorm, Named};

/// The position ids RoBERTa gives `input_ids`: `padding_idx` for padding tokens, and `padding_idx + k` for the
/// k-th non-padding token of the row (transformers' `create_position_ids_from_input_ids`).
pub fn roberta_position_ids(input_ids: &Tensor, padding_idx: i64) -> Tensor {
    let mask = input_ids.ne(padding_idx).to_kind(Kind::Int64);
    mask.cumsum(1, Kind::Int64) * &mask + padding_idx
}

/// `embeddings.*` of RoBERTa: word, position (with a padding row) and token-type embeddings.
#[derive(Debug)]
struct RobertaEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
    padding_idx: i64,
}

impl RobertaEmbeddings {
    fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let (h, std, pad) = (c.hidden_size, c.initializer_range, c.pad_token_id);
        Self {
            word_embeddings: Embedding::new(&p / "word_embeddings", c.vocab_size, h, Some(pad), std),
            position_embeddings: Embedding::new(
                &p / "position_embeddings",
                c.max_position_embeddings,
                h,
                Some(pad),
                std,
            ),
            token_type_embeddings: Embedding::new(&p / "token_type_embeddings", c.type_vocab_size, h, None, std),
            layer_norm: LayerNorm::new(&p / "LayerNorm", h, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
            padding_idx: pad,
        }
    }

    /// `word`, when given, replaces the output of `word_embeddings`; positions still count `input_ids`' padding.
    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, word: Option<&Tensor>, train: bool) -> Tensor {
        let positions = roberta_position_ids(input_ids, self.padding_idx);
        // RoBERTa checkpoints have a single token type: its row is added everywhere, whatever ids a tokenizer
        // made for sentence pairs (transformers uses the same all-zero ids when none are passed).
        let types = if self.token_type_embeddings.weight.size()[0] == 1 {
            self.token_type_embeddings.weight.get(0)
        } else {
            self.token_type_embeddings.forward(token_type_ids)
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

/// transformers' `RobertaModel` (and `XLMRobertaModel`): embeddings, encoder, optional pooler.
#[derive(Debug)]
pub struct RobertaModel {
    embeddings: RobertaEmbeddings,
    encoder: BertEncoder,
    /// `pooler.dense`; transformers' RoBERTa task heads do not use it, so it is built only on request.
    pub pooler: Option<BertPooler>,
}

impl RobertaModel {
    /// Registers the model's tensors under `p`.
    pub fn new(p: nn::Path, c: &EncoderConfig, add_pooling_layer: bool) -> Self {
        Self {
            embeddings: RobertaEmbeddings::new(&p / "embeddings", c),
            encoder: BertEncoder::new(&p / "encoder", c),
            pooler: add_pooling_layer.then(|| BertPooler::new(&p / "pooler", c)),
        }
    }

    /// The last hidden states `[batch, len, hidden]` and, with a pooler, the pooled output.
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

    /// [`forward`](Self::forward) with `word`, when given, in place of the output of `embeddings.word_embeddings`.
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

impl VisitLayers for RobertaModel {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        self.encoder.visit(visitor);
        if let Some(p) = &mut self.pooler {
            p.visit(visitor);
        }
    }
}
