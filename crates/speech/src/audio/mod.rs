//! Audio in: decoding, downmixing, resampling to 16 kHz and Whisper log-mel features.
