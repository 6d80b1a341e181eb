//! Audio files to mono `f32` samples: symphonia for WAV (8/16/24/32-bit PCM, float), FLAC, MP3 and OGG/Vorbis;
//! channels are averaged, as `soundfile`/`librosa` users do before Whisper's feature extractor.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::resample::resample;

/// The sample rate Whisper and suite's speech models consume.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// A decoded audio file, downmixed to mono.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Mono samples in [-1, 1] (the mean of the channels).
    pub samples: Vec<f32>,
    /// The file's own sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels in the file, before the downmix.
    pub channels: usize,
    /// Length of what was decoded, in seconds.
    pub duration_s: f64,
}

fn is_eof(e: &SymphoniaError) -> bool {
    matches!(e, SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// Decodes an audio file to mono samples at its own rate. A file cut short is decoded up to where it stops
/// (symphonia reads packets until the end of the data); one cut inside its header is an error that says so.
pub fn decode_file(path: &Path) -> Result<Audio> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).with_context(|| format!("{shown}: cannot read audio file"))?;
    if !meta.is_file() {
        bail!("{shown}: not a file");
    }
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read audio file"))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_bytes(bytes, ext, &shown, false)
}

/// Checks that an audio file opens and its first packet decodes (container, header fields, codec), without
/// decoding the rest: cheap enough to run on every clip of a data set before a job starts, so that a bad file is
/// refused up front rather than when a training batch reaches it. Errors are [`decode_file`]'s.
pub fn probe_file(path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read audio file"))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_bytes(bytes, ext, &shown, true).map(|_| ())
}

/// Runs [`probe_file`] on every file; fails naming the bad ones: one line for one file, else a count and one line
/// per file (the first 20).
pub fn check_decodable(paths: &[&Path]) -> Result<()> {
    let bad: Vec<String> = paths.iter().filter_map(|p| probe_file(p).err().map(|e| format!("{e:#}"))).collect();
    match bad.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => {
            let mut shown: Vec<String> = many.iter().take(20).map(|b| format!("  {b}")).collect();
            if many.len() > 20 {
                shown.push(format!("  … and {} more", many.len() - 20));
            }
            bail!("{} of {} audio files cannot be decoded:\n{}", many.len(), paths.len(), shown.join("\n"))
        }
    }
}

/// Decodes audio held in memory (an upload) to 16 kHz mono samples, as [`load_audio`] does for a file. `hint` is
/// a file name, an extension (`wav`, `.mp3`) or a MIME type (`audio/flac`); the content decides in the end. Every
/// malformed input — empty, not audio, a header with impossible values, damaged data — is an error that starts
/// with `audio:`, never a panic.
pub fn decode_audio_bytes(bytes: &[u8], hint: Option<&str>) -> Result<Vec<f32>> {
    let audio = decode_bytes(bytes.to_vec(), hint, "audio", false)?;
    to_target_rate(audio, "audio")
}

/// Symphonia's hint from a file name, an extension or a MIME type.
fn make_hint(hint: Option<&str>) -> Hint {
    let mut h = Hint::new();
    if let Some(raw) = hint.map(str::trim).filter(|s| !s.is_empty()) {
        if raw.contains('/') && !raw.contains('.') {
            h.mime_type(raw);
        } else {
            h.with_extension(raw.rsplit('.').next().unwrap_or(raw));
        }
    }
    h
}

