//! The audio front end against its references: log-mel vs transformers' `WhisperFeatureExtractor` (NumPy and
//! torch paths) on real LibriVox speech, decoding vs libsndfile (through `soundfile`) on files `soundfile` writes,
//! resampling vs the analytic signal, and the errors on bad files.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use suite_core::python::run_python;
use tch::Tensor;

use super::*;

fn librivox_dir() -> Result<PathBuf> {
    let dir = suite_core::cache::assets_dir().join("pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox");
    ensure!(dir.is_dir(), "{} missing: run scripts/fetch_assets.sh speech", dir.display());
    Ok(dir)
}

fn read_all(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(Tensor::read_safetensors(path)?)
}

fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    tensors.iter().find_map(|(n, t)| (n == name).then_some(t)).with_context(|| format!("{name} not in reference"))
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1))?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double)).abs().max().double_value(&[])
}

/// Reference features for three inputs: one LibriVox utterance, the five utterances twice over (49 s, so cut at
/// 30 s, plus its 19-s tail as a second window) and 0.5 s of noise; each through the NumPy path
/// (`_np_extract_fbank_features`, float64 FFT) and the default `__call__` (torch float32 STFT when torch is
/// installed).
const WHISPER_FEATURES: &str = r#"
import sys, glob, numpy as np, soundfile as sf
from transformers import WhisperFeatureExtractor
from safetensors.numpy import save_file
libri, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(libri + "/*.wav"))
speech = sf.read(files[0], dtype="float32")[0]
long = np.concatenate([sf.read(f, dtype="float32")[0] for f in files * 2])
short = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
inputs = {"speech": speech, "long": long, "tail": long[480000:], "short": short}
t = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
for n in (80, 128):
    fe = WhisperFeatureExtractor(feature_size=n)
    t[f"filters_{n}"] = np.ascontiguousarray(fe.mel_filters.T)
    for name, x in inputs.items():
        padded = np.zeros(480000, np.float32)
        padded[: min(len(x), 480000)] = x[:480000]
        t[f"np_{n}_{name}"] = fe._np_extract_fbank_features(padded[None], "cpu")[0]
        t[f"call_{n}_{name}"] = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
save_file(t, out)
print(files[0])
"#;

#[test]
fn log_mel_matches_whisper_feature_extractor() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("mel.safetensors");
    let libri = librivox_dir()?;
    let first_file = run_python(WHISPER_FEATURES, &[libri.to_str().context("path")?, out.to_str().context("path")?])?;
    let reference = read_all(&out)?;

    // Our decoder gives the same samples as soundfile on the real 16-bit WAV.
    let decoded = decode_file(Path::new(first_file.trim()))?;
    let speech = to_vec(get(&reference, "speech")?)?;
    assert_eq!(decoded.sample_rate, 16_000);
    assert_eq!(decoded.samples, speech, "decoded LibriVox WAV differs from soundfile");

    for n_mels in [80i64, 128] {
        let mel = LogMel::new(MelConfig::whisper(n_mels));
        let filter_diff = max_abs_diff(mel.filters(), get(&reference, &format!("filters_{n_mels}"))?);
        println!("n_mels {n_mels}: filter bank max |diff| {filter_diff:.3e}");
        ensure!(filter_diff < 1e-12, "mel filters differ by {filter_diff}");
        for name in ["speech", "long", "tail", "short"] {
            let x = to_vec(get(&reference, name)?)?;
            let ours = mel.features(&x);
            assert_eq!(ours.size(), [n_mels, 3000]);
            let d_np = max_abs_diff(&ours, get(&reference, &format!("np_{n_mels}_{name}"))?);
            let d_call = max_abs_diff(&ours, get(&reference, &format!("call_{n_mels}_{name}"))?);
            println!(
                "n_mels {n_mels} {name} ({:.2} s): max |diff| vs NumPy path {d_np:.3e}, vs torch path {d_call:.3e}",
                x.len() as f64 / 16000.0
            );
            ensure!(d_np < 1e-6, "{name}/{n_mels}: log-mel differs from the NumPy path by {d_np}");
            ensure!(d_call < 1e-4, "{name}/{n_mels}: log-mel differs from the torch path by {d_call}");
        }
        // Long audio: the first 30-s window is what the extractor keeps, the second is the tail.
        let long = to_vec(get(&reference, "long")?)?;
        let parts = windows(&long, 480_000);
        assert_eq!(parts.len(), 2);
        let batch = mel.batch(&parts);
        assert_eq!(batch.size(), [2, n_mels, 3000]);
        for (i, name) in ["long", "tail"].iter().enumerate() {
            let d = max_abs_diff(&batch.get(i as i64), get(&reference, &format!("np_{n_mels}_{name}"))?);
            ensure!(d < 1e-6, "batch window {i} differs by {d}");
        }
    }
    Ok(())
}

