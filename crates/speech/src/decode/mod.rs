//! Decoding: greedy and beam search, language detection and long-form windows.
