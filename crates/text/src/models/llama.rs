//! The Llama family as transformers defines it (`LlamaForCausalLM`, `Qwen2ForCausalLM`): RMSNorm, rotary position
//! embeddings (transformers' `rotate_half` convention, with `linear` and `llama3` frequency scaling), a SwiGLU MLP,
//! grouped-query attention and optionally tied input/output embeddings, under transformers' tensor names
//! (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, `model.norm.weight`, `lm_head.weight`)
//! so that a hub `model.safetensors` (or its shards) loads by name.
//!
//! Batches may be left padded or packed ([`BatchLayout`]), and training may checkpoint each decoder layer
//! ([`CausalLm::set_gradient_checkpointing`]). Not yet here: Qwen2's sliding-window attention, and other RoPE
//! scalings (YaRN, dynamic NTK, LongRoPE), which are refused with an error naming the field.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use suite_core::nn::{checkpoint, path_name, AttentionSlots, LayerVisitor, Linear, VisitLayers};
use suite_core::peft::PeftTargets;
use suite_core::weights::{load_safetensors, safetensors_index_shards, LoadOptions, LoadReport};
use tch::{nn, Device, Kind, Tensor};

use super::causal::{BatchLayout, CausalLm, CausalLmInfo, KvCache};
use super::layers::Embedding;

/// The model types this file builds.
pub const LLAMA_MODEL_TYPES: &[&str] = &["llama", "qwen2"];

/// How rotary frequencies are rescaled for contexts longer than the pretraining one (`rope_scaling` of older
/// configs, `rope_parameters` of transformers 5).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Divisor of the frequencies.
        factor: f64,
    },
    /// Llama 3.1's piecewise scaling: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length of pretraining.
        original_max_position_embeddings: f64,
    },
}

/// A Llama-family `config.json`, as transformers reads it (defaults are `LlamaConfig`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `llama` or `qwen2`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: i64,
    /// Number of query heads.
    pub num_attention_heads: i64,
    /// Number of key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: i64,
    /// Width of one head (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: i64,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest context.
    pub max_position_embeddings: i64,
    /// Whether `lm_head` shares `model.embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// Bias on `q_proj`, `k_proj`, `v_proj` (always for Qwen2; `attention_bias` for Llama, which also puts one on
    /// `o_proj`).
    pub qkv_bias: bool,
    /// Bias on `o_proj` (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Bias on the MLP projections (`mlp_bias`).
    pub mlp_bias: bool,
    /// Dropout on attention probabilities in training.
    pub attention_dropout: f64,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence tokens (a config may give one id or a list).
    pub eos_token_ids: Vec<i64>,
}

pub(super) fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

pub(super) fn int(v: &Value, key: &str, default: Option<i64>) -> Result<i64> {
    match field(v, key) {
        None => default.ok_or_else(|| anyhow!("missing field `{key}`")),
        Some(x) => x.as_i64().ok_or_else(|| anyhow!("field `{key}` = {x}: expected an integer")),
    }
}

pub(super) fn float(v: &Value, key: &str, default: f64) -> Result<f64> {
    match field(v, key) {
        None => Ok(default),
        Some(x) => x.as_f64().ok_or_else(|| anyhow!("field `{key}` = {x}: expected a number")),
    }
}

pub(super) fn boolean(v: &Value, key: &str, default: bool) -> Result<bool> {
    match field(v, key) {
        None => Ok(default),
        Some(x) => x.as_bool().ok_or_else(|| anyhow!("field `{key}` = {x}: expected true or false")),
    }
}

pub(super) fn token_ids(v: &Value, key: &str) -> Result<Vec<i64>> {
    let bad = |x: &Value| anyhow!("field `{key}` = {x}: expected a token id or a list of token ids");
    match field(v, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|x| x.as_i64().ok_or_else(|| bad(x))).collect(),
        Some(x) => Ok(vec![x.as_i64().ok_or_else(|| bad(x))?]),
    }
}

