//! Whisper's log-mel spectrogram, as transformers' `WhisperFeatureExtractor` computes it (its NumPy path:
//! `audio_utils.spectrogram` + `mel_filter_bank(norm="slaney", mel_scale="slaney")`).
//!
//! Everything up to the final cast runs in f64, as the NumPy path does, so the result matches it to float32
//! rounding rather than to the ~1e-5 of a float32 STFT.

use tch::{Device, Kind, Tensor};

/// The parameters of the log-mel front end.
#[derive(Debug, Clone, PartialEq)]
pub struct MelConfig {
    /// Number of mel bins: 80 (Whisper tiny … large-v2) or 128 (large-v3).
    pub n_mels: i64,
    /// FFT size and window length (400 = 25 ms at 16 kHz).
    pub n_fft: i64,
    /// Hop between frames (160 = 10 ms at 16 kHz).
    pub hop_length: i64,
    /// Sample rate of the input; the filters span 0 … sample_rate / 2.
    pub sample_rate: u32,
    /// Input is zero-padded or cut to this many samples (480 000 = 30 s).
    pub n_samples: usize,
}

impl MelConfig {
    /// Whisper's front end with `n_mels` bins (the checkpoint's `num_mel_bins`).
    pub fn whisper(n_mels: i64) -> Self {
        MelConfig { n_mels, n_fft: 400, hop_length: 160, sample_rate: 16_000, n_samples: 480_000 }
    }

    /// Frames per window after dropping the STFT's last frame (3000 for Whisper).
    pub fn n_frames(&self) -> i64 {
        self.n_samples as i64 / self.hop_length
    }
}

/// A log-mel extractor: the filter bank and window are built once and reused for every input.
#[derive(Debug)]
pub struct LogMel {
    cfg: MelConfig,
    /// [n_mels, n_fft/2 + 1], f64.
    filters: Tensor,
    /// Periodic Hann window of n_fft points, f64.
    window: Tensor,
}

impl LogMel {
    /// Builds the Slaney mel filter bank and the Hann window for `cfg`.
    pub fn new(cfg: MelConfig) -> Self {
        let n_freq = (cfg.n_fft / 2 + 1) as usize;
        let bank = mel_filter_bank(n_freq, cfg.n_mels as usize, 0.0, cfg.sample_rate as f64 / 2.0, cfg.sample_rate);
        let filters = Tensor::from_slice(&bank).view([cfg.n_mels, n_freq as i64]);
        let n = cfg.n_fft as usize;
        // np.hanning(n + 1)[:-1]: the periodic window.
        let hann: Vec<f64> =
            (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect();
        LogMel { cfg, filters, window: Tensor::from_slice(&hann) }
    }

    /// The configuration this extractor was built with.
    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// The mel filter bank, [n_mels, n_fft/2 + 1] f64 (transformers' `mel_filters.T`).
    pub fn filters(&self) -> &Tensor {
        &self.filters
    }

    /// One 30-s window → [n_mels, 3000] Float on CPU. Shorter input is zero-padded, longer is cut.
    pub fn features(&self, samples: &[f32]) -> Tensor {
        self.batch(&[samples]).squeeze_dim(0)
    }

    /// Batch of windows → [b, n_mels, 3000] Float on CPU; each window is scaled by its own maximum, as the
    /// feature extractor does per example.
    pub fn batch(&self, windows: &[&[f32]]) -> Tensor {
        let n = self.cfg.n_samples;
        if windows.is_empty() {
            return Tensor::zeros([0, self.cfg.n_mels, self.cfg.n_frames()], (Kind::Float, Device::Cpu));
        }
        let mut padded = vec![0f64; n * windows.len()];
        for (row, w) in padded.chunks_exact_mut(n).zip(windows) {
            for (dst, src) in row.iter_mut().zip(w.iter()) {
                *dst = *src as f64;
            }
        }
        let x = Tensor::from_slice(&padded).view([windows.len() as i64, n as i64]);
        // center=True with reflect padding, done here: libtorch's `stft` rejects the `align_to_window` flag that the
        // tch binding always passes when it also centres.
        let pad = self.cfg.n_fft / 2;
        let x = x.reflection_pad1d([pad, pad]);
        let spec =
            x.stft(self.cfg.n_fft, self.cfg.hop_length, self.cfg.n_fft, Some(&self.window), false, true, true, false);
        // |X|² of every frame but the last, which Whisper drops.
        let power = spec.abs().square().narrow(2, 0, self.cfg.n_frames());
        let mel = self.filters.matmul(&power).clamp_min(1e-10).log10();
        let max = mel.amax([1, 2], true);
        let floored = mel.maximum(&(max - 8.0));
        ((floored + 4.0) / 4.0).to_kind(Kind::Float)
    }
}

impl LogMel {
    /// Log-mel of a whole recording for long-form transcription, as faster-whisper's `FeatureExtractor` (and,
    /// but for the length of the zero padding, openai-whisper's `log_mel_spectrogram`) computes it: 160 zero
    /// samples appended, frames every hop, the STFT's last frame dropped, and one maximum for the whole recording
    /// (not per window). Returns `[n_mels, len / hop + 1]` Float on CPU; the last frame is padding, so the
    /// content is the first `len / hop` frames.
    ///
    /// Computed in blocks of one window of frames, so memory stays bounded on hour-long audio.
    pub fn recording(&self, samples: &[f32]) -> Tensor {
        let hop = self.cfg.hop_length as usize;
        let n_fft = self.cfg.n_fft as usize;
        let mut x: Vec<f64> = samples.iter().map(|&v| v as f64).collect();
        x.extend(std::iter::repeat_n(0.0, hop));
        let padded = reflect_pad(&x, n_fft / 2);
        // Frames of a centred STFT, minus the last.
        let frames = x.len() / hop;
        let block = self.cfg.n_frames().max(1) as usize;
        let mut parts = Vec::new();
        let mut f0 = 0;
        while f0 < frames {
            let f1 = (f0 + block).min(frames);
            let piece = &padded[f0 * hop..(f1 - 1) * hop + n_fft];
            let t = Tensor::from_slice(piece).unsqueeze(0);
            let spec = t.stft(
                self.cfg.n_fft,
                self.cfg.hop_length,
                self.cfg.n_fft,
                Some(&self.window),
                false,
                true,
                true,
                false,
            );
            let power = spec.abs().square().squeeze_dim(0);
            parts.push(self.filters.matmul(&power).clamp_min(1e-10).log10());
            f0 = f1;
        }
        if parts.is_empty() {
            return Tensor::zeros([self.cfg.n_mels, 0], (Kind::Float, Device::Cpu));
        }
        let mel = Tensor::cat(&parts, 1);
        let max = mel.max();
        let floored = mel.maximum(&(max - 8.0));
        ((floored + 4.0) / 4.0).to_kind(Kind::Float)
    }

