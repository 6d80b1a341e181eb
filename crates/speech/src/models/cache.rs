//! The decoder's key/value cache for incremental decoding.

use tch::Tensor;

/// Keys and values of one decoder block.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    /// Self-attention keys and values of every position so far, `[rows, heads, len, head_dim]`.
    pub(crate) self_kv: Option<(Tensor, Tensor)>,
    /// Cross-attention keys and values of the encoder states, `[audio items, heads, frames, head_dim]`: computed
    /// on the first step and shared by every row (beam) of an item.
    pub(crate) cross_kv: Option<(Tensor, Tensor)>,
}

/// What [`super::Whisper::decoder_step`] keeps between steps: per block, the self-attention keys and values
/// (one row per sequence, appended each step) and the cross-attention keys and values (one row per audio item,
/// computed once).
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: i64,
}

impl KvCache {
    /// An empty cache, for a new batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions decoded so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether no position has been decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reorders the sequences after a beam-search step: row `i` takes the self-attention history of row
    /// `beam_indices[i]` (Int64, one entry per row). Beams must stay within their audio item — row `i` and
    /// `beam_indices[i]` belong to the same item — because the cross-attention keys are per item and are not
    /// moved.
    pub fn reorder(&mut self, beam_indices: &Tensor) {
        for layer in &mut self.layers {
            if let Some((k, v)) = layer.self_kv.take() {
                let idx = beam_indices.to_device(k.device());
                layer.self_kv = Some((k.index_select(0, &idx), v.index_select(0, &idx)));
            }
        }
    }

    pub(crate) fn ensure_layers(&mut self, n: usize) {
        if self.layers.len() != n {
            self.layers = (0..n).map(|_| LayerCache::default()).collect();
            self.len = 0;
        }
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut LayerCache> {
        self.layers.iter_mut()
    }

    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }
}