/// The checks symphonia does not make before it divides by a header field: a RIFF/WAVE `fmt ` chunk that declares
/// 0 channels, a 0 Hz sample rate or a 0-byte frame makes it panic (`TimeBase cannot have 0 numerator or
/// denominator`), so such a header is refused here with the field named.
fn check_wav_header(bytes: &[u8], shown: &str) -> Result<()> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(());
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let (id, size) = (&bytes[at..at + 4], u32_at(at + 4) as usize);
        let body = at + 8;
        if id == b"fmt " {
            if body + 16 > bytes.len() {
                bail!("{shown}: truncated file: it ends inside the audio header");
            }
            if size < 16 {
                bail!("{shown}: malformed WAV header: a fmt chunk of {size} bytes, expected at least 16");
            }
            let (channels, rate, block_align) = (u16_at(body + 2), u32_at(body + 4), u16_at(body + 12));
            if channels == 0 {
                bail!("{shown}: the WAV header declares 0 channels");
            }
            if rate == 0 {
                bail!("{shown}: the WAV header declares a sample rate of 0 Hz");
            }
            if block_align == 0 {
                bail!("{shown}: the WAV header declares 0-byte sample frames (block align 0)");
            }
            // A frame smaller than its samples (2 channels of 16 bits in 3 bytes) cannot be read as declared.
            let bits = u16_at(body + 14);
            let need = u32::from(channels) * u32::from(bits).div_ceil(8);
            if u32::from(block_align) < need {
                bail!(
                    "{shown}: malformed WAV header: block align {block_align} bytes, but {channels} channel(s) of \
                     {bits} bits need {need}"
                );
            }
            return Ok(());
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// Symphonia allocates each Vorbis comment (the tags of FLAC and OGG files) and each field of a FLAC picture at the
/// length its header claims, before reading it: a 323-byte FLAC file claiming a 4-GB comment made it allocate 4 GB
/// (found by fuzzing). A length past what follows it in the file (or its FLAC block) is refused here.
fn check_vorbis_comments(bytes: &[u8], shown: &str) -> Result<()> {
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    // Comments from `at` (vendor length, vendor, count, then length-prefixed comments), within `end`.
    let comments = |at: usize, end: usize| -> Result<()> {
        let Some(vendor) = u32_at(at) else { return Ok(()) };
        let mut at = (at + 4).saturating_add(vendor);
        let Some(n) = u32_at(at) else { return Ok(()) };
        at += 4;
        for _ in 0..n {
            let Some(len) = u32_at(at).filter(|_| at + 4 <= end) else { return Ok(()) };
            at += 4;
            if len > end - at {
                bail!("{shown}: malformed audio tags: a comment claims {len} bytes, but only {} follow", end - at);
            }
            at += len;
        }
        Ok(())
    };
    // A FLAC PICTURE block: type, then big-endian lengths of the MIME type, the description and (after four
    // numbers) the image, each followed by that many bytes.
    let picture = |at: usize, end: usize| -> Result<()> {
        let be = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let mut at = at + 4;
        for skip_before in [0, 0, 16] {
            at += skip_before;
            let Some(len) = be(at).filter(|_| at + 4 <= end) else { return Ok(()) };
            at += 4;
            if len > end - at {
                bail!(
                    "{shown}: malformed audio tags: a picture field claims {len} bytes, but only {} follow",
                    end - at
                );
            }
            at += len;
        }
        Ok(())
    };
    // Symphonia's probe takes the first format marker in the file, not only one at its start: a FLAC stream is read
    // from the first `fLaC` unless a WAV or OGG marker comes before it.
    let find = |marker: &[u8]| bytes.windows(marker.len()).position(|w| w == marker);
    let flac = find(b"fLaC").filter(|&f| ![find(b"RIFF"), find(b"OggS")].iter().any(|m| m.is_some_and(|m| m < f)));
    if let Some(f) = flac {
        // Metadata blocks: a header byte (last-block flag, type; 4 is VORBIS_COMMENT) and a 24-bit length.
        let mut at = f + 4;
        while at + 4 <= bytes.len() {
            let (head, len) =
                (bytes[at], u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize);
            let body = at + 4;
            let end = body.saturating_add(len).min(bytes.len());
            if head & 0x7f == 4 {
                comments(body, end)?;
            }
            if head & 0x7f == 6 {
                picture(body, end)?;
            }
            if head & 0x80 != 0 {
                break;
            }
            at = body.saturating_add(len);
        }
    }
    // OGG/Vorbis: the comment header packet starts with 0x03 "vorbis".
    let mut from = 0;
    while let Some(i) = bytes[from..].windows(7).position(|w| w == b"\x03vorbis") {
        comments(from + i + 7, bytes.len())?;
        from += i + 1;
    }
    Ok(())
}

/// The sample rates accepted, in Hz. Real formats span 8 kHz telephony to 768 kHz studio audio; a header outside
/// this range is corrupt or hostile: 4294967295 Hz made the resampler plan an FFT of billions of points (the
/// process hung, then was killed), and 1 Hz turns a 3-KB file into half an hour of audio to transcribe.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=1_000_000;

fn check_rate(rate: u32, shown: &str) -> Result<()> {
    if rate == 0 {
        bail!("{shown}: the audio stream declares a sample rate of 0 Hz");
    }
    if !SAMPLE_RATES.contains(&rate) {
        bail!(
            "{shown}: the audio declares a sample rate of {rate} Hz, outside the {}-{} Hz of real audio (a corrupt \
             header?)",
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        );
    }
    Ok(())
}

/// Decodes a whole file's bytes (only up to its first audio with `first_only`); `shown` names it in errors.
/// Symphonia runs under `catch_unwind`: a panic on some header value not checked above becomes an error too.
fn decode_bytes(bytes: Vec<u8>, hint: Option<&str>, shown: &str, first_only: bool) -> Result<Audio> {
    if bytes.is_empty() {
        bail!("{shown}: empty file (0 bytes), expected audio (WAV, FLAC, MP3 or OGG/Vorbis)");
    }
    check_wav_header(&bytes, shown)?;
    check_vorbis_comments(&bytes, shown)?;
    let hint = make_hint(hint);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_symphonia(bytes, &hint, shown, first_only))) {
        Ok(result) => result,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("malformed data");
            bail!("{shown}: cannot decode the audio: {why}")
        }
    }
}

