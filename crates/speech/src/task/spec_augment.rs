//! SpecAugment (Park et al. 2019): frequency and time masks on log-mel features during training.

use tch::{Device, Kind, Tensor};

/// Mask counts and widths. Widths are drawn uniformly from `0..=max`, positions uniformly where the mask fits;
/// masked values become 0, as transformers' Whisper `_mask_input_features` sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecAugment {
    /// Frequency masks per example.
    pub freq_masks: usize,
    /// Widest frequency mask, in mel bins.
    pub max_freq_width: i64,
    /// Time masks per example.
    pub time_masks: usize,
    /// Widest time mask, in frames (10 ms each).
    pub max_time_width: i64,
}

impl SpecAugment {
    /// The LD policy of the paper (F = 27, m_F = 2, T = 100, m_T = 2), the values Whisper fine-tuning recipes use.
    pub const LD: SpecAugment = SpecAugment { freq_masks: 2, max_freq_width: 27, time_masks: 2, max_time_width: 100 };

    /// Masks a batch `[b, n_mels, frames]`; time masks stay within each row's `audio_frames` (the padding after the
    /// audio carries nothing to hide). Draws come from torch's default generator, which the trainer reseeds every
    /// step, so a resumed run masks exactly as an uninterrupted one.
    pub fn apply(&self, mel: &Tensor, audio_frames: &[i64]) -> Tensor {
        let out = mel.to_device(Device::Cpu).copy();
        let size = out.size();
        let (n_mels, n_frames) = (size[1], size[2]);
        for (row, &frames) in audio_frames.iter().enumerate() {
            let x = out.get(row as i64);
            for _ in 0..self.freq_masks {
                let (start, width) = draw(self.max_freq_width.min(n_mels), n_mels);
                if width > 0 {
                    let _ = x.narrow(0, start, width).fill_(0.0);
                }
            }
            let frames = frames.clamp(0, n_frames);
            for _ in 0..self.time_masks {
                let (start, width) = draw(self.max_time_width.min(frames), frames);
                if width > 0 {
                    let _ = x.narrow(1, start, width).fill_(0.0);
                }
            }
        }
        out.to_device(mel.device())
    }
}

/// A width in `0..=max_width` and a start in `0..=extent - width`.
fn draw(max_width: i64, extent: i64) -> (i64, i64) {
    let uniform = |hi: i64| Tensor::randint(hi, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    if max_width <= 0 || extent <= 0 {
        return (0, 0);
    }
    let width = uniform(max_width + 1);
    let start = uniform(extent - width + 1);
    (start, width)
}
