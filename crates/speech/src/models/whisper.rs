//! The Whisper encoder–decoder ("Robust Speech Recognition via Large-Scale Weak Supervision", Radford et al.
//! 2022) with the parameter names of transformers' `WhisperForConditionalGeneration`, so hub checkpoints load by
//! name and exports load back into transformers.

use anyhow::{bail, Result};
use suite_core::nn::{dense, dropout, init, LayerVisitor, Linear, VisitLayers};
use tch::{nn, Kind, Tensor};

use super::attention::WhisperAttention;
use super::cache::KvCache;
use super::config::WhisperConfig;

/// transformers' `nn.LayerNorm` default, which Whisper keeps.
const LN_EPS: f64 = 1e-5;

fn layer_norm(p: nn::Path, d: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![d], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() })
}

/// A 1-D convolution of the audio stem (`conv1`, `conv2`), named as `torch.nn.Conv1d`.
#[derive(Debug)]
struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
}

impl Conv1d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let bound = 1.0 / ((c_in * 3) as f64).sqrt();
        let u = nn::Init::Uniform { lo: -bound, up: bound };
        let (weight, bias) = (init::var(&p, "weight", &[c_out, c_in, 3], u), init::var(&p, "bias", &[c_out], u));
        Self { weight, bias, stride }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.weight, Some(&self.bias), [self.stride], [1], [1], 1)
    }
}

/// The feed-forward half of a block: `fc1`, GELU, `fc2`.
#[derive(Debug)]
struct FeedForward {
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    fn new(p: &nn::Path, d: i64, ffn: i64) -> Self {
        Self { fc1: Linear::new(p / "fc1", d, ffn, true), fc2: Linear::new(p / "fc2", ffn, d, true) }
    }

    fn forward(&self, x: &Tensor, activation_dropout: f64, train: bool) -> Tensor {
        let h = dropout(self.fc1.forward_t(x, train).gelu("none"), activation_dropout, train);
        self.fc2.forward_t(&h, train)
    }
}

/// A pre-norm encoder block (`model.encoder.layers.N`).
#[derive(Debug)]
struct EncoderLayer {
    self_attn: WhisperAttention,
    self_attn_layer_norm: nn::LayerNorm,
    ffn: FeedForward,
    final_layer_norm: nn::LayerNorm,
}

impl EncoderLayer {
    fn new(p: &nn::Path, c: &WhisperConfig) -> Self {
        Self {
            self_attn: WhisperAttention::new(&(p / "self_attn"), c.d_model, c.encoder_attention_heads),
            self_attn_layer_norm: layer_norm(p / "self_attn_layer_norm", c.d_model),
            ffn: FeedForward::new(p, c.d_model, c.encoder_ffn_dim),
            final_layer_norm: layer_norm(p / "final_layer_norm", c.d_model),
        }
    }

    fn forward(&self, x: &Tensor, c: &WhisperConfig, train: bool) -> Tensor {
        let h = self.self_attn.forward_self(&x.apply(&self.self_attn_layer_norm), false, train);
        let x = x + dropout(h, c.dropout, train);
        let h = self.ffn.forward(&x.apply(&self.final_layer_norm), c.activation_dropout, train);
        x + dropout(h, c.dropout, train)
    }
}

/// A pre-norm decoder block (`model.decoder.layers.N`): causal self-attention, cross-attention, feed-forward.
#[derive(Debug)]
struct DecoderLayer {
    self_attn: WhisperAttention,
    self_attn_layer_norm: nn::LayerNorm,
    encoder_attn: WhisperAttention,
    encoder_attn_layer_norm: nn::LayerNorm,
    ffn: FeedForward,
    final_layer_norm: nn::LayerNorm,
}

impl DecoderLayer {
    fn new(p: &nn::Path, c: &WhisperConfig) -> Self {
        Self {
            self_attn: WhisperAttention::new(&(p / "self_attn"), c.d_model, c.decoder_attention_heads),
            self_attn_layer_norm: layer_norm(p / "self_attn_layer_norm", c.d_model),
            encoder_attn: WhisperAttention::new(&(p / "encoder_attn"), c.d_model, c.decoder_attention_heads),
            encoder_attn_layer_norm: layer_norm(p / "encoder_attn_layer_norm", c.d_model),
            ffn: FeedForward::new(p, c.d_model, c.decoder_ffn_dim),
            final_layer_norm: layer_norm(p / "final_layer_norm", c.d_model),
        }
    }

