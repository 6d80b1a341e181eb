//! Which splits an inspection looks at and which labelled images they hold, read with the readers of
//! `suite finetune vision` ([`scan_class_folders`], [`load_manifest`]) so that what is inspected is what training
//! reads. Unlike training, a validation or test split with classes the training data lacks is read anyway (and
//! reported), since that is one of the things to find.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::data::{load_manifest, scan_class_folders, ClassList, Sample};

/// One labelled image of the inspected data.
#[derive(Clone, Debug)]
pub struct Example {
    /// Index into [`Data::splits`].
    pub split: usize,
    /// The image file.
    pub path: PathBuf,
    /// Index into [`Data::classes`].
    pub label: usize,
}

/// The labelled images of every split.
#[derive(Clone, Debug)]
pub struct Data {
    /// Split names, train first (`train`, then `val` and `test` where present).
    pub splits: Vec<String>,
    /// Where each split was read from.
    pub paths: Vec<PathBuf>,
    /// Class names: the training classes in label order (as training numbers them), then any class only another
    /// split has, sorted.
    pub classes: Vec<String>,
    /// How many of `classes` the training split has (the first ones).
    pub train_classes: usize,
    /// Every example, split by split, in each reader's order.
    pub examples: Vec<Example>,
    /// Whether the training data came without a validation split, so that `suite finetune` carves one out of it.
    pub val_is_carved: bool,
}

impl Data {
    /// Examples per split and class: `counts[split][class]`.
    pub fn counts(&self) -> Vec<Vec<usize>> {
        let mut c = vec![vec![0; self.classes.len()]; self.splits.len()];
        for e in &self.examples {
            c[e.split][e.label] += 1;
        }
        c
    }

    /// How an example is shown in tables: its path.
    pub fn name(&self, i: usize) -> String {
        self.examples[i].path.display().to_string()
    }
}

/// A manifest as `suite finetune` recognises one (its `is_manifest`): a file named `.csv`, `.jsonl` or `.tsv`.
fn is_manifest(p: &Path) -> bool {
    p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "jsonl" | "tsv"))
}

/// Reads one split: a manifest, or a folder of class folders. `known`: the training classes, which the split's
/// labels must come from (as training requires).
fn read_one(path: &Path, known: Option<&ClassList>) -> Result<(ClassList, Vec<Sample>)> {
    if path.is_dir() {
        scan_class_folders(path, known)
    } else if is_manifest(path) {
        load_manifest(path, known)
    } else if path.is_file() {
        bail!(
            "{}: not an image folder or a manifest (expected a folder of class folders, or a .csv or .jsonl file)",
            path.display()
        )
    } else {
        bail!("{}: no such file or folder", path.display())
    }
}

/// The splits to inspect from the command line's `(name, path)` list (train first). A training folder in the
/// `root/train/`, `root/val/` (or `valid/`, `validation/`), `root/test/` layout that `suite finetune --data`
/// accepts brings its own validation and test splits, unless `--val-data` or `--test-data` name others.
pub fn resolve(given: &[(String, PathBuf)]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = given.to_vec();
    let Some((_, root)) = given.first() else { return out };
    if !root.join("train").is_dir() {
        return out;
    }
    out[0].1 = root.join("train");
    let has = |name: &str| given.iter().any(|(n, _)| n == name);
    if !has("val") {
        if let Some(v) = ["val", "valid", "validation"].iter().map(|n| root.join(n)).find(|d| d.is_dir()) {
            out.push(("val".into(), v));
        }
    }
    if !has("test") && root.join("test").is_dir() {
        out.push(("test".into(), root.join("test")));
    }
    // Train, val, test, whichever order they were found in.
    let rank = |n: &str| ["train", "val", "test"].iter().position(|x| *x == n).unwrap_or(3);
    out.sort_by_key(|(n, _)| rank(n));
    out
}

/// Reads every split of `given` (see [`resolve`]). A path that does not exist, a manifest that does not parse and
/// a folder that is not a class-folder tree are errors naming the file; unreadable images are not (the file check
/// reports them).
pub fn read(given: &[(String, PathBuf)]) -> Result<Data> {
    let splits = resolve(given);
    let Some((_, train_path)) = splits.first() else { bail!("no data given: pass --data DIR_OR_MANIFEST") };
    for (_, p) in &splits {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
    }
    let (train_classes, train) = read_one(train_path, None)?;
    let mut classes: Vec<String> = train_classes.names().to_vec();
    let mut per_split = vec![(train_classes.clone(), train)];
    for (_, p) in &splits[1..] {
        // As training reads it; if that fails, read it on its own to find the classes training lacks, and when
        // that fails too the first error is the one that names the problem.
        let read = match read_one(p, Some(&train_classes)) {
            Ok(r) => r,
            Err(e) => read_one(p, None).map_err(|_| e)?,
        };
        per_split.push(read);
    }
    let mut extra: Vec<String> = per_split[1..]
        .iter()
        .flat_map(|(c, _)| c.names().iter().filter(|n| !classes.contains(n)).cloned().collect::<Vec<_>>())
        .collect();
    extra.sort();
    extra.dedup();
    classes.extend(extra);
    let mut examples = vec![];
    for (split, (list, samples)) in per_split.into_iter().enumerate() {
        let global: Vec<usize> =
            list.names().iter().map(|n| classes.iter().position(|c| c == n).expect("every class was added")).collect();
        examples.extend(samples.into_iter().map(|(path, l)| Example { split, path, label: global[l] }));
    }
    Ok(Data {
        val_is_carved: !splits.iter().any(|(n, _)| n == "val"),
        splits: splits.iter().map(|(n, _)| n.clone()).collect(),
        paths: splits.into_iter().map(|(_, p)| p).collect(),
        train_classes: train_classes.len(),
        classes,
        examples,
    })
}
