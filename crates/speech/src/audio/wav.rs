//! WAV bytes out: the one writer of RIFF/WAVE files, for test fixtures and for `suite bench transcribe`'s joined
//! recording. Reading goes through symphonia ([`super::decode_file`]).

/// How a WAV file's samples are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavSpec {
    /// `1` = integer PCM, `3` = IEEE float.
    pub format: u16,
    /// Interleaved channels.
    pub channels: u16,
    /// Frames per second.
    pub rate: u32,
    /// Bits per sample.
    pub bits: u16,
}

impl WavSpec {
    /// 16-bit integer PCM.
    pub fn pcm16(channels: u16, rate: u32) -> Self {
        Self { format: 1, channels, rate, bits: 16 }
    }

    /// 32-bit IEEE float.
    pub fn float32(channels: u16, rate: u32) -> Self {
        Self { format: 3, channels, rate, bits: 32 }
    }
}

/// A RIFF/WAVE file with one `fmt ` and one `data` chunk holding `data`. `declared_data` overrides the size the
/// `data` chunk declares (the RIFF size agrees with it, as a writer that was cut short leaves them), so tests can
/// build truncated or lying files; arithmetic wraps rather than fails for the same reason.
pub fn wav_bytes(spec: WavSpec, data: &[u8], declared_data: Option<u32>) -> Vec<u8> {
    let block = spec.channels.wrapping_mul(spec.bits / 8);
    let declared = declared_data.unwrap_or(data.len() as u32);
    let mut b = Vec::with_capacity(44 + data.len());
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&36u32.saturating_add(declared).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&spec.format.to_le_bytes());
    b.extend_from_slice(&spec.channels.to_le_bytes());
    b.extend_from_slice(&spec.rate.to_le_bytes());
    b.extend_from_slice(&spec.rate.wrapping_mul(u32::from(block)).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&spec.bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&declared.to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// Samples in [-1, 1] (clamped) as little-endian 16-bit PCM, rounded to the nearest step of 1/32767.
pub fn pcm16(samples: impl IntoIterator<Item = f64>) -> Vec<u8> {
    samples.into_iter().flat_map(|x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_decodes_to_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let x: Vec<f64> = (0..1600).map(|i| 0.5 * (i as f64 * 0.05).sin()).collect();
        std::fs::write(&path, wav_bytes(WavSpec::pcm16(1, 16000), &pcm16(x.iter().copied()), None)).unwrap();
        let y = super::super::load_audio(&path).unwrap();
        assert_eq!(y.len(), x.len());
        let worst = x.iter().zip(&y).map(|(a, b)| (a - f64::from(*b)).abs()).fold(0.0, f64::max);
        assert!(worst < 1.0 / 32767.0, "16-bit rounding only, got {worst}");
    }
}
