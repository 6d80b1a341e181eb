//! The GGUF v3 container of llama.cpp and Ollama: a little-endian header, typed key/value metadata, tensor infos,
//! then the tensor data, each tensor aligned to 32 bytes (`general.alignment`'s default).
//!
//! Tensors are kept as float32 `tch` tensors until [`GgufFile::write`] encodes them one at a time (f32, f16 or
//! ggml's `Q8_0` blocks), so a large model is never held twice in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use half::f16;
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind, Tensor};

/// `GGUF` read as a little-endian `u32`.
const MAGIC: &[u8; 4] = b"GGUF";
/// The container version written.
const VERSION: u32 = 3;
/// Alignment of the data section and of each tensor in it.
pub const ALIGNMENT: u64 = 32;
/// Values per `Q8_0` block.
pub const Q8_0_BLOCK: usize = 32;

/// A metadata value, with the GGUF type it is written as.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `UINT32`.
    U32(u32),
    /// `INT32`.
    I32(i32),
    /// `UINT64`.
    U64(u64),
    /// `FLOAT32`.
    F32(f32),
    /// `BOOL`.
    Bool(bool),
    /// `STRING` (UTF-8, length-prefixed).
    Str(String),
    /// `ARRAY` of `STRING`.
    StrArray(Vec<String>),
    /// `ARRAY` of `INT32`.
    I32Array(Vec<i32>),
}

/// ggml's tensor types that suite writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// `GGML_TYPE_F32`.
    F32,
    /// `GGML_TYPE_F16`.
    F16,
    /// `GGML_TYPE_Q8_0`: blocks of 32 values, an f16 scale then 32 signed bytes.
    Q8_0,
}

impl GgmlType {
    /// The type's number in the file.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
        }
    }

    /// Bytes taken by `n` values (`n` a multiple of the block size for `Q8_0`).
    pub fn bytes(self, n: usize) -> usize {
        match self {
            Self::F32 => 4 * n,
            Self::F16 => 2 * n,
            Self::Q8_0 => n / Q8_0_BLOCK * (2 + Q8_0_BLOCK),
        }
    }
}

/// One tensor of the file: its llama.cpp name, its shape as PyTorch writes it (outermost first; the file stores
/// the reverse, ggml's `ne`), the type to store and the float32 values.
#[derive(Debug)]
pub struct GgufTensor {
    /// llama.cpp's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The type written.
    pub ggml_type: GgmlType,
    /// The values, any float kind (converted to float32 first).
    pub data: Tensor,
}

impl GgufTensor {
    /// A tensor to store as `ggml_type`; `Q8_0` needs rows whose length is a multiple of 32.
    pub fn new(name: impl Into<String>, data: Tensor, ggml_type: GgmlType) -> Result<Self> {
        let name = name.into();
        let shape = data.size();
        if ggml_type == GgmlType::Q8_0 && shape.last().is_none_or(|&w| !(w as usize).is_multiple_of(Q8_0_BLOCK)) {
            bail!("{name}: Q8_0 needs rows of a multiple of {Q8_0_BLOCK} values, the shape is {shape:?}");
        }
        Ok(Self { name, ggml_type, data })
    }

    fn numel(&self) -> usize {
        self.data.numel()
    }
}

/// A GGUF file being assembled: metadata in insertion order, then tensors in insertion order.
#[derive(Debug, Default)]
pub struct GgufFile {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensor>,
}

