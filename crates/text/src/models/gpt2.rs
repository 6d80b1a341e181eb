//! GPT-2 as transformers defines it (`GPT2LMHeadModel`): learned absolute position embeddings, pre-norm blocks
//! with LayerNorm, fused query/key/value projection `c_attn`, a GELU MLP, and an output layer tied to the token
//! embeddings, under transformers' tensor names (`transformer.wte.weight`, `transformer.h.N.attn.c_attn.weight`,
//! `transformer.ln_f.weight`) so that a hub `model.safetensors` loads by name. The original `gpt2` checkpoints,
//! which leave out the `transformer.` prefix, load as well.
//!
//! GPT-2's projections are `Conv1D` modules whose weight is stored `[in, out]`, the transpose of `nn.Linear`'s.
//! Here they are [`suite_core::nn::Linear`] layers (`[out, in]`), so that every PEFT method applies to them as to
//! any other dense layer; the weights named in [`GPT2_CONV1D_WEIGHTS`] are transposed when a checkpoint is loaded
//! and must be transposed back when one is written ([`gpt2_checkpoint_tensors`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use suite_core::nn::{path_name, AttentionSlots, LayerVisitor, Linear, VisitLayers};
use suite_core::peft::PeftTargets;
use suite_core::weights::{load_safetensors, LoadOptions, LoadReport};
use tch::{nn, Device, Tensor};

use super::causal::{BatchLayout, CausalLm, CausalLmInfo, KvCache};
use super::config::Activation;
use super::layers::{dense, dropout, Embedding, LayerNorm};
use super::llama::{boolean, checkpoint_files, field, float, int, token_ids};

/// The model types this file builds.
pub const GPT2_MODEL_TYPES: &[&str] = &["gpt2"];

/// Name suffixes of the weights that GPT-2 checkpoints store `[in, out]` (`Conv1D`) and this model holds
/// `[out, in]` (`Linear`): transposed on load, to be transposed again by anything that writes a GPT-2 checkpoint.
pub const GPT2_CONV1D_WEIGHTS: &[&str] =
    &["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

/// A GPT-2 `config.json`, as transformers' `GPT2Config` reads it (defaults are its defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Number of learned positions, the longest context (`n_positions`).
    pub n_positions: i64,
    /// Width of the residual stream (`n_embd`).
    pub n_embd: i64,
    /// Number of blocks (`n_layer`).
    pub n_layer: i64,
    /// Number of attention heads (`n_head`).
    pub n_head: i64,
    /// Width of the MLP (`n_inner`, else `4 · n_embd`).
    pub n_inner: i64,
    /// The MLP's non-linearity (`activation_function`; GPT-2's own is `gelu_new`, the tanh approximation).
    pub activation_function: Activation,
    /// Epsilon of every LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Dropout after the attention output and the MLP in training.
    pub resid_pdrop: f64,
    /// Dropout on the summed token and position embeddings in training.
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities in training.
    pub attn_pdrop: f64,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// Whether attention scores are divided by `√head_dim`.
    pub scale_attn_weights: bool,
    /// Whether block `i`'s attention scores are further divided by `i + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Whether transformers computes the scores in float32 (only in its eager path): the same numbers as the
    /// float32 computation here, so it is accepted and has no effect.
    pub reorder_and_upcast_attn: bool,
    /// Whether the output layer is `transformer.wte.weight` itself (always, in the published checkpoints).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence tokens.
    pub eos_token_ids: Vec<i64>,
}

/// Reads `key`, or transformers' attribute-map alias of it (`n_embd` ↔ `hidden_size`).
fn int_alias(v: &Value, key: &str, alias: &str, default: Option<i64>) -> Result<i64> {
    if field(v, key).is_none() && field(v, alias).is_some() {
        return int(v, alias, default);
    }
    int(v, key, default)
}

