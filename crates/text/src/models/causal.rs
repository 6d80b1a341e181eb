//! What every decoder-only language model offers a generation loop or an SFT trainer: logits over the vocabulary
//! for a batch of token ids, optionally continuing from a [`KvCache`] of the keys and values already computed.
//!
//! Batches here are rectangular and unpadded: every row of a prompt has the same length and all rows advance
//! together. Batched prompts of different lengths (left padding with an attention mask and per-row positions)
//! come later with batched generation.

use suite_core::nn::VisitLayers;
use tch::Tensor;

/// The numbers a generation loop needs from a causal language model's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalLmInfo {
    /// Size of the output vocabulary (the last dimension of the logits).
    pub vocab_size: i64,
    /// Beginning-of-sequence token, when the model has one.
    pub bos_token_id: Option<i64>,
    /// Every token that ends generation (hub configs may list several, e.g. Llama 3's `<|eot_id|>` and
    /// `<|end_of_text|>`); empty when the config names none.
    pub eos_token_ids: Vec<i64>,
    /// The longest context the model was trained for (`max_position_embeddings`).
    pub max_position_embeddings: i64,
    /// Number of decoder layers, i.e. the number of entries of a [`KvCache`].
    pub num_layers: usize,
}

/// Keys and values of the positions seen so far, one `(keys, values)` pair per decoder layer, each
/// `[batch, kv_heads, len, head_dim]` (before grouped-query heads are repeated, so the cache stays small).
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for a model of `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| None).collect() }
    }

    /// Number of positions cached (the position of the next token).
    pub fn len(&self) -> i64 {
        self.layers.iter().flatten().next().map_or(0, |(k, _)| k.size()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of layers this cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Forgets every cached position, keeping the layer count.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }

    /// Appends `k`, `v` (`[batch, kv_heads, new, head_dim]`) to layer `layer` and returns the layer's full keys
    /// and values including the new positions.
    ///
    /// # Panics
    /// When `layer` is out of range: a cache made for another model is a programming error.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let n = self.layers.len();
        let slot = self.layers.get_mut(layer).unwrap_or_else(|| panic!("KvCache has {n} layers, asked for {layer}"));
        let (k, v) = match slot.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
        };
        *slot = Some((k.shallow_clone(), v.shallow_clone()));
        (k, v)
    }
}

/// A decoder-only language model: token ids in, next-token logits out.
///
/// The model's PEFT-capable layers are visible through [`VisitLayers`], so every method of `suite_core::peft`
/// applies as it does to the encoders.
pub trait CausalLm: VisitLayers + Send {
    /// Vocabulary, special tokens, context length and layer count.
    fn info(&self) -> &CausalLmInfo;

    /// Logits `[batch, len, vocab]` (float32 as the weights are) for `input_ids` `[batch, len]`.
    ///
    /// Without a cache the ids are positions `0..len` under a causal mask. With a cache, their positions continue
    /// from [`KvCache::len`], they attend to every cached position and to the earlier new ones, and their keys
    /// and values are appended to the cache. `train` switches dropout and adapter dropout.
    fn forward(&self, input_ids: &Tensor, cache: Option<&mut KvCache>, train: bool) -> Tensor;

    /// An empty cache sized for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.info().num_layers)
    }
}
