//! Sequence classification examples from CSV/TSV tables or JSON lines.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{extension, quote_json, read_utf8};
use crate::data::labels::LabelSet;

/// One text (or text pair) and its labels: one for single-label tasks, any number for multi-label ones, none when
/// read for prediction without a label column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyExample {
    /// The text (first sequence).
    pub text: String,
    /// The second sequence of pair tasks (NLI, paraphrase).
    pub text_pair: Option<String>,
    /// Label names.
    pub labels: Vec<String>,
}

/// Which columns (CSV/TSV) or keys (JSONL) hold the text, the optional pair text and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyColumns {
    /// The text column.
    pub text: String,
    /// The pair column: `Some(name)` requires it; `None` uses a column named `text_pair` when the file has one.
    pub text_pair: Option<String>,
    /// The label column.
    pub label: String,
}

impl Default for ClassifyColumns {
    fn default() -> Self {
        Self { text: "text".into(), text_pair: None, label: "label".into() }
    }
}

impl ClassifyColumns {
    fn pair_name(&self) -> &str {
        self.text_pair.as_deref().unwrap_or("text_pair")
    }
}

/// Separator of several labels in one CSV/TSV cell (multi-label).
const LABEL_SEPARATOR: char = '|';

/// Reads classification examples.
///
/// By extension: `.csv` (comma, RFC 4180 quoting) or `.tsv` (tab, no quoting, as the GLUE files, whose texts
/// hold unbalanced quotes), with a header row naming the columns; several labels in one cell are separated by
/// `|`. `.jsonl`/`.json`: one object per line, `{"text": …, "text_pair": …, "label": "x" | 3 | ["x", "y"]}`.
/// With `require_label = false` (prediction) the label column may be absent or empty.
pub fn read_classify(path: &Path, columns: &ClassifyColumns, require_label: bool) -> Result<Vec<ClassifyExample>> {
    Ok(read_with_lines(path, columns, require_label)?.into_iter().map(|(e, _)| e).collect())
}

/// [`read_classify`] with labels required and each one checked against `labels`, so that an unknown label (in a
/// validation or test file) is reported with its file and line.
pub fn read_classify_checked(
    path: &Path,
    columns: &ClassifyColumns,
    labels: &LabelSet,
) -> Result<Vec<ClassifyExample>> {
    let rows = read_with_lines(path, columns, true)?;
    for (example, line) in &rows {
        for label in &example.labels {
            labels
                .index(label)
                .with_context(|| format!("{}: line {line}: field `{}`", path.display(), columns.label))?;
        }
    }
    Ok(rows.into_iter().map(|(e, _)| e).collect())
}

/// [`read_classify`] with the line each example starts on (1-based), for reports that name the line of an example.
pub fn read_classify_lines(
    path: &Path,
    columns: &ClassifyColumns,
    require_label: bool,
) -> Result<Vec<(ClassifyExample, u64)>> {
    read_with_lines(path, columns, require_label)
}

fn read_with_lines(path: &Path, columns: &ClassifyColumns, require_label: bool) -> Result<Vec<(ClassifyExample, u64)>> {
    let text = read_utf8(path)?;
    let rows = match extension(path).as_str() {
        "csv" => read_table(path, &text, b',', true, columns, require_label)?,
        "tsv" => read_table(path, &text, b'\t', false, columns, require_label)?,
        "jsonl" | "json" => read_json_lines(path, &text, columns, require_label)?,
        other => bail!(
            "{}: unsupported extension `.{other}` for classification data: expected .csv, .tsv, .jsonl or .json \
             (JSON lines)",
            path.display()
        ),
    };
    if rows.is_empty() {
        bail!("{}: no examples (the file is empty or has only a header)", path.display());
    }
    Ok(rows)
}

