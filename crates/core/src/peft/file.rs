//! The adapter file: `adapter.safetensors` with only the trained tensors (method and head), and metadata that
//! says which method, with which config, on which base model.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::config::PeftConfig;
use crate::weights::{read_safetensors, read_safetensors_metadata, save_safetensors};

/// Metadata keys of an adapter file.
const KEY_METHOD: &str = "suite.peft.method";
const KEY_CONFIG: &str = "suite.peft.config";
const KEY_BASE_ID: &str = "suite.peft.base_model";
const KEY_BASE_SUM: &str = "suite.peft.base_checksum";
const KEY_VERSION: &str = "suite.version";

/// Elements hashed per copy, so that hashing a large embedding needs no second full copy of it.
const CHUNK: i64 = 1 << 22;

/// SHA-256 (hex) over the variables of `vs` that `exclude` does not reject, in name order: each one's name, dtype,
/// shape and bytes. Deterministic across runs and devices; reads each tensor once, in chunks.
pub fn base_checksum(vs: &VarStore, exclude: &dyn Fn(&str) -> bool) -> String {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| !exclude(n)).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    tch::no_grad(|| {
        for (name, t) in &vars {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(format!("{:?}", t.kind()).as_bytes());
            let shape = t.size();
            h.update((shape.len() as u64).to_le_bytes());
            for d in &shape {
                h.update(d.to_le_bytes());
            }
            let flat = t.detach().reshape([-1]);
            let n = flat.size()[0];
            let elt = t.kind().elt_size_in_bytes();
            let mut start = 0;
            while start < n {
                let len = CHUNK.min(n - start);
                let part = flat.narrow(0, start, len).to_device(Device::Cpu).contiguous();
                let mut bytes = vec![0u8; len as usize * elt];
                part.copy_data_u8(&mut bytes, len as usize);
                h.update(&bytes);
                start += len;
            }
        }
    });
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `path` (atomically: a temporary file renamed into place) with every variable of `vs` that trains — the
/// method's tensors and the head — and metadata: method, config (JSON), base model id, base checksum, suite
/// version.
pub fn save_adapter(path: &Path, vs: &VarStore, cfg: &PeftConfig, base_id: &str, base_sum: &str) -> Result<()> {
    if matches!(cfg, PeftConfig::None) {
        bail!("{}: no PEFT method is active, so there is no adapter to save (save the full model)", path.display());
    }
    let mut tensors: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t.detach())).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    if tensors.is_empty() {
        bail!("{}: the model has no trained tensors: was apply_peft called?", path.display());
    }
    let config = serde_json::to_string(cfg).context("serialising the PEFT config")?;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (KEY_METHOD.to_string(), cfg.method_name().to_string()),
        (KEY_CONFIG.to_string(), config),
        (KEY_BASE_ID.to_string(), base_id.to_string()),
        (KEY_BASE_SUM.to_string(), base_sum.to_string()),
        (KEY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
    save_safetensors(path, &tensors, Some(&meta)).with_context(|| format!("saving adapter {}", path.display()))
}

/// An adapter file as read back.
#[derive(Debug)]
pub struct AdapterFile {
    /// The method and its settings.
    pub config: PeftConfig,
    /// The base model it was trained on (hub id or path, as the caller recorded it).
    pub base_id: String,
    /// [`base_checksum`] of that base model.
    pub base_checksum: String,
    /// The trained tensors, by name.
    pub tensors: Vec<(String, Tensor)>,
}

/// Reads an adapter file written by [`save_adapter`]; errors name the file and the missing or bad metadata key.
pub fn read_adapter(path: &Path) -> Result<AdapterFile> {
    let meta = read_safetensors_metadata(path)?;
    let get = |key: &str| {
        meta.get(key).cloned().ok_or_else(|| {
            anyhow!("{}: metadata key {key:?} is missing: not an adapter file written by suite", path.display())
        })
    };
    let text = get(KEY_CONFIG)?;
    let config: PeftConfig = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: metadata {KEY_CONFIG:?} is not a PEFT config ({e}): {text}", path.display()))?;
    let method = get(KEY_METHOD)?;
    if method != config.method_name() {
        bail!(
            "{}: metadata {KEY_METHOD:?} says {method:?} but the config is for {:?}",
            path.display(),
            config.method_name()
        );
    }
    config.validate().with_context(|| format!("{}: metadata {KEY_CONFIG:?}", path.display()))?;
    Ok(AdapterFile {
        config,
        base_id: get(KEY_BASE_ID)?,
        base_checksum: get(KEY_BASE_SUM)?,
        tensors: read_safetensors(path)?,
    })
}

/// Copies an adapter into a model that [`super::apply_peft`] prepared with the file's config on a freshly built
/// base (`base_sum` is that base's checksum, [`super::PeftReport::base_checksum`]).
///
/// Checks, in order: the base checksum (an adapter trained on another base is refused), the method and config
/// against `expected_config` when given, then that the file's tensors are exactly the model's trained tensors,
/// with the same shapes.
pub fn load_adapter(
    vs: &mut VarStore,
    file: &AdapterFile,
    expected_config: Option<&PeftConfig>,
    base_sum: &str,
) -> Result<()> {
    if file.base_checksum != base_sum {
        bail!(
            "adapter was trained on base {} (checksum {}), this model is a different base (checksum {base_sum}): \
             load the same base weights it was trained on",
            file.base_id,
            short(&file.base_checksum)
        );
    }
    if let Some(want) = expected_config {
        if want.method_name() != file.config.method_name() {
            bail!(
                "this is a {} adapter, but the model was set up for {}: apply_peft with the file's config first",
                file.config.method_name(),
                want.method_name()
            );
        }
        if want.canonical() != file.config.canonical() {
            bail!(
                "adapter config {} differs from the model's {}",
                serde_json::to_string(&file.config).unwrap_or_default(),
                serde_json::to_string(want).unwrap_or_default()
            );
        }
    }
    let vars = vs.variables();
    let mut trained: Vec<&String> = vars.iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
    trained.sort();
    let in_file: HashMap<&str, &Tensor> = file.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let missing: Vec<&str> = trained.iter().map(|n| n.as_str()).filter(|n| !in_file.contains_key(n)).collect();
    let extra: Vec<&str> = file
        .tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !vars.get(*n).is_some_and(|t| t.requires_grad()))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "adapter tensors do not fit the model: missing from the file [{}], not trained by the model [{}] \
             (was apply_peft called with the file's config on the right model?)",
            few(&missing),
            few(&extra)
        );
    }
    for (name, src) in &file.tensors {
        let dst = &vars[name];
        if dst.size() != src.size() {
            bail!("adapter tensor {name} has shape {:?}, the model's is {:?}", src.size(), dst.size());
        }
    }
    tch::no_grad(|| {
        for (name, src) in &file.tensors {
            let mut dst = vars[name].shallow_clone();
            dst.copy_(&src.to_device(dst.device()).to_kind(dst.kind()));
        }
    });
    Ok(())
}

fn short(sum: &str) -> &str {
    &sum[..sum.len().min(12)]
}

fn few(names: &[&str]) -> String {
    let mut s = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    s
}
