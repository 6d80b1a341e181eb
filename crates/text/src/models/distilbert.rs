//! DistilBERT: transformers' `DistilBertModel`, with its own names (`transformer.layer.N.attention.q_lin`,
//! `sa_layer_norm`, `ffn.lin1`, `output_layer_norm`) and no token types or pooler.

use suite_core::nn::{path_name, AttentionSlots, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Kind, Tensor};

use super::config::{Activation, EncoderConfig};
use super::layers::{
    additive_mask, dense, dropout, merge_heads, push_linear, split_heads, Embedding, LayerNorm, Named,
};

/// DistilBERT's fixed sinusoidal table: `sin` on even columns and `cos` on odd ones of `pos / 10000^(2⌊j/2⌋/dim)`.
fn sinusoidal_table(n_pos: i64, dim: i64) -> Tensor {
    let pos = Tensor::arange(n_pos, (Kind::Double, tch::Device::Cpu)).unsqueeze(1);
    let j = Tensor::arange(dim, (Kind::Int64, tch::Device::Cpu)).divide_scalar_mode(2, "floor");
    let rate = Tensor::from(10000.0f64).pow(&(j.to_kind(Kind::Double) * 2.0 / dim as f64));
    let angle = pos / rate.unsqueeze(0);
    let even = Tensor::arange(dim, (Kind::Int64, tch::Device::Cpu)).remainder(2).eq(0);
    angle.sin().where_self(&even.unsqueeze(0), &angle.cos()).to_kind(Kind::Float)
}

/// `embeddings.*`: word and position embeddings, LayerNorm (eps 1e-12), dropout.
#[derive(Debug)]
struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl Embeddings {
    fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let position_embeddings = Embedding::new(&p / "position_embeddings", c.max_position_embeddings, h, None, std);
        if c.sinusoidal_pos_embds {
            let table = sinusoidal_table(c.max_position_embeddings, h);
            tch::no_grad(|| position_embeddings.weight.shallow_clone().copy_(&table));
        }
        Self {
            word_embeddings: Embedding::new(&p / "word_embeddings", c.vocab_size, h, Some(c.pad_token_id), std),
            position_embeddings,
            layer_norm: LayerNorm::new(&p / "LayerNorm", h, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `word`, when given, replaces the output of `word_embeddings` (integrated gradients interpolate it).
    fn forward(&self, input_ids: &Tensor, word: Option<&Tensor>, train: bool) -> Tensor {
        let positions = Tensor::arange(input_ids.size()[1], (Kind::Int64, input_ids.device()));
        let word = word.map_or_else(|| self.word_embeddings.forward(input_ids), Tensor::shallow_clone);
        let x = word + self.position_embeddings.forward(&positions);
        dropout(self.layer_norm.forward(&x), self.dropout, train)
    }

    fn push(&self, out: &mut Named) {
        self.word_embeddings.push(out);
        self.position_embeddings.push(out);
        self.layer_norm.push(out);
    }
}

/// `transformer.layer.N`: attention (`attention.{q,k,v,out}_lin`), `sa_layer_norm`, `ffn.lin{1,2}`,
/// `output_layer_norm`.
#[derive(Debug)]
struct TransformerBlock {
    q_lin: Linear,
    k_lin: Linear,
    v_lin: Linear,
    slots: AttentionSlots,
    out_lin: Linear,
    sa_layer_norm: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    output_layer_norm: LayerNorm,
    act: Activation,
    dropout: f64,
}

impl TransformerBlock {
    fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let attn = &p / "attention";
        let ffn = &p / "ffn";
        Self {
            q_lin: dense(&attn / "q_lin", h, h, std),
            k_lin: dense(&attn / "k_lin", h, h, std),
            v_lin: dense(&attn / "v_lin", h, h, std),
            slots: AttentionSlots::new(path_name(&attn), c.num_attention_heads, c.head_dim())
                .with_dropout(c.attention_probs_dropout_prob),
            out_lin: dense(&attn / "out_lin", h, h, std),
            sa_layer_norm: LayerNorm::new(&p / "sa_layer_norm", h, c.layer_norm_eps),
            lin1: dense(&ffn / "lin1", h, c.intermediate_size, std),
            lin2: dense(&ffn / "lin2", c.intermediate_size, h, std),
            output_layer_norm: LayerNorm::new(&p / "output_layer_norm", h, c.layer_norm_eps),
            act: c.hidden_act,
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let (heads, hd) = (self.slots.heads, self.slots.head_dim);
        let q = split_heads(&self.q_lin.forward_t(x, train), heads, hd);
        let k = split_heads(&self.k_lin.forward_t(x, train), heads, hd);
        let v = split_heads(&self.v_lin.forward_t(x, train), heads, hd);
        let context = merge_heads(&self.slots.attend(&q, &k, &v, mask, false, train));
        // As in transformers, no dropout on the attention output: only the FFN output is dropped.
        let a = self.sa_layer_norm.forward(&(self.out_lin.forward_t(&context, train) + x));
        let f = self.lin2.forward_t(&self.act.apply(&self.lin1.forward_t(&a, train)), train);
        self.output_layer_norm.forward(&(dropout(f, self.dropout, train) + a))
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.q_lin);
        v.linear(&mut self.k_lin);
        v.linear(&mut self.v_lin);
        v.attention(&mut self.slots);
        v.linear(&mut self.out_lin);
        v.linear(&mut self.lin1);
        v.linear(&mut self.lin2);
    }

    fn push(&self, out: &mut Named) {
        push_linear(out, &self.q_lin);
        push_linear(out, &self.k_lin);
        push_linear(out, &self.v_lin);
        push_linear(out, &self.out_lin);
        self.sa_layer_norm.push(out);
        push_linear(out, &self.lin1);
        push_linear(out, &self.lin2);
        self.output_layer_norm.push(out);
    }
}

/// transformers' `DistilBertModel`: embeddings and `transformer.layer.*`.
#[derive(Debug)]
pub struct DistilBertModel {
    embeddings: Embeddings,
    layers: Vec<TransformerBlock>,
}

impl DistilBertModel {
    /// Registers the model's tensors under `p`.
    pub fn new(p: nn::Path, c: &EncoderConfig) -> Self {
        let l = &p / "transformer" / "layer";
        Self {
            embeddings: Embeddings::new(&p / "embeddings", c),
            layers: (0..c.num_hidden_layers).map(|i| TransformerBlock::new(&l / i, c)).collect(),
        }
    }

    /// The last hidden states `[batch, len, dim]`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.forward_with(input_ids, attention_mask, None, train)
    }

    /// The output of `embeddings.word_embeddings` for `input_ids`: `[batch, len, dim]`.
    pub fn word_embeddings(&self, input_ids: &Tensor) -> Tensor {
        self.embeddings.word_embeddings.forward(input_ids)
    }

    /// [`forward`](Self::forward) with `word`, when given, in place of the output of `embeddings.word_embeddings`.
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        word: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let x = self.embeddings.forward(input_ids, word, train);
        let mask = additive_mask(attention_mask, x.kind());
        self.layers.iter().fold(x, |x, layer| layer.forward(&x, mask.as_ref(), train))
    }

    pub(crate) fn push(&self, out: &mut Named) {
        self.embeddings.push(out);
        self.layers.iter().for_each(|l| l.push(out));
    }
}

impl VisitLayers for DistilBertModel {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        self.layers.iter_mut().for_each(|l| l.visit(visitor));
    }
}
