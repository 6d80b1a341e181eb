//! A [`Transcription`] in OpenAI's audio API response formats (`json`, `text`, `srt`, `vtt`, `verbose_json`), with
//! the subtitle layout of openai-whisper's `WriteSRT` / `WriteVTT`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::languages::language_name;
use super::transcription::{Segment, Transcription};
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
}

/// The response body of `t` in `format`; `task` is reported by `verbose_json`.
pub fn render(t: &Transcription, format: ResponseFormat, task: Task) -> String {
    match format {
        ResponseFormat::Json => serde_json::json!({ "text": t.text }).to_string(),
        ResponseFormat::Text => format!("{}\n", t.text),
        ResponseFormat::Srt => {
            let mut out = String::new();
            for (i, s) in t.segments.iter().enumerate() {
                out.push_str(&format!(
                    "{}\n{} --> {}\n{}\n\n",
                    i + 1,
                    format_timestamp(s.start, ','),
                    format_timestamp(s.end, ','),
                    cue_text(s)
                ));
            }
            out
        }
        ResponseFormat::Vtt => {
            let mut out = String::from("WEBVTT\n\n");
            for s in &t.segments {
                out.push_str(&format!(
                    "{} --> {}\n{}\n\n",
                    format_timestamp(s.start, '.'),
                    format_timestamp(s.end, '.'),
                    cue_text(s)
                ));
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
            };
            // Plain data (strings and finite numbers) always serialises.
            serde_json::to_string(&v).unwrap_or_default()
        }
    }
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