impl Gpt2Config {
    /// Parses a hub `config.json`; errors name the offending field.
    pub fn from_json(v: &Value) -> Result<Self> {
        let model_type = field(v, "model_type").and_then(Value::as_str).unwrap_or("gpt2");
        if !GPT2_MODEL_TYPES.contains(&model_type) {
            bail!("field `model_type` = {model_type:?}: not a GPT-2 model (expected \"gpt2\")");
        }
        if boolean(v, "add_cross_attention", false)? {
            bail!(
                "field `add_cross_attention` = true: GPT-2 with cross-attention (an encoder-decoder) is not supported"
            );
        }
        let act = field(v, "activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
        let Some(activation_function) = Activation::parse(act) else {
            bail!("field `activation_function` = {act:?} is not supported (supported: {})", Activation::NAMES);
        };
        let n_embd = int_alias(v, "n_embd", "hidden_size", Some(768))?;
        let n_head = int_alias(v, "n_head", "num_attention_heads", Some(12))?;
        if n_embd <= 0 || n_head <= 0 || n_embd % n_head != 0 {
            bail!("field `n_head` = {n_head}: must divide `n_embd` = {n_embd}");
        }
        let n_inner = match field(v, "n_inner") {
            None => 4 * n_embd,
            Some(_) => int(v, "n_inner", None)?,
        };
        let dropout = |key: &str| -> Result<f64> {
            let p = float(v, key, 0.1)?;
            if !(0.0..1.0).contains(&p) {
                bail!("field `{key}` = {p}: a dropout probability must be in [0, 1)");
            }
            Ok(p)
        };
        Ok(Self {
            vocab_size: int(v, "vocab_size", Some(50257))?,
            n_positions: int_alias(v, "n_positions", "max_position_embeddings", Some(1024))?,
            n_embd,
            n_layer: int_alias(v, "n_layer", "num_hidden_layers", Some(12))?,
            n_head,
            n_inner,
            activation_function,
            layer_norm_epsilon: float(v, "layer_norm_epsilon", 1e-5)?,
            resid_pdrop: dropout("resid_pdrop")?,
            embd_pdrop: dropout("embd_pdrop")?,
            attn_pdrop: dropout("attn_pdrop")?,
            initializer_range: float(v, "initializer_range", 0.02)?,
            scale_attn_weights: boolean(v, "scale_attn_weights", true)?,
            scale_attn_by_inverse_layer_idx: boolean(v, "scale_attn_by_inverse_layer_idx", false)?,
            reorder_and_upcast_attn: boolean(v, "reorder_and_upcast_attn", false)?,
            tie_word_embeddings: boolean(v, "tie_word_embeddings", true)?,
            bos_token_id: token_ids(v, "bos_token_id")?.first().copied(),
            eos_token_ids: token_ids(v, "eos_token_id")?,
        })
    }

    /// Reads and parses `config.json`; errors name the file and the field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_json(&v).with_context(|| format!("{}", path.display()))
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }
}

/// Where PEFT methods attach in GPT-2, as Hugging Face PEFT's defaults for `gpt2`: LoRA on the fused `c_attn`,
/// (IA)³ on `c_attn` and `mlp.c_proj` (the latter scaling its input), bottleneck adapters after `attn.c_proj` and
/// `mlp.c_proj`; `lm_head` is never adapted. peft marks GPT-2's `Conv1D` layers `fan_in_fan_out`; the adapter
/// tensors have the same shapes as for a `Linear`, so adapter files are interchangeable.
pub fn gpt2_peft_targets() -> PeftTargets {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PeftTargets {
        default_lora: s(&["c_attn"]),
        ia3: s(&["c_attn", "mlp.c_proj"]),
        ia3_feedforward: s(&["mlp.c_proj"]),
        adapter_after_attention: s(&["attn.c_proj"]),
        adapter_after_ffn: s(&["mlp.c_proj"]),
        head_prefixes: Vec::new(),
        exclude: s(&["lm_head"]),
    }
}

/// The tensors of `named` (variable names of a [`Gpt2LmHeadModel`], as `VarStore::variables` gives them) as a
/// GPT-2 checkpoint stores them: the [`GPT2_CONV1D_WEIGHTS`] transposed back to `Conv1D`'s `[in, out]`
/// (contiguous), everything else as it is.
pub fn gpt2_checkpoint_tensors(named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(name, t)| {
            let conv1d = GPT2_CONV1D_WEIGHTS.iter().any(|s| name.ends_with(&format!(".{s}")));
            let t = if conv1d && t.dim() == 2 { t.tr().contiguous() } else { t };
            (name, t)
        })
        .collect()
}

/// `transformer.h.N.attn`: fused query/key/value projection, scaled dot-product attention, output projection.
#[derive(Debug)]
struct Attention {
    c_attn: Linear,
    c_proj: Linear,
    slots: AttentionSlots,
    /// Multiplier of the scores: `1/√head_dim` and/or `1/(layer + 1)` as the config says.
    scaling: f64,
    resid_pdrop: f64,
}