    fn forward(&self, x: &Tensor, encoder_states: &Tensor, c: &WhisperConfig, train: bool) -> Tensor {
        let h = self.self_attn.forward_self(&x.apply(&self.self_attn_layer_norm), true, train);
        let x = x + dropout(h, c.dropout, train);
        let (k, v) = self.encoder_attn.cross_kv(encoder_states, train);
        let h = self.encoder_attn.forward_cross(&x.apply(&self.encoder_attn_layer_norm), &k, &v, train);
        let x = x + dropout(h, c.dropout, train);
        let h = self.ffn.forward(&x.apply(&self.final_layer_norm), c.activation_dropout, train);
        x + dropout(h, c.dropout, train)
    }

    /// [`forward`](Self::forward) at inference that also returns the cross-attention scores of `heads` (see
    /// [`WhisperAttention::cross_scores`]), when any.
    fn forward_scores(&self, x: &Tensor, encoder_states: &Tensor, heads: &[i64]) -> (Tensor, Option<Tensor>) {
        let h = self.self_attn.forward_self(&x.apply(&self.self_attn_layer_norm), true, false);
        let x = x + h;
        let (k, v) = self.encoder_attn.cross_kv(encoder_states, false);
        let normed = x.apply(&self.encoder_attn_layer_norm);
        let scores = (!heads.is_empty()).then(|| self.encoder_attn.cross_scores(&normed, &k, heads));
        let x = &x + self.encoder_attn.forward_cross(&normed, &k, &v, false);
        (&x + self.ffn.forward(&x.apply(&self.final_layer_norm), 0.0, false), scores)
    }

    fn step(&self, x: &Tensor, encoder_states: &Tensor, cache: &mut super::cache::LayerCache) -> Tensor {
        let h = self.self_attn.forward_cached(&x.apply(&self.self_attn_layer_norm), &mut cache.self_kv);
        let x = x + h;
        // Contiguous once per window, so that every step's attention reads the keys and values in order.
        let (k, v) = cache.cross_kv.get_or_insert_with(|| {
            let (k, v) = self.encoder_attn.cross_kv(encoder_states, false);
            (k.contiguous(), v.contiguous())
        });
        let h = self.encoder_attn.forward_cross(&x.apply(&self.encoder_attn_layer_norm), k, v, false);
        let x = x + h;
        &x + self.ffn.forward(&x.apply(&self.final_layer_norm), 0.0, false)
    }
}

/// Whisper's fixed sinusoidal encoder positions (OpenAI's `sinusoids`): `[length, channels]`, sines then cosines.
pub fn sinusoids(length: i64, channels: i64) -> Tensor {
    let half = channels / 2;
    let increment = (10000f64).ln() / (half - 1).max(1) as f64;
    let inv = (Tensor::arange(half, (Kind::Float, tch::Device::Cpu)) * -increment).exp();
    let t = Tensor::arange(length, (Kind::Float, tch::Device::Cpu)).unsqueeze(1) * inv.unsqueeze(0);
    Tensor::cat(&[t.sin(), t.cos()], 1)
}

/// The Whisper encoder–decoder. Parameters are named as in transformers (`model.encoder.conv1.weight`,
/// `model.decoder.layers.0.encoder_attn.k_proj.weight`, …); the output projection `proj_out` is the token
/// embedding, not a tensor of its own. Every dense layer is a [`Linear`] and every attention goes through an
/// [`suite_core::nn::AttentionSlots`], so PEFT methods attach through [`VisitLayers`].
///
/// Dropout follows the config in training (0 in OpenAI's checkpoints) except `attention_dropout`, which the
/// shared attention slot does not apply.
#[derive(Debug)]
pub struct Whisper {
    /// The architecture this model was built for.
    pub config: WhisperConfig,
    /// Dotted name of the root path the model was built under (empty at a VarStore's root).
    prefix: String,
    conv1: Conv1d,
    conv2: Conv1d,
    encoder_positions: Tensor,
    encoder_layers: Vec<EncoderLayer>,
    encoder_norm: nn::LayerNorm,
    embed_tokens: Tensor,
    decoder_positions: Tensor,
    decoder_layers: Vec<DecoderLayer>,
    decoder_norm: nn::LayerNorm,
}

