//! Speech data sets as (audio file, transcript, language) rows, read from the layouts people already have:
//! JSONL or CSV/TSV manifests, Hugging Face `audiofolder` folders and Common Voice releases.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechExample {
    /// Absolute path of the audio file.
    pub audio: PathBuf,
    /// The transcript (or translation target).
    pub text: String,
    /// ISO language code when the manifest gives one ("de", "en"), else `None`.
    pub language: Option<String>,
}

const AUDIO_KEYS: [&str; 4] = ["audio", "path", "file", "file_name"];
const TEXT_KEYS: [&str; 4] = ["text", "sentence", "transcription", "transcript"];
const LANGUAGE_KEYS: [&str; 3] = ["language", "locale", "lang"];
const CV_SPLITS: [&str; 5] = ["train", "dev", "test", "validated", "other"];

/// Reads a speech data set.
///
/// `path` may be:
/// - a JSONL file (`{"audio": "clips/a.wav", "text": "…", "language": "de"}`; the audio may also be under `path`,
///   `file` or `file_name`, or be an object with a `path`, as `datasets` writes it; the text under `sentence`,
///   `transcription` or `transcript`; the language under `locale` or `lang`);
/// - a CSV or TSV file with a header naming the same columns (TSV is read unquoted, as Common Voice writes it);
/// - a Hugging Face audiofolder: a folder with `metadata.csv` or `metadata.jsonl` (`file_name` plus a text
///   column), or with `<split>/metadata.csv`;
/// - a Common Voice folder: `train.tsv`, `dev.tsv`, `test.tsv` … and `clips/` (columns `path`, `sentence`,
///   `locale`);
/// - any folder with `<split>.jsonl`, `<split>.csv` or `<split>.tsv`.
///
/// `split` selects the split of a folder (default `train`; `validation` also finds `dev`). Relative audio paths
/// resolve against the manifest's folder (Common Voice: `clips/`). Every audio file must exist; an empty data
/// set is an error.
pub fn read_speech_data(path: &Path, split: Option<&str>) -> Result<Vec<SpeechExample>> {
    read_data(path, split, true)
}

/// [`read_speech_data`] without the check that every audio file exists: `suite inspect speech` lists missing
/// files among the unreadable clips instead of stopping at the first one.
pub fn read_speech_rows(path: &Path, split: Option<&str>) -> Result<Vec<SpeechExample>> {
    read_data(path, split, false)
}

fn read_data(path: &Path, split: Option<&str>, check_audio: bool) -> Result<Vec<SpeechExample>> {
    let shown = path.display();
    let meta = fs::metadata(path).with_context(|| format!("{shown}: speech data not found"))?;
    let examples = if meta.is_dir() {
        read_folder(path, split, check_audio)?
    } else {
        // A bare file name's parent is the empty path, which cannot be made absolute: it means the current folder.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        read_manifest_file(path, dir, check_audio)?
    };
    Ok(examples)
}

fn read_folder(dir: &Path, split: Option<&str>, check_audio: bool) -> Result<Vec<SpeechExample>> {
    let split = split.unwrap_or("train");
    let aliases: Vec<&str> = match split {
        "validation" | "valid" | "val" | "dev" => vec!["validation", "valid", "val", "dev"],
        other => vec![other],
    };
    for name in ["metadata.csv", "metadata.jsonl"] {
        let direct = dir.join(name);
        if direct.is_file() {
            return read_manifest_file(&direct, dir, check_audio);
        }
    }
    for alias in &aliases {
        for name in ["metadata.csv", "metadata.jsonl"] {
            let nested = dir.join(alias).join(name);
            if nested.is_file() {
                return read_manifest_file(&nested, &dir.join(alias), check_audio);
            }
        }
    }
    if dir.join("clips").is_dir() {
        for alias in &aliases {
            let tsv = dir.join(format!("{alias}.tsv"));
            if tsv.is_file() {
                return read_manifest_file(&tsv, &dir.join("clips"), check_audio);
            }
        }
        let present: Vec<&str> = CV_SPLITS.iter().copied().filter(|s| dir.join(format!("{s}.tsv")).is_file()).collect();
        bail!(
            "{}: Common Voice folder has no split `{split}` (expected {split}.tsv; present: {})",
            dir.display(),
            if present.is_empty() { "none".to_string() } else { present.join(", ") }
        );
    }
    for alias in &aliases {
        for ext in ["jsonl", "csv", "tsv"] {
            let file = dir.join(format!("{alias}.{ext}"));
            if file.is_file() {
                return read_manifest_file(&file, dir, check_audio);
            }
        }
    }
    bail!(
        "{}: not a speech data folder: expected metadata.csv (audiofolder), clips/ with {split}.tsv (Common Voice), \
         or {split}.jsonl / {split}.csv / {split}.tsv",
        dir.display()
    )
}

