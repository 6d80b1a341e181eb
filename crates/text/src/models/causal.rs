//! What every decoder-only language model offers a generation loop or an SFT trainer: logits over the vocabulary
//! for a batch of token ids, optionally continuing from a [`KvCache`] of the keys and values already computed.
//!
//! A plain batch is rectangular: every row has the same length and starts at position 0 (or at the cache's
//! length). A [`BatchLayout`] describes the other two shapes a batch takes: prompts of different lengths, left
//! padded, in generation (an attention mask and per-row positions, as transformers' `generate` builds them), and
//! short examples packed into one row for SFT (positions restarting at each example and no attention across
//! example boundaries).

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

impl CausalLmInfo {
    /// Takes `bos_token_id` and `eos_token_id` (one id or a list) from the model folder `dir`'s
    /// `generation_config.json`, when there is one and it names them: they take precedence over `config.json`'s,
    /// as in transformers' `generate` (Llama 3 Instruct lists its end-of-turn token only there).
    pub fn apply_generation_config(&mut self, dir: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(());
        }
        let path = path.as_path();
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let eos = super::llama::token_ids(&v, "eos_token_id").with_context(|| format!("{}", path.display()))?;
        if !eos.is_empty() {
            self.eos_token_ids = eos;
        }
        let bos = super::llama::token_ids(&v, "bos_token_id").with_context(|| format!("{}", path.display()))?;
        if let Some(&bos) = bos.first() {
            self.bos_token_id = Some(bos);
        }
        Ok(())
    }
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

/// How the rows of a batch are laid out when they are not one unpadded sequence each. Every field is optional;
/// the default layout is the plain rectangular batch.
#[derive(Debug, Default)]
pub struct BatchLayout {
    /// `[batch, cached + len]` (int or bool): 1 for real tokens, 0 for padding, covering the cached positions as
    /// well as the new ones, as transformers' `attention_mask` during `generate`. Padded keys are never attended.
    pub attention_mask: Option<Tensor>,
    /// `[batch, len]` (int64) positions of the new tokens; default `cached..cached + len` on every row. Left-padded
    /// rows use `cumsum(attention_mask) - 1`, packed rows restart at 0 for each example.
    pub position_ids: Option<Tensor>,
    /// `[batch, len]` (int64) which example of a packed row each token belongs to: a token attends only to the
    /// earlier tokens of its own example. Only without a cache.
    pub segment_ids: Option<Tensor>,
}

impl BatchLayout {
    /// Whether this is the plain rectangular layout.
    pub fn is_plain(&self) -> bool {
        self.attention_mask.is_none() && self.position_ids.is_none() && self.segment_ids.is_none()
    }

    /// Positions `[batch or 1, len]` (int64) of `len` new tokens after `past` cached ones.
    pub fn positions(&self, len: i64, past: i64, device: tch::Device) -> Tensor {
        match &self.position_ids {
            Some(p) => p.to_device(device),
            None => Tensor::arange_start(past, past + len, (tch::Kind::Int64, device)).unsqueeze(0),
        }
    }

    /// The boolean attention mask `[batch or 1, 1, len, prefix + past + len]` (true = may attend) of `len` new
    /// queries over `prefix` always-visible prefix slots (prefix tuning), `past` cached keys and the new keys:
    /// causal, minus padded keys, minus keys of other packed examples. `None` when plain causal attention (or none,
    /// for one new token) is all there is, so the caller can use SDPA's own causal path.
    ///
    /// A query whose every key is masked (a left-padding position) would give NaN in softmax; such rows may
    /// attend to their own position instead. Their outputs are padding and ignored by every caller.
    pub fn attention_mask_4d(&self, len: i64, prefix: i64, past: i64, device: tch::Device) -> Option<Tensor> {
        if self.attention_mask.is_none() && self.segment_ids.is_none() && prefix == 0 && past == 0 {
            return None;
        }
        if self.attention_mask.is_none() && self.segment_ids.is_none() && len == 1 {
            return None;
        }
        let total = prefix + past + len;
        let opts = (tch::Kind::Bool, device);
        // Key j (over past + new) is visible to query i when j <= past + i.
        let q = Tensor::arange(len, (tch::Kind::Int64, device)).unsqueeze(1) + past;
        let k = Tensor::arange(past + len, (tch::Kind::Int64, device)).unsqueeze(0);
        let mut allowed = k.le_tensor(&q).unsqueeze(0).unsqueeze(0); // [1, 1, len, past + len]
        if let Some(m) = &self.attention_mask {
            let keys = m.to_device(device).ne(0).unsqueeze(1).unsqueeze(1); // [b, 1, 1, past + len]
            allowed = allowed.logical_and(&keys);
        }
        if let Some(seg) = &self.segment_ids {
            let seg = seg.to_device(device);
            let same = seg.unsqueeze(2).eq_tensor(&seg.unsqueeze(1)).unsqueeze(1); // [b, 1, len, len]
            allowed = if past == 0 {
                allowed.logical_and(&same)
            } else {
                let old = Tensor::ones([1, 1, len, past], opts).expand([same.size()[0], 1, len, past], false);
                allowed.logical_and(&Tensor::cat(&[old, same], 3))
            };
        }
        // Rows with nothing visible may see themselves.
        let empty = allowed.any_dim(-1, true).logical_not();
        let own = k.eq_tensor(&q).unsqueeze(0).unsqueeze(0);
        allowed = allowed.logical_or(&empty.logical_and(&own));
        if prefix > 0 {
            let b = allowed.size()[0];
            let pre = Tensor::ones([b, 1, len, prefix], opts);
            allowed = Tensor::cat(&[pre, allowed], 3);
        }
        debug_assert_eq!(allowed.size()[3], total);
        Some(allowed)
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
    fn forward(&self, input_ids: &Tensor, cache: Option<&mut KvCache>, train: bool) -> Tensor {
        self.forward_layout(input_ids, &BatchLayout::default(), cache, train)
    }

    /// As [`CausalLm::forward`], for a batch laid out as `layout` says (left padding, packed examples).
    fn forward_layout(
        &self,
        input_ids: &Tensor,
        layout: &BatchLayout,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor;

    /// The device the weights live on, where input ids must be. The default suits CPU-only models; every model
    /// that may be moved to an accelerator overrides it.
    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }

    /// An empty cache sized for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.info().num_layers)
    }

    /// Turns activation checkpointing on or off: in training forwards without a cache, each decoder layer keeps
    /// only its input for the backward pass and recomputes the rest then (`suite_core::nn::checkpoint`), trading
    /// about one extra forward for most of the activation memory. The default, for models without it, ignores the
    /// request.
    fn set_gradient_checkpointing(&mut self, _on: bool) {}
}