#[test]
fn windows_split_long_audio() {
    let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let w = windows(&x, 4);
    assert_eq!(w.iter().map(|w| w.len()).collect::<Vec<_>>(), [4, 4, 2]);
    assert_eq!(w[2], &[8.0, 9.0]);
    assert!(windows(&[], 4).is_empty());
    assert_eq!(windows(&x, 0).len(), 1);
}

/// Writes the fixtures with libsndfile (through `soundfile`) and reads them back with it as the reference: mono
/// means of the channels in float32, as our decoder downmixes.
const SOUNDFILE_FIXTURES: &str = r#"
import sys, json, numpy as np, soundfile as sf
from safetensors.numpy import save_file
out = sys.argv[1]
rng = np.random.default_rng(1)
cases = [("pcm16.wav", "WAV", "PCM_16", 16000, 1), ("pcm24.wav", "WAV", "PCM_24", 22050, 2),
         ("pcm32.wav", "WAV", "PCM_32", 44100, 2), ("float.wav", "WAV", "FLOAT", 48000, 2),
         ("u8.wav", "WAV", "PCM_U8", 8000, 1), ("pcm16.flac", "FLAC", "PCM_16", 44100, 2),
         ("pcm24.flac", "FLAC", "PCM_24", 48000, 1), ("stereo.mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
         ("mono.mp3", "MP3", "MPEG_LAYER_III", 16000, 1), ("stereo.ogg", "OGG", "VORBIS", 44100, 2)]
refs, meta = {}, {}
for name, fmt, sub, sr, ch in cases:
    t = np.arange(int(0.6 * sr)) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.3 * np.sin(2 * np.pi * 1250 * t)
    x = np.stack([left, right], 1)[:, :ch].clip(-1, 1).astype(np.float32)
    sf.write(f"{out}/{name}", x, sr, format=fmt, subtype=sub)
    y, rate = sf.read(f"{out}/{name}", dtype="float32", always_2d=True)
    refs[name] = np.ascontiguousarray(y.mean(axis=1, dtype=np.float32))
    meta[name] = {"rate": rate, "channels": y.shape[1], "written": len(x)}
save_file(refs, f"{out}/refs.safetensors")
print(json.dumps(meta))
"#;

#[test]
fn decoding_matches_libsndfile() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let meta = run_python(SOUNDFILE_FIXTURES, &[dir.path().to_str().context("path")?])?;
    let meta: serde_json::Value = serde_json::from_str(meta.trim())?;
    let refs = read_all(&dir.path().join("refs.safetensors"))?;
    for (name, info) in meta.as_object().context("meta")? {
        let audio = decode_file(&dir.path().join(name))?;
        let reference = to_vec(get(&refs, name)?)?;
        assert_eq!(audio.sample_rate as u64, info["rate"].as_u64().context("rate")?, "{name}: sample rate");
        assert_eq!(audio.channels as u64, info["channels"].as_u64().context("channels")?, "{name}: channels");
        let lossy = name.ends_with(".mp3") || name.ends_with(".ogg");
        let n = audio.samples.len().min(reference.len());
        let max_diff = audio.samples[..n].iter().zip(&reference[..n]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!(
            "{name}: {} samples (libsndfile {}, written {}), max |diff| {max_diff:.3e}",
            audio.samples.len(),
            reference.len(),
            info["written"]
        );
        assert!((audio.duration_s - audio.samples.len() as f64 / audio.sample_rate as f64).abs() < 1e-12);
        if lossy {
            // Two different decoders (symphonia vs mpg123 / libvorbis) of the same stream.
            ensure!(audio.samples.len() == reference.len(), "{name}: {} vs {} samples", audio.samples.len(), n);
            ensure!(max_diff < 1e-3, "{name}: lossy decode differs by {max_diff}");
        } else {
            ensure!(audio.samples == reference, "{name}: lossless decode differs (max {max_diff})");
        }
    }
    Ok(())
}

/// Interleaved stereo tones `0.5 sin(2π·440t)` and `0.3 sin(2π·f2·t)` plus an `amp_hi` tone above 8 kHz on the
/// left, as a 32-bit float WAV.
fn write_float_wav(path: &Path, sr: u32, frames: usize, f2: f64, hi: Option<(f64, f64)>) -> Result<()> {
    let mut data = Vec::with_capacity(frames * 8);
    for i in 0..frames {
        let t = i as f64 / sr as f64;
        let mut left = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        if let Some((f, a)) = hi {
            left += a * (2.0 * std::f64::consts::PI * f * t).sin();
        }
        let right = 0.3 * (2.0 * std::f64::consts::PI * f2 * t).sin();
        data.extend_from_slice(&(left as f32).to_le_bytes());
        data.extend_from_slice(&(right as f32).to_le_bytes());
    }
    std::fs::write(path, wav_bytes(3, 2, sr, 32, &data))?;
    Ok(())
}

/// A RIFF/WAVE file with one `fmt ` and one `data` chunk (format 1 = PCM, 3 = IEEE float).
fn wav_bytes(format: u16, channels: u16, sr: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    super::wav_bytes(super::WavSpec { format, channels, rate: sr, bits }, data, None)
}

/// Stereo files at 8, 22.05, 44.1 and 48 kHz → 16 kHz mono, against the analytic mono signal
/// `(0.5 sin(2π·440t) + 0.3 sin(2π·f2·t)) / 2` at t = k / 16000, away from the first and last 50 ms (where the
/// input itself starts and stops abruptly). A 10-kHz tone in the 44.1/48-kHz files lies above the new Nyquist
/// frequency and must be filtered out.
#[test]
fn resampling_to_16k_preserves_tones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (sr, f2, hi) in
        [(8000u32, 3000.0, None), (22050, 3000.0, None), (44100, 1000.0, Some((10_000.0, 0.2))), (48000, 5000.0, None)]
    {
        let frames = (sr as f64 * 1.3) as usize + 7;
        let path = dir.path().join(format!("tone_{sr}.wav"));
        write_float_wav(&path, sr, frames, f2, hi)?;
        let y = load_audio(&path)?;
        let expected_len = (frames as f64 * 16000.0 / sr as f64).round() as usize;
        ensure!(y.len() == expected_len, "{sr} Hz: {} samples, expected {expected_len}", y.len());
        let margin = 800;
        let mut max_err = 0f64;
        for (k, &v) in y.iter().enumerate().take(y.len() - margin).skip(margin) {
            let t = k as f64 / 16000.0;
            let ideal = (0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * f2 * t).sin())
                / 2.0;
            max_err = max_err.max((v as f64 - ideal).abs());
        }
        println!("{sr} Hz stereo → 16 kHz mono: {} samples, max |error| vs analytic {max_err:.3e}", y.len());
        let tol = 5e-4;
        ensure!(max_err < tol, "{sr} Hz: resampled signal off by {max_err}");
    }
    // Identity and a plain rate pair.
    let x: Vec<f32> = (0..100).map(|i| (i as f32 * 0.1).sin()).collect();
    assert_eq!(resample(&x, 16000, 16000)?, x);
    assert!(resample(&x, 0, 16000).is_err());
    assert!(resample(&[], 44100, 16000)?.is_empty());
    // Non-finite samples are an error, not a panic inside the FFT (a fuzzing finding).
    for bad in [f32::NAN, f32::INFINITY, -3e37] {
        let mut y = x.clone();
        y[37] = bad;
        for to in [16000, 44100] {
            let e = resample(&y, 44100, to).unwrap_err().to_string();
            ensure!(e.contains("sample 37") && e.contains("not audio"), "{e}");
        }
    }
    Ok(())
}

