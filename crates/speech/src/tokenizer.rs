//! Whisper tokenizer: tokenizer.json plus the special tokens of the decoder prompt.
