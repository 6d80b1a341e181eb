//! Text encoders and their task heads, named as in `transformers`.
