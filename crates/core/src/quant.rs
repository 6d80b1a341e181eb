//! Dynamic int8 quantization of linear layers, as PyTorch's `torch.ao.quantization.quantize_dynamic`: each weight
//! is quantized once to int8 (symmetric, per output channel by default, or per tensor as PyTorch's default
//! qconfig) and prepacked for libtorch's int8 GEMM (`quantized::linear_prepack`); every call quantizes its
//! activations on the fly and runs `quantized::linear_dynamic` (csrc/quant.cpp). No integer GEMM of our own.
//!
//! Convolutions, embeddings and norms stay fp32, as in PyTorch's dynamic quantization; CPU only (libtorch's
//! quantized kernels are CPU kernels).

use std::ffi::{c_char, c_int, c_void, CStr};

use anyhow::{anyhow, bail, Result};
use tch::{Device, Kind, Tensor};

use crate::nn::{LayerVisitor, Linear, VisitLayers};

extern "C" {
    fn suite_qlinear_prepack(
        w: *mut c_void,
        scales: *mut c_void,
        b: *mut c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        n: c_int,
    ) -> c_int;
    fn suite_qlinear_dynamic(
        packed: *mut c_void,
        x: *mut c_void,
        reduce_range: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        n: c_int,
    ) -> c_int;
    fn suite_qlinear_unpack(
        packed: *mut c_void,
        w: *mut *mut c_void,
        b: *mut *mut c_void,
        err: *mut c_char,
        n: c_int,
    ) -> c_int;
    fn suite_qlinear_free(packed: *mut c_void);
}

fn call(f: impl FnOnce(*mut c_char, c_int) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len() as c_int) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated message into the buffer.
    Err(anyhow!("{}", unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy()))
}

/// How weights get their int8 scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightScheme {
    /// One scale per output row (`per_channel_dynamic_qconfig`; what CTranslate2's int8 does too).
    #[default]
    PerChannel,
    /// One scale for the whole weight (`default_dynamic_qconfig`, PyTorch's default).
    PerTensor,
}

/// The int8 scales of `weight` [out, in], as PyTorch's symmetric weight observers compute them:
/// `max(|min|, |max|) / 127.5` (never below fp32's epsilon) per row, or one for the whole tensor; zero points are 0.
pub fn weight_scales(weight: &Tensor, scheme: WeightScheme) -> Tensor {
    let w = weight.detach().to_device(Device::Cpu).to_kind(Kind::Float);
    let amax = match scheme {
        WeightScheme::PerTensor => w.abs().max().view([1]),
        WeightScheme::PerChannel => w.abs().amax([1].as_slice(), false),
    };
    // fp32 arithmetic as the observers, then double as `quantize_per_channel` takes it.
    (amax / 127.5).clamp_min(f64::from(f32::EPSILON)).to_kind(Kind::Double)
}

/// A linear layer's weight and bias, quantized and prepacked for libtorch's int8 GEMM.
pub struct QuantizedLinear {
    handle: *mut c_void,
    in_features: i64,
    out_features: i64,
    /// Quantize activations to 7 bits instead of 8.
    pub reduce_range: bool,
}

/// Whether activations need 7-bit quantization on this CPU. Without VNNI, fbgemm's u8×s8 products are summed in
/// pairs into saturating 16-bit lanes, which 8-bit activations can overflow; PyTorch's dynamic Linear therefore
/// always passes `reduce_range=True`. With VNNI (`vpdpbusd` accumulates in 32 bits) nothing saturates and the 8th
/// bit is free accuracy: on the fortunes4 classifier it is the difference between −3.3 and −0.7 points.
pub fn needs_reduce_range() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !*VNNI.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| {
                c.lines()
                    .filter(|l| l.starts_with("flags"))
                    .any(|l| l.contains("avx512_vnni") || l.contains("avx_vnni"))
            })
            .unwrap_or(false)
    })
}

// SAFETY: the packed weight is an immutable TorchBind object after packing; libtorch's int8 GEMM reads it from any
// thread.
unsafe impl Send for QuantizedLinear {}
// SAFETY: as above: `forward` never mutates it.
unsafe impl Sync for QuantizedLinear {}

