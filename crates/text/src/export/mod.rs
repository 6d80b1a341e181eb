//! Exporting fine-tuned decoder-only language models (full or PEFT, as SFT saves them) for other runtimes: a hub
//! folder with the adapter merged ([`export_hub`], for transformers), a peft adapter folder ([`export_peft`], for
//! `PeftModel.from_pretrained`), and one GGUF file ([`export_gguf`], for llama.cpp and Ollama).

mod gguf;
mod gguf_llama;
mod hub;
mod peft_folder;

#[cfg(test)]
mod tests;

pub use crate::models::LmCheckpoint;
pub use gguf::{quantize_q8_0, GgmlType, GgufFile, GgufTensor, GgufValue, ALIGNMENT, Q8_0_BLOCK};
pub use gguf_llama::{export_gguf, gguf_file, permute_rows, GgufType};
pub use hub::{export_hub, WeightDtype, LM_EXTRA_FILES};
pub use peft_folder::export_peft;