fn read_manifest_file(file: &Path, base: &Path, check_audio: bool) -> Result<Vec<SpeechExample>> {
    let shown = file.display();
    let bytes = fs::read(file).with_context(|| format!("{shown}: cannot read manifest"))?;
    // Named by its line, as the other manifest errors are (an offset into the file is hard to find).
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{shown}: line {line}: not UTF-8 text (invalid byte at offset {at}); save the file as UTF-8")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let rows = match ext.as_str() {
        "jsonl" | "json" | "ndjson" => parse_jsonl(text, file)?,
        "tsv" => parse_delimited(text, file, b'\t')?,
        "csv" => parse_delimited(text, file, b',')?,
        _ if text.trim_start().starts_with('{') => parse_jsonl(text, file)?,
        _ => parse_delimited(text, file, b',')?,
    };
    if rows.is_empty() {
        bail!("{shown}: empty manifest: no rows (expected at least one utterance)");
    }
    let base = std::path::absolute(base).with_context(|| format!("{}: cannot resolve folder", base.display()))?;
    rows.into_iter()
        .map(|row| {
            let audio = base.join(&row.audio);
            if check_audio && !audio.is_file() {
                bail!("{shown}: line {}: audio file {} not found", row.line, audio.display());
            }
            Ok(SpeechExample { audio, text: row.text, language: row.language })
        })
        .collect()
}

/// A manifest row before its audio path is resolved.
struct Row {
    line: usize,
    audio: String,
    text: String,
    language: Option<String>,
}

fn parse_jsonl(text: &str, file: &Path) -> Result<Vec<Row>> {
    let shown = file.display();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{shown}: line {n}: not a JSON object"))?;
        let obj = value.as_object().with_context(|| format!("{shown}: line {n}: expected a JSON object"))?;
        let audio = AUDIO_KEYS.iter().find_map(|k| obj.get(*k).map(|v| (*k, v))).with_context(|| {
            format!("{shown}: line {n}: no audio field (expected one of {})", AUDIO_KEYS.join(", "))
        })?;
        let audio = match audio.1 {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("path") {
                Some(Value::String(s)) => s.clone(),
                _ => bail!("{shown}: line {n}: field `{}` is an object without a string `path`", audio.0),
            },
            other => bail!("{shown}: line {n}: field `{}` must be a path string, got {other}", audio.0),
        };
        let text_field = TEXT_KEYS
            .iter()
            .find_map(|k| obj.get(*k).map(|v| (*k, v)))
            .with_context(|| format!("{shown}: line {n}: no text field (expected one of {})", TEXT_KEYS.join(", ")))?;
        let text = match text_field.1 {
            Value::String(s) => s.clone(),
            other => bail!("{shown}: line {n}: field `{}` must be a string, got {other}", text_field.0),
        };
        let language = match LANGUAGE_KEYS.iter().find_map(|k| obj.get(*k).map(|v| (*k, v))) {
            None | Some((_, Value::Null)) => None,
            Some((_, Value::String(s))) => non_empty(s),
            Some((k, other)) => bail!("{shown}: line {n}: field `{k}` must be a language code string, got {other}"),
        };
        if audio.trim().is_empty() {
            bail!("{shown}: line {n}: empty audio path");
        }
        rows.push(Row { line: n, audio, text, language });
    }
    Ok(rows)
}

fn parse_delimited(text: &str, file: &Path, delimiter: u8) -> Result<Vec<Row>> {
    let shown = file.display();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(delimiter != b'\t')
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader.headers().with_context(|| format!("{shown}: line 1: cannot read the header"))?.clone();
    let find = |keys: &[&str]| keys.iter().find_map(|k| headers.iter().position(|h| h.trim() == *k));
    let expected = |what: &str, keys: &[&str]| {
        format!(
            "{shown}: line 1: header has no {what} column (expected one of {}; found {})",
            keys.join(", "),
            headers.iter().collect::<Vec<_>>().join(", ")
        )
    };
    let audio_col = find(&AUDIO_KEYS).with_context(|| expected("audio", &AUDIO_KEYS))?;
    let text_col = find(&TEXT_KEYS).with_context(|| expected("text", &TEXT_KEYS))?;
    let language_col = find(&LANGUAGE_KEYS);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line().to_string()).unwrap_or_else(|| "?".into());
            anyhow::anyhow!("{shown}: line {line}: {e}")
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let audio = record.get(audio_col).unwrap_or("").to_string();
        if audio.trim().is_empty() {
            bail!("{shown}: line {line}: empty audio path in column `{}`", &headers[audio_col]);
        }
        let text = record.get(text_col).unwrap_or("").to_string();
        let language = language_col.and_then(|c| record.get(c)).and_then(non_empty);
        rows.push(Row { line, audio, text, language });
    }
    Ok(rows)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}
