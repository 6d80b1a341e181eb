//! Weight loading and saving: safetensors by name, torch pickles without code execution, and the hub.