/// Reads the RoPE base and scaling from transformers 5's `rope_parameters` or the older `rope_theta` +
/// `rope_scaling` pair; `key` is the field the scaling came from, for error messages.
fn rope(v: &Value) -> Result<(f64, RopeScaling)> {
    let (key, params) = match (field(v, "rope_parameters"), field(v, "rope_scaling")) {
        (Some(p), _) => ("rope_parameters", Some(p)),
        (None, s) => ("rope_scaling", s),
    };
    let mut theta = float(v, "rope_theta", 10000.0)?;
    let Some(p) = params else { return Ok((theta, RopeScaling::Default)) };
    if !p.is_object() {
        bail!("field `{key}` = {p}: expected an object such as {{\"rope_type\": \"llama3\", \"factor\": 8.0, …}}");
    }
    if field(p, "rope_theta").is_some() {
        theta = float(p, "rope_theta", theta).with_context(|| format!("in `{key}`"))?;
    }
    let kind = field(p, "rope_type").or_else(|| field(p, "type")).and_then(Value::as_str).unwrap_or("default");
    let num = |name: &str| -> Result<f64> {
        field(p, name)
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("field `{key}.{name}`: a number is required for rope_type {kind:?}"))
    };
    let partial = float(p, "partial_rotary_factor", 1.0)?;
    if partial != 1.0 {
        bail!("field `{key}.partial_rotary_factor` = {partial}: only full rotary embeddings (1.0) are supported");
    }
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: num("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => bail!(
            "field `{key}.rope_type` = {other:?} is not supported (supported: \"default\", \"linear\", \"llama3\")"
        ),
    };
    Ok((theta, scaling))
}

impl LlamaConfig {
    /// Parses a hub `config.json`; errors name the offending field.
    pub fn from_json(v: &Value) -> Result<Self> {
        let model_type = field(v, "model_type").and_then(Value::as_str).unwrap_or("llama").to_string();
        if !LLAMA_MODEL_TYPES.contains(&model_type.as_str()) {
            bail!("field `model_type` = {model_type:?}: not a Llama-family model (supported: {LLAMA_MODEL_TYPES:?})");
        }
        let qwen2 = model_type == "qwen2";
        let act = field(v, "hidden_act").and_then(Value::as_str).unwrap_or("silu");
        if act != "silu" {
            bail!("field `hidden_act` = {act:?}: the Llama family's SwiGLU MLP uses \"silu\"");
        }
        if boolean(v, "use_sliding_window", false)? {
            bail!("field `use_sliding_window` = true: sliding-window attention is not supported yet");
        }
        let hidden_size = int(v, "hidden_size", None)?;
        let num_attention_heads = int(v, "num_attention_heads", None)?;
        let num_key_value_heads = int(v, "num_key_value_heads", Some(num_attention_heads))?;
        if num_attention_heads <= 0 || num_key_value_heads <= 0 || num_attention_heads % num_key_value_heads != 0 {
            bail!(
                "field `num_key_value_heads` = {num_key_value_heads}: must divide `num_attention_heads` = \
                 {num_attention_heads}"
            );
        }
        let head_dim = int(v, "head_dim", Some(hidden_size / num_attention_heads))?;
        if head_dim <= 0 || head_dim % 2 != 0 {
            bail!("field `head_dim` = {head_dim}: rotary embeddings need a positive even head width");
        }
        let (rope_theta, rope_scaling) = rope(v)?;
        let attention_bias = boolean(v, "attention_bias", false)?;
        Ok(Self {
            vocab_size: int(v, "vocab_size", None)?,
            hidden_size,
            intermediate_size: int(v, "intermediate_size", None)?,
            num_hidden_layers: int(v, "num_hidden_layers", None)?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float(v, "rms_norm_eps", 1e-6)?,
            rope_theta,
            rope_scaling,
            max_position_embeddings: int(v, "max_position_embeddings", Some(if qwen2 { 32768 } else { 2048 }))?,
            tie_word_embeddings: boolean(v, "tie_word_embeddings", false)?,
            // Qwen2's attention always has q/k/v biases and none on o_proj; Llama's `attention_bias` covers all four.
            qkv_bias: qwen2 || attention_bias,
            o_bias: !qwen2 && attention_bias,
            mlp_bias: boolean(v, "mlp_bias", false)?,
            attention_dropout: float(v, "attention_dropout", 0.0)?,
            initializer_range: float(v, "initializer_range", 0.02)?,
            bos_token_id: token_ids(v, "bos_token_id")?.first().copied(),
            eos_token_ids: token_ids(v, "eos_token_id")?,
            model_type,
        })
    }