fn error_of(path: &Path) -> String {
    match decode_file(path) {
        Ok(a) => panic!("{} decoded to {} samples, expected an error", path.display(), a.samples.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_audio_files_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "these are meeting notes, not audio\n".repeat(20))?;
    let e = error_of(&text);
    assert!(e.contains("notes.wav") && e.contains("not a recognised audio format"), "{e}");

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"")?;
    let e = error_of(&empty);
    assert!(e.contains("empty.wav") && e.contains("empty file"), "{e}");

    let missing = dir.path().join("missing.flac");
    let e = error_of(&missing);
    assert!(e.contains("missing.flac"), "{e}");

    // 16-bit PCM, 1000 samples; the file is cut after 600 of them: what is there decodes.
    let samples: Vec<i16> = (0..1000).map(|i| ((i as f32 * 0.05).sin() * 20000.0) as i16).collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let full = wav_bytes(1, 1, 16000, 16, &data);
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &full[..44 + 1200])?;
    let audio = decode_file(&cut)?;
    assert_eq!(audio.samples.len(), 600);
    let expected: Vec<f32> = samples[..600].iter().map(|&s| s as f32 / 32768.0).collect();
    assert_eq!(audio.samples, expected);

    // Cut inside the header: nothing to decode.
    let header_only = dir.path().join("header.wav");
    std::fs::write(&header_only, &full[..30])?;
    let e = error_of(&header_only);
    assert!(e.contains("header.wav") && e.contains("truncated"), "{e}");

    // A valid header with an empty data chunk.
    let silent = dir.path().join("zero.wav");
    std::fs::write(&silent, wav_bytes(1, 1, 16000, 16, &[]))?;
    let e = error_of(&silent);
    assert!(e.contains("zero.wav") && e.contains("zero audio samples"), "{e}");
    Ok(())
}

