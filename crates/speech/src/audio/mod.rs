//! Audio in: decoding, downmixing, resampling to 16 kHz and Whisper log-mel features.
mod decode;
mod mel;
mod resample;
#[cfg(test)]
mod tests;
mod wav;

pub use decode::{check_decodable, decode_audio_bytes, decode_file, load_audio, probe_file, Audio, TARGET_SAMPLE_RATE};
pub use mel::{windows, LogMel, MelConfig};
pub use resample::resample;
pub use wav::{pcm16, wav_bytes, WavSpec};
