//! Writing safetensors files and Hugging Face style model folders, atomically.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use safetensors::Dtype;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The safetensors dtype of a libtorch kind, or `None` for kinds safetensors has no name for (complex, quantised).
fn dtype_of_kind(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Float8e5m2 => Dtype::F8_E5M2,
        Kind::Float8e4m3fn => Dtype::F8_E4M3,
        _ => return None,
    })
}

/// One tensor as the safetensors writer sees it. The bytes are copied out (from the GPU if need be) only when
/// the writer asks for them, one tensor at a time, so saving needs no second copy of the whole model in memory.
struct TensorView<'a> {
    tensor: &'a Tensor,
    dtype: Dtype,
    kind: Kind,
    shape: Vec<usize>,
    numel: usize,
}

impl safetensors::View for TensorView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let cpu = self.tensor.to_device(Device::Cpu).contiguous();
        let mut bytes = vec![0u8; self.data_len()];
        // Cannot fail: the buffer has the exact size, the tensor is contiguous on the CPU and its kind was checked
        // when the view was made.
        cpu.copy_data_u8(&mut bytes, self.numel);
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.numel * self.kind.elt_size_in_bytes()
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sibling path for a temporary file, unique within this process and unlikely to clash across processes.
fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = format!(".{}.tmp-{}-{n}-{nanos}", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(tmp))
}

/// Removes the temporary file unless the write went through.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a file through `write` into a temporary sibling, flushes it to disk, then renames it over `path` and
/// flushes the folder, so that `path` holds either its old content or the complete new one, even after a crash.
fn replace_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!("{}: folder {} does not exist", path.display(), dir.display());
    }
    let tmp = temp_sibling(path)?;
    let mut guard = TempGuard(Some(tmp.clone()));
    write(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| anyhow!("{}: flushing to disk: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow!("{}: renaming {} over it: {e}", path.display(), tmp.display()))?;
    guard.0 = None;
    // The rename itself is only durable once the folder entry is on disk.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a reader (or a crash) sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_atomically(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| anyhow!("{}: cannot create: {e}", tmp.display()))?;
        f.write_all(bytes).map_err(|e| anyhow!("{}: writing: {e}", tmp.display()))?;
        Ok(())
    })
}

/// Saves named tensors (any device, any supported dtype, views allowed) as a safetensors file, atomically:
/// written to a temporary file in the same folder, flushed to disk, then renamed over `path`.
///
/// Names must be unique. Complex and quantised tensors are refused, naming the tensor.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            bail!("{}: tensor name {name:?} appears twice", path.display());
        }
        let kind = t.f_kind().map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))?;
        let dtype = dtype_of_kind(kind).ok_or_else(|| {
            anyhow!("{}: tensor {name} has kind {kind:?}, which safetensors cannot store", path.display())
        })?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let numel = shape.iter().product();
        views.push((name.as_str(), TensorView { tensor: t, dtype, kind, shape, numel }));
    }
    replace_atomically(path, |tmp| {
        safetensors::serialize_to_file(views, metadata.cloned(), tmp)
            .map_err(|e| anyhow!("{}: writing safetensors: {e}", tmp.display()))
    })
}

