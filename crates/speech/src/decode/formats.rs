//! A [`Transcription`] in OpenAI's audio API response formats (`json`, `text`, `srt`, `vtt`, `verbose_json`), with
//! the subtitle layout of openai-whisper's `WriteSRT` / `WriteVTT`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::languages::language_name;
use super::transcription::{Segment, Transcription};
use super::words::Word;
use crate::tokenizer::Task;

/// OpenAI's `response_format` of `/v1/audio/transcriptions` and `/v1/audio/translations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// `{"text": "…"}`.
    #[default]
    Json,
    /// The text and a newline.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// Task, language, duration, text and the timed segments.
    VerboseJson,
}

impl ResponseFormat {
    /// Every format, in OpenAI's order.
    pub const ALL: [ResponseFormat; 5] = [Self::Json, Self::Text, Self::Srt, Self::Vtt, Self::VerboseJson];

    /// The name OpenAI's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Srt => "srt",
            Self::Vtt => "vtt",
            Self::VerboseJson => "verbose_json",
        }
    }

    /// The `Content-Type` of a response body in this format (OpenAI's API sends subtitles as plain text).
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json | Self::VerboseJson => "application/json",
            Self::Text | Self::Srt | Self::Vtt => "text/plain; charset=utf-8",
        }
    }
}

impl fmt::Display for ResponseFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResponseFormat {
    type Err = String;

    /// Parses OpenAI's names; the error lists them.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|f| f.as_str()).collect();
            format!("unknown response_format {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// `verbose_json`, fields in OpenAI's order.
#[derive(Serialize)]
struct Verbose<'a> {
    task: &'static str,
    language: &'a str,
    duration: f64,
    text: &'a str,
    segments: &'a [Segment],
    /// Every word of the recording (OpenAI's `timestamp_granularities[]=word` layout), with word timestamps on.
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<&'a Word>>,
}

/// Every word of `t` in order, or `None` when it was transcribed without word timestamps.
fn all_words(t: &Transcription) -> Option<Vec<&Word>> {
    if t.segments.iter().all(|s| s.words.is_none()) {
        return None;
    }
    Some(t.segments.iter().flat_map(|s| s.words.iter().flatten()).collect())
}

/// The response body of `t` in `format`; `task` is reported by `verbose_json`.
pub fn render(t: &Transcription, format: ResponseFormat, task: Task) -> String {
    match format {
        ResponseFormat::Json => match all_words(t) {
            Some(words) => serde_json::json!({ "text": t.text, "words": words }).to_string(),
            None => serde_json::json!({ "text": t.text }).to_string(),
        },
        ResponseFormat::Text => format!("{}\n", t.text),
        ResponseFormat::Srt => {
            let mut out = String::new();
            for (i, (start, end, text)) in cues(t).into_iter().enumerate() {
                let (start, end) = (format_timestamp(start, ','), format_timestamp(end, ','));
                out.push_str(&format!("{}\n{start} --> {end}\n{text}\n\n", i + 1));
            }
            out
        }
        ResponseFormat::Vtt => {
            let mut out = String::from("WEBVTT\n\n");
            for (start, end, text) in cues(t) {
                let (start, end) = (format_timestamp(start, '.'), format_timestamp(end, '.'));
                out.push_str(&format!("{start} --> {end}\n{text}\n\n"));
            }
            out
        }
        ResponseFormat::VerboseJson => {
            let v = Verbose {
                task: task.as_str(),
                language: language_name(&t.language).unwrap_or(&t.language),
                duration: t.duration,
                text: &t.text,
                segments: &t.segments,
                words: all_words(t),
            };
            // Plain data (strings and finite numbers) always serialises.
            serde_json::to_string(&v).unwrap_or_default()
        }
    }
}

/// The subtitle cues `(start, end, text)` of `t`: one per segment, or with word timestamps openai-whisper's
/// `--highlight_words True` layout — per segment that has words, one cue per word showing the segment's text with
/// that word underlined (`<u>…</u>`), and a cue of the plain text over any gap between words, so a player shows
/// each word as it is spoken.
fn cues(t: &Transcription) -> Vec<(f64, f64, String)> {
    if all_words(t).is_none() {
        return t.segments.iter().map(|s| (s.start, s.end, cue_text(s))).collect();
    }
    let mut out = Vec::new();
    for words in t.segments.iter().filter_map(|s| s.words.as_deref()).filter(|w| !w.is_empty()) {
        // A subtitle's first word loses its leading space, as openai-whisper's line start.
        let texts: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.word.trim().to_string() } else { w.word.clone() })
            .map(|w| w.replace("-->", "->"))
            .collect();
        let plain: String = texts.concat();
        // Gaps are compared as the printed millisecond, as openai-whisper compares formatted timestamps.
        let ms = |s: f64| (s.max(0.0) * 1000.0).round() as u64;
        let mut last = words[0].start;
        for (i, w) in words.iter().enumerate() {
            if ms(last) != ms(w.start) {
                out.push((last, w.start, plain.clone()));
            }
            let marked: String = texts
                .iter()
                .enumerate()
                .map(|(j, text)| {
                    if j != i {
                        return text.clone();
                    }
                    let body = text.trim_start();
                    format!("{}<u>{body}</u>", &text[..text.len() - body.len()])
                })
                .collect();
            out.push((w.start, w.end, marked));
            last = w.end;
        }
    }
    out
}

/// A cue's text as openai-whisper's subtitle writers put it: trimmed, and `-->` (which would end the cue's timing
/// line) written `->`.
fn cue_text(s: &Segment) -> String {
    s.text.trim().replace("-->", "->")
}

/// `HH:MM:SS,mmm` (SRT, `marker` `,`) or `HH:MM:SS.mmm` (WebVTT, `.`), rounded to the millisecond.
pub fn format_timestamp(seconds: f64, marker: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{marker}{ms:03}")
}