    /// Reads and parses `config.json`; errors name the file and the field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_json(&v).with_context(|| format!("{}", path.display()))
    }

    /// The rotary inverse frequencies `[head_dim / 2]` (float32), scaled as the config says; computed as
    /// transformers' `ROPE_INIT_FUNCTIONS` do so that the angles match to the last bit.
    pub fn inv_freq(&self) -> Tensor {
        let dim = self.head_dim;
        let exponents =
            Tensor::arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) / dim as f64;
        let base = Tensor::from(self.rope_theta).to_kind(Kind::Float);
        let inv = base.pow(&exponents).reciprocal();
        match self.rope_scaling {
            RopeScaling::Default => inv,
            RopeScaling::Linear { factor } => inv / factor,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = original_max_position_embeddings;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
                let scaled = inv.where_self(&wavelen.le(low_wavelen), &(&inv / factor));
                let smooth = ((wavelen.reciprocal() * old) - low_freq_factor) / (high_freq_factor - low_freq_factor);
                let smoothed = (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
                let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
                smoothed.where_self(&medium, &scaled)
            }
        }
    }
}

/// Where PEFT methods attach in a Llama-family model, as Hugging Face PEFT's defaults for `llama` and `qwen2`:
/// LoRA on `q_proj`/`v_proj`, (IA)³ on `k_proj`/`v_proj`/`down_proj` (the last scaling its input), bottleneck
/// adapters after `o_proj` and `down_proj`; `lm_head` is never adapted.
///
/// Prefix tuning and P-tuning v2 attach to every attention block with the *key/value* head count, as peft sizes
/// them for grouped-query models, and shift the tokens' positions by the prefix length as peft does.
pub fn llama_peft_targets() -> PeftTargets {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PeftTargets {
        default_lora: s(&["q_proj", "v_proj"]),
        ia3: s(&["k_proj", "v_proj", "down_proj"]),
        ia3_feedforward: s(&["down_proj"]),
        adapter_after_attention: s(&["self_attn.o_proj"]),
        adapter_after_ffn: s(&["mlp.down_proj"]),
        head_prefixes: Vec::new(),
        exclude: s(&["lm_head"]),
    }
}

/// `LlamaRMSNorm`: `weight · x / √(mean(x²) + ε)`, computed in float32.
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: nn::Path, size: i64, eps: f64) -> Self {
        Self { weight: p.var("weight", &[size], nn::Init::Const(1.0)), eps }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x = x.to_kind(Kind::Float);
        let var = x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = (x * (var + self.eps).rsqrt()).to_kind(kind);
        &self.weight * normed
    }
}

fn proj(p: nn::Path, in_features: i64, out_features: i64, bias: bool, std: f64) -> Linear {
    let weight = p.var("weight", &[out_features, in_features], nn::Init::Randn { mean: 0.0, stdev: std });
    let bias = bias.then(|| p.var("bias", &[out_features], nn::Init::Const(0.0)));
    Linear::from_parts(path_name(&p), weight, bias)
}

/// `x·cos + rotate_half(x)·sin`, where `rotate_half` swaps the two halves of the head and negates the second.
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let (x1, x2) = (x.narrow(3, 0, half), x.narrow(3, half, half));
    let rotated = Tensor::cat(&[x2.neg(), x1], 3);
    x * cos + rotated * sin
}

/// `[b, kv_heads, len, d]` → `[b, kv_heads·n_rep, len, d]`, each key/value head repeated for its query group
/// (transformers' `repeat_kv`).
fn repeat_kv(x: &Tensor, n_rep: i64) -> Tensor {
    if n_rep == 1 {
        return x.shallow_clone();
    }
    let (b, h, l, d) = x.size4().expect("keys are [batch, heads, len, head_dim]");
    x.unsqueeze(2).expand([b, h, n_rep, l, d], false).reshape([b, h * n_rep, l, d])
}

/// `model.layers.N.self_attn`.
#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    slots: AttentionSlots,
    q_heads: i64,
}