impl Attention {
    fn new(p: nn::Path, c: &Gpt2Config, layer: i64) -> Self {
        let e = c.n_embd;
        let mut scaling = if c.scale_attn_weights { (c.head_dim() as f64).powf(-0.5) } else { 1.0 };
        if c.scale_attn_by_inverse_layer_idx {
            scaling /= (layer + 1) as f64;
        }
        Self {
            c_attn: dense(&p / "c_attn", e, 3 * e, c.initializer_range),
            // transformers scales the initial residual projections by 1/√(2·n_layer).
            c_proj: dense(&p / "c_proj", e, e, c.initializer_range / (2.0 * c.n_layer as f64).sqrt()),
            slots: AttentionSlots::new(path_name(&p), c.n_head, c.head_dim()).with_dropout(c.attn_pdrop),
            scaling,
            resid_pdrop: c.resid_pdrop,
        }
    }

    /// `cached` is the cache's length before this call; `prefix` this block's prefix keys and values, which the
    /// caller computes (it needs their length for the positions).
    fn forward(
        &self,
        x: &Tensor,
        layout: &BatchLayout,
        prefix: Option<(Tensor, Tensor)>,
        cached: i64,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> Tensor {
        let (b, t, e) = x.size3().expect("hidden states are [batch, len, hidden]");
        let (heads, d) = (self.slots.heads, self.slots.head_dim);
        let qkv = self.c_attn.forward_t(x, train).split(e, 2);
        let split = |y: &Tensor| y.view([b, t, heads, d]).transpose(1, 2);
        let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        // A prefix (prefix tuning, P-tuning v2) acts as peft's: keys and values in front of the cached ones.
        let p_len = prefix.as_ref().map_or(0, |(pk, _)| pk.size()[2]);
        let (k, v) = match prefix {
            Some((pk, pv)) => (Tensor::cat(&[pk.to_kind(k.kind()), k], 2), Tensor::cat(&[pv.to_kind(v.kind()), v], 2)),
            None => (k, v),
        };
        // As in the Llama attention: SDPA's own causal mask for a plain prompt from position 0, an explicit mask
        // for padding, packed examples, prefixes and chunks after cached positions.
        let p = if train { self.slots.dropout } else { 0.0 };
        let mask = layout.attention_mask_4d(t, p_len, cached, q.device());
        let causal = mask.is_none() && cached == 0 && t > 1;
        let out = Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), p, causal, Some(self.scaling), false);
        let out = out.transpose(1, 2).reshape([b, t, e]);
        dropout(self.c_proj.forward_t(&out, train), self.resid_pdrop, train)
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.c_attn);
        v.linear(&mut self.c_proj);
        v.attention(&mut self.slots);
    }
}

/// `transformer.h.N.mlp`: `c_proj(act(c_fc(x)))`.
#[derive(Debug)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    act: Activation,
    resid_pdrop: f64,
}

impl Mlp {
    fn new(p: nn::Path, c: &Gpt2Config) -> Self {
        let (e, i, std) = (c.n_embd, c.n_inner, c.initializer_range);
        Self {
            c_fc: dense(&p / "c_fc", e, i, std),
            c_proj: dense(&p / "c_proj", i, e, std / (2.0 * c.n_layer as f64).sqrt()),
            act: c.activation_function,
            resid_pdrop: c.resid_pdrop,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.act.apply(&self.c_fc.forward_t(x, train));
        dropout(self.c_proj.forward_t(&h, train), self.resid_pdrop, train)
    }

    fn visit(&mut self, v: &mut dyn LayerVisitor) {
        v.linear(&mut self.c_fc);
        v.linear(&mut self.c_proj);
    }
}

/// `transformer.h.N`: pre-norm attention and MLP, each with a residual.
#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

/// transformers' `GPT2LMHeadModel`: the decoder under `transformer.` and an output layer that is
/// `transformer.wte.weight` itself (or `lm_head.weight` for a config with `tie_word_embeddings: false`).
///
/// The `Conv1D` weights ([`GPT2_CONV1D_WEIGHTS`]) are held `[out, in]`: write checkpoints through
/// [`gpt2_checkpoint_tensors`] so that transformers reads them back.
#[derive(Debug)]
pub struct Gpt2LmHeadModel {
    config: Gpt2Config,
    info: CausalLmInfo,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `None` when tied to `wte`.
    lm_head: Option<Linear>,
}

impl Gpt2LmHeadModel {
    /// Registers the model's tensors under `p` (`p / "transformer"`, and `p / "lm_head"` when untied),
    /// initialised as transformers' `_init_weights` does.
    pub fn new(p: nn::Path, c: &Gpt2Config) -> Self {
        let t = &p / "transformer";
        let std = c.initializer_range;
        let blocks = (0..c.n_layer)
            .map(|i| {
                let h = &t / "h" / i;
                Block {
                    ln_1: LayerNorm::new(&h / "ln_1", c.n_embd, c.layer_norm_epsilon),
                    attn: Attention::new(&h / "attn", c, i),
                    ln_2: LayerNorm::new(&h / "ln_2", c.n_embd, c.layer_norm_epsilon),
                    mlp: Mlp::new(&h / "mlp", c),
                }
            })
            .collect();
        let lm_head = (!c.tie_word_embeddings).then(|| {
            let weight =
                (&p / "lm_head").var("weight", &[c.vocab_size, c.n_embd], nn::Init::Randn { mean: 0.0, stdev: std });
            Linear::from_parts("lm_head", weight, None)
        });
        let info = CausalLmInfo {
            vocab_size: c.vocab_size,
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_ids.clone(),
            max_position_embeddings: c.n_positions,
            num_layers: c.n_layer as usize,
        };
        Self {
            config: c.clone(),
            info,
            wte: Embedding::new(&t / "wte", c.vocab_size, c.n_embd, None, std),
            wpe: Embedding::new(&t / "wpe", c.n_positions, c.n_embd, None, std),
            blocks,
            ln_f: LayerNorm::new(&t / "ln_f", c.n_embd, c.layer_norm_epsilon),
            lm_head,
        }
    }

