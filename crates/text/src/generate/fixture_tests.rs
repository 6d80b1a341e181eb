//! The tiny random language models the generation tests share: `tests/py/tiny_lm.py` writes each in hub layout
//! (config.json, model.safetensors, generation_config.json, a byte-level BPE tokenizer.json and a ChatML
//! tokenizer_config.json), once per architecture and test binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use suite_core::python::run_python;

/// The fixture generator.
pub const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");

/// A tiny random model of `arch` (`llama`, `qwen2` or `gpt2`; 2 layers, hidden 32, vocabulary 384, context 128)
/// in hub layout. The folders are left in the system's temp folder when the binary exits.
pub fn tiny_lm(arch: &str) -> &'static Path {
    static DIRS: Mutex<BTreeMap<String, &'static Path>> = Mutex::new(BTreeMap::new());
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    dirs.entry(arch.to_string()).or_insert_with(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        run_python(TINY_LM, &[dir.to_str().unwrap(), "--arch", arch]).unwrap();
        Box::leak(dir.into_boxed_path())
    })
}

/// The tiny random Llama.
pub fn tiny_llama() -> &'static Path {
    tiny_lm("llama")
}