impl Whisper {
    /// Registers the model's variables under `root` (`root/model/encoder/…`). Weights start at transformers'
    /// initialisation scale; load a checkpoint with [`super::load_whisper`].
    pub fn new(root: &nn::Path, config: &WhisperConfig) -> Result<Self> {
        config.validate()?;
        let c = config;
        let enc = root / "model" / "encoder";
        let dec = root / "model" / "decoder";
        // Stored, not trainable, as in the checkpoints (transformers freezes it too).
        let encoder_positions =
            (&enc / "embed_positions").zeros_no_train("weight", &[c.max_source_positions, c.d_model]);
        tch::no_grad(|| encoder_positions.shallow_clone().copy_(&sinusoids(c.max_source_positions, c.d_model)));
        let std = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let model = Self {
            conv1: Conv1d::new(&enc / "conv1", c.num_mel_bins, c.d_model, 1),
            conv2: Conv1d::new(&enc / "conv2", c.d_model, c.d_model, 2),
            encoder_positions,
            encoder_layers: (0..c.encoder_layers).map(|i| EncoderLayer::new(&(&enc / "layers" / i), c)).collect(),
            encoder_norm: layer_norm(&enc / "layer_norm", c.d_model),
            embed_tokens: init::var(&(&dec / "embed_tokens"), "weight", &[c.vocab_size, c.d_model], std),
            decoder_positions: init::var(
                &(&dec / "embed_positions"),
                "weight",
                &[c.max_target_positions, c.d_model],
                std,
            ),
            decoder_layers: (0..c.decoder_layers).map(|i| DecoderLayer::new(&(&dec / "layers" / i), c)).collect(),
            decoder_norm: layer_norm(&dec / "layer_norm", c.d_model),
            config: config.clone(),
            prefix: suite_core::nn::path_name(root),
        };
        Ok(model)
    }

    /// Dotted name of the path the model was built under (empty at a VarStore's root): variable `name` of
    /// [`super::whisper_parameter_names`] is `prefix.name` in the VarStore.
    pub fn var_prefix(&self) -> &str {
        &self.prefix
    }

    /// The device the weights are on.
    pub fn device(&self) -> tch::Device {
        self.embed_tokens.device()
    }

    /// Checks that `mel` is `[batch, num_mel_bins, frames]` with at most one window of frames (3000), the
    /// precondition of [`encode`](Self::encode).
    pub fn check_mel(&self, mel: &Tensor) -> Result<()> {
        let size = mel.size();
        let c = &self.config;
        if size.len() != 3 || size[1] != c.num_mel_bins || size[2] < 1 || size[2] > c.n_frames() {
            bail!(
                "mel features have shape {size:?}, expected [batch, {}, {}] (log-mel of a 30 s window)",
                c.num_mel_bins,
                c.n_frames()
            );
        }
        Ok(())
    }

    /// mel `[b, n_mels, 3000]` → encoder states `[b, 1500, d]`. Shorter inputs use the first positions (see
    /// [`check_mel`](Self::check_mel)).
    pub fn encode(&self, mel: &Tensor, train: bool) -> Tensor {
        let x = self.conv1.forward(mel).gelu("none");
        let x = self.conv2.forward(&x).gelu("none").transpose(1, 2);
        let len = x.size()[1];
        let x = dropout(x + self.encoder_positions.narrow(0, 0, len), self.config.dropout, train);
        let x = self.encoder_layers.iter().fold(x, |x, l| l.forward(&x, &self.config, train));
        x.apply(&self.encoder_norm)
    }

    /// Token embeddings plus positions `offset..offset + t`.
    fn embed(&self, tokens: &Tensor, offset: i64, train: bool) -> Tensor {
        let t = tokens.size()[1];
        let mut x = Tensor::embedding(&self.embed_tokens, tokens, -1, false, false);
        if self.config.scale_embedding {
            x *= (self.config.d_model as f64).sqrt();
        }
        dropout(x + self.decoder_positions.narrow(0, offset, t), self.config.dropout, train)
    }