    /// The window of `recording` features `[n_mels, frames]` that starts at frame `start` and spans `len` frames,
    /// zero-padded to the model's window (3000 frames), as faster-whisper's and openai-whisper's `pad_or_trim`
    /// pad the features (with 0, not with the log-mel of silence).
    pub fn window_at(&self, recording: &Tensor, start: i64, len: i64) -> Tensor {
        let n = self.cfg.n_frames();
        let len = len.min(n).max(0);
        let piece = recording.narrow(1, start, len);
        if len == n {
            return piece.contiguous();
        }
        piece.constant_pad_nd([0, n - len])
    }
}

/// `np.pad(x, pad, mode="reflect")`: mirrored about the first and last samples (repeatedly, when `x` is shorter
/// than `pad`).
fn reflect_pad(x: &[f64], pad: usize) -> Vec<f64> {
    let n = x.len() as i64;
    if n <= 1 {
        return vec![x.first().copied().unwrap_or(0.0); x.len() + 2 * pad];
    }
    let period = 2 * (n - 1);
    (-(pad as i64)..n + pad as i64)
        .map(|i| {
            let m = i.rem_euclid(period);
            x[(if m < n { m } else { period - m }) as usize]
        })
        .collect()
}

/// Splits long audio into consecutive windows of `window` samples (the last one may be short). A `window` of 0
/// yields the whole input as one window.
pub fn windows(samples: &[f32], window: usize) -> Vec<&[f32]> {
    if window == 0 {
        return if samples.is_empty() { Vec::new() } else { vec![samples] };
    }
    samples.chunks(window).collect()
}

fn hertz_to_mel_slaney(hz: f64) -> f64 {
    let logstep = 27.0 / 6.4f64.ln();
    if hz >= 1000.0 {
        15.0 + (hz / 1000.0).ln() * logstep
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hertz_slaney(mel: f64) -> f64 {
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= 15.0 {
        1000.0 * (logstep * (mel - 15.0)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// `np.linspace(start, stop, num)`: `start + i·step`, with the last point exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// Slaney-scale, Slaney-normalised triangular filters (transformers' `mel_filter_bank`), row-major
/// [n_mels, n_freq].
fn mel_filter_bank(n_freq: usize, n_mels: usize, f_min: f64, f_max: f64, sample_rate: u32) -> Vec<f64> {
    let mel_points = linspace(hertz_to_mel_slaney(f_min), hertz_to_mel_slaney(f_max), n_mels + 2);
    let filter_freqs: Vec<f64> = mel_points.iter().map(|&m| mel_to_hertz_slaney(m)).collect();
    let fft_freqs = linspace(0.0, (sample_rate / 2) as f64, n_freq);
    let diff: Vec<f64> = filter_freqs.windows(2).map(|w| w[1] - w[0]).collect();
    let mut bank = vec![0f64; n_mels * n_freq];
    for m in 0..n_mels {
        let enorm = 2.0 / (filter_freqs[m + 2] - filter_freqs[m]);
        for (f, &freq) in fft_freqs.iter().enumerate() {
            let down = -(filter_freqs[m] - freq) / diff[m];
            let up = (filter_freqs[m + 2] - freq) / diff[m + 1];
            bank[m * n_freq + f] = 0f64.max(down.min(up)) * enorm;
        }
    }
    bank
}
