//! Decoding every clip once, through the reader `suite finetune` uses, and measuring what the report needs: the
//! file's own rate and channels, the duration, silence and clipping, the WAV header's declared length, and a hash
//! of the 16 kHz mono samples the model is fed.

use std::hash::Hasher;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::audio::{decode_file, resample, TARGET_SAMPLE_RATE};

/// Frames of 20 ms at 16 kHz: the unit of the silence measure.
pub const SILENCE_FRAME: usize = 320;
/// RMS level below which a 20-ms frame counts as silent: −60 dBFS (full scale = 1.0).
pub const SILENCE_RMS: f64 = 1e-3;
/// A sample at or above this magnitude counts as clipped.
pub const CLIP_LEVEL: f32 = 0.999;

/// What was measured of one readable clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipAudio {
    /// The file's own sample rate (Hz).
    pub sample_rate: u32,
    /// The file's channels, before the downmix.
    pub channels: usize,
    /// Length of the decoded audio, in seconds.
    pub duration_s: f64,
    /// Share of 20-ms frames of the 16 kHz signal whose RMS is below −60 dBFS.
    pub silence: f64,
    /// Share of the mono samples (at the file's rate, before resampling, whose filter rings past full scale)
    /// with |x| ≥ 0.999.
    pub clipping: f64,
    /// The largest |x| of those samples.
    pub peak: f32,
    /// Length the WAV header declares (data chunk size / frame size), when the file is a WAV that says.
    pub declared_s: Option<f64>,
    /// 128-bit hash of the 16 kHz mono `f32` samples, as the model sees them (a WAV and its FLAC copy agree).
    pub hash: u128,
}

/// Decodes `path` with [`decode_file`], resamples to 16 kHz as [`crate::audio::load_audio`] does, and measures
/// it. The error is the reader's own message (what `suite finetune` would stop with).
pub fn scan_clip(path: &Path) -> Result<ClipAudio> {
    let audio = decode_file(path)?;
    let at_16k = resample(&audio.samples, audio.sample_rate, TARGET_SAMPLE_RATE)
        .with_context(|| format!("{}: resampling {} Hz to 16 kHz", path.display(), audio.sample_rate))?;
    let (clipping, peak) = clipping(&audio.samples);
    Ok(ClipAudio {
        sample_rate: audio.sample_rate,
        channels: audio.channels,
        duration_s: audio.duration_s,
        silence: silence_fraction(&at_16k),
        clipping,
        peak,
        declared_s: declared_wav_seconds(path),
        hash: samples_hash(&at_16k),
    })
}

/// Share of 20-ms frames (320 samples at 16 kHz; a final partial frame counts as a frame) whose RMS is below
/// −60 dBFS. An empty signal is all silence.
pub fn silence_fraction(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 1.0;
    }
    let frames = samples.chunks(SILENCE_FRAME);
    let n = frames.len();
    let silent = frames
        .filter(|f| {
            let ms = f.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / f.len() as f64;
            ms.sqrt() < SILENCE_RMS
        })
        .count();
    silent as f64 / n as f64
}

/// `(share of samples with |x| ≥ 0.999, peak |x|)`.
pub fn clipping(samples: &[f32]) -> (f64, f32) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let clipped = samples.iter().filter(|x| x.abs() >= CLIP_LEVEL).count();
    let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    (clipped as f64 / samples.len() as f64, peak)
}

/// Two SipHash passes with different prefixes over the samples' bit patterns: 128 bits, so that unrelated clips
/// colliding is out of the question for any data set size. Only compared within one process.
pub fn samples_hash(samples: &[f32]) -> u128 {
    let mut bytes = Vec::with_capacity(samples.len() * 4);
    for x in samples {
        bytes.extend_from_slice(&x.to_bits().to_le_bytes());
    }
    let half = |prefix: u8| {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u8(prefix);
        h.write_usize(samples.len());
        h.write(&bytes);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// The length a RIFF/WAVE header declares (its `data` chunk size over the frame size of its `fmt ` chunk), read
/// from the file's first 64 KB; `None` for other formats and for streaming headers (size 0 or 0xFFFFFFFF, which
/// mean "unknown").
pub fn declared_wav_seconds(path: &Path) -> Option<f64> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(65_536).read_to_end(&mut head).ok()?;
    declared_wav_seconds_of(&head)
}

/// [`declared_wav_seconds`] of a file's first bytes.
pub fn declared_wav_seconds_of(bytes: &[u8]) -> Option<f64> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (mut rate, mut block) = (None, None);
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(at + 4)?;
        let body = at + 8;
        if id == b"fmt " {
            rate = u32_at(body + 4);
            block = u16_at(body + 12);
        } else if id == b"data" {
            let (rate, block) = (rate?, block?);
            if size == 0 || size == u32::MAX || rate == 0 || block == 0 {
                return None;
            }
            return Some(f64::from(size / u32::from(block)) / f64::from(rate));
        }
        at = body.checked_add(size as usize)?.checked_add(size as usize & 1)?;
    }
    None
}

/// [`scan_clip`] of every path on up to `threads` threads; `progress(done)` is called after each clip. Results
/// are in the order of `paths`; an unreadable clip is its error's one-line message.
pub fn scan_all(
    paths: &[&Path],
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Vec<std::result::Result<ClipAudio, String>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<std::result::Result<ClipAudio, String>>>> = Mutex::new(vec![None; paths.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, paths.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                // The reader already names the file; only the reason is kept (the table has a path column).
                let r = scan_clip(path).map_err(|e| reason(&format!("{e:#}"), path));
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not decoded".into())))
        .collect()
}

/// The reader's error without the leading `path: ` (the report's table shows the path beside it), on one line.
fn reason(message: &str, path: &Path) -> String {
    let shown = format!("{}: ", path.display());
    let m = message.strip_prefix(&shown).unwrap_or(message);
    m.replace(&shown, "").lines().collect::<Vec<_>>().join(" ")
}