impl Attention {
    fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        let (h, d, std) = (c.hidden_size, c.head_dim, c.initializer_range);
        let (qh, kvh) = (c.num_attention_heads, c.num_key_value_heads);
        Self {
            q_proj: proj(&p / "q_proj", h, qh * d, c.qkv_bias, std),
            k_proj: proj(&p / "k_proj", h, kvh * d, c.qkv_bias, std),
            v_proj: proj(&p / "v_proj", h, kvh * d, c.qkv_bias, std),
            o_proj: proj(&p / "o_proj", qh * d, h, c.o_bias, std),
            // Prefixes have the key/value head count, as peft's prefix tuning for grouped-query models: they sit
            // in front of the cached keys and are repeated with them.
            slots: AttentionSlots::new(path_name(&p), kvh, d).with_dropout(c.attention_dropout),
            q_heads: qh,
        }
    }

    /// `positions` are the new tokens' positions `[batch or 1, len]` before the prefix offset; `cached` is the
    /// cache's length before this call.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        inv_freq: &Tensor,
        positions: &Tensor,
        layout: &BatchLayout,
        cached: i64,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> Tensor {
        let (b, t, _) = x.size3().expect("hidden states are [batch, len, hidden]");
        let (heads, kv_heads, d) = (self.q_heads, self.slots.heads, self.slots.head_dim);
        let split = |y: Tensor, h: i64| y.view([b, t, h, d]).transpose(1, 2);
        let q = split(self.q_proj.forward_t(x, train), heads);
        let k = split(self.k_proj.forward_t(x, train), kv_heads);
        let v = split(self.v_proj.forward_t(x, train), kv_heads);
        // A prefix (prefix tuning, P-tuning v2) acts as peft's: keys and values occupying the first positions of
        // the cache, so the tokens' positions start after it.
        let prefix = self.slots.prefix.as_ref().map(|p| p.key_values(b, train));
        let p_len = prefix.as_ref().map_or(0, |(pk, _)| pk.size()[2]);
        let (cos, sin) = rope_tables(inv_freq, &(positions + p_len), q.kind());
        let q = apply_rotary(&q, &cos, &sin);
        let k = apply_rotary(&k, &cos, &sin);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let (k, v) = match prefix {
            Some((pk, pv)) => (Tensor::cat(&[pk.to_kind(k.kind()), k], 2), Tensor::cat(&[pv.to_kind(v.kind()), v], 2)),
            None => (k, v),
        };
        let n_rep = heads / kv_heads;
        let (k, v) = (repeat_kv(&k, n_rep), repeat_kv(&v, n_rep));
        // A plain prompt from position 0 uses SDPA's own causal mask and one new token sees everything; padding,
        // packed examples, prefixes and chunks after cached positions get an explicit mask (SDPA's `is_causal`
        // aligns top left, not bottom right as a chunk after a cache needs).
        let p = if train { self.slots.dropout } else { 0.0 };
        let mask = layout.attention_mask_4d(t, p_len, cached, q.device());
        let causal = mask.is_none() && cached == 0 && t > 1;
        let out = Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), p, causal, None::<f64>, false);
        let out = out.transpose(1, 2).reshape([b, t, heads * d]);
        self.o_proj.forward_t(&out, train)
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.q_proj);
        v.linear(&mut self.k_proj);
        v.linear(&mut self.v_proj);
        v.linear(&mut self.o_proj);
        v.attention(&mut self.slots);
    }
}

/// `model.layers.N.mlp`: `down_proj(silu(gate_proj(x)) · up_proj(x))`.
#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        let (h, i, std, bias) = (c.hidden_size, c.intermediate_size, c.initializer_range, c.mlp_bias);
        Self {
            gate_proj: proj(&p / "gate_proj", h, i, bias, std),
            up_proj: proj(&p / "up_proj", h, i, bias, std),
            down_proj: proj(&p / "down_proj", i, h, bias, std),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let gated = self.gate_proj.forward_t(x, train).silu() * self.up_proj.forward_t(x, train);
        self.down_proj.forward_t(&gated, train)
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.gate_proj);
        v.linear(&mut self.up_proj);
        v.linear(&mut self.down_proj);
    }
}

