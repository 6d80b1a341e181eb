//! Speech manifests: JSONL/CSV, Hugging Face audiofolder and Common Voice TSV folders.
