//! Where labelled images come from: class folders (torchvision's `ImageFolder` layout, as one folder or as
//! `train/`, `val/`, `test/` splits) and CSV or JSONL manifests, plus the [`ClassList`] that fixes label indices.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::decode::{has_image_extension, IMG_EXTENSIONS};
use super::Sample;

/// The class names of a classifier, in label-index order. Saved next to a model so predictions map back to names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassList {
    classes: Vec<String>,
}

impl ClassList {
    /// A class list in the given order; names must be non-empty and unique, and there must be at least two.
    pub fn new(names: Vec<String>) -> Result<Self> {
        if names.len() < 2 {
            bail!("a classifier needs at least 2 classes, got {}: {names:?}", names.len());
        }
        let mut seen = BTreeSet::new();
        for n in &names {
            if n.is_empty() {
                bail!("class names must not be empty");
            }
            if !seen.insert(n.as_str()) {
                bail!("class {n:?} appears twice in the class list");
            }
        }
        Ok(Self { classes: names })
    }

    /// A class list of the distinct `names`, sorted as torchvision's `ImageFolder` sorts class folders (by code
    /// point, so `"10"` comes before `"2"`).
    pub fn sorted<I: IntoIterator<Item = String>>(names: I) -> Result<Self> {
        let set: BTreeSet<String> = names.into_iter().collect();
        Self::new(set.into_iter().collect())
    }

    /// The names, index `i` being label `i`.
    pub fn names(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Always false: a class list has at least two classes.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The label index of `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// The name of label `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.classes.get(index).map(String::as_str)
    }