/// `model.layers.N`: pre-norm attention and MLP, each with a residual.
#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        Self {
            input_layernorm: RmsNorm::new(&p / "input_layernorm", c.hidden_size, c.rms_norm_eps),
            self_attn: Attention::new(&p / "self_attn", c),
            post_attention_layernorm: RmsNorm::new(&p / "post_attention_layernorm", c.hidden_size, c.rms_norm_eps),
            mlp: Mlp::new(&p / "mlp", c),
        }
    }

    /// The layer's output for hidden states `x`; the arguments are [`Attention::forward`]'s.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        inv_freq: &Tensor,
        positions: &Tensor,
        layout: &BatchLayout,
        cached: i64,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> Tensor {
        let h = self.input_layernorm.forward(x);
        let a = self.self_attn.forward(&h, inv_freq, positions, layout, cached, cache, train);
        // Not `+=`: an in-place add would overwrite the input `input_layernorm` saved for backward.
        let x = x + a;
        let h = self.post_attention_layernorm.forward(&x);
        &x + self.mlp.forward(&h, train)
    }
}

/// transformers' `LlamaForCausalLM` (and `Qwen2ForCausalLM`): the decoder under `model.` and `lm_head`, which
/// is `model.embed_tokens.weight` itself when the embeddings are tied.
#[derive(Debug)]
pub struct LlamaForCausalLm {
    config: LlamaConfig,
    info: CausalLmInfo,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    lm_head: Option<Linear>,
    /// Rotary inverse frequencies, float32 on the model's device.
    inv_freq: Tensor,
    /// Whether training forwards checkpoint each decoder layer.
    gradient_checkpointing: bool,
    /// Liveness token of the layers that checkpointed graphs borrow: replaced whenever the layers may change
    /// (`&mut` access) and dropped with the model, so a backward pass through an older graph fails with an error
    /// instead of recomputing with changed or freed layers.
    layers_token: Arc<()>,
}

impl LlamaForCausalLm {
    /// Registers the model's tensors under `p` (`p / "model"`, `p / "lm_head"`), initialised as transformers'
    /// `_init_weights` does (normal with `initializer_range`, norms at one).
    pub fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        let m = &p / "model";
        let embed_tokens = Embedding::new(&m / "embed_tokens", c.vocab_size, c.hidden_size, None, c.initializer_range);
        let layers = (0..c.num_hidden_layers).map(|i| DecoderLayer::new(&m / "layers" / i, c)).collect();
        let lm_head = (!c.tie_word_embeddings)
            .then(|| proj(&p / "lm_head", c.hidden_size, c.vocab_size, false, c.initializer_range));
        let info = CausalLmInfo {
            vocab_size: c.vocab_size,
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_ids.clone(),
            max_position_embeddings: c.max_position_embeddings,
            num_layers: c.num_hidden_layers as usize,
        };
        Self {
            config: c.clone(),
            info,
            embed_tokens,
            layers,
            norm: RmsNorm::new(&m / "norm", c.hidden_size, c.rms_norm_eps),
            lm_head,
            inv_freq: c.inv_freq().to_device(p.device()),
            gradient_checkpointing: false,
            layers_token: Arc::new(()),
        }
    }

    /// The parsed configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Reads `dir/config.json`, builds the model in a new float32 `VarStore` on `device` and loads
    /// `dir/model.safetensors` or the shards named by `dir/model.safetensors.index.json`, strictly (every tensor
    /// used, every variable filled). A tied model's checkpoint may still carry `lm_head.weight`, and older ones
    /// `rotary_emb.inv_freq` buffers; both are ignored. The bos/eos tokens of `dir/generation_config.json`, when
    /// it names them, take precedence over `config.json`'s, as in transformers' `generate` (Llama 3 Instruct
    /// lists its end-of-turn token only there).
    pub fn load_dir(dir: impl AsRef<Path>, device: Device) -> Result<(nn::VarStore, Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        let vs = nn::VarStore::new(device);
        let mut model = Self::new(vs.root(), &config);
        model.info.apply_generation_config(dir)?;
        let files = checkpoint_files(dir)?;
        // Older checkpoints carry the rotary buffers, which are recomputed from the config here.
        let mut opts = LoadOptions::strict().skip(["model.rotary_emb."]);
        opts.skip.extend((0..config.num_hidden_layers).map(|i| format!("model.layers.{i}.self_attn.rotary_emb.")));
        if config.tie_word_embeddings {
            opts = opts.skip(["lm_head.weight"]);
        }
        let report = load_safetensors(&vs, &files, &opts)?;
        Ok((vs, model, report))
    }
}

