//! `suite inspect speech`: a speech data set checked before fine-tuning, through the readers `suite finetune
//! speech` uses (the same manifests, the same audio decoder and resampler, the same Whisper tokenizer and prompt).
//!
//! Sections: `files` (unreadable clips, truncated WAVs, sample rates and channels), `durations` (histogram,
//! clips past Whisper's 30-s window, very short clips), `signal` (silence and clipping per clip), `languages`
//! (examples per language and split, rows finetune would refuse), `transcripts` (token lengths against the
//! decoder's limit, characters the tokenizer does not round-trip, empty transcripts, speaking-rate outliers) and
//! `duplicates` (the same decoded audio, and the same normalised transcript across splits).

mod audio;
mod duplicates;
mod scan;
#[cfg(test)]
mod tests;
mod transcripts;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use suite_core::quality::report::{Report, SplitInput};

use crate::data::{read_speech_rows, SpeechExample};
use crate::models::resolve_whisper;
use crate::tokenizer::WhisperTokenizer;

pub use scan::{
    clipping, declared_wav_seconds_of, samples_hash, scan_clip, silence_fraction, ClipAudio, CLIP_LEVEL, SILENCE_FRAME,
    SILENCE_RMS,
};

/// Whisper's input window: longer clips are cut by the feature extractor, so their transcript's end is unheard.
pub const WINDOW_S: f64 = 30.0;
/// Clips shorter than this are listed as very short (often a cut recording or a lone word).
pub const SHORT_S: f64 = 0.5;
/// Clips with more silence than this share of 20-ms frames are listed.
pub const SILENT_SHARE: f64 = 0.5;
/// Clips with more clipped samples than this share are listed.
pub const CLIPPED_SHARE: f64 = 0.001;

/// What to inspect and with which tokenizer.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// `(split name, data)` in order, train first: manifests or folders as `suite finetune speech --data` takes.
    pub splits: Vec<(String, PathBuf)>,
    /// Where the tokenizer comes from: a registry name (`whisper-base`), hub id or model folder.
    pub model: String,
    /// Language code for rows without one (finetune's `--language`).
    pub language: Option<String>,
    /// The run the tokenizer was taken from, shown in the report.
    pub run: Option<String>,
    /// Decoding threads.
    pub threads: usize,
}

/// One manifest row with where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Clip {
    /// The row.
    pub example: SpeechExample,
    /// Index into the split names.
    pub split: usize,
    /// 1-based row number within its split's data.
    pub row: usize,
    /// How the report shows it: the audio path relative to the data's folder.
    pub name: String,
    /// The row's language, else the default one.
    pub language: Option<String>,
}

/// Everything the sections read: the clips, their measurements and the tokenizer.
pub(crate) struct Scanned {
    /// Split names, in order.
    pub splits: Vec<String>,
    /// Every row of every split.
    pub clips: Vec<Clip>,
    /// Per clip: its measurements, or why it could not be read.
    pub audio: Vec<std::result::Result<ClipAudio, String>>,
    /// The tokenizer finetune would use.
    pub tokenizer: WhisperTokenizer,
    /// The decoder's positions (`max_target_positions`, 448 for every Whisper).
    pub max_tokens: usize,
}

impl Scanned {
    /// Split index of each clip.
    pub fn split_of(&self) -> Vec<usize> {
        self.clips.iter().map(|c| c.split).collect()
    }

    /// Display name of each clip.
    pub fn names(&self) -> Vec<String> {
        self.clips.iter().map(|c| c.name.clone()).collect()
    }

    /// The clips that decoded, with their measurements.
    pub fn readable(&self) -> impl Iterator<Item = (usize, &Clip, &ClipAudio)> {
        self.clips.iter().zip(&self.audio).enumerate().filter_map(|(i, (c, a))| a.as_ref().ok().map(|a| (i, c, a)))
    }
}

/// Inspects the data of `opts`; `progress(done, total)` follows the decoding of the clips. A data file that is
/// missing or does not parse, or a tokenizer that cannot be found, is an error; unreadable clips are findings.
pub fn inspect(opts: &InspectOptions, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Report> {
    if opts.splits.is_empty() {
        bail!("no data to inspect: pass --data MANIFEST");
    }
    let mut report = Report::new("speech", "transcription");
    report.run = opts.run.clone();
    let mut clips = vec![];
    for (s, (split, path)) in opts.splits.iter().enumerate() {
        // Folders (audiofolder, Common Voice) hold several splits: pick the one finetune would read.
        let folder_split = match split.as_str() {
            "val" => "validation",
            other => other,
        };
        let rows = read_speech_rows(path, Some(folder_split))?;
        report.inputs.push(SplitInput { split: split.clone(), path: path.display().to_string(), examples: rows.len() });
        let base = data_folder(path);
        for (r, example) in rows.into_iter().enumerate() {
            let name = base
                .as_deref()
                .and_then(|b| example.audio.strip_prefix(b).ok())
                .unwrap_or(&example.audio)
                .display()
                .to_string();
            let language = example
                .language
                .clone()
                .filter(|l| !l.trim().is_empty())
                .or_else(|| opts.language.clone())
                .map(|l| l.trim().to_string());
            clips.push(Clip { example, split: s, row: r + 1, name, language });
        }
    }
    let files = resolve_whisper(&opts.model)?;
    let tokenizer = WhisperTokenizer::from_file(&files.tokenizer)?;
    let max_tokens = usize::try_from(files.config.max_target_positions).unwrap_or(448);
    let paths: Vec<&Path> = clips.iter().map(|c| c.example.audio.as_path()).collect();
    let total = paths.len();
    let audio = scan::scan_all(&paths, opts.threads, &|done| progress(done, total));
    let splits = opts.splits.iter().map(|(s, _)| s.clone()).collect();
    let data = Scanned { splits, clips, audio, tokenizer, max_tokens };
    report.sections.push(audio::files_section(&data));
    report.sections.push(audio::durations_section(&data));
    report.sections.push(audio::signal_section(&data));
    report.sections.push(transcripts::languages_section(&data));
    report.sections.push(transcripts::transcripts_section(&data));
    report.sections.push(duplicates::duplicates_section(&data));
    Ok(report)
}

/// The folder relative audio paths of `data` resolve against (a manifest's folder, or the data folder itself),
/// absolute, for shortening the names shown.
fn data_folder(data: &Path) -> Option<PathBuf> {
    let dir = if data.is_dir() {
        data
    } else {
        data.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    };
    std::path::absolute(dir).ok()
}

/// `n` as a share of `of`, in percent with one decimal.
pub(crate) fn pct(n: usize, of: usize) -> String {
    if of == 0 {
        return "0%".into();
    }
    format!("{:.1}%", 100.0 * n as f64 / of as f64)
}