    /// The parsed configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Reads `dir/config.json`, builds the model in a new float32 `VarStore` on `device` and loads
    /// `dir/model.safetensors` (or the shards of `model.safetensors.index.json`) strictly, transposing the
    /// `Conv1D` weights. Names may carry transformers' `transformer.` prefix or not (the original `gpt2` files);
    /// the causal-mask buffers older checkpoints carry (`attn.bias`, `attn.masked_bias`) and a tied model's
    /// `lm_head.weight` are ignored. bos/eos of `dir/generation_config.json`, when it names them, take precedence.
    pub fn load_dir(dir: impl AsRef<Path>, device: Device) -> Result<(nn::VarStore, Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = Gpt2Config::from_file(dir.join("config.json"))?;
        let vs = nn::VarStore::new(device);
        let mut model = Self::new(vs.root(), &config);
        model.info.apply_generation_config(dir)?;
        let files = checkpoint_files(dir)?;
        let mut opts =
            LoadOptions::strict().add_prefixes(["transformer."]).transposed(GPT2_CONV1D_WEIGHTS.iter().copied());
        for i in 0..config.n_layer {
            for prefix in ["", "transformer."] {
                opts = opts.skip([format!("{prefix}h.{i}.attn.bias"), format!("{prefix}h.{i}.attn.masked_bias")]);
            }
        }
        if config.tie_word_embeddings {
            opts = opts.skip(["lm_head.weight"]);
        }
        let report = load_safetensors(&vs, &files, &opts)?;
        Ok((vs, model, report))
    }
}

impl CausalLm for Gpt2LmHeadModel {
    fn info(&self) -> &CausalLmInfo {
        &self.info
    }

    fn device(&self) -> Device {
        self.wte.weight.device()
    }

    fn forward_layout(
        &self,
        input_ids: &Tensor,
        layout: &BatchLayout,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        // Read once: the first block's append changes what the cache reports.
        let cached = cache.as_ref().map_or(0, |c| c.len());
        // With a prefix, peft hands the prefix to transformers as cached keys, so the tokens' positions start
        // after it (as in the Llama model).
        let batch = input_ids.size()[0];
        let mut prefixes: Vec<Option<(Tensor, Tensor)>> =
            self.blocks.iter().map(|b| b.attn.slots.prefix.as_ref().map(|p| p.key_values(batch, train))).collect();
        let p_len = prefixes.iter().flatten().next().map_or(0, |(k, _)| k.size()[2]);
        let positions = layout.positions(input_ids.size()[1], cached, input_ids.device()) + p_len;
        let x = self.wte.forward(input_ids) + self.wpe.forward(&positions);
        let mut x = dropout(x, self.config.embd_pdrop, train);
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            let prefix = prefixes[i].take();
            let a = block.attn.forward(&block.ln_1.forward(&x), layout, prefix, cached, layer_cache, train);
            // Not `+=`: an in-place add would overwrite the input `ln_1` saved for backward.
            x = &x + a;
            x = &x + block.mlp.forward(&block.ln_2.forward(&x), train);
        }
        let x = self.ln_f.forward(&x);
        match &self.lm_head {
            Some(head) => head.forward_t(&x, train),
            None => suite_core::nn::dense(&x, &self.wte.weight, None),
        }
    }
}

impl VisitLayers for Gpt2LmHeadModel {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        for block in &mut self.blocks {
            block.attn.visit(visitor);
            block.mlp.visit(visitor);
        }
    }
}