impl std::fmt::Debug for QuantizedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantizedLinear(in={}, out={}, int8)", self.in_features, self.out_features)
    }
}

impl Drop for QuantizedLinear {
    fn drop(&mut self) {
        // SAFETY: created by suite_qlinear_prepack and freed once.
        unsafe { suite_qlinear_free(self.handle) }
    }
}

impl QuantizedLinear {
    /// Quantizes and packs `weight` [out, in] and `bias` [out].
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, scheme: WeightScheme) -> Result<Self> {
        let size = weight.size();
        if size.len() != 2 {
            bail!("int8 linear: the weight must be 2-D, got {size:?}");
        }
        let mut w = weight.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let mut scales = weight_scales(&w, scheme);
        let mut b = bias.map(|b| b.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous());
        let mut handle = std::ptr::null_mut();
        let bptr = b.as_mut().map_or(std::ptr::null_mut(), |b| b.as_mut_ptr().cast());
        call(|e, n| unsafe {
            suite_qlinear_prepack(w.as_mut_ptr().cast(), scales.as_mut_ptr().cast(), bptr, &mut handle, e, n)
        })?;
        Ok(Self { handle, in_features: size[1], out_features: size[0], reduce_range: needs_reduce_range() })
    }

    /// `x·Wᵀ + b` with int8 weights and activations quantized per call (to 7 bits with `reduce_range`, see
    /// [`needs_reduce_range`]); `x` is fp32 on the CPU with `in_features` last.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = if x.kind() == Kind::Float { x.shallow_clone() } else { x.to_kind(Kind::Float) };
        let mut out = std::ptr::null_mut();
        call(|e, n| unsafe {
            suite_qlinear_dynamic(self.handle, x.as_mut_ptr().cast(), c_int::from(self.reduce_range), &mut out, e, n)
        })?;
        // SAFETY: the shim returns a new at::Tensor* that this Tensor now owns.
        Ok(unsafe { Tensor::from_ptr(out.cast()) })
    }

    /// The int8 weight (a quantized tensor) and the fp32 bias, as packed.
    pub fn unpack(&self) -> Result<(Tensor, Option<Tensor>)> {
        let (mut w, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
        call(|e, n| unsafe { suite_qlinear_unpack(self.handle, &mut w, &mut b, e, n) })?;
        // SAFETY: new at::Tensor* owned from here on; the bias may be absent.
        let w = unsafe { Tensor::from_ptr(w.cast()) };
        let b = (!b.is_null()).then(|| unsafe { Tensor::from_ptr(b.cast()) });
        Ok((w, b))
    }

    /// Input width.
    pub fn in_features(&self) -> i64 {
        self.in_features
    }

    /// Output width.
    pub fn out_features(&self) -> i64 {
        self.out_features
    }
}

/// What [`quantize_dynamic`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QuantSummary {
    /// Linear layers now int8.
    pub layers: usize,
    /// Their weight elements.
    pub weights: i64,
    /// Bytes of those weights in fp32 and in int8 (plus scales).
    pub fp32_bytes: i64,
    /// Bytes of the int8 weights and their scales.
    pub int8_bytes: i64,
}

/// Quantizes every linear layer of `model` (those its [`VisitLayers`] shows, adapters kept on top) for int8
/// inference on the CPU. The fp32 weights stay in the model's VarStore; the layers stop reading them.
pub fn quantize_dynamic(model: &mut dyn VisitLayers, scheme: WeightScheme) -> Result<QuantSummary> {
    let mut q = Quantize { scheme, only: None, summary: QuantSummary::default(), error: None };
    model.visit_layers(&mut q);
    match q.error {
        Some(e) => Err(e),
        None => Ok(q.summary),
    }
}

/// Quantization while a model loads: [`loaded`](Self::loaded), called with each variable's name as the loader
/// fills it (`weights::load_named_each`), quantizes a linear layer as soon as its weight and bias are in and
/// releases its fp32 weight, so that the whole fp32 model never exists at once (loading then
/// [`quantize_dynamic`] peaks at the fp32 model's size). [`finish`](Self::finish) quantizes whatever a name did
/// not reach (a weight that is a view of another variable) and sums up.
pub struct LoadQuantizer {
    scheme: WeightScheme,
    filled: std::collections::HashSet<String>,
    summary: QuantSummary,
}