impl LlamaForCausalLm {
    /// `layer` on `x` (a training forward without a cache) through [`checkpoint`]: only `x` is kept for the
    /// backward pass, which recomputes the layer.
    fn checkpointed_layer(
        &self,
        layer: &DecoderLayer,
        x: &Tensor,
        positions: &Tensor,
        layout: &BatchLayout,
        train: bool,
    ) -> Tensor {
        // The closure outlives this call inside the graph: it owns handles on the positions, the layout and the
        // rotary frequencies, and borrows only the layer (in the heap buffer of `self.layers`, which stays put when
        // the model moves), checking the model's liveness token before recomputing.
        let positions = positions.shallow_clone();
        let layout = BatchLayout {
            attention_mask: layout.attention_mask.as_ref().map(Tensor::shallow_clone),
            position_ids: layout.position_ids.as_ref().map(Tensor::shallow_clone),
            segment_ids: layout.segment_ids.as_ref().map(Tensor::shallow_clone),
        };
        let token: Weak<()> = Arc::downgrade(&self.layers_token);
        let inv_freq = self.inv_freq.shallow_clone();
        let run = move |xs: &[Tensor]| {
            assert!(
                token.strong_count() > 0,
                "gradient checkpointing: the model was dropped or its layers changed (PEFT, \
                 set_gradient_checkpointing) between the forward pass and this backward pass"
            );
            layer.forward(&xs[0], &inv_freq, &positions, &layout, 0, None, train)
        };
        // SAFETY: `run` borrows the layer. Dropping the model, or changing its layers through
        // `&mut self`, replaces `layers_token`, and `run` refuses to recompute once the token is gone, so a graph
        // that outlives its model fails its backward pass instead of reading freed layers. What remains is the
        // documented caveat of `CausalLm` models: no backward pass while another thread drops the model.
        unsafe { checkpoint(&[x], run) }
    }
}

/// Cosine and sine `[batch or 1, 1, len, head_dim]` for `positions` `[batch or 1, len]` (float32, as
/// transformers computes them, then cast to the activations' kind).
fn rope_tables(inv_freq: &Tensor, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
    let pos = positions.to_kind(Kind::Float);
    let freqs = pos.unsqueeze(-1) * inv_freq.view([1, 1, -1]);
    let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
    (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
}

/// `model.safetensors` or, for a sharded checkpoint, the shards of `model.safetensors.index.json`.
pub(super) fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return safetensors_index_shards(&index);
    }
    bail!("{}: no model.safetensors or model.safetensors.index.json", dir.display())
}

impl CausalLm for LlamaForCausalLm {
    fn info(&self) -> &CausalLmInfo {
        &self.info
    }

    fn device(&self) -> Device {
        self.inv_freq.device()
    }

    fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
        self.layers_token = Arc::new(());
    }

    fn forward_layout(
        &self,
        input_ids: &Tensor,
        layout: &BatchLayout,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        // Read once: the first layer's append changes what the cache reports.
        let cached = cache.as_ref().map_or(0, |c| c.len());
        let positions = layout.positions(input_ids.size()[1], cached, input_ids.device());
        let mut x = self.embed_tokens.forward(input_ids);
        let checkpointed = self.gradient_checkpointing && train && cache.is_none();
        for (i, layer) in self.layers.iter().enumerate() {
            x = if checkpointed {
                self.checkpointed_layer(layer, &x, &positions, layout, train)
            } else {
                let layer_cache = cache.as_deref_mut().map(|c| (c, i));
                layer.forward(&x, &self.inv_freq, &positions, layout, cached, layer_cache, train)
            };
        }
        let x = self.norm.forward(&x);
        match &self.lm_head {
            Some(head) => head.forward_t(&x, train),
            None => suite_core::nn::dense(&x, &self.embed_tokens.weight, None),
        }
    }
}

impl VisitLayers for LlamaForCausalLm {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        // Adapters may be added or replaced: graphs recorded before must not recompute with them.
        self.layers_token = Arc::new(());
        for layer in &mut self.layers {
            layer.self_attn.visit(visitor);
            layer.mlp.visit(visitor);
        }
    }
}
