//! The tiny random language model the generation tests share: `tests/py/tiny_lm.py` writes it in hub layout
//! (config.json, model.safetensors, generation_config.json, a byte-level BPE tokenizer.json and a ChatML
//! tokenizer_config.json), once per test binary.

use std::path::Path;
use std::sync::OnceLock;

use suite_core::python::run_python;

/// The fixture generator, shared with the CLI tests.
pub const TINY_LM: &str = include_str!("../../../../tests/py/tiny_lm.py");

/// A tiny random Llama (2 layers, hidden 32, vocabulary 384, context 128) in hub layout. The folder is left in the
/// system's temp folder when the binary exits (statics are not dropped).
pub fn tiny_llama() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_python(TINY_LM, &[dir.path().to_str().unwrap(), "--arch", "llama"]).unwrap();
        dir
    })
    .path()
}
