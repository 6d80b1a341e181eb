//! A Llama-family causal LM (`llama`, `qwen2`) as the GGUF file llama.cpp's `convert_hf_to_gguf.py` writes:
//! its architecture metadata, tensor names, the Q/K row permutation of `llama`, and the byte-level BPE tokenizer
//! with the chat template.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

use super::gguf::{GgmlType, GgufFile, GgufTensor, GgufValue, Q8_0_BLOCK};
use crate::models::{read_json, LmCheckpoint};
use crate::models::{LlamaConfig, RopeScaling};

/// The type of the large (2-D) tensors of a GGUF export; 1-D tensors (norms, biases) stay float32, as
/// llama.cpp's converter leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// Half precision.
    F16,
    /// ggml's 8-bit blocks (a matrix whose rows are not a multiple of 32 long falls back to f16, as in
    /// llama.cpp's converter).
    Q8_0,
}

impl GgufType {
    /// Parses `f16` or `q8_0`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            _ => bail!("--gguf-type {text:?}: expected f16 or q8_0"),
        }
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_MOSTLY_F16` or `LLAMA_FTYPE_MOSTLY_Q8_0`.
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }

    /// The lowercase name, for file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
        }
    }
}

/// llama.cpp's token types.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// Builds the GGUF file of `ckpt` (PEFT merged into the weights, as for a hub export).
pub fn gguf_file(ckpt: &LmCheckpoint, ty: GgufType) -> Result<GgufFile> {
    let arch = ckpt.model_type.as_str();
    if !matches!(arch, "llama" | "qwen2") {
        bail!("--format gguf: model_type {arch:?} is not supported yet (llama and qwen2 are)");
    }
    let config_origin = format!("{}", ckpt.base_dir.join("config.json").display());
    let c = LlamaConfig::from_json(&ckpt.config).with_context(|| config_origin.clone())?;
    let weights = ckpt
        .merged_weights()
        .map_err(|e| anyhow!("--format gguf: {e}; export the adapter for peft with --format peft instead"))?;
    let mut file = GgufFile::new();
    let name = ckpt.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| arch.to_string());
    let u32_of = |v: i64, field: &str| {
        u32::try_from(v).with_context(|| format!("{config_origin}: `{field}` = {v} does not fit GGUF's uint32"))
    };
    file.set("general.architecture", GgufValue::Str(arch.into()));
    file.set("general.type", GgufValue::Str("model".into()));
    file.set("general.name", GgufValue::Str(name));
    file.set(format!("{arch}.block_count"), GgufValue::U32(u32_of(c.num_hidden_layers, "num_hidden_layers")?));
    file.set(
        format!("{arch}.context_length"),
        GgufValue::U32(u32_of(c.max_position_embeddings, "max_position_embeddings")?),
    );
    file.set(format!("{arch}.embedding_length"), GgufValue::U32(u32_of(c.hidden_size, "hidden_size")?));
    file.set(format!("{arch}.feed_forward_length"), GgufValue::U32(u32_of(c.intermediate_size, "intermediate_size")?));
    file.set(
        format!("{arch}.attention.head_count"),
        GgufValue::U32(u32_of(c.num_attention_heads, "num_attention_heads")?),
    );
    file.set(
        format!("{arch}.attention.head_count_kv"),
        GgufValue::U32(u32_of(c.num_key_value_heads, "num_key_value_heads")?),
    );
    file.set(format!("{arch}.attention.key_length"), GgufValue::U32(u32_of(c.head_dim, "head_dim")?));
    file.set(format!("{arch}.attention.value_length"), GgufValue::U32(u32_of(c.head_dim, "head_dim")?));
    file.set(format!("{arch}.rope.dimension_count"), GgufValue::U32(u32_of(c.head_dim, "head_dim")?));
    file.set(format!("{arch}.rope.freq_base"), GgufValue::F32(c.rope_theta as f32));
    file.set(format!("{arch}.attention.layer_norm_rms_epsilon"), GgufValue::F32(c.rms_norm_eps as f32));
    file.set(format!("{arch}.vocab_size"), GgufValue::U32(u32_of(c.vocab_size, "vocab_size")?));
    if let RopeScaling::Linear { factor } = c.rope_scaling {
        file.set(format!("{arch}.rope.scaling.type"), GgufValue::Str("linear".into()));
        file.set(format!("{arch}.rope.scaling.factor"), GgufValue::F32(factor as f32));
    }
    file.set("general.file_type", GgufValue::U32(ty.file_type()));
    file.set("general.quantization_version", GgufValue::U32(2));
    tokenizer_metadata(&mut file, ckpt.tokenizer_dir(), &ckpt.base_dir, c.vocab_size)?;

    let mut by_name: HashMap<String, Tensor> = weights.into_iter().collect();
    let mut take = |hf: &str| by_name.remove(hf);
    let add = |file: &mut GgufFile, gguf: String, t: Tensor| -> Result<()> {
        let ggml = match (t.dim(), ty) {
            (1, _) => GgmlType::F32,
            (_, GgufType::F16) => GgmlType::F16,
            (_, GgufType::Q8_0) if t.size().last().is_some_and(|&w| (w as usize).is_multiple_of(Q8_0_BLOCK)) => {
                GgmlType::Q8_0
            }
            (_, GgufType::Q8_0) => GgmlType::F16,
        };
        file.add_tensor(GgufTensor::new(gguf, t, ggml)?)
    };
    let need = |t: Option<Tensor>, hf: &str| t.with_context(|| format!("the model has no tensor {hf}"));
    add(&mut file, "token_embd.weight".into(), need(take("model.embed_tokens.weight"), "model.embed_tokens.weight")?)?;
    if let RopeScaling::Llama3 { .. } = c.rope_scaling {
        add(&mut file, "rope_freqs.weight".into(), llama3_rope_factors(&c))?;
    }
    for i in 0..c.num_hidden_layers {
        let hf = |s: &str| format!("model.layers.{i}.{s}");
        let blk = |s: &str| format!("blk.{i}.{s}");
        let pairs = [
            ("input_layernorm.weight", "attn_norm.weight"),
            ("self_attn.q_proj.weight", "attn_q.weight"),
            ("self_attn.q_proj.bias", "attn_q.bias"),
            ("self_attn.k_proj.weight", "attn_k.weight"),
            ("self_attn.k_proj.bias", "attn_k.bias"),
            ("self_attn.v_proj.weight", "attn_v.weight"),
            ("self_attn.v_proj.bias", "attn_v.bias"),
            ("self_attn.o_proj.weight", "attn_output.weight"),
            ("self_attn.o_proj.bias", "attn_output.bias"),
            ("post_attention_layernorm.weight", "ffn_norm.weight"),
            ("mlp.gate_proj.weight", "ffn_gate.weight"),
            ("mlp.gate_proj.bias", "ffn_gate.bias"),
            ("mlp.up_proj.weight", "ffn_up.weight"),
            ("mlp.up_proj.bias", "ffn_up.bias"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
            ("mlp.down_proj.bias", "ffn_down.bias"),
        ];
        for (from, to) in pairs {
            let Some(mut t) = take(&hf(from)) else {
                if from.ends_with(".bias") {
                    continue;
                }
                bail!("the model has no tensor {}", hf(from));
            };
            // llama.cpp's llama graph expects the rotary halves of each head interleaved (the layout of Meta's
            // original checkpoints), so the converter permutes Q and K rows back; qwen2's graph reads HF's.
            if arch == "llama" && from.starts_with("self_attn.q_proj") {
                t = permute_rows(&t, c.num_attention_heads);
            } else if arch == "llama" && from.starts_with("self_attn.k_proj") {
                t = permute_rows(&t, c.num_key_value_heads);
            }
            add(&mut file, blk(to), t)?;
        }
    }
    add(&mut file, "output_norm.weight".into(), need(take("model.norm.weight"), "model.norm.weight")?)?;
    // A tied model has no lm_head: llama.cpp then reads token_embd for the output.
    if let Some(t) = take("lm_head.weight") {
        add(&mut file, "output.weight".into(), t)?;
    }
    let mut left: Vec<&String> = by_name.keys().collect();
    if !left.is_empty() {
        left.sort();
        bail!("--format gguf: no llama.cpp name for the model's tensors {left:?}");
    }
    Ok(file)
}

/// Writes [`gguf_file`] of `ckpt` to `path`.
pub fn export_gguf(ckpt: &LmCheckpoint, path: &Path, ty: GgufType) -> Result<()> {
    gguf_file(ckpt, ty)?.write(path)
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute`: within each of `heads` heads, rows `[a0 a1 … b0 b1 …]` (the two
/// rotary halves) become `[a0 b0 a1 b1 …]`.
pub fn permute_rows(w: &Tensor, heads: i64) -> Tensor {
    let shape = w.size();
    let mut split = vec![heads, 2, shape[0] / heads / 2];
    split.extend_from_slice(&shape[1..]);
    w.reshape(split.as_slice()).transpose(1, 2).reshape(shape.as_slice())
}

/// Llama 3.1's rope scaling as llama.cpp reads it: a `rope_freqs` tensor of per-frequency divisors, computed with
/// the float32 tensor operations of the converter (`scalar / t` is `t.reciprocal() * scalar` in PyTorch), so that
/// the values are the converter's to the bit.
fn llama3_rope_factors(c: &LlamaConfig) -> Tensor {
    let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } =
        c.rope_scaling
    else {
        unreachable!("called for llama3 scaling")
    };
    let (old, low, high) = (original_max_position_embeddings, low_freq_factor, high_freq_factor);
    let dim = c.head_dim;
    let exponents = Tensor::arange_start_step(0, dim, 2, (Kind::Float, tch::Device::Cpu)) / dim as f64;
    let freqs = Tensor::from(c.rope_theta as f32).pow(&exponents).reciprocal();
    let wavelen = freqs.reciprocal() * (2.0 * std::f64::consts::PI);
    let smooth = (wavelen.reciprocal() * old - low) / (high - low);
    let blend = ((smooth.g_mul_scalar(-1.0) + 1.0) / factor + &smooth).reciprocal();
    let (wl, blend) = (Vec::<f32>::try_from(&wavelen).expect("floats"), Vec::<f32>::try_from(&blend).expect("floats"));
    let factors: Vec<f32> = wl
        .iter()
        .zip(blend)
        .map(|(&w, b)| {
            // The converter compares float32 wavelengths with Python floats.
            if (w as f64) < old / high {
                1.0
            } else if (w as f64) > old / low {
                factor as f32
            } else {
                b
            }
        })
        .collect();
    Tensor::from_slice(&factors)
}

