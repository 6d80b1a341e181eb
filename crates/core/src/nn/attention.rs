use std::fmt::Debug;
use tch::{Kind, Tensor};

/// Trainable keys and values prepended to an attention block's own (prefix tuning, P-tuning v2).
pub trait PrefixKv: Debug + Send {
    /// Returns `(keys, values)` of shape `[batch, heads, prefix_len, head_dim]` for a batch of `batch`.
    fn key_values(&self, batch: i64, train: bool) -> (Tensor, Tensor);
}

/// The PEFT slot of one attention block: its checkpoint name, its geometry and an optional prefix.
#[derive(Debug)]
pub struct AttentionSlots {
    /// Checkpoint name of the block, such as `encoder.layer.3.attention.self`.
    pub name: String,
    /// Number of heads.
    pub heads: i64,
    /// Width of one head.
    pub head_dim: i64,
    /// Prefix keys/values, set by prefix tuning or P-tuning v2.
    pub prefix: Option<Box<dyn PrefixKv>>,
    /// Dropout on the attention probabilities in training (transformers' `attention_probs_dropout_prob`).
    pub dropout: f64,
}

impl AttentionSlots {
    /// An empty slot for a block of `heads` heads of width `head_dim`.
    pub fn new(name: String, heads: i64, head_dim: i64) -> Self {
        Self { name, heads, head_dim, prefix: None, dropout: 0.0 }
    }

    /// The same slot with attention-probability dropout `p` in training.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Attention over `q`, `k`, `v` (`[batch, heads, len, head_dim]`) with the prefix, if any, prepended to `k` and
    /// `v`. `mask` is additive and broadcastable to `[batch, heads, q_len, k_len]` over the block's *own* keys;
    /// prefix positions are always visible.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Tensor {
        let p = if train { self.dropout } else { 0.0 };
        match &self.prefix {
            None => sdpa(q, k, v, mask, causal, p),
            Some(prefix) => {
                let (b, _, q_len, _) = q.size4().expect("attention query is [batch, heads, len, head_dim]");
                let (pk, pv) = prefix.key_values(b, train);
                let p_len = pk.size()[2];
                let k_len = k.size()[2];
                let k = Tensor::cat(&[pk.to_kind(k.kind()), k.shallow_clone()], 2);
                let v = Tensor::cat(&[pv.to_kind(v.kind()), v.shallow_clone()], 2);
                let mut full = Tensor::zeros([1, 1, q_len, p_len + k_len], (q.kind(), q.device()));
                if causal {
                    let own = Tensor::ones([q_len, k_len], (Kind::Bool, q.device())).triu(1 + k_len - q_len);
                    let own =
                        Tensor::zeros([q_len, k_len], (q.kind(), q.device())).masked_fill(&own, f64::NEG_INFINITY);
                    full = &full + Tensor::cat(&[Tensor::zeros([q_len, p_len], (q.kind(), q.device())), own], 1);
                }
                if let Some(m) = mask {
                    let pad = Tensor::zeros(
                        {
                            let mut s = m.size();
                            let n = s.len();
                            s[n - 1] = p_len;
                            s
                        },
                        (m.kind(), m.device()),
                    );
                    // Not in place: a per-example mask broadens `full` to [batch, …].
                    full = &full + Tensor::cat(&[pad, m.shallow_clone()], -1);
                }
                sdpa(q, &k, &v, Some(&full), false, p)
            }
        }
    }
}

/// `softmax(q·kᵀ/√d + mask)·v` over `[batch, heads, len, head_dim]` tensors; `mask` is additive.
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool) -> Tensor {
    sdpa(q, k, v, mask, causal, 0.0)
}

fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool, dropout: f64) -> Tensor {
    if dropout > 0.0 && q.device() == tch::Device::Cpu {
        return math_attention_with_dropout(q, k, v, mask, causal, dropout);
    }
    Tensor::scaled_dot_product_attention(q, k, v, mask, dropout, causal, None::<f64>, false)
}

/// libtorch's own CPU path for attention with dropout (`_scaled_dot_product_attention_math`: its fused CPU kernel
/// takes no dropout), step for step — √scale on each of q and k, the additive or causal mask, the safe softmax,
/// dropout, the product with v — except that the dropout mask comes from [`super::dropout`], whose mask costs a
/// fraction of libtorch's serial Bernoulli sampler on non-Intel CPUs.
fn math_attention_with_dropout(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    p: f64,
) -> Tensor {
    let head_dim = *q.size().last().expect("attention query has a head dimension");
    let factor = (1.0 / (head_dim as f64).sqrt()).sqrt();
    let mut scores = (q * factor).matmul(&(k.transpose(-2, -1) * factor));
    if causal {
        let (l, s) = (q.size()[q.dim() - 2], k.size()[k.dim() - 2]);
        let future = Tensor::ones([l, s], (Kind::Bool, q.device())).triu(1);
        scores = scores.masked_fill(&future, f64::NEG_INFINITY);
    }
    if let Some(m) = mask {
        scores += m;
    }
    let probs = scores.internal_safe_softmax(-1, None::<Kind>);
    super::dropout(probs, p, true).matmul(v)
}