impl GgufFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: impl Into<String>, value: GgufValue) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// The value of metadata `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Appends a tensor; names must be unique.
    pub fn add_tensor(&mut self, tensor: GgufTensor) -> Result<()> {
        if self.tensors.iter().any(|t| t.name == tensor.name) {
            bail!("GGUF: tensor {} added twice", tensor.name);
        }
        self.tensors.push(tensor);
        Ok(())
    }

    /// The tensors added so far.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// Writes the file to `path` (through a temporary file renamed into place), showing progress per tensor.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("gguf.partial");
        let result = self.write_to(&tmp);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path).with_context(|| format!("{}: renaming {} over it", path.display(), tmp.display()))
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = Counter { inner: BufWriter::new(file), written: 0 };
        let err = |e: std::io::Error| anyhow!("{}: writing: {e}", path.display());
        w.write_all(MAGIC).map_err(err)?;
        w.write_all(&VERSION.to_le_bytes()).map_err(err)?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes()).map_err(err)?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes()).map_err(err)?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key).map_err(err)?;
            write_value(&mut w, value).map_err(err)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut w, &t.name).map_err(err)?;
            let shape = t.data.size();
            w.write_all(&(shape.len() as u32).to_le_bytes()).map_err(err)?;
            for d in shape.iter().rev() {
                w.write_all(&(*d as u64).to_le_bytes()).map_err(err)?;
            }
            w.write_all(&t.ggml_type.id().to_le_bytes()).map_err(err)?;
            w.write_all(&offset.to_le_bytes()).map_err(err)?;
            offset = align(offset + t.ggml_type.bytes(t.numel()) as u64);
        }
        pad(&mut w).map_err(err)?;
        let bar = ProgressBar::new(self.tensors.len() as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message("writing GGUF");
        for t in &self.tensors {
            let bytes = encode(&t.data, t.ggml_type).with_context(|| format!("GGUF tensor {}", t.name))?;
            w.write_all(&bytes).map_err(err)?;
            pad(&mut w).map_err(err)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        w.inner.flush().map_err(err)?;
        w.inner.get_ref().sync_all().map_err(err)
    }
}

/// A writer that counts the bytes written, for the alignment padding.
struct Counter {
    inner: BufWriter<File>,
    written: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn pad(w: &mut Counter) -> std::io::Result<()> {
    let n = align(w.written) - w.written;
    w.write_all(&vec![0u8; n as usize])
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// GGUF's value type numbers.
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;

fn write_value(w: &mut impl Write, v: &GgufValue) -> std::io::Result<()> {
    match v {
        GgufValue::U32(x) => {
            w.write_all(&T_UINT32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        GgufValue::I32(x) => {
            w.write_all(&T_INT32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        GgufValue::U64(x) => {
            w.write_all(&T_UINT64.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        GgufValue::F32(x) => {
            w.write_all(&T_FLOAT32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        GgufValue::Bool(x) => {
            w.write_all(&T_BOOL.to_le_bytes())?;
            w.write_all(&[*x as u8])
        }
        GgufValue::Str(s) => {
            w.write_all(&T_STRING.to_le_bytes())?;
            write_str(w, s)
        }
        GgufValue::StrArray(items) => {
            w.write_all(&T_ARRAY.to_le_bytes())?;
            w.write_all(&T_STRING.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        GgufValue::I32Array(items) => {
            w.write_all(&T_ARRAY.to_le_bytes())?;
            w.write_all(&T_INT32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

/// The tensor's bytes as `ty` stores them.
fn encode(data: &Tensor, ty: GgmlType) -> Result<Vec<u8>> {
    let values = data.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    let values = Vec::<f32>::try_from(&values).map_err(|e| anyhow!("reading the values: {e}"))?;
    Ok(match ty {
        GgmlType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
        GgmlType::Q8_0 => quantize_q8_0(&values),
    })
}

/// ggml's `quantize_row_q8_0_ref`: per block of 32 values, the scale `d = max|x| / 127` (stored as f16) and
/// `round(x / d)` as signed bytes, computed in float32 as `x · (1/d)` and rounded half away from zero.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GgmlType::Q8_0.bytes(values.len()));
    for block in values.chunks(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        // `f32::round` rounds half away from zero, as C's `roundf`.
        out.extend(block.iter().map(|x| ((x * id).round() as i8) as u8));
    }
    out
}