impl LoadQuantizer {
    /// A quantizer for one load.
    pub fn new(scheme: WeightScheme) -> Self {
        Self { scheme, filled: Default::default(), summary: QuantSummary::default() }
    }

    /// Records that variable `name` holds its values; quantizes the layer it completes, if any.
    pub fn loaded(&mut self, model: &mut dyn VisitLayers, name: &str) -> Result<()> {
        let Some(layer) = name.strip_suffix(".weight").or_else(|| name.strip_suffix(".bias")) else {
            return Ok(());
        };
        self.filled.insert(name.to_string());
        let complete = |has_bias: bool| {
            self.filled.contains(&format!("{layer}.weight"))
                && (!has_bias || self.filled.contains(&format!("{layer}.bias")))
        };
        let mut q = Quantize {
            scheme: self.scheme,
            only: Some((layer, &complete)),
            summary: QuantSummary::default(),
            error: None,
        };
        model.visit_layers(&mut q);
        if let Some(e) = q.error {
            return Err(e);
        }
        self.summary.add(&q.summary);
        Ok(())
    }

    /// What was quantized so far.
    pub fn summary(&self) -> &QuantSummary {
        &self.summary
    }

    /// Quantizes the layers not quantized during the load and returns what was done in all.
    pub fn finish(mut self, model: &mut dyn VisitLayers) -> Result<QuantSummary> {
        let rest = quantize_dynamic(model, self.scheme)?;
        self.summary.add(&rest);
        Ok(self.summary)
    }
}

impl QuantSummary {
    fn add(&mut self, other: &QuantSummary) {
        self.layers += other.layers;
        self.weights += other.weights;
        self.fp32_bytes += other.fp32_bytes;
        self.int8_bytes += other.int8_bytes;
    }
}

/// The visitor of [`quantize_dynamic`] and [`LoadQuantizer`]: quantizes every linear layer, or with `only` the
/// one of that name once the predicate (given whether it has a bias) says its variables are all loaded.
struct Quantize<'a> {
    scheme: WeightScheme,
    only: Option<(&'a str, &'a dyn Fn(bool) -> bool)>,
    summary: QuantSummary,
    error: Option<anyhow::Error>,
}

impl LayerVisitor for Quantize<'_> {
    fn linear(&mut self, layer: &mut Linear) {
        if self.error.is_some() || layer.quantized.is_some() {
            return;
        }
        if let Some((name, complete)) = self.only {
            if layer.name != name || !complete(layer.bias.is_some()) {
                return;
            }
        }
        if layer.weight.device() != Device::Cpu {
            self.error =
                Some(anyhow!("int8 inference runs on the CPU; {} is on {:?}", layer.name, layer.weight.device()));
            return;
        }
        match QuantizedLinear::new(&layer.weight, layer.bias.as_ref(), self.scheme) {
            Ok(q) => {
                let n = layer.weight.numel() as i64;
                let rows = layer.weight.size()[0];
                self.summary.layers += 1;
                self.summary.weights += n;
                self.summary.fp32_bytes += 4 * n;
                self.summary.int8_bytes += n + 8 * rows;
                layer.quantized = Some(std::sync::Arc::new(q));
                // The packed int8 copy is all the layer reads from now on: the fp32 weight's memory goes back
                // (its tensor, shared with the VarStore, becomes empty), layer by layer, so that an int8
                // model holds a quarter of its linear weights. DoRA reads the base weight at every call, so a
                // layer with adapters keeps it; so does a weight that is a view (GPT-2's transposed Conv1D),
                // whose storage its base variable owns.
                if layer.adapters.is_empty() && layer.weight.is_contiguous() {
                    let empty = Tensor::empty([0], (layer.weight.kind(), Device::Cpu));
                    layer.weight.set_data(&empty);
                }
            }
            Err(e) => self.error = Some(e.context(format!("quantizing {}", layer.name))),
        }
    }
}

#[cfg(test)]
#[path = "quant_tests.rs"]
mod tests;