    /// Writes `{"classes": [...]}` to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("{}: cannot write the class list", path.display()))
    }

    /// Reads a class list written by [`ClassList::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the class list", path.display()))?;
        let list: ClassList = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a class list (expected {{\"classes\": [names...]}})", path.display()))?;
        Self::new(list.classes).with_context(|| format!("{}: invalid class list", path.display()))
    }

    fn short(&self) -> String {
        let mut s: Vec<&str> = self.classes.iter().take(10).map(String::as_str).collect();
        if self.classes.len() > 10 {
            s.push("...");
        }
        s.join(", ")
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Sub-directories of `dir` (following links), sorted, hidden ones (`.git`, `.ipynb_checkpoints`) skipped.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list the folder", dir.display()))? {
        let path = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?.path();
        if path.is_dir() && !is_hidden(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Image files under `dir`, recursively, in torchvision's order (by folder, then by name). Hidden files are skipped:
/// macOS `._x.jpg` resource forks carry image extensions but are not images.
fn image_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    // Symlinked folders are followed as torchvision does; the depth cap stops a link cycle.
    if depth > 32 {
        bail!("{}: folders nested more than 32 deep (a symbolic-link cycle?)", dir.display());
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list the folder", dir.display()))? {
        let path = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else if has_image_extension(&path) {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    out.extend(files);
    for d in dirs {
        image_files(&d, depth + 1, out)?;
    }
    Ok(())
}

fn extensions() -> String {
    IMG_EXTENSIONS.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(" ")
}

/// Reads one folder per class (`dir/<class>/**/<image>`). Without `classes`, the class list is the sorted folder
/// names; with it (validation and test folders), every folder must name one of its classes, and a class may be
/// absent. Errors name the folder: no class folders, an empty class folder, a single class, an unknown class.
pub fn scan_class_folders(dir: &Path, classes: Option<&ClassList>) -> Result<(ClassList, Vec<Sample>)> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    let class_dirs = subdirs(dir)?;
    if class_dirs.is_empty() {
        let mut loose = Vec::new();
        image_files(dir, 0, &mut loose)?;
        if loose.is_empty() {
            bail!("{}: no images and no class folders; expected {}/<class>/<image>", dir.display(), dir.display());
        }
        bail!(
            "{}: {} images but no class folders; put each class's images in its own sub-folder ({}/<class>/<image>)",
            dir.display(),
            loose.len(),
            dir.display()
        );
    }
    let names: Vec<String> = class_dirs
        .iter()
        .map(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .with_context(|| format!("{}: folder name is not valid UTF-8", d.display()))
        })
        .collect::<Result<_>>()?;
    let list = match classes {
        Some(c) => {
            for (d, n) in class_dirs.iter().zip(&names) {
                if c.index(n).is_none() {
                    bail!(
                        "{}: class {n:?} is not one of the {} training classes ({})",
                        d.display(),
                        c.len(),
                        c.short()
                    );
                }
            }
            c.clone()
        }
        None => {
            if names.len() == 1 {
                bail!(
                    "{}: only one class folder ({:?}); classification needs at least two classes",
                    dir.display(),
                    names[0]
                );
            }
            ClassList::new(names.clone())?
        }
    };
    let mut samples = Vec::new();
    for (d, n) in class_dirs.iter().zip(&names) {
        let mut files = Vec::new();
        image_files(d, 0, &mut files)?;
        if files.is_empty() {
            bail!("{}: class folder {n:?} has no images (looked for {})", d.display(), extensions());
        }
        let label = list.index(n).expect("checked above");
        samples.extend(files.into_iter().map(|f| (f, label)));
    }
    Ok((list, samples))
}

/// The labelled images of a data root, split for training.
#[derive(Debug, Clone)]
pub struct DataSplits {
    /// Classes, from the training images.
    pub classes: ClassList,
    /// Training images.
    pub train: Vec<Sample>,
    /// Validation images.
    pub val: Vec<Sample>,
    /// Test images (empty without a `test/` folder).
    pub test: Vec<Sample>,
    /// Whether `val` was carved out of the training images by [`stratified_split`] (no `val/` folder).
    pub val_is_split: bool,
}

/// Loads a data root in one of two layouts:
/// - `root/train/<class>/...` with `root/val/` (or `valid/`, `validation/`) and an optional `root/test/`; without a
///   validation folder, `val_split` of `train/` is held out;
/// - `root/<class>/...`: `val_split` of it (stratified per class, seeded) is held out for validation.
pub fn load_image_folder(root: &Path, val_split: f64, seed: u64) -> Result<DataSplits> {
    if !root.is_dir() {
        bail!("{}: no such data folder", root.display());
    }
    let train_dir = root.join("train");
    let split = |samples: Vec<Sample>, from: &Path| -> Result<(Vec<Sample>, Vec<Sample>)> {
        if !(val_split > 0.0 && val_split < 1.0) {
            bail!(
                "{}: no validation folder, so a fraction of the images is held out, but val_split is {val_split} \
                 (expected a fraction strictly between 0 and 1)",
                from.display()
            );
        }
        Ok(stratified_split(&samples, val_split, seed))
    };
    if train_dir.is_dir() {
        let (classes, train) = scan_class_folders(&train_dir, None)?;
        let val_dir = ["val", "valid", "validation"].iter().map(|n| root.join(n)).find(|d| d.is_dir());
        let (train, val, val_is_split) = match val_dir {
            Some(d) => (train, scan_class_folders(&d, Some(&classes))?.1, false),
            None => {
                let (t, v) = split(train, &train_dir)?;
                (t, v, true)
            }
        };
        let test_dir = root.join("test");
        let test = if test_dir.is_dir() { scan_class_folders(&test_dir, Some(&classes))?.1 } else { Vec::new() };
        return Ok(DataSplits { classes, train, val, test, val_is_split });
    }
    let (classes, all) = scan_class_folders(root, None)?;
    let (train, val) = split(all, root)?;
    Ok(DataSplits { classes, train, val, test: Vec::new(), val_is_split: true })
}

/// Holds out `val_fraction` of every class (rounded, at least one image of a class with two or more, never its
/// last one), chosen by a seeded shuffle per class so the split does not depend on the other classes. Both halves
/// keep the input order.
pub fn stratified_split(samples: &[Sample], val_fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let strata: Vec<usize> = samples.iter().map(|s| s.1).collect();
    suite_core::data::stratified_split(samples, &strata, val_fraction, seed)
}

/// Reads a manifest of labelled images: `.csv` (`path,label` rows, an optional header such as `path,label`,
/// double-quoted fields allowed) or `.jsonl` (`{"path": ..., "label": ...}` per line, the label a string or an
/// integer). Paths are relative to the manifest's folder. Without `classes`, the class list is the sorted distinct
/// labels; with it, every label must be one of its classes. Every bad row is reported with its file and line.
pub fn load_manifest(path: &Path, classes: Option<&ClassList>) -> Result<(ClassList, Vec<Sample>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read the manifest", path.display()))?;
    // Invalid UTF-8 is named by its line (it used to be "stream did not contain valid UTF-8", with no line).
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!(
            "{}:{line}: byte 0x{:02X} is not UTF-8; save the manifest as UTF-8",
            path.display(),
            e.as_bytes()[valid]
        )
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let rows = match ext.as_str() {
        "csv" => parse_csv(path, &text)?,
        "jsonl" | "ndjson" => parse_jsonl(path, &text)?,
        _ => bail!("{}: unknown manifest type (expected a .csv or .jsonl file)", path.display()),
    };
    if rows.is_empty() {
        bail!("{}: the manifest has no rows", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut errors = Vec::new();
    for (line, file, _) in &rows {
        let full = base.join(file);
        if !full.is_file() {
            errors.push(format!(
                "{}:{line}: image {} not found (looked for {})",
                path.display(),
                short(file),
                short(&full.display().to_string())
            ));
        }
    }
    let list = match classes {
        Some(c) => {
            for (line, _, label) in &rows {
                if c.index(label).is_none() {
                    errors.push(format!(
                        "{}:{line}: label {} is not one of the {} classes ({})",
                        path.display(),
                        short(label),
                        c.len(),
                        c.short()
                    ));
                }
            }
            Some(c.clone())
        }
        None => {
            let distinct: BTreeSet<&String> = rows.iter().map(|r| &r.2).collect();
            if distinct.len() < 2 {
                errors.push(format!(
                    "{}: every row has the label {:?}; classification needs at least two classes",
                    path.display(),
                    rows[0].2
                ));
                None
            } else {
                Some(ClassList::sorted(distinct.into_iter().cloned())?)
            }
        }
    };
    fail_with(errors)?;
    let list = list.expect("no errors, so a class list");
    let samples = rows.into_iter().map(|(_, f, l)| (base.join(f), list.index(&l).expect("checked"))).collect();
    Ok((list, samples))
}

/// Fails with every message, one per line (the first 20, then a count), or passes when there are none.
fn fail_with(errors: Vec<String>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => bail!("{}", errors[0]),
        n => {
            let mut shown: Vec<String> = errors.into_iter().take(20).collect();
            if n > 20 {
                shown.push(format!("... and {} more", n - 20));
            }
            bail!("{n} problems in the manifest:\n  {}", shown.join("\n  "))
        }
    }
}

type Row = (usize, String, String);

/// `value` quoted for an error message, cut to 80 characters: a manifest line of megabytes is named, not echoed.
fn short(value: &str) -> String {
    if value.chars().count() <= 80 {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(80).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// Like [`short`], unquoted (a JSON line).
fn cut(value: &str) -> String {
    if value.chars().count() <= 80 {
        return value.to_string();
    }
    let head: String = value.chars().take(80).collect();
    format!("{head}… ({} bytes)", value.len())
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = if first { raw.trim_start_matches('\u{feff}') } else { raw };
        if raw.trim().is_empty() {
            continue;
        }
        let fields = match split_csv_line(raw) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{}:{line}: {e}", path.display()));
                continue;
            }
        };
        if std::mem::take(&mut first) && is_header(&fields) {
            continue;
        }
        if fields.len() != 2 {
            errors.push(format!(
                "{}:{line}: expected 2 columns (path,label), found {}: {}",
                path.display(),
                fields.len(),
                short(raw)
            ));
            continue;
        }
        let [file, label]: [String; 2] = fields.try_into().expect("two fields");
        if file.is_empty() || label.is_empty() {
            errors.push(format!("{}:{line}: empty path or label: {}", path.display(), short(raw)));
            continue;
        }
        rows.push((line, file, label));
    }
    fail_with(errors)?;
    Ok(rows)
}

/// A first row naming its columns (`path,label`, `filename,class`, ...) rather than an image.
fn is_header(fields: &[String]) -> bool {
    let f: Vec<String> = fields.iter().map(|s| s.to_ascii_lowercase()).collect();
    f.len() == 2
        && ["path", "file", "filename", "file_name", "filepath", "image", "image_path"].contains(&f[0].as_str())
        && ["label", "class", "target", "category"].contains(&f[1].as_str())
}

/// Splits one CSV record (RFC 4180 quoting within a line; unquoted fields are trimmed).
fn split_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field (fields cannot span lines)".into()),
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{}:{line}: not valid JSON: {e}", path.display()));
                continue;
            }
        };
        let file = value.get("path").and_then(|v| v.as_str()).map(str::to_owned);
        let label = match value.get("label") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            _ => None,
        };
        match (file, label) {
            (Some(f), Some(l)) if !f.is_empty() && !l.is_empty() => rows.push((line, f, l)),
            _ => errors.push(format!(
                "{}:{line}: expected an object with a string \"path\" and a string or integer \"label\", got {}",
                path.display(),
                cut(raw)
            )),
        }
    }
    fail_with(errors)?;
    Ok(rows)
}
