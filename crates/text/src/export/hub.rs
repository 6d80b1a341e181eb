//! A fine-tuned causal LM as a plain hub folder that `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer`
//! load as they are: PEFT merged into the weights, transformers' tensor names, the base's config.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use suite_core::peft::PeftConfig;
use suite_core::weights::{save_hub_layout, write_atomic};
use tch::Kind;

use crate::models::copy_tokenizer_files;
use crate::models::LmCheckpoint;

/// Files that travel with a causal LM besides its weights and config, copied when they exist.
pub const LM_EXTRA_FILES: &[&str] = &["generation_config.json", "chat_template.jinja"];

/// The floating-point type of exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// IEEE single precision, as suite computes.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl WeightDtype {
    /// Parses `f32`/`float32`, `f16`/`float16`, `bf16`/`bfloat16`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Self::F32,
            "f16" | "float16" | "half" => Self::F16,
            "bf16" | "bfloat16" => Self::Bf16,
            _ => bail!("--dtype {text:?}: expected f32, f16 or bf16"),
        })
    }

    /// The tensor kind.
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::Bf16 => Kind::BFloat16,
        }
    }

    /// transformers' name of the type (`config.json`'s `dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }
}

/// Writes `ckpt` to `out` in hub layout: `config.json` (the base's, with `dtype` set), `model.safetensors`
/// (transformers' names, LoRA/DoRA/(IA)³ merged, in `dtype`), `generation_config.json` and the tokenizer files.
/// Methods that cannot be merged (prefix tuning, P-tuning v2, bottleneck adapters) are refused.
pub fn export_hub(ckpt: &LmCheckpoint, out: &Path, dtype: WeightDtype) -> Result<()> {
    let tensors = ckpt.checkpoint_weights().map_err(|e| match ckpt.peft {
        PeftConfig::Adapter(_) => anyhow!(
            "--format hub: {e}; bottleneck adapters have no equivalent in peft or transformers, so export the adapter \
             folder as it is (suite loads it)"
        ),
        _ => anyhow!("--format hub: {e}; export the adapter for peft with --format peft instead"),
    })?;
    let tensors: Vec<_> = tensors.into_iter().map(|(n, t)| (n, t.to_kind(dtype.kind()))).collect();
    let mut config = ckpt.config.clone();
    if let Value::Object(map) = &mut config {
        map.insert("dtype".into(), json!(dtype.torch_name()));
        if map.contains_key("torch_dtype") {
            map.insert("torch_dtype".into(), json!(dtype.torch_name()));
        }
    }
    save_hub_layout(out, &config, &tensors)?;
    copy_extra_files(ckpt, out)
}

/// Copies the tokenizer files and [`LM_EXTRA_FILES`] of the model (its own, else its base's) into `out`.
pub(crate) fn copy_extra_files(ckpt: &LmCheckpoint, out: &Path) -> Result<()> {
    let tokenizer_dir = ckpt.tokenizer_dir();
    if !tokenizer_dir.join("tokenizer.json").is_file() {
        bail!(
            "{}: no tokenizer.json (nor in the base model {}); the export needs the model's tokenizer",
            ckpt.dir.display(),
            ckpt.base_dir.display()
        );
    }
    copy_tokenizer_files(tokenizer_dir, out)?;
    for name in LM_EXTRA_FILES {
        let src = [&ckpt.dir, &ckpt.base_dir].into_iter().map(|d| d.join(name)).find(|p| p.is_file());
        if let Some(src) = src {
            let bytes = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
            write_atomic(&out.join(name), &bytes)?;
        }
    }
    Ok(())
}
