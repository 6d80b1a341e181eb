//! Weight loading and saving: safetensors by name, torch pickles without code execution, and the hub.
//!
//! Models register their variables under the checkpoint's own dotted names, so loading is a matter of matching
//! names ([`load_named`], [`load_safetensors`], [`load_torch_pickle`] with [`LoadOptions`] for prefixes, new
//! heads and buffers to skip) and every load returns a [`LoadReport`]. Files come from a local folder or the
//! Hugging Face hub cache ([`resolve_model`]); torch `.pth` files are read by a restricted unpickler that refuses
//! any Python global outside a tensor-only allow-list ([`read_torch_pickle`]). Writes are atomic
//! ([`save_safetensors`], [`save_hub_layout`]), so an interrupted save never leaves a half-written checkpoint.

mod hub;
mod load;
mod pickle;
mod save;

pub use hub::{hub_cache_dir, resolve_model, resolve_model_with, HubSettings, ModelFiles, ModelSource};
pub use load::{
    load_named, load_named_each, load_named_from, load_safetensors, load_safetensors_each, load_torch_pickle,
    read_safetensors, read_safetensors_metadata, safetensors_index_shards, LoadOptions, LoadReport, Mismatch,
};
pub use pickle::read_torch_pickle;
pub use save::{save_hub_layout, save_safetensors, varstore_tensors, write_atomic};
