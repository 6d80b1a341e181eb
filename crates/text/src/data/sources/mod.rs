//! Readers of labelled text: classification tables (CSV/TSV/JSONL), NER tag files (CoNLL columns, JSONL) and
//! SQuAD question answering JSON. Every error names the file and, where there is one, the line (1-based) and the
//! field at fault.

mod classify;
mod ner;
pub(crate) mod squad;

use std::path::Path;

use anyhow::{bail, Context, Result};

pub use classify::{read_classify, read_classify_checked, read_classify_lines, ClassifyColumns, ClassifyExample};
pub use ner::{read_ner, read_ner_checked, read_ner_lines, NerSentence};
pub use squad::{read_squad, write_squad_predictions, QaAnswer, QaExample};

/// The whole file as UTF-8 text without a leading byte-order mark; invalid bytes are an error naming the line.
pub(crate) fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").map(<[u8]>::to_vec).unwrap_or(bytes);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
            let column = valid - bytes[..valid].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            bail!(
                "{}: line {line}: byte {column} of the line (0x{:02X}) is not UTF-8; save the file as UTF-8",
                path.display(),
                bytes[valid]
            )
        }
    }
}

/// Lower-cased extension of `path`, or "" when it has none.
pub(crate) fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// A short quote of a JSON value for error messages.
pub(crate) fn quote_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}