/// Uploads are decoded from memory: the same samples as from the file, and every malformed input an error that
/// names the audio and what is wrong (symphonia panics on a 0 Hz WAV header unless it is refused first).
#[test]
fn audio_bytes_decode_like_files_and_bad_bytes_are_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let samples: Vec<i16> = (0..8000).map(|i| ((i as f32 * 0.05).sin() * 20000.0) as i16).collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let wav = wav_bytes(1, 1, 8000, 16, &data);
    let path = dir.path().join("tone.wav");
    std::fs::write(&path, &wav)?;
    assert_eq!(decode_audio_bytes(&wav, None)?, load_audio(&path)?);
    assert_eq!(decode_audio_bytes(&wav, Some("upload.wav"))?, load_audio(&path)?);
    assert_eq!(decode_audio_bytes(&wav, Some("audio/wav"))?.len(), 16000);

    let err = |bytes: &[u8]| match decode_audio_bytes(bytes, Some("wav")) {
        Ok(s) => panic!("{} bytes decoded to {} samples, expected an error", bytes.len(), s.len()),
        Err(e) => format!("{e:#}"),
    };
    let e = err(b"");
    assert!(e.starts_with("audio: empty file (0 bytes)"), "{e}");
    let e = err("these are meeting notes, not audio\n".repeat(20).as_bytes());
    assert!(e.contains("not a recognised audio format"), "{e}");
    let e = err(&wav_bytes(1, 1, 0, 16, &data));
    assert!(e.contains("sample rate of 0 Hz"), "{e}");
    let e = err(&wav_bytes(1, 0, 16000, 16, &data));
    assert!(e.contains("0 channels"), "{e}");
    let e = err(&wav[..30]);
    assert!(e.contains("truncated"), "{e}");
    let e = err(&wav_bytes(1, 1, 16000, 16, &[]));
    assert!(e.contains("zero audio samples"), "{e}");
    // The same header through a file names the file.
    let zero = dir.path().join("rate0.wav");
    std::fs::write(&zero, wav_bytes(1, 1, 0, 16, &data))?;
    let e = error_of(&zero);
    assert!(e.contains("rate0.wav") && e.contains("sample rate of 0 Hz"), "{e}");
    Ok(())
}

/// Fuzzing finding: a FLAC (or OGG/Vorbis) tag claiming a comment of gigabytes made symphonia allocate that much
/// before reading; such tags are refused, naming the file.
#[test]
fn tags_longer_than_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Vendor "x", one comment of 4 GB - 16 bytes.
    let tags: Vec<u8> =
        [&1u32.to_le_bytes()[..], b"x", &1u32.to_le_bytes(), &0xFFFF_FFF0u32.to_le_bytes(), b"AB"].concat();
    let mut flac = b"fLaC\x00\x00\x00\x22".to_vec();
    flac.extend([0u8; 34]);
    flac.extend([0x84, 0, 0, tags.len() as u8]);
    flac.extend(&tags);
    let mut ogg = b"OggS\x00\x02".to_vec();
    ogg.extend([0u8; 20]);
    ogg.extend(b"\x03vorbis");
    ogg.extend(&tags);
    // A PICTURE block whose MIME type claims 3 GB.
    let mut picture = b"junk before the marker fLaC\x00\x00\x00\x22".to_vec();
    picture.extend([0u8; 34]);
    picture.extend([0x86, 0, 0, 12, 0, 0, 0, 3, 0xC0, 0, 0, 0, b'i', b'm', b'a', b'g']);
    for (name, bytes, claim) in [
        ("tags.flac", flac, "a comment claims 4294967280 bytes"),
        ("tags.ogg", ogg, "a comment claims 4294967280 bytes"),
        ("picture.flac", picture, "a picture field claims 3221225472 bytes"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = error_of(&p);
        assert!(e.contains(name) && e.contains(claim), "{e}");
    }
}
