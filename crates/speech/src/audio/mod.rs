//! Audio in: decoding, downmixing, resampling to 16 kHz and Whisper log-mel features.
mod decode;
mod mel;
mod resample;
#[cfg(test)]
mod tests;

pub use decode::{decode_audio_bytes, decode_file, load_audio, Audio, TARGET_SAMPLE_RATE};
pub use mel::{windows, LogMel, MelConfig};
pub use resample::resample;