/// A special token of `tokenizer_config.json`: a string or an `AddedToken` object.
fn special_content(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// llama.cpp's `tokenizer.ggml.pre` for a byte-level BPE `pre_tokenizer` of tokenizer.json: GPT-2's own regex, or
/// the split regexes of Qwen2 and Llama 3.
fn pre_tokenizer_name(pre: &Value, origin: &str) -> Result<&'static str> {
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let kind = pre.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "ByteLevel" && pre.get("use_regex").and_then(Value::as_bool).unwrap_or(true) {
        return Ok("gpt-2");
    }
    if kind == "Sequence" {
        let items = pre.get("pretokenizers").and_then(Value::as_array).cloned().unwrap_or_default();
        let regex = items.iter().find_map(|p| p.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str));
        match regex {
            Some(QWEN2) => return Ok("qwen2"),
            Some(LLAMA3) => return Ok("llama-bpe"),
            _ => {}
        }
    }
    bail!(
        "{origin}: field `pre_tokenizer` is not one llama.cpp knows (GPT-2's byte-level regex, Qwen2's or Llama 3's \
         split); the GGUF file would tokenize differently"
    )
}

/// The `tokenizer.*` metadata of llama.cpp's converter for a byte-level BPE tokenizer (`tokenizer.ggml.model` =
/// `gpt2`): tokens padded to the model's `vocab_size`, token types, merges, special token ids, the chat template.
fn tokenizer_metadata(file: &mut GgufFile, dir: &Path, base_dir: &Path, vocab_size: i64) -> Result<()> {
    let tok_path = dir.join("tokenizer.json");
    let origin = tok_path.display().to_string();
    let tok = read_json(&tok_path)?;
    let model = tok.get("model").with_context(|| format!("{origin}: field `model` is missing"))?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        bail!("{origin}: field `model.type` must be \"BPE\" (byte-level BPE); other tokenizers are not exported yet");
    }
    let pre = pre_tokenizer_name(tok.get("pre_tokenizer").unwrap_or(&Value::Null), &origin)?;
    let vocab = model.get("vocab").and_then(Value::as_object).with_context(|| format!("{origin}: `model.vocab`"))?;
    let mut by_id: HashMap<i64, (String, i32)> = HashMap::new();
    for (token, id) in vocab {
        let id = id.as_i64().with_context(|| format!("{origin}: `model.vocab[{token:?}]` is not an integer"))?;
        by_id.insert(id, (token.clone(), TOKEN_NORMAL));
    }
    let mut ids_of: HashMap<String, i64> = vocab.iter().filter_map(|(t, id)| Some((t.clone(), id.as_i64()?))).collect();
    for (i, added) in tok.get("added_tokens").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let (Some(id), Some(content)) =
            (added.get("id").and_then(Value::as_i64), added.get("content").and_then(Value::as_str))
        else {
            bail!("{origin}: `added_tokens[{i}]` needs an integer `id` and a string `content`");
        };
        let special = added.get("special").and_then(Value::as_bool).unwrap_or(false);
        by_id.insert(id, (content.to_string(), if special { TOKEN_CONTROL } else { TOKEN_USER_DEFINED }));
        ids_of.insert(content.to_string(), id);
    }
    if let Some(max) = by_id.keys().max().filter(|&&m| m >= vocab_size) {
        bail!("{origin}: token id {max} is outside the model's vocab_size {vocab_size}");
    }
    let (tokens, types): (Vec<String>, Vec<i32>) =
        (0..vocab_size).map(|i| by_id.remove(&i).unwrap_or_else(|| (format!("[PAD{i}]"), TOKEN_UNUSED))).unzip();
    let merges = model.get("merges").and_then(Value::as_array).cloned().unwrap_or_default();
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) if pair.len() == 2 && pair.iter().all(Value::is_string) => {
                Ok(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or("")))
            }
            _ => bail!("{origin}: `model.merges[{i}]` should be \"a b\" or [\"a\", \"b\"]"),
        })
        .collect::<Result<Vec<_>>>()?;
    file.set("tokenizer.ggml.model", GgufValue::Str("gpt2".into()));
    file.set("tokenizer.ggml.pre", GgufValue::Str(pre.into()));
    file.set("tokenizer.ggml.tokens", GgufValue::StrArray(tokens));
    file.set("tokenizer.ggml.token_type", GgufValue::I32Array(types));
    file.set("tokenizer.ggml.merges", GgufValue::StrArray(merges));

    // Special tokens as llama.cpp's SpecialVocab finds them: tokenizer_config.json's strings, else config.json's
    // `*_token_id`.
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() { read_json(&tc_path)? } else { Value::Null };
    let config = read_json(&base_dir.join("config.json"))?;
    for (kind, key) in
        [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"), ("pad", "padding_token_id")]
    {
        let from_tokenizer = special_content(tc.get(format!("{kind}_token"))).and_then(|s| ids_of.get(&s).copied());
        let from_config = config.get(format!("{kind}_token_id")).and_then(|v| match v {
            Value::Array(a) => a.first().and_then(Value::as_i64),
            v => v.as_i64(),
        });
        if let Some(id) = from_tokenizer.or(from_config) {
            file.set(format!("tokenizer.ggml.{key}"), GgufValue::U32(id as u32));
        }
    }
    match tc.get("add_bos_token").and_then(Value::as_bool) {
        Some(b) => file.set("tokenizer.ggml.add_bos_token", GgufValue::Bool(b)),
        // Without a bos token there is nothing to add; say so, or llama.cpp may add its default.
        None if file.get("tokenizer.ggml.bos_token_id").is_none() => {
            file.set("tokenizer.ggml.add_bos_token", GgufValue::Bool(false))
        }
        None => {}
    }
    if let Some(b) = tc.get("add_eos_token").and_then(Value::as_bool) {
        file.set("tokenizer.ggml.add_eos_token", GgufValue::Bool(b));
    }
    if tc_path.is_file() {
        if let Ok(template) = crate::chat::ChatTemplate::from_tokenizer_config(&tc_path) {
            file.set("tokenizer.chat_template", GgufValue::Str(template.source().to_string()));
        }
    }
    Ok(())
}