fn decode_symphonia(bytes: Vec<u8>, hint: &Hint, shown: &str, first_only: bool) -> Result<Audio> {
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    // Gapless trims the MP3 encoder delay and padding, so the sample count is the one the encoder was given.
    let format_opts = FormatOptions { enable_gapless: true, ..Default::default() };
    let probed = match symphonia::default::get_probe().format(hint, stream, &format_opts, &MetadataOptions::default()) {
        Ok(p) => p,
        Err(e) if is_eof(&e) => bail!("{shown}: truncated file: it ends inside the audio header"),
        Err(SymphoniaError::Unsupported(_)) => {
            bail!("{shown}: not a recognised audio format (expected WAV, FLAC, MP3 or OGG/Vorbis)")
        }
        Err(e) => bail!("{shown}: cannot read the audio container: {e}"),
    };
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .with_context(|| format!("{shown}: no audio track in the file"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    if let Some(rate) = params.sample_rate {
        check_rate(rate, shown)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| anyhow::anyhow!("{shown}: unsupported audio codec: {e}"))?;

    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut bad_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(e) if is_eof(&e) => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                // A stream damaged after some audio keeps what decoded; damage before any audio is an error.
                if samples.is_empty() {
                    bail!("{shown}: cannot read audio data: {e}");
                }
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // Corrupt frames are skipped, as players and ffmpeg do; a file of nothing else fails below.
            Err(SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(e) if is_eof(&e) => break,
            Err(e) => bail!("{shown}: cannot decode audio: {e}"),
        };
        let spec = *decoded.spec();
        sample_rate = spec.rate;
        channels = spec.channels.count();
        if decoded.frames() == 0 || channels == 0 {
            continue;
        }
        let needed = decoded.capacity() as u64;
        let b = match &mut buf {
            Some(b) if b.capacity() as u64 >= needed * channels as u64 => b,
            _ => buf.insert(SampleBuffer::new(needed, spec)),
        };
        b.copy_interleaved_ref(decoded);
        downmix_into(b.samples(), channels, &mut samples);
        if first_only {
            break;
        }
    }
    if samples.is_empty() {
        if bad_packets > 0 {
            bail!("{shown}: no decodable audio ({bad_packets} corrupt packets)");
        }
        bail!("{shown}: the file holds zero audio samples");
    }
    if sample_rate == 0 || channels == 0 {
        bail!("{shown}: the audio stream declares no sample rate or channel count");
    }
    check_rate(sample_rate, shown)?;
    let duration_s = samples.len() as f64 / sample_rate as f64;
    Ok(Audio { samples, sample_rate, channels, duration_s })
}

/// Averages interleaved frames into mono.
fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let n = channels as f32;
    out.extend(interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / n));
}

/// Decodes a file and resamples it to 16 kHz mono, the input of Whisper's feature extractor.
pub fn load_audio(path: &Path) -> Result<Vec<f32>> {
    let audio = decode_file(path)?;
    to_target_rate(audio, &path.display().to_string())
}

fn to_target_rate(audio: Audio, shown: &str) -> Result<Vec<f32>> {
    resample(&audio.samples, audio.sample_rate, TARGET_SAMPLE_RATE)
        .with_context(|| format!("{shown}: resampling {} Hz to 16 kHz", audio.sample_rate))
}
