//! Whisper's `config.json`, as transformers' `WhisperConfig` reads and writes it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

/// The architecture and special-token ids of a Whisper checkpoint: the fields of transformers' `WhisperConfig`
/// that the model needs, with transformers' defaults for the ones a file leaves out. Fields suite does not use
/// (`init_std`, `mask_time_prob`, …) are kept in [`extra`](Self::extra), so a config read and written back is the
/// same config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhisperConfig {
    /// Always `whisper`.
    #[serde(default = "defaults::model_type")]
    pub model_type: String,
    /// The transformers classes this checkpoint is for.
    #[serde(default = "defaults::architectures", deserialize_with = "null_as_default")]
    pub architectures: Vec<String>,
    /// Size of the token vocabulary, timestamp tokens included (51865 multilingual, 51864 English-only).
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    /// Mel bins of the input features (80, or 128 for large-v3).
    #[serde(default = "defaults::num_mel_bins")]
    pub num_mel_bins: i64,
    /// Width of every hidden state.
    #[serde(default = "defaults::d_model")]
    pub d_model: i64,
    /// Encoder blocks.
    #[serde(default = "defaults::layers")]
    pub encoder_layers: i64,
    /// Heads of each encoder self-attention.
    #[serde(default = "defaults::heads")]
    pub encoder_attention_heads: i64,
    /// Hidden width of the encoder's feed-forward blocks.
    #[serde(default = "defaults::ffn")]
    pub encoder_ffn_dim: i64,
    /// Decoder blocks.
    #[serde(default = "defaults::layers")]
    pub decoder_layers: i64,
    /// Heads of each decoder self- and cross-attention.
    #[serde(default = "defaults::heads")]
    pub decoder_attention_heads: i64,
    /// Hidden width of the decoder's feed-forward blocks.
    #[serde(default = "defaults::ffn")]
    pub decoder_ffn_dim: i64,
    /// Encoder positions: 1500 for 30 s of audio (3000 mel frames, halved by the second convolution).
    #[serde(default = "defaults::max_source_positions")]
    pub max_source_positions: i64,
    /// Decoder positions (448): the longest token sequence, prompt included.
    #[serde(default = "defaults::max_target_positions")]
    pub max_target_positions: i64,
    /// The first decoder token, `<|startoftranscript|>`.
    #[serde(default = "defaults::decoder_start_token_id")]
    pub decoder_start_token_id: i64,
    /// Padding id of the labels (`<|endoftext|>` in OpenAI's checkpoints).
    #[serde(default = "defaults::special_id")]
    pub pad_token_id: i64,
    /// Beginning-of-sequence id.
    #[serde(default = "defaults::special_id")]
    pub bos_token_id: i64,
    /// End of text, `<|endoftext|>`.
    #[serde(default = "defaults::special_id")]
    pub eos_token_id: i64,
    /// Tokens never generated (non-speech symbols and the task tokens).
    #[serde(default, deserialize_with = "null_as_default")]
    pub suppress_tokens: Vec<i64>,
    /// Tokens not allowed as the first generated token (a blank and `<|endoftext|>`).
    #[serde(default = "defaults::begin_suppress_tokens", deserialize_with = "null_as_default")]
    pub begin_suppress_tokens: Vec<i64>,
    /// Activation of the feed-forward blocks; only `gelu` (erf) is supported.
    #[serde(default = "defaults::activation_function")]
    pub activation_function: String,
    /// Multiply token embeddings by √d_model (false in every OpenAI checkpoint).
    #[serde(default)]
    pub scale_embedding: bool,
    /// Dropout on the residual branches in training.
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on attention probabilities in training (not applied by suite: see [`super::Whisper`]).
    #[serde(default)]
    pub attention_dropout: f64,
    /// Dropout after the feed-forward activation in training.
    #[serde(default)]
    pub activation_dropout: f64,
    /// The output projection is the token embedding (true for every Whisper checkpoint).
    #[serde(default = "defaults::tie_word_embeddings")]
    pub tie_word_embeddings: bool,
    /// Every other field of the file, written back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// transformers writes `null` for an unset list.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

mod defaults {
    //! transformers' `WhisperConfig.__init__` defaults (those of whisper-tiny), used for fields a file omits.
    pub fn model_type() -> String {
        "whisper".into()
    }
    pub fn architectures() -> Vec<String> {
        vec!["WhisperForConditionalGeneration".into()]
    }
    pub fn vocab_size() -> i64 {
        51865
    }
    pub fn num_mel_bins() -> i64 {
        80
    }
    pub fn d_model() -> i64 {
        384
    }
    pub fn layers() -> i64 {
        4
    }
    pub fn heads() -> i64 {
        6
    }
    pub fn ffn() -> i64 {
        1536
    }
    pub fn max_source_positions() -> i64 {
        1500
    }
    pub fn max_target_positions() -> i64 {
        448
    }
    pub fn decoder_start_token_id() -> i64 {
        50257
    }
    pub fn special_id() -> i64 {
        50256
    }
    pub fn begin_suppress_tokens() -> Vec<i64> {
        vec![220, 50256]
    }
    pub fn activation_function() -> String {
        "gelu".into()
    }
    pub fn tie_word_embeddings() -> bool {
        true
    }
}

impl WhisperConfig {
    /// Reads and checks a `config.json`; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("{}: not a usable Whisper config", path.display()))
    }

    /// Parses and checks config JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("line {} column {}: {e} (expected transformers' WhisperConfig)", e.line(), e.column())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the dimensions describe a model suite can build.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "whisper" {
            bail!("model_type is {:?}, expected \"whisper\"", self.model_type);
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("num_mel_bins", self.num_mel_bins),
            ("d_model", self.d_model),
            ("encoder_layers", self.encoder_layers),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_layers", self.decoder_layers),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("max_source_positions", self.max_source_positions),
            ("max_target_positions", self.max_target_positions),
        ];
        for (name, v) in positive {
            if v <= 0 {
                bail!("{name} = {v}, expected a positive number");
            }
        }
        for (name, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if self.d_model % heads != 0 {
                bail!("d_model = {} is not divisible by {name} = {heads}", self.d_model);
            }
        }
        if self.activation_function != "gelu" {
            let f = &self.activation_function;
            bail!("activation_function = {f:?}: only \"gelu\" (as in every Whisper checkpoint) is supported");
        }
        if !self.tie_word_embeddings {
            bail!("tie_word_embeddings = false: Whisper's output projection is its token embedding");
        }
        for (name, id) in [
            ("decoder_start_token_id", self.decoder_start_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
            ("bos_token_id", self.bos_token_id),
        ] {
            if !(0..self.vocab_size).contains(&id) {
                bail!("{name} = {id} is outside the vocabulary (vocab_size = {})", self.vocab_size);
            }
        }
        for (name, ids) in
            [("suppress_tokens", &self.suppress_tokens), ("begin_suppress_tokens", &self.begin_suppress_tokens)]
        {
            if let Some(id) = ids.iter().find(|&&id| !(0..self.vocab_size).contains(&id)) {
                bail!("{name} holds {id}, outside the vocabulary (vocab_size = {})", self.vocab_size);
            }
        }
        Ok(())
    }

    /// The config as the JSON object transformers' `WhisperConfig.from_pretrained` accepts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a WhisperConfig always serialises")
    }

    /// Mel frames of one window: two per encoder position (the second convolution has stride 2).
    pub fn n_frames(&self) -> i64 {
        2 * self.max_source_positions
    }
}