/// The variables of `vs` whose name passes `filter`, sorted by name, detached from autograd (they share storage
/// with the variables, so save them before the next optimizer step changes them).
pub fn varstore_tensors(vs: &VarStore, filter: impl Fn(&str) -> bool) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(n, _)| filter(n)).map(|(n, t)| (n, t.detach())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes a Hugging Face style model folder: `config.json` (pretty-printed) and `model.safetensors` (with the
/// `format: pt` metadata that transformers checks), each atomically. Creates `dir` if needed.
pub fn save_hub_layout(dir: &Path, config: &serde_json::Value, tensors: &[(String, Tensor)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create folder: {e}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(config).context("serialising config.json")?;
    text.push('\n');
    write_atomic(&dir.join("config.json"), text.as_bytes())?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&dir.join("model.safetensors"), tensors, Some(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::run_python;
    use crate::weights::{read_safetensors, read_safetensors_metadata};
    use tch::nn;

    fn sample() -> Vec<(String, Tensor)> {
        let base = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([4, 6]) / 7.0;
        vec![
            ("a.weight".into(), base.shallow_clone()),
            ("a.view".into(), base.slice(1, 1, 6, 2).transpose(0, 1)),
            ("b.half".into(), (base.narrow(0, 0, 2) * 1.5).to_kind(Kind::Half)),
            ("b.bf16".into(), Tensor::from_slice(&[1.25f32, -3.5, 1e-3]).to_kind(Kind::BFloat16)),
            ("c.ids".into(), Tensor::from_slice(&[0i64, -5, 1 << 40])),
            ("c.mask".into(), Tensor::from_slice(&[true, false, true])),
            ("c.scalar".into(), Tensor::from(2.5f64)),
            ("c.empty".into(), Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))),
        ]
    }

    #[test]
    fn round_trip_keeps_values_dtypes_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
        let tensors = sample();
        save_safetensors(&p, &tensors, Some(&meta)).unwrap();
        let back = read_safetensors(&p).unwrap();
        let mut want: Vec<&(String, Tensor)> = tensors.iter().collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back.len(), want.len());
        for ((n1, t1), (n2, t2)) in back.iter().zip(want) {
            assert_eq!(n1, n2);
            assert_eq!(t1.kind(), t2.kind(), "{n1}");
            assert_eq!(t1.size(), t2.size(), "{n1}");
            assert!(t1.equal(t2), "{n1}");
        }
        assert_eq!(read_safetensors_metadata(&p).unwrap(), meta);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn python_reads_what_we_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        save_safetensors(&p, &sample(), None).unwrap();
        // The reference rebuilds the same tensors in torch and compares them exactly with what safetensors loads.
        let code = r#"
import sys, torch
from safetensors.torch import load_file
got = load_file(sys.argv[1])
base = torch.arange(24, dtype=torch.float32).view(4, 6) / 7.0
want = {
    "a.weight": base, "a.view": base[:, 1:6:2].t(), "b.half": (base[:2] * 1.5).half(),
    "b.bf16": torch.tensor([1.25, -3.5, 1e-3]).bfloat16(), "c.ids": torch.tensor([0, -5, 1 << 40]),
    "c.mask": torch.tensor([True, False, True]), "c.scalar": torch.tensor(2.5, dtype=torch.float64),
    "c.empty": torch.zeros(0, 3),
}
assert sorted(got) == sorted(want), (sorted(got), sorted(want))
for k, v in want.items():
    assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k
print("ok", len(got))
"#;
        let out = run_python(code, &[p.to_str().unwrap()]).unwrap();
        assert_eq!(out.trim(), "ok 8");
    }

    #[test]
    fn refuses_duplicates_and_complex_without_touching_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        std::fs::write(&p, b"old").unwrap();
        let t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let dup = vec![("x".to_string(), t.shallow_clone()), ("x".to_string(), t.shallow_clone())];
        let err = save_safetensors(&p, &dup, None).unwrap_err().to_string();
        assert!(err.contains("\"x\" appears twice"), "{err}");
        let cplx = vec![("z".to_string(), Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu)))];
        let err = save_safetensors(&p, &cplx, None).unwrap_err().to_string();
        assert!(err.contains("tensor z has kind ComplexFloat"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let err = save_safetensors(&dir.path().join("no/such/t.safetensors"), &[], None).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn varstore_tensors_are_sorted_and_filtered() {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().sub("z").var("w", &[2], nn::Init::Const(1.0));
        let _ = vs.root().sub("a").var("w", &[3], nn::Init::Const(2.0));
        let _ = vs.root().sub("lora").var("a", &[1], nn::Init::Const(3.0));
        let all = varstore_tensors(&vs, |_| true);
        assert_eq!(all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a.w", "lora.a", "z.w"]);
        let lora = varstore_tensors(&vs, |n| n.starts_with("lora."));
        assert_eq!(lora.len(), 1);
        assert!(!lora[0].1.requires_grad());
        assert_eq!(lora[0].1.double_value(&[0]), 3.0);
    }

    #[test]
    fn hub_layout_is_readable_by_python() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let config = serde_json::json!({"model_type": "bert", "hidden_size": 4});
        let tensors = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))];
        save_hub_layout(&out, &config, &tensors).unwrap();
        let code = r#"
import sys, json, torch
from safetensors import safe_open
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
with safe_open(d + "/model.safetensors", "pt") as f:
    assert f.metadata() == {"format": "pt"}, f.metadata()
    w = f.get_tensor("w")
assert torch.equal(w, torch.tensor([1.0, 2.0]))
print(cfg["model_type"], cfg["hidden_size"])
"#;
        assert_eq!(run_python(code, &[out.to_str().unwrap()]).unwrap().trim(), "bert 4");
    }
}
