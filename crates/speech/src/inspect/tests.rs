//! Unit tests of the measures behind `suite inspect speech` (the end-to-end checks are in tests/inspect_speech_cli.rs).

use super::scan::{clipping, declared_wav_seconds_of, samples_hash, scan_clip, silence_fraction};
use super::transcripts::changed_chars;

/// A 16-bit PCM WAV of interleaved samples; `data_size` overrides the data chunk's declared size.
fn wav(channels: u16, rate: u32, samples: &[i16], data_size: Option<u32>) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    crate::audio::wav_bytes(crate::audio::WavSpec::pcm16(channels, rate), &data, data_size)
}

#[test]
fn silence_counts_20ms_frames_under_minus_60_dbfs() {
    // 10 frames of 320 samples: 3 at RMS 1e-4 (−80 dBFS), 7 at RMS 0.1.
    let mut x = vec![1e-4f32; 3 * 320];
    x.extend(vec![0.1f32; 7 * 320]);
    assert!((silence_fraction(&x) - 0.3).abs() < 1e-12);
    // Just above the threshold is not silence; a trailing partial frame counts as one frame.
    let mut y = vec![2e-3f32; 320];
    y.extend(vec![0.0f32; 10]);
    assert!((silence_fraction(&y) - 0.5).abs() < 1e-12);
    assert_eq!(silence_fraction(&[]), 1.0);
}

#[test]
fn clipping_is_the_share_of_full_scale_samples() {
    let x = [0.5f32, -1.0, 0.9995, 0.2, -0.3, 1.2, 0.0, 0.998];
    let (share, peak) = clipping(&x);
    assert!((share - 3.0 / 8.0).abs() < 1e-12);
    assert_eq!(peak, 1.2);
    assert_eq!(clipping(&[]), (0.0, 0.0));
}

#[test]
fn the_samples_hash_tells_apart_any_change() {
    let a: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
    let mut b = a.clone();
    assert_eq!(samples_hash(&a), samples_hash(&b));
    b[500] = f32::from_bits(b[500].to_bits() ^ 1);
    assert_ne!(samples_hash(&a), samples_hash(&b));
    // A prefix is not the whole (the length is hashed too).
    assert_ne!(samples_hash(&a[..999]), samples_hash(&a));
}

#[test]
fn the_declared_wav_length_comes_from_the_data_chunk() {
    let samples = vec![0i16; 2 * 8000];
    // 8000 stereo frames at 16 kHz: 0.5 s.
    assert_eq!(declared_wav_seconds_of(&wav(2, 16_000, &samples, None)), Some(0.5));
    // A header that claims twice the data it holds declares 1 s.
    assert_eq!(declared_wav_seconds_of(&wav(2, 16_000, &samples, Some(64_000))), Some(1.0));
    // Streaming headers (unknown size) and other formats say nothing.
    assert_eq!(declared_wav_seconds_of(&wav(2, 16_000, &samples, Some(u32::MAX))), None);
    assert_eq!(declared_wav_seconds_of(b"fLaC\0\0\0\x22"), None);
    assert_eq!(declared_wav_seconds_of(b"RIFF\x04\0\0\0WAVE"), None);
}

#[test]
fn scanning_a_cut_stereo_wav_measures_what_finetune_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    // 0.25 s of a full-scale square wave on the left channel, silence on the right, at 8 kHz; the header claims
    // 1 s of audio.
    let frames = 2000;
    let samples: Vec<i16> =
        (0..frames).flat_map(|i| [if (i / 20) % 2 == 0 { i16::MAX } else { i16::MIN }, 0]).collect();
    std::fs::write(&path, wav(2, 8000, &samples, Some(32_000))).unwrap();
    let a = scan_clip(&path).unwrap();
    assert_eq!((a.sample_rate, a.channels), (8000, 2));
    assert!((a.duration_s - 0.25).abs() < 1e-9, "{}", a.duration_s);
    assert_eq!(a.declared_s, Some(1.0));
    // Averaged to mono, the square wave peaks at half scale: not clipped.
    assert!(a.clipping == 0.0 && (a.peak - 0.5).abs() < 1e-3, "{a:?}");
    assert!(a.silence < 0.2, "{a:?}");
    assert_eq!(a.hash, samples_hash(&crate::audio::load_audio(&path).unwrap()));
}

#[test]
fn round_trip_differences_name_the_characters() {
    assert_eq!(changed_chars("a\u{200b}b", "ab"), "lost '\\u{200b}' U+200B");
    assert_eq!(changed_chars("ab", "a b"), "added ' ' U+0020");
    assert_eq!(changed_chars("ab", "ba"), "same characters, different order or spacing");
}
