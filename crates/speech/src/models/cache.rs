//! The decoder's key/value cache for incremental decoding.

use tch::Tensor;

/// Self-attention keys and values of one block, in buffers allocated ahead: each step writes its new positions
/// into the free tail instead of concatenating (a copy of the whole history per step and layer), and attention
/// reads a view of the filled part. Buffers double when full, so a window of n tokens costs O(n) copies.
#[derive(Debug)]
pub(crate) struct SelfKv {
    /// `[rows, heads, capacity, head_dim]`.
    k: Tensor,
    v: Tensor,
    len: i64,
}

/// Positions a cache holds before its first growth: a window's prompt and a typical segment.
const INITIAL_CAPACITY: i64 = 256;

impl SelfKv {
    /// Appends `k_new`, `v_new` (`[rows, heads, t, head_dim]`) and returns views of every position so far.
    pub(crate) fn append(slot: &mut Option<SelfKv>, k_new: &Tensor, v_new: &Tensor) -> (Tensor, Tensor) {
        let t = k_new.size()[2];
        let kv = slot.get_or_insert_with(|| SelfKv {
            k: Self::buffer(k_new, INITIAL_CAPACITY.max(t)),
            v: Self::buffer(v_new, INITIAL_CAPACITY.max(t)),
            len: 0,
        });
        let capacity = kv.k.size()[2];
        if kv.len + t > capacity {
            let grown = (2 * capacity).max(kv.len + t);
            for buf in [&mut kv.k, &mut kv.v] {
                let bigger = Self::buffer(buf, grown);
                bigger.narrow(2, 0, kv.len).copy_(&buf.narrow(2, 0, kv.len));
                *buf = bigger;
            }
        }
        kv.k.narrow(2, kv.len, t).copy_(k_new);
        kv.v.narrow(2, kv.len, t).copy_(v_new);
        kv.len += t;
        (kv.k.narrow(2, 0, kv.len), kv.v.narrow(2, 0, kv.len))
    }

    /// An uninitialised buffer shaped as `like` with `capacity` positions.
    fn buffer(like: &Tensor, capacity: i64) -> Tensor {
        let mut shape = like.size();
        shape[2] = capacity;
        Tensor::empty(shape.as_slice(), (like.kind(), like.device()))
    }
}

/// Keys and values of one decoder block.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    /// Self-attention keys and values of every position so far.
    pub(crate) self_kv: Option<SelfKv>,
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
            if let Some(kv) = layer.self_kv.as_mut() {
                let idx = beam_indices.to_device(kv.k.device());
                // Only the filled positions move; the free tail stays as it is.
                for buf in [&mut kv.k, &mut kv.v] {
                    let mut filled = buf.narrow(2, 0, kv.len);
                    let moved = filled.index_select(0, &idx);
                    filled.copy_(&moved);
                }
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
