//! `suite explain speech`: word timestamps and probabilities of each file (words.json) and a picture of the first
//! window's cross-attention alignment (tokens × audio frames, the DTW path in red).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use suite_core::device::parse_device;
use suite_core::runs::atomic_write;
use suite_speech::audio::{load_audio, LogMel, MelConfig};
use suite_speech::decode::{alignment_heads, find_alignment, transcribe_timed, Alignment, TranscribeOptions};
use suite_speech::task::load_for_inference;
use suite_speech::tokenizer::Task;

use crate::args::explain::ExplainSpeechArgs;

/// Entry point.
pub fn run(args: ExplainSpeechArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let spec = match (&args.run, &args.model) {
        (Some(run), _) => {
            let dir = run.join(&args.which);
            if !dir.is_dir() {
                bail!("{}: no saved model", dir.display());
            }
            dir.display().to_string()
        }
        (None, Some(m)) => m.clone(),
        (None, None) => "whisper-base".to_string(),
    };
    let loaded = load_for_inference(&spec, device)?;
    let heads = alignment_heads(&loaded.model.config)
        .context("this model's architecture has no known cross-attention alignment heads")?;
    let mel = LogMel::new(MelConfig::whisper(loaded.model.config.num_mel_bins));
    let opts = TranscribeOptions { language: args.language.clone(), word_timestamps: true, ..Default::default() };
    for file in &args.files {
        let samples = load_audio(file)?;
        if samples.is_empty() {
            bail!("{}: no audio in the file (0 samples)", file.display());
        }
        let t = transcribe_timed(&loaded.model, &loaded.tokenizer, &mel, &[&samples], &opts)?
            .pop()
            .context("no transcription")?;
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("explain").join(format!("{stem}-speech")));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let words: Vec<_> = t.segments.iter().flat_map(|s| s.words.iter().flatten()).collect();
        let body = serde_json::json!({"file": file.display().to_string(), "language": t.language,
            "duration": t.duration, "text": t.text, "words": words});
        atomic_write(&out.join("words.json"), serde_json::to_string_pretty(&body)?.as_bytes())?;
        // The first window's alignment, again, for the picture.
        let text: Vec<i64> = t
            .segments
            .iter()
            .filter(|s| s.seek == 0)
            .flat_map(|s| s.tokens.iter().copied().filter(|&x| x < loaded.tokenizer.eot()))
            .collect();
        if !text.is_empty() {
            let features = mel.recording(&samples);
            let size = (features.size()[1] - 1).clamp(1, mel.config().n_frames());
            let window = mel.window_at(&features, 0, size).unsqueeze(0).to_device(loaded.model.device());
            let states = tch::no_grad(|| loaded.model.encode(&window, false));
            let sot = loaded.tokenizer.sot_sequence(&t.language, Task::Transcribe)?;
            let tok = &loaded.tokenizer;
            let a = find_alignment(&loaded.model, &heads, &states, &sot, tok.no_timestamps(), tok.eot(), &text, size)?;
            write_picture(&a, &out.join("alignment.png"))?;
        }
        println!("{}: {} words → {}", file.display(), words.len(), out.display());
    }
    Ok(())
}

/// The alignment matrix as a heat map (4 pixels high per token, 2 wide per frame, 1 past 600 frames), the DTW path
/// in red.
fn write_picture(a: &Alignment, path: &Path) -> Result<()> {
    let (rows, cols) = (a.rows, a.frames);
    let (cw, ch) = (if cols > 600 { 1 } else { 2 }, 4);
    let mut img = image::RgbImage::new((cols * cw) as u32, (rows * ch) as u32);
    let (lo, hi) = a.matrix.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let span = (hi - lo).max(1e-6);
    for r in 0..rows {
        for c in 0..cols {
            let v = ((a.matrix[r * cols + c] - lo) / span * 255.0) as u8;
            for dy in 0..ch {
                for dx in 0..cw {
                    img.put_pixel((c * cw + dx) as u32, (r * ch + dy) as u32, image::Rgb([v, v, v / 2 + 64]));
                }
            }
        }
    }
    for (&r, &c) in a.text_indices.iter().zip(&a.time_indices) {
        for dy in 0..ch {
            for dx in 0..cw {
                img.put_pixel((c * cw + dx) as u32, (r * ch + dy) as u32, image::Rgb([255, 0, 0]));
            }
        }
    }
    img.save(path).with_context(|| format!("writing {}", path.display()))
}