    /// Teacher-forced decoder: tokens `[b, t]` Int64 (t ≤ `max_target_positions`) → logits `[b, t, vocab]`.
    pub fn decode(&self, tokens: &Tensor, encoder_states: &Tensor, train: bool) -> Tensor {
        let x = self.embed(tokens, 0, train);
        let x = self.decoder_layers.iter().fold(x, |x, l| l.forward(&x, encoder_states, &self.config, train));
        dense(&x.apply(&self.decoder_norm), &self.embed_tokens, None)
    }

    /// Teacher-forced decoder at inference that also returns the cross-attention scores (scaled query·key, before
    /// the softmax) of the alignment heads `heads` (`(layer, head)` pairs, as openai-whisper's `alignment_heads`):
    /// tokens `[b, t]`, encoder states `[b, frames, d]` → logits `[b, t, vocab]` and scores `[b, heads.len(), t,
    /// frames]` in the order of `heads`. For word timestamps; decoding itself uses [`decoder_step`](Self::decoder_step).
    pub fn decode_with_alignment_scores(
        &self,
        tokens: &Tensor,
        encoder_states: &Tensor,
        heads: &[(i64, i64)],
    ) -> Result<(Tensor, Tensor)> {
        let (layers, n_heads) = (self.decoder_layers.len() as i64, self.config.decoder_attention_heads);
        if heads.is_empty() {
            bail!("no alignment heads given");
        }
        if let Some(&(l, h)) = heads.iter().find(|&&(l, h)| l < 0 || l >= layers || h < 0 || h >= n_heads) {
            bail!("alignment head ({l}, {h}) is outside the decoder's {layers} layers × {n_heads} heads");
        }
        let mut x = self.embed(tokens, 0, false);
        // Per layer, the scores of its heads; then reordered as `heads` lists them.
        let mut found: Vec<((i64, i64), Tensor)> = Vec::new();
        for (i, layer) in self.decoder_layers.iter().enumerate() {
            let mine: Vec<i64> = heads.iter().filter(|p| p.0 == i as i64).map(|p| p.1).collect();
            let (next, scores) = layer.forward_scores(&x, encoder_states, &mine);
            x = next;
            if let Some(scores) = scores {
                for (j, &h) in mine.iter().enumerate() {
                    found.push(((i as i64, h), scores.select(1, j as i64)));
                }
            }
        }
        let ordered: Vec<Tensor> = heads
            .iter()
            .map(|p| found.iter().find(|(q, _)| q == p).map(|(_, t)| t.shallow_clone()).expect("every head was found"))
            .collect();
        let logits = dense(&x.apply(&self.decoder_norm), &self.embed_tokens, None);
        Ok((logits, Tensor::stack(&ordered, 1)))
    }

    /// Incremental decoding: feeds `tokens` `[b·g, t]` after the positions already in `cache` and returns the
    /// logits of the last position `[b·g, vocab]`. `encoder_states` `[b, frames, d]` are read on the first step
    /// only (cross-attention keys and values are kept in the cache); the `g` consecutive rows of each audio
    /// item — its beams — share them. Inference only (no dropout, no autograd needed).
    pub fn decoder_step(&self, tokens: &Tensor, encoder_states: &Tensor, cache: &mut KvCache) -> Tensor {
        let t = tokens.size()[1];
        let x = self.embed(tokens, cache.len(), false);
        cache.ensure_layers(self.decoder_layers.len());
        let mut x = x;
        for (layer, lc) in self.decoder_layers.iter().zip(cache.layers_mut()) {
            x = layer.step(&x, encoder_states, lc);
        }
        cache.advance(t);
        dense(&x.select(1, -1).apply(&self.decoder_norm), &self.embed_tokens, None)
    }
}

impl VisitLayers for Whisper {
    fn visit_layers(&mut self, visitor: &mut dyn LayerVisitor) {
        for l in &mut self.encoder_layers {
            l.self_attn.visit(visitor);
            visitor.linear(&mut l.ffn.fc1);
            visitor.linear(&mut l.ffn.fc2);
        }
        for l in &mut self.decoder_layers {
            l.self_attn.visit(visitor);
            l.encoder_attn.visit(visitor);
            visitor.linear(&mut l.ffn.fc1);
            visitor.linear(&mut l.ffn.fc2);
        }
    }
}