fn read_table(
    path: &Path,
    text: &str,
    delimiter: u8,
    quoting: bool,
    columns: &ClassifyColumns,
    require_label: bool,
) -> Result<Vec<(ClassifyExample, u64)>> {
    let file = path.display();
    if text.trim().is_empty() {
        bail!(
            "{file}: the file is empty: expected a header row naming the columns `{}` and `{}`",
            columns.text,
            columns.label
        );
    }
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).quoting(quoting).has_headers(true).from_reader(text.as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| table_error(path, e))?.iter().map(|h| h.trim().to_string()).collect();
    let find = |name: &str| header.iter().position(|h| h == name);
    let missing = |name: &str| anyhow::anyhow!("{file}: line 1: no column `{name}` in the header {header:?}");
    let text_col = find(&columns.text).ok_or_else(|| missing(&columns.text))?;
    let pair_col = match &columns.text_pair {
        Some(name) => Some(find(name).ok_or_else(|| missing(name))?),
        None => find("text_pair"),
    };
    let label_col = match find(&columns.label) {
        Some(c) => Some(c),
        None if require_label => return Err(missing(&columns.label)),
        None => None,
    };
    let mut out = Vec::new();
    // Lines are counted from the record's byte offset: the csv crate's own line count runs one behind after CRLF
    // line ends, and its offset may point at the line end before the record. (byte offset counted up to, its line)
    let mut counted = (0usize, 1u64);
    for record in reader.records() {
        let record = record.map_err(|e| table_error(path, e))?;
        let line = record.position().map_or(0, |p| {
            let mut at = (p.byte() as usize).clamp(counted.0, text.len());
            at += text.as_bytes()[at..].iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            counted.1 += text.as_bytes()[counted.0..at].iter().filter(|&&b| b == b'\n').count() as u64;
            counted.0 = at;
            counted.1
        });
        let cell = |c: usize| record.get(c).unwrap_or("");
        let labels = match label_col {
            Some(c) => {
                split_labels(cell(c)).with_context(|| format!("{file}: line {line}: field `{}`", columns.label))?
            }
            None => Vec::new(),
        };
        if require_label && labels.is_empty() {
            bail!("{file}: line {line}: field `{}` is empty: every example needs a label", columns.label);
        }
        let example = ClassifyExample {
            text: cell(text_col).to_string(),
            text_pair: pair_col.map(|c| cell(c).to_string()),
            labels,
        };
        out.push((example, line));
    }
    Ok(out)
}

fn split_labels(cell: &str) -> Result<Vec<String>> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Vec<String> = cell.split(LABEL_SEPARATOR).map(|l| l.trim().to_string()).collect();
    if labels.iter().any(String::is_empty) {
        bail!("`{cell}` has an empty label between `{LABEL_SEPARATOR}` separators");
    }
    Ok(labels)
}

fn table_error(path: &Path, e: csv::Error) -> anyhow::Error {
    let file = path.display();
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            let line = pos.as_ref().map_or(0, |p| p.line());
            anyhow::anyhow!("{file}: line {line}: {len} fields, expected {expected_len} as in the header")
        }
        _ => {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("{file}: line {line}: {e}")
        }
    }
}

fn read_json_lines(
    path: &Path,
    text: &str,
    columns: &ClassifyColumns,
    require_label: bool,
) -> Result<Vec<(ClassifyExample, u64)>> {
    let file = path.display();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| anyhow::anyhow!("{file}: line {line}: malformed JSON ({e}); expected one object per line"))?;
        let Value::Object(obj) = value else {
            bail!("{file}: line {line}: expected a JSON object, got {}", quote_json(&value));
        };
        let field = |name: &str, required: bool| -> Result<Option<String>> {
            match obj.get(name) {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                None | Some(Value::Null) if !required => Ok(None),
                None => bail!("{file}: line {line}: missing field `{name}`"),
                Some(v) => bail!("{file}: line {line}: field `{name}`: expected a string, got {}", quote_json(v)),
            }
        };
        let text = field(&columns.text, true)?.unwrap_or_default();
        let text_pair = field(columns.pair_name(), columns.text_pair.is_some())?;
        let labels = match obj.get(&columns.label) {
            None | Some(Value::Null) if require_label => {
                bail!("{file}: line {line}: missing field `{}`: every example needs a label", columns.label)
            }
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().map(json_label).collect::<Option<Vec<_>>>().with_context(|| {
                    format!("{file}: line {line}: field `{}`: expected a list of strings or integers", columns.label)
                })?
            }
            Some(v) => vec![json_label(v).with_context(|| {
                format!(
                    "{file}: line {line}: field `{}`: expected a string, an integer or a list of them, got {}",
                    columns.label,
                    quote_json(v)
                )
            })?],
        };
        out.push((ClassifyExample { text, text_pair, labels }, line));
    }
    Ok(out)
}

/// A label as a string: strings as they are, integers (`{"label": 0}`) in decimal.
fn json_label(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}
