//! Prefix tuning and P-tuning v2: trained keys and values prepended in every attention block.
//!
//! Each block's prefix is a `[n, 2·heads·head_dim]` table whose row `t` holds virtual token `t`'s key (all heads)
//! then its value — exactly block `i`'s columns `[2i·H, (2i+2)·H)` of peft's `[n, 2·layers·H]` prompt table, so
//! concatenating the blocks' tables in order gives peft's. With the reparameterisation of prefix tuning, the table
//! is the output of peft's `PrefixEncoder` MLP (`Embedding → Linear → tanh → Linear`), shared by every block; each
//! block computes only its own slice of the last layer.

use tch::Tensor;

use crate::nn::PrefixKv;

/// Where a block's table comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A trained table of its own (P-tuning v2, prefix tuning without projection).
    Table(Tensor),
    /// The shared MLP's output columns `[offset, offset + 2·H)`.
    Mlp { embedding: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, offset: i64 },
}

/// The prefix of one attention block.
#[derive(Debug)]
pub(crate) struct Prefix {
    pub source: Source,
    pub heads: i64,
    pub head_dim: i64,
}

impl Prefix {
    /// The block's `[n, 2·heads·head_dim]` table.
    pub(crate) fn table(&self) -> Tensor {
        match &self.source {
            Source::Table(t) => t.shallow_clone(),
            Source::Mlp { embedding, w1, b1, w2, b2, offset } => {
                let width = 2 * self.heads * self.head_dim;
                let hidden = embedding.linear(w1, Some(b1)).tanh();
                hidden.linear(&w2.narrow(0, *offset, width), Some(&b2.narrow(0, *offset, width)))
            }
        }
    }
}

impl PrefixKv for Prefix {
    fn key_values(&self, batch: i64, _train: bool) -> (Tensor, Tensor) {
        let table = self.table();
        let n = table.size()[0];
        // [n, 2, heads, head_dim] → [2, heads, n, head_dim], the same for every example of the batch.
        let kv = table.view([n, 2, self.heads, self.head_dim]).permute([1, 2, 0, 3]);
        let expand = |t: Tensor| t.unsqueeze(0).expand([batch, self.heads, n, self.head_dim], false);
        (expand(kv.get(0)), expand(kv.get(1)))
    }
}
