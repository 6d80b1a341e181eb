//! What the decoder-only parity tests share: tiny random hub-layout models written by `tests/py/tiny_lm.py`, the
//! tensors a Python reference leaves next to them, and the comparison they all make.

use std::collections::HashMap;
use std::path::Path;

use suite_core::python::run_python;
use suite_core::weights::read_safetensors;
use tch::{Kind, Tensor};

/// The shared fixture generator.
pub const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");

/// Tolerance of every float32 comparison with transformers and of every layout identity.
pub const TOL: f64 = 1e-4;

/// Writes a tiny random model into `dir` with `tiny_lm.py` and `args` (`--arch gpt2 --random-all` …).
pub fn write_tiny_lm(dir: &Path, args: &[&str]) {
    let mut argv = vec![dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    run_python(TINY_LM, &argv).unwrap_or_else(|e| panic!("tiny_lm.py {args:?}: {e:#}"));
}

/// The tensors of `path` by name.
pub fn read_named(path: &Path) -> HashMap<String, Tensor> {
    read_safetensors(path).unwrap().into_iter().collect()
}

/// max |a − b| over every element (shapes must agree).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Next-token cross-entropy of `logits` `[b, len, vocab]` against `ids` `[b, len]` as transformers'
/// `ForCausalLMLoss` with `labels = ids` computes it (position t predicts id t + 1, mean over tokens).
pub fn shifted_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    let (len, v) = (logits.size()[1], logits.size()[2]);
    logits.narrow(1, 0, len - 1).reshape([-1, v]).cross_entropy_for_logits(&ids.narrow(1, 1, len - 1).reshape([-1]))
}

/// Prefix tuning (3 virtual tokens, projection 16) through peft on the case's model, with Rust's
/// `prefix_encoder.*` tensors from `argv[2]/prefix.safetensors`: logits, loss and the encoder's gradients.
pub const PEFT_PREFIX_REFERENCE: &str = r#"
import sys, warnings, torch
from transformers import AutoModelForCausalLM
from peft import PrefixTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
warnings.filterwarnings("ignore")
case_dir, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(case_dir, dtype=torch.float32)
cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16)
pm = get_peft_model(model, cfg)
enc = pm.prompt_encoder["default"]
ours = {k[len("prefix_encoder."):]: v for k, v in load_file(out + "/prefix.safetensors").items()}
enc.load_state_dict(ours, strict=True)
pm.eval()
ids = load_file(case_dir + "/ref.safetensors")["ids"]
o = pm(input_ids=ids, labels=ids)
o.loss.backward()
t = {"logits": o.logits.detach(), "loss": o.loss.detach().reshape(1)}
for n, p in enc.named_parameters():
    t["grad.prefix_encoder." + n] = p.grad
save_file({k: v.contiguous() for k, v in t.items()}, out + "/peft.safetensors")
print("ok")
"#;
