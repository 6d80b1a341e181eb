//! Whisper's multi-head attention (`self_attn`, `encoder_attn`): four projections named as in transformers'
//! `WhisperAttention`, the key projection without a bias, and every product through the PEFT slot.

use suite_core::nn::{path_name, AttentionSlots, LayerVisitor, Linear};
use tch::{nn, Kind, Tensor};

/// One attention block: `q_proj`, `k_proj` (no bias), `v_proj`, `out_proj`.
#[derive(Debug)]
pub(crate) struct WhisperAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    slots: AttentionSlots,
    heads: i64,
    head_dim: i64,
}

impl WhisperAttention {
    pub(crate) fn new(p: &nn::Path, d_model: i64, heads: i64) -> Self {
        let head_dim = d_model / heads;
        Self {
            q_proj: Linear::new(p / "q_proj", d_model, d_model, true),
            k_proj: Linear::new(p / "k_proj", d_model, d_model, false),
            v_proj: Linear::new(p / "v_proj", d_model, d_model, true),
            out_proj: Linear::new(p / "out_proj", d_model, d_model, true),
            slots: AttentionSlots::new(path_name(p), heads, head_dim),
            heads,
            head_dim,
        }
    }

    /// `[b, t, d]` → `[b, heads, t, head_dim]`.
    fn split(&self, x: &Tensor) -> Tensor {
        let (b, t, _) = x.size3().expect("attention input is [batch, len, d_model]");
        x.view([b, t, self.heads, self.head_dim]).transpose(1, 2)
    }

    /// `[b, heads, t, head_dim]` → `[b, t, d]`.
    fn merge(&self, x: &Tensor) -> Tensor {
        let (b, _, t, _) = x.size4().expect("attention output is [batch, heads, len, head_dim]");
        x.transpose(1, 2).reshape([b, t, self.heads * self.head_dim])
    }

    /// Self-attention over a whole sequence, causal in the decoder.
    pub(crate) fn forward_self(&self, x: &Tensor, causal: bool, train: bool) -> Tensor {
        let q = self.split(&self.q_proj.forward_t(x, train));
        let k = self.split(&self.k_proj.forward_t(x, train));
        let v = self.split(&self.v_proj.forward_t(x, train));
        let y = self.slots.attend(&q, &k, &v, None, causal, train);
        self.out_proj.forward_t(&self.merge(&y), train)
    }

    /// Decoder self-attention of new positions `x` after the cached ones in `past`, which it extends.
    pub(crate) fn forward_cached(&self, x: &Tensor, past: &mut Option<super::cache::SelfKv>) -> Tensor {
        let q = self.split(&self.q_proj.forward_t(x, false));
        let k_new = self.split(&self.k_proj.forward_t(x, false));
        let v_new = self.split(&self.v_proj.forward_t(x, false));
        let (k, v) = super::cache::SelfKv::append(past, &k_new, &v_new);
        let q_len = q.size()[2];
        let k_len = k.size()[2];
        let y = if q_len == k_len {
            self.slots.attend(&q, &k, &v, None, true, false)
        } else if q_len == 1 {
            // One new position sees every cached one: no mask at all.
            self.slots.attend(&q, &k, &v, None, false, false)
        } else {
            // Several new positions after a non-empty cache: causal aligned to the end of the keys, which
            // libtorch's `is_causal` (aligned to the start) does not do.
            let hidden = Tensor::ones([q_len, k_len], (Kind::Bool, q.device())).triu(1 + k_len - q_len);
            let mask = Tensor::zeros([q_len, k_len], (q.kind(), q.device())).masked_fill(&hidden, f64::NEG_INFINITY);
            self.slots.attend(&q, &k, &v, Some(&mask), false, false)
        };
        self.out_proj.forward_t(&self.merge(&y), false)
    }

    /// Keys and values of the encoder states for cross-attention, `[b, heads, frames, head_dim]` each.
    pub(crate) fn cross_kv(&self, encoder_states: &Tensor, train: bool) -> (Tensor, Tensor) {
        (
            self.split(&self.k_proj.forward_t(encoder_states, train)),
            self.split(&self.v_proj.forward_t(encoder_states, train)),
        )
    }

    /// Cross-attention of `x` `[b·g, t, d]` over keys and values of `b` audio items: the `g` rows of one item
    /// (its beams) share that item's keys, so they are folded into the query length instead of copying the keys
    /// `g` times.
    pub(crate) fn forward_cross(&self, x: &Tensor, k: &Tensor, v: &Tensor, train: bool) -> Tensor {
        let q = self.split(&self.q_proj.forward_t(x, train));
        let (rows, h, t, hd) = q.size4().expect("query is [batch, heads, len, head_dim]");
        let b = k.size()[0];
        assert!(b > 0 && rows % b == 0, "decoder batch {rows} is not a multiple of the encoder batch {b}");
        let g = rows / b;
        let y = if g == 1 {
            self.slots.attend(&q, k, v, None, false, train)
        } else {
            let q = q.view([b, g, h, t, hd]).permute([0, 2, 1, 3, 4]).reshape([b, h, g * t, hd]);
            let y = self.slots.attend(&q, k, v, None, false, train);
            y.view([b, h, g, t, hd]).permute([0, 2, 1, 3, 4]).reshape([rows, h, t, hd])
        };
        self.out_proj.forward_t(&self.merge(&y), train)
    }

    /// Scaled query·key scores, before the softmax, of `heads` of this cross-attention: `[b, heads.len(), t,
    /// frames]` for `x` `[b, t, d]` and keys `k` `[b, heads, frames, head_dim]` of as many audio items.
    ///
    /// Word timestamps need these weights, which scaled-dot-product attention never materialises; computing them
    /// beside the normal attention (one more query projection, the chosen heads only) leaves decoding untouched.
    /// A prefix-tuning slot's extra keys are not among the frames: only the audio is aligned.
    pub(crate) fn cross_scores(&self, x: &Tensor, k: &Tensor, heads: &[i64]) -> Tensor {
        let q = self.split(&self.q_proj.forward_t(x, false));
        let idx = Tensor::from_slice(heads).to_device(q.device());
        let q = q.index_select(1, &idx);
        let k = k.index_select(1, &idx);
        q.matmul(&k.transpose(-2, -1)) * (self.head_dim as f64).powf(-0.5)
    }

    pub(crate) fn visit(&mut self, visitor: &mut dyn LayerVisitor) {
        visitor.linear(&mut self.q_proj);
        visitor.linear(&mut self.k_proj);
        visitor.linear(&mut self.v_proj);
        visitor.attention(&mut self.slots);
        visitor.linear(&mut self.out_proj);
    }
}
